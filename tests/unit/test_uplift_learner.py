"""The cross-fitted X-learner on a hand-made randomised experiment with a known effect."""

from __future__ import annotations

import numpy as np
import pytest

from models.uplift import FittedUplift, XLearner, qini_auc, qini_curve
from training.uplift import evaluate, promotion_refusal, qini_bounds

pytestmark = pytest.mark.unit

SMALL = {
    "n_estimators": 40,
    "max_depth": 2,
    "learning_rate": 0.2,
    "tree_method": "hist",
    "n_jobs": 1,
}


def experiment(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A contact raises P(stay) by 0.3 where the first feature exceeds 0.5, else not at all."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, 2))
    treated = rng.random(n) < 0.5
    p_stay = 0.5 + 0.3 * (treated & (x[:, 0] > 0.5))
    return x, treated, (rng.random(n) < p_stay).astype(int)


def test_it_finds_where_the_contact_works_and_its_state_predicts_the_same() -> None:
    x, treated, stayed = experiment(3000)
    learner = XLearner(dict(SMALL), {**SMALL, "min_child_weight": 30}, folds=3)
    predicted = learner.fit(x, treated, stayed).predict(x)
    works = x[:, 0] > 0.5
    assert predicted[works].mean() - predicted[~works].mean() == pytest.approx(0.3, abs=0.1)
    assert learner.treated_share_ == pytest.approx(treated.mean())
    restored = FittedUplift.from_state(learner.to_state())
    np.testing.assert_allclose(restored.predict(x), predicted, rtol=1e-5, atol=1e-6)


def test_cross_fitting_needs_two_of_each_group_and_outcome() -> None:
    x, treated, stayed = experiment(50)
    stayed[treated] = 1
    stayed[np.flatnonzero(treated)[0]] = 0  # a single treated customer who left
    with pytest.raises(ValueError, match="at least 2"):
        XLearner(dict(SMALL), dict(SMALL)).fit(x, treated, stayed)


def _gate_metrics(
    stayed: np.ndarray, treated: np.ndarray, model: np.ndarray, baseline: np.ndarray
) -> dict[str, float]:
    predictions = {"model": model, "two_model_baseline": baseline}
    return {**evaluate(stayed, treated, predictions), **qini_bounds(stayed, treated, model)}


def test_the_gate_promotes_a_ranking_that_finds_the_effect() -> None:
    x, treated, stayed = experiment(4000, seed=1)
    noise = np.random.default_rng(2).random(len(x))
    metrics = _gate_metrics(stayed, treated, x[:, 0], noise)
    assert metrics["qini_auc_low"] > 0
    assert metrics["qini_auc_low"] < metrics["qini_auc"] < metrics["qini_auc_high"]
    assert promotion_refusal(metrics) is None


def test_the_gate_refuses_a_ranking_without_signal_and_one_the_baseline_beats() -> None:
    x, treated, stayed = experiment(4000, seed=1)
    noise = np.random.default_rng(2).random(len(x))
    refusal = promotion_refusal(_gate_metrics(stayed, treated, noise, noise[::-1].copy()))
    assert refusal is not None and "not surely above 0" in refusal
    worse = x[:, 0] + 0.3 * noise  # still finds the effect, less sharply than the baseline
    refusal = promotion_refusal(_gate_metrics(stayed, treated, worse, x[:, 0]))
    assert refusal is not None and "does not beat the two-model baseline" in refusal
    assert "not surely above 0" not in refusal


def test_a_qini_curve_weighted_by_counts_passes_through_the_one_of_the_repeated_rows() -> None:
    x, treated, stayed = experiment(300, seed=3)
    counts = np.random.default_rng(4).integers(0, 3, len(x))
    repeated = np.repeat(np.arange(len(x)), counts)
    share, qini = qini_curve(stayed, treated, x[:, 0], counts)
    share_r, qini_r = qini_curve(stayed[repeated], treated[repeated], x[repeated, 0])
    assert len(share) == int((counts > 0).sum()) + 1
    np.testing.assert_allclose(qini, np.interp(share, share_r, qini_r), atol=1e-12)
    assert qini_auc(stayed, treated, x[:, 0], np.ones(len(x))) == qini_auc(stayed, treated, x[:, 0])
