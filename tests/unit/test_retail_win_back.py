"""Win-back by tier in the retail catalog: lapsed or lost shoppers get a win-back sized by tier."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from campaigns.churn_list import NO_WIN_BACK
from models.nba import CustomerScores, Decision, decide
from models.offers import Catalog, load_catalog
from tests.unit.churn_list_members import list_members, suggested_actions

pytestmark = pytest.mark.unit

NOW = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)
CLV = {"platinum": 5_000.0, "gold": 900.0, "iron": 200.0, "lead": 15.0}


@pytest.fixture(scope="module")
def retail() -> Catalog:
    return load_catalog("retail")


def facts(state: str, recency_days: int = 200, consent: bool = True) -> dict[str, Any]:
    return {
        "state": state,
        "consent_marketing": consent,
        "tenure_days": 900,
        "recency_days": recency_days,
        "frequency_30d": 0,
        "frequency_365d": 3,
        "monetary_365d": 400.0,
        "avg_basket_365d": 60.0,
    }


def best(retail: Catalog, state: str, tier: str, channel: str, **kw: Any) -> Decision:
    consent = kw.pop("consent", True)
    scores = CustomerScores(tier=tier, churn_probability=0.8, clv=CLV[tier])
    return decide(facts(state, consent=consent), scores, channel, retail, (), NOW, **kw)


@pytest.mark.parametrize(
    ("tier", "offer", "channel"),
    [
        ("platinum", "winback_personal_outreach", "call_center"),
        ("gold", "winback_strong_incentive", "email"),
        ("iron", "winback_voucher", "email"),
    ],
)
def test_lapsed_shoppers_get_the_win_back_of_their_tier(
    retail: Catalog, tier: str, offer: str, channel: str
) -> None:
    decision = best(retail, "lapsed", tier, channel)
    (action,) = [a for a in decision.actions if a.kind == "win_back"]
    assert action.action_id == offer and action.marketing
    assert f"lifecycle state lapsed: worth winning back at tier {tier}" in action.reasons
    assert not [a for a in decision.actions if a.kind == "retention"]


def test_effort_and_cost_shrink_down_the_pyramid(retail: Catalog) -> None:
    cost = {o.id: o.cost for o in retail.offers if o.kind == "win_back"}
    assert cost["winback_personal_outreach"] > cost["winback_strong_incentive"]
    assert cost["winback_strong_incentive"] > cost["winback_voucher"]
    outreach = retail.offer("winback_personal_outreach")
    assert outreach is not None and "call_center" in outreach.channels


def test_lost_lead_shopper_gets_nothing(retail: Catalog) -> None:
    decision = best(retail, "lost", "lead", "email", k=5)
    assert decision.actions == []
    stages = {r.action_id: r.stage for r in decision.filtered}
    assert stages["winback_voucher"] == "tier"
    assert stages["reactivation_voucher"] == "eligibility"


def test_shoppers_still_here_get_no_win_back(retail: Catalog) -> None:
    decision = best(retail, "at_risk", "platinum", "call_center", k=5)
    assert "win_back" not in [a.kind for a in decision.actions]
    reasons = {r.action_id: r.reason for r in decision.filtered}
    assert "lifecycle state at_risk" in reasons["winback_personal_outreach"]


def test_control_group_and_no_consent_get_no_win_back(retail: Catalog) -> None:
    held = "control group of campaign retention-2026-10-01-abcd1234"
    assert best(retail, "lapsed", "gold", "email", holdout=held).actions == []
    refused = best(retail, "lost", "gold", "email", consent=False)
    assert "win_back" not in [a.kind for a in refused.actions]


def test_retail_churn_list_gives_lapsed_members_the_tier_sized_win_back(retail: Catalog) -> None:
    selected = list_members(["platinum", "gold", "iron", "lead"], CLV, prefix="R")
    actions = suggested_actions(retail, selected, [facts("lapsed")] * len(selected), NOW)
    assert actions["action_id"].tolist() == [
        "winback_personal_outreach",
        "winback_strong_incentive",
        "winback_voucher",
        "",
    ]
    assert actions["action_note"].iloc[3] == NO_WIN_BACK
