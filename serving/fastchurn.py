"""The churn model's request-time path: its trees compiled to numpy arrays, exact, no DMatrix.

`ChurnModel.score_one` pays XGBoost's per-call cost (~0.2 ms for `inplace_predict`) and
`ChurnModel.explain` builds a DMatrix and a DataFrame (~7 ms). Here the boosters' trees are
read once from their JSON dump and evaluated for one row with a few vectorised numpy steps
(float32 comparisons, as XGBoost does), then calibrated by the model's own calibrator. Reasons
are exact path-dependent tree SHAP from tables built at start-up (`serving.treeshap`, tens of
microseconds a row); a model too large to tabulate falls back to XGBoost's `pred_contribs` on a
one-row DMatrix. Tests keep both equal to the batch path.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from models.churn import ChurnModel, Sentence, default_sentence
from serving.treeshap import CompiledTrees, tree_shap

if TYPE_CHECKING:
    import xgboost as xgb

Row = Mapping[str, Any]
LOGISTIC_OBJECTIVES = frozenset({"binary:logistic", "reg:logistic"})
"""Objectives whose base_score is a probability (their margin is its log-odds)."""


def _parse_base_margin(text: str, objective: str = "binary:logistic") -> float:
    """base_score as a margin: a probability's log-odds for the logistic objectives, else as
    it is (the identity link of regressions such as reg:squarederror)."""
    base = float(str(text).strip("[]").split(",")[0])
    if objective not in LOGISTIC_OBJECTIVES:
        return base
    return math.log(base / (1.0 - base))


def compile_boosters(
    boosters: Sequence[xgb.Booster],
) -> tuple[CompiledTrees, NDArray[np.float64]]:
    """Flatten XGBoost boosters' trees (read from their JSON dump) into one `CompiledTrees`;
    also return each booster's base margin (`CompiledTrees.booster` says which booster a tree
    belongs to). Shared by every tree model served without XGBoost per request."""
    columns: dict[str, list[Any]] = {
        k: []
        for k in ("feature", "threshold", "left", "right", "default_left", "value", "cover", "cat")
    }
    category_sets: list[list[int]] = []
    roots: list[int] = []
    owners: list[int] = []
    base: list[float] = []
    depth = 0
    for b, booster in enumerate(boosters):
        learner = json.loads(bytes(booster.save_raw("json")))["learner"]
        objective = str(learner.get("objective", {}).get("name", "binary:logistic"))
        base.append(_parse_base_margin(learner["learner_model_param"]["base_score"], objective))
        for tree in learner["gradient_booster"]["model"]["trees"]:
            offset = len(columns["feature"])
            roots.append(offset)
            owners.append(b)
            depth = max(depth, _tree_depth(tree["left_children"], tree["right_children"]))
            cats = _node_categories(tree)
            for node, left in enumerate(tree["left_children"]):
                leaf = left < 0
                columns["feature"].append(tree["split_indices"][node])
                columns["threshold"].append(tree["split_conditions"][node])
                columns["left"].append(-1 if leaf else offset + left)
                columns["right"].append(-1 if leaf else offset + tree["right_children"][node])
                columns["default_left"].append(bool(tree["default_left"][node]))
                columns["value"].append(tree["split_conditions"][node] if leaf else 0.0)
                columns["cover"].append(tree["sum_hessian"][node])
                if node in cats and not leaf:
                    columns["cat"].append(len(category_sets))
                    category_sets.append(cats[node])
                else:
                    columns["cat"].append(-1)
    width = 1 + max((max(c) for c in category_sets if c), default=0)
    table = np.zeros((max(len(category_sets), 1), width), dtype=bool)
    for row, codes in enumerate(category_sets):
        table[row, codes] = True
    trees = CompiledTrees(
        feature=np.asarray(columns["feature"], dtype=np.int64),
        threshold=np.asarray(columns["threshold"], dtype=np.float32),
        left=np.asarray(columns["left"], dtype=np.int64),
        right=np.asarray(columns["right"], dtype=np.int64),
        default_left=np.asarray(columns["default_left"], dtype=bool),
        category_row=np.asarray(columns["cat"], dtype=np.int64),
        categories=table,
        value=np.asarray(columns["value"], dtype=np.float64),
        cover=np.asarray(columns["cover"], dtype=np.float64),
        roots=np.asarray(roots, dtype=np.int64),
        booster=np.asarray(owners, dtype=np.int64),
        depth=depth,
    )
    return trees, np.asarray(base, dtype=np.float64)


def _tree_depth(left: list[int], right: list[int]) -> int:
    depth, frontier = 0, [0]
    while True:
        children = [c for n in frontier for c in (left[n], right[n]) if c >= 0]
        if not children:
            return depth
        depth += 1
        frontier = children


def _node_categories(tree: Mapping[str, Any]) -> dict[int, list[int]]:
    """Categorical split node -> the category codes it sends right."""
    out: dict[int, list[int]] = {}
    for node, start, size in zip(
        tree["categories_nodes"], tree["categories_segments"], tree["categories_sizes"], strict=True
    ):
        out[int(node)] = [int(c) for c in tree["categories"][start : start + size]]
    return out


class FastChurn:
    """Exact single-row churn probability and reasons of a fitted `ChurnModel`.

    Args:
        model: the fitted model (its calibrator and, for deep trees, its boosters are used).
        sentence: renders a reason from (feature, value); default "<column> = <value>".
    """

    def __init__(self, model: ChurnModel, sentence: Sentence | None = None) -> None:
        self.model = model
        self.sentence = sentence or default_sentence
        self.features: tuple[str, ...] = tuple(str(f) for f in model.feature_names_in_)
        self._codes = {
            column: {level: float(i) for i, level in enumerate(levels)}
            for column, levels in model.categories_.items()
        }
        self._columns = [(column, self._codes.get(column)) for column in self.features]
        self._trees, self._base = compile_boosters(model.boosters_)
        self._n_boosters = len(model.boosters_)
        self._shap = tree_shap(self._trees, len(self.features), 1.0 / self._n_boosters)

    # ------------------------------------------------------------------------------ encoding
    def encode(self, row: Row) -> NDArray[np.float64]:
        """The row as model floats: categories to their training codes, the rest as numbers."""
        nan = math.nan
        values: list[float] = []
        for column, codes in self._columns:
            value = row.get(column)
            if value is None:
                values.append(nan)
            elif codes is not None:
                values.append(codes.get(str(value), nan))
            else:
                try:
                    values.append(float(value))
                except (TypeError, ValueError):
                    values.append(nan)
        return np.array(values, dtype=np.float64)

    # ----------------------------------------------------------------------------- scoring
    def _leaves(self, x: NDArray[np.float64]) -> NDArray[np.int64]:
        """The leaf each tree sends the row to."""
        return leaves_of(self._trees, x[None, :])[0]

    def margin(self, x: NDArray[np.float64]) -> float:
        """The boosters' average log-odds for one encoded row."""
        return self._margin_of(self._leaves(x))

    def _margin_of(self, leaves: NDArray[np.int64]) -> float:
        per_booster = np.bincount(
            self._trees.booster, weights=self._trees.value[leaves], minlength=self._n_boosters
        )
        return float(np.mean(per_booster + self._base))

    def _calibrated(self, margin: float) -> float:
        return float(self.model.calibrator_(np.array([margin]))[0])

    def probability(self, row: Row) -> float:
        """Calibrated churn probability of one customer (features by name)."""
        return self.probability_of(self.encode(row))

    def probability_of(self, x: NDArray[np.float64]) -> float:
        """Calibrated churn probability of one encoded row."""
        return self._calibrated(self.margin(x))

    # ----------------------------------------------------------------------------- reasons
    def contributions(
        self, x: NDArray[np.float64], leaves: NDArray[np.int64] | None = None
    ) -> NDArray[np.float64]:
        """Tree SHAP contributions to the log-odds per feature (boosters averaged).

        `leaves` is accepted for compatibility and unused: the tables evaluate every split.
        """
        if self._shap is None:
            return self._xgboost_contributions(x)
        return self._shap.explain(x)[0]

    def _xgboost_contributions(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        import xgboost as xgb

        matrix = xgb.DMatrix(
            x[None, :],
            feature_names=list(self.features),
            feature_types=["c" if f in self._codes else "q" for f in self.features],
            enable_categorical=True,
            nthread=1,
        )
        total = sum(b.predict(matrix, pred_contribs=True) for b in self.model.boosters_)
        return np.asarray(total, dtype=np.float64)[0, :-1] / self._n_boosters

    def reasons(
        self,
        row: Row,
        top: int = 3,
        x: NDArray[np.float64] | None = None,
        leaves: NDArray[np.int64] | None = None,
    ) -> list[str]:
        """The features raising this customer's churn risk most, as sentences (strongest first)."""
        if top <= 0:
            return []
        phi = self.contributions(self.encode(row) if x is None else x, leaves)
        return self._sentences(row, phi, top)

    def _sentences(self, row: Row, phi: NDArray[np.float64], top: int) -> list[str]:
        """The `top` features with the largest positive contributions, as sentences."""
        order = np.argsort(-phi, kind="stable")[:top]
        out: list[str] = []
        for j in order:
            if phi[j] <= 0:
                break
            name = self.features[j]
            out.append(self.sentence(name, _nan_if_none(row.get(name))))
        return out

    def score(self, row: Row, top: int = 3) -> tuple[float, list[str]]:
        """Probability and reasons of one customer, encoding the row once."""
        x = self.encode(row)
        if top > 0 and self._shap is not None:
            phi, leaves = self._shap.explain(x)
            return self._calibrated(self._margin_of(leaves)), self._sentences(row, phi, top)
        leaves = self._leaves(x)
        return self._calibrated(self._margin_of(leaves)), self.reasons(row, top, x, leaves)


def leaves_of(trees: CompiledTrees, x: NDArray[np.floating[Any]]) -> NDArray[np.int64]:
    """The leaf each tree sends each row to: (rows, trees) global node ids for `x` of shape
    (rows, features); float32 comparisons and missing-value directions as XGBoost's."""
    t = trees
    n_rows, width = x.shape
    flat = np.asarray(x, dtype=np.float32).ravel()
    nodes = np.tile(t.roots, n_rows)  # row-major: row r's trees at [r * T, (r + 1) * T)
    # each node's row offset in `flat` (one row, the request path: none to add)
    start = None if n_rows == 1 else np.repeat(np.arange(n_rows) * width, len(t.roots))
    for _ in range(t.depth):
        inner = t.left[nodes] >= 0
        if not inner.any():
            break
        n = nodes[inner]
        v = flat[t.feature[n] if start is None else start[inner] + t.feature[n]]
        missing = np.isnan(v)
        go_left = v < t.threshold[n]
        cat_rows = t.category_row[n]
        categorical = cat_rows >= 0
        if categorical.any():
            codes = np.where(missing, 0, v).astype(np.int64)
            inside = (codes >= 0) & (codes < t.categories.shape[1])
            member = np.zeros(len(n), dtype=bool)
            pick = categorical & inside
            member[pick] = t.categories[cat_rows[pick], codes[pick]]
            go_left = np.where(categorical, ~member, go_left)
        go_left = np.where(missing, t.default_left[n], go_left)
        nodes[inner] = np.where(go_left, t.left[n], t.right[n])
    return nodes.reshape(n_rows, len(t.roots))


def _nan_if_none(value: Any) -> Any:
    """Missing values read as NaN, as in the batch path's DataFrame."""
    return float("nan") if value is None else value
