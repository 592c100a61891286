"""Shifted futures for the sample bank: a known change in the customers, to test monitoring on.

`loyal generate --shift KIND` builds the same bank but, from `SHIFT_MONTHS` months before its
end, changes how some customers behave. Each shift changes only the bank's *latent* causes
(activity, balances, complaint rates); the churn hazard still reads the same visible causes,
so this is covariate shift: the customers move, the rules linking their data to churn do not.
The truth of what moved is written apart from the data (``truth/sample_bank/shift.json``),
like the other ground truth: `loyal monitor` never reads it, tests compare against it.

Kinds:
    competitor: a rival bank lures half the customers: their activity and deposits
        decay month by month and more of them start disengaging.
    rate-cut: a second deposit-rate cut: rate-sensitive savers move their savings out and
        complain more.
    outage: a failing digital platform: incidents, complaints x4, satisfaction drops.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from features.catalog import BALANCE_TYPES
from loyal.errors import LoyalError

SHIFT_MONTHS = 7
"""The shift starts this many months before the end of the window: the last snapshot whose
churn labels exist (90 days before the end) has seen four months of it."""
SHIFT_SEED_OFFSET = 7919
"""The shift draws from its own generator (seed + offset), so the bank's own draws stay put."""
DEPOSITS = ("checking", "savings", "high_yield_savings")
SAVINGS = ("savings", "high_yield_savings")


@dataclass(frozen=True)
class ShiftTruth:
    """What a shift changed: kept with the ground truth, never read by monitoring itself.

    Attributes:
        kind: the shift's name.
        start_month: first month index (0 = the window's first month) it acts in.
        causes: the latent causes it changed, in words.
        features: the features it is expected to move (what monitoring should flag).
    """

    kind: str
    start_month: int
    causes: tuple[str, ...]
    features: tuple[str, ...]


Hook = Callable[[np.random.Generator, Any, Any, int], None]
"""What the generator calls each month: (rng, population, state, month index)."""


@dataclass(frozen=True)
class _Kind:
    causes: tuple[str, ...]
    features: tuple[str, ...]
    act: Callable[[np.random.Generator, Any, Any, np.ndarray, bool], None]


def _competitor(
    rng: np.random.Generator, population: Any, state: Any, target: np.ndarray, first: bool
) -> None:
    population.activity[target] *= np.float32(0.7)
    deposits = [BALANCE_TYPES.index(p) for p in DEPOSITS]
    balances = population.opening_balance[target]
    balances[:, deposits] *= np.float32(0.7)
    population.opening_balance[target] = balances
    state.disengaging[target] |= rng.random(len(target)) < 0.3


def _rate_cut(
    rng: np.random.Generator, population: Any, state: Any, target: np.ndarray, first: bool
) -> None:
    sensitivity = np.minimum(population.rate_sensitivity, 1.7)
    savings = [BALANCE_TYPES.index(p) for p in SAVINGS]
    balances = population.opening_balance
    balances[:, savings] *= (0.85 - 0.3 * sensitivity)[:, None].astype(np.float32)
    if first:
        population.complaint_rate *= (2.0 + 3.0 * sensitivity).astype(np.float32)


def _outage(
    rng: np.random.Generator, population: Any, state: Any, target: np.ndarray, first: bool
) -> None:
    state.incident |= rng.random(len(state.incident)) < 0.12
    if first:
        population.complaint_rate *= np.float32(4.0)
        population.satisfaction_base -= np.float32(1.5)


KINDS: dict[str, _Kind] = {
    "competitor": _Kind(
        causes=(
            "half the customers: activity -30% a month, deposits -30% a month, "
            "30% a month start disengaging",
        ),
        features=(
            "logins_30d",
            "logins_90d",
            "activity_trend",
            "frequency_30d",
            "monetary_30d",
            "balance_checking",
            "total_deposits",
            "idle_cash",
            "recency_days",
        ),
        act=_competitor,
    ),
    "rate-cut": _Kind(
        causes=(
            "savings flow out: 15% a month plus 30% x rate sensitivity",
            "complaint rate x (2 + 3 x rate sensitivity)",
        ),
        features=(
            "balance_savings",
            "balance_high_yield_savings",
            "total_deposits",
            "complaints_90d",
            "low_satisfaction_90d",
        ),
        act=_rate_cut,
    ),
    "outage": _Kind(
        causes=("12% a month hit by incidents", "complaint rate x4", "satisfaction -1.5 points"),
        features=(
            "complaints_30d",
            "complaints_90d",
            "calls_30d",
            "calls_90d",
            "last_satisfaction",
            "low_satisfaction_90d",
        ),
        act=_outage,
    ),
}
TARGET_SHARE = 0.5
"""Share of customers a targeted shift (competitor) acts on."""


def check_kind(kind: str) -> str:
    """The kind, or a LoyalError naming the known ones."""
    if kind not in KINDS:
        raise LoyalError(f"--shift must be one of {', '.join(KINDS)}, got '{kind}'")
    return kind


def shift_truth(kind: str, months: int) -> ShiftTruth:
    """The truth of a shift of `kind` in a window of `months` months."""
    spec = KINDS[check_kind(kind)]
    return ShiftTruth(kind, start_month(months), spec.causes, spec.features)


def start_month(months: int) -> int:
    """The month index a shift starts at."""
    return max(months - SHIFT_MONTHS, 1)


def shift_hook(kind: str, months: int, seed: int) -> Hook:
    """The generator's monthly hook for a shift of `kind` (its own random stream)."""
    spec = KINDS[check_kind(kind)]
    rng = np.random.default_rng(seed + SHIFT_SEED_OFFSET)
    start = start_month(months)
    chosen: dict[str, np.ndarray] = {}

    def hook(_: np.random.Generator, population: Any, state: Any, m: int) -> None:
        if m < start:
            return
        if "target" not in chosen:
            n = len(population.activity)
            chosen["target"] = np.flatnonzero(rng.random(n) < TARGET_SHARE)
        spec.act(rng, population, state, chosen["target"], m == start)

    return hook
