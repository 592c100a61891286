"""Windows sized from the history: churn horizon, CLV holdout, cross-sell target window.

A business that has kept four months of data cannot use a 90-day churn horizon, a 26-week CLV
holdout or 13-week cross-sell targets. Each window is the configured length when the history
allows it, else the longest length the history supports, down to a documented minimum below
which the step is skipped with the reason:

- **churn horizon**: the longest of the configured horizon and whole weeks below it (down to
  `MIN_CHURN_HORIZON_DAYS`) for which the complete labels of the populated snapshots still
  allow a time split (train, validation and test snapshots, each a horizon apart);
- **CLV holdout**: the configured weeks, at most half the history (the calibration window is
  never shorter than the holdout, as in the CDNOW papers' 39 + 39 weeks), at least
  `MIN_CLV_HOLDOUT_WEEKS`;
- **cross-sell targets**: the configured days, at most a quarter of the history (the search
  needs a window before the targets and a history before that), whole weeks, at least
  `MIN_CROSS_SELL_WINDOW_DAYS`.

Pure functions: callers read the dates and write the choice where they log.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

MIN_CHURN_HORIZON_DAYS = 28
"""Shortest churn horizon: four weeks (monthly snapshots need a horizon of at most a month)."""
MIN_CLV_HOLDOUT_WEEKS = 4
"""Shortest CLV holdout; with the one-half rule, CLV needs a history of 8 weeks."""
MIN_CROSS_SELL_WINDOW_DAYS = 14
"""Shortest cross-sell target window; with the one-quarter rule, 8 weeks of history."""


@dataclass(frozen=True)
class WindowChoice:
    """A window length chosen from the history, or None with the reason it cannot be.

    Attributes:
        name: what the window is ("churn horizon", ...).
        configured: the configured length.
        chosen: the length used (None: the history is too short; the step is skipped).
        unit: "days" or "weeks".
        reason: one line on the choice, for the output and MLflow.
    """

    name: str
    configured: int
    chosen: int | None
    unit: str
    reason: str

    @property
    def shortened(self) -> bool:
        """Whether the history forced a shorter window than configured."""
        return self.chosen is not None and self.chosen < self.configured


def history_days(first: pd.Timestamp, end: pd.Timestamp) -> int:
    """Whole days from the first observed day to `end` (exclusive)."""
    return max(0, (pd.Timestamp(end).normalize() - pd.Timestamp(first).normalize()).days)


def _can_split(snapshots: Sequence[pd.Timestamp], horizon: pd.Timedelta) -> bool:
    """Whether test, validation and training snapshots exist, each a horizon before the next."""
    if not snapshots:
        return False
    test = snapshots[-1]
    valid = [t for t in snapshots if t <= test - horizon]
    return bool(valid) and any(t <= valid[-1] - horizon for t in snapshots)


def churn_horizon(
    snapshots: Sequence[pd.Timestamp], end: pd.Timestamp, configured: int
) -> WindowChoice:
    """The churn label horizon the history supports.

    Args:
        snapshots: populated snapshot times (customers exist at each), ascending.
        end: end of the observed data (a label is complete when snapshot + horizon <= end).
        configured: the configured horizon in days.

    Returns:
        The configured horizon, else the longest whole-week horizon down to the minimum for
        which the complete labels allow a time split; None when even the minimum does not.
    """
    stamps = [pd.Timestamp(t) for t in snapshots]
    end = pd.Timestamp(end)
    below = range((configured - 1) // 7 * 7, MIN_CHURN_HORIZON_DAYS - 1, -7)
    for days in (configured, *below):
        horizon = pd.Timedelta(days=days)
        complete = [t for t in stamps if t + horizon <= end]
        if _can_split(complete, horizon):
            reason = (
                f"churn horizon {days} days (configured)"
                if days == configured
                else f"churn horizon {days} days: the history is too short for the configured "
                f"{configured} (train, validation and test snapshots must each be a horizon "
                "apart with complete labels)"
            )
            return WindowChoice("churn horizon", configured, days, "days", reason)
    span = f"{stamps[0].date()}..{end.date()}" if stamps else f"until {end.date()}"
    return WindowChoice(
        "churn horizon",
        configured,
        None,
        "days",
        f"churn needs train, validation and test snapshots at least "
        f"{min(configured, MIN_CHURN_HORIZON_DAYS)} days apart with complete labels; the "
        f"history ({len(stamps)} populated snapshots, {span}) is too short (about 4 months are "
        "needed)",
    )


_DAYS_PER_UNIT = {"days": 1, "weeks": 7}


@dataclass(frozen=True)
class _Share:
    """How long a window may be: at most a share of the history in whole weeks, at least a minimum.

    Attributes:
        parts: the window is at most 1/parts of the history (the rest comes before it).
        words: that share in words, for the reason ("half", "a quarter of").
        minimum: the shortest window, in `unit`; below it the step is skipped.
        unit: "days" or "weeks", the unit of the window's lengths.
    """

    parts: int
    words: str
    minimum: int
    unit: str

    def longest(self, days: int) -> int:
        """The longest window a history of `days` days allows, in `unit`."""
        return days // (7 * self.parts) * 7 // _DAYS_PER_UNIT[self.unit]

    @property
    def needed_days(self) -> int:
        """The shortest history that allows the minimum window, in days."""
        return self.parts * self.minimum * _DAYS_PER_UNIT[self.unit]


@dataclass(frozen=True)
class _ShareWindow:
    """A window sized by its share of the history, with the words of its reasons.

    Attributes:
        name: what the window is (the `WindowChoice` name).
        share: how long the window may be.
        needs: the refusal's opening, with `{}` for the minimum.
        label: the reason's opening, with `{}` for the chosen length.
    """

    name: str
    share: _Share
    needs: str
    label: str

    def fit(self, days: int, configured: int) -> WindowChoice:
        """The window the history supports, with the reason.

        Args:
            days: history length in days.
            configured: the configured length, in the share's unit.

        Returns:
            The configured length when the history allows it, else the longest length it
            allows; None (with the history needed) below the minimum.
        """
        share = self.share
        chosen = min(configured, share.longest(days))
        if chosen < share.minimum:
            reason = (
                f"{self.needs.format(share.minimum)}; the history is {days} days (at least "
                f"{share.needed_days} needed)"
            )
            return WindowChoice(self.name, configured, None, share.unit, reason)
        label = self.label.format(chosen)
        if chosen == configured:
            reason = f"{label} (configured)"
        else:
            reason = f"{label}: {share.words} the {days}-day history (configured {configured})"
        return WindowChoice(self.name, configured, chosen, share.unit, reason)


_CLV_HOLDOUT = _ShareWindow(
    name="CLV holdout",
    share=_Share(parts=2, words="half", minimum=MIN_CLV_HOLDOUT_WEEKS, unit="weeks"),
    needs="CLV needs a holdout of at least {} weeks and as long a calibration before it",
    label="CLV holdout {} weeks",
)
_CROSS_SELL_WINDOW = _ShareWindow(
    name="cross-sell target window",
    share=_Share(parts=4, words="a quarter of", minimum=MIN_CROSS_SELL_WINDOW_DAYS, unit="days"),
    needs="cross-sell needs a target window of at least {} days and three times that before it",
    label="cross-sell targets in the last {} days",
)


def clv_holdout(days: int, configured_weeks: int) -> WindowChoice:
    """The CLV holdout the history supports: at most half of it, at least the minimum.

    Args:
        days: history length in days (first transaction day to the observation end).
        configured_weeks: the configured holdout in weeks.
    """
    return _CLV_HOLDOUT.fit(days, configured_weeks)


def cross_sell_window(days: int, configured_days: int) -> WindowChoice:
    """The cross-sell target window the history supports: at most a quarter of it, whole weeks.

    Args:
        days: history length in days (first to last transaction day).
        configured_days: the configured target window in days.
    """
    return _CROSS_SELL_WINDOW.fit(days, configured_days)
