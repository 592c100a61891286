"""Windows sized from the history: churn horizon, CLV holdout, cross-sell target window."""

from __future__ import annotations

import pandas as pd
import pytest

from features.history import (
    MIN_CHURN_HORIZON_DAYS,
    churn_horizon,
    clv_holdout,
    cross_sell_window,
    history_days,
)

pytestmark = pytest.mark.unit


def month_starts(first: str, last: str) -> list[pd.Timestamp]:
    return list(pd.date_range(first, last, freq="MS"))


def test_a_long_history_keeps_the_configured_horizon() -> None:
    choice = churn_horizon(month_starts("2024-02-01", "2025-01-01"), pd.Timestamp("2025-01-01"), 90)
    assert choice.chosen == 90 and not choice.shortened
    assert "configured" in choice.reason


def test_four_months_get_a_four_week_horizon() -> None:
    # Data from 2026-01-01 to 2026-04-30: populated snapshots Feb 1 .. May 1, observed until May 1.
    snapshots = month_starts("2026-02-01", "2026-05-01")
    choice = churn_horizon(snapshots, pd.Timestamp("2026-05-01"), 90)
    assert choice.chosen == MIN_CHURN_HORIZON_DAYS == 28
    assert choice.shortened and "too short for the configured 90" in choice.reason


def test_six_months_get_the_longest_horizon_that_still_splits() -> None:
    snapshots = month_starts("2026-02-01", "2026-07-01")
    choice = churn_horizon(snapshots, pd.Timestamp("2026-07-01"), 90)
    assert choice.chosen is not None and MIN_CHURN_HORIZON_DAYS <= choice.chosen < 90
    assert choice.chosen % 7 == 0
    longer = churn_horizon(snapshots, pd.Timestamp("2026-07-01"), choice.chosen + 7)
    assert longer.chosen == choice.chosen  # nothing longer splits these snapshots


def test_two_months_are_too_short_for_churn_and_say_why() -> None:
    choice = churn_horizon(month_starts("2026-02-01", "2026-03-01"), pd.Timestamp("2026-03-01"), 90)
    assert choice.chosen is None
    assert "about 4 months are needed" in choice.reason


@pytest.mark.parametrize(
    ("days", "configured", "chosen"),
    [(546, 39, 39), (546, 26, 26), (120, 26, 8), (56, 26, 4), (55, 26, None)],
)
def test_clv_holdout_is_at_most_half_the_history(
    days: int, configured: int, chosen: int | None
) -> None:
    assert clv_holdout(days, configured).chosen == chosen


@pytest.mark.parametrize(
    ("days", "configured", "chosen"), [(374, 91, 91), (120, 91, 28), (56, 91, 14), (55, 91, None)]
)
def test_cross_sell_window_is_at_most_a_quarter_in_whole_weeks(
    days: int, configured: int, chosen: int | None
) -> None:
    choice = cross_sell_window(days, configured)
    assert choice.chosen == chosen
    if chosen is None:
        assert "at least 56 needed" in choice.reason


def test_history_days_counts_whole_days() -> None:
    assert history_days(pd.Timestamp("2026-01-01 09:30"), pd.Timestamp("2026-05-01")) == 120
