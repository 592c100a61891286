"""A candidate policy evaluated on a decision log whose acceptance truth is known."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from decisions.log import Candidate, Decision, DecisionLog
from decisions.policy import (
    CandidatePolicy,
    PolicyConfigError,
    evaluate_candidate,
    target_probabilities,
)
from loyal.settings import DecisionSettings
from models.acceptance import AcceptanceModel, Answer

pytestmark = pytest.mark.unit

NOW = datetime(2026, 10, 1, tzinfo=UTC)
ACTIONS = ("a", "b", "c")
PRIOR = {"a": 0.20, "b": 0.15, "c": 0.10}  # the catalog: 'a' looks best everywhere
VALUE = {"a": 100.0, "b": 100.0, "c": 100.0}
TRUTH = {  # by segment: 'a' is right on average, wrong for segment 1 and 2
    "0": {"a": 0.35, "b": 0.10, "c": 0.05},
    "1": {"a": 0.10, "b": 0.30, "c": 0.05},
    "2": {"a": 0.15, "b": 0.05, "c": 0.30},
}


def logged(path: Path, n: int, share: float, seed: int = 1) -> DecisionLog:
    """An epsilon-greedy log of the catalog policy with answers drawn from the truth."""
    rng = np.random.default_rng(seed)
    log = DecisionLog(path)
    for i in range(n):
        segment = str(i % 3)
        explore = rng.random() < share
        chosen = int(rng.integers(0, 3)) if explore else 0
        props = [share / 3 + (1 - share) * (j == 0) for j in range(3)]
        candidates = tuple(
            Candidate(a, PRIOR[a] * VALUE[a], PRIOR[a], VALUE[a], 0.0, props[j], j == chosen)
            for j, a in enumerate(ACTIONS)
        )
        action = ACTIONS[chosen]
        ts = NOW - timedelta(days=10, seconds=i)
        log.record(
            Decision(
                f"d-{i}",
                ts,
                f"C{i}",
                "web",
                "p",
                explore,
                action,
                props[chosen],
                candidates,
                (action,),
                {},
                {"segment_id": int(segment)},
            )
        )
        if rng.random() < TRUTH[segment][action]:
            log.answer(f"C{i}", action, "accepted", ts, f"d-{i}")
    return log


def true_value(model: AcceptanceModel) -> float:
    """Accepted value per decision of the greedy policy on the model's P(accept)."""
    total = 0.0
    for segment, truth in TRUTH.items():
        best = max(ACTIONS, key=lambda a: model.predict(a, "web", segment, PRIOR[a])[0] * VALUE[a])
        total += truth[best] * VALUE[best]
    return total / len(TRUTH)


def test_the_learned_candidate_is_estimated_within_its_interval_and_judged_better(
    tmp_path: Path,
) -> None:
    log = logged(tmp_path / "d.db", 6000, share=0.3)
    report = evaluate_candidate(log, CandidatePolicy(name="learned"), NOW, timedelta(hours=72))
    outcomes = log.outcomes(NOW, timedelta(hours=72))
    model = AcceptanceModel().fit(
        Answer(
            o.decision.action_id or "",
            "web",
            str(o.decision.features["segment_id"]),  # type: ignore[index]
            o.outcome == "accepted",
        )
        for o in outcomes
    )
    truth = true_value(model)
    static = sum(TRUTH[s]["a"] * VALUE["a"] for s in TRUTH) / 3
    assert truth > 1.2 * static  # learning tells the segments apart
    dr = report.value.dr
    assert dr is not None and dr.low <= truth <= dr.high
    assert abs(dr.value - truth) / truth < 0.1
    assert report.verdict.startswith("better")


def test_a_candidate_the_log_cannot_support_gets_no_verdict(tmp_path: Path) -> None:
    log = logged(tmp_path / "d.db", 600, share=0.0)  # no exploration: only 'a' ever logged
    report = evaluate_candidate(
        log,
        CandidatePolicy(name="b first", p_accept="logged", weights={"b": 3.0}),
        NOW,
        timedelta(hours=72),
    )
    assert report.verdict.startswith("no verdict") and "no overlap" in report.verdict


def test_a_weight_on_an_offer_the_log_never_had_is_refused_not_ignored(tmp_path: Path) -> None:
    log = logged(tmp_path / "d.db", 200, share=0.3)
    typo = CandidatePolicy(name="typo", weights={"b": 2.0, "bb": 3.0})
    with pytest.raises(PolicyConfigError) as refused:
        evaluate_candidate(log, typo, NOW, timedelta(hours=72))
    assert "weights: bb is among no answered decision's eligible actions" in str(refused.value)
    assert "the log's actions: a, b, c" in str(refused.value)
    with pytest.raises(ValidationError):
        CandidatePolicy(weights={"b": -1.0})


def test_target_probabilities_follow_weights_and_exploration() -> None:
    cands = [Candidate(a, PRIOR[a] * 100, PRIOR[a], 100.0, 0.0, 1 / 3) for a in ACTIONS]
    probs = target_probabilities(cands, [0.2, 0.15, 0.1], {"c": 3.0}, 0.3)
    assert probs == pytest.approx([0.1, 0.1, 0.8])


def test_an_uplift_valued_action_keeps_its_price_whatever_the_model_says() -> None:
    uplift = Candidate("r", 30.0, 1.0, 30.0, 0.0, 0.5, evidence="uplift model: a contact ...")
    catalog = Candidate("a", 20.0, 0.2, 100.0, 0.0, 0.5, evidence="catalog prior 0.200")
    # the model's P(accept) of the retention offer is low, but serving values it by uplift
    assert target_probabilities([uplift, catalog], [0.05, 0.2], {}, 0.0).tolist() == [1.0, 0.0]


def test_the_cli_names_a_bad_candidate_field_and_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "candidate.yaml"
    config.write_text("name: x\np_accept: magic\n", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "pipelines", "policy", "evaluate", "--candidate", str(config)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "LOYAL_HOME": str(tmp_path)},
    )
    assert result.returncode == 2
    output = result.stdout + result.stderr
    assert "p_accept" in output and "Traceback" not in output


def test_training_reads_only_decisions_whose_answer_window_has_closed(tmp_path: Path) -> None:
    from training.acceptance import closed_outcomes

    log = logged(tmp_path / "d.db", 30, share=0.0)  # 10 days old: every window closed
    cand = (Candidate("a", 20.0, 0.2, 100.0, 0.0, 1.0, True),)
    for i, outcome in enumerate(("accepted", None)):  # yesterday: one answered, one pending
        ts = NOW - timedelta(days=1, seconds=i)
        log.record(Decision(f"new-{i}", ts, f"N{i}", "web", "p", False, "a", 1.0, cand, ("a",)))
        if outcome:
            log.answer(f"N{i}", "a", outcome, ts, f"new-{i}")
    kept = closed_outcomes(log, NOW, timedelta(hours=72))
    assert len(kept) == 30 and all(o.decision.decision_id.startswith("d-") for o in kept)


COUNTS_ONLY = DecisionSettings(contextual_min_answers=0)
"""The fixture's only feature is the segment: the XGBoost level has nothing to add."""


def test_crossfit_promotes_the_segment_aware_model_and_never_a_copy_of_the_champion(
    tmp_path: Path,
) -> None:
    from training.acceptance import closed_outcomes, crossfit_gain

    log = logged(tmp_path / "d.db", 1500, share=0.3)
    outcomes = closed_outcomes(log, NOW, timedelta(hours=72))
    over_catalog = crossfit_gain(outcomes, PRIOR, COUNTS_ONLY)
    assert over_catalog.promotes and over_catalog.disagreements > 0
    # the champion's recipe on the same answers: both policies agree, the gain is exactly 0
    over_itself = crossfit_gain(outcomes, PRIOR, COUNTS_ONLY, champion_until=NOW)
    assert over_itself.disagreements == 0 and over_itself.difference.value == 0.0
    assert not over_itself.promotes


def test_crossfit_does_not_promote_a_model_of_noise(tmp_path: Path) -> None:
    from training.acceptance import closed_outcomes, crossfit_gain

    log = logged(tmp_path / "d.db", 1500, share=0.3)
    flat = {o: {a: PRIOR[a] for a in ACTIONS} for o in TRUTH}  # the catalog is the truth
    rng = np.random.default_rng(5)
    noise = DecisionLog(tmp_path / "noise.db")
    for o in closed_outcomes(log, NOW, timedelta(hours=72)):
        d = o.decision
        noise.record(d)
        segment = str((d.features or {}).get("segment_id"))
        if rng.random() < flat[segment][d.action_id or ""]:
            noise.answer(d.customer_id, d.action_id or "", "accepted", d.ts, d.decision_id)
    gain = crossfit_gain(closed_outcomes(noise, NOW, timedelta(hours=72)), PRIOR, COUNTS_ONLY)
    assert not gain.promotes
