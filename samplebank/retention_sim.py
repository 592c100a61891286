"""Past retention campaigns of the sample bank: random contacts with heterogeneous true effects.

The generator calls this module through two small hooks: `start_month` (before a month's
closures are drawn: a campaign month picks its customers and assigns treatment at random) and
`adjust` (shifts the treated customers' monthly closure hazard while the campaign's effect
lasts). What a real business would have (who was contacted or held out, when, with what) goes
to the contract's optional `campaigns` table; what only a simulator knows (each member's true
churn probability with and without the contact) goes to the ground truth, read by evaluation
only.

Assumptions (stated in the README, "Retention campaigns"):

* a contact shifts the monthly closure hazard's logit by ``-effect`` for `EFFECT_MONTHS`
  months from the campaign's start (a positive effect keeps the customer, a negative one drives
  them away);
* the effect is driven by what the bank can observe, and not by churn risk alone:

  - service recovery: a complaint or a low satisfaction score in the last three months makes a
    call work (the complaint also raises the risk), but not after two or more complaints
    (those customers have decided: lost causes);
  - personal channels: customers who use the branch or the phone answer a call (this does not
    move the risk at all);
  - rate matching: savers after the deposit-rate cut can be kept with a rate offer;
  - lost causes: customers whose activity already collapsed (last three months against the
    three before) have mostly left in practice, the contact does little;
  - sleeping dogs: long-standing, quiet customers with one or two products are reminded by
    the contact that they meant to leave (a negative effect);
  - advised clients: the wealthiest customers (wealth multiplier >= 5, visible in their
    balances) have their own adviser and resent a call-center retention call unless they
    complained (a negative effect). They carry most of the value and a fair share of
    the risk, so a list ranked by expected loss spends much of its budget on them;
  - digital-first customers (mostly mobile and online) barely react to a call (a third of the
    effect).

* on average over the campaigns' members a contact cuts the churn probability by a modest
  share (about 10-30% relative; `tests/unit/test_retention_sim.py` checks the band).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

EFFECT_MONTHS = 3
"""Months a contact's effect lasts (the outcome window of the default 90-day horizon)."""
CAMPAIGN_REACH = 0.25
"""Share of the open customers each simulated campaign draws (before the random split)."""
TREATED_SHARE = 0.5
"""Share of a campaign's drawn customers who are contacted; the rest are its control group."""
CONTACT_COST = 25.0
"""Cost of one retention contact in the simulated campaigns (a call plus a small gesture)."""
ACTION_ID = "retention_call"
SEED_SALT = 21
"""Mixed into the generator's seed, so campaigns draw from their own random stream."""
PERSUADABLE_UPLIFT = 0.01
"""A member whose contact cuts the window's churn probability by at least this is persuadable."""
LOST_CAUSE_PROBABILITY = 0.15


@dataclass(frozen=True)
class EffectModel:
    """Logit shifts of a contact, by observable cause (see the module's assumptions)."""

    service_recovery: float = 0.5
    personal_channel: float = 0.45
    personal_channel_share: float = 0.3
    rate_match: float = 0.4
    digital_only_factor: float = 0.3
    digital_share: float = 0.7
    lost_cause_factor: float = 0.15
    lost_cause_trend: float = -0.7
    lost_cause_complaints: int = 2
    sleeping_dog: float = -1.0
    sleeping_dog_tenure_months: int = 48
    sleeping_dog_activity: int = 12
    baseline: float = 0.1
    advised_wealth: float = 5.0
    advised: float = -0.2


EFFECTS = EffectModel()


def contact_effect(
    population: Any,
    state: Any,
    rows: np.ndarray,
    m: int,
    rate_cut_month: int,
    trend: np.ndarray,
    products: np.ndarray,
    savers: np.ndarray,
) -> np.ndarray:
    """The logit shift a retention contact in month `m` has on each given customer.

    Args:
        population: the generator's population (channel preferences, signup month).
        state: the generator's month state (recent complaints, low scores, activity).
        rows: customer positions.
        m: the month of the contact.
        rate_cut_month: month of the deposit-rate cut.
        trend: each row's activity trend (log of the last three months over the three before).
        products: products each row held last month.
        savers: whether each row held a savings product last month.
    """
    e = EFFECTS
    channels = population.channel_probs[rows]
    personal = channels[:, 2] + channels[:, 4]  # branch + phone
    digital = channels[:, 0] + channels[:, 1]  # mobile + online
    complaints = state.complaints[rows].sum(axis=1)
    unhappy = (complaints > 0) | state.low_satisfaction[rows].any(axis=1)
    effect = np.full(len(rows), e.baseline, np.float64)
    effect += e.service_recovery * (unhappy & (complaints < e.lost_cause_complaints))
    effect += e.personal_channel * np.clip(personal / e.personal_channel_share, 0.0, 1.5)
    if m > rate_cut_month:
        effect += e.rate_match * savers
    effect = np.where(digital > e.digital_share, effect * e.digital_only_factor, effect)
    lost = (trend < e.lost_cause_trend) | (complaints >= e.lost_cause_complaints)
    effect = np.where(lost, effect * e.lost_cause_factor, effect)
    tenure = m - population.signup_month[rows]
    quiet = state.activity[rows].sum(axis=1) < e.sleeping_dog_activity
    dog = (tenure >= e.sleeping_dog_tenure_months) & (products <= 2) & quiet & ~unhappy
    advised = (population.wealth[rows] >= e.advised_wealth) & ~unhappy
    effect = np.where(advised, e.advised, effect)
    return np.where(dog, e.sleeping_dog, effect)


def _shift(probability: np.ndarray, effect: np.ndarray) -> np.ndarray:
    p = np.clip(probability.astype(np.float64), 1e-9, 1 - 1e-9)
    return 1.0 / (1.0 + np.exp(-(np.log(p / (1 - p)) - effect)))


def window_probability(monthly: np.ndarray, months: int = EFFECT_MONTHS) -> np.ndarray:
    """Probability of closing within `months` months at a constant monthly hazard."""
    return 1.0 - (1.0 - np.asarray(monthly, np.float64)) ** months


def strata(p_control: np.ndarray, p_treated: np.ndarray) -> np.ndarray:
    """sleeping_dog, persuadable, lost_cause or sure_thing, from the true window probabilities."""
    uplift = p_control - p_treated
    return np.select(
        [uplift < 0, uplift >= PERSUADABLE_UPLIFT, p_control >= LOST_CAUSE_PROBABILITY],
        ["sleeping_dog", "persuadable", "lost_cause"],
        default="sure_thing",
    ).astype(object)


Features = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray, np.ndarray]]
"""(rows, month) -> (activity trend, products held, holds savings), from the generator."""
Hazard = Callable[[np.ndarray, int], np.ndarray]
"""(rows, month) -> the monthly closure hazard without any contact, from the generator."""


@dataclass
class _Campaign:
    month: int
    members: np.ndarray
    treated: np.ndarray
    effect: np.ndarray
    p_control: np.ndarray = field(default_factory=lambda: np.empty(0))
    p_treated: np.ndarray = field(default_factory=lambda: np.empty(0))


@dataclass
class CampaignSimulation:
    """Random retention campaigns at fixed months, their effects and their records."""

    seed: int
    months: int
    rate_cut_month: int
    campaign_months: tuple[int, ...] = ()
    campaigns: list[_Campaign] = field(default_factory=list)
    block: int = 0
    """The generator's block of customers (`samplebank.bank.generate_blocks`): each block after
    the first draws its members from its own stream."""

    def __post_init__(self) -> None:
        if not self.campaign_months:
            wanted = (self.months - 12, self.months - 9, self.months - 6)
            self.campaign_months = tuple(m for m in wanted if m >= 1)
        entropy = [self.seed, SEED_SALT] + ([self.block] if self.block else [])
        self.rng = np.random.default_rng(entropy)

    def start_month(
        self,
        population: Any,
        state: Any,
        at_risk: np.ndarray,
        m: int,
        features: Features,
        hazard: Hazard,
    ) -> None:
        """On a campaign month, draw its members among the open customers and split them."""
        if m not in self.campaign_months or len(at_risk) == 0:
            return
        drawn = self.rng.random(len(at_risk)) < CAMPAIGN_REACH
        members = at_risk[drawn]
        treated = self.rng.random(len(members)) < TREATED_SHARE
        trend, products, savers = features(members, m)
        effect = contact_effect(
            population, state, members, m, self.rate_cut_month, trend, products, savers
        )
        monthly = hazard(members, m)
        campaign = _Campaign(m, members, treated, effect)
        campaign.p_control = window_probability(monthly)
        campaign.p_treated = window_probability(_shift(monthly, effect))
        self.campaigns.append(campaign)

    def adjust(self, at_risk: np.ndarray, m: int, probability: np.ndarray) -> np.ndarray:
        """The month's closure hazards with the running campaigns' contacts applied."""
        shift = np.zeros(len(at_risk))
        for campaign in self.campaigns:
            if not campaign.month <= m < campaign.month + EFFECT_MONTHS:
                continue
            contacted = campaign.members[campaign.treated]
            where = np.searchsorted(at_risk, contacted)
            found = where < len(at_risk)
            found[found] = at_risk[where[found]] == contacted[found]
            shift[where[found]] += campaign.effect[campaign.treated][found]
        if not shift.any():
            return probability
        return _shift(probability, shift).astype(probability.dtype)

    def campaigns_frame(self, ids: Any, month_start: Callable[[int], pd.Timestamp]) -> pd.DataFrame:
        """The contract's `campaigns` table: who was contacted or held out, when, with what."""
        parts = [self._rows(c, ids, month_start) for c in self.campaigns]
        return pd.concat(parts, ignore_index=True) if parts else _empty_campaigns()

    def _rows(
        self, c: _Campaign, ids: Any, month_start: Callable[[int], pd.Timestamp]
    ) -> pd.DataFrame:
        start = month_start(c.month)
        return pd.DataFrame(
            {
                "campaign_id": _repeat(f"retention-{start:%Y-%m}", len(c.members)),
                "customer_id": _names(ids, c.members),
                "ts": np.full(len(c.members), start.to_datetime64()),
                "treated": c.treated,
                "action_id": pd.array(np.where(c.treated, ACTION_ID, ""), dtype="string[pyarrow]"),
                "cost": np.where(c.treated, CONTACT_COST, 0.0),
            }
        )

    def truth_frame(self, ids: Any, month_start: Callable[[int], pd.Timestamp]) -> pd.DataFrame:
        """Ground truth per campaign member: true churn probability with and without contact."""
        parts = []
        for c in self.campaigns:
            start = month_start(c.month)
            parts.append(
                pd.DataFrame(
                    {
                        "campaign_id": _repeat(f"retention-{start:%Y-%m}", len(c.members)),
                        "customer_id": _names(ids, c.members),
                        "as_of": np.full(len(c.members), start.to_datetime64()),
                        "treated": c.treated,
                        "effect_logit": c.effect,
                        "p_control": c.p_control,
                        "p_treated": c.p_treated,
                        "stratum": pd.array(
                            strata(c.p_control, c.p_treated), dtype="string[pyarrow]"
                        ),
                    }
                )
            )
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def current_effects(
    population: Any,
    state: Any,
    open_rows: np.ndarray,
    m: int,
    rate_cut_month: int,
    features: Features,
    hazard: Hazard,
    ids: Any,
    as_of: pd.Timestamp,
) -> pd.DataFrame:
    """Ground truth for today's list: each open customer's churn probability with and without a
    contact made at `as_of` (month `m`, just after the data ends)."""
    trend, products, savers = features(open_rows, m)
    effect = contact_effect(
        population, state, open_rows, m, rate_cut_month, trend, products, savers
    )
    monthly = hazard(open_rows, m)
    p_control = window_probability(monthly)
    p_treated = window_probability(_shift(monthly, effect))
    return pd.DataFrame(
        {
            "customer_id": _names(ids, open_rows),
            "as_of": np.full(len(open_rows), as_of.to_datetime64()),
            "effect_logit": effect,
            "p_control": p_control,
            "p_treated": p_treated,
            "stratum": pd.array(strata(p_control, p_treated), dtype="string[pyarrow]"),
        }
    )


def _names(ids: Any, rows: np.ndarray) -> pd.arrays.ArrowStringArray:
    """Customer ids at the given positions, as a pandas string column (Parquet: plain strings)."""
    return pd.arrays.ArrowStringArray(ids.take(rows))


def _repeat(value: str, n: int) -> pd.arrays.ArrowStringArray:
    return pd.array([value] * n, dtype="string[pyarrow]")


def _empty_campaigns() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "campaign_id": pd.Series(dtype="string[pyarrow]"),
            "customer_id": pd.Series(dtype="string[pyarrow]"),
            "ts": pd.Series(dtype="datetime64[ns]"),
            "treated": pd.Series(dtype=bool),
            "action_id": pd.Series(dtype="string[pyarrow]"),
            "cost": pd.Series(dtype=float),
        }
    )
