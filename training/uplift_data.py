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
MIN_PER_GROUP = 100
"""Fewest treated and control members with an outcome for an uplift model to be trained."""
MIN_PER_OUTCOME = 5
"""Fewest members who stayed, and who left, in each group (the learner's cross-fitting folds)."""


def feature_frame(tables: Tables, snapshots: list[pd.Timestamp]) -> pd.DataFrame:
    """Every feature view joined, one row per (customer, snapshot) alive at the snapshot."""
    views = build_feature_tables(tables, snapshots)
    keys = [ENTITY_KEY, TIMESTAMP_FIELD]
    frame: pd.DataFrame | None = None
    for view in views.values():
        frame = view if frame is None else frame.merge(view, on=keys, how="outer")
    assert frame is not None
    return frame


def vocabulary(frame: pd.DataFrame, columns: list[str]) -> dict[str, list[str]]:
    """The sorted values of each text column (their codes are their positions)."""
    return {
        c: sorted(str(v) for v in frame[c].dropna().unique())
        for c in columns
        if not (pd.api.types.is_bool_dtype(frame[c]) or pd.api.types.is_numeric_dtype(frame[c]))
    }


def feature_columns(frame: pd.DataFrame) -> list[str]:
    """Every column but the keys, the outcome, the treatment and bookkeeping."""
    skip = {ENTITY_KEY, TIMESTAMP_FIELD, OUTCOME, TREATED, "churned", "label_complete"}
    return [c for c in frame.columns if c not in skip and c != "campaign_id"]


def numeric_features(
    frame: pd.DataFrame,
    columns: list[str] | None = None,
    vocab: dict[str, list[str]] | None = None,
) -> pd.DataFrame:
    """The feature columns as floats: booleans 0/1, text as codes in `vocab` (NaN: unknown).

    Args:
        frame: features with keys.
        columns: which columns (default: `feature_columns(frame)`); missing ones are NaN.
        vocab: the text columns' values (default: `vocabulary(frame, columns)`), so the codes
            at scoring time are those of training.
    """
    columns = columns or feature_columns(frame)
    vocab = vocab if vocab is not None else vocabulary(frame, columns)
    out = {}
    for column in columns:
        if column not in frame.columns:
            out[column] = np.full(len(frame), np.nan)
        elif column in vocab:
            codes = pd.Categorical(frame[column].astype("string"), categories=vocab[column]).codes
            out[column] = np.where(codes < 0, np.nan, codes.astype(float))
        else:
            out[column] = pd.to_numeric(frame[column], errors="coerce").astype(float).to_numpy()
    return pd.DataFrame(out, index=frame.index)


def campaign_rows(
    tables: Tables, horizon_days: int, definition: Definition = "auto"
) -> pd.DataFrame:
    """Members of past campaigns with `treated`, `stayed` and every feature at `ts` (built
    here from the tables, without Feast: the benchmark's path).

    Raises:
        StepSkippedError: the data has no campaigns table, or too few members with an outcome.
    """
    members = campaign_members(tables, horizon_days, definition)
    snapshots = sorted(pd.DatetimeIndex(members[TIMESTAMP_FIELD].unique()))
    features = feature_frame(tables, snapshots)
    features[TIMESTAMP_FIELD] = pd.to_datetime(features[TIMESTAMP_FIELD]).dt.tz_localize(None)
    return members.merge(features, on=[ENTITY_KEY, TIMESTAMP_FIELD], how="left")


def campaign_members(
    tables: Tables, horizon_days: int, definition: Definition = "auto"
) -> pd.DataFrame:
    """Members of past campaigns with a complete outcome: keys (naive UTC), `campaign_id`,
    `treated` and `stayed`, by time then customer.

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
    keys = [ENTITY_KEY, TIMESTAMP_FIELD]
    rows = members.drop(columns=["ts"]).merge(labels[[*keys, "churned"]], on=keys)
    rows[OUTCOME] = 1 - rows.pop("churned").astype(int)
    counts = rows[TREATED].value_counts()
    if min(int(counts.get(True, 0)), int(counts.get(False, 0))) < MIN_PER_GROUP:
        raise StepSkippedError(
            f"too few campaign members with an outcome to learn uplift: "
            f"{int(counts.get(True, 0))} treated, {int(counts.get(False, 0))} control "
            f"(at least {MIN_PER_GROUP} each)"
        )
    outcomes = pd.crosstab(rows[TREATED], rows[OUTCOME]).reindex(
        index=[True, False], columns=[1, 0], fill_value=0
    )
    counted = outcomes.to_numpy(dtype=int)
    if int(counted.min()) < MIN_PER_OUTCOME:
        shown = ", ".join(
            f"{group} {outcome} {counted[i, j]}"
            for i, group in enumerate(("treated", "control"))
            for j, outcome in enumerate(("stayed", "left"))
        )
        raise StepSkippedError(
            f"too few campaign members of each outcome to learn uplift: {shown} "
            f"(at least {MIN_PER_OUTCOME} who stayed and who left in each group)"
        )
    return rows.sort_values([TIMESTAMP_FIELD, ENTITY_KEY], kind="stable").reset_index(drop=True)
