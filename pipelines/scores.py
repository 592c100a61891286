"""Batch scoring: every customer's value, tier, need segment and churn risk into the `scores` view.

`score_customers` scores the customers of the latest feature snapshot with the registered
models (champions, else the latest versions with a warning) and writes one Parquet table,
atomically, to `data/scores/scores.parquet`: apart from the feature tables, which
`loyal features build` replaces wholesale. `publish_scores` then registers the `scores` view
in Feast and loads it into the online store, so the API reads tier, segment and CLV online.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from os import getpid
from pathlib import Path

import pandas as pd

from features.catalog import ENTITY_KEY, SCORES, TIMESTAMP_FIELD
from features.store import apply_definitions, open_store, scores_table_path
from features.tables_io import read_contract
from loyal.errors import NotReadyError
from loyal.settings import Settings

log = logging.getLogger(__name__)


def score_customers(settings: Settings, write: bool = True) -> pd.DataFrame:
    """Score every customer of the latest snapshot and write the scores table.

    Columns: `customer_id`, `event_timestamp` (the latest snapshot) and the `scores` view's
    features: clv, p_alive, expected_purchases_12m, tier, segment_id, segment_name and
    churn_probability. A model that is not registered leaves its columns empty (NaN, -1 or
    "") with a warning; tiers then rank by trailing 12-month margin.

    Args:
        settings: where the contract tables, feature store and MLflow live.
        write: write `data/scores/scores.parquet` (atomically: a temporary file, then rename).

    Returns:
        The scores, one row per customer, sorted by customer id.

    Raises:
        NotReadyError: no feature tables, or no model registered at all.
    """
    from training.scoring import churn_scores, segment_scores, tiers_for, value_scores
    from training.segments import behaviour_frame

    started = time.perf_counter()
    tables = read_contract(settings)
    frame, snapshot = behaviour_frame(settings, tables)
    values = value_scores(settings, frame.index, tables)
    segments = segment_scores(settings, frame)
    entities = pd.DataFrame({ENTITY_KEY: frame.index.astype(str), TIMESTAMP_FIELD: snapshot})
    churn = churn_scores(settings, entities)
    if values["clv"].isna().all() and (segments["segment_id"] < 0).all() and churn.isna().all():
        raise NotReadyError(
            "no clv, segments or churn model is registered: run `loyal train clv` and "
            "`loyal train segments` first"
        )
    scores = assemble(frame.index, snapshot, values, tiers_for(settings, values["tier_value"]),
                      segments, churn, top_recommendations(settings))  # fmt: skip
    if write:
        write_scores(scores, scores_table_path(settings))
    log.info(
        "Scored %d customers at %s in %.1f s: tiers %s",
        len(scores), snapshot, time.perf_counter() - started,
        scores["tier"].value_counts().to_dict(),
    )  # fmt: skip
    return scores


def assemble(
    customers: pd.Index,
    snapshot: pd.Timestamp,
    values: pd.DataFrame,
    tiers: pd.Series,
    segments: pd.DataFrame,
    churn: pd.Series,
    recommendations: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The scores table in the `scores` view's column order and types."""
    ids = pd.Index(customers.astype(str), name=ENTITY_KEY)
    table = pd.DataFrame(
        {
            ENTITY_KEY: ids,
            TIMESTAMP_FIELD: pd.Timestamp(snapshot).tz_convert("UTC"),
            "clv": values["clv"].reindex(ids).astype(float).to_numpy(),
            "p_alive": values["p_alive"].reindex(ids).astype(float).to_numpy(),
            "expected_purchases_12m": values["expected_purchases_12m"].reindex(ids).to_numpy(),
            "tier": tiers.reindex(ids).astype(str).to_numpy(),
            "segment_id": segments["segment_id"].reindex(ids).astype("int64").to_numpy(),
            "segment_name": segments["segment_name"].reindex(ids).astype(str).to_numpy(),
            "churn_probability": churn.reindex(ids).astype(float).to_numpy(),
        }
    )
    for column in RECOMMENDATION_COLUMNS:
        known = recommendations[column] if recommendations is not None else pd.Series(dtype=str)
        table[column] = known.reindex(ids).fillna("").astype(str).to_numpy()
    table[TIMESTAMP_FIELD] = table[TIMESTAMP_FIELD].astype("datetime64[ns, UTC]")
    table["expected_purchases_12m"] = table["expected_purchases_12m"].astype(float)
    table = table[[ENTITY_KEY, TIMESTAMP_FIELD, *SCORES.feature_names]]
    return table.sort_values(ENTITY_KEY, kind="stable").reset_index(drop=True)


RECOMMENDATION_COLUMNS = [f"recommendation_{rank}" for rank in (1, 2, 3)]


def top_recommendations(settings: Settings) -> pd.DataFrame | None:
    """The batch cross-sell top 3 per customer, one column per rank (None before any run)."""
    from training.cross_sell import RECOMMENDATIONS_FILE

    path = settings.paths.data_dir / "scores" / RECOMMENDATIONS_FILE
    if not path.is_file():
        log.warning("no batch recommendations yet: run `loyal train cross-sell` to fill them")
        return None
    batch = pd.read_parquet(path, columns=[ENTITY_KEY, "rank", "product_id"])
    batch = batch[batch["rank"] <= len(RECOMMENDATION_COLUMNS)]
    wide = batch.pivot(index=ENTITY_KEY, columns="rank", values="product_id")
    wide.columns = [f"recommendation_{int(rank)}" for rank in wide.columns]
    return wide.reindex(columns=RECOMMENDATION_COLUMNS).fillna("")


def write_scores(scores: pd.DataFrame, path: Path) -> Path:
    """Write the scores table atomically: readers see the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.tmp-{getpid()}")
    try:
        scores.to_parquet(staging, index=False)
        staging.replace(path)
    finally:
        staging.unlink(missing_ok=True)
    return path


def publish_scores(settings: Settings) -> pd.DataFrame:
    """Score, write, register the `scores` view in Feast and load it into the online store.

    Returns:
        The scores written.
    """
    scores = score_customers(settings)
    apply_definitions(settings)
    materialize_scores(settings, pd.Timestamp(scores[TIMESTAMP_FIELD].max()))
    return scores


def materialize_scores(settings: Settings, snapshot: pd.Timestamp) -> None:
    """Load the scores of one snapshot into the online store (the other views are untouched)."""
    moment = pd.Timestamp(snapshot).tz_convert("UTC").to_pydatetime()
    store = open_store(settings)
    store.materialize(
        start_date=moment - timedelta(seconds=1),
        end_date=moment + timedelta(seconds=1),
        feature_views=[SCORES.name],
    )
    log.info("Scores of %s are online", moment)
