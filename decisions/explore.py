"""Safe exploration: epsilon-greedy over the eligible actions, with exact propensities.

The policy's eligible actions (every rule already applied: eligibility, consent, tier, spend caps,
contact cooldowns and caps) come ranked by expected value. A bounded share of customers is in the
exploration group for a period, chosen by a hash of (salt, customer, period), so a customer's
assignment is stable within the period; an explored customer's first action is drawn uniformly
among the eligible ones by another hash of the same key. The remaining slots follow the ranking
under the same rules the policy applies (one action per product, the marketing contact quota).

Over customers the hash acts as a fair coin, so the probability with which the policy puts
action `a` first is exactly `(1 - share) * [a is the greedy choice] + share / n` (n eligible
actions); that is the propensity logged for off-policy evaluation. The probability that `a` is
shown at all is computed by enumerating the n possible draws.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

_DAY_SECONDS = 86_400.0


class Choice(Protocol):
    """What exploration needs of an eligible action."""

    @property
    def action_id(self) -> str: ...

    @property
    def product_id(self) -> str | None: ...

    @property
    def marketing(self) -> bool: ...


@dataclass(frozen=True)
class Exploration:
    """How a bounded share of decisions is randomised.

    Attributes:
        share: the share of customers explored in each period (0 switches exploration off).
        period_days: how long a customer's assignment holds.
        salt: makes the assignment unpredictable to callers (set your own in production).
    """

    share: float = 0.05
    period_days: float = 7.0
    salt: str = "loyal"

    @property
    def policy(self) -> str:
        """The policy's name as logged."""
        return f"nba-ev;epsilon-greedy={self.share:g};period={self.period_days:g}d"


@dataclass(frozen=True)
class Arranged:
    """The actions to show and the probabilities behind them.

    Attributes:
        shown: indices into the eligible list, in the order shown.
        explored: the customer is in the exploration group this period.
        primary: per eligible action, the probability it is shown first.
        shown_anywhere: per eligible action, the probability it is shown at all.
    """

    shown: tuple[int, ...]
    explored: bool
    primary: tuple[float, ...]
    shown_anywhere: tuple[float, ...]


def _unit(*parts: str) -> float:
    """A uniform number in [0, 1) from a hash of `parts`."""
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def period_of(moment: datetime, period_days: float) -> int:
    """The exploration period a moment falls in (periods counted from the epoch)."""
    return int(moment.timestamp() // (period_days * _DAY_SECONDS))


def arrange_from(first: int, eligible: Sequence[Choice], k: int, quota: int | None) -> list[int]:
    """Indices shown when `first` leads: then the ranking, one per product, within the quota."""
    lead = eligible[first]
    chosen = [first]
    products = {lead.product_id} if lead.product_id else set()
    left = None if quota is None else quota - int(lead.marketing)
    for index, action in enumerate(eligible):
        if len(chosen) >= k:
            break
        if index == first or (action.product_id and action.product_id in products):
            continue
        if action.marketing and left is not None:
            if left <= 0:
                continue
            left -= 1
        chosen.append(index)
        if action.product_id:
            products.add(action.product_id)
    return chosen


def arrange(
    eligible: Sequence[Choice],
    k: int,
    quota: int | None,
    customer_id: str,
    moment: datetime,
    exploration: Exploration,
) -> Arranged:
    """Choose what to show among ranked eligible actions, with exact propensities.

    Args:
        eligible: the actions every rule allows, best first (a marketing action is only here
            when the customer's marketing quota allows at least one).
        k: how many to show at most.
        quota: marketing contacts still allowed (None: no cap).
        customer_id: whose decision (with the period, the hash key).
        moment: when (sets the period).
        exploration: the share, period and salt.
    """
    n = len(eligible)
    if n == 0:
        return Arranged((), False, (), ())
    share = min(max(exploration.share, 0.0), 1.0)
    key = (exploration.salt, customer_id, str(period_of(moment, exploration.period_days)))
    explored = share > 0 and n > 1 and _unit(*key, "group") < share
    first = min(int(_unit(*key, "draw") * n), n - 1) if explored else 0
    if n == 1:
        share = 0.0
    layouts = [arrange_from(d, eligible, k, quota) for d in range(n)]
    primary = [share / n + (1.0 - share) * (i == 0) for i in range(n)]
    anywhere = [
        (1.0 - share) * (i in layouts[0]) + share / n * sum(i in shown for shown in layouts)
        for i in range(n)
    ]
    return Arranged(tuple(layouts[first]), explored, tuple(primary), tuple(anywhere))
