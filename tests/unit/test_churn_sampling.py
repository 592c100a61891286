"""Bounded churn training: stratified samples for the frame and the search, a foreign trainer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from features.catalog import ENTITY_KEY, TIMESTAMP_FIELD
from models.churn import BoosterJob, ChurnModel, stratified_rows
from training.churn import sample_evaluation_rows, sample_training_rows

pytestmark = pytest.mark.unit

FAST = {"learning_rate": 0.2, "early_stopping_rounds": 20, "max_rounds": 300}


def _rows(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"signal": rng.uniform(0, 1, n), "noise": rng.normal(size=n)})
    y = (rng.uniform(size=n) < 0.1 + 0.6 * X["signal"]).astype(int).to_numpy()
    return X, y


def test_a_stratified_sample_keeps_every_share_to_a_row() -> None:
    strata = np.repeat([0, 1, 2], [700, 200, 100])
    rows = stratified_rows(strata, 95, seed=1)
    assert len(rows) == 95 and len(np.unique(rows)) == 95
    assert np.all(np.diff(rows) > 0)
    counts = np.bincount(strata[rows], minlength=3)
    assert np.all(np.abs(counts - np.array([66.5, 19.0, 9.5])) <= 1)
    assert np.array_equal(rows, stratified_rows(strata, 95, seed=1))
    assert not np.array_equal(rows, stratified_rows(strata, 95, seed=2))
    assert np.array_equal(stratified_rows(strata, 5000, seed=1), np.arange(1000))


def test_training_rows_are_sampled_by_snapshot_and_label_and_the_rest_kept_whole() -> None:
    snapshots = pd.to_datetime(["2026-01-01", "2026-02-01", "2026-05-01", "2026-08-01"], utc=True)
    rng = np.random.default_rng(0)
    rows = 1_000
    entities = pd.DataFrame(
        {
            ENTITY_KEY: [f"c{i}" for i in range(4 * rows)],
            TIMESTAMP_FIELD: np.repeat(snapshots, rows),
            "churned": (rng.uniform(size=4 * rows) < np.repeat([0.1, 0.3, 0.2, 0.2], rows)),
        }
    )
    kept = sample_training_rows(entities, list(snapshots[:2]), max_rows=400, seed=3)
    per_snapshot = kept.groupby(TIMESTAMP_FIELD)["churned"].agg(["size", "mean"])
    assert per_snapshot["size"].tolist() == [200, 200, rows, rows]
    truth = entities.groupby(TIMESTAMP_FIELD)["churned"].mean()
    assert np.allclose(per_snapshot["mean"].to_numpy()[:2], truth.to_numpy()[:2], atol=0.005)
    assert sample_training_rows(entities, list(snapshots[:2]), None) is entities


def test_evaluation_snapshots_are_each_sampled_by_label_and_the_training_ones_kept() -> None:
    snapshots = pd.to_datetime(["2026-01-01", "2026-05-01", "2026-08-01"], utc=True)
    rng = np.random.default_rng(0)
    sizes = [1_000, 3_000, 2_500]
    entities = pd.DataFrame(
        {
            ENTITY_KEY: [f"c{i}" for i in range(sum(sizes))],
            TIMESTAMP_FIELD: np.repeat(snapshots, sizes),
            "churned": rng.uniform(size=sum(sizes)) < np.repeat([0.1, 0.3, 0.2], sizes),
        }
    )
    kept = sample_evaluation_rows(entities, list(snapshots[1:]), max_rows=800, seed=3)
    per_snapshot = kept.groupby(TIMESTAMP_FIELD)["churned"].agg(["size", "mean"])
    assert per_snapshot["size"].tolist() == [1_000, 800, 800]
    truth = entities.groupby(TIMESTAMP_FIELD)["churned"].mean()
    assert np.allclose(per_snapshot["mean"].to_numpy(), truth.to_numpy(), atol=0.002)
    assert not kept[ENTITY_KEY].duplicated().any()
    assert kept.equals(sample_evaluation_rows(entities, list(snapshots[1:]), 800, seed=3))
    assert sample_evaluation_rows(entities, list(snapshots[1:]), None) is entities


def test_the_search_sees_its_sample_and_the_chosen_settings_refit_on_every_row() -> None:
    X, y = _rows(4_000, 0)
    valid_X, valid_y = _rows(3_000, 1)
    model = ChurnModel(**FAST, search_trials=2, search_max_rows=1_000)
    model.fit(X, y, eval_set=(valid_X, valid_y))
    assert model.search_summary_ is not None and model.search_summary_["rows"] == 1_000
    fixed = ChurnModel(**{**FAST, **model.best_params_}).fit(X, y, eval_set=(valid_X, valid_y))
    test_X, _ = _rows(500, 2)
    assert model.predict_proba(test_X) == pytest.approx(fixed.predict_proba(test_X))


def test_a_foreign_trainer_boosts_the_final_model_with_the_same_job() -> None:
    X, y = _rows(2_000, 0)
    valid_X, valid_y = _rows(1_000, 1)
    jobs: list[BoosterJob] = []

    def trainer(job: BoosterJob) -> xgb.Booster:
        jobs.append(job)
        train = xgb.DMatrix(job.rows, job.labels, feature_names=job.feature_names)
        return xgb.train(job.params, train, num_boost_round=5)

    model = ChurnModel(**FAST).fit(X, y, eval_set=(valid_X, valid_y), trainer=trainer)
    assert len(jobs) == 1 and jobs[0].rows.dtype == np.float32
    assert jobs[0].rows.shape == (2_000, 2) and len(jobs[0].valid_labels) == 1_000
    assert model.n_rounds_ == [5]
    with pytest.raises(ValueError, match="eval_set"):
        ChurnModel(**FAST).fit(X, y, trainer=trainer)
