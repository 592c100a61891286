"""The cross-fitted X-learner on a hand-made randomised experiment with a known effect."""

from __future__ import annotations

import numpy as np
import pytest

from models.uplift import FittedUplift, XLearner

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
