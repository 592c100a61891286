"""The CLV model's inputs from the transaction log, shared by CLV training and scoring.

Margins per transaction (`with_margins`), the observation end, trailing and holdout margins per
customer, and RFM summaries in the `lifetimes` conventions (`rfm_summary`, `calibration_holdout`).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from features.catalog import PROFILE, TIMESTAMP_FIELD
from features.contract import has_values
from loyal.errors import DataContractError, NotReadyError
from loyal.settings import Settings

log = logging.getLogger(__name__)

MARGIN_COLUMN = "monetary_margin"
REVENUE_COLUMN = "monetary_value"
_REQUIRED = ("customer_id", "ts", "amount")


def with_margins(
    transactions: pd.DataFrame, products: pd.DataFrame | None
) -> tuple[pd.DataFrame, str]:
    """A copy of the transactions with a `margin` column, and the summary column to model.

    A transaction's margin is its own `margin`, else amount x its product's `margin_rate`,
    else 0. A column that is all blank (the contract keeps absent optional columns as blanks)
    counts as absent: without any margin information the model falls back to revenue, never
    to a margin of 0.

    Returns:
        The transactions and `monetary_margin` (or `monetary_value` for revenue).
    """
    frame = transactions.copy()
    rates = None
    if products is not None and has_values(products, "margin_rate"):
        rates = products.set_index(products["product_id"].astype(str))["margin_rate"]
    given_known = has_values(frame, "margin")
    if not given_known and rates is None:
        log.warning(REVENUE_NOTE)
        return frame.drop(columns=["margin"], errors="ignore"), REVENUE_COLUMN
    given = frame["margin"].astype(float) if given_known else None
    derived = pd.Series(0.0, index=frame.index)
    if rates is not None:
        rate = frame["product_id"].astype(str).map(rates).astype(float)
        derived = (frame["amount"].astype(float) * rate).fillna(0.0)
    frame["margin"] = derived if given is None else given.fillna(derived)
    return frame, MARGIN_COLUMN


REVENUE_NOTE = (
    "no margin is known (no transaction margin, no product margin_rate): CLV is revenue-based"
)
"""Said in the output and logged in MLflow (`value_basis`) when CLV falls back to revenue."""


def snapshot_time(settings: Settings) -> pd.Timestamp | None:
    """The latest feature snapshot as a naive UTC timestamp, or None without feature tables.

    Read from the profile table (every customer of a snapshot has a profile row), which keeps
    Feast out of CLV training.
    """
    path = settings.paths.features_dir / f"{PROFILE.name}.parquet"
    if not path.is_file():
        return None
    stamps = pd.read_parquet(path, columns=[TIMESTAMP_FIELD])[TIMESTAMP_FIELD]
    if stamps.empty:
        return None
    return pd.Timestamp(stamps.max()).tz_convert("UTC").tz_localize(None)


def observation_end(settings: Settings, transactions: pd.DataFrame) -> pd.Timestamp:
    """Last day observed: the day before the latest snapshot, else the last transaction day."""
    snapshot = snapshot_time(settings)
    if snapshot is not None:
        return snapshot.normalize() - pd.Timedelta(days=1)
    if transactions.empty:
        raise NotReadyError("the transactions table is empty: there is nothing to fit CLV on")
    return pd.Timestamp(pd.to_datetime(transactions["ts"]).max()).normalize()


def holdout_margins(
    transactions: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp, customers: pd.Index
) -> np.ndarray:
    """Net margin (or revenue) of each customer in days `(start, end]`, aligned with `customers`."""
    days = pd.to_datetime(transactions["ts"]).dt.normalize()
    window = transactions[(days > start) & (days <= end)]
    money = "margin" if "margin" in window.columns else "amount"
    totals = window.groupby(window["customer_id"].astype(str))[money].sum()
    return totals.reindex(customers.astype(str), fill_value=0.0).to_numpy(dtype=float)


def trailing_margins(
    transactions: pd.DataFrame, end: pd.Timestamp, days: int, customers: pd.Index
) -> np.ndarray:
    """Net margin of each customer in the `days` days up to `end` (the naive value ranking)."""
    return holdout_margins(transactions, end - pd.Timedelta(days=days), end, customers)


def period_totals(transactions: pd.DataFrame, period: str = "D") -> pd.DataFrame:
    """Net transactions per customer and period.

    Args:
        transactions: contract ``transactions`` (customer_id, ts, amount; margin optional).
        period: pandas period alias for one purchase occasion ("D" days, "W" weeks).

    Returns:
        One row per customer and period with ``start`` (the period's first day), ``amount``,
        ``refunds`` (count of negative lines), ``purchase`` (whether the period counts as a
        purchase) and, when the input has it, ``margin``; sorted by customer and start.
    """
    missing = [c for c in _REQUIRED if c not in transactions.columns]
    if missing:
        raise DataContractError("transactions", "required column missing", column=missing[0])
    frame = pd.DataFrame(
        {
            "customer_id": transactions["customer_id"].astype(str).to_numpy(),
            "start": pd.to_datetime(transactions["ts"]).dt.to_period(period).dt.start_time,
            "amount": transactions["amount"].astype(float).to_numpy(),
        }
    )
    frame["refunds"] = (frame["amount"] < 0).astype(int)
    if "margin" in transactions.columns:
        frame["margin"] = transactions["margin"].astype(float).fillna(0.0).to_numpy()
    totals = frame.groupby(["customer_id", "start"], sort=True).sum().reset_index()
    totals["purchase"] = (totals["amount"] > 0) | (
        (totals["amount"] == 0) & (totals["refunds"] == 0)
    )
    return totals


def rfm_summary(
    transactions: pd.DataFrame,
    observation_end: str | pd.Timestamp,
    period: str = "D",
    time_unit_days: float = 7.0,
) -> pd.DataFrame:
    """RFM summary (frequency, recency, T, monetary_value) at ``observation_end`` (inclusive).

    Conventions follow `lifetimes` and the CDNOW papers, so published figures reproduce:

    - transactions are netted per customer and period (a day by default): several lines on
      one day are one purchase, and a refund is netted into the period it happens in;
    - a period is a purchase if its net amount is positive, or if it holds only zero-amount
      lines (free items, as in CDNOW); a period that refunds net to zero or below is not a
      purchase, and its net amount is dropped (kept in ``refund_amount`` for inspection);
    - ``frequency`` = number of purchase periods after the first (repeat purchases);
    - ``recency`` = time from the first to the last purchase period (0 when frequency is 0);
    - ``T`` = time from the first purchase period to ``observation_end``;
    - ``monetary_value`` = mean net amount of the repeat purchase periods (0 when frequency
      is 0), so it is never negative;
    - time is counted in units of ``time_unit_days`` days (7: weeks, as in the CDNOW papers).

    Args:
        transactions: contract ``transactions``.
        observation_end: last day observed; later transactions are ignored.
        period: purchase-occasion period ("D" or "W").
        time_unit_days: days per time unit of recency and T (7 gives weeks).

    Returns:
        One row per customer with a purchase period by ``observation_end``, indexed
        by customer_id; also ``monetary_margin`` when the input has margins, ``refund_amount``
        (net of refund-only periods, <= 0) and ``first_purchase``.
    """
    end = pd.Timestamp(observation_end)
    totals = period_totals(transactions, period)
    totals = totals[totals["start"] <= end]
    return _summarize(totals, end, time_unit_days)


def calibration_holdout(
    transactions: pd.DataFrame,
    calibration_end: str | pd.Timestamp,
    observation_end: str | pd.Timestamp,
    period: str = "D",
    time_unit_days: float = 7.0,
) -> pd.DataFrame:
    """Calibration summary plus the actual repeat purchases in the holdout.

    Customers are those with a purchase by ``calibration_end`` (inclusive); the holdout runs
    from the day after ``calibration_end`` to ``observation_end`` (inclusive).

    Args:
        transactions: contract ``transactions``.
        calibration_end: last day of the calibration window.
        observation_end: last day of the holdout window.
        period: purchase-occasion period ("D" or "W").
        time_unit_days: days per time unit (7 gives weeks).

    Returns:
        The calibration columns of :func:`rfm_summary` plus ``frequency_holdout`` (purchase
        periods in the holdout), ``monetary_value_holdout`` (their mean net amount, 0 if none)
        and ``duration_holdout`` (holdout length in time units).
    """
    cal_end, obs_end = pd.Timestamp(calibration_end), pd.Timestamp(observation_end)
    if obs_end <= cal_end:
        raise ValueError("observation_end must come after calibration_end")
    totals = period_totals(transactions, period)
    summary = _summarize(totals[totals["start"] <= cal_end], cal_end, time_unit_days)
    holdout = totals[(totals["start"] > cal_end) & (totals["start"] <= obs_end)]
    holdout = holdout[holdout["purchase"] & holdout["customer_id"].isin(summary.index)]
    grouped = holdout.groupby("customer_id")["amount"]
    summary["frequency_holdout"] = grouped.size().reindex(summary.index, fill_value=0)
    summary["monetary_value_holdout"] = grouped.mean().reindex(summary.index, fill_value=0.0)
    summary["duration_holdout"] = (obs_end - cal_end).days / time_unit_days
    return summary


def _summarize(totals: pd.DataFrame, end: pd.Timestamp, time_unit_days: float) -> pd.DataFrame:
    refunds = totals[~totals["purchase"]].groupby("customer_id")["amount"].sum()
    buys = totals[totals["purchase"]].copy()
    first = buys.groupby("customer_id")["start"].transform("min")
    buys["repeat"] = buys["start"] > first
    grouped = buys.groupby("customer_id")
    first_purchase = grouped["start"].min()
    repeats = buys[buys["repeat"]].groupby("customer_id")
    frequency = repeats.size().reindex(first_purchase.index, fill_value=0)
    days = (grouped["start"].max() - first_purchase).dt.days
    summary = pd.DataFrame(
        {
            "frequency": frequency.astype(int),
            "recency": days / time_unit_days,
            "T": (end - first_purchase).dt.days / time_unit_days,
            "monetary_value": repeats["amount"].mean().reindex(frequency.index, fill_value=0.0),
        }
    )
    if "margin" in buys.columns:
        margin = repeats["margin"].mean().reindex(frequency.index, fill_value=0.0)
        summary["monetary_margin"] = margin
    summary["refund_amount"] = refunds.reindex(summary.index, fill_value=0.0)
    summary["first_purchase"] = first_purchase
    summary.index.name = "customer_id"
    return summary
