"""Churn labels: forward-looking within the horizon only, for closure and inactivity alike."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.catalog import ENTITY_KEY, TIMESTAMP_FIELD
from features.labels import LABEL_COLUMNS, churn_definition, churn_labels

pytestmark = pytest.mark.unit

T = pd.Timestamp("2025-03-01")
H = 90
DAY = pd.Timedelta(days=1)
SECOND = pd.Timedelta(seconds=1)


def _bank(closed: dict[str, pd.Timestamp | None]) -> dict[str, pd.DataFrame]:
    ids = list(closed)
    customers = pd.DataFrame(
        {
            "customer_id": ids,
            "signup_date": [pd.Timestamp("2024-01-01")] * len(ids),
            "closed_at": pd.to_datetime([closed[i] for i in ids]),
        }
    )
    transactions = pd.DataFrame(
        {
            "customer_id": ids,
            "ts": [pd.Timestamp("2024-02-01")] * len(ids),
            "product_id": ["checking"] * len(ids),
            "amount": [1.0] * len(ids),
        }
    )
    products = pd.DataFrame({"product_id": ["checking"]})
    return {"customers": customers, "transactions": transactions, "products": products}


def _by_customer(labels: pd.DataFrame) -> dict[str, int]:
    return dict(zip(labels[ENTITY_KEY], labels["churned"], strict=True))


def test_closure_labels_look_only_forward_within_the_horizon() -> None:
    tables = _bank(
        {
            "after_horizon": T + H * DAY + DAY,
            "at_horizon_end": T + H * DAY,
            "inside": T + H * DAY - DAY,
            "at_snapshot": T,
            "before": T - DAY,
            "stays": None,
        }
    )
    labels = churn_labels(tables, [T], horizon_days=H, definition="closure")
    assert _by_customer(labels) == {
        "after_horizon": 0,
        "at_horizon_end": 0,
        "inside": 1,
        "at_snapshot": 1,
        "stays": 0,
    }


def test_customers_signed_up_at_or_after_the_snapshot_are_not_labelled() -> None:
    tables = _bank({"old": None, "same_day": None, "later": None})
    tables["customers"]["signup_date"] = [pd.Timestamp("2024-01-01"), T, T + DAY]
    assert list(churn_labels(tables, [T], definition="closure")[ENTITY_KEY]) == ["old"]


def _shop(purchases: dict[str, list[tuple[pd.Timestamp, float]]]) -> dict[str, pd.DataFrame]:
    ids = list(purchases)
    customers = pd.DataFrame(
        {"customer_id": ids, "signup_date": [pd.Timestamp("2023-01-01")] * len(ids)}
    )
    rows = [(c, ts, "mug", amount) for c, events in purchases.items() for ts, amount in events]
    transactions = pd.DataFrame(rows, columns=["customer_id", "ts", "product_id", "amount"])
    products = pd.DataFrame({"product_id": ["mug"]})
    end = pd.DataFrame(  # someone buying late keeps every horizon observed
        {"customer_id": ["z"], "ts": [T + 400 * DAY], "product_id": ["mug"], "amount": [1.0]}
    )
    customers = pd.concat(
        [customers, pd.DataFrame({"customer_id": ["z"], "signup_date": [T + 300 * DAY]})]
    )
    return {
        "customers": customers.reset_index(drop=True),
        "transactions": pd.concat([transactions, end], ignore_index=True),
        "products": products,
    }


def test_inactivity_labels_look_only_forward_within_the_horizon() -> None:
    before = T - 10 * DAY
    tables = _shop(
        {
            "quiet": [(before, 5.0)],
            "buys_at_snapshot": [(before, 5.0), (T, 5.0)],
            "buys_last_second": [(before, 5.0), (T + H * DAY - SECOND, 5.0)],
            "buys_after": [(before, 5.0), (T + H * DAY, 5.0)],
            "only_refunds_after": [(before, 5.0), (T + DAY, -5.0)],
            "active_last_second": [(T - SECOND, 5.0)],
            "inactive_a_year": [(T - 366 * DAY, 5.0)],
            "never": [(T + DAY, 5.0)],
        }
    )
    labels = churn_labels(tables, [T], horizon_days=H, definition="inactivity")
    assert _by_customer(labels) == {
        "quiet": 1,
        "buys_at_snapshot": 0,
        "buys_last_second": 0,
        "buys_after": 1,
        "only_refunds_after": 1,
        "active_last_second": 1,
    }
    assert labels["label_complete"].all()


def test_auto_picks_closure_only_when_closures_are_known() -> None:
    bank = _bank({"a": T + DAY, "b": None})
    assert churn_definition(bank) == "closure"
    bank["customers"]["closed_at"] = pd.NaT
    assert churn_definition(bank) == "inactivity"
    shop = _shop({"a": [(T - DAY, 1.0)]})
    assert churn_definition(shop) == "inactivity"
    assert churn_definition(shop, "closure") == "closure"
    with pytest.raises(ValueError, match="unknown churn definition"):
        churn_definition(shop, "vibes")  # type: ignore[arg-type]


def test_labels_whose_horizon_passes_the_data_end_are_incomplete() -> None:
    tables = _bank({"a": pd.Timestamp("2025-05-31"), "b": None})  # data ends 2025-06-01
    snapshots = [T, pd.Timestamp("2025-04-01")]
    labels = churn_labels(tables, snapshots, horizon_days=H, definition="closure")
    complete = labels.groupby(TIMESTAMP_FIELD)["label_complete"].first()
    assert list(complete) == [True, False]
    later = churn_labels(tables, snapshots, definition="closure", observed_end="2025-07-01")
    assert later["label_complete"].all()


def test_label_frame_types() -> None:
    labels = churn_labels(_bank({"a": T + DAY, "b": None}), [T, T + 2 * DAY])
    assert tuple(labels.columns) == LABEL_COLUMNS
    assert str(labels[TIMESTAMP_FIELD].dtype) == "datetime64[ns, UTC]"
    assert labels["churned"].dtype == np.int64 and labels["label_complete"].dtype == bool
    assert list(labels[ENTITY_KEY]) == ["a", "b", "b"]
    empty = churn_labels(_bank({"a": None}), [])
    assert tuple(empty.columns) == LABEL_COLUMNS and empty.empty


def test_labels_do_not_mutate_inputs() -> None:
    tables = _shop({"a": [(T - DAY, 1.0)], "b": [(T + DAY, 1.0)]})
    copies = {name: frame.copy(deep=True) for name, frame in tables.items()}
    churn_labels(tables, [T, T + 5 * DAY])
    for name, frame in tables.items():
        pd.testing.assert_frame_equal(frame, copies[name], obj=name)
