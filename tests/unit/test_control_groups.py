"""Control groups: reproducible, stratified, recorded, and never contacted while a campaign runs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from loyal.campaigns import (
    Campaign,
    CampaignError,
    CampaignStore,
    ControlGroups,
    assign_control,
    check_control_share,
)
from loyal.settings import ServingSettings
from models.offers import load_catalog
from serving.feedback import FeedbackStore
from serving.runtime import Runtime
from serving.schemas import NextBestActionRequest

pytestmark = pytest.mark.unit

NOW = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)


def test_control_group_is_reproducible_stratified_and_order_free() -> None:
    ids = [f"C{i:04d}" for i in range(1000)]
    tiers = ["gold"] * 200 + ["lead"] * 800
    control = assign_control(ids, tiers, 0.1, seed=7)
    assert control[:200].sum() == 20 and control[200:].sum() == 80
    again = assign_control(ids[::-1], tiers[::-1], 0.1, seed=7)[::-1]
    assert (control == again).all()
    other = assign_control(ids, tiers, 0.1, seed=8)
    assert (control != other).any()


@pytest.mark.parametrize("share", [0.0, -0.1, 0.51, 1.0, float("nan")])
def test_control_share_outside_the_range_is_refused(share: float) -> None:
    with pytest.raises(CampaignError, match=r"--control-share: must be in \(0, 0.5\]"):
        check_control_share(share)


def record(path: Path, members: dict[str, str], snapshot: datetime, days: int = 90) -> None:
    frame = pd.DataFrame(
        {
            "customer_id": list(members),
            "grp": list(members.values()),
            "tier": "gold",
            "segment_name": "savers",
            "action_id": "fee_waiver",
            "action_cost": np.where(np.array(list(members.values())) == "treated", 40.0, 0.0),
            "churn_probability": 0.3,
            "clv": 2000.0,
        }
    )
    campaign = Campaign(
        f"c-{snapshot:%Y%m%d}", "retention", snapshot, snapshot, days, 7, 0.1, "l.csv", "ab"
    )
    CampaignStore(path).record(campaign, frame)


def test_a_recorded_campaign_reads_back_and_refuses_a_second_write(tmp_path: Path) -> None:
    path = tmp_path / "campaigns.db"
    record(path, {"C1": "treated", "C2": "control"}, NOW - timedelta(days=10))
    store = CampaignStore(path)
    campaign = store.campaign("c-20260921")
    assert campaign.window_end == NOW - timedelta(days=10) + timedelta(days=90)
    assert store.members("c-20260921")["grp"].tolist() == ["treated", "control"]
    with pytest.raises(CampaignError, match="already recorded"):
        record(path, {"C1": "treated"}, NOW - timedelta(days=10))
    with pytest.raises(CampaignError, match="unknown campaign 'nope'"):
        store.campaign("nope")


class Reader:
    name = "fake"
    views = ("profile", "rfm", "holdings", "engagement", "balances", "lifecycle", "scores")

    def __init__(self, rows: dict[str, dict[str, Any]]) -> None:
        self.rows = rows

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(sorted({n for row in self.rows.values() for n in row}))

    def read(self, customer_ids: Sequence[str]) -> list[dict[str, Any] | None]:
        return [dict(self.rows[c]) if c in self.rows else None for c in customer_ids]

    def probe(self) -> None:
        return None


def row() -> dict[str, Any]:
    """A consenting gold customer at high churn risk: a retention offer fits."""
    return {
        "consent_marketing": True, "tenure_days": 900, "age": 45.0, "holds_checking": True,
        "holds_high_yield_savings": False, "holds_mortgage": False, "holds_credit_card": False,
        "balance_checking": 6000.0, "idle_cash": 5000.0, "total_deposits": 6000.0,
        "complaints_90d": 3, "logins_30d": 1, "monetary_365d": 3000.0, "tier": "gold",
        "segment_id": 2, "segment_name": "affluent savers", "clv": 2400.0, "p_alive": 0.9,
        "churn_probability": 0.6,
    }  # fmt: skip


def runtime(tmp_path: Path, clock: datetime) -> Runtime:
    return Runtime(
        load_catalog(),
        {},
        lambda: Reader({"C1": row(), "C2": row()}),
        FeedbackStore(tmp_path / "feedback.db"),
        ServingSettings(),
        clock=lambda: clock,
        control_groups=ControlGroups(tmp_path / "campaigns.db"),
    )


def marketing(answer: Any) -> list[str]:
    catalog = load_catalog()
    return [a.action_id for a in answer.actions if catalog.offer(a.action_id).is_marketing]  # type: ignore[union-attr]


def test_the_service_never_contacts_a_running_control_group(tmp_path: Path) -> None:
    record(tmp_path / "campaigns.db", {"C1": "treated", "C2": "control"}, NOW - timedelta(days=10))
    during = runtime(tmp_path, NOW)
    contacted = []
    for channel in ("call_center", "atm", "web", "mobile"):
        treated = during.next_best_action(NextBestActionRequest(customer_id="C1", channel=channel))
        control = during.next_best_action(
            NextBestActionRequest(customer_id="C2", channel=channel, explain=True)
        )
        contacted += marketing(treated)
        assert not marketing(control), channel
        assert any("control group of campaign" in f.reason for f in control.filtered or ())
    assert contacted, "the same customer outside the control group gets marketing offers"
    after = runtime(tmp_path, NOW + timedelta(days=90))
    again = after.next_best_action(NextBestActionRequest(customer_id="C2", channel="call_center"))
    assert marketing(again), "after the window the control group may be contacted again"


def test_an_unreadable_store_holds_everyone_out_and_flags_it(tmp_path: Path) -> None:
    (tmp_path / "campaigns.db").write_text("not a database")
    answer = runtime(tmp_path, NOW).next_best_action(
        NextBestActionRequest(customer_id="C1", channel="call_center")
    )
    assert not marketing(answer)
    assert "campaigns store unreadable" in answer.degraded_reasons


def test_a_decision_kept_before_a_campaign_starts_is_not_given_to_its_control_group(
    tmp_path: Path,
) -> None:
    service = runtime(tmp_path, NOW)
    before = service.next_best_action(
        NextBestActionRequest(customer_id="C2", channel="call_center")
    )
    assert marketing(before), "without a campaign the customer gets marketing offers"
    record(tmp_path / "campaigns.db", {"C1": "treated", "C2": "control"}, NOW - timedelta(days=1))
    during = service.next_best_action(
        NextBestActionRequest(customer_id="C2", channel="call_center")
    )
    assert not marketing(during)
