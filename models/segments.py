"""Need-based segments: k-means over standardized behaviour, profiled, named and kept stable.

How it works, in the order `NeedSegmenter.fit` runs:

1. **Preprocessing** (`BehaviourScaler`): heavy-tailed non-negative columns (money, counts) get
   a sign-preserving log1p; missing values become 0 by default, because in the behaviour tables
   a missing count, balance or share means "none" (the catalog leaves a balance NaN when the
   customer has no such account), or the column median plus a ``<column>__missing`` indicator
   with ``impute="median"``; every column is then centred and divided by its standard deviation,
   except 0/1 flags, divided by 0.5 so rare products do not dominate (``flag_scale``), and
   constant columns, divided by 1 so they become zeros rather than NaN.
2. **Choice of k**, stated criterion: for every k in ``k_range`` fit k-means on at most
   ``selection_size`` rows, then on one random evaluation sample of at most ``sample_size``
   rows compute the silhouette and, with ``stability_runs`` > 0, the stability (mean adjusted
   Rand index between the model's labels and those of models refitted on bootstrap resamples).
   The chosen k has the highest silhouette among the k whose stability is at least
   ``min_stability`` (all k when none is, or when stability is off); ties go to the smaller k.
3. **Final model**: k-means with the chosen k on every row (started from the selected model's
   centroids when it was fitted on a sample).
4. **Stable ids**: segments are numbered by size on a first fit. Given ``previous=`` (a fitted
   segmenter or its `to_dict`), new centroids are matched to the old ones with the Hungarian
   algorithm on Euclidean distances in the new model's standardized space (old centroids are
   mapped back to raw units and through the new preprocessing; features the two do not share
   are left out, with a warning); unmatched new segments get ids never used before.
5. **Profiles and names** (`profile`): per segment size, share, raw means, lift over the
   population mean and the standardized difference in the transformed space; names come
   from the most distinguishing features through a small vocabulary of column-name patterns.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, silhouette_score
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from loyal.errors import LoyalError

FORMAT = "loyal.need_segmenter"
FORMAT_VERSION = 1
MISSING_SUFFIX = "__missing"
IMPUTE_CHOICES = ("zero", "median")


class SegmentError(LoyalError, ValueError):
    """Segments cannot be fitted, matched or restored as asked (the message says why)."""


# --------------------------------------------------------------------------------------------
# Preprocessing
# --------------------------------------------------------------------------------------------


def signed_log1p(values: np.ndarray) -> np.ndarray:
    """``sign(x) * log1p(|x|)``: log1p for non-negative values, still defined below zero."""
    return np.sign(values) * np.log1p(np.abs(values))


def signed_expm1(values: np.ndarray) -> np.ndarray:
    """The inverse of `signed_log1p`."""
    return np.sign(values) * np.expm1(np.abs(values))


def is_heavy_tailed(values: np.ndarray, skew_threshold: float = 1.0) -> bool:
    """Whether a column should be logged: non-negative, above 1 somewhere and right-skewed.

    Shares and 0/1 flags (never above 1) are left linear, so are columns with negative values.

    Args:
        values: the column; NaN is ignored.
        skew_threshold: minimum sample skewness.
    """
    x = values[~np.isnan(values)]
    if x.size < 3 or x.min() < 0 or x.max() <= 1:
        return False
    std = x.std()
    if std == 0:
        return False
    skewness = float(np.mean(((x - x.mean()) / std) ** 3))
    return skewness > skew_threshold


def _column_names(estimator: BaseEstimator, n_features: int) -> list[str]:
    """Names seen at fit time, or ``x0, x1, ...`` for arrays without names."""
    names = getattr(estimator, "feature_names_in_", None)
    if names is not None:
        return [str(name) for name in names]
    return [f"x{i}" for i in range(n_features)]


class _AcceptsMissing:
    """Tells scikit-learn's checks that missing values (NaN) are accepted."""

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()  # type: ignore[misc]
        tags.input_tags.allow_nan = True
        return tags


class BehaviourScaler(_AcceptsMissing, TransformerMixin, BaseEstimator):
    """Maps raw behaviour features into the standardized space k-means works in.

    Steps: sign-preserving log1p on heavy-tailed columns, missing values filled, optional
    missing indicators appended, then standardization to zero mean and unit variance.

    Args:
        log_transform: ``"auto"`` (log the columns `is_heavy_tailed` picks), ``"none"``, or the
            names of the columns to log.
        skew_threshold: skewness above which ``"auto"`` logs a column.
        impute: ``"zero"`` fills missing values with 0 (missing behaviour means none);
            ``"median"`` fills with the column median and appends a 0/1 column
            ``<column>__missing`` for every column that had missing values at fit time.
        flag_scale: divisor of 0/1 columns (holdings flags, missing indicators) instead of
            their own standard deviation; the default 0.5 is the largest standard deviation a
            0/1 column can have, so holding a product counts like a two-standard-deviation
            difference however rare the product. Standardizing a flag held by 2% of customers
            would put holders 7 units away and let rare products decide the segments. None
            standardizes flags like any column.

    Attributes:
        columns_: input column names (``x0, x1, ...`` for arrays).
        log_columns_: the columns that are logged.
        fill_values_: value that replaces a missing entry, per input column (raw units).
        indicator_columns_: columns that get a missing indicator.
        mean_: mean of every output column before scaling.
        scale_: standard deviation of every output column (1 where it is 0).
        n_features_in_: number of input columns.
        feature_names_in_: input column names, when fitted on a DataFrame.
    """

    def __init__(
        self,
        log_transform: str | Sequence[str] = "auto",
        skew_threshold: float = 1.0,
        impute: str = "zero",
        flag_scale: float | None = 0.5,
    ) -> None:
        self.log_transform = log_transform
        self.skew_threshold = skew_threshold
        self.impute = impute
        self.flag_scale = flag_scale

    def fit(self, X: Any, y: Any = None) -> BehaviourScaler:
        """Learn which columns to log, the fill values and the scaling.

        Args:
            X: behaviour features, one row per customer (DataFrame or array).
            y: ignored.

        Returns:
            The fitted scaler.
        """
        values = validate_data(self, X, dtype=np.float64, ensure_all_finite="allow-nan")
        return self._fit_array(values, _column_names(self, values.shape[1]))

    def transform(self, X: Any) -> np.ndarray:
        """Map raw features into the standardized space.

        Args:
            X: the columns seen at fit time, in the same order.

        Returns:
            An array of shape (n_rows, number of output features).
        """
        check_is_fitted(self)
        values = validate_data(
            self, X, dtype=np.float64, ensure_all_finite="allow-nan", reset=False
        )
        return self._transform_array(values)

    def inverse_transform(self, X: Any) -> np.ndarray:
        """Map points of the standardized space back to raw units of the input columns.

        Args:
            X: points in the output space (indicator columns, if any, are dropped).

        Returns:
            An array with one column per input column.
        """
        check_is_fitted(self)
        scaled = np.asarray(X, dtype=np.float64)
        n = len(self.columns_)
        values = scaled[:, :n] * self.scale_[:n] + self.mean_[:n]
        logged = self._log_mask()
        values[:, logged] = signed_expm1(values[:, logged])
        return values

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Output column names: the input columns, then ``<column>__missing`` indicators."""
        check_is_fitted(self)
        if input_features is not None and list(input_features) != list(self.columns_):
            raise SegmentError(
                f"input_features {list(input_features)} differ from the fitted columns "
                f"{self.columns_}"
            )
        names = [*self.columns_, *(c + MISSING_SUFFIX for c in self.indicator_columns_)]
        return np.asarray(names, dtype=object)

    def to_dict(self) -> dict[str, Any]:
        """The fitted state as JSON-able values."""
        check_is_fitted(self)
        return {
            "params": {
                "log_transform": _jsonable_param(self.log_transform),
                "skew_threshold": float(self.skew_threshold),
                "impute": self.impute,
                "flag_scale": self.flag_scale,
            },
            "columns": list(self.columns_),
            "has_feature_names": hasattr(self, "feature_names_in_"),
            "log_columns": list(self.log_columns_),
            "fill_values": _floats(self.fill_values_),
            "indicator_columns": list(self.indicator_columns_),
            "mean": _floats(self.mean_),
            "scale": _floats(self.scale_),
        }

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any]) -> BehaviourScaler:
        """Rebuild a fitted scaler from `to_dict` output."""
        scaler = cls(**payload["params"])
        columns = [str(c) for c in payload["columns"]]
        scaler.columns_ = columns
        scaler.n_features_in_ = len(columns)
        if payload.get("has_feature_names", True):
            scaler.feature_names_in_ = np.asarray(columns, dtype=object)
        scaler.log_columns_ = [str(c) for c in payload["log_columns"]]
        scaler.fill_values_ = _array(payload["fill_values"])
        scaler.indicator_columns_ = [str(c) for c in payload["indicator_columns"]]
        scaler.mean_ = _array(payload["mean"])
        scaler.scale_ = _array(payload["scale"])
        return scaler

    # -- internals shared with NeedSegmenter (arrays already validated) ----------------------

    def _fit_array(self, values: np.ndarray, columns: list[str]) -> BehaviourScaler:
        """Fit on a validated float array whose columns are named `columns`."""
        if self.impute not in IMPUTE_CHOICES:
            raise SegmentError(f"impute must be one of {IMPUTE_CHOICES}, got {self.impute!r}")
        self.columns_ = list(columns)
        self.n_features_in_ = len(columns)
        self.log_columns_ = self._choose_log_columns(values)
        missing = np.isnan(values)
        if self.impute == "median":
            self.fill_values_ = _nan_medians(values)
            self.indicator_columns_ = [
                c for c, m in zip(columns, missing.any(axis=0), strict=True) if m
            ]
        else:
            self.fill_values_ = np.zeros(len(columns))
            self.indicator_columns_ = []
        unscaled = self._unscaled(values)
        self.mean_ = unscaled.mean(axis=0)
        self.scale_ = _scales(unscaled, self.flag_scale)
        return self

    def _transform_array(self, values: np.ndarray) -> np.ndarray:
        """Transform a validated float array with the fitted columns."""
        return (self._unscaled(values) - self.mean_) / self.scale_

    def _unscaled(self, values: np.ndarray) -> np.ndarray:
        """Log, fill and add indicators, without scaling; never modifies `values`."""
        out = values.copy()
        logged = self._log_mask()
        out[:, logged] = signed_log1p(out[:, logged])
        missing = np.isnan(out)
        out = np.where(missing, self._fill_transformed(), out)
        if not self.indicator_columns_:
            return out
        positions = [self.columns_.index(c) for c in self.indicator_columns_]
        return np.hstack([out, missing[:, positions].astype(np.float64)])

    def _fill_transformed(self) -> np.ndarray:
        """Fill values in the logged space (the median commutes with the log)."""
        fill = self.fill_values_.copy()
        logged = self._log_mask()
        fill[logged] = signed_log1p(fill[logged])
        return fill

    def _log_mask(self) -> np.ndarray:
        """Boolean mask over the input columns: which are logged."""
        return np.asarray([c in self.log_columns_ for c in self.columns_], dtype=bool)

    def _choose_log_columns(self, values: np.ndarray) -> list[str]:
        """Resolve the `log_transform` setting to a list of column names."""
        if isinstance(self.log_transform, str):
            if self.log_transform == "none":
                return []
            if self.log_transform != "auto":
                raise SegmentError(
                    f"log_transform must be 'auto', 'none' or a list of columns, "
                    f"got {self.log_transform!r}"
                )
            return [
                c
                for i, c in enumerate(self.columns_)
                if is_heavy_tailed(values[:, i], self.skew_threshold)
            ]
        unknown = sorted(set(self.log_transform) - set(self.columns_))
        if unknown:
            raise SegmentError(f"log_transform names columns that are not in X: {unknown}")
        return [c for c in self.columns_ if c in set(self.log_transform)]


def _scales(unscaled: np.ndarray, flag_scale: float | None) -> np.ndarray:
    """Standard deviation per column; `flag_scale` for 0/1 columns if set; 1 when constant."""
    scale = unscaled.std(axis=0)
    if flag_scale is not None:
        flags = np.all((unscaled == 0) | (unscaled == 1), axis=0) & (scale > 0)
        scale = np.where(flags, flag_scale, scale)
    return np.where(scale > 0, scale, 1.0)


def _nan_medians(values: np.ndarray) -> np.ndarray:
    """Column medians ignoring NaN; 0 for columns with no value at all."""
    medians = np.zeros(values.shape[1])
    for i in range(values.shape[1]):
        column = values[:, i]
        known = column[~np.isnan(column)]
        medians[i] = float(np.median(known)) if known.size else 0.0
    return medians


# --------------------------------------------------------------------------------------------
# Choosing k
# --------------------------------------------------------------------------------------------


def choose_k(
    scores: Mapping[int, float],
    stability: Mapping[int, float] | None = None,
    min_stability: float = 0.8,
) -> int:
    """The stated criterion: highest silhouette among the stable k.

    Args:
        scores: silhouette per k (NaN where it could not be computed).
        stability: mean adjusted Rand index across bootstrap refits per k; None or empty
            when stability was not measured.
        min_stability: a k counts as stable at or above this value.

    Returns:
        The k with the highest silhouette among those at least ``min_stability`` stable, or
        among all k when none is; ties go to the smaller k.
    """
    finite = sorted(k for k, s in scores.items() if not math.isnan(s))
    if not finite:
        return min(scores)
    stable = [k for k in finite if not stability or stability.get(k, 0.0) >= min_stability]
    pool = stable or finite
    return max(pool, key=lambda k: (scores[k], -k))


def _fit_kmeans(
    Z: np.ndarray, k: int, seed: int, n_init: int, max_iter: int, init: Any = "k-means++"
) -> KMeans:
    """One k-means fit."""
    return KMeans(n_clusters=k, init=init, n_init=n_init, max_iter=max_iter, random_state=seed).fit(
        Z
    )


def _silhouette(Z_eval: np.ndarray, labels: np.ndarray) -> float:
    """Silhouette of labels on the evaluation sample; NaN when undefined."""
    n_labels = np.unique(labels).size
    if n_labels < 2 or n_labels > len(labels) - 1:
        return float("nan")
    return float(silhouette_score(Z_eval, labels))


def _stability(
    Z_sel: np.ndarray,
    Z_eval: np.ndarray,
    reference: np.ndarray,
    k: int,
    runs: int,
    rng: np.random.RandomState,
    n_init: int,
    max_iter: int,
) -> float:
    """Mean ARI between `reference` labels and refits on bootstrap resamples."""
    agreements = []
    for _ in range(runs):
        rows = rng.randint(0, len(Z_sel), size=len(Z_sel))
        seed = int(rng.randint(np.iinfo(np.int32).max))
        model = _fit_kmeans(Z_sel[rows], k, seed, n_init, max_iter)
        agreements.append(adjusted_rand_score(reference, model.predict(Z_eval)))
    return float(np.mean(agreements))


def nearest_center(Z: np.ndarray, centers: np.ndarray, chunk_rows: int = 65_536) -> np.ndarray:
    """Row index of the nearest center (Euclidean) for every row of Z, in bounded memory."""
    center_norms = (centers**2).sum(axis=1)
    nearest = np.empty(len(Z), dtype=np.int64)
    for start in range(0, len(Z), chunk_rows):
        block = Z[start : start + chunk_rows]
        distances = center_norms - 2.0 * block @ centers.T
        nearest[start : start + chunk_rows] = distances.argmin(axis=1)
    return nearest


def _sample_rows(n: int, size: int, rng: np.random.RandomState) -> np.ndarray:
    """Sorted random row positions, at most `size` of them (all rows when n <= size)."""
    if n <= size:
        return np.arange(n)
    return np.sort(rng.choice(n, size=size, replace=False))


# --------------------------------------------------------------------------------------------
# Stable ids across retrains
# --------------------------------------------------------------------------------------------


def match_to_previous(
    new_centers: Any,
    old_centers: Any,
    old_ids: Sequence[int] | None = None,
    *,
    next_id: int | None = None,
    max_distance: float | None = None,
) -> dict[int, int]:
    """Give new centroids the ids of the old centroids they match (Hungarian algorithm).

    Both sets of centroids must live in one shared space (same columns, same scaling).
    The assignment minimizes the total Euclidean distance between matched pairs.

    Args:
        new_centers: new centroids, one row each.
        old_centers: old centroids, one row each.
        old_ids: segment id of each old centroid (default 0, 1, ...).
        next_id: first id for new segments without a match (default: one above the largest
            old id); pass the old model's `next_segment_id_` so retired ids are never reused.
        max_distance: a matched pair farther apart than this is treated as unmatched (the new
            segment gets a fresh id); None matches as many as possible.

    Returns:
        Mapping from the row index of each new centroid to its segment id.
    """
    new = np.atleast_2d(np.asarray(new_centers, dtype=np.float64))
    old = np.atleast_2d(np.asarray(old_centers, dtype=np.float64))
    if new.shape[1] != old.shape[1]:
        raise SegmentError(
            f"new centroids have {new.shape[1]} features and old ones {old.shape[1]}; "
            "map them into one shared space first"
        )
    ids = list(range(len(old))) if old_ids is None else [int(i) for i in old_ids]
    if len(ids) != len(old):
        raise SegmentError(f"{len(ids)} old ids given for {len(old)} old centroids")
    rows, cols = linear_sum_assignment(cdist(new, old))
    mapping: dict[int, int] = {}
    for row, col in zip(rows, cols, strict=True):
        if max_distance is None or np.linalg.norm(new[row] - old[col]) <= max_distance:
            mapping[int(row)] = ids[col]
    fresh = max([*ids, -1]) + 1 if next_id is None else int(next_id)
    for row in range(len(new)):
        if row not in mapping:
            mapping[row] = fresh
            fresh += 1
    return mapping


def _previous_in_new_space(
    previous: NeedSegmenter, scaler: BehaviourScaler
) -> tuple[np.ndarray, np.ndarray, dict[str, list[str]]]:
    """Old centroids mapped into the new scaled space, restricted to the shared features.

    Returns:
        Positions of the shared features in the new space, the old centroids on those
        features, and the lists of shared and unshared feature names.
    """
    old_columns = list(previous.preprocessor_.columns_)
    shared = [c for c in scaler.columns_ if c in old_columns]
    report = {
        "shared_features": shared,
        "only_previous": [c for c in old_columns if c not in scaler.columns_],
        "only_new": [c for c in scaler.columns_ if c not in old_columns],
    }
    if not shared:
        raise SegmentError(
            "the previous segment model shares no feature with this one; "
            f"previous features: {old_columns}"
        )
    if report["only_previous"] or report["only_new"]:
        warnings.warn(
            f"matching segments to the previous model on the {len(shared)} features both "
            f"have; only in the previous model: {report['only_previous']}, only in this one: "
            f"{report['only_new']}",
            UserWarning,
            stacklevel=4,
        )
    old_raw = previous.preprocessor_.inverse_transform(previous.cluster_centers_)
    raw = np.full((len(old_raw), len(scaler.columns_)), np.nan)
    positions = [scaler.columns_.index(c) for c in shared]
    for position, column in zip(positions, shared, strict=True):
        raw[:, position] = old_raw[:, old_columns.index(column)]
    old_in_new = scaler._transform_array(raw)[:, positions]
    return np.asarray(positions), old_in_new, report


# --------------------------------------------------------------------------------------------
# The estimator
# --------------------------------------------------------------------------------------------


class NeedSegmenter(_AcceptsMissing, ClusterMixin, BaseEstimator):
    """Need-based segments: k-means over standardized behaviour with a chosen k.

    See the module docstring for the preprocessing, the criterion for k and how ids stay
    stable across retrains. `predict` uses only what `to_dict` stores.

    Args:
        n_clusters: a fixed number of segments; None chooses k over ``k_range``.
        k_range: smallest and largest k tried, inclusive.
        n_init: k-means restarts per fit.
        max_iter: k-means iterations per restart.
        random_state: seed for sampling and k-means.
        sample_size: rows on which silhouette and stability are computed.
        selection_size: rows on which the candidate models of every k are fitted.
        stability_runs: bootstrap refits per k for the stability measure (0 turns it off).
        min_stability: mean adjusted Rand index a k needs to count as stable.
        max_match_distance: when matching to a previous model, pairs farther apart than this
            (standardized units) are not matched and the new segment gets a fresh id.
        log_transform: see `BehaviourScaler`.
        skew_threshold: see `BehaviourScaler`.
        impute: see `BehaviourScaler`.
        flag_scale: see `BehaviourScaler`.
        top_n: distinguishing features per segment in profiles and descriptions.

    Attributes:
        preprocessor_: the fitted `BehaviourScaler`.
        columns_: input column names.
        k_: number of segments.
        scores_: silhouette per k tried.
        stability_: stability per k tried (empty when ``stability_runs`` is 0).
        cluster_centers_: centroids in the standardized space, one row per segment, in the
            order of `segment_ids_`.
        segment_ids_: the segment id of each centroid (ascending).
        next_segment_id_: the first id never used by this model or its predecessors.
        labels_: segment id of every training row.
        segment_names_: generated name per segment id.
        segment_descriptions_: generated one-line description per segment id.
        profile_: `profile` of the training data.
        matching_: how ids were matched to ``previous`` (None on a first fit).
        n_iter_: k-means iterations of the final fit.
        n_features_in_: number of input columns.
        feature_names_in_: input column names, when fitted on a DataFrame.
    """

    def __init__(
        self,
        n_clusters: int | None = None,
        k_range: tuple[int, int] = (3, 8),
        n_init: int = 4,
        max_iter: int = 300,
        random_state: int | None = 0,
        sample_size: int = 5_000,
        selection_size: int = 50_000,
        stability_runs: int = 2,
        min_stability: float = 0.8,
        max_match_distance: float | None = None,
        log_transform: str | Sequence[str] = "auto",
        skew_threshold: float = 1.0,
        impute: str = "zero",
        flag_scale: float | None = 0.5,
        top_n: int = 3,
    ) -> None:
        self.n_clusters = n_clusters
        self.k_range = k_range
        self.n_init = n_init
        self.max_iter = max_iter
        self.random_state = random_state
        self.sample_size = sample_size
        self.selection_size = selection_size
        self.stability_runs = stability_runs
        self.min_stability = min_stability
        self.max_match_distance = max_match_distance
        self.log_transform = log_transform
        self.skew_threshold = skew_threshold
        self.impute = impute
        self.flag_scale = flag_scale
        self.top_n = top_n

    def fit(
        self,
        X: Any,
        y: Any = None,
        previous: NeedSegmenter | Mapping[str, Any] | None = None,
    ) -> NeedSegmenter:
        """Choose k, fit the segments, number them and profile them.

        Args:
            X: behaviour features, one row per customer; not modified.
            y: ignored.
            previous: the model this one replaces (fitted `NeedSegmenter` or its `to_dict`);
                matching segments keep its ids.

        Returns:
            The fitted segmenter.
        """
        values = validate_data(
            self, X, dtype=np.float64, ensure_all_finite="allow-nan", ensure_min_samples=2
        )
        self.columns_ = _column_names(self, values.shape[1])
        self.preprocessor_ = BehaviourScaler(
            log_transform=self.log_transform,
            skew_threshold=self.skew_threshold,
            impute=self.impute,
            flag_scale=self.flag_scale,
        )._fit_array(values, self.columns_)
        if hasattr(self, "feature_names_in_"):
            self.preprocessor_.feature_names_in_ = self.feature_names_in_
        Z = self.preprocessor_._transform_array(values)
        rng = check_random_state(self.random_state)
        centers = self._select_and_fit(Z, rng)
        centers = _by_size(Z, centers)
        self._number(centers, previous)
        self.labels_ = self._assign(Z)
        self.profile_ = profile(
            pd.DataFrame(values, columns=self.columns_),
            self.labels_,
            log_columns=self.preprocessor_.log_columns_,
            fill_value=self._profile_fill(),
            top_n=self.top_n,
        )
        segments = self.profile_.index.tolist()
        self.segment_names_ = dict(zip(segments, self.profile_["name"].tolist(), strict=True))
        self.segment_descriptions_ = dict(
            zip(segments, self.profile_["description"].tolist(), strict=True)
        )
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Segment id of each customer: the nearest centroid in the standardized space.

        Args:
            X: the columns seen at fit time, in the same order (select them with
                ``X[model.feature_names_in_]``); missing values are allowed.

        Returns:
            Integer segment ids.
        """
        check_is_fitted(self)
        values = validate_data(
            self, X, dtype=np.float64, ensure_all_finite="allow-nan", reset=False
        )
        return self._assign(self.preprocessor_._transform_array(values))

    def profile(self, X: Any) -> pd.DataFrame:
        """`profile` of new data with this model's segments and names."""
        check_is_fitted(self)
        labels = self.predict(X)
        frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(X, columns=self.columns_)
        return profile(
            frame,
            labels,
            log_columns=self.preprocessor_.log_columns_,
            fill_value=self._profile_fill(),
            names=self.segment_names_,
            top_n=self.top_n,
        )

    def to_dict(self) -> dict[str, Any]:
        """Everything `predict` needs, plus names and selection scores, as JSON-able values."""
        check_is_fitted(self)
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "params": {k: _jsonable_param(v) for k, v in self.get_params().items()},
            "k": int(self.k_),
            "n_iter": int(self.n_iter_),
            "preprocessing": self.preprocessor_.to_dict(),
            "centers": [_floats(row) for row in self.cluster_centers_],
            "segment_ids": [int(i) for i in self.segment_ids_],
            "next_segment_id": int(self.next_segment_id_),
            "names": {str(k): v for k, v in self.segment_names_.items()},
            "descriptions": {str(k): v for k, v in self.segment_descriptions_.items()},
            "scores": {str(k): _float(v) for k, v in self.scores_.items()},
            "stability": {str(k): _float(v) for k, v in self.stability_.items()},
        }

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any]) -> NeedSegmenter:
        """Rebuild a fitted segmenter from `to_dict` output (no pickle involved).

        The result predicts exactly like the original; it has no `labels_` or `profile_`.
        """
        if payload.get("format") != FORMAT or payload.get("version") != FORMAT_VERSION:
            raise SegmentError(
                f"not a version-{FORMAT_VERSION} {FORMAT} payload: format "
                f"{payload.get('format')!r}, version {payload.get('version')!r}"
            )
        params = dict(payload["params"])
        params["k_range"] = tuple(params["k_range"])
        model = cls(**params)
        model.preprocessor_ = BehaviourScaler.from_dict(payload["preprocessing"])
        model.columns_ = list(model.preprocessor_.columns_)
        model.n_features_in_ = len(model.columns_)
        if hasattr(model.preprocessor_, "feature_names_in_"):
            model.feature_names_in_ = model.preprocessor_.feature_names_in_
        model.k_ = int(payload["k"])
        model.n_iter_ = int(payload.get("n_iter", 0))
        model.cluster_centers_ = np.asarray(payload["centers"], dtype=np.float64)
        model.segment_ids_ = np.asarray(payload["segment_ids"], dtype=np.int64)
        model.next_segment_id_ = int(payload["next_segment_id"])
        model.segment_names_ = {int(k): v for k, v in payload["names"].items()}
        model.segment_descriptions_ = {int(k): v for k, v in payload["descriptions"].items()}
        model.scores_ = {int(k): _nan_if_none(v) for k, v in payload["scores"].items()}
        model.stability_ = {int(k): _nan_if_none(v) for k, v in payload["stability"].items()}
        model.matching_ = None
        return model

    # -- internals -----------------------------------------------------------------------------

    def _candidate_ks(self, n_rows: int) -> list[int]:
        """The k to try, checked against the settings and the number of rows."""
        if self.n_clusters is not None:
            ks = [int(self.n_clusters)]
        else:
            low, high = (int(v) for v in self.k_range)
            if low < 2 or high < low:
                raise SegmentError(
                    f"k_range must be (low, high) with 2 <= low <= high, got {self.k_range}"
                )
            ks = list(range(low, high + 1))
        if ks[0] < 1:
            raise SegmentError(f"n_clusters must be at least 1, got {self.n_clusters}")
        usable = [k for k in ks if k < n_rows]
        if not usable:
            raise SegmentError(f"{n_rows} customers are too few to form {ks[0]} segments")
        return usable

    def _select_and_fit(self, Z: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
        """Choose k by the stated criterion and return the final centroids."""
        ks = self._candidate_ks(min(len(Z), self.sample_size, self.selection_size))
        selection = _sample_rows(len(Z), self.selection_size, rng)
        evaluation = _sample_rows(len(Z), self.sample_size, rng)
        Z_sel, Z_eval = Z[selection], Z[evaluation]
        models: dict[int, KMeans] = {}
        self.scores_, self.stability_ = {}, {}
        for k in ks:
            seed = int(rng.randint(np.iinfo(np.int32).max))
            models[k] = _fit_kmeans(Z_sel, k, seed, self.n_init, self.max_iter)
            reference = models[k].predict(Z_eval)
            self.scores_[k] = _silhouette(Z_eval, reference)
            if self.stability_runs > 0:
                self.stability_[k] = _stability(
                    Z_sel,
                    Z_eval,
                    reference,
                    k,
                    self.stability_runs,
                    rng,
                    self.n_init,
                    self.max_iter,
                )
        self.k_ = choose_k(self.scores_, self.stability_, self.min_stability)
        final = models[self.k_]
        if len(selection) < len(Z):
            seed = int(rng.randint(np.iinfo(np.int32).max))
            final = _fit_kmeans(Z, self.k_, seed, 1, self.max_iter, init=final.cluster_centers_)
        self.n_iter_ = int(final.n_iter_)
        return np.asarray(final.cluster_centers_)

    def _number(
        self, centers: np.ndarray, previous: NeedSegmenter | Mapping[str, Any] | None
    ) -> None:
        """Set segment ids (by size, or matched to `previous`) and sort centroids by id."""
        if previous is None:
            ids = np.arange(len(centers))
            self.next_segment_id_ = len(centers)
            self.matching_ = None
        else:
            old = previous if isinstance(previous, NeedSegmenter) else self.from_dict(previous)
            check_is_fitted(old)
            positions, old_centers, report = _previous_in_new_space(old, self.preprocessor_)
            mapping = match_to_previous(
                centers[:, positions],
                old_centers,
                old.segment_ids_.tolist(),
                next_id=old.next_segment_id_,
                max_distance=self.max_match_distance,
            )
            ids = np.asarray([mapping[i] for i in range(len(centers))])
            self.next_segment_id_ = max(int(old.next_segment_id_), int(ids.max()) + 1)
            self.matching_ = _matching_report(report, ids, centers[:, positions], old_centers, old)
        order = np.argsort(ids, kind="stable")
        self.cluster_centers_ = centers[order]
        self.segment_ids_: np.ndarray = ids[order].astype(np.int64)

    def _assign(self, Z: np.ndarray) -> np.ndarray:
        """Segment id of the nearest centroid."""
        nearest = nearest_center(Z, self.cluster_centers_)
        return self.segment_ids_[nearest]

    def _profile_fill(self) -> float | None:
        """How profiles treat missing values: as the model does with ``impute="zero"``."""
        return 0.0 if self.impute == "zero" else None


def _by_size(Z: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Centroids ordered by the number of rows nearest to them, largest first."""
    sizes = np.bincount(nearest_center(Z, centers), minlength=len(centers))
    return centers[np.argsort(-sizes, kind="stable")]


def _matching_report(
    report: dict[str, list[str]],
    ids: np.ndarray,
    new_centers: np.ndarray,
    old_centers: np.ndarray,
    old: NeedSegmenter,
) -> dict[str, Any]:
    """What matching did: shared features, distances, new and retired ids."""
    old_ids = [int(i) for i in old.segment_ids_]
    distances = {}
    for row, segment in enumerate(ids):
        if int(segment) in old_ids:
            old_row = old_ids.index(int(segment))
            distances[int(segment)] = float(np.linalg.norm(new_centers[row] - old_centers[old_row]))
    return {
        **report,
        "distances": distances,
        "new_segments": sorted(int(i) for i in ids if int(i) not in old_ids),
        "retired_segments": sorted(i for i in old_ids if i not in set(ids.tolist())),
    }


# --------------------------------------------------------------------------------------------
# Profiles and names
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Word:
    """How a feature reads in a segment name when it is high (and optionally low)."""

    pattern: str
    high: str | None
    low: str | None = None
    high_is_noun: bool = False


VOCABULARY: tuple[_Word, ...] = (
    _Word(r"invest|fund|brokerage|securit|stock|bond", "investors", high_is_noun=True),
    _Word(r"mortgage", "mortgage holders", high_is_noun=True),
    _Word(r"loan|overdraft|credit_line|borrow", "borrowers", high_is_noun=True),
    _Word(r"premium", "premium cardholders", high_is_noun=True),
    _Word(r"card", "card users", high_is_noun=True),
    _Word(r"saving", "savers", high_is_noun=True),
    _Word(r"insurance|pension|policy", "policyholders", high_is_noun=True),
    _Word(r"balance|deposit|idle_cash|wealth|assets|(^|_)aum|income", "affluent", "low-balance"),
    _Word(r"digital|login|online|mobile|(^|_)web|(^|_)app", "digital", "offline"),
    _Word(r"branch", "branch-goers", high_is_noun=True),
    _Word(r"(^|_)atm", "cash users", high_is_noun=True),
    _Word(r"complain", "dissatisfied"),
    _Word(r"satisf", "satisfied", "dissatisfied"),
    _Word(r"call|phone", "phone-reliant"),
    _Word(r"email|e_mail", "e-mail readers", high_is_noun=True),
    _Word(r"recency|days_since", "lapsing", "recently active"),
    _Word(r"trend|growth", "growing", "declining"),
    _Word(r"monetary|spend|revenue|amount|basket", "high-spending", "light-spending"),
    _Word(r"margin", "profitable", "low-margin"),
    _Word(r"frequency|transaction|txn|purchase|orders|regularity", "frequent", "infrequent"),
    _Word(r"n_products|categories|products_held", "multi-product", "single-product"),
    _Word(r"tenure", "long-standing", "new"),
    _Word(r"(^|_)age($|_)", "older", "younger"),
)
"""Column-name patterns (searched in order, lower case) and the words they give a name."""

LOW_ENGAGEMENT = "low-engagement customers"
MAINSTREAM = "mainstream customers"


def feature_word(column: str, high: bool) -> tuple[str, bool] | None:
    """The vocabulary word for a feature being high or low, and whether it is a noun.

    Args:
        column: feature name.
        high: whether the segment is above the population on it.

    Returns:
        (word, is_noun), or None when the vocabulary has no word for it.
    """
    for word in VOCABULARY:
        if re.search(word.pattern, column.lower()):
            text = word.high if high else word.low
            if text is None:
                return None
            return text, high and word.high_is_noun
    return None


def pretty_feature(column: str) -> str:
    """A feature name for people: ``logins_90d`` -> ``logins in 90 days``."""
    text = re.sub(r"^(holds|has|owns)_", "", column)
    text = text.replace("_", " ")
    return re.sub(r" (\d+)d$", r" in \1 days", text)


def _base_name(z: pd.Series, top_n: int, min_effect: float) -> str:
    """Name from the top distinguishing features: one adjective and one noun at most."""
    ranked = z[z.abs() >= min_effect].abs().sort_values(ascending=False, kind="stable")
    top = list(ranked.index[:top_n])
    if not top:
        return MAINSTREAM
    if all(z[f] < 0 for f in top):
        return LOW_ENGAGEMENT
    adjective = noun = None
    for feature in top:
        found = feature_word(str(feature), bool(z[feature] > 0))
        if found is None:
            continue
        text, is_noun = found
        if is_noun and noun is None:
            noun = text
        elif not is_noun and adjective is None:
            adjective = text
    if adjective is None and noun is None:
        first = top[0]
        return f"customers with {'high' if z[first] > 0 else 'low'} {pretty_feature(str(first))}"
    return " ".join(w for w in (adjective, noun or "customers") if w)


def name_segments(z: pd.DataFrame, top_n: int = 3, min_effect: float = 0.3) -> dict[int, str]:
    """Unique human-readable names from standardized differences.

    A segment is named from its ``top_n`` features with the largest absolute standardized
    difference (at least ``min_effect``): the first vocabulary adjective and noun among them
    ("affluent investors"); "low-engagement customers" when all of them are below average;
    "mainstream customers" when none stands out. When names collide, each colliding segment
    gets the feature on which it differs most from the others appended ("..., higher
    digital share"), and a ``#id`` if that still does not separate them.

    Args:
        z: standardized difference from the population, segments x features.
        top_n: features considered per segment.
        min_effect: smallest absolute standardized difference that may name a segment.

    Returns:
        Name per segment id (the index of `z`).
    """
    names = {int(s): _base_name(z.loc[s], top_n, min_effect) for s in z.index}
    for name in {n for n in names.values() if list(names.values()).count(n) > 1}:
        group = [s for s, n in names.items() if n == name]
        for segment in group:
            others = z.loc[[s for s in group if s != segment]].mean()
            gap = z.loc[segment] - others
            feature = str(gap.abs().idxmax())
            direction = "higher" if gap[feature] > 0 else "lower"
            names[segment] = f"{name}, {direction} {pretty_feature(feature)}"
    counts = pd.Series(list(names.values())).value_counts()
    return {s: (f"{n} #{s}" if counts[n] > 1 else n) for s, n in names.items()}


def _phrase(feature: str, stats: Mapping[str, float], kind: str, logged: bool) -> str:
    """One numeric phrase of a description, e.g. ``3.1x typical balance checking``.

    Logged (heavy-tailed) columns compare medians, which agree with the log-space standardized
    difference that ranked them; a raw mean would be dominated by a few large customers.
    """
    label = pretty_feature(feature)
    mean, population = stats["mean"], stats["population"]
    if kind == "binary":
        verb = "hold " if feature.startswith("holds_") else ""
        return f"{mean:.0%} {verb}{label} (vs {population:.0%})"
    if kind == "share":
        return f"{label} {mean:.0%} (vs {population:.0%})"
    if logged and stats["population_median"] > 0:
        return f"{stats['median'] / stats['population_median']:.1f}x typical {label}"
    if math.isfinite(stats["lift"]):
        return f"{stats['lift']:.1f}x average {label}"
    return f"{label} {mean:.3g} (vs {population:.3g})"


def _kinds(frame: pd.DataFrame) -> dict[str, str]:
    """Per column: ``binary`` (0/1 only), ``share`` (within [0, 1]) or ``amount``."""
    kinds = {}
    for column in frame.columns:
        values = frame[column].dropna()
        if values.empty:
            kinds[column] = "amount"
        elif values.isin([0.0, 1.0]).all():
            kinds[column] = "binary"
        elif values.min() >= 0 and values.max() <= 1:
            kinds[column] = "share"
        else:
            kinds[column] = "amount"
    return kinds


def _numeric_frame(X: Any) -> pd.DataFrame:
    """A float copy of X with a fresh positional index; non-numeric columns are refused."""
    if not isinstance(X, pd.DataFrame):
        array = np.asarray(X, dtype=np.float64)
        return pd.DataFrame(array, columns=[f"x{i}" for i in range(array.shape[1])])
    frame = X.reset_index(drop=True)
    bad = [c for c in frame.columns if not (is_numeric(frame[c]))]
    if bad:
        raise SegmentError(f"segment features must be numeric or boolean; not: {bad}")
    return frame.astype(np.float64)


def is_numeric(column: pd.Series) -> bool:
    """Numeric or boolean dtype."""
    return bool(pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column))


def profile(
    X: Any,
    labels: Any,
    *,
    log_columns: Sequence[str] | None = None,
    fill_value: float | None = 0.0,
    names: Mapping[int, str] | None = None,
    top_n: int = 3,
    skew_threshold: float = 1.0,
) -> pd.DataFrame:
    """Per-segment profile: size, share, means, lifts, distinguishing features, name.

    Standardized differences are computed where k-means sees the data: after the log of
    heavy-tailed columns, in units of the population's standard deviation. Means and lifts are
    in raw units.

    Args:
        X: the raw features, one row per customer; not modified.
        labels: segment id of each row, in row order.
        log_columns: columns compared on a log scale (default: `is_heavy_tailed` picks).
        fill_value: value that stands for a missing entry (0: missing behaviour is none);
            None leaves missing entries out of the means.
        names: names to use instead of generated ones.
        top_n: distinguishing features listed and used for names and descriptions.
        skew_threshold: used when `log_columns` is None.

    Returns:
        One row per segment id (index ``segment``, ascending) with columns ``name``,
        ``description``, ``size``, ``share``, ``top_features`` (comma-separated) and, per
        feature ``f``: ``mean__f`` (raw mean), ``lift__f`` (mean / population mean; NaN when
        the population mean is 0) and ``z__f`` (standardized difference).
    """
    raw = _numeric_frame(X)
    segments = np.asarray(labels)
    if segments.shape != (len(raw),):
        raise SegmentError(f"{segments.size} labels given for {len(raw)} rows")
    if fill_value is not None:
        raw = raw.fillna(fill_value)
    if log_columns is None:
        log_columns = [c for c in raw.columns if is_heavy_tailed(raw[c].to_numpy(), skew_threshold)]
    logged = raw.copy()
    for column in log_columns:
        logged[column] = signed_log1p(logged[column].to_numpy())
    std = logged.std(ddof=0)
    z = (logged.groupby(segments).mean() - logged.mean()) / std.where(std > 0)
    z = z.fillna(0.0)
    means = raw.groupby(segments).mean()
    population = raw.mean()
    lift = means / population.where(population != 0)
    ranked = {
        s: list(z.loc[s].abs().sort_values(ascending=False, kind="stable").index[:top_n])
        for s in z.index
    }
    chosen = dict(names) if names is not None else name_segments(z, top_n=top_n)
    kinds = _kinds(raw)
    medians, population_medians = raw.groupby(segments).median(), raw.median()
    sizes = pd.Series(segments).value_counts().reindex(z.index)
    rows = []
    for segment in z.index:
        name = chosen.get(int(segment), f"segment {segment}")
        phrases = []
        for f in ranked[segment]:
            stats = {
                "mean": float(means.loc[segment, f]),
                "population": float(population[f]),
                "lift": float(lift.loc[segment, f]),
                "median": float(medians.loc[segment, f]),
                "population_median": float(population_medians[f]),
            }
            phrases.append(_phrase(str(f), stats, kinds[f], f in log_columns))
        rows.append(
            {
                "name": name,
                "description": f"{name}: {', '.join(phrases)}",
                "size": int(sizes[segment]),
                "share": float(sizes[segment]) / len(raw),
                "top_features": ", ".join(str(f) for f in ranked[segment]),
            }
        )
    head = pd.DataFrame(rows, index=z.index)
    table = pd.concat(
        [head, means.add_prefix("mean__"), lift.add_prefix("lift__"), z.add_prefix("z__")], axis=1
    )
    table.index.name = "segment"
    return table


# --------------------------------------------------------------------------------------------
# JSON helpers
# --------------------------------------------------------------------------------------------


def _float(value: Any) -> float | None:
    """A float for JSON; NaN and infinities become None."""
    number = float(value)
    return number if math.isfinite(number) else None


def _floats(values: Any) -> list[float | None]:
    """A list of JSON floats."""
    return [_float(v) for v in np.asarray(values, dtype=np.float64).ravel()]


def _nan_if_none(value: Any) -> float:
    """The inverse of `_float`."""
    return float("nan") if value is None else float(value)


def _array(values: Sequence[Any]) -> np.ndarray:
    """A float array from JSON floats (None as NaN)."""
    return np.asarray([_nan_if_none(v) for v in values], dtype=np.float64)


def _jsonable_param(value: Any) -> Any:
    """A constructor parameter as JSON: tuples become lists, seeds must be ints or None."""
    if isinstance(value, tuple | list):
        return list(value)
    if isinstance(value, np.integer):
        return int(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise SegmentError(f"parameter value {value!r} cannot be saved; use an int random_state")
