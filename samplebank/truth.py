"""Generator ground truth for evaluation only: the true churn probability of each labelled row.

The sample bank's generator draws each customer's closure month by month from a known hazard
(`data/truth/sample_bank/monthly_churn.parquet`: `customer_id`, `month` (its first day),
`churn_probability`, `closed`) and spreads a closure uniformly over the days of its month. The
probability that a customer at risk at snapshot `t` closes within `[t, t + horizon)` is then

    1 - prod_m (1 - p_m * overlap_m)

over the months `m` the window touches, where `overlap_m` is the share of month `m`'s days that
lie inside the window (1 for whole months, a fraction for the month the window ends in).

The hazard of a month exists only while the customer is at risk; after a closure the generator
stops drawing, so for the remaining months of a churner's window the closing month's hazard is
carried forward (a stand-in for the unobservable counterfactual). The future months' hazards
depend on what happened after `t` (complaints, activity), and every hazard holds each
customer's hidden frailty (a normal draw nothing in the data reveals), so this "oracle" knows
more than anything observable at `t`: its ROC-AUC is an upper bound, not a reachable target.
`ceilings` gives two tighter ones (without the frailty draw; the snapshot month's hazard only).

Nothing here is ever a model input: the truth folder is read only when it exists, and only to
add an evaluation column beside the label.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from features.catalog import ENTITY_KEY, TIMESTAMP_FIELD
from loyal.errors import DataContractError
from loyal.settings import Settings

log = logging.getLogger(__name__)

SAMPLE_BANK = "sample_bank"
MONTHLY_CHURN_FILE = "monthly_churn.parquet"
ORACLE_COLUMN = "true_churn_probability"
_TRUTH_COLUMNS = ("customer_id", "month", "churn_probability")


def truth_folder(settings: Settings, dataset: str = SAMPLE_BANK) -> Path:
    """Where the generator keeps a dataset's ground truth."""
    return settings.paths.truth_dir / dataset


def read_monthly_churn(settings: Settings, dataset: str = SAMPLE_BANK) -> pd.DataFrame | None:
    """The generator's monthly closure hazards, or None when there is no ground truth.

    Raises:
        DataContractError: the file exists but lacks a column the oracle needs.
    """
    path = truth_folder(settings, dataset) / MONTHLY_CHURN_FILE
    if not path.is_file():
        return None
    frame = pd.read_parquet(path)
    missing = [c for c in _TRUTH_COLUMNS if c not in frame.columns]
    if missing:
        raise DataContractError("monthly_churn (ground truth)", "column missing", missing[0])
    return frame


def _naive_utc(values: pd.Series | pd.DatetimeIndex) -> pd.DatetimeIndex:
    stamps = pd.DatetimeIndex(pd.to_datetime(values))
    return stamps.tz_convert("UTC").tz_localize(None) if stamps.tz is not None else stamps


def hazard_matrix(monthly: pd.DataFrame) -> tuple[pd.Index, pd.DatetimeIndex, np.ndarray]:
    """Customers x months of monthly hazards, carried forward after a customer's last month.

    Months before a customer was at risk stay 0 (no closure could happen there).

    Returns:
        The customer index, the sorted month starts and the dense float matrix.
    """
    customers = pd.Index(pd.unique(monthly["customer_id"].astype(str)))
    months = pd.DatetimeIndex(np.sort(_naive_utc(monthly["month"]).unique()))
    rows = customers.get_indexer(pd.Index(monthly["customer_id"].astype(str)))
    cols = months.get_indexer(_naive_utc(monthly["month"]))
    dense = np.full((len(customers), len(months)), np.nan)
    dense[rows, cols] = monthly["churn_probability"].to_numpy(float)
    filled = pd.DataFrame(dense).ffill(axis=1).fillna(0.0).to_numpy()
    return customers, months, filled


def window_overlap(months: pd.DatetimeIndex, start: pd.Timestamp, horizon_days: int) -> np.ndarray:
    """Share of each month's days inside `[start, start + horizon_days)` (0 outside)."""
    begin = months.asi8
    ends = (months + pd.offsets.MonthBegin(1)).asi8
    first = pd.Timestamp(start).value
    stop = (pd.Timestamp(start) + pd.Timedelta(days=horizon_days)).value
    inside = (np.minimum(ends, stop) - np.maximum(begin, first)) / (ends - begin)
    return np.clip(np.asarray(inside, dtype=float), 0.0, 1.0)


def window_probability(rows: pd.DataFrame, monthly: pd.DataFrame, horizon_days: int) -> np.ndarray:
    """True probability of closing within the horizon after each (customer, snapshot) row.

    Args:
        rows: `customer_id` and `event_timestamp` columns (the labelled rows).
        monthly: the generator's monthly hazards (see `read_monthly_churn`).
        horizon_days: the label horizon.

    Returns:
        One probability per row, in row order; NaN for a customer the truth does not know.
    """
    customers, months, hazard = hazard_matrix(monthly)
    who = customers.get_indexer(pd.Index(rows[ENTITY_KEY].astype(str)))
    when = _naive_utc(rows[TIMESTAMP_FIELD])
    result = np.full(len(rows), np.nan)
    for snapshot in when.unique():
        at = np.flatnonzero((when == snapshot) & (who >= 0))
        overlap = window_overlap(months, pd.Timestamp(snapshot), horizon_days)
        survive = np.prod(1.0 - hazard[who[at]] * overlap, axis=1)
        result[at] = 1.0 - survive
    unknown = int((who < 0).sum())
    if unknown:
        log.warning("%d labelled rows have no ground truth (oracle left NaN)", unknown)
    return result


def with_oracle(
    frame: pd.DataFrame, settings: Settings, horizon_days: int, dataset: str = SAMPLE_BANK
) -> tuple[pd.DataFrame, str | None]:
    """A copy of a labelled frame with the true churn probability beside the label.

    Args:
        frame: rows with `customer_id` and `event_timestamp`.
        settings: where the ground truth lives (`settings.paths.truth_dir`).
        horizon_days: the label horizon.
        dataset: the truth sub-folder.

    Returns:
        The new frame and the oracle column name, or the frame unchanged and None when the
        data has no ground truth (any user's own data).
    """
    monthly = read_monthly_churn(settings, dataset)
    if monthly is None:
        return frame, None
    out = frame.copy()
    out[ORACLE_COLUMN] = window_probability(out, monthly, horizon_days)
    return out, ORACLE_COLUMN


# ----------------------------------------------------------------- what a model could know
CUSTOMERS_TRUTH_FILE = "customers_truth.parquet"
WITHOUT_FRAILTY_COLUMN = "true_churn_probability_without_frailty"
SNAPSHOT_HAZARD_COLUMN = "true_snapshot_hazard_without_frailty"


def frailty_noise(settings: Settings, dataset: str = SAMPLE_BANK) -> pd.Series | None:
    """Each customer's hidden churn frailty beyond their segment's, or None without truth.

    The generator's `churn_frailty` is the hazard's intercept plus the segment's offset plus a
    per-customer normal draw; the draw is what nothing in the data reveals. It is estimated as
    the frailty minus its segment mean (the draws average out within a segment).
    """
    path = truth_folder(settings, dataset) / CUSTOMERS_TRUTH_FILE
    if not path.is_file():
        return None
    truth = pd.read_parquet(path, columns=["customer_id", "true_segment", "churn_frailty"])
    segment_mean = truth.groupby("true_segment", observed=True)["churn_frailty"].transform("mean")
    return pd.Series(
        (truth["churn_frailty"] - segment_mean).to_numpy(float),
        index=truth["customer_id"].astype(str).to_numpy(),
    )


def _shift_logit(probability: np.ndarray, shift: np.ndarray) -> np.ndarray:
    p = np.clip(probability, 1e-12, 1 - 1e-12)
    return 1.0 / (1.0 + np.exp(-(np.log(p / (1 - p)) - shift)))


def ceilings(
    rows: pd.DataFrame, settings: Settings, horizon_days: int, dataset: str = SAMPLE_BANK
) -> pd.DataFrame | None:
    """Two tighter ceilings than the oracle, for labelled rows (evaluation only).

    Columns (None when the data has no ground truth):

    * `true_churn_probability_without_frailty`: the oracle with each customer's hidden frailty
      draw taken out of every monthly hazard (it still knows the events after the snapshot);
    * `true_snapshot_hazard_without_frailty`: the hazard of the snapshot's own month without the
      frailty draw: a function of what happened before the snapshot and of the segment only,
      so the best a model seeing everything observable at the snapshot could rank by.

    Args:
        rows: `customer_id` and `event_timestamp` columns.
        settings: where the ground truth lives.
        horizon_days: the label horizon.
        dataset: the truth sub-folder.
    """
    monthly = read_monthly_churn(settings, dataset)
    noise = frailty_noise(settings, dataset)
    if monthly is None or noise is None:
        return None
    ids = monthly["customer_id"].astype(str)
    shift = noise.reindex(ids.to_numpy()).fillna(0.0).to_numpy()
    adjusted = monthly.assign(
        churn_probability=_shift_logit(monthly["churn_probability"].to_numpy(float), shift)
    )
    customers, months, hazard = hazard_matrix(adjusted)
    who = customers.get_indexer(pd.Index(rows[ENTITY_KEY].astype(str)))
    month = months.get_indexer(_naive_utc(rows[TIMESTAMP_FIELD]))
    known = (who >= 0) & (month >= 0)
    snapshot = np.full(len(rows), np.nan)
    snapshot[known] = hazard[who[known], month[known]]
    return pd.DataFrame(
        {
            WITHOUT_FRAILTY_COLUMN: window_probability(rows, adjusted, horizon_days),
            SNAPSHOT_HAZARD_COLUMN: snapshot,
        },
        index=rows.index,
    )
