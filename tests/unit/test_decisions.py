"""Decision log and safe exploration: every answer logged with exact propensities, answers filed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from decisions.explore import Exploration, arrange, arrange_from
from decisions.log import ACCEPTED, DECLINED, IGNORED, PENDING, Candidate, Decision, DecisionLog
from decisions.record import DecisionRecorder
from loyal.settings import ServingSettings
from models.offers import load_catalog
from serving.champions import LoadedModel
from serving.feedback import FeedbackStore
from serving.runtime import RequestError, Runtime
from serving.schemas import FeedbackRequest, NextBestActionRequest
from tests.unit.test_serving_runtime import NOW, FakeChurn, FakeReader, customer

pytestmark = pytest.mark.unit


@dataclass(frozen=True)
class Act:
    action_id: str
    product_id: str | None
    marketing: bool = True


RANKED = [Act("a", "p1"), Act("b", "p1"), Act("c", "p2"), Act("s", None, marketing=False)]


def test_greedy_layout_follows_the_ranking_one_per_product_within_the_quota() -> None:
    assert arrange_from(0, RANKED, 3, None) == [0, 2, 3]
    assert arrange_from(0, RANKED, 3, 1) == [0, 3]  # one marketing contact left
    assert arrange_from(2, RANKED, 2, None) == [2, 0]


def test_propensities_are_exact_and_sum_to_one() -> None:
    exploration = Exploration(share=0.2)
    chosen = arrange(RANKED, 1, None, "C1", NOW, exploration)
    assert chosen.primary[0] == pytest.approx(0.8 + 0.2 / 4)
    assert chosen.primary[1:] == pytest.approx((0.05, 0.05, 0.05))
    assert sum(chosen.primary) == pytest.approx(1.0)
    assert all(0 < p <= 1 for p in chosen.primary)
    assert chosen.shown_anywhere == pytest.approx(chosen.primary)  # k = 1: shown = first


def test_exploration_share_is_bounded_and_stable_within_a_period() -> None:
    exploration = Exploration(share=0.05, period_days=7)
    ids = [f"C{i}" for i in range(4000)]
    explored = [arrange(RANKED, 1, None, c, NOW, exploration).explored for c in ids]
    assert 0.035 < sum(explored) / len(ids) < 0.065
    later = NOW + timedelta(hours=1)  # same 7-day period
    again = [arrange(RANKED, 1, None, c, later, exploration) for c in ids[:500]]
    first = [arrange(RANKED, 1, None, c, NOW, exploration) for c in ids[:500]]
    assert [a.shown for a in again] == [f.shown for f in first]
    off = [arrange(RANKED, 1, None, c, NOW, Exploration(share=0.0)).explored for c in ids]
    assert not any(off)


def make_runtime(tmp_path: Path, share: float, rows: dict[str, dict]) -> Runtime:
    models = {"churn": LoadedModel("churn", FakeChurn(0.05), "7", "test", None)}
    return Runtime(
        load_catalog(),
        models,
        lambda: FakeReader(rows),
        FeedbackStore(tmp_path / "feedback.db"),
        ServingSettings(models=("churn",)),
        clock=lambda: NOW,
        decisions=DecisionRecorder(
            DecisionLog(tmp_path / "decisions.db"), Exploration(share=share)
        ),
    )


def test_every_answer_is_logged_with_its_candidates_and_propensities(tmp_path: Path) -> None:
    rows = {f"C{i}": customer(idle_cash=1000.0 + 400 * i) for i in range(40)}
    runtime = make_runtime(tmp_path, 0.5, rows)
    answers = [
        runtime.next_best_action(NextBestActionRequest(customer_id=c, channel=ch, k=2))
        for c in [*rows, "UNKNOWN"]
        for ch in ("atm", "web")
    ]
    log = runtime.decisions.store
    assert log is not None
    logged = {d.decision_id: d for d in log.decisions()}
    assert set(logged) == {a.decision_id for a in answers}
    explored = 0
    for answer in answers:
        entry = logged[answer.decision_id]
        assert entry.customer_id == answer.customer_id and entry.channel == answer.channel
        assert list(entry.shown) == [a.action_id for a in answer.actions]
        if answer.actions:
            assert entry.action_id == answer.actions[0].action_id
            assert entry.propensity is not None and 0 < entry.propensity <= 1
        shown = [c for c in entry.candidates if c.shown]
        assert [c.action_id for c in shown] == sorted(
            entry.shown, key=[c.action_id for c in entry.candidates].index
        )
        assert all(0 < c.shown_propensity <= 1 for c in shown)
        assert sum(c.propensity for c in entry.candidates) == pytest.approx(
            1.0 if entry.candidates else 0.0
        )
        explored += entry.explored
    assert explored > 0  # half the customers explore: some answers were randomised
    known = logged[answers[0].decision_id]
    assert known.features is not None and known.features["tier"] == "gold"


def test_explored_answers_still_keep_every_rule(tmp_path: Path) -> None:
    rows = {f"C{i}": customer(consent_marketing=False) for i in range(30)}
    runtime = make_runtime(tmp_path, 0.5, rows)
    for cid in rows:
        answer = runtime.next_best_action(NextBestActionRequest(customer_id=cid, channel="web"))
        for action in answer.actions:
            assert not runtime.catalog.offer(action.action_id).is_marketing  # type: ignore[union-attr]


def answer_of_c1(**fields: Any) -> FeedbackRequest:
    """C1's answer on the ATM, with `fields` (action_id, outcome, ...) added or replaced."""
    return FeedbackRequest(**{"customer_id": "C1", "channel": "atm", **fields})


def test_feedback_is_filed_with_its_decision_by_id_or_by_latest_match(tmp_path: Path) -> None:
    runtime = make_runtime(tmp_path, 0.0, {"C1": customer()})
    first = runtime.next_best_action(NextBestActionRequest(customer_id="C1", channel="atm"))
    second = runtime.next_best_action(NextBestActionRequest(customer_id="C1", channel="atm"))
    action = first.actions[0].action_id
    by_id = runtime.feedback(
        answer_of_c1(action_id=action, outcome="declined", decision_id=first.decision_id)
    )
    assert by_id.decision_id == first.decision_id
    old_form = runtime.feedback(
        FeedbackRequest(customer_id="C1", action_id=action, channel="atm", outcome="accepted")
    )
    assert old_form.decision_id == second.decision_id  # the latest decision that showed it
    log = runtime.decisions.store
    assert log is not None
    assert (first.decision_id, action, "declined") in log.answered()
    outcomes = {o.decision.decision_id: o.outcome for o in log.outcomes(NOW, timedelta(hours=1))}
    assert outcomes == {first.decision_id: DECLINED, second.decision_id: ACCEPTED}


def test_an_answer_that_would_be_misfiled_is_refused_and_nothing_is_recorded(
    tmp_path: Path,
) -> None:
    runtime = make_runtime(tmp_path, 0.0, {"C1": customer(), "C2": customer()})
    decision = runtime.next_best_action(NextBestActionRequest(customer_id="C1", channel="atm"))
    shown = decision.actions[0].action_id
    other_action = next(
        o.id
        for o in runtime.catalog.offers
        if "atm" in o.channels and o.id not in {a.action_id for a in decision.actions}
    )
    wrong = [
        ({"customer_id": "C2"}, "decision_id", "another customer"),
        ({"channel": "web"}, "channel", "made on atm, not web"),
        ({"action_id": other_action}, "action_id", f"was not shown in {decision.decision_id}"),
    ]
    for overrides, field_name, words in wrong:
        fields = {"action_id": shown, "outcome": "accepted", **overrides}
        with pytest.raises(RequestError) as refused:
            runtime.feedback(answer_of_c1(**fields, decision_id=decision.decision_id))
        assert refused.value.field == field_name and words in refused.value.message
    assert runtime.feedback_store.history("C1", NOW - timedelta(days=1)) == []
    assert runtime.feedback_store.history("C2", NOW - timedelta(days=1)) == []
    log = runtime.decisions.store
    assert log is not None and log.answered() == set()

    right = runtime.feedback(
        answer_of_c1(action_id=shown, outcome="accepted", decision_id=decision.decision_id)
    )
    assert right.recorded and right.decision_id == decision.decision_id
    assert log.answered() == {(decision.decision_id, shown, "accepted")}


def test_an_answer_to_a_decision_the_log_lacks_is_kept_for_contact_rules_only(
    tmp_path: Path,
) -> None:
    runtime = make_runtime(tmp_path, 0.0, {"C1": customer()})
    runtime.next_best_action(NextBestActionRequest(customer_id="C1", channel="atm"))
    missing = "d-" + str(int(NOW.timestamp() * 1000) - 60_000) + "-" + "0" * 12
    answer = runtime.feedback(
        answer_of_c1(action_id="hys_move_idle_cash", outcome="declined", decision_id=missing)
    )
    assert answer.recorded and answer.decision_id is None
    assert len(runtime.feedback_store.history("C1", NOW - timedelta(days=1))) == 1
    log = runtime.decisions.store
    assert log is not None and log.answered() == set()


def test_an_unanswered_decision_is_ignored_after_the_window(tmp_path: Path) -> None:
    log = DecisionLog(tmp_path / "d.db")
    candidate = Candidate("x", 1.0, 0.1, 10.0, 0.0, 1.0, True, 1.0)
    log.record(Decision("d-1", NOW, "C1", "web", "p", False, "x", 1.0, (candidate,), ("x",)))
    assert log.outcomes(NOW + timedelta(hours=1), timedelta(hours=72))[0].outcome == PENDING
    late = log.outcomes(NOW + timedelta(hours=73), timedelta(hours=72))[0]
    assert late.outcome == IGNORED and late.reward == 0.0
    assert log.answer("C1", "x", "accepted", NOW + timedelta(hours=2)) == "d-1"
    assert log.outcomes(NOW + timedelta(days=9), timedelta(hours=72))[0].outcome == ACCEPTED
    assert log.answer("C2", "x", "accepted", NOW) is None  # no decision for that customer
    reopened = DecisionLog(tmp_path / "d.db")
    assert reopened.ids() == {"d-1"}
    assert [c.action_id for c in next(reopened.decisions()).candidates] == ["x"]
    assert datetime.fromtimestamp(0, tz=UTC) < next(reopened.decisions()).ts


def test_a_served_acceptance_model_replaces_the_prior_and_shows_its_evidence(
    tmp_path: Path,
) -> None:
    from models.acceptance import AcceptanceModel, Answer

    runtime = make_runtime(tmp_path, 0.0, {"C1": customer()})
    before = runtime.next_best_action(NextBestActionRequest(customer_id="C1", channel="atm"))
    first = before.actions[0]
    assert first.p_accept_evidence == "catalog prior"
    answers = [Answer(first.action_id, "atm", "2", i < 90) for i in range(100)]
    # a champion replaced in a running worker (the simulator's nightly promotion) is used at once
    runtime.models["acceptance"] = LoadedModel(
        "acceptance", AcceptanceModel().fit(answers), "1", "test", None
    )
    after = runtime.next_best_action(NextBestActionRequest(customer_id="C1", channel="atm"))
    learned = next(a for a in after.actions if a.action_id == first.action_id)
    assert learned.p_accept > first.p_accept  # 90 of 100 accepted moves it up
    assert "90 of 100 accepted" in learned.p_accept_evidence
