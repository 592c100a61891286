"""CLV training data: RFM summaries and calibration/holdout splits from a transaction log."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from loyal.errors import DataContractError

SUMMARY_COLUMNS = ["frequency", "recency", "T", "monetary_value"]
_REQUIRED = ("customer_id", "ts", "amount")


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


# ---------------------------------------------------------------------------------------------
# Readers for the reference data sets (shared/data); ingestion presets live elsewhere.

_RETAIL_PRODUCT_CODE = r"^\d{5}"


def read_cdnow_summary(path: str | Path) -> pd.DataFrame:
    """The published CDNOW calibration summary (2,357 customers, time in weeks).

    Reads either ``cdnow_customers_summary.csv`` (ID, frequency, recency, T) or
    ``cdnow_customers_summary_with_transactions.csv`` (ID, x, t_x, T, zbar).

    Returns:
        Frame indexed by customer_id with frequency, recency, T and, when the file has it,
        monetary_value (mean repeat spend; 0 for one-time buyers).
    """
    raw = pd.read_csv(path)
    raw.columns = [c.strip() for c in raw.columns]
    renamed = raw.rename(
        columns={"ID": "customer_id", "x": "frequency", "t_x": "recency", "zbar": "monetary_value"}
    )
    renamed["customer_id"] = renamed["customer_id"].astype(str)
    return renamed.set_index("customer_id")


def read_cdnow_log(path: str | Path) -> pd.DataFrame:
    """CDNOW purchase log (``CDNOW_sample.txt`` or ``CDNOW_master.txt``) as contract transactions.

    Returns:
        customer_id (the master id, zero-padded string), ts, product_id ("cd"), amount (USD) and
        quantity (number of CDs).
    """
    path = Path(path)
    raw = pd.read_csv(path, sep=r"\s+", header=None, dtype=str)
    if raw.shape[1] == 5:  # the sample: master id, sample id, date, CDs, USD
        raw = raw.drop(columns=1)
    raw.columns = ["customer_id", "date", "quantity", "amount"]
    raw = raw[raw["date"].str.fullmatch(r"\d{8}")]  # the master file carries a header line
    return pd.DataFrame(
        {
            "customer_id": raw["customer_id"].to_numpy(),
            "ts": pd.to_datetime(raw["date"], format="%Y%m%d").to_numpy(),
            "product_id": "cd",
            "amount": raw["amount"].astype(float).to_numpy(),
            "quantity": raw["quantity"].astype(int).to_numpy(),
        }
    )


def read_online_retail(path: str | Path) -> pd.DataFrame:
    """UCI Online Retail as contract transactions.

    Rows without a CustomerID (guest checkouts) and non-product codes (postage, manual
    adjustments, discounts, bank charges, fees, vouchers: any StockCode not starting with
    five digits) are dropped. ``amount`` = Quantity x UnitPrice, negative for cancellations.

    Returns:
        customer_id (integer string), ts, product_id (StockCode), amount (GBP).
    """
    raw = pd.read_csv(
        path,
        dtype={"InvoiceNo": str, "StockCode": str, "CustomerID": float},
        usecols=["InvoiceNo", "StockCode", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID"],
    )
    raw = raw[raw["CustomerID"].notna() & raw["StockCode"].str.match(_RETAIL_PRODUCT_CODE)]
    return pd.DataFrame(
        {
            "customer_id": raw["CustomerID"].astype(np.int64).astype(str).to_numpy(),
            "ts": pd.to_datetime(raw["InvoiceDate"]).to_numpy(),
            "product_id": raw["StockCode"].to_numpy(),
            "amount": (raw["Quantity"] * raw["UnitPrice"]).to_numpy(),
        }
    )


# ---------------------------------------------------------------------------------------------
# Holdout evaluation.


def naive_forecast(summary: pd.DataFrame) -> np.ndarray:
    """The naive baseline: each customer's calibration rate times the holdout length.

    Rate = frequency / T (0 when T is 0, i.e. the first purchase was on the last day).
    """
    T = summary["T"].to_numpy(dtype=float)
    rate = np.divide(
        summary["frequency"].to_numpy(dtype=float), T, out=np.zeros_like(T), where=T > 0
    )
    return rate * summary["duration_holdout"].to_numpy(dtype=float)


def holdout_metrics(summary: pd.DataFrame, predicted: np.ndarray) -> dict[str, float]:
    """Errors of predicted holdout repeat purchases against the actual ones.

    Args:
        summary: a :func:`calibration_holdout` frame.
        predicted: predicted repeat purchases per customer, aligned with ``summary``.

    Returns:
        ``mae``, ``rmse``, ``predicted_total``, ``actual_total``, ``naive_mae``,
        ``naive_rmse`` and ``customers``.
    """
    actual = summary["frequency_holdout"].to_numpy(dtype=float)
    error = np.asarray(predicted, dtype=float) - actual
    naive_error = naive_forecast(summary) - actual
    return {
        "mae": float(np.mean(np.abs(error))),
        "rmse": float(np.sqrt(np.mean(error**2))),
        "predicted_total": float(np.sum(predicted)),
        "actual_total": float(actual.sum()),
        "naive_mae": float(np.mean(np.abs(naive_error))),
        "naive_rmse": float(np.sqrt(np.mean(naive_error**2))),
        "customers": float(len(actual)),
    }


def decile_calibration(summary: pd.DataFrame, predicted: np.ndarray) -> pd.DataFrame:
    """Mean predicted vs actual holdout purchases by decile of the prediction (1 = lowest).

    Customers are ordered by prediction (ties by position) and cut into ten equal groups.
    """
    order = np.argsort(np.asarray(predicted, dtype=float), kind="stable")
    decile = np.empty(len(order), dtype=int)
    decile[order] = np.arange(len(order)) * 10 // max(len(order), 1) + 1
    frame = pd.DataFrame(
        {
            "decile": decile,
            "predicted": np.asarray(predicted, dtype=float),
            "actual": summary["frequency_holdout"].to_numpy(dtype=float),
        }
    )
    return frame.groupby("decile")[["predicted", "actual"]].mean()


# ---------------------------------------------------------------------------------------------
# The reference splits: CDNOW (Fader, Hardie & Lee 2005) and UCI Online Retail.

CDNOW_CALIBRATION_END = "1997-09-30"  # calibration 1997-01-01..1997-09-30 (39 weeks)
CDNOW_OBSERVATION_END = "1998-06-30"  # holdout 1997-10-01..1998-06-30 (39 weeks)
RETAIL_CALIBRATION_END = "2011-09-09"  # calibration 2010-12-01..2011-09-09
RETAIL_OBSERVATION_END = "2011-12-09"  # holdout 2011-09-10..2011-12-09 (13 weeks)


def cdnow_split(data_dir: str | Path) -> pd.DataFrame:
    """The CDNOW sample log as a calibration/holdout frame (weeks, daily purchase occasions)."""
    log = read_cdnow_log(Path(data_dir) / "cdnow" / "CDNOW_sample.txt")
    return calibration_holdout(log, CDNOW_CALIBRATION_END, CDNOW_OBSERVATION_END)


def retail_split(data_dir: str | Path) -> pd.DataFrame:
    """UCI Online Retail as a calibration/holdout frame (weeks, daily purchase occasions)."""
    log = read_online_retail(Path(data_dir) / "online_retail" / "online_retail.csv.gz")
    return calibration_holdout(log, RETAIL_CALIBRATION_END, RETAIL_OBSERVATION_END)
