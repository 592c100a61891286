"""Expected saved value: what a retention contact is worth per customer, for ranking the list.

    saved value = uplift x max(CLV, 0) - cost

where uplift is the `uplift` champion's estimate of how much a contact raises the customer's
chance of staying over the churn horizon (features of the scores' snapshot, through Feast's
point-in-time join on the churn feature service), and cost is the cheapest retention offer
the catalog makes on the call-center channel (what a contact costs at least).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from features.catalog import ENTITY_KEY, TIMESTAMP_FIELD
from loyal.errors import LoyalError, NotReadyError
from loyal.settings import Settings
from models.offers import Catalog

RankBy = Literal["expected-loss", "saved-value"]
RANK_BY = ("expected-loss", "saved-value")
SERVICE = "churn_v1"
RANKING = (
    "saved_value = uplift x max(clv, 0) - contact cost (uplift: the uplift champion's estimate "
    "of how much a contact raises P(stay)), rounded to cents; descending, ties by customer_id"
)


def check_rank_by(rank_by: str | None) -> None:
    """Refuse an unknown `--rank-by` value in one line."""
    if rank_by is not None and rank_by not in RANK_BY:
        raise LoyalError(f"--rank-by: unknown ranking {rank_by!r} (use {' or '.join(RANK_BY)})")


def uplift_champion(settings: Settings) -> object | None:
    """The uplift champion (a loaded MLflow model), or None when there is none."""
    from inference.reference import registered_model

    return registered_model(settings, "uplift", champion_only=True)


def contact_cost(catalog: Catalog, channel: str = "call_center") -> float:
    """The cheapest retention offer's cost on the channel (0 when the catalog has none)."""
    costs = [
        float(o.cost) for o in catalog.offers if o.kind == "retention" and channel in o.channels
    ]
    return min(costs) if costs else 0.0


def predicted_uplift(
    settings: Settings, loaded: object, customer_ids: list[str], snapshot: pd.Timestamp
) -> pd.Series:
    """The uplift champion's estimate per customer id at the snapshot."""
    from features.frames import training_frame

    if not customer_ids:
        return pd.Series(dtype=float)
    entities = pd.DataFrame({ENTITY_KEY: customer_ids, TIMESTAMP_FIELD: snapshot})
    frame = training_frame(settings, SERVICE, entities, with_labels=False)
    ids = frame[ENTITY_KEY].astype(str).to_numpy()
    inputs = frame.drop(columns=[ENTITY_KEY, TIMESTAMP_FIELD])
    output = pd.DataFrame(loaded.obj.predict(inputs))  # type: ignore[attr-defined]
    return pd.Series(output["uplift"].to_numpy(float), index=pd.Index(ids, name=ENTITY_KEY))


def saved_value(uplift: pd.Series, clv: pd.Series, cost: float) -> pd.Series:
    """uplift x max(CLV, 0) - cost, rounded to cents (NaN where either is unknown)."""
    value = uplift.astype(float) * clv.astype(float).clip(lower=0.0) - cost
    return value.round(2)


def with_saved_value(
    settings: Settings,
    scores: pd.DataFrame,
    catalog: Catalog,
    snapshot: pd.Timestamp,
    loaded: object | None,
) -> tuple[pd.DataFrame, dict[str, object]]:
    """The scores with `uplift` and `saved_value` columns, and what the sidecar records.

    Args:
        settings: where the feature store lives.
        scores: the published scores of the snapshot.
        catalog: the offer catalog (the contact's cost).
        snapshot: the scores' snapshot.
        loaded: the uplift champion (`uplift_champion`).

    Raises:
        NotReadyError: no uplift champion.
    """
    if loaded is None:
        raise NotReadyError(
            "--rank-by saved-value needs an uplift champion: run `loyal train uplift` and "
            "`loyal promote uplift`"
        )
    ids = scores[ENTITY_KEY].astype(str)
    uplift = predicted_uplift(settings, loaded, ids.tolist(), snapshot).reindex(ids)
    cost = contact_cost(catalog)
    out = scores.copy()
    out["uplift"] = uplift.to_numpy()
    out["saved_value"] = saved_value(uplift, out["clv"].set_axis(uplift.index), cost).to_numpy()
    meta = {
        "version": getattr(loaded, "version", None),
        "alias": "champion",
        "contact_cost": cost,
        "uplift_known": int(np.isfinite(out["uplift"]).sum()),
    }
    return out, meta
