"""Win-back by tier: lapsed or lost customers get a win-back sized by tier, not retention."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from campaigns.churn_list import NO_WIN_BACK
from campaigns.list_campaigns import hold_out
from models.nba import CustomerScores, Decision, decide
from models.offers import Catalog, load_catalog
from tests.unit.churn_list_members import list_members, suggested_actions

pytestmark = pytest.mark.unit

NOW = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)
CLV = {"platinum": 30_000.0, "gold": 4_000.0, "iron": 900.0, "lead": 80.0}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def facts(state: str, consent: bool = True) -> dict[str, Any]:
    return {"state": state, "consent_marketing": consent, "tenure_days": 2000, "age": 50.0}


def scores(tier: str, p: float = 0.8) -> CustomerScores:
    return CustomerScores(tier=tier, churn_probability=p, clv=CLV[tier])


def best(catalog: Catalog, state: str, tier: str, channel: str, **kw: Any) -> Decision:
    consent = kw.pop("consent", True)
    return decide(facts(state, consent), scores(tier), channel, catalog, (), NOW, **kw)


def test_lapsed_platinum_gets_the_strong_win_back_on_call_center(catalog: Catalog) -> None:
    decision = best(catalog, "lapsed", "platinum", "call_center")
    (action,) = decision.actions
    assert action.action_id == "winback_personal_call" and action.kind == "win_back"
    assert action.cost >= 300 and action.marketing
    assert "lifecycle state lapsed: worth winning back at tier platinum" in action.reasons


@pytest.mark.parametrize(
    ("tier", "offer"),
    [("gold", "winback_fee_free_year"), ("iron", "winback_digital_voucher")],
)
def test_effort_shrinks_with_the_tier(catalog: Catalog, tier: str, offer: str) -> None:
    decision = best(catalog, "lost", tier, "call_center")
    assert [a.action_id for a in decision.actions] == [offer]
    assert decision.actions[0].cost < 300


def test_iron_voucher_is_digital_and_platinum_call_is_not(catalog: Catalog) -> None:
    assert [a.action_id for a in best(catalog, "lapsed", "iron", "web").actions] == [
        "winback_digital_voucher"
    ]
    on_web = best(catalog, "lapsed", "platinum", "web", k=5)
    assert "win_back" not in [a.kind for a in on_web.actions]


def test_lapsed_lead_gets_no_win_back_and_no_retention(catalog: Catalog) -> None:
    decision = best(catalog, "lapsed", "lead", "call_center", k=5)
    assert decision.actions == []
    stages = {r.action_id: r.stage for r in decision.filtered}
    assert stages["winback_digital_voucher"] == "tier"
    assert stages["retention_check_in"] == "eligibility"


def test_customers_still_here_get_retention_not_win_back(catalog: Catalog) -> None:
    decision = best(catalog, "at_risk", "platinum", "call_center")
    assert [a.kind for a in decision.actions] == ["retention"]
    reasons = {r.action_id: r.reason for r in decision.filtered}
    assert "lifecycle state at_risk" in reasons["winback_personal_call"]


def test_control_group_member_gets_no_win_back(catalog: Catalog) -> None:
    held = "control group of campaign retention-2026-10-01-abcd1234"
    decision = best(catalog, "lapsed", "platinum", "call_center", holdout=held)
    assert decision.actions == []
    assert any(r.stage == "holdout" for r in decision.filtered)


def test_no_consent_no_win_back(catalog: Catalog) -> None:
    decision = best(catalog, "lost", "platinum", "call_center", consent=False)
    assert decision.actions == []
    reasons = {r.action_id: r for r in decision.filtered}
    assert reasons["winback_personal_call"].stage == "consent"


def test_churn_list_gives_lapsed_members_the_tier_sized_win_back(catalog: Catalog) -> None:
    tiers = ["platinum", "gold", "iron", "lead", "platinum"]
    states = ["lapsed", "lost", "lapsed", "lapsed", "at_risk"]
    selected = list_members(tiers, CLV)
    actions = suggested_actions(catalog, selected, [facts(s) for s in states], NOW)
    assert actions["action_id"].tolist() == [
        "winback_personal_call",
        "winback_fee_free_year",
        "winback_digital_voucher",
        "",
        "retention_rate_bonus",
    ]
    assert actions["action_note"].iloc[3] == NO_WIN_BACK
    listed = hold_out(selected.assign(**actions), 0.5, seed=3)
    assert set(listed["group"]) <= {"treated", "control"} and len(listed) == len(tiers)
