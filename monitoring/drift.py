"""Drift statistics: PSI with a sample-size correction, and churn performance without labels.

PSI. For reference shares p and current shares q over the same bins (missing values are a bin
of their own), ``PSI = sum((q - p) * ln(q / p))``, with empty bins floored at `EPSILON`. The
rule-of-thumb levels (0.1 warn, 0.25 alert) assume large samples: with finite samples PSI is
positive even without any shift. Under no shift, ``PSI / (1/n_ref + 1/n_cur)`` is close to a
chi-square with ``bins - 1`` degrees of freedom, so its expected value is
``(bins - 1) * (1/n_ref + 1/n_cur)``. We report that **expected noise** beside the raw PSI,
judge the levels on the **corrected PSI** (raw minus the expected noise, floored at 0), and
also require the raw PSI to be significant (chi-square p-value below `SIGNIFICANCE`), so that a
few hundred served requests never raise an alert on noise alone.

Estimated performance (confidence-based performance estimation, CBPE). A calibrated churn
probability p says: of customers scored p, a share p will churn. If only the mix of customers
changes (covariate shift: P(churn | features) is what the model learnt) the scores stay
calibrated, so every customer counts as p of a positive and 1 - p of a negative, and the
expected ROC-AUC over all such weighted pairs is computable from the scores alone
(`expected_roc_auc`). The reference profile keeps the churn rate observed in each score bin
on the holdout; the same assumption carries it to the current mix (`estimated_calibration`).
Neither holds under concept shift (the same features now mean something else): only labels
reveal that, which is why realised outcomes are compared as soon as they exist.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from monitoring.profile import ColumnProfile

EPSILON = 1e-4
"""Share floor of an empty bin in PSI's logarithm."""
WARN = 0.1
ALERT = 0.25
SIGNIFICANCE = 1e-3
"""A PSI level counts only when the raw PSI is this unlikely without a shift."""

Level = Literal["ok", "warn", "alert"]


@dataclass(frozen=True)
class Drift:
    """PSI of one column between a reference profile and a current sample.

    Attributes:
        column: the column.
        psi: raw PSI.
        expected_noise: PSI expected without any shift at these sample sizes.
        corrected: psi minus the expected noise, floored at 0; the levels apply to it.
        p_value: chance of a PSI at least this large without a shift (chi-square).
        level: ok, warn or alert.
        rows: rows of the current sample.
        reference_rows: rows of the reference.
        missing: current share missing (reference: `reference_missing`).
        reference_missing: reference share missing.
    """

    column: str
    psi: float
    expected_noise: float
    corrected: float
    p_value: float
    level: Level
    rows: int
    reference_rows: int
    missing: float
    reference_missing: float


def psi(reference: NDArray[Any], current: NDArray[Any]) -> float:
    """Population stability index of two share (or count) vectors over the same bins."""
    p = np.asarray(reference, dtype=float)
    q = np.asarray(current, dtype=float)
    p = np.maximum(p / p.sum(), EPSILON)
    q = np.maximum(q / q.sum(), EPSILON)
    return float(np.sum((q - p) * np.log(q / p)))


def expected_noise(bins: int, reference_rows: int, current_rows: int) -> float:
    """PSI expected under no shift: (bins - 1) * (1/n_ref + 1/n_cur)."""
    return max(bins - 1, 0) * (1.0 / max(reference_rows, 1) + 1.0 / max(current_rows, 1))


def level_of(corrected: float, p_value: float) -> Level:
    """The level of a corrected PSI (warn 0.1, alert 0.25), when significant."""
    if p_value >= SIGNIFICANCE:
        return "ok"
    if corrected >= ALERT:
        return "alert"
    return "warn" if corrected >= WARN else "ok"


def column_drift(reference: ColumnProfile, counts: NDArray[np.int64]) -> Drift:
    """PSI of current `counts` (in the reference's bins, missing last) against the reference."""
    ref = reference.distribution()
    rows = int(counts.sum())
    used = int(np.count_nonzero((ref > 0) | (counts > 0)))
    raw = psi(ref, counts) if rows else 0.0
    scale = 1.0 / max(reference.rows, 1) + 1.0 / max(rows, 1)
    noise = expected_noise(used, reference.rows, rows)
    from scipy.stats import chi2

    p_value = float(chi2.sf(raw / scale, max(used - 1, 1))) if rows else 1.0
    corrected = max(raw - noise, 0.0)
    return Drift(
        column=reference.name,
        psi=raw,
        expected_noise=noise,
        corrected=corrected,
        p_value=p_value,
        level=level_of(corrected, p_value),
        rows=rows,
        reference_rows=reference.rows,
        missing=float(counts[-1] / rows) if rows else 0.0,
        reference_missing=reference.missing,
    )


def drifts(
    reference: Mapping[str, ColumnProfile], counts: Mapping[str, NDArray[np.int64]]
) -> list[Drift]:
    """Drift of every counted column, the largest corrected PSI first."""
    found = [column_drift(reference[name], c) for name, c in counts.items() if name in reference]
    return sorted(found, key=lambda d: (-d.corrected, -d.psi, d.column))


def worst_level(found: list[Drift]) -> Level:
    """The most severe level among drifts."""
    levels = {d.level for d in found}
    return "alert" if "alert" in levels else "warn" if "warn" in levels else "ok"


# ------------------------------------------------------------------- performance without labels


def expected_roc_auc(probability: NDArray[np.float64]) -> float:
    """ROC-AUC expected from calibrated probabilities alone (CBPE).

    Each row is a positive with weight p and a negative with weight 1 - p; the AUC is the
    weighted share of (positive, negative) pairs of different rows ranked correctly, ties half.
    """
    p = np.asarray(probability, dtype=float)
    p = p[~np.isnan(p)]
    if len(p) < 2:
        return float("nan")
    values, group = np.unique(p, return_inverse=True)
    positive = np.bincount(group, weights=p, minlength=len(values))
    negative = np.bincount(group, weights=1 - p, minlength=len(values))
    own_pairs = np.bincount(group, weights=p * (1 - p), minlength=len(values))
    below = np.cumsum(negative) - negative
    correct = np.sum(positive * (below + 0.5 * negative)) - 0.5 * own_pairs.sum()
    pairs = positive.sum() * negative.sum() - own_pairs.sum()
    return float(correct / pairs) if pairs > 0 else float("nan")


def roc_auc(label: NDArray[np.float64], probability: NDArray[np.float64]) -> float:
    """The ROC-AUC measured with labels (NaN when one class is absent)."""
    y = np.asarray(label, dtype=float)
    p = np.asarray(probability, dtype=float)
    keep = ~(np.isnan(y) | np.isnan(p))
    y, p = y[keep], p[keep]
    if y.min(initial=1) == y.max(initial=0):
        return float("nan")
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p))


@dataclass(frozen=True)
class CalibrationEstimate:
    """Label-free calibration of a score on the current mix, from the reference's bins.

    Attributes:
        predicted_rate: mean score on the current sample.
        estimated_rate: churn rate expected from the reference's observed rate per score bin
            (covariate shift: the rate within a bin stays what the holdout showed).
        gap: predicted_rate - estimated_rate (positive: the scores overstate churn).
        expected_brier: mean p(1 - p), the Brier score if the scores are calibrated.
    """

    predicted_rate: float
    estimated_rate: float
    gap: float
    expected_brier: float


def estimated_calibration(
    reference: ColumnProfile, counts: NDArray[np.int64], probability: NDArray[np.float64]
) -> CalibrationEstimate | None:
    """Label-free calibration of the current scores; None without reference outcomes."""
    p = np.asarray(probability, dtype=float)
    p = p[~np.isnan(p)]
    if reference.outcome is None or not len(p):
        return None
    rates = np.array([np.nan if r is None else r for r in reference.outcome], dtype=float)
    present = counts[:-1].astype(float)
    known = ~np.isnan(rates)
    if present[known].sum() == 0:
        return None
    estimated = float(np.sum(present[known] * rates[known]) / present[known].sum())
    predicted = float(p.mean())
    return CalibrationEstimate(
        predicted_rate=predicted,
        estimated_rate=estimated,
        gap=predicted - estimated,
        expected_brier=float(np.mean(p * (1 - p))),
    )
