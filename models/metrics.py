"""Binary classification metrics for scoring models: ranking, calibration, lift and capture."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.metrics import average_precision_score, roc_auc_score

BinStrategy = Literal["quantile", "uniform"]


@dataclass(frozen=True)
class CalibrationCurve:
    """Reliability diagram data: one entry per non-empty bin, ordered by predicted probability.

    Attributes:
        mean_predicted: mean predicted probability in each bin.
        observed_rate: share of positives in each bin.
        counts: number of rows in each bin.
    """

    mean_predicted: NDArray[np.float64]
    observed_rate: NDArray[np.float64]
    counts: NDArray[np.int64]


def _check(y_true: ArrayLike, y_score: ArrayLike) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Validate a label vector (0/1) and a score vector of the same length."""
    y = np.asarray(y_true)
    s = np.asarray(y_score, dtype=float)
    if y.ndim != 1 or s.ndim != 1 or len(y) != len(s):
        raise ValueError(
            f"y_true and y_score must be 1-d of equal length, got {y.shape}, {s.shape}"
        )
    if len(y) == 0:
        raise ValueError("metrics need at least one row")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("y_true must hold only 0 and 1")
    if not np.isfinite(s).all():
        raise ValueError("y_score holds NaN or infinite values")
    return y.astype(np.int64), s


def _need_both_classes(y: NDArray[np.int64], metric: str) -> None:
    if y.min() == y.max():
        raise ValueError(f"{metric} needs both positives and negatives in y_true")


def roc_auc(y_true: ArrayLike, y_score: ArrayLike) -> float:
    """Area under the ROC curve: the chance a random positive outranks a random negative."""
    y, s = _check(y_true, y_score)
    _need_both_classes(y, "roc_auc")
    return float(roc_auc_score(y, s))


def pr_auc(y_true: ArrayLike, y_score: ArrayLike) -> float:
    """Area under the precision-recall curve, as average precision (no interpolation)."""
    y, s = _check(y_true, y_score)
    _need_both_classes(y, "pr_auc")
    return float(average_precision_score(y, s))


def brier(y_true: ArrayLike, y_prob: ArrayLike) -> float:
    """Brier score: mean squared error of the probabilities (0 is perfect, lower is better)."""
    y, p = _check(y_true, y_prob)
    return float(np.mean((p - y) ** 2))


def _bins(p: NDArray[np.float64], bins: int, strategy: BinStrategy) -> list[NDArray[np.intp]]:
    """Row indices of each non-empty bin, in increasing order of probability."""
    if bins < 1:
        raise ValueError("bins must be at least 1")
    if strategy == "quantile":
        order = np.argsort(p, kind="mergesort")
        groups = np.array_split(order, min(bins, len(p)))
    elif strategy == "uniform":
        edges = np.linspace(0.0, 1.0, bins + 1)
        which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, bins - 1)
        groups = [np.flatnonzero(which == b) for b in range(bins)]
    else:
        raise ValueError(f"unknown bin strategy '{strategy}': use 'quantile' or 'uniform'")
    return [g for g in groups if len(g)]


def calibration_curve(
    y_true: ArrayLike, y_prob: ArrayLike, bins: int = 10, strategy: BinStrategy = "quantile"
) -> CalibrationCurve:
    """Mean predicted probability against the observed positive rate, bin by bin.

    Args:
        y_true: labels, 0 or 1.
        y_prob: predicted probabilities in [0, 1].
        bins: number of bins.
        strategy: "quantile" for equal-frequency bins (each holds about the same number of
            rows; the default, stable when probabilities are concentrated) or "uniform" for
            equal-width bins over [0, 1].

    Returns:
        The curve, with empty bins left out.
    """
    y, p = _check(y_true, y_prob)
    groups = _bins(p, bins, strategy)
    return CalibrationCurve(
        mean_predicted=np.array([p[g].mean() for g in groups]),
        observed_rate=np.array([y[g].mean() for g in groups]),
        counts=np.array([len(g) for g in groups], dtype=np.int64),
    )


def expected_calibration_error(
    y_true: ArrayLike, y_prob: ArrayLike, bins: int = 10, strategy: BinStrategy = "quantile"
) -> float:
    """Expected calibration error: bin-size-weighted mean |observed rate - mean predicted|.

    Bins are equal-frequency (deciles of the predicted probability) by default; see
    `calibration_curve` for the strategies.
    """
    curve = calibration_curve(y_true, y_prob, bins=bins, strategy=strategy)
    weights = curve.counts / curve.counts.sum()
    return float(np.sum(weights * np.abs(curve.observed_rate - curve.mean_predicted)))


def _top_count(n: int, k: float) -> int:
    """Rows in the top share k of n rows: ceil(k * n), at least 1."""
    if not 0 < k <= 1:
        raise ValueError(f"k must be a share in (0, 1], got {k}")
    return max(1, math.ceil(k * n - 1e-9))


def _positives_in_top(y: NDArray[np.int64], s: NDArray[np.float64], n_top: int) -> float:
    """Positives among the n_top highest scores; rows tied at the cut count pro rata."""
    threshold = np.sort(s)[::-1][n_top - 1]
    above = s > threshold
    tied = s == threshold
    slots = n_top - int(above.sum())
    tied_positives = float(y[tied].sum())
    return float(y[above].sum()) + tied_positives * slots / int(tied.sum())


def capture_at(y_true: ArrayLike, y_score: ArrayLike, k: float = 0.10) -> float:
    """Share of all positives found in the top share k of rows by score (recall at k).

    The top holds ceil(k * n) rows; rows tied with the last one selected count pro rata, so
    the result does not depend on row order. A perfect ranking gives min(1, k / prevalence).
    """
    y, s = _check(y_true, y_score)
    positives = int(y.sum())
    if positives == 0:
        raise ValueError("capture_at needs at least one positive in y_true")
    return _positives_in_top(y, s, _top_count(len(y), k)) / positives


def lift_at(y_true: ArrayLike, y_score: ArrayLike, k: float = 0.10) -> float:
    """Lift in the top share k: positive rate among the top rows over the overall rate.

    Equals capture_at / k whenever k * n is a whole number of rows (otherwise the share
    actually selected, ceil(k * n) / n, replaces k).
    """
    y, s = _check(y_true, y_score)
    n_top = _top_count(len(y), k)
    return capture_at(y, s, k) / (n_top / len(y))


def binary_metrics(y_true: ArrayLike, y_prob: ArrayLike, k: float = 0.10) -> dict[str, float]:
    """All churn metrics at once: roc_auc, pr_auc, brier, ece, lift_at_10, capture_at_10.

    The lift and capture keys are named after k in percent (k=0.10 gives `lift_at_10`).
    """
    pct = round(k * 100)
    return {
        "roc_auc": roc_auc(y_true, y_prob),
        "pr_auc": pr_auc(y_true, y_prob),
        "brier": brier(y_true, y_prob),
        "ece": expected_calibration_error(y_true, y_prob),
        f"lift_at_{pct}": lift_at(y_true, y_prob, k),
        f"capture_at_{pct}": capture_at(y_true, y_prob, k),
    }


METRICS: dict[str, tuple[Callable[[ArrayLike, ArrayLike], float], bool]] = {
    "roc_auc": (roc_auc, True),
    "pr_auc": (pr_auc, True),
    "brier": (brier, False),
    "ece": (expected_calibration_error, False),
    "lift_at_10": (lift_at, True),
    "capture_at_10": (capture_at, True),
}
"""Metric name -> (function of y_true and score, whether higher is better); used by promotion."""
