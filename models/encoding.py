"""One customer's features as a model's input row: the encoding the churn and uplift models
share when they answer a single request from a feature mapping (no DataFrame)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray


def category_codes(levels: Mapping[str, Sequence[str]]) -> dict[str, dict[str, float]]:
    """Per text column, each training level's code (its position) as a float."""
    return {
        column: {level: float(i) for i, level in enumerate(names)}
        for column, names in levels.items()
    }


def encode_row(
    features: Mapping[str, Any],
    columns: Sequence[str] | NDArray[Any],
    codes: Mapping[str, Mapping[str, float]],
) -> NDArray[np.float64]:
    """A 1 x len(columns) float row in `columns` order: text columns (those in `codes`) as
    their training code, others as floats; absent, unseen or unparsable values are NaN."""
    out = np.full((1, len(columns)), np.nan)
    for j, column in enumerate(columns):
        value = features.get(column)
        if value is None:
            continue
        if column in codes:
            out[0, j] = codes[column].get(str(value), np.nan)
        else:
            out[0, j] = _number(value)
    return out


def _number(value: Any) -> float:
    """A value as a float, as `pd.to_numeric(errors="coerce")` reads it (NaN: not a number)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return np.nan
