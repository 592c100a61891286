"""Request and response schemas of the HTTP API, with the examples shown on the OpenAPI page."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

CustomerId = str
Channel = Annotated[str, Field(min_length=1, max_length=64)]
"""A channel name; the offer catalog declares which exist (checked per request, see /status)."""
Outcome = Literal["accepted", "declined", "ignored"]
MAX_BATCH = 1000
"""Most customer ids in one `/churn_score` call."""

_ID = Field(min_length=1, max_length=128, description="The customer's id in the data contract.")
_COLD_START_REASON = Field(
    default=None,
    description="Why the answer is a cold start: 'unknown customer: ...' (ids are matched "
    "exactly) or 'customer data unavailable: ...'.",
)


def _example(**fields: Any) -> ConfigDict:
    """A model config whose only addition is the example the OpenAPI page shows."""
    return ConfigDict(json_schema_extra={"example": fields})


class _Request(BaseModel):
    # every request refuses unknown fields and is frozen; a subclass's model_config adds to this
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Answer(BaseModel):
    """Fields every answer carries: which models answered and whether anything was missing."""

    model_versions: dict[str, str | None] = Field(
        description="Registered model versions used (None: that model is missing)."
    )
    degraded: bool = Field(
        description="Part of the answer could not be computed as designed (see degraded_reasons)."
    )
    degraded_reasons: list[str] = Field(default_factory=list)


# --- next best action ----------------------------------------------------------------------------


class NextBestActionRequest(_Request):
    """Which actions to take now with one customer on one channel."""

    model_config = _example(
        customer_id="C0000042",
        channel="atm",
        k=1,
        context={"balance_checking": 5200.0, "idle_cash": 4200.0},
    )

    customer_id: CustomerId = _ID
    channel: Channel = Field(
        description=(
            "Where the answer is shown: one of the offer catalog's channels (/status lists "
            "them; the bank's: atm, web, mobile, call_center, branch, email; the retail "
            "catalog's: web, mobile, email, store, call_center)."
        ),
        examples=["atm", "call_center", "store"],
    )
    context: dict[str, Any] | None = Field(
        default=None,
        max_length=32,
        description=(
            "Fresher facts the channel just observed (e.g. the balance an ATM just read), "
            "only under the names the offer catalog declares in its `context` section; they "
            "override the feature store for this answer only. Scores, tier, CLV, segment, "
            "holdings and consent can never be set: any other name is a 400 naming it."
        ),
    )
    k: int = Field(default=1, ge=1, le=10, description="How many actions at most.")
    explain: bool = Field(
        default=False,
        description="Also list every candidate left out and the stage that dropped it.",
    )


class ActionOut(BaseModel):
    """One action to take, its message, why, and the numbers that ranked it."""

    action_id: str = Field(description="The offer id; send it back to /feedback.")
    kind: str
    product_id: str | None
    message: str
    score: float = Field(description="Ranking key: the expected value rounded to 6 decimals.")
    expected_value: float = Field(description="p_accept x value x segment_weight - cost.")
    p_accept: float
    value: float
    cost: float
    segment_weight: float
    als_rank: int | None = Field(description="Rank in the cross-sell recommendations, if any.")
    reasons: list[str]
    p_accept_evidence: str = Field(
        default="catalog prior",
        description="Where p_accept comes from: the catalog's prior or the learned evidence.",
    )


class RejectedOut(BaseModel):
    """A candidate the policy left out, and why."""

    action_id: str
    product_id: str | None
    stage: str
    reason: str


class NextBestActionResponse(_Answer):
    """The actions for one customer on one channel, best first."""

    model_config = _example(
        customer_id="C0000042",
        channel="atm",
        actions=[
            {
                "action_id": "hys_move_idle_cash",
                "kind": "cross_sell",
                "product_id": "high_yield_savings",
                "message": (
                    "You keep $5,000 in checking. Move it to High-Yield Savings at "
                    "4.1% and earn about $205 a year?"
                ),
                "score": 10.48,
                "expected_value": 10.48,
                "p_accept": 0.12,
                "value": 104.0,
                "cost": 2.0,
                "segment_weight": 1.0,
                "als_rank": None,
                "reasons": ["keeps $5,000 idle in checking"],
            }
        ],
        churn_probability=0.04,
        tier="iron",
        segment="affluent savers",
        clv=1830.0,
        model_versions={"churn": "3", "cross_sell": "2"},
        degraded=False,
        degraded_reasons=[],
        cold_start=False,
        decided_at="2026-11-02T10:15:00Z",
        decision_id="d-1793614500000-5f0c2a9b7e41",
        context_used=["idle_cash"],
        context_ignored=[],
    )

    customer_id: CustomerId
    channel: Channel
    actions: list[ActionOut]
    churn_probability: float | None
    tier: str | None
    segment: str | None
    clv: float | None
    cold_start: bool = Field(
        description="The customer is unknown: generic offers that need no marketing consent."
    )
    cold_start_reason: str | None = _COLD_START_REASON
    decided_at: datetime
    decision_id: str = Field(
        description="Send it back with /feedback: retries are then safe and ts is checked."
    )
    context_used: list[str] = Field(
        default_factory=list, description="Request context fields this answer applied."
    )
    context_ignored: list[str] = Field(
        default_factory=list,
        description="Accepted context fields not applied (the customer is unknown).",
    )
    filtered: list[RejectedOut] | None = Field(
        default=None, description="With explain: every candidate left out and why."
    )


# --- recommend -----------------------------------------------------------------------------------


class RecommendRequest(_Request):
    """Cross-sell products for one customer."""

    model_config = _example(customer_id="C0000042")

    customer_id: CustomerId = _ID
    k: int = Field(default=5, ge=1, le=20, description="How many products at most.")


class ProductScore(BaseModel):
    """One recommended product."""

    rank: int
    product_id: str
    score: float


class RecommendResponse(_Answer):
    """Products the customer does not hold yet, best first (popular ones when unknown)."""

    customer_id: CustomerId
    products: list[ProductScore]
    cold_start: bool
    cold_start_reason: str | None = _COLD_START_REASON


# --- churn score ---------------------------------------------------------------------------------


class ChurnScoreRequest(_Request):
    """Churn probabilities of a batch of customers."""

    model_config = _example(customer_ids=["C0000042", "C0000043"])

    customer_ids: list[CustomerId] = Field(min_length=1, max_length=MAX_BATCH)


class ChurnScore(BaseModel):
    """One customer's churn probability and the reasons behind it."""

    customer_id: CustomerId
    churn_probability: float | None = Field(description="None for an unknown customer.")
    reasons: list[str]
    cold_start: bool
    cold_start_reason: str | None = _COLD_START_REASON
    source: Literal["model", "batch"] | None = Field(
        description="model: scored now by the champion; batch: the last batch score."
    )


class ChurnScoreResponse(_Answer):
    """One score per requested customer, in the order asked."""

    scores: list[ChurnScore]


# --- segment -------------------------------------------------------------------------------------


class SegmentRequest(_Request):
    """Value tier, need segment and lifetime value of one customer."""

    model_config = _example(customer_id="C0000042")

    customer_id: CustomerId = _ID


class SegmentResponse(_Answer):
    """Tier, need segment and CLV from the last batch scoring."""

    customer_id: CustomerId
    tier: str | None
    segment_id: int | str | None
    segment: str | None
    clv: float | None
    p_alive: float | None
    cold_start: bool
    cold_start_reason: str | None = _COLD_START_REASON


# --- feedback ------------------------------------------------------------------------------------


class FeedbackRequest(_Request):
    """How a customer answered an action; the contact policy reads it (cooldowns, caps)."""

    model_config = _example(
        customer_id="C0000042",
        action_id="hys_move_idle_cash",
        channel="atm",
        outcome="declined",
    )

    customer_id: CustomerId = _ID
    action_id: str = Field(min_length=1, max_length=128, description="The action's offer id.")
    channel: Channel = Field(description="Where the answer was given: a channel of the offer.")
    outcome: Outcome
    ts: datetime | None = Field(
        default=None,
        description=(
            "When it happened (default: now, UTC): not in the future beyond the allowed clock "
            "skew, not older than the allowed age, not before the decision."
        ),
    )
    decision_id: str | None = Field(
        default=None,
        max_length=64,
        pattern=r"^d-[0-9]{13}-[0-9a-f]{12}$",
        description="The decision_id of the /next_best_action answer this feedback is about.",
    )
    idempotency_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description=(
            "Makes retries safe: a repeat with the same key records nothing new and returns "
            "the first record (default with a decision_id: decision_id + action_id)."
        ),
    )


class FeedbackResponse(BaseModel):
    """The recorded feedback."""

    recorded: bool = Field(description="False: a retry of a feedback already recorded.")
    feedback_id: int
    customer_id: CustomerId
    action_id: str
    channel: Channel
    outcome: Outcome
    ts: datetime
    decision_id: str | None = Field(
        default=None,
        description=(
            "The decision this answer was filed with: the one sent, else the customer's latest "
            "decision that showed the action (None: no such decision logged; the answer is "
            "still kept for the contact policy)."
        ),
    )


# --- status --------------------------------------------------------------------------------------


class StatusResponse(BaseModel):
    """What the service loaded and whether it can answer fully (also the trivial benchmark call)."""

    ready: bool
    model_versions: dict[str, str | None]
    model_sources: dict[str, str | None]
    feature_service: str
    feature_reader: str
    feature_store: str = Field(description="'ok' or the error met reading it.")
    offers: int
    catalog: str = Field(default="", description="The offer catalog served, and why it was chosen.")
    channels: list[str] = Field(default_factory=list, description="The catalog's channels.")
    auth: bool
    degraded_reasons: list[str]
    fallbacks: list[str] = Field(
        default_factory=list,
        description=(
            "Configured models without a champion whose absence has a complete answer of its "
            "own (uplift: retention valued by churn risk), with what answers do instead."
        ),
    )
