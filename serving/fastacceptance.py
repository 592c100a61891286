"""The acceptance model's contextual level on the request path: its trees as numpy arrays.

`ContextualLevel.predict_customer` scores a customer's offers with XGBoost's `inplace_predict`
(about 0.5 ms a call under load, most of it per-call overhead for a handful of rows). Here the
booster's trees are flattened once with the churn fast path's compiler
(`serving.fastchurn.compile_boosters`) and walked for all the rows at once; the margin's
logistic is the probability. Exact up to float rounding (a test keeps it within 1e-6 of
XGBoost).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from models.acceptance import AcceptanceModel
from models.acceptance_context import ContextualLevel
from serving.fastchurn import compile_boosters, leaves_of


class FastTrees:
    """P(accept) of encoded rows from a binary:logistic booster's compiled trees."""

    def __init__(self, level: ContextualLevel) -> None:
        self._trees, base = compile_boosters([level.booster])
        self._base = float(base[0])

    def __call__(self, x: NDArray[np.float32]) -> NDArray[np.float64]:
        """P(accept) of each row of the level's input matrix."""
        if x.shape[0] == 0:
            return np.zeros(0)
        margin = self._trees.value[leaves_of(self._trees, x)].sum(axis=1) + self._base
        return np.asarray(1.0 / (1.0 + np.exp(-margin)), dtype=float)


def compiled(model: AcceptanceModel) -> AcceptanceModel:
    """The model with its contextual level (if any) scoring on compiled trees; returns it."""
    if model.context_ is not None:
        model.context_.fast = FastTrees(model.context_)
    return model
