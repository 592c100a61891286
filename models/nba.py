"""Next-best-action policy: eligible offers ranked by expected value within consent, tier, contact.

The order follows the domain: the value tier sets how much may be spent on a customer, needs
(segment weights, cross-sell recommendations) say what to offer, churn risk makes retention
worth more. Expected value = P(accept) x value x segment weight - cost. Pure: the caller passes
the features, the scores, the contact history and the clock.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from loyal.errors import LoyalError
from models.offers import (
    FUNCTIONS,
    TIERS,
    Catalog,
    Offer,
    RenderError,
    RetentionValue,
    TemplateFunction,
    Values,
    format_money,
    holding_column,
    is_missing,
    number,
    truthy,
)

Outcome = Literal["shown", "accepted", "declined", "ignored"]
Stage = Literal[
    "cold_start",
    "channel",
    "als",
    "consent",
    "holdout",
    "tier",
    "holding",
    "eligibility",
    "contact",
    "spend",
    "value",
    "message",
    "rank",
]

_DAY_SECONDS = 86_400.0

LIFECYCLE_FIELD = "state"
"""The online feature holding the lifecycle state (`features.catalog.LIFECYCLE_STATES`)."""
UPLIFT_FIELD = "uplift"
"""The uplift champion's score (`CustomerScores.extra`); retention values read it if present."""
LAPSED_STATES: frozenset[str] = frozenset({"lapsed", "lost"})
"""Lifecycle states of customers who already left: win-back offers, not retention, apply."""


class PolicyError(LoyalError):
    """A request to the policy is malformed (unknown channel, k < 1, bad contact history)."""


class CustomerScores(BaseModel):
    """Model scores of one customer, each None when its model is unavailable.

    Attributes:
        churn_probability: calibrated churn probability.
        churn_reasons: the churn model's reasons in plain sentences, strongest first.
        tier: value tier (platinum, gold, iron, lead).
        segment_id: need segment id.
        segment_name: need segment name.
        clv: customer lifetime value.
        extra: scores of further registered models by score field (their specs' `score_fields`),
            added to the policy's facts under those names.
    """

    model_config = ConfigDict(frozen=True)

    churn_probability: float | None = Field(default=None, ge=0, le=1)
    churn_reasons: tuple[str, ...] = ()
    tier: str | None = None
    segment_id: int | str | None = None
    segment_name: str | None = None
    clv: float | None = None
    extra: dict[str, Any] = Field(default_factory=dict)


class ContactEvent(BaseModel):
    """One past contact of a customer with an offer, and how it ended."""

    model_config = ConfigDict(frozen=True)

    offer_id: str
    timestamp: datetime
    outcome: Outcome = "shown"


ContactHistory = Sequence[ContactEvent | tuple[str, datetime, str] | Mapping[str, Any]]
"""Past contacts: events, `(offer_id, timestamp, outcome)` tuples or mappings with those keys."""


class Action(BaseModel):
    """One chosen action with its message, its reasons and the numbers that ranked it.

    Attributes:
        action_id: the offer id (feedback refers to it).
        score: the ranking key, the expected value rounded to 6 decimals.
        expected_value: p_accept x value x segment_weight - cost.
        p_accept: acceptance probability after the cross-sell lift.
        value: value to the business if accepted.
        cost: cost to the business of making the offer.
        segment_weight: the need segment's multiplier.
        als_rank: rank of the product in the cross-sell recommendations (1 = best), if any.
        als_score: the cross-sell model's score of the product, if any.
        reasons: why: the eligibility facts, churn reasons, cross-sell rank.
        cold_start: chosen for an unknown customer.
    """

    action_id: str
    kind: str
    product_id: str | None
    channel: str
    message: str
    score: float
    expected_value: float
    p_accept: float
    value: float
    cost: float
    segment_weight: float
    als_rank: int | None = None
    als_score: float | None = None
    reasons: list[str]
    cold_start: bool = False
    marketing: bool = True
    evidence: str | None = None


class Rejected(BaseModel):
    """A candidate left out, the stage that dropped it and why (for debugging and audits)."""

    action_id: str
    product_id: str | None
    stage: Stage
    reason: str


class Decision(BaseModel):
    """The policy's answer for one customer on one channel."""

    channel: str
    cold_start: bool
    decided_at: datetime
    actions: list[Action]
    filtered: list[Rejected]
    eligible: list[Action] = Field(default_factory=list)
    marketing_quota: int | None = None


@dataclass
class _Candidate:
    """An offer under consideration, with what the policy learned about it so far."""

    offer: Offer
    als_rank: int | None = None
    als_score: float | None = None
    reasons: list[str] = field(default_factory=list)
    values: Mapping[str, Any] | None = None
    p_accept: float = 0.0
    value: float = 0.0
    weight: float = 1.0
    expected_value: float = 0.0
    message: str = ""
    evidence: str | None = None

    @property
    def rank_key(self) -> tuple[float, float, str]:
        """Expected value descending, then cost ascending, then offer id."""
        return (-round(self.expected_value, 6), self.offer.cost, self.offer.id)


@dataclass(frozen=True)
class _Context:
    """Everything a decision reads, fixed for the decision."""

    catalog: Catalog
    channel: str
    now: datetime
    cold_start: bool
    values: Values
    scores: CustomerScores
    tier: str | None
    history: dict[str, list[ContactEvent]]
    product_names: Mapping[str, str]
    unavailable: Mapping[str, Sequence[str]]
    holdout: str | None = None
    acceptance: Mapping[str, tuple[float, str]] = field(default_factory=dict)


def decide(
    features: Mapping[str, Any] | None,
    scores: CustomerScores | None,
    channel: str,
    catalog: Catalog,
    contact_history: ContactHistory | None,
    now: datetime,
    k: int = 1,
    recommendations: Sequence[tuple[str, float]] | None = None,
    *,
    functions: Mapping[str, TemplateFunction] | None = None,
    product_names: Mapping[str, str] | None = None,
    unavailable: Mapping[str, Sequence[str]] | None = None,
    holdout: str | None = None,
    acceptance: Mapping[str, tuple[float, str]] | None = None,
) -> Decision:
    """Choose the next best actions for one customer on one channel.

    Args:
        features: the customer's online features (None or empty: unknown customer, cold start).
        scores: the customer's model scores (None: no models available).
        channel: where the answer is shown (one of the catalog's channels).
        catalog: the validated offer catalog.
        contact_history: the customer's past contacts with offers.
        now: the decision time (naive times are taken as UTC).
        k: how many actions to return at most.
        recommendations: cross-sell `(product_id, score)` pairs, best first.
        functions: registered template functions (default: `FUNCTIONS`).
        product_names: product id -> name, for `{product_name}` in messages (default: the id).
        unavailable: offer id -> features it reads that the data does not have
            (`Catalog.missing_names`); such offers are left out for known customers (a
            cold-start answer reads no customer data).
        holdout: why the customer may get no marketing contact now (a running campaign's
            control group, `loyal.campaigns.ControlGroups`); None: no hold-out.
        acceptance: offer id -> (P(accept), the evidence behind it) from a learned acceptance
            model; it replaces the catalog's `p_accept` (and its cross-sell lift) for that offer.

    Returns:
        Up to `k` actions, best first, plus every candidate left out and why.

    Raises:
        PolicyError: unknown channel, k < 1 or a malformed contact history.
    """
    if channel not in catalog.channels:
        allowed = ", ".join(catalog.channels)
        raise PolicyError(f"channel: unknown channel {channel!r} (allowed: {allowed})")
    if k < 1:
        raise PolicyError(f"k: must be at least 1, got {k}")
    scores = scores or CustomerScores()
    now = _utc(now)
    cold = _is_unknown(features)
    facts = {} if cold else _facts(features or {}, scores)
    tier = facts.get("tier") if facts.get("tier") in TIERS else None
    ctx = _Context(
        catalog=catalog,
        channel=channel,
        now=now,
        cold_start=cold,
        values=Values(facts, catalog.constants, FUNCTIONS if functions is None else functions),
        scores=scores,
        tier=tier,
        history=_by_offer(_events(contact_history or ())),
        product_names=product_names or {},
        unavailable=unavailable or {},
        holdout=holdout,
        acceptance=acceptance or {},
    )
    rejected: list[Rejected] = []
    candidates = _candidates(ctx, _ranked(recommendations or ()), rejected)
    survivors = [c for c in candidates if _survives(c, ctx, rejected)]
    survivors = _top_als(survivors, k, rejected)
    survivors.sort(key=lambda c: c.rank_key)
    quota = _marketing_quota(ctx)
    chosen = _select(survivors, k, ctx, rejected)
    actions = {id(c): _action(c, ctx) for c in chosen}
    selectable = [c for c in survivors if not (c.offer.is_marketing and quota == 0)]
    return Decision(
        channel=channel,
        cold_start=cold,
        decided_at=now,
        actions=list(actions.values()),
        filtered=rejected,
        eligible=[actions.get(id(c)) or _action(c, ctx) for c in selectable],
        marketing_quota=quota,
    )


# --- inputs --------------------------------------------------------------------------------------


def _utc(moment: datetime) -> datetime:
    """A datetime in UTC; naive ones are taken to be UTC already."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _is_unknown(features: Mapping[str, Any] | None) -> bool:
    """No features, or none with a value: a customer the feature store does not know."""
    return not features or all(is_missing(v) for v in features.values())


def _facts(features: Mapping[str, Any], scores: CustomerScores) -> dict[str, Any]:
    """Features plus the scores under their `SCORE_FIELDS` names (scores passed in win)."""
    facts = dict(features)
    passed = {
        "churn_probability": scores.churn_probability,
        "churn_reasons": list(scores.churn_reasons) if scores.churn_reasons else None,
        "tier": scores.tier,
        "segment": scores.segment_name,
        "segment_id": scores.segment_id,
        "clv": scores.clv,
    }
    facts.update({name: value for name, value in passed.items() if value is not None})
    facts.update({name: value for name, value in scores.extra.items() if value is not None})
    if scores.churn_probability is not None and scores.clv is not None:
        facts["expected_loss"] = scores.churn_probability * max(scores.clv, 0.0)
    return facts


def _events(history: ContactHistory) -> list[ContactEvent]:
    """Normalize the contact history to events in UTC."""
    events: list[ContactEvent] = []
    for item in history:
        try:
            if isinstance(item, ContactEvent):
                event = item
            elif isinstance(item, Mapping):
                event = ContactEvent.model_validate(item)
            else:
                offer_id, timestamp, outcome = item
                event = ContactEvent.model_validate(
                    {"offer_id": offer_id, "timestamp": timestamp, "outcome": outcome}
                )
        except (ValidationError, TypeError, ValueError) as exc:
            raise PolicyError(f"contact_history: cannot read {item!r} ({exc})") from None
        events.append(event.model_copy(update={"timestamp": _utc(event.timestamp)}))
    return events


def _by_offer(events: list[ContactEvent]) -> dict[str, list[ContactEvent]]:
    grouped: dict[str, list[ContactEvent]] = {}
    for event in events:
        grouped.setdefault(event.offer_id, []).append(event)
    return grouped


def _ranked(recommendations: Sequence[tuple[str, float]]) -> dict[str, tuple[int, float | None]]:
    """Product -> (1-based rank, score), in the order given; repeats keep their first place."""
    ranked: dict[str, tuple[int, float | None]] = {}
    for product_id, score in recommendations:
        if str(product_id) not in ranked:
            ranked[str(product_id)] = (len(ranked) + 1, number(score))
    return ranked


# --- candidates and filters ----------------------------------------------------------------------


def _candidates(
    ctx: _Context, recs: dict[str, tuple[int, float | None]], rejected: list[Rejected]
) -> list[_Candidate]:
    """Catalog offers, ALS-only offers of recommended products, and unmapped recommendations.

    A generic offer (`product_id: '*'`) becomes one candidate per recommended product that no
    other offer sells.
    """
    candidates: list[_Candidate] = []
    for offer in ctx.catalog.offers:
        if ctx.cold_start and not offer.cold_start:
            reason = "unknown customer; not a cold-start offer"
            rejected.append(_reject(offer, "cold_start", reason))
            continue
        missing = None if ctx.cold_start else ctx.unavailable.get(offer.id)
        if missing:
            reason = f"reads {', '.join(missing)}, which the data does not have"
            rejected.append(_reject(offer, "eligibility", reason))
            continue
        if offer.is_generic:
            candidates.extend(_generic_candidates(offer, ctx, recs, rejected))
            continue
        rank, score = recs.get(offer.product_id or "", (None, None))
        if offer.trigger == "als" and rank is None:
            reason = f"{offer.product_id} is not among the cross-sell recommendations"
            rejected.append(_reject(offer, "als", reason))
            continue
        candidates.append(_candidate(offer, ctx, rank, score))
    if not ctx.cold_start and not ctx.catalog.generic:
        for product_id, (rank, _) in recs.items():
            if not ctx.catalog.selling(product_id):
                rejected.append(
                    Rejected(
                        action_id=f"als:{product_id}",
                        product_id=product_id,
                        stage="als",
                        reason=f"cross-sell rank #{rank}, but no catalog offer sells {product_id}",
                    )
                )
    return candidates


def _generic_candidates(
    offer: Offer,
    ctx: _Context,
    recs: dict[str, tuple[int, float | None]],
    rejected: list[Rejected],
) -> list[_Candidate]:
    """One candidate of a generic offer per recommended product no other offer sells."""
    unsold = [(p, rank, score) for p, (rank, score) in recs.items() if not ctx.catalog.selling(p)]
    if not unsold:
        reason = "no cross-sell recommendation left that no other offer sells"
        rejected.append(_reject(offer, "als", reason))
        return []
    return [
        _candidate(offer.model_copy(update={"product_id": product_id}), ctx, rank, score)
        for product_id, rank, score in unsold
    ]


def _candidate(offer: Offer, ctx: _Context, rank: int | None, score: float | None) -> _Candidate:
    """A candidate whose values also name its product (`product_id`, `product_name`)."""
    values: Mapping[str, Any] | None = None
    if offer.product_id:
        name = ctx.product_names.get(offer.product_id) or offer.product_id
        values = _WithProduct(ctx.values, {"product_id": offer.product_id, "product_name": name})
    return _Candidate(offer, als_rank=rank, als_score=score, values=values)


class _WithProduct(Mapping[str, Any]):
    """A customer's values plus the fields of the product one candidate sells."""

    def __init__(self, base: Values, product: Mapping[str, Any]) -> None:
        self._base = base
        self._product = product

    def get(self, name: str, default: Any = None) -> Any:
        """The product field `name`, else the customer's value."""
        if name in self._product:
            return self._product[name]
        return self._base.get(name, default)

    def __getitem__(self, name: str) -> Any:
        if name in self._product:
            return self._product[name]
        return self._base[name]

    def __iter__(self) -> Iterator[str]:
        return iter({**dict.fromkeys(self._base), **dict.fromkeys(self._product)})

    def __len__(self) -> int:
        return len(set(self._base) | set(self._product))

    def __contains__(self, name: object) -> bool:
        return name in self._product or name in self._base


def _values(cand: _Candidate, ctx: _Context) -> Mapping[str, Any]:
    """What a candidate's conditions, value and message read."""
    return ctx.values if cand.values is None else cand.values


def _reject(offer: Offer, stage: Stage, reason: str) -> Rejected:
    return Rejected(action_id=offer.id, product_id=offer.product_id, stage=stage, reason=reason)


def _survives(cand: _Candidate, ctx: _Context, rejected: list[Rejected]) -> bool:
    """Run the filters in order; the first that fails records why and drops the candidate."""
    for check in _CHECKS:
        verdict = check(cand, ctx)
        if verdict is not None:
            rejected.append(_reject(cand.offer, *verdict))
            return False
    return True


Verdict = tuple[Stage, str] | None


def _channel(cand: _Candidate, ctx: _Context) -> Verdict:
    if ctx.channel in cand.offer.channels:
        return None
    return "channel", f"not offered on {ctx.channel} (only {', '.join(cand.offer.channels)})"


def _consent(cand: _Candidate, ctx: _Context) -> Verdict:
    """Marketing needs consent in every mode: an unknown customer has given none on record.

    Only offers the catalog marks `marketing: false` (service actions by default) reach a
    customer without consent, cold start and degraded answers included.
    """
    if not cand.offer.is_marketing:
        return None
    if ctx.cold_start:
        return "consent", "marketing offer and the customer is unknown: no consent on record"
    consent = _values(cand, ctx).get("consent_marketing")
    if consent is not None and truthy(consent):
        return None
    given = "not recorded" if consent is None else "not given"
    return "consent", f"marketing offer and marketing consent is {given}"


def _holdout(cand: _Candidate, ctx: _Context) -> Verdict:
    """A running campaign's control group gets no marketing offer, in every mode."""
    if ctx.holdout is None or not cand.offer.is_marketing:
        return None
    return "holdout", ctx.holdout


def _tier(cand: _Candidate, ctx: _Context) -> Verdict:
    if ctx.cold_start or cand.offer.allows_tier(ctx.tier):
        return None
    allowed = cand.offer.tiers or TIERS[: TIERS.index(cand.offer.min_tier or "lead") + 1]
    return "tier", f"tier {ctx.tier or 'unknown'} not allowed (allowed: {', '.join(allowed)})"


def _lifecycle(cand: _Candidate, ctx: _Context) -> Verdict:
    """Win-back offers are for lapsed or lost customers only; retention offers never reach them.

    An unknown lifecycle state keeps retention offers as they were and allows no win-back; a
    catalog without any win-back offer keeps retention offers for lapsed customers too.
    """
    kind = cand.offer.kind
    if kind not in ("retention", "win_back") or ctx.cold_start:
        return None
    state = _values(cand, ctx).get(LIFECYCLE_FIELD)
    lapsed = isinstance(state, str) and state in LAPSED_STATES
    if kind == "retention" and lapsed and _has_win_back(ctx.catalog):
        return (
            "eligibility",
            f"lifecycle state {state}: the customer already left; win-back applies",
        )
    if kind == "win_back" and not lapsed:
        shown = "unknown" if is_missing(state) else str(state)
        return "eligibility", f"win-back is for lapsed or lost customers; lifecycle state {shown}"
    if kind == "win_back":
        cand.reasons.append(f"lifecycle state {state}: worth winning back at tier {ctx.tier}")
    return None


def _has_win_back(catalog: Catalog) -> bool:
    return any(offer.kind == "win_back" for offer in catalog.offers)


def _holding(cand: _Candidate, ctx: _Context) -> Verdict:
    """Selling offers skip customers who already hold the product (missing reads as not held)."""
    offer = cand.offer
    if offer.kind not in ("cross_sell", "up_sell") or not offer.product_id:
        return None
    held = _values(cand, ctx).get(holding_column(offer.product_id))
    if held is not None and truthy(held):
        return "holding", f"already holds {offer.product_id}"
    return None


def _eligibility(cand: _Candidate, ctx: _Context) -> Verdict:
    """All conditions must hold (skipped for unknown customers on cold-start offers)."""
    if ctx.cold_start:
        cand.reasons.append(f"unknown customer: a popular offer on {ctx.channel}")
        return None
    facts: list[str] = []
    for number_, condition in enumerate(cand.offer.eligibility, start=1):
        held, words = condition.evaluate(_values(cand, ctx))
        if not held:
            return "eligibility", f"condition {number_} not met: {words}"
        facts.append(words)
    cand.reasons.extend(facts)
    return None


def _contact(cand: _Candidate, ctx: _Context) -> Verdict:
    """Per-offer contact policy: decline suppression, cooldown, cap per period."""
    policy = cand.offer.contact
    ages = [(e, _days(ctx.now - e.timestamp)) for e in ctx.history.get(cand.offer.id, ())]
    declined = [age for e, age in ages if e.outcome == "declined" and age < policy.decline_days]
    if declined:
        return "contact", (
            f"declined {_ago(min(declined))}; suppressed for {policy.decline_days:g} days "
            "after a decline"
        )
    product_declined = [
        age for age in _product_decline_ages(cand, ctx) if age < policy.decline_days
    ]
    if product_declined:
        return "contact", (
            f"another offer of {cand.offer.product_id} was declined "
            f"{_ago(min(product_declined))}; suppressed for {policy.decline_days:g} days"
        )
    recent = [age for _, age in ages if age < policy.cooldown_days]
    if recent:
        return "contact", (
            f"last contacted {_ago(min(recent))}; cooldown {policy.cooldown_days:g} days"
        )
    if policy.max_per_period is not None:
        count = sum(1 for _, age in ages if age < policy.period_days)
        if count >= policy.max_per_period:
            return "contact", (
                f"made {count} times in the last {policy.period_days:g} days "
                f"(max {policy.max_per_period})"
            )
    return None


def _product_decline_ages(cand: _Candidate, ctx: _Context) -> list[float]:
    """Days since declines of other offers selling the same product (a no to the product)."""
    product = cand.offer.product_id
    if product is None:
        return []
    sellers = {
        o.id for o in ctx.catalog.offers if o.product_id == product and o.id != cand.offer.id
    }
    return [
        _days(ctx.now - event.timestamp)
        for offer_id in sellers
        for event in ctx.history.get(offer_id, ())
        if event.outcome == "declined"
    ]


def _economics(cand: _Candidate, ctx: _Context) -> Verdict:
    """Spend caps by tier and CLV share, then expected value, which must be positive."""
    offer = cand.offer
    cap = ctx.catalog.spend.cap(ctx.tier)
    if offer.cost > cap:
        return "spend", (
            f"cost {format_money(offer.cost)} exceeds the spend cap of {format_money(cap)} "
            f"for tier {ctx.tier or 'unknown'}"
        )
    if offer.max_clv_share is not None:
        clv = ctx.values.get("clv")
        if clv is None:
            return "spend", "spend is limited by CLV, and the CLV is unknown"
        if offer.cost > offer.max_clv_share * max(float(clv), 0.0):
            return "spend", (
                f"cost {format_money(offer.cost)} exceeds {offer.max_clv_share:.0%} "
                f"of CLV {format_money(clv)}"
            )
    value = offer.value.compute(_values(cand, ctx))
    if value is None:
        return "value", f"value unknown: needs {', '.join(offer.value.names)}"
    cand.value = value
    cand.weight = offer.segment_weight(ctx.values.get("segment_id"), ctx.values.get("segment"))
    learned = ctx.acceptance.get(offer.id)
    uplift = _uplift_value(cand, ctx)
    if uplift is not None:
        value, cand.p_accept, cand.evidence = uplift
        cand.value = value
    elif learned is not None:
        cand.p_accept, cand.evidence = learned
    else:
        cand.p_accept = min(1.0, offer.p_accept * ctx.catalog.als.lift(cand.als_rank))
    cand.expected_value = cand.p_accept * value * cand.weight - offer.cost
    if not math.isfinite(cand.expected_value) or cand.expected_value <= 0:
        return "value", (
            f"expected value {cand.expected_value:.2f} is not positive "
            f"({cand.p_accept:.3f} x {value:.2f} x {cand.weight:g} - {offer.cost:.2f})"
        )
    return None


def _uplift_value(cand: _Candidate, ctx: _Context) -> tuple[float, float, str] | None:
    """A retention offer's value from the uplift champion: (uplift x CLV, 1.0, the evidence).

    The uplift is the contact's own effect on the chance of staying (the acceptance is already
    in it), so P(accept) is 1 and expected value = uplift x CLV x segment weight - cost; a
    negative uplift (a contact makes the customer leave) gives a negative value. None: no
    uplift estimate for this customer, or not a retention offer valued by churn risk.
    """
    if cand.offer.kind != "retention" or not isinstance(cand.offer.value, RetentionValue):
        return None
    uplift, clv = number(ctx.values.get(UPLIFT_FIELD)), number(ctx.values.get("clv"))
    if uplift is None or clv is None or not math.isfinite(uplift):
        return None
    value = uplift * max(clv, 0.0)
    evidence = (
        f"uplift model: a contact changes the chance of staying by {uplift:+.1%}; "
        f"value = uplift x CLV {format_money(clv)} = {format_money(value)} "
        "(instead of churn probability x CLV)"
    )
    return value, 1.0, evidence


def _message(cand: _Candidate, ctx: _Context) -> Verdict:
    try:
        cand.message = cand.offer.template.render(_values(cand, ctx))
    except RenderError as exc:
        return "message", f"message needs {exc.name}, which {exc.problem}"
    return None


_CHECKS = (
    _channel,
    _consent,
    _holdout,
    _tier,
    _lifecycle,
    _holding,
    _eligibility,
    _contact,
    _economics,
    _message,
)
"""The filters, cheapest first; each returns None or (stage, reason)."""


# --- ranking and selection -----------------------------------------------------------------------


def _top_als(survivors: list[_Candidate], k: int, rejected: list[Rejected]) -> list[_Candidate]:
    """Of the offers only the cross-sell model triggers, keep the k best-ranked eligible ones."""
    als = sorted((c for c in survivors if c.offer.trigger == "als"), key=lambda c: c.als_rank or 0)
    dropped = {id(c) for c in als[k:]}
    for cand in als[k:]:
        best = als[0]
        rejected.append(
            _reject(
                cand.offer,
                "als",
                f"cross-sell rank #{cand.als_rank}; a better-ranked eligible product comes first: "
                f"{best.offer.product_id} (#{best.als_rank})",
            )
        )
    return [c for c in survivors if id(c) not in dropped]


def _select(
    ranked: list[_Candidate], k: int, ctx: _Context, rejected: list[Rejected]
) -> list[_Candidate]:
    """Take the best k: one action per product, within the customer's marketing contact cap."""
    quota = _marketing_quota(ctx)
    chosen: list[_Candidate] = []
    by_product: dict[str, str] = {}
    for position, cand in enumerate(ranked, start=1):
        offer = cand.offer
        if offer.product_id and offer.product_id in by_product:
            better = by_product[offer.product_id]
            reason = f"a better offer for {offer.product_id} ranked higher: {better}"
            rejected.append(_reject(offer, "rank", reason))
        elif offer.is_marketing and quota is not None and quota <= 0:
            caps = ctx.catalog.contact
            reason = (
                f"customer's marketing contact cap reached ({caps.max_per_period} per "
                f"{caps.period_days:g} days)"
            )
            rejected.append(_reject(offer, "contact", reason))
        elif len(chosen) >= k:
            reason = f"ranked #{position} (expected value {cand.expected_value:.2f}); k={k}"
            rejected.append(_reject(offer, "rank", reason))
        else:
            chosen.append(cand)
            if offer.product_id:
                by_product[offer.product_id] = offer.id
            if offer.is_marketing and quota is not None:
                quota -= 1
    return chosen


def _marketing_quota(ctx: _Context) -> int | None:
    """Marketing contacts still allowed in the catalog's period (None: no cap)."""
    caps = ctx.catalog.contact
    if caps.max_per_period is None:
        return None
    used = 0
    for offer_id, events in ctx.history.items():
        offer = ctx.catalog.offer(offer_id)
        if offer is not None and not offer.is_marketing:
            continue
        used += sum(1 for e in events if _days(ctx.now - e.timestamp) < caps.period_days)
    return max(caps.max_per_period - used, 0)


def _action(cand: _Candidate, ctx: _Context) -> Action:
    """The answer for one chosen candidate, its reasons completed."""
    offer = cand.offer
    reasons = list(cand.reasons)
    if isinstance(offer.value, RetentionValue):
        if cand.evidence is not None and cand.evidence.startswith("uplift model"):
            reasons.append(cand.evidence)
        reasons.extend(ctx.scores.churn_reasons)
        if offer.cost > 0:
            tier = ctx.tier or "unknown"
            cap = format_money(ctx.catalog.spend.cap(ctx.tier))
            cost = format_money(offer.cost)
            reasons.append(f"tier {tier} allows up to {cap} per offer; this one costs {cost}")
    if cand.als_rank is not None:
        score = "" if cand.als_score is None else f" (score {cand.als_score:.3f})"
        reasons.append(f"cross-sell model ranks {offer.product_id} #{cand.als_rank}{score}")
    return Action(
        action_id=offer.id,
        kind=offer.kind,
        product_id=offer.product_id,
        channel=ctx.channel,
        message=cand.message,
        score=round(cand.expected_value, 6),
        expected_value=cand.expected_value,
        p_accept=cand.p_accept,
        value=cand.value,
        cost=offer.cost,
        segment_weight=cand.weight,
        als_rank=cand.als_rank,
        als_score=cand.als_score,
        reasons=reasons,
        cold_start=ctx.cold_start,
        marketing=offer.is_marketing,
        evidence=cand.evidence,
    )


def _days(delta: Any) -> float:
    return float(delta.total_seconds()) / _DAY_SECONDS


def _ago(days: float) -> str:
    if days < 1:
        return "today"
    return f"{days:.0f} day{'s' if round(days) != 1 else ''} ago"
