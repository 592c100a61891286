"""Segment profile heat map: how each need segment differs from the population, as a PNG."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

Z_PREFIX = "z__"
LIFT_PREFIX = "lift__"


def _features(profile: pd.DataFrame, max_features: int) -> list[str]:
    """Features with the largest absolute standardized difference in any segment, first."""
    z = profile.filter(like=Z_PREFIX)
    strength = z.abs().max(axis=0).sort_values(ascending=False, kind="stable")
    return [str(c)[len(Z_PREFIX) :] for c in strength.index[:max_features]]


def _row_label(segment: object, row: pd.Series) -> str:
    """``3: affluent investors (12%)``."""
    return f"{segment}: {row.get('name', '')} ({float(row.get('share', math.nan)):.0%})"


def _cell_text(profile: pd.DataFrame, row: int, feature: str, z: float) -> str:
    """The lift (``3.1x``) when the profile has one for the cell, else the z value."""
    column = LIFT_PREFIX + feature
    value = float(profile[column].iloc[row]) if column in profile.columns else math.nan
    return f"{value:.1f}x" if math.isfinite(value) else f"{z:+.1f}"


def profile_heatmap(profile: pd.DataFrame, max_features: int = 20, clip: float = 3.0) -> Figure:
    """Heat map of a `models.segments.profile` frame: segments x distinguishing features.

    Colour is the standardized difference from the population (red above, blue below,
    clipped at ``clip``); each cell is annotated with the lift (segment mean / population
    mean) where defined.

    Args:
        profile: output of `models.segments.profile` (``name``, ``share``, ``z__*`` and
            ``lift__*`` columns, one row per segment).
        max_features: most distinguishing features shown.
        clip: colour scale limit in standard deviations.

    Returns:
        The figure (Agg canvas, no pyplot state).
    """
    features = _features(profile, max_features)
    matrix = profile[[Z_PREFIX + f for f in features]].to_numpy(dtype=float)
    n_rows, n_cols = matrix.shape
    figure = Figure(figsize=(3.5 + 0.55 * n_cols, 1.6 + 0.45 * n_rows), layout="constrained")
    axes = figure.add_subplot()
    image = axes.imshow(matrix, cmap="RdBu_r", vmin=-clip, vmax=clip, aspect="auto")
    axes.set_xticks(np.arange(n_cols), labels=features, rotation=45, ha="right")
    axes.set_yticks(np.arange(n_rows), labels=[_row_label(s, r) for s, r in profile.iterrows()])
    for i in range(n_rows):
        for j, feature in enumerate(features):
            axes.text(
                j,
                i,
                _cell_text(profile, i, feature, matrix[i, j]),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if abs(matrix[i, j]) > clip * 0.6 else "black",
            )
    figure.colorbar(image, ax=axes, label="standardized difference")
    axes.set_title("Need segments vs all customers (cells: lift of the mean)")
    return figure


def save_profile_heatmap(profile: pd.DataFrame, path: str | Path, dpi: int = 120) -> Path:
    """Draw `profile_heatmap` and write it as a PNG.

    Args:
        profile: output of `models.segments.profile`.
        path: where to write the PNG.
        dpi: resolution.

    Returns:
        The path written.
    """
    target = Path(path)
    profile_heatmap(profile).savefig(target, dpi=dpi, bbox_inches="tight")
    return target
