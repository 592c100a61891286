"""Off-policy estimators: hand-computed cases, refusals, and a known answer on real logged data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from decisions.ope import (
    Comparison,
    Logged,
    Policy,
    VerdictRules,
    compare,
    effective_sample_size,
    evaluate,
)

pytestmark = pytest.mark.unit


def test_all_weights_one_give_the_logged_mean() -> None:
    rewards = np.array([1.0, 0.0, 0.0, 1.0, 1.0])
    result = evaluate(
        Logged(rewards, np.full(5, 0.4)), Policy(np.full(5, 0.4)), rules=VerdictRules(min_ess=1)
    )
    assert result.ips.value == pytest.approx(0.6)
    assert result.snips.value == pytest.approx(0.6)
    assert result.logged.value == pytest.approx(0.6)
    assert result.ess == pytest.approx(5.0)
    assert result.refusal is None


def test_a_hand_computed_case_for_ips_snips_dr_clipping_and_ess() -> None:
    rewards, p, pi = [1, 0, 1, 0], [0.5, 0.5, 0.25, 1.0], [1.0, 0.0, 0.5, 1.0]  # w = 2, 0, 2, 1
    result = evaluate(
        Logged(rewards, p, [0.5] * 4),
        Policy(pi, [0.5] * 4),
        clip=None,
        rules=VerdictRules(min_ess=1),
    )
    assert result.ips.value == pytest.approx(1.0)
    assert result.snips.value == pytest.approx(0.8)
    assert result.dr is not None and result.dr.value == pytest.approx(0.875)
    assert result.ess == pytest.approx(25 / 9)
    clipped = evaluate(Logged(rewards, p), Policy(pi), clip=1.5, rules=VerdictRules(min_ess=1))
    assert clipped.ips.value == pytest.approx(0.75) and clipped.clipped_share == 0.5
    assert clipped.ips.low <= clipped.ips.value <= clipped.ips.high


def test_a_policy_without_overlap_is_refused_and_told_why() -> None:
    result = evaluate(Logged([1, 0, 1], [0.5, 0.5, 0.5]), Policy([0.0, 0.0, 0.0]))
    assert result.refusal is not None and "no overlap" in result.refusal
    thin = evaluate(
        Logged(np.ones(200), np.full(200, 0.5)), Policy(np.r_[np.ones(10), np.zeros(190)])
    )
    assert thin.refusal is not None and "effective sample size of 10" in thin.refusal
    lost = evaluate(
        Logged(np.ones(200), np.full(200, 0.5)),
        Policy(np.full(200, 0.5), unsupported=np.full(200, 0.3)),
    )
    assert lost.refusal is not None and "never takes" in lost.refusal
    assert effective_sample_size([0, 0]) == 0.0


def test_bad_propensities_are_rejected() -> None:
    with pytest.raises(ValueError, match="propensity"):
        evaluate(Logged([1.0], [0.0]), Policy([1.0]))
    with pytest.raises(ValueError, match="target: expected 2"):
        evaluate(Logged([1.0, 0.0], [0.5, 0.5]), Policy([1.0]))
    with pytest.raises(ValueError, match="q_logged: a paired comparison needs"):
        compare(Logged([1.0], [0.5]), Policy([1.0], [0.5]), Policy([1.0], [0.5]))


def _two_action_log(n: int = 2000, share: float = 0.2, seed: int = 1) -> dict[str, np.ndarray]:
    """Epsilon-greedy on action 0; in one decision of five action 1 is far better (0.45 vs 0.05),
    elsewhere action 0 is (0.30 vs 0.02). The reward model is rough (right order, wrong sizes)."""
    rng = np.random.default_rng(seed)
    rows = np.arange(n)
    segment_b = rows % 5 == 0
    truth = np.where(segment_b[:, None], [0.05, 0.45], [0.30, 0.02])
    action = np.where(rng.random(n) < share, rng.integers(0, 2, n), 0)
    q_table = np.where(segment_b[:, None], [0.12, 0.25], [0.25, 0.05])
    return {
        "rows": rows,
        "segment_b": segment_b,
        "action": action,
        "propensity": np.where(action == 0, 1 - share / 2, share / 2),
        "reward": (rng.random(n) < truth[rows, action]).astype(float),
        "q_table": q_table,
    }


def _paired(log: dict[str, np.ndarray], candidate: np.ndarray, champion: np.ndarray) -> Comparison:
    rows, action, q_table = log["rows"], log["action"], log["q_table"]
    return compare(
        Logged(log["reward"], log["propensity"], q_table[rows, action]),
        Policy((candidate == action).astype(float), q_table[rows, candidate]),
        Policy((champion == action).astype(float), q_table[rows, champion]),
        rules=VerdictRules(min_ess=30),
    )


def test_a_paired_comparison_promotes_a_clearly_better_candidate() -> None:
    log = _two_action_log()
    champion = np.zeros(len(log["rows"]), dtype=int)
    better = log["segment_b"].astype(int)  # true gain: 0.2 x (0.45 - 0.05) = 0.08 a decision
    result = _paired(log, better, champion)
    assert result.promotes and result.refusal is None
    diff = result.difference
    assert diff.low > 0 and diff.low <= 0.08 <= diff.high
    assert result.disagreements == 400
    own = result.candidate
    assert diff.high - diff.low < own.high - own.low  # agreeing decisions add no variance


def test_a_paired_comparison_does_not_promote_an_identical_or_a_worse_candidate() -> None:
    log = _two_action_log()
    champion = np.zeros(len(log["rows"]), dtype=int)
    same = _paired(log, champion.copy(), champion)
    assert not same.promotes and same.disagreements == 0
    assert same.difference.value == same.difference.low == same.difference.high == 0
    worse = _paired(log, 1 - log["segment_b"].astype(int), champion)  # true gain -0.224
    assert not worse.promotes and worse.difference.high < 0


def test_a_paired_comparison_keeps_the_refusal_when_overlap_is_poor() -> None:
    log = _two_action_log(share=0.0)  # no exploration: action 1 never logged
    champion = np.zeros(len(log["rows"]), dtype=int)
    result = _paired(log, np.ones(len(log["rows"]), dtype=int), champion)
    assert not result.promotes and "no overlap" in (result.refusal or "")


def test_ips_on_the_thompson_log_recovers_the_uniform_policys_click_rate(
    shared_data: Path,
) -> None:
    """Open Bandit Dataset (ZOZO, CC BY 4.0): the uniform policy's own log is the answer."""
    folder = shared_data / "open_bandit_sample"
    random_log = pd.read_csv(folder / "random" / "all.csv.gz")
    bts_log = pd.read_csv(folder / "bts" / "all.csv.gz")
    observed = random_log["click"].mean()
    uniform = np.full(len(bts_log), 1 / 80)  # the uniform policy's probability of any item
    result = evaluate(
        Logged(bts_log["click"], bts_log["propensity_score"]),
        Policy(uniform),
        clip=None,
        rules=VerdictRules(bootstrap=1000),
    )
    # stated: IPS 0.0024, 95% CI about [0.0010, 0.0042]; observed uniform click rate 0.0038
    assert result.ips.low <= observed <= result.ips.high
    assert result.ips.high - result.ips.low < 0.005  # informative, not an all-covering interval
    assert result.refusal is None and result.ess > 200
