"""Scores from registered models: champion loading, CLV and tier values, segments and churn.

Nothing here writes files: `pipelines.scores` assembles these scores into the `scores` view.
Each model is read the way its training module logs it (an MLflow pyfunc, JSON state inside),
found by the one champion source (`inference.champions`): the `champion` alias when set, else
the latest version with a warning (`registered_model`).

These functions work on in-memory frames (Feast's point-in-time join) and on the transaction log
aggregated per customer by DuckDB (`features.log_aggregates`): segments training uses them, and
`pipelines.scores.reference_scores` checks the fast chunked path of `loyal score`
(`inference.fast`, its own streaming pass over the log) against them.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from features.catalog import ENTITY_KEY, TIMESTAMP_FIELD
from features.log_aggregates import TransactionLog, margins_of, observation_end
from inference.champions import LoadedModel, MlflowChampions, load_pyfunc
from loyal.settings import Settings

if TYPE_CHECKING:
    from mlflow.pyfunc import PyFuncModel

log = logging.getLogger(__name__)

TRAILING_DAYS = 365
"""Days of margin behind the tier value of a customer whose CLV is unknown."""
VALUE_COLUMNS = ("clv", "p_alive", "expected_purchases_12m", "tier_value", "value_basis")


def registered_model(
    settings: Settings, model_name: str, champion_only: bool = False
) -> LoadedModel | None:
    """The `champion` version of a registered model as its pyfunc, else its latest version.

    Found and loaded through the one champion source (`inference.champions`) the service uses.

    Args:
        settings: where MLflow lives.
        model_name: registered model name.
        champion_only: return None instead of falling back to the latest version (warned about).

    Returns:
        The loaded model (`obj` is the MLflow pyfunc), or None when nothing suitable is registered.
    """
    source = MlflowChampions(
        settings.mlflow.tracking_uri,
        settings.paths.runtime_dir / "scoring" / "models",
        fallback_to_latest=not champion_only,
    )
    artifact = source.locate(model_name)
    if artifact is None:
        return None
    return LoadedModel(
        model_name, load_pyfunc(artifact), artifact.version, artifact.source, alias=artifact.alias
    )


def schema_inputs(pyfunc: PyFuncModel, frame: pd.DataFrame) -> pd.DataFrame:
    """The columns a pyfunc's signature names, typed as it states (text or float).

    Missing columns are added as missing values; the pyfunc decides whether it accepts them.
    """
    schema = pyfunc.metadata.get_input_schema()
    if schema is None:
        return frame.reset_index(drop=True)
    out = pd.DataFrame(index=range(len(frame)))
    for name, kind in zip(schema.input_names(), schema.input_types(), strict=True):
        values = frame[name].reset_index(drop=True) if name in frame.columns else None
        if values is None:
            out[name] = np.nan
        elif str(kind).lower() in {"string", "datatype.string"}:
            out[name] = values.astype(object).where(values.notna(), None)
        elif pd.api.types.is_bool_dtype(values):
            out[name] = values.astype(float)
        else:
            out[name] = pd.to_numeric(values, errors="coerce").astype(float)
    return out


# ---------------------------------------------------------------------------- value
def value_scores(
    settings: Settings, customers: pd.Index, transactions: TransactionLog
) -> pd.DataFrame:
    """CLV, P(alive), expected purchases in 12 months and the value that ranks tiers.

    CLV comes from the `clv` model (champion, else latest), conditioned on each customer's
    whole history up to the observation end. `tier_value` is the CLV, or the trailing 365-day
    margin for customers without one (no purchase yet, or no CLV model at all).

    Args:
        settings: where MLflow and the feature tables live.
        customers: the customers to score.
        transactions: the contract's transaction log.

    Returns:
        One row per customer (index `customer_id`) with `VALUE_COLUMNS`; `value_basis` says
        "clv" or "trailing_margin".
    """
    ids = pd.Index(customers.astype(str), name="customer_id")
    end = observation_end(settings, transactions)
    scores = pd.DataFrame(index=ids, columns=["clv", "p_alive", "expected_purchases_12m"])
    scores = scores.astype(float)
    loaded = registered_model(settings, "clv")
    if loaded is None:
        log.warning("no 'clv' model registered: tiers rank by trailing 12-month margin")
    else:
        scores.update(_clv_scores(loaded, transactions, end, ids))
    window = transactions.window_totals(end - pd.Timedelta(days=TRAILING_DAYS), end)
    trailing = margins_of(window, ids)
    scores["tier_value"] = scores["clv"].fillna(trailing)
    scores["value_basis"] = np.where(scores["clv"].notna(), "clv", "trailing_margin")
    log.info(
        "value: CLV for %d of %d customers (%s), trailing margin for the rest",
        int(scores["clv"].notna().sum()), len(scores),
        "no model" if loaded is None else loaded.label,
    )  # fmt: skip
    return scores


def _clv_scores(
    loaded: LoadedModel, transactions: TransactionLog, end: pd.Timestamp, ids: pd.Index
) -> pd.DataFrame:
    """clv, p_alive and expected_purchases_12m of the customers with a purchase by `end`."""
    from models.clv import DAYS_PER_MONTH, FULL_FIT

    wrapper = loaded.obj.unwrap_python_model()
    model = wrapper.models[FULL_FIT]
    period = getattr(wrapper, "settings", {}).get("period", "D")
    summary = transactions.rfm_summary(end, period=period, time_unit_days=model.time_unit_days)
    summary = summary[summary.index.isin(ids)]
    if summary.empty:
        return pd.DataFrame(columns=["clv", "p_alive", "expected_purchases_12m"])
    inputs = schema_inputs(loaded.obj, summary)
    units = 12 * DAYS_PER_MONTH / model.time_unit_days
    output = pd.DataFrame(
        loaded.obj.predict(inputs, params={"model": FULL_FIT, "forecast_units": units})
    )
    return pd.DataFrame(
        {
            "clv": output["clv"].to_numpy(float),
            "p_alive": output["p_alive"].to_numpy(float),
            "expected_purchases_12m": output["expected_purchases"].to_numpy(float),
        },
        index=pd.Index(summary.index.astype(str), name="customer_id"),
    )


def tiers_for(settings: Settings, tier_value: pd.Series) -> pd.Series:
    """Value tiers with the configured cut points (exact sizes on ties)."""
    from models.tiers import assign_tiers

    cuts = (settings.tiers.platinum, settings.tiers.gold, settings.tiers.iron)
    return assign_tiers(tier_value, cuts)


# ------------------------------------------------------------------------- segments
def segment_scores(settings: Settings, frame: pd.DataFrame) -> pd.DataFrame:
    """Segment id and name of every row of a behaviour frame (index `customer_id`).

    Without a registered `segments` model the id is -1 and the name empty, with a warning.
    """
    scores = pd.DataFrame(
        {"segment_id": np.full(len(frame), -1, dtype=np.int64), "segment_name": ""},
        index=frame.index,
    )
    loaded = registered_model(settings, "segments")
    if loaded is None:
        log.warning("no 'segments' model registered: segment_id -1 for everyone")
        return scores
    output = pd.DataFrame(loaded.obj.predict(schema_inputs(loaded.obj, frame)))
    scores["segment_id"] = output["segment_id"].to_numpy(np.int64)
    scores["segment_name"] = output["segment_name"].astype(str).to_numpy()
    log.info("segments from %s", loaded.label)
    return scores


# ---------------------------------------------------------------------------- churn
def churn_scores(settings: Settings, entities: pd.DataFrame) -> pd.Series:
    """Churn probability per customer from the churn champion (NaN without one).

    Features are the churn pyfunc's inputs from the `churn_v1` feature service at each row's
    timestamp (Feast's point-in-time join), typed as its signature states.

    Args:
        settings: where MLflow and the feature store live.
        entities: `customer_id` and `event_timestamp` rows.

    Returns:
        Probabilities indexed by customer id.
    """
    from features.frames import training_frame  # Feast, only when churn is scored this way

    ids = pd.Index(entities[ENTITY_KEY].astype(str), name=ENTITY_KEY)
    empty = pd.Series(np.nan, index=ids, name="churn_probability")
    loaded = registered_model(settings, "churn", champion_only=True)
    if loaded is None:
        log.warning("no churn champion: churn_probability left empty in the scores")
        return empty
    frame = training_frame(settings, "churn_v1", entities, with_labels=False)
    frame = frame.set_index(frame[ENTITY_KEY].astype(str)).reindex(ids)
    try:
        output = pd.DataFrame(
            loaded.obj.predict(
                schema_inputs(loaded.obj, frame.drop(columns=[TIMESTAMP_FIELD])),
                params={"top": 0},
            )
        )
    except Exception as exc:  # a champion trained on other inputs must not block the scores
        log.warning("%s could not score the feature store's rows (%s): churn left empty",
                    loaded.label, exc)  # fmt: skip
        return empty
    log.info("churn probabilities from %s", loaded.label)
    return pd.Series(
        np.asarray(output["churn_probability"], dtype=float), index=ids, name="churn_probability"
    )
