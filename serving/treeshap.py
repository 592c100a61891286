"""Exact path-dependent tree SHAP for one row, from tables built once per model.

XGBoost's `pred_contribs` runs Lundberg's TreeSHAP (cover-weighted, path-dependent) on a
DMatrix, about 1 ms a call for one row. Here the same numbers come from precomputed tables:

For a leaf whose root path splits on `d` distinct features, let `z_j` be the share of the
training cover that follows the path at the splits on feature `j` (product over those splits)
and `o_j` 1 if the row follows the path at every split on `j`, else 0. The leaf adds to
feature `i`

    phi_i = v * (o_i - z_i) * sum_k k! (d-k-1)! / d! * e_k(j != i),

with `e_k` the coefficient of `t^k` in `prod_{j != i} (z_j + o_j t)` (the Shapley weights
over the other features on the path). As the `o_j` are 0 or 1, each leaf has only `2^d`
possible patterns: `phi` for every pattern is tabulated at start-up, and a request only
evaluates every split once, reads each leaf's pattern and sums table cells per feature.
Repeated splits on one feature merge (product of cover shares, AND of the decisions), as
XGBoost's path unwinding does. The tables take `sum over leaves of 2^d * d` floats, so
models too large for `MAX_TABLE_CELLS` are not tabulated (the caller falls back to XGBoost).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

MAX_TABLE_CELLS = 8_000_000
"""Most table cells (float64, 64 MB) tabulated for one model; larger ones fall back."""
MAX_DEPTH = 8
"""Deepest path tabulated (a path's off-path steps are packed into one byte)."""
_CHUNK = 2048
"""Leaves tabulated at once (bounds the start-up working memory)."""


@dataclass(frozen=True)
class CompiledTrees:
    """Every tree of every booster as flat node arrays (global node ids).

    Built by `serving.fastchurn` from a churn model's boosters; this module tabulates its
    contributions, fastchurn walks it for the probability.
    """

    feature: NDArray[np.int64]
    threshold: NDArray[np.float32]
    left: NDArray[np.int64]
    right: NDArray[np.int64]
    default_left: NDArray[np.bool_]
    category_row: NDArray[np.int64]
    """Row of `categories` for a categorical split node, -1 for a numerical one."""
    categories: NDArray[np.bool_]
    """categories[row, code]: the category goes to the right child."""
    value: NDArray[np.float64]
    cover: NDArray[np.float64]
    roots: NDArray[np.int64]
    booster: NDArray[np.int64]
    """Booster index of each tree."""
    depth: int


@dataclass(frozen=True)
class _Leaf:
    """One leaf's root path: its split nodes, directions and distinct features."""

    node: int
    value: float
    steps: list[tuple[int, bool, int]]
    """(split node, path goes left, slot of the node's feature) from the root down."""
    features: list[int]
    """Distinct features on the path, by slot (first appearance)."""
    zero: list[float]
    """Per slot: the product of cover shares along the path at that feature's splits."""


def _leaves_of(trees: CompiledTrees, root: int) -> list[_Leaf]:
    """Every leaf of the tree at `root` with its path (depth-first, left first)."""
    out: list[_Leaf] = []
    stack: list[tuple[int, list[tuple[int, bool, int]], list[int], list[float]]] = [
        (root, [], [], [])
    ]
    while stack:
        node, steps, features, zero = stack.pop()
        if trees.left[node] < 0:
            out.append(_Leaf(node, float(trees.value[node]), steps, features, zero))
            continue
        feature = int(trees.feature[node])
        for child, goes_left in ((trees.right[node], False), (trees.left[node], True)):
            share = float(trees.cover[child]) / float(trees.cover[node])
            if feature in features:
                slot = features.index(feature)
                new_features, new_zero = features, list(zero)
                new_zero[slot] *= share
            else:
                slot = len(features)
                new_features, new_zero = [*features, feature], [*zero, share]
            stack.append((int(child), [*steps, (node, goes_left, slot)], new_features, new_zero))
    return out


def _shapley_weights(d: int) -> NDArray[np.float64]:
    """k! (d-k-1)! / d! for k = 0..d-1."""
    return np.array(
        [math.factorial(k) * math.factorial(d - k - 1) / math.factorial(d) for k in range(d)]
    )


def _tabulate(value: NDArray[np.float64], zero: NDArray[np.float64]) -> NDArray[np.float64]:
    """phi for every pattern of leaves sharing `d` path features: shape (leaves, 2^d, d).

    Args:
        value: leaf values, shape (leaves,).
        zero: cover shares per slot, shape (leaves, d).
    """
    n, d = zero.shape
    patterns = 1 << d
    ones = ((np.arange(patterns)[:, None] >> np.arange(d)[None, :]) & 1).astype(np.float64)
    weights = _shapley_weights(d)
    out = np.empty((n, patterns, d))
    for i in range(d):
        coef = np.zeros((n, patterns, d))
        coef[:, :, 0] = 1.0
        for j in range(d):
            if j == i:
                continue
            shifted = np.zeros_like(coef)
            shifted[:, :, 1:] = coef[:, :, :-1] * ones[None, :, j, None]
            coef = coef * zero[:, j, None, None] + shifted
        total = coef @ weights
        out[:, :, i] = value[:, None] * (ones[None, :, i] - zero[:, i, None]) * total
    return out


class TreeShap:
    """Exact single-row tree SHAP (and the leaves reached) of compiled boosted trees.

    Args:
        trees: the flat node arrays of every tree of every booster.
        n_features: number of model features.
        scale: multiplies every contribution (e.g. 1 / boosters to average a bag).
    """

    def __init__(self, trees: CompiledTrees, n_features: int, scale: float = 1.0) -> None:
        self.trees = trees
        self.n_features = n_features
        leaves = [leaf for root in trees.roots for leaf in _leaves_of(trees, int(root))]
        self.cells = sum((1 << len(leaf.features)) * len(leaf.features) for leaf in leaves)
        deepest = max((len(leaf.steps) for leaf in leaves), default=0)
        self.fits = self.cells <= MAX_TABLE_CELLS and deepest <= MAX_DEPTH
        if self.fits:
            self._build(leaves, scale)

    # ------------------------------------------------------------------------------ start-up
    def _build(self, leaves: list[_Leaf], scale: float) -> None:
        t = self.trees
        inner = np.flatnonzero(t.left >= 0)
        self._inner = inner
        self._inner_feature = t.feature[inner]
        self._inner_threshold = t.threshold[inner]
        self._inner_default_left = t.default_left[inner]
        self._inner_category_row = t.category_row[inner]
        self._categorical = np.flatnonzero(self._inner_category_row >= 0)
        self._categorical_row = self._inner_category_row[self._categorical]
        position = np.zeros(len(t.left), dtype=np.int64)
        position[inner] = np.arange(len(inner))
        depth = max((len(leaf.steps) for leaf in leaves), default=0)
        n = len(leaves)
        step_node = np.zeros((n, max(depth, 1)), dtype=np.int64)
        step_left = np.zeros((n, max(depth, 1)), dtype=bool)
        kind = np.zeros(n, dtype=np.int64)
        kinds: dict[tuple[int, ...], int] = {}
        width = np.array([len(leaf.features) for leaf in leaves], dtype=np.int64)
        start = np.zeros(n, dtype=np.int64)
        table = np.zeros(self.cells)
        offset = 0
        for index, leaf in enumerate(leaves):
            start[index] = offset
            offset += (1 << len(leaf.features)) * len(leaf.features)
            for k, (node, goes_left, _slot) in enumerate(leaf.steps):
                step_node[index, k] = position[node]
                step_left[index, k] = goes_left
            slots = tuple(slot for _, _, slot in leaf.steps)
            kind[index] = kinds.setdefault(slots, len(kinds))
        for d in np.unique(width[width > 0]):
            group = np.flatnonzero(width == d)
            for first in range(0, len(group), _CHUNK):
                chunk = group[first : first + _CHUNK]
                values = np.array([leaves[i].value for i in chunk]) * scale
                zero = np.array([leaves[i].zero for i in chunk])
                block = _tabulate(values, zero).reshape(len(chunk), -1)
                cells = start[chunk, None] + np.arange(block.shape[1])[None, :]
                table[cells] = block
        self._step_node, self._step_left = step_node, step_left
        self._remap = _remap_table(kinds)
        self._kind = kind
        self._full = (1 << width) - 1
        self._start, self._width = start, width
        self._table = table
        self._leaf_node = np.array([leaf.node for leaf in leaves], dtype=np.int64)
        pair_leaf, pair_slot = np.nonzero(np.arange(depth)[None, :] < width[:, None])
        self._pair_leaf, self._pair_slot = pair_leaf, pair_slot
        self._pair_feature = np.array(
            [leaves[i].features[s] for i, s in zip(pair_leaf, pair_slot, strict=True)],
            dtype=np.int64,
        )

    # ------------------------------------------------------------------------------ requests
    def _go_left(self, x32: NDArray[np.float32]) -> NDArray[np.bool_]:
        """Every split's decision for the row (missing: default; categories: the partition)."""
        v = x32[self._inner_feature]
        go_left = v < self._inner_threshold
        if len(self._categorical):
            codes = v[self._categorical]
            known = ~np.isnan(codes)
            table = self.trees.categories
            safe = np.where(known, codes, 0).astype(np.int64)
            inside = known & (safe >= 0) & (safe < table.shape[1])
            member = np.zeros(len(codes), dtype=bool)
            member[inside] = table[self._categorical_row[inside], safe[inside]]
            go_left[self._categorical] = ~member
        missing = np.isnan(v)
        if missing.any():
            go_left[missing] = self._inner_default_left[missing]
        return go_left

    def explain(self, x: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
        """Contributions per feature and the leaves the row reaches (global node ids).

        Args:
            x: one encoded row (NaN for missing).

        Returns:
            (phi of shape (n_features,), the node id of the leaf reached in each tree).
        """
        if not len(self._inner):
            return np.zeros(self.n_features), self._leaf_node
        go_left = self._go_left(x.astype(np.float32))
        off_path = go_left[self._step_node] != self._step_left
        steps = np.packbits(off_path, axis=1, bitorder="little")[:, 0]
        zero = self._remap[self._kind, steps]
        pattern = self._full ^ zero
        cells = (self._start + pattern * self._width)[self._pair_leaf] + self._pair_slot
        phi: NDArray[np.float64] = np.bincount(
            self._pair_feature, weights=self._table[cells], minlength=self.n_features
        ).astype(np.float64, copy=False)
        return phi, self._leaf_node[zero == 0]


def _remap_table(kinds: dict[tuple[int, ...], int]) -> NDArray[np.int64]:
    """remap[kind, off-path step bits] = the slot bits of the features the row leaves.

    A leaf's kind is the slot of each step on its path (repeated features share a slot).
    """
    out = np.zeros((max(len(kinds), 1), 256), dtype=np.int64)
    bits = np.arange(256)
    for slots, kind in kinds.items():
        for k, slot in enumerate(slots):
            out[kind] |= ((bits >> k) & 1) << slot
    return out


def tree_shap(trees: Any, n_features: int, scale: float = 1.0) -> TreeShap | None:
    """A `TreeShap` for the trees, or None when its tables would exceed `MAX_TABLE_CELLS`."""
    shap = TreeShap(trees, n_features, scale)
    return shap if shap.fits else None
