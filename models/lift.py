"""A campaign's measured lift: churn in treated against control, with a confidence interval.

Pure functions over member rows (`group` treated/control, `churned` 0/1, `clv`, `cost`), no
I/O. The lift is the control group's churn rate minus the treated group's (positive: the
contact kept customers), with a normal-approximation (Wald) interval for a difference of two
independent proportions:

    lift = p_c - p_t,   se = sqrt(p_c (1 - p_c) / n_c + p_t (1 - p_t) / n_t),
    interval = lift -/+ z * se,   z = Phi^-1(1 - (1 - confidence) / 2)

Customers saved = lift x treated; value saved = (retained value per treated customer -
retained value per control customer) x treated, where a customer's retained value is their
CLV at list time if they stayed and 0 if they left; return on the spend = (value saved -
cost) / cost. When a group is smaller than `MIN_GROUP` the sample is too small to tell; when
the interval holds 0 the lift cannot be told from no effect.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import norm

from loyal.campaigns import CONTROL, TREATED

MIN_GROUP = 30
"""Fewest customers per group for a lift to be stated at all."""


@dataclass(frozen=True)
class Lift:
    """The measured effect of one campaign, or of one of its tiers or segments."""

    treated: int
    control: int
    churn_treated: float
    churn_control: float
    lift: float
    low: float
    high: float
    retained_value_treated: float
    retained_value_control: float
    customers_saved: float
    value_saved: float
    cost: float
    cost_per_customer_saved: float | None
    return_on_spend: float | None
    verdict: str

    def as_row(self) -> dict[str, object]:
        """The figures as one table row."""
        return dict(self.__dict__)


def _rate(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else math.nan


def lift_interval(
    churned_treated: np.ndarray, churned_control: np.ndarray, confidence: float = 0.95
) -> tuple[float, float, float]:
    """Control churn minus treated churn and its Wald interval: (lift, low, high)."""
    n_t, n_c = len(churned_treated), len(churned_control)
    if n_t == 0 or n_c == 0:
        return math.nan, math.nan, math.nan
    p_t, p_c = _rate(churned_treated), _rate(churned_control)
    se = math.sqrt(p_c * (1 - p_c) / n_c + p_t * (1 - p_t) / n_t)
    z = float(norm.ppf(1 - (1 - confidence) / 2))
    lift = p_c - p_t
    return lift, lift - z * se, lift + z * se


def verdict(n_t: int, n_c: int, low: float, high: float, min_group: int = MIN_GROUP) -> str:
    """What the figures allow one to say, in words."""
    if min(n_t, n_c) < min_group:
        return (
            f"too small to tell: {n_t} treated and {n_c} control customers "
            f"(at least {min_group} each are needed)"
        )
    if low > 0:
        return "the contact kept customers (the interval lies above 0)"
    if high < 0:
        return "the contact drove customers away (the interval lies below 0)"
    return "too small to tell: the interval holds 0 (no effect cannot be ruled out)"


def measure(members: pd.DataFrame, confidence: float = 0.95) -> Lift:
    """The lift of one campaign (or a slice of it).

    Args:
        members: one row per member: `group` (treated/control), `churned` (0/1), `clv`
            (value at list time; NaN counts as 0) and `cost` (spent on that member).
        confidence: of the interval.
    """
    treated = members[members["group"] == TREATED]
    control = members[members["group"] == CONTROL]
    churn_t = treated["churned"].to_numpy(float)
    churn_c = control["churned"].to_numpy(float)
    lift, low, high = lift_interval(churn_t, churn_c, confidence)
    kept_t = _rate((1 - churn_t) * treated["clv"].fillna(0).clip(lower=0).to_numpy(float))
    kept_c = _rate((1 - churn_c) * control["clv"].fillna(0).clip(lower=0).to_numpy(float))
    if members["clv"].isna().all():  # no value known: say so rather than count zeros
        kept_t = kept_c = math.nan
    saved = lift * len(treated) if not math.isnan(lift) else math.nan
    value_saved = (kept_t - kept_c) * len(treated) if len(treated) and len(control) else math.nan
    cost = float(treated["cost"].fillna(0).sum())
    return Lift(
        treated=len(treated),
        control=len(control),
        churn_treated=_rate(churn_t),
        churn_control=_rate(churn_c),
        lift=lift,
        low=low,
        high=high,
        retained_value_treated=kept_t,
        retained_value_control=kept_c,
        customers_saved=saved,
        value_saved=value_saved,
        cost=cost,
        cost_per_customer_saved=cost / saved if saved > 0 else None,
        return_on_spend=(value_saved - cost) / cost
        if cost > 0 and not math.isnan(value_saved)
        else None,
        verdict=verdict(len(treated), len(control), low, high),
    )


def measure_by(members: pd.DataFrame, column: str, confidence: float = 0.95) -> pd.DataFrame:
    """`measure` for each value of a column (tier, segment), one row each."""
    rows = {
        str(key): measure(part, confidence).as_row()
        for key, part in members.groupby(members[column].fillna("none").astype(str), sort=True)
    }
    return pd.DataFrame.from_dict(rows, orient="index")
