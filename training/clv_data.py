"""CLV evaluation data: the public reference logs (CDNOW, Online Retail) as calibration/holdout
frames, the naive baseline and holdout metrics (the RFM summaries are `features.clv_inputs`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from features.clv_inputs import calibration_holdout

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
