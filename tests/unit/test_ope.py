"""Off-policy estimators: hand-computed cases, refusals, and a known answer on real logged data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from decisions.ope import effective_sample_size, evaluate

pytestmark = pytest.mark.unit


def test_all_weights_one_give_the_logged_mean() -> None:
    rewards = np.array([1.0, 0.0, 0.0, 1.0, 1.0])
    result = evaluate(rewards, np.full(5, 0.4), np.full(5, 0.4), min_ess=1)
    assert result.ips.value == pytest.approx(0.6)
    assert result.snips.value == pytest.approx(0.6)
    assert result.logged.value == pytest.approx(0.6)
    assert result.ess == pytest.approx(5.0)
    assert result.refusal is None


def test_a_hand_computed_case_for_ips_snips_dr_clipping_and_ess() -> None:
    rewards, p, pi = [1, 0, 1, 0], [0.5, 0.5, 0.25, 1.0], [1.0, 0.0, 0.5, 1.0]  # w = 2, 0, 2, 1
    result = evaluate(rewards, p, pi, [0.5] * 4, [0.5] * 4, clip=None, min_ess=1)
    assert result.ips.value == pytest.approx(1.0)
    assert result.snips.value == pytest.approx(0.8)
    assert result.dr is not None and result.dr.value == pytest.approx(0.875)
    assert result.ess == pytest.approx(25 / 9)
    clipped = evaluate(rewards, p, pi, clip=1.5, min_ess=1)
    assert clipped.ips.value == pytest.approx(0.75) and clipped.clipped_share == 0.5
    assert clipped.ips.low <= clipped.ips.value <= clipped.ips.high


def test_a_policy_without_overlap_is_refused_and_told_why() -> None:
    result = evaluate([1, 0, 1], [0.5, 0.5, 0.5], [0.0, 0.0, 0.0])
    assert result.refusal is not None and "no overlap" in result.refusal
    thin = evaluate(np.ones(200), np.full(200, 0.5), np.r_[np.ones(10), np.zeros(190)])
    assert thin.refusal is not None and "effective sample size of 10" in thin.refusal
    lost = evaluate(
        np.ones(200), np.full(200, 0.5), np.full(200, 0.5), unsupported=np.full(200, 0.3)
    )
    assert lost.refusal is not None and "never takes" in lost.refusal
    assert effective_sample_size([0, 0]) == 0.0


def test_bad_propensities_are_rejected() -> None:
    with pytest.raises(ValueError, match="propensity"):
        evaluate([1.0], [0.0], [1.0])
    with pytest.raises(ValueError, match="target: expected 2"):
        evaluate([1.0, 0.0], [0.5, 0.5], [1.0])


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
        bts_log["click"], bts_log["propensity_score"], uniform, clip=None, bootstrap=1000
    )
    # stated: IPS 0.0024, 95% CI about [0.0010, 0.0042]; observed uniform click rate 0.0038
    assert result.ips.low <= observed <= result.ips.high
    assert result.ips.high - result.ips.low < 0.005  # informative, not an all-covering interval
    assert result.refusal is None and result.ess > 200
