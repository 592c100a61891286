"""Point-in-time frames: a feature service's values at each labelled snapshot, through Feast."""

from __future__ import annotations

import json
import logging

import pandas as pd

from features.catalog import ENTITY_KEY, TIMESTAMP_FIELD
from features.history import WindowChoice
from features.store import historical_features, open_store
from loyal.errors import NotReadyError
from loyal.settings import Settings

log = logging.getLogger(__name__)

LABELS_FILE = "_labels.parquet"
HORIZON_FILE = "_horizon.json"
"""Written beside the labels: the churn horizon they use and why (`features.history`)."""


def read_labels(settings: Settings, complete_only: bool = True) -> pd.DataFrame:
    """The churn labels written by `loyal features build`, one row per customer and snapshot.

    Args:
        settings: where the feature tables live.
        complete_only: keep only labels whose whole horizon lies inside the observed data.
    """
    path = settings.paths.features_dir / LABELS_FILE
    if not path.is_file():
        raise NotReadyError("no churn labels found: run `loyal features build` first")
    labels = pd.read_parquet(path)
    if complete_only:
        labels = labels[labels["label_complete"]]
    return labels.reset_index(drop=True)


def training_frame(
    settings: Settings,
    service: str,
    entities: pd.DataFrame | None = None,
    with_labels: bool = True,
) -> pd.DataFrame:
    """Features of a feature service as of each (customer, timestamp), plus labels.

    Every value comes from Feast's point-in-time join (`get_historical_features`), so a row
    sees only what was known at its timestamp, exactly as the online store would have served.

    Args:
        settings: the active settings (feature store and feature tables).
        service: a feature service name, e.g. `churn_v1`.
        entities: `customer_id` and `event_timestamp` rows to fetch (default: every row with a
            complete churn label).
        with_labels: join the churn label (`churned`) and `label_complete` columns.

    Returns:
        One row per entity row, ordered by timestamp then customer.
    """
    labels = read_labels(settings, complete_only=entities is None)
    rows = labels if entities is None else entities
    keys = rows[[ENTITY_KEY, TIMESTAMP_FIELD]].copy()
    keys[TIMESTAMP_FIELD] = pd.to_datetime(keys[TIMESTAMP_FIELD], utc=True)
    log.info("Fetching %s features for %d customer-snapshots through Feast", service, len(keys))
    frame = historical_features(open_store(settings), service, keys)
    if with_labels:
        label_columns = labels[[ENTITY_KEY, TIMESTAMP_FIELD, "churned", "label_complete"]].copy()
        label_columns[TIMESTAMP_FIELD] = pd.to_datetime(label_columns[TIMESTAMP_FIELD], utc=True)
        frame = frame.merge(label_columns, on=[ENTITY_KEY, TIMESTAMP_FIELD], how="left")
    return frame.sort_values([TIMESTAMP_FIELD, ENTITY_KEY], kind="stable").reset_index(drop=True)


def read_horizon(settings: Settings) -> WindowChoice:
    """The churn horizon the built labels use (the configured one for an older feature build)."""
    path = settings.paths.features_dir / HORIZON_FILE
    configured = settings.snapshots.horizon_days
    if not path.is_file():
        return WindowChoice("churn horizon", configured, configured, "days", "configured")
    return WindowChoice(**json.loads(path.read_text(encoding="utf-8")))
