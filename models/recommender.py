"""Cross-sell recommenders: a small interface, implicit ALS, a popularity baseline, their pyfunc."""

from __future__ import annotations

import inspect
import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, NamedTuple, Self

import numpy as np
import pandas as pd
import scipy.sparse as sp

from loyal.errors import LoyalError, NotReadyError

Weighting = Literal["log1p", "bm25", "linear"]
"""How raw values r_ui (counts or amounts) become ALS confidences; see AlsRecommender."""

FORMAT_VERSION = 1
ARRAYS_FILE = "arrays.npz"
META_FILE = "meta.json"
_BATCH_ROWS = 2048


class RecommenderInputError(LoyalError, ValueError):
    """The interactions or ids handed to a recommender are malformed."""


class UnknownItemError(LoyalError, LookupError):
    """A product id the model has never seen was asked about."""


class ModelFileError(LoyalError):
    """A folder does not hold a recommender saved by `Recommender.save`."""


class Ranking(list[tuple[str, float]]):
    """Recommended ``(item_id, score)`` pairs, best first.

    A plain list, plus ``cold_start``: True when the customer was unknown to the model and the
    ranking is the popularity fallback (within their segment when one was given and known).
    """

    def __init__(self, items: Iterable[tuple[str, float]] = (), cold_start: bool = False) -> None:
        super().__init__(items)
        self.cold_start = cold_start

    def __repr__(self) -> str:
        return f"Ranking({list.__repr__(self)}, cold_start={self.cold_start})"


class TopK(NamedTuple):
    """Batch top-k as arrays, one row per requested customer.

    Attributes:
        items: positions into ``item_ids_``, shape (n, k); -1 where fewer than k items remain.
        scores: scores matching ``items``; NaN where ``items`` is -1.
        cold_start: True for rows answered by the popularity fallback.
    """

    items: np.ndarray
    scores: np.ndarray
    cold_start: np.ndarray


class Recommender(ABC):
    """Ranks products a customer does not hold yet, and products held together.

    Implementations provide `_fit_model`, `_user_scores`, `_item_similarity` and
    `_contributions`, and may check their settings in `_check_params`; this base class handles
    ids, held-item filtering, the popularity cold start, batching and the safe save format
    (``arrays.npz`` with ``allow_pickle=False`` plus a JSON file of parameters and id maps).

    Fitted attributes (set by `fit` or `load`): ``user_ids_``, ``item_ids_`` (arrays of str),
    ``user_items_`` (CSR, the values given to `fit`), ``popularity_`` (share of customers holding
    each item), ``segment_names_`` and ``segment_popularity_`` (the same share within each segment).
    """

    _registry: ClassVar[dict[str, type[Recommender]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        Recommender._registry[cls.__name__] = cls

    # ----------------------------------------------------------------------------- parameters
    def get_params(self) -> dict[str, Any]:
        """The constructor settings, as in scikit-learn's estimator contract."""
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {name: getattr(self, name) for name in names}

    # ------------------------------------------------------------------------------------ fit
    def fit(
        self,
        user_items: sp.spmatrix | sp.sparray,
        user_ids: Sequence[str],
        item_ids: Sequence[str],
        user_segments: Sequence[str] | None = None,
    ) -> Self:
        """Learn from a customer x product matrix of non-negative interaction values.

        Args:
            user_items: sparse matrix, one row per customer and one column per product; a
                stored non-zero value means the customer holds or bought the product (counts,
                amounts, or recency-weighted versions of them).
            user_ids: customer ids, one per row, unique.
            item_ids: product ids, one per column, unique.
            user_segments: optional segment name per row; cold-start customers whose segment
                is given at `recommend` time then get the popularity ranking of that segment.

        Returns:
            The fitted recommender.
        """
        self._check_params()
        matrix = _checked_matrix(user_items, user_ids, item_ids)
        self.user_ids_ = np.asarray([str(u) for u in user_ids], dtype=str)
        self.item_ids_ = np.asarray([str(i) for i in item_ids], dtype=str)
        self.user_items_ = matrix
        self.popularity_, self.segment_names_, self.segment_popularity_ = _popularity(
            matrix, user_segments
        )
        self._build_index()
        self._fit_model(matrix)
        return self

    def _check_params(self) -> None:  # noqa: B027 - an optional hook, not abstract
        """Reject impossible settings before anything is fitted (none to check by default)."""

    @abstractmethod
    def _fit_model(self, user_items: sp.csr_matrix) -> None:
        """Fit the implementation's own state from the checked matrix."""

    @abstractmethod
    def _user_scores(self, rows: np.ndarray) -> np.ndarray:
        """Scores of every item for the customers at ``rows``, shape (len(rows), n_items)."""

    @abstractmethod
    def _item_similarity(self, position: int) -> np.ndarray:
        """Similarity of every item to the item at ``position``, shape (n_items,)."""

    @abstractmethod
    def _contributions(self, row: int, position: int, held: np.ndarray) -> np.ndarray:
        """How much each held item (positions ``held``) supports recommending ``position``."""

    # ------------------------------------------------------------------------------ recommend
    def recommend(
        self,
        user_id: str,
        k: int = 10,
        filter_already_held: bool = True,
        segment: str | None = None,
    ) -> Ranking:
        """The top-k products for one customer: the fast request-time path.

        Args:
            user_id: the customer id.
            k: how many products to return at most.
            filter_already_held: leave out products the customer held in the training data.
            segment: the customer's segment, used only when the customer is unknown.

        Returns:
            ``(item_id, score)`` pairs, best first; ``.cold_start`` tells whether the customer was
            unknown and got the popularity ranking instead.
        """
        top = self.recommend_batch([user_id], k, filter_already_held, [segment])
        ranked = [
            (str(self.item_ids_[p]), float(s))
            for p, s in zip(top.items[0], top.scores[0], strict=True)
            if p >= 0
        ]
        return Ranking(ranked, cold_start=bool(top.cold_start[0]))

    def recommend_batch(
        self,
        user_ids: Sequence[str],
        k: int = 10,
        filter_already_held: bool = True,
        segments: Sequence[str | None] | None = None,
    ) -> TopK:
        """Top-k for many customers at once; unknown customers get the popularity fallback.

        Args:
            user_ids: customer ids, known or not.
            k: how many products per customer at most.
            filter_already_held: leave out products each customer held in the training data.
            segments: optional segment per customer, used only for unknown customers.

        Returns:
            A `TopK` whose rows follow ``user_ids``.
        """
        self._check_fitted()
        if segments is not None and len(segments) != len(user_ids):
            raise RecommenderInputError(
                f"got {len(segments)} segments for {len(user_ids)} customers; give one each"
            )
        rows = np.fromiter((self._user_pos.get(str(u), -1) for u in user_ids), dtype=np.int64)
        return self._top_k_rows(rows, k, filter_already_held, segments)

    def recommend_all(self, k: int = 10, filter_already_held: bool = True) -> TopK:
        """Top-k for every customer seen in `fit`, rows in ``user_ids_`` order (batch scoring)."""
        self._check_fitted()
        rows = np.arange(len(self.user_ids_), dtype=np.int64)
        return self._top_k_rows(rows, k, filter_already_held, None)

    def _top_k_rows(
        self,
        rows: np.ndarray,
        k: int,
        filter_already_held: bool,
        segments: Sequence[str | None] | None,
    ) -> TopK:
        """Top-k for model rows (-1 = unknown customer), scored in chunks to bound memory."""
        _check_k(k)
        width = min(k, len(self.item_ids_))
        items = np.full((len(rows), k), -1, dtype=np.int64)
        scores = np.full((len(rows), k), np.nan, dtype=np.float32)
        for start in range(0, len(rows), _BATCH_ROWS):
            chunk = slice(start, start + _BATCH_ROWS)
            block = self._block_scores(rows[chunk], segments, start)
            if filter_already_held:
                _mask_held(block, self.user_items_, rows[chunk])
            items[chunk, :width], scores[chunk, :width] = _top_k(block, width)
        return TopK(items, scores, rows < 0)

    def similar_items(self, item_id: str, k: int = 10) -> list[tuple[str, float]]:
        """The k products most similar to ``item_id`` (itself excluded), best first."""
        self._check_fitted()
        _check_k(k)
        position = self._item_position(item_id)
        similarity = np.asarray(self._item_similarity(position), dtype=np.float32).copy()
        similarity[position] = -np.inf
        width = min(k, len(self.item_ids_))
        items, scores = _top_k(similarity[None, :], width)
        return [
            (str(self.item_ids_[p]), float(s))
            for p, s in zip(items[0], scores[0], strict=True)
            if p >= 0
        ]

    def explain(self, user_id: str, item_id: str, n: int = 3) -> list[tuple[str, float]]:
        """The held products that most support recommending ``item_id`` to ``user_id``.

        Args:
            user_id: the customer id; an unknown customer gets no reasons.
            item_id: the recommended product.
            n: how many supporting products to return at most.

        Returns:
            ``(held_item_id, contribution)`` pairs, strongest first, positive contributions only.
        """
        self._check_fitted()
        position = self._item_position(item_id)
        row = self._user_pos.get(str(user_id))
        if row is None:
            return []
        start, end = self.user_items_.indptr[row], self.user_items_.indptr[row + 1]
        held = self.user_items_.indices[start:end]
        held = held[held != position]
        if held.size == 0:
            return []
        contributions = self._contributions(row, position, held)
        order = np.argsort(-contributions, kind="stable")[:n]
        return [
            (str(self.item_ids_[held[i]]), float(contributions[i]))
            for i in order
            if contributions[i] > 0
        ]

    # --------------------------------------------------------------------------- persistence
    def save(self, path: str | Path) -> Path:
        """Write the fitted model to folder ``path`` as arrays.npz plus meta.json (no pickle)."""
        self._check_fitted()
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, Any] = self._arrays()
        np.savez(folder / ARRAYS_FILE, allow_pickle=False, **arrays)
        (folder / META_FILE).write_text(json.dumps(self._meta()), encoding="utf-8")
        return folder

    @classmethod
    def load(cls, path: str | Path) -> Recommender:
        """Read a recommender written by `save`; the concrete class comes from meta.json."""
        folder = Path(path)
        if not (folder / META_FILE).is_file() or not (folder / ARRAYS_FILE).is_file():
            raise ModelFileError(
                f"'{folder}' holds no saved recommender (expected {META_FILE} and {ARRAYS_FILE}); "
                "write one with Recommender.save(path)"
            )
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        target = Recommender._registry.get(meta.get("class", ""))
        if meta.get("format_version") != FORMAT_VERSION or target is None:
            raise ModelFileError(
                f"'{folder}' was saved by an incompatible version (class {meta.get('class')!r}, "
                f"format {meta.get('format_version')!r}); retrain and save it again"
            )
        if not issubclass(target, cls):
            raise ModelFileError(f"'{folder}' holds a {target.__name__}, not a {cls.__name__}")
        model = target(**meta["params"])
        with np.load(folder / ARRAYS_FILE, allow_pickle=False) as arrays:
            model._restore(meta, {name: arrays[name] for name in arrays.files})
        return model

    def _arrays(self) -> dict[str, np.ndarray]:
        matrix = self.user_items_
        return {
            "user_items_indptr": matrix.indptr,
            "user_items_indices": matrix.indices,
            "user_items_data": matrix.data,
            "popularity": self.popularity_,
            "segment_popularity": self.segment_popularity_,
        }

    def _meta(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "class": type(self).__name__,
            "params": self.get_params(),
            "user_ids": self.user_ids_.tolist(),
            "item_ids": self.item_ids_.tolist(),
            "segment_names": list(self.segment_names_),
        }

    def _restore(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.user_ids_ = np.asarray(meta["user_ids"], dtype=str)
        self.item_ids_ = np.asarray(meta["item_ids"], dtype=str)
        self.segment_names_ = list(meta["segment_names"])
        shape = (len(self.user_ids_), len(self.item_ids_))
        self.user_items_ = sp.csr_matrix(
            (
                arrays["user_items_data"],
                arrays["user_items_indices"],
                arrays["user_items_indptr"],
            ),
            shape=shape,
        )
        self.popularity_ = arrays["popularity"]
        self.segment_popularity_ = arrays["segment_popularity"]
        self._build_index()

    # ------------------------------------------------------------------------------- helpers
    def _build_index(self) -> None:
        self._user_pos = {u: i for i, u in enumerate(self.user_ids_.tolist())}
        self._item_pos = {p: i for i, p in enumerate(self.item_ids_.tolist())}
        self._segment_pos = {s: i for i, s in enumerate(self.segment_names_)}

    def _check_fitted(self) -> None:
        if not hasattr(self, "user_items_"):
            raise NotReadyError(
                f"this {type(self).__name__} is not fitted yet: call fit(...) or "
                "Recommender.load(path) first"
            )

    def _item_position(self, item_id: str) -> int:
        position = self._item_pos.get(str(item_id))
        if position is None:
            raise UnknownItemError(
                f"product '{item_id}' is unknown to the model ({len(self.item_ids_)} products "
                "were seen in training); retrain after it has been bought"
            )
        return position

    def _block_scores(
        self, rows: np.ndarray, segments: Sequence[str | None] | None, offset: int
    ) -> np.ndarray:
        """Scores for one chunk of rows; unknown rows (-1) get popularity, per segment if known."""
        block = np.empty((len(rows), len(self.item_ids_)), dtype=np.float32)
        known = rows >= 0
        if known.any():
            block[known] = self._user_scores(rows[known])
        for i in np.flatnonzero(~known):
            segment = segments[offset + int(i)] if segments is not None else None
            block[i] = self._cold_start_scores(segment)
        return block

    def _cold_start_scores(self, segment: str | None) -> np.ndarray:
        position = self._segment_pos.get(segment) if segment is not None else None
        if position is None:
            return self.popularity_
        return self.segment_popularity_[position]


class AlsRecommender(Recommender):
    """Implicit-feedback ALS (Hu, Koren and Volinsky 2008) with the `implicit` library, on CPU.

    Confidence: each stored value r_ui (a purchase count or amount, optionally recency-decayed
    upstream) becomes c_ui = 1 + alpha * w(r_ui), the preference p_ui = 1; unstored pairs have
    c = 1, p = 0. The weighting w is one of:

    - ``"log1p"`` (default): w(r) = log(1 + r), which damps heavy buyers and large amounts;
    - ``"bm25"``: w = BM25 of r with products as documents and customers as terms
      (``implicit.nearest_neighbours.bm25_weight`` on the product x customer matrix, K1=100,
      B=0.8, clipped at 0), which saturates repeat purchases and down-weights customers who buy
      everything;
    - ``"linear"``: w(r) = r.

    Scores are the dot products of customer and product factors; `similar_items` uses the cosine
    of product factors; `explain` splits a score into the contributions of the products the
    customer holds (section 5 of the paper).
    """

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 10.0,
        alpha: float = 1.0,
        iterations: int = 15,
        weighting: Weighting = "log1p",
        random_state: int = 42,
        num_threads: int = 2,
        use_gpu: bool = False,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.weighting = weighting
        self.random_state = random_state
        self.num_threads = num_threads
        self.use_gpu = use_gpu

    def confidence(self, user_items: sp.csr_matrix) -> sp.csr_matrix:
        """The confidence matrix c_ui = 1 + alpha * w(r_ui) on the stored entries."""
        if self.weighting == "log1p":
            weights = user_items.copy()
            weights.data = np.log1p(weights.data)
        elif self.weighting == "bm25":
            from implicit.nearest_neighbours import bm25_weight

            weights = bm25_weight(user_items.T.tocsr(), K1=100, B=0.8).T.tocsr()
            # a customer holding nearly every product gets idf <= 0; never let that go negative
            weights.data = np.maximum(weights.data, 0.0)
        else:
            weights = user_items.copy()
        weights.data = (1.0 + self.alpha * weights.data).astype(np.float32)
        return weights.astype(np.float32)

    def _check_params(self) -> None:
        if self.use_gpu:
            raise RecommenderInputError("use_gpu=True is not supported: Loyal serves on CPU")
        if self.weighting not in ("log1p", "bm25", "linear"):
            raise RecommenderInputError(
                f"unknown weighting '{self.weighting}': use 'log1p', 'bm25' or 'linear'"
            )
        if self.factors < 1 or self.iterations < 1 or self.regularization < 0 or self.alpha < 0:
            raise RecommenderInputError(
                "ALS needs factors >= 1, iterations >= 1, regularization >= 0 and alpha >= 0 "
                f"(got {self.factors}, {self.iterations}, {self.regularization}, {self.alpha})"
            )

    def _fit_model(self, user_items: sp.csr_matrix) -> None:
        from implicit.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        confidence = self.confidence(user_items)
        # implicit solves many small systems in its own threads; a threaded BLAS underneath only
        # oversubscribes the cores (implicit warns about it), so BLAS is pinned to one thread.
        with threadpool_limits(limits=1, user_api="blas"):
            model = AlternatingLeastSquares(
                factors=self.factors,
                regularization=self.regularization,
                alpha=1.0,
                iterations=self.iterations,
                random_state=self.random_state,
                num_threads=self.num_threads,
                use_gpu=False,
            )
            model.fit(confidence, show_progress=False)
        self.user_factors_ = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.ascontiguousarray(model.item_factors, dtype=np.float32)
        self._prepare_scoring()

    def _prepare_scoring(self) -> None:
        norms = np.linalg.norm(self.item_factors_, axis=1)
        self._item_norms = np.where(norms > 0, norms, 1e-10).astype(np.float32)
        self._confidence_cache: sp.csr_matrix | None = None

    def _user_scores(self, rows: np.ndarray) -> np.ndarray:
        return self.user_factors_[rows] @ self.item_factors_.T

    def _item_similarity(self, position: int) -> np.ndarray:
        dots = self.item_factors_ @ self.item_factors_[position]
        return dots / (self._item_norms * self._item_norms[position])

    def _contributions(self, row: int, position: int, held: np.ndarray) -> np.ndarray:
        if self._confidence_cache is None:
            self._confidence_cache = self.confidence(self.user_items_)
        confidence = self._confidence_cache
        start, end = confidence.indptr[row], confidence.indptr[row + 1]
        all_held = confidence.indices[start:end]
        c_all = confidence.data[start:end].astype(np.float64)
        c_held = c_all[np.searchsorted(all_held, held)]
        Y = self.item_factors_.astype(np.float64)
        # W_u = (Y'Y + sum_j (c_uj - 1) y_j y_j' + lambda I)^-1, s_ij = y_i' W_u y_j
        A = Y.T @ Y + self.regularization * np.eye(Y.shape[1])
        A += (Y[all_held].T * (c_all - 1.0)) @ Y[all_held]
        weighted = np.linalg.solve(A, Y[position])
        return (Y[held] @ weighted) * c_held

    def _arrays(self) -> dict[str, np.ndarray]:
        return {
            **super()._arrays(),
            "user_factors": self.user_factors_,
            "item_factors": self.item_factors_,
        }

    def _restore(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        super()._restore(meta, arrays)
        self.user_factors_ = arrays["user_factors"]
        self.item_factors_ = arrays["item_factors"]
        self._prepare_scoring()


class PopularityRecommender(Recommender):
    """Baseline: every customer gets the products held by the most customers, held ones left out.

    Scores are the share of customers holding each product. `similar_items` ranks products by how
    often they are held together with the given one (co-holding count divided by the square root
    of both products' holder counts, i.e. the cosine of their binary columns); `explain` gives,
    for each held product j, the share of j's holders who also hold the recommended product.
    """

    def __init__(self) -> None:
        pass

    def _fit_model(self, user_items: sp.csr_matrix) -> None:
        self._set_holders()

    def _set_holders(self) -> None:
        holders = self.user_items_.copy()
        holders.data = np.ones_like(holders.data, dtype=np.float32)
        self._holders_csc = holders.tocsc()
        self._holder_counts = np.asarray(holders.sum(axis=0), dtype=np.float32).ravel()

    def _user_scores(self, rows: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.popularity_, (len(rows), len(self.popularity_)))

    def _co_holding(self, position: int) -> np.ndarray:
        column = self._holders_csc[:, position]
        return np.asarray((self._holders_csc.T @ column).todense(), dtype=np.float32).ravel()

    def _item_similarity(self, position: int) -> np.ndarray:
        counts = self._holder_counts
        denominator = np.sqrt(np.maximum(counts, 1.0) * max(float(counts[position]), 1.0))
        return self._co_holding(position) / denominator

    def _contributions(self, row: int, position: int, held: np.ndarray) -> np.ndarray:
        together = self._co_holding(position)[held]
        return together / np.maximum(self._holder_counts[held], 1.0)

    def _restore(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        super()._restore(meta, arrays)
        self._set_holders()


# ------------------------------------------------------------------------------ pure helpers
def _checked_matrix(
    user_items: sp.spmatrix | sp.sparray, user_ids: Sequence[str], item_ids: Sequence[str]
) -> sp.csr_matrix:
    """A float32 CSR copy with sorted indices and no explicit zeros, or a clear error."""
    if not sp.issparse(user_items):
        raise RecommenderInputError(
            "user_items must be a scipy sparse matrix (customers x products); "
            f"got {type(user_items).__name__}"
        )
    matrix = sp.csr_matrix(user_items, dtype=np.float32, copy=True)
    expected = (len(user_ids), len(item_ids))
    if matrix.shape != expected:
        raise RecommenderInputError(
            f"user_items has shape {matrix.shape} but there are {expected[0]} user ids and "
            f"{expected[1]} item ids; pass one id per row and one per column"
        )
    for name, ids in (("user_ids", user_ids), ("item_ids", item_ids)):
        if len(set(map(str, ids))) != len(ids):
            raise RecommenderInputError(f"{name} contains duplicates; ids must be unique")
    if len(item_ids) == 0 or len(user_ids) == 0:
        raise RecommenderInputError("user_items is empty: at least one customer and one product")
    if matrix.data.size and (not np.isfinite(matrix.data).all() or matrix.data.min() < 0):
        raise RecommenderInputError(
            "user_items holds negative or non-finite values; keep purchases only (amount >= 0) "
            "and aggregate refunds away before fitting"
        )
    matrix.sum_duplicates()
    matrix.eliminate_zeros()
    matrix.sort_indices()
    return matrix


def _popularity(
    matrix: sp.csr_matrix, user_segments: Sequence[str] | None
) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Share of customers holding each item, overall and per segment."""
    holders = (matrix > 0).astype(np.float32)
    overall = np.asarray(holders.mean(axis=0), dtype=np.float32).ravel()
    if user_segments is None:
        return overall, [], np.zeros((0, matrix.shape[1]), dtype=np.float32)
    labels = np.asarray([str(s) for s in user_segments])
    if len(labels) != matrix.shape[0]:
        raise RecommenderInputError(
            f"user_segments has {len(labels)} entries for {matrix.shape[0]} customers; "
            "give one segment per row of user_items"
        )
    names, codes = np.unique(labels, return_inverse=True)
    membership = sp.csr_matrix(
        (np.ones(len(codes), dtype=np.float32), (codes, np.arange(len(codes)))),
        shape=(len(names), len(codes)),
    )
    sizes = np.asarray(membership.sum(axis=1), dtype=np.float32)
    per_segment = np.asarray((membership @ holders).todense(), dtype=np.float32) / sizes
    return overall, names.tolist(), per_segment


def _mask_held(block: np.ndarray, user_items: sp.csr_matrix, rows: np.ndarray) -> None:
    """Set the scores of items each known row already holds to -inf, in place."""
    for i in np.flatnonzero(rows >= 0):
        row = rows[i]
        block[i, user_items.indices[user_items.indptr[row] : user_items.indptr[row + 1]]] = -np.inf


def _top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions and scores of the k best entries per row, best first; -inf entries become -1/NaN.

    Ties are broken by the lower position, so results are deterministic.
    """
    n_items = scores.shape[1]
    if k < n_items:
        candidates = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        candidates = np.broadcast_to(np.arange(n_items), scores.shape)
    candidate_scores = np.take_along_axis(scores, candidates, axis=1)
    order = np.lexsort((candidates, -candidate_scores), axis=1)
    items = np.take_along_axis(candidates, order, axis=1).astype(np.int64)
    best = np.take_along_axis(candidate_scores, order, axis=1).astype(np.float32)
    empty = ~np.isfinite(best)
    items[empty] = -1
    best[empty] = np.nan
    return items, best


def _check_k(k: int) -> None:
    if k < 1:
        raise RecommenderInputError(f"k must be at least 1 (got {k})")


# ------------------------------------------------------------------- MLflow pyfunc (lazy)
def _define_pyfunc() -> type:
    """Build the pyfunc class on first use, so importing this module never imports mlflow."""
    from mlflow.pyfunc import PythonModel

    class CrossSellPyfunc(PythonModel):
        """MLflow pyfunc serving a saved `Recommender` (artifact ``recommender``).

        Input: a DataFrame with ``customer_id`` and optionally ``segment`` (used for unknown
        customers). Params: ``k`` (default 10) and ``filter_already_held`` (default True).
        Output: one row per recommendation with ``customer_id``, ``rank`` (1 = best),
        ``product_id``, ``score`` and ``cold_start``.
        """

        # Annotations use module-level names only (Any, pd): MLflow resolves them to skip its
        # type-hint schema inference in favour of the explicit signature logged with the model.
        def load_context(self, context: Any) -> None:
            """Load the recommender from the ``recommender`` artifact folder."""
            self.recommender_ = Recommender.load(context.artifacts["recommender"])

        def predict(
            self,
            context: Any,
            model_input: pd.DataFrame,
            params: dict[str, Any] | None = None,
        ) -> pd.DataFrame:
            """Top-k products per input customer as a long DataFrame."""
            frame = pd.DataFrame(model_input)
            if "customer_id" not in frame.columns:
                raise RecommenderInputError(
                    "the cross_sell model needs a 'customer_id' column in its input"
                )
            params = params or {}
            customer_ids = frame["customer_id"].astype(str).tolist()
            segments = frame["segment"].tolist() if "segment" in frame.columns else None
            top = self.recommender_.recommend_batch(
                customer_ids,
                k=int(params.get("k", 10)),
                filter_already_held=bool(params.get("filter_already_held", True)),
                segments=segments,
            )
            return top_k_frame(top, customer_ids, self.recommender_.item_ids_)

    CrossSellPyfunc.__module__ = __name__
    return CrossSellPyfunc


def top_k_frame(top: TopK, customer_ids: Sequence[str], item_ids: np.ndarray) -> pd.DataFrame:
    """A `TopK` as a long frame: customer_id, rank (1 = best), product_id, score, cold_start."""
    k = top.items.shape[1]
    keep = top.items.ravel() >= 0
    rows = np.repeat(np.arange(len(customer_ids)), k)[keep]
    return pd.DataFrame(
        {
            "customer_id": np.asarray(customer_ids, dtype=object)[rows],
            "rank": np.tile(np.arange(1, k + 1), len(customer_ids))[keep],
            "product_id": item_ids[top.items.ravel()[keep]].astype(object),
            "score": top.scores.ravel()[keep].astype(np.float64),
            "cold_start": top.cold_start[rows],
        }
    )


def __getattr__(name: str) -> Any:
    if name == "CrossSellPyfunc":
        cls = _define_pyfunc()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
