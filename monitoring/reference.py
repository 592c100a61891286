"""The reference profile a training run logs, and how `loyal monitor` reads a version's one."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.catalog import ENTITY_KEY
from monitoring.profile import Profile, profile_columns

LABEL_PREFIX = "label:"
"""Profile key of the label column (its shares: the realised rate on the holdout)."""
SCORE_PREFIX = "score:"
"""Profile key of a model output (its bins keep the holdout's label mean: the calibration)."""
PROFILE_ARTIFACT = "monitoring/profile.json"


def holdout_profile(
    frame: pd.DataFrame, label: str, exclude: Iterable[str], scores: Mapping[str, Any]
) -> Profile:
    """Profile of a holdout: its input columns, its label and the model's scores on it.

    Args:
        frame: the holdout rows.
        label: the label column (profiled as ``label:<name>``).
        exclude: bookkeeping columns left out (timestamps, ground truth); the customer id
            is always left out.
        scores: output name -> values per row (profiled as ``score:<name>`` with the label's
            mean per bin when the label is numeric).
    """
    skipped = {*exclude, label, ENTITY_KEY}
    columns: dict[str, Any] = {c: frame[c] for c in frame.columns if c not in skipped}
    outcome = _numeric_label(frame[label]) if label in frame else None
    if label in frame:
        columns[LABEL_PREFIX + label] = frame[label]
    for name, values in scores.items():
        columns[SCORE_PREFIX + name] = np.asarray(values, dtype=float)
    return profile_columns(
        columns,
        outcome=outcome,
        outcome_for=[SCORE_PREFIX + n for n in scores],
        source={"label": label, "rows": len(frame)},
    )


def _numeric_label(values: pd.Series) -> np.ndarray | None:
    try:
        return np.asarray(values.to_numpy(dtype=float, na_value=np.nan), dtype=float)
    except (TypeError, ValueError):
        return None


def download_profile(run_id: str) -> Profile | None:
    """The reference profile a run logged, or None when it logged none (older runs)."""
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=PROFILE_ARTIFACT, dst_path=tmp
            )
        except Exception:  # MLflow raises several types for a missing artifact
            return None
        return Profile.load(Path(local))


def profile_facts(profile: Profile) -> dict[str, Any]:
    """Size facts of a profile, for logs."""
    return {
        "columns": len(profile.columns),
        "rows": profile.rows,
        "bytes": len(json.dumps(profile.to_json())),
    }
