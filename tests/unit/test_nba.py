"""NBA policy: the four example messages, spend caps, consent, contact policy, ties, cold start."""

from __future__ import annotations

import copy
import math
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from models.nba import (
    Action,
    ContactEvent,
    CustomerScores,
    Decision,
    Outcome,
    PolicyError,
    decide,
)
from models.offers import Catalog, catalog_from_dict, load_catalog

pytestmark = pytest.mark.unit

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
CHURN_REASONS = ("3 complaints in the last 90 days", "spending changed -40% on the quarter before")


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def customer(**overrides: Any) -> dict[str, Any]:
    """An ordinary known customer who fits none of the special offers."""
    features: dict[str, Any] = {
        "consent_marketing": True,
        "tenure_days": 900,
        "age": 45.0,
        "region": "north",
        "holds_checking": True,
        "holds_savings": False,
        "holds_high_yield_savings": False,
        "holds_credit_card": False,
        "holds_premium_card": False,
        "holds_mortgage": False,
        "holds_personal_loan": False,
        "holds_investment_fund": False,
        "holds_insurance": False,
        "holds_overdraft_protection": False,
        "balance_checking": 1500.0,
        "idle_cash": 500.0,
        "total_deposits": 1500.0,
        "balance_mortgage": math.nan,
        "rate_mortgage": math.nan,
        "complaints_90d": 0,
        "logins_30d": 6,
        "digital_share": 0.3,
        "monetary_365d": 4000.0,
    }
    features.update(overrides)
    return features


def run(
    catalog: Catalog,
    features: dict[str, Any] | None,
    channel: str,
    scores: CustomerScores | None = None,
    history: Any = None,
    k: int = 1,
    recommendations: Any = None,
) -> Decision:
    return decide(
        features,
        scores or CustomerScores(tier="iron", churn_probability=0.05, clv=800.0),
        channel,
        catalog,
        history,
        NOW,
        k=k,
        recommendations=recommendations,
    )


def ids(decision: Decision) -> list[str]:
    return [a.action_id for a in decision.actions]


def why(decision: Decision, offer_id: str) -> str:
    """The stage and reason an offer was filtered out."""
    found = [f"{r.stage}: {r.reason}" for r in decision.filtered if r.action_id == offer_id]
    assert found, f"{offer_id} was not filtered"
    return found[0]


# --- the four examples of issue 7 ----------------------------------------------------------------


def test_atm_idle_cash_gets_the_high_yield_savings_message(catalog: Catalog) -> None:
    decision = run(catalog, customer(balance_checking=6000.0, idle_cash=5000.0), "atm")
    (action,) = decision.actions
    assert action.message == (
        "You keep $5,000 in checking. Move it to High-Yield Savings at 4.1% and earn about "
        "$205 a year?"
    )
    assert action.action_id == "hys_move_idle_cash"
    assert action.product_id == "high_yield_savings"
    assert "keeps $5,000 idle in checking" in action.reasons
    assert not decision.cold_start


def test_hys_amounts_come_from_the_customer_data(catalog: Catalog) -> None:
    decision = run(catalog, customer(balance_checking=13_000.0, idle_cash=12_000.0), "atm")
    assert decision.actions[0].message.startswith("You keep $12,000 in checking.")
    assert "earn about $492 a year?" in decision.actions[0].message


def test_no_hys_offer_for_a_customer_who_already_holds_it(catalog: Catalog) -> None:
    features = customer(idle_cash=5000.0, holds_high_yield_savings=True)
    decision = run(catalog, features, "atm")
    assert all(a.product_id != "high_yield_savings" for a in decision.actions)
    assert why(decision, "hys_move_idle_cash") == "holding: already holds high_yield_savings"


def test_no_hys_offer_below_the_idle_cash_threshold(catalog: Catalog) -> None:
    decision = run(catalog, customer(idle_cash=1500.0), "atm")
    assert "hys_move_idle_cash" not in ids(decision)
    assert why(decision, "hys_move_idle_cash").startswith("eligibility: condition 1 not met")


def mortgage_holder(rate: float, balance: float = 200_000.0) -> dict[str, Any]:
    return customer(holds_mortgage=True, balance_mortgage=balance, rate_mortgage=rate)


def test_call_center_mortgage_above_market_gets_the_refinancing_message(catalog: Catalog) -> None:
    decision = run(catalog, mortgage_holder(0.065), "call_center")
    (action,) = decision.actions
    assert action.message == (
        "Rates fell 1%: refinancing the mortgage would save about $2,000 a year"
    )
    assert "pays 6.5% while new mortgages cost 5.5%" in action.reasons


def test_refinancing_saving_follows_balance_and_rate_gap(catalog: Catalog) -> None:
    decision = run(catalog, mortgage_holder(0.07, balance=300_000.0), "call_center")
    assert decision.actions[0].message == (
        "Rates fell 1.5%: refinancing the mortgage would save about $4,500 a year"
    )


@pytest.mark.parametrize("rate", [0.055, 0.06, 0.0625])
def test_no_refinancing_at_or_near_the_market_rate(catalog: Catalog, rate: float) -> None:
    decision = run(catalog, mortgage_holder(rate), "call_center")
    assert "mortgage_refi" not in ids(decision)
    assert "condition 3 not met: rate_mortgage" in why(decision, "mortgage_refi")


def at_risk(tier: str, clv: float = 6000.0, p: float = 0.72) -> CustomerScores:
    return CustomerScores(tier=tier, churn_probability=p, clv=clv, churn_reasons=CHURN_REASONS)


def test_call_center_high_churn_gold_gets_the_fee_waiver_with_churn_reasons(
    catalog: Catalog,
) -> None:
    decision = run(catalog, customer(complaints_90d=3), "call_center", at_risk("gold"))
    (action,) = decision.actions
    assert action.action_id == "retention_fee_waiver"
    assert action.kind == "retention"
    assert action.message == (
        "At risk (3 complaints in the last 90 days), gold tier, $4,320 of expected loss: "
        "offer the fee waiver."
    )
    assert action.reasons[:2] == ["churn risk 72%, above the base rate", "expected loss $4,320"]
    assert all(reason in action.reasons for reason in CHURN_REASONS)
    assert action.value == pytest.approx(0.72 * 6000.0 * 0.5)
    assert action.expected_value == pytest.approx(0.4 * 0.72 * 6000.0 * 0.5 - 120)
    assert why(decision, "retention_rate_bonus").startswith("spend: cost $350 exceeds")


def test_platinum_at_risk_gets_the_expensive_rate_bonus(catalog: Catalog) -> None:
    decision = run(catalog, customer(), "call_center", at_risk("platinum", clv=20_000.0))
    assert decision.actions[0].action_id == "retention_rate_bonus"
    assert decision.actions[0].cost == 350
    assert decision.actions[0].message.startswith("At risk (3 complaints")


@pytest.mark.parametrize("clv", [300.0, 6000.0, 1_000_000.0])
def test_lead_customer_never_gets_an_expensive_retention_offer(
    catalog: Catalog, clv: float
) -> None:
    decision = run(catalog, customer(), "call_center", at_risk("lead", clv=clv), k=5)
    assert all(a.cost <= catalog.spend.caps["lead"] for a in decision.actions)
    assert "retention_fee_waiver" not in ids(decision)
    assert "retention_rate_bonus" not in ids(decision)
    stopped_by = why(decision, "retention_fee_waiver")
    if 0.72 * clv >= 500:  # enough at stake to be eligible: the tier's cap stops it
        assert stopped_by.startswith("spend: cost $120 exceeds the spend cap of $25 for tier lead")
    else:
        assert stopped_by.startswith("eligibility: condition 2 not met: expected_loss")
    if clv >= 6000.0:  # cheap retention is still worth it for a lead customer
        assert ids(decision)[0] == "retention_check_in"


def test_no_retention_offer_below_the_base_rate_whatever_the_value(catalog: Catalog) -> None:
    scores = at_risk("platinum", clv=100_000.0, p=0.04)  # 4,000 at stake, but a usual risk
    decision = run(catalog, customer(), "call_center", scores, k=5)
    assert not any(a.kind == "retention" for a in decision.actions)


def test_a_key_customer_at_modest_risk_is_kept_when_the_loss_pays_for_it(
    catalog: Catalog,
) -> None:
    scores = at_risk("platinum", clv=25_000.0, p=0.06)
    worth = run(catalog, customer(), "call_center", scores, k=3)
    bonus = next(a for a in worth.actions if a.action_id == "retention_rate_bonus")
    assert bonus.expected_value == pytest.approx(0.55 * 0.06 * 25_000 * 0.6 - 350)
    assert "expected loss $1,500" in bonus.reasons
    small = run(catalog, customer(), "call_center", at_risk("platinum", clv=10_000.0, p=0.06))
    assert "retention_rate_bonus" not in ids(small)
    assert why(small, "retention_rate_bonus").startswith("eligibility: condition 2 not met")


def test_an_offer_can_be_limited_to_a_share_of_clv() -> None:
    capped = catalog_from_dict(
        {
            "offers": [
                {
                    "id": "fee_waiver",
                    "kind": "retention",
                    "channels": ["call_center"],
                    "cost": 120,
                    "max_clv_share": 0.25,
                    "value": {"model": "retention", "save_rate": 0.5},
                    "p_accept": 0.9,
                    "message": "Waive the fees ({tier}).",
                }
            ]
        }
    )
    small = run(capped, customer(), "call_center", at_risk("gold", clv=400.0, p=1.0))
    assert ids(small) == []
    assert why(small, "fee_waiver") == "spend: cost $120 exceeds 25% of CLV $400"
    assert ids(run(capped, customer(), "call_center", at_risk("gold", clv=480.0, p=1.0))) == [
        "fee_waiver"
    ]


def test_web_shows_the_top_eligible_cross_sell_recommendation(catalog: Catalog) -> None:
    recs = [("credit_card", 0.9), ("insurance", 0.8), ("personal_loan", 0.6)]
    decision = run(catalog, customer(), "web", recommendations=recs)
    (action,) = decision.actions
    assert action.action_id == "als_credit_card"
    assert action.product_id == "credit_card"
    assert action.als_rank == 1
    assert action.als_score == pytest.approx(0.9)
    assert "cross-sell model ranks credit_card #1 (score 0.900)" in action.reasons
    assert why(decision, "als_insurance").startswith("als: cross-sell rank #2")


def test_web_skips_recommendations_the_customer_is_not_eligible_for(catalog: Catalog) -> None:
    recs = [("investment_fund", 0.9), ("premium_card", 0.85), ("insurance", 0.7)]
    decision = run(catalog, customer(), "web", recommendations=recs)
    assert ids(decision) == ["als_insurance"]
    assert decision.actions[0].als_rank == 3
    assert why(decision, "als_investment_fund").startswith("eligibility: condition 1 not met")


def test_web_skips_recommended_products_the_customer_holds(catalog: Catalog) -> None:
    recs = [("checking", 0.95), ("insurance", 0.7)]
    decision = run(catalog, customer(), "web", recommendations=recs)
    assert ids(decision) == ["als_insurance"]
    assert why(decision, "als_checking") == "holding: already holds checking"


def test_recommended_product_without_an_offer_is_reported(catalog: Catalog) -> None:
    decision = run(catalog, customer(), "web", recommendations=[("yacht", 0.99)])
    assert why(decision, "als:yacht") == "als: cross-sell rank #1, but no catalog offer sells yacht"


# --- consent -------------------------------------------------------------------------------------


@pytest.mark.parametrize("consent", [False, None, math.nan])
def test_no_marketing_without_consent_but_service_actions_stay(
    catalog: Catalog, consent: Any
) -> None:
    features = customer(consent_marketing=consent, idle_cash=5000.0, complaints_90d=2)
    decision = run(catalog, features, "call_center", at_risk("gold"), k=5)
    assert [a.kind for a in decision.actions] == ["service"]
    assert decision.actions[0].message.startswith("2 complaint(s) in the last 90 days")
    assert why(decision, "retention_fee_waiver").startswith("consent: marketing offer")
    atm = run(catalog, features, "atm")
    assert "hys_move_idle_cash" not in ids(atm)


# --- contact policy ------------------------------------------------------------------------------


def hys_customer() -> dict[str, Any]:
    return customer(balance_checking=6000.0, idle_cash=5000.0)


def contacted(offer_id: str, days_ago: float, outcome: Outcome = "ignored") -> ContactEvent:
    return ContactEvent(
        offer_id=offer_id, timestamp=NOW - timedelta(days=days_ago), outcome=outcome
    )


def test_cooldown_suppresses_a_recent_offer(catalog: Catalog) -> None:
    decision = run(catalog, hys_customer(), "atm", history=[contacted("hys_move_idle_cash", 5)])
    assert "hys_move_idle_cash" not in ids(decision)
    assert why(decision, "hys_move_idle_cash") == (
        "contact: last contacted 5 days ago; cooldown 14 days"
    )
    later = run(catalog, hys_customer(), "atm", history=[contacted("hys_move_idle_cash", 20)])
    assert ids(later) == ["hys_move_idle_cash"]


def test_declined_offer_is_suppressed_for_the_decline_cooldown(catalog: Catalog) -> None:
    declined = [contacted("hys_move_idle_cash", 20, "declined")]
    decision = run(catalog, hys_customer(), "atm", history=declined)
    assert "hys_move_idle_cash" not in ids(decision)
    assert why(decision, "hys_move_idle_cash") == (
        "contact: declined 20 days ago; suppressed for 60 days after a decline"
    )
    long_ago = [contacted("hys_move_idle_cash", 70, "declined")]
    assert ids(run(catalog, hys_customer(), "atm", history=long_ago)) == ["hys_move_idle_cash"]


def test_a_declined_product_is_not_offered_again_through_another_offer(catalog: Catalog) -> None:
    declined = [contacted("hys_move_idle_cash", 20, "declined")]
    decision = run(
        catalog,
        hys_customer(),
        "web",
        history=declined,
        k=3,
        recommendations=[("high_yield_savings", 0.9)],
    )
    assert all(a.product_id != "high_yield_savings" for a in decision.actions)
    assert why(decision, "als_high_yield_savings") == (
        "contact: another offer of high_yield_savings was declined 20 days ago; "
        "suppressed for 30 days"
    )


def test_max_contacts_per_period_for_one_offer(catalog: Catalog) -> None:
    history = [contacted("hys_move_idle_cash", days) for days in (20, 40, 60)]
    decision = run(catalog, hys_customer(), "atm", history=history)
    assert "hys_move_idle_cash" not in ids(decision)
    assert why(decision, "hys_move_idle_cash") == (
        "contact: made 3 times in the last 90 days (max 3)"
    )
    older = [contacted("hys_move_idle_cash", days) for days in (20, 40, 100)]
    assert ids(run(catalog, hys_customer(), "atm", history=older)) == ["hys_move_idle_cash"]


def test_customer_contact_cap_stops_marketing_but_not_service(catalog: Catalog) -> None:
    history = [contacted(offer_id, 2) for offer_id in ("als_savings", "als_checking", "x_old")]
    features = customer(idle_cash=5000.0, complaints_90d=1)
    decision = run(catalog, features, "web", history=history, k=3)
    assert [a.kind for a in decision.actions] == ["service"]
    assert why(decision, "hys_move_idle_cash") == (
        "contact: customer's marketing contact cap reached (3 per 7 days)"
    )
    service_only = [contacted("service_app_help", 1)] * 5
    assert "hys_move_idle_cash" in ids(run(catalog, features, "web", history=service_only, k=3))


def test_contact_history_accepts_tuples_and_mappings(catalog: Catalog) -> None:
    naive = (NOW - timedelta(days=3)).replace(tzinfo=None)
    for event in (
        ("hys_move_idle_cash", naive, "declined"),
        {"offer_id": "hys_move_idle_cash", "timestamp": naive.isoformat(), "outcome": "accepted"},
    ):
        decision = run(catalog, hys_customer(), "atm", history=[event])
        assert "hys_move_idle_cash" not in ids(decision)


def test_malformed_contact_history_is_a_policy_error(catalog: Catalog) -> None:
    with pytest.raises(PolicyError, match="contact_history"):
        run(catalog, hys_customer(), "atm", history=[("hys_move_idle_cash", NOW, "maybe")])


# --- ranking -------------------------------------------------------------------------------------


def tie_catalog(order: list[int]) -> Catalog:
    offers = [
        {"id": "b_cheap", "cost": 1, "amount": 30},
        {"id": "a_dear", "cost": 2, "amount": 40},
        {"id": "c_same", "cost": 1, "amount": 30},
        {"id": "d_best", "cost": 1, "amount": 50},
    ]
    return catalog_from_dict(
        {
            "offers": [
                {
                    "id": offers[i]["id"],
                    "kind": "service",
                    "channels": ["web"],
                    "cost": offers[i]["cost"],
                    "value": {"model": "fixed", "amount": offers[i]["amount"]},
                    "p_accept": 0.1,
                    "message": "Do {tier}.",
                }
                for i in order
            ]
        }
    )


def test_ties_break_by_cost_then_id_whatever_the_catalog_order() -> None:
    # expected values: d_best 4, a_dear 2, b_cheap 2, c_same 2
    expected = ["d_best", "b_cheap", "c_same", "a_dear"]
    for seed in range(5):
        order = list(range(4))
        random.Random(seed).shuffle(order)
        decision = decide(
            customer(), CustomerScores(tier="gold"), "web", tie_catalog(order), [], NOW, k=4
        )
        assert ids(decision) == expected
        assert [a.score for a in decision.actions] == [4.0, 2.0, 2.0, 2.0]


def test_k_actions_best_first_one_per_product(catalog: Catalog) -> None:
    features = customer(
        balance_checking=6000.0,
        idle_cash=5000.0,
        holds_mortgage=True,
        balance_mortgage=200_000.0,
        rate_mortgage=0.065,
        complaints_90d=1,
    )
    decision = run(catalog, features, "web", k=3, recommendations=[("high_yield_savings", 0.9)])
    values = [a.expected_value for a in decision.actions]
    assert len(decision.actions) == 3
    assert values == sorted(values, reverse=True)
    products = [a.product_id for a in decision.actions if a.product_id]
    assert len(products) == len(set(products))
    assert why(decision, "als_high_yield_savings").startswith(
        "rank: a better offer for high_yield_savings ranked higher: hys_move_idle_cash"
    )


def test_recommendation_lifts_acceptance_of_a_rule_based_offer(catalog: Catalog) -> None:
    plain = run(catalog, hys_customer(), "atm").actions[0]
    lifted = run(catalog, hys_customer(), "atm", recommendations=[("high_yield_savings", 0.7)])
    assert lifted.actions[0].p_accept == pytest.approx(plain.p_accept * 1.5)
    assert lifted.actions[0].als_rank == 1


def test_segment_weight_scales_expected_value(catalog: Catalog) -> None:
    base = CustomerScores(tier="iron", segment_id=2, segment_name="mainstream customers")
    savers = CustomerScores(tier="iron", segment_id=3, segment_name="affluent savers")
    plain = run(catalog, hys_customer(), "atm", base).actions[0]
    weighted = run(catalog, hys_customer(), "atm", savers).actions[0]
    assert plain.segment_weight == 1.0
    assert weighted.segment_weight == pytest.approx(1.3 * 1.2)
    assert weighted.expected_value == pytest.approx(0.12 * 100 * 1.3 * 1.2 - 2)


def test_tier_rules_of_an_offer(catalog: Catalog) -> None:
    rich = customer(total_deposits=80_000.0)
    lead = run(catalog, rich, "branch", CustomerScores(tier="lead"))
    assert why(lead, "investment_fund_affluent") == (
        "tier: tier lead not allowed (allowed: platinum, gold, iron)"
    )
    gold = run(catalog, rich, "branch", CustomerScores(tier="gold"))
    assert ids(gold) == ["investment_fund_affluent"]
    assert gold.actions[0].message.startswith("With $80,000 on deposit")


# --- every action's content; cold start; failures ------------------------------------------------


def test_every_action_carries_its_numbers_and_reasons(catalog: Catalog) -> None:
    features = customer(idle_cash=5000.0, complaints_90d=2, holds_mortgage=True)
    decision = run(catalog, features, "call_center", at_risk("gold"), k=5, recommendations=[])
    assert len(decision.actions) >= 3
    for action in decision.actions:
        assert isinstance(action, Action)
        assert action.reasons
        assert action.message
        assert action.score == pytest.approx(action.expected_value)
        assert action.expected_value == pytest.approx(
            action.p_accept * action.value * action.segment_weight - action.cost
        )
        assert action.channel == "call_center"
    assert Decision.model_validate_json(decision.model_dump_json()) == decision


@pytest.mark.parametrize("features", [None, {}, {"idle_cash": None, "tenure_days": math.nan}])
def test_unknown_customer_gets_a_flagged_cold_start_offer(catalog: Catalog, features: Any) -> None:
    decision = decide(features, None, "atm", catalog, None, NOW)
    assert decision.cold_start
    (action,) = decision.actions
    assert action.cold_start
    assert action.action_id == "service_app_tour"
    assert action.message == "Check balances and move money in seconds with the Loyal app."
    assert action.reasons == ["unknown customer: a popular offer on atm"]
    assert why(decision, "hys_move_idle_cash") == (
        "cold_start: unknown customer; not a cold-start offer"
    )
    assert why(decision, "hys_open") == (
        "consent: marketing offer and the customer is unknown: no consent on record"
    )


@pytest.mark.parametrize("channel", ["atm", "web", "branch", "mobile", "email", "call_center"])
def test_unknown_customers_never_get_marketing_offers(catalog: Catalog, channel: str) -> None:
    """Issue 16, point 2: no consent on record means no marketing, in every mode."""
    decision = decide(None, None, channel, catalog, None, NOW, k=10)
    assert all(not catalog.offer(a.action_id).is_marketing for a in decision.actions)  # type: ignore[union-attr]


def test_an_offer_marked_not_marketing_reaches_unknown_customers(catalog: Catalog) -> None:
    """Only the catalog's explicit `marketing: false` lets a selling offer skip consent."""
    offers = [
        o.model_copy(update={"marketing": False}) if o.id == "hys_open" else o
        for o in catalog.offers
    ]
    relaxed = Catalog.model_validate({**catalog.model_dump(), "offers": offers})
    decision = decide(None, None, "atm", relaxed, None, NOW, k=2)
    assert "hys_open" in [a.action_id for a in decision.actions]


def test_cold_start_uses_only_cold_start_offers(
    catalog: Catalog,
) -> None:
    decision = decide(
        None, None, "web", catalog, None, NOW, k=5, recommendations=[("insurance", 1)]
    )
    assert decision.actions
    assert all(catalog.offer(a.action_id).cold_start for a in decision.actions)  # type: ignore[union-attr]


def test_known_customer_is_not_cold_start(catalog: Catalog) -> None:
    decision = run(catalog, customer(), "atm")
    assert not decision.cold_start
    assert all(not a.cold_start for a in decision.actions)


def test_missing_values_never_make_an_offer_eligible(catalog: Catalog) -> None:
    features = customer(idle_cash=math.nan, balance_checking=None, total_deposits=math.nan)
    decision = run(catalog, features, "atm", k=5)
    assert "hys_move_idle_cash" not in ids(decision)
    assert why(decision, "hys_move_idle_cash").endswith("idle_cash is missing")


def test_retention_without_scores_is_filtered_not_failed(catalog: Catalog) -> None:
    decision = decide(customer(), None, "call_center", catalog, None, NOW, k=5)
    assert all(a.kind != "retention" for a in decision.actions)
    assert "churn_probability is missing" in why(decision, "retention_fee_waiver")


def test_decide_does_not_change_its_inputs(catalog: Catalog) -> None:
    features = hys_customer()
    history = [contacted("service_app_help", 3)]
    before = (copy.deepcopy(features), list(history))
    run(catalog, features, "atm", history=history, recommendations=[("insurance", 0.5)])
    assert (features, history) == before


def test_same_inputs_same_decision(catalog: Catalog) -> None:
    features = customer(idle_cash=5000.0, complaints_90d=2, holds_mortgage=True)
    first = run(catalog, features, "web", at_risk("gold"), k=3, recommendations=[("insurance", 1)])
    again = run(catalog, features, "web", at_risk("gold"), k=3, recommendations=[("insurance", 1)])
    assert first == again


@pytest.mark.parametrize(("channel", "k", "problem"), [("fax", 1, "channel"), ("web", 0, "k")])
def test_bad_requests_are_policy_errors(
    catalog: Catalog, channel: str, k: int, problem: str
) -> None:
    with pytest.raises(PolicyError, match=f"^{problem}: "):
        run(catalog, customer(), channel, k=k)
