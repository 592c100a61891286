"""DuckDB's per-customer aggregates of the transaction log equal the pandas functions'."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.clv_inputs import calibration_holdout, rfm_summary, trailing_margins, with_margins
from features.log_aggregates import TransactionLog, margins_of
from tests.unit.test_scoring_batch import END, PRODUCTS, SNAPSHOT, _log
from training.segments import category_mix, category_mix_of, channel_mix, channel_mix_of

pytestmark = pytest.mark.unit

CUSTOMERS = pd.Index(["C01", "C02", "C03", "C04", "C05", "X99"])


def logs(
    tmp_path: Path, frame: pd.DataFrame, products: pd.DataFrame | None
) -> list[TransactionLog]:
    """The same log in memory and as a Parquet file (several row groups)."""
    path = tmp_path / "transactions.parquet"
    frame.to_parquet(path, index=False, row_group_size=4)
    in_memory = TransactionLog.of_frames(frame, products)
    on_disk = TransactionLog(path, products, in_memory.given_margin, temp_dir=tmp_path)
    return [in_memory, on_disk]


@pytest.mark.parametrize("period", ["D", "W"])
@pytest.mark.parametrize("revenue", [False, True])
def test_summaries_equal_the_pandas_ones(tmp_path: Path, period: str, revenue: bool) -> None:
    frame = _log().drop(columns=["margin"]) if revenue else _log()
    products = None if revenue else PRODUCTS
    transactions, value_column = with_margins(frame, products)
    expected = rfm_summary(transactions, END, period=period, time_unit_days=7.0)
    cal_end = END - pd.Timedelta(weeks=8)
    split = calibration_holdout(transactions, cal_end, END, period=period)
    trailing = trailing_margins(transactions, END, 90, CUSTOMERS)
    for log in logs(tmp_path, frame, products):
        assert log.value_column == value_column
        got = log.rfm_summary(END, period=period, time_unit_days=7.0)
        pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-12)
        got_split, got_full = log.holdout_and_full(cal_end, END, period=period)
        pd.testing.assert_frame_equal(got_split, split, check_exact=False, rtol=1e-12)
        pd.testing.assert_frame_equal(got_full, expected, check_exact=False, rtol=1e-12)
        window = log.window_totals(END - pd.Timedelta(days=90), END)
        np.testing.assert_allclose(margins_of(window, CUSTOMERS).to_numpy(), trailing, rtol=1e-12)
        assert log.bounds() == (frame["ts"].min(), frame["ts"].max())


def test_channel_and_category_mixes_equal_the_pandas_ones(tmp_path: Path) -> None:
    frame = _log()
    groups = pd.Series({"p1": "cards", "p2": "loans"})
    expected_channels = channel_mix(frame, SNAPSHOT, 120)
    expected_categories = category_mix(frame, groups, SNAPSHOT, 120)
    for log in logs(tmp_path, frame, PRODUCTS):
        pd.testing.assert_frame_equal(channel_mix_of(log, SNAPSHOT, 120), expected_channels)
        got = category_mix_of(log, groups, SNAPSHOT, 120)
        pd.testing.assert_frame_equal(got, expected_categories)


def test_a_log_without_channels_has_no_channel_mix(tmp_path: Path) -> None:
    for log in logs(tmp_path, _log().drop(columns=["channel"]), PRODUCTS):
        assert channel_mix_of(log, SNAPSHOT, 120).empty


def test_sums_do_not_depend_on_the_order_of_the_rows(tmp_path: Path) -> None:
    """DuckDB's threads add a group's rows in no fixed order: the money sums must not care."""
    rng = np.random.default_rng(5)
    rows = 60_000
    days = pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.integers(0, 360, rows), unit="D")
    frame = pd.DataFrame(
        {
            "customer_id": rng.choice(["C01", "C02", "C03"], rows),
            "ts": days,
            "product_id": "p1",
            "amount": rng.lognormal(3.0, 1.5, rows).round(2) * rng.choice([1, 1, 1, -1], rows),
            "margin": rng.normal(0.37, 0.2, rows),
        }
    )
    end, cal_end = pd.Timestamp("2025-12-31"), pd.Timestamp("2025-09-30")
    results = []
    for seed in (1, 2, 3):
        shuffled = frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)
        log = TransactionLog.of_frames(shuffled, PRODUCTS)
        results.append(
            (
                log.holdout_and_full(cal_end, end, period="D")[0],
                log.window_totals(end - pd.Timedelta(days=90), end).sort_index(),
            )
        )
    for split, totals in results[1:]:
        pd.testing.assert_frame_equal(split, results[0][0], check_exact=True)
        pd.testing.assert_series_equal(totals, results[0][1], check_exact=True)
