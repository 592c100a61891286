"""Rows the uplift model learns from: past campaigns' members, their features and outcomes.

Each member of the contract's `campaigns` table becomes one row: the features as of the
campaign's `ts` (point in time, the same features the churn model reads), whether they were
contacted (`treated`), and the outcome over the churn horizon after `ts` (`stayed` = 1 - the
churn label). Only members whose label is complete (the window lies inside the data) count.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.catalog import ENTITY_KEY, TIMESTAMP_FIELD
from features.engineering import Tables, build_feature_tables
from features.labels import Definition, churn_labels
from loyal.errors import StepSkippedError

OUTCOME = "stayed"
TREATED = "treated"
MIN_PER_GROUP = 200
"""Fewest treated and control members with an outcome for an uplift model to be trained."""


def feature_frame(tables: Tables, snapshots: list[pd.Timestamp]) -> pd.DataFrame:
    """Every feature view joined, one row per (customer, snapshot) alive at the snapshot."""
    views = build_feature_tables(tables, snapshots)
    keys = [ENTITY_KEY, TIMESTAMP_FIELD]
    frame: pd.DataFrame | None = None
    for view in views.values():
        frame = view if frame is None else frame.merge(view, on=keys, how="outer")
    assert frame is not None
    return frame


def numeric_features(frame: pd.DataFrame, columns: list[str] | None = None) -> pd.DataFrame:
    """The feature columns as floats: booleans 0/1, text as category codes (-1: missing).

    Args:
        frame: features with keys.
        columns: which columns (default: every column but the keys, label and treatment).
    """
    skip = {ENTITY_KEY, TIMESTAMP_FIELD, OUTCOME, TREATED, "churned", "label_complete"}
    columns = columns or [c for c in frame.columns if c not in skip and c != "campaign_id"]
    out = {}
    for column in columns:
        values = frame[column]
        if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
            out[column] = pd.to_numeric(values, errors="coerce").astype(float)
        else:
            codes = pd.Categorical(values.astype("string")).codes.astype(float)
            out[column] = np.where(codes < 0, np.nan, codes)
    return pd.DataFrame(out, index=frame.index)


def campaign_rows(
    tables: Tables, horizon_days: int, definition: Definition = "auto"
) -> pd.DataFrame:
    """Members of past campaigns with features at `ts`, `treated` and `stayed`.

    Raises:
        StepSkippedError: the data has no campaigns table, or too few members with an outcome.
    """
    campaigns = tables.get("campaigns")
    if campaigns is None or campaigns.empty:
        raise StepSkippedError("no campaigns table: the uplift model learns from past campaigns")
    members = campaigns[["campaign_id", ENTITY_KEY, "ts", TREATED]].copy()
    members[ENTITY_KEY] = members[ENTITY_KEY].astype(str)
    members[TIMESTAMP_FIELD] = pd.to_datetime(members["ts"]).dt.floor("s")
    members[TREATED] = members[TREATED].astype(bool)
    snapshots = sorted(pd.DatetimeIndex(members[TIMESTAMP_FIELD].unique()))
    labels = churn_labels(tables, snapshots, horizon_days, definition)
    labels = labels[labels["label_complete"]]
    labels[TIMESTAMP_FIELD] = labels[TIMESTAMP_FIELD].dt.tz_localize(None)
    features = feature_frame(tables, snapshots)
    features[TIMESTAMP_FIELD] = pd.to_datetime(features[TIMESTAMP_FIELD]).dt.tz_localize(None)
    keys = [ENTITY_KEY, TIMESTAMP_FIELD]
    rows = members.drop(columns=["ts"]).merge(labels[[*keys, "churned"]], on=keys)
    rows = rows.merge(features, on=keys, how="left")
    rows[OUTCOME] = 1 - rows.pop("churned").astype(int)
    counts = rows[TREATED].value_counts()
    if min(int(counts.get(True, 0)), int(counts.get(False, 0))) < MIN_PER_GROUP:
        raise StepSkippedError(
            f"too few campaign members with an outcome to learn uplift: "
            f"{int(counts.get(True, 0))} treated, {int(counts.get(False, 0))} control "
            f"(at least {MIN_PER_GROUP} each)"
        )
    return rows.sort_values([TIMESTAMP_FIELD, ENTITY_KEY], kind="stable").reset_index(drop=True)
