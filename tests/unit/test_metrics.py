"""Churn metrics at their limits and on one hand-computed case."""

from __future__ import annotations

import numpy as np
import pytest

from models.metrics import (
    METRICS,
    binary_metrics,
    brier,
    calibration_curve,
    capture_at,
    expected_calibration_error,
    lift_at,
    pr_auc,
    roc_auc,
)

pytestmark = pytest.mark.unit

# Hand case: 10 customers ranked by score, churners at ranks 1, 3 and 6.
SCORES = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05])
LABELS = np.array([1, 0, 1, 0, 0, 1, 0, 0, 0, 0])


def _perfect(n: int, prevalence: float) -> tuple[np.ndarray, np.ndarray]:
    positives = round(n * prevalence)
    y = np.r_[np.ones(positives), np.zeros(n - positives)].astype(int)
    return y, np.linspace(1.0, 0.0, n)


@pytest.mark.parametrize("prevalence", [0.05, 0.10, 0.30])
def test_perfect_ranking_reaches_the_limits(prevalence: float) -> None:
    y, s = _perfect(1000, prevalence)
    assert roc_auc(y, s) == 1.0
    assert pr_auc(y, s) == 1.0
    assert capture_at(y, s, 0.10) == pytest.approx(min(1.0, 0.10 / prevalence))
    assert lift_at(y, s, 0.10) == pytest.approx(min(1.0, 0.10 / prevalence) / 0.10)


def test_no_hits_in_the_top_scores_zero() -> None:
    y, s = _perfect(1000, 0.30)
    reversed_scores = -s
    assert roc_auc(y, reversed_scores) == 0.0
    assert capture_at(y, reversed_scores, 0.10) == 0.0
    assert lift_at(y, reversed_scores, 0.10) == 0.0


def test_perfect_probabilities_have_zero_brier_and_calibration_error() -> None:
    y = np.array([0, 1, 0, 1, 1])
    assert brier(y, y.astype(float)) == 0.0
    assert expected_calibration_error(y, y.astype(float)) == 0.0
    assert brier(y, 1.0 - y) == 1.0


def test_hand_computed_case() -> None:
    # AUC: the churners outrank 7, 6 and 4 of the 7 stayers -> 17 / 21.
    assert roc_auc(LABELS, SCORES) == pytest.approx(17 / 21)
    # Average precision: precision 1/1, 2/3 and 3/6 at the three churners.
    assert pr_auc(LABELS, SCORES) == pytest.approx((1 + 2 / 3 + 3 / 6) / 3)
    # Brier: squared errors sum to 1.8525 over 10 rows.
    assert brier(LABELS, SCORES) == pytest.approx(0.18525)
    # Top 20% = 2 rows holding 1 of 3 churners; lift = (1/3) / 0.2.
    assert capture_at(LABELS, SCORES, 0.20) == pytest.approx(1 / 3)
    assert lift_at(LABELS, SCORES, 0.20) == pytest.approx(5 / 3)
    # Two equal-frequency bins: low mean 0.21 vs rate 0.2, high mean 0.7 vs rate 0.4.
    assert expected_calibration_error(LABELS, SCORES, bins=2) == pytest.approx(
        0.5 * 0.01 + 0.5 * 0.3
    )


def test_ties_at_the_cut_count_pro_rata() -> None:
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 0])
    flat = np.full(10, 0.5)
    assert capture_at(y, flat, 0.10) == pytest.approx(0.10)
    assert lift_at(y, flat, 0.10) == pytest.approx(1.0)
    assert capture_at(y, flat, 0.10) == capture_at(y[::-1], flat, 0.10)


def test_calibration_curve_bins() -> None:
    curve = calibration_curve(LABELS, SCORES, bins=2)
    assert curve.counts.tolist() == [5, 5]
    assert curve.mean_predicted == pytest.approx([0.21, 0.7])
    assert curve.observed_rate == pytest.approx([0.2, 0.4])
    uniform = calibration_curve(LABELS, SCORES, bins=2, strategy="uniform")
    assert uniform.counts.tolist() == [5, 5]
    assert uniform.mean_predicted == pytest.approx([0.21, 0.7])


def test_binary_metrics_keys_and_directions() -> None:
    metrics = binary_metrics(LABELS, SCORES)
    assert set(metrics) == {"roc_auc", "pr_auc", "brier", "ece", "lift_at_10", "capture_at_10"}
    assert set(METRICS) == set(metrics)
    assert METRICS["brier"][1] is False and METRICS["roc_auc"][1] is True


@pytest.mark.parametrize(
    ("y", "s"),
    [
        (np.zeros(5, dtype=int), np.linspace(0, 1, 5)),
        (np.array([0, 1, 2]), np.array([0.1, 0.2, 0.3])),
        (np.array([0, 1, 1]), np.array([0.1, np.nan, 0.3])),
        (np.array([0, 1]), np.array([0.1, 0.2, 0.3])),
    ],
)
def test_bad_inputs_raise(y: np.ndarray, s: np.ndarray) -> None:
    with pytest.raises(ValueError):
        roc_auc(y, s)


def test_capture_needs_a_positive_and_a_valid_share() -> None:
    with pytest.raises(ValueError, match="positive"):
        capture_at(np.zeros(10, dtype=int), np.linspace(0, 1, 10))
    with pytest.raises(ValueError, match="share"):
        capture_at(LABELS, SCORES, 0.0)
