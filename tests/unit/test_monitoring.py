"""Monitoring maths: profiles, PSI and its sample-size correction, CBPE's expected ROC-AUC."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from loyal.specs import MODELS
from monitoring.drift import (
    Drift,
    column_drift,
    expected_noise,
    expected_roc_auc,
    psi,
    roc_auc,
)
from monitoring.profile import Profile, count_parquet, profile_columns, profile_parquet

pytestmark = pytest.mark.unit


def test_psi_is_zero_for_equal_shares_and_matches_a_hand_computed_case() -> None:
    assert psi(np.array([0.5, 0.5]), np.array([0.5, 0.5])) == 0.0
    # (0.7-0.5)ln(0.7/0.5) + (0.3-0.5)ln(0.3/0.5) = 0.0673 + 0.1022
    assert psi(np.array([0.5, 0.5]), np.array([0.7, 0.3])) == pytest.approx(0.16946, abs=1e-4)


def test_expected_noise_matches_the_mean_psi_of_two_samples_of_one_distribution() -> None:
    rng = np.random.default_rng(0)
    reference = profile_columns({"x": rng.normal(size=5000)}).columns["x"]
    values = [
        psi(reference.distribution(), reference.counts_of(rng.normal(size=500))) for _ in range(200)
    ]
    expected = expected_noise(reference.bins - 1, 5000, 500)  # the missing bin is empty
    assert np.mean(values) == pytest.approx(expected, rel=0.25)


def test_unshifted_small_sample_is_ok_and_a_shifted_one_alerts() -> None:
    rng = np.random.default_rng(1)
    reference = profile_columns({"x": rng.normal(size=20_000)}).columns["x"]
    same = column_drift(reference, reference.counts_of(rng.normal(size=200)))
    moved = column_drift(reference, reference.counts_of(rng.normal(1.0, size=2000)))
    assert same.level == "ok"
    assert same.psi > same.corrected  # the noise was taken off
    assert moved.level == "alert"


def test_profile_keeps_missing_and_categories_and_round_trips_through_json() -> None:
    frame = pd.DataFrame(
        {"n": [1.0, 2.0, np.nan, 4.0], "c": pd.Series(["a", "b", "a", None], dtype="string")}
    )
    profile = profile_columns(dict(frame.items()))
    again = Profile.from_json(profile.to_json())
    assert again.columns["n"].missing == 0.25
    assert again.columns["c"].categories == ["a", "b"]
    assert again.columns["c"].shares == [0.5, 0.25, 0.0]
    assert again.columns["c"].missing == 0.25
    assert sum(again.columns["n"].shares) + again.columns["n"].missing == pytest.approx(1)


def test_parquet_profile_and_counts_read_row_groups_like_the_in_memory_path(tmp_path) -> None:
    rng = np.random.default_rng(2)
    x = rng.exponential(size=3000)
    table = pa.table({"x": x, "k": pa.array(rng.choice(["u", "v"], 3000))})
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=700)
    on_disk = profile_parquet(tmp_path / "t.parquet")
    in_memory = profile_columns({"x": x, "k": np.asarray(table["k"])})
    assert on_disk.columns["x"].edges == in_memory.columns["x"].edges
    counts = count_parquet(tmp_path / "t.parquet", on_disk)
    assert counts["x"].sum() == 3000
    assert counts["k"][:2].sum() == 3000


def test_expected_roc_auc_equals_the_mean_auc_of_labels_drawn_from_the_scores() -> None:
    rng = np.random.default_rng(3)
    p = 1 / (1 + np.exp(-rng.normal(-2, 1.5, size=4000)))
    realised = [roc_auc(rng.random(p.size) < p, p) for _ in range(30)]
    assert expected_roc_auc(p) == pytest.approx(np.mean(realised), abs=0.01)


def test_expected_roc_auc_at_its_limits() -> None:
    assert expected_roc_auc(np.array([0.0, 0.0, 1.0, 1.0])) == 1.0
    assert expected_roc_auc(np.full(10, 0.3)) == pytest.approx(0.5)


def test_every_logged_holdout_carries_a_reference_profile_with_score_calibration(settings) -> None:
    from monitoring.reference import SCORE_PREFIX, download_profile
    from training import tracking

    rng = np.random.default_rng(4)
    p = rng.uniform(0, 0.4, 2000)
    frame = pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(2000)],
            "tenure": rng.integers(0, 120, 2000),
            "churned": rng.random(2000) < p,
        }
    )
    with tracking.start_run(settings, "any", "snap") as run:
        tracking.log_holdout(frame, "churned", "p", exclude=["customer_id"], scores={"p": p})
    profile = download_profile(run.info.run_id)
    assert profile is not None
    assert set(profile.columns) == {"tenure", "label:churned", SCORE_PREFIX + "p"}
    score = profile.columns[SCORE_PREFIX + "p"]
    realised = np.array(score.outcome, dtype=float)
    assert np.all(np.diff(realised) > -0.1)  # calibrated scores: realised rate grows by bin
    assert realised[-1] > realised[0] + 0.15


def test_request_sampler_sets_gauges_and_writes_a_sample_loyal_monitor_reads(tmp_path) -> None:
    from monitoring.reference import SCORE_PREFIX
    from monitoring.sampler import RequestSampler, served_counts

    rng = np.random.default_rng(5)
    reference = profile_columns(
        {
            "tenure_days": rng.integers(0, 3000, 5000),
            SCORE_PREFIX + "churn_probability": rng.uniform(0, 0.2, 5000),
        }
    )
    gauges: dict[str, float] = {}
    sampler = RequestSampler(tmp_path, lambda: reference, gauges.__setitem__, window=300)
    for _ in range(500):  # served scores far above the reference's: a shifted population
        sampler.offer({"tenure_days": int(rng.integers(0, 3000))}, float(rng.uniform(0.3, 0.9)))
    psi_by_column = sampler.flush()
    assert set(gauges) == {"churn_probability", "tenure_days"}
    assert gauges["churn_probability"] > 0.25
    assert psi_by_column["tenure_days"] < 0.1
    counts = served_counts(tmp_path, reference)
    assert counts[SCORE_PREFIX + "churn_probability"].sum() == 300  # the window, not all 500


def _drift(column: str, level: str) -> Drift:
    return Drift(column, 0.3, 0.01, 0.29, 1e-9, level, 1000, 1000, 0.0, 0.0)  # type: ignore[arg-type]


def test_features_alone_alert_only_for_a_model_trained_on_current_snapshots() -> None:
    from monitoring.batch import model_level

    moved = [_drift("months_since_last_new_product", "alert")]
    assert model_level(moved, []) == "alert"  # segments, cross-sell: no score of their own
    assert model_level(moved, [], current_reference=False) == "warn"  # uplift: past campaigns
    assert model_level(moved, [_drift("score:churn_probability", "ok")]) == "warn"
    assert model_level(moved, [_drift("score:churn_probability", "alert")]) == "alert"
    assert MODELS["uplift"].current_reference is False and MODELS["churn"].current_reference
