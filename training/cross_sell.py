"""Cross-sell training: interactions, time split, evaluation beside popularity, search, MLflow."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import logging
import re
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from features.contract import TRANSACTIONS
from features.engineering import codes_in
from features.tables_io import staged_file
from loyal.errors import DataContractError, LoyalError, NotReadyError, StepSkippedError
from models.ranking_metrics import (
    average_precision_at_k,
    mean_ranking_metrics,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
)
from models.recommender import (
    AlsRecommender,
    PopularityRecommender,
    Recommender,
    top_k_frame,
)

if TYPE_CHECKING:
    from loyal.settings import Settings
    from training.registry import Scorer

log = logging.getLogger(__name__)

REGISTERED_MODEL = "cross_sell"
"""Name of the model in the MLflow registry."""

Value = Literal["count", "amount"]
_REQUIRED = TRANSACTIONS.required_columns
_AMOUNT_FLOOR = 1e-3  # a zero-amount purchase still marks the product as held
_PRODUCT_CODE = r"\d{5}[A-Za-z]*"  # Online Retail: real products are 5 digits + optional letters


# ------------------------------------------------------------------------------ interactions
@dataclass(frozen=True)
class Interactions:
    """A customer x product matrix with the ids of its rows and columns.

    Attributes:
        matrix: CSR, one row per customer, one column per product.
        customer_ids: row ids, sorted.
        product_ids: column ids, sorted.
    """

    matrix: sp.csr_matrix
    customer_ids: list[str]
    product_ids: list[str]


def purchases(transactions: pd.DataFrame) -> pd.DataFrame:
    """The purchase rows (amount >= 0; refunds dropped) with contract types, as a new frame.

    Raises:
        DataContractError: a required transactions column is missing.
    """
    missing = [c for c in _REQUIRED if c not in transactions.columns]
    if missing:
        raise DataContractError(
            "transactions",
            "required column missing",
            column=missing[0],
            detail=f"cross-sell needs {', '.join(_REQUIRED)}",
        )
    keep = (transactions["amount"] >= 0).to_numpy()
    rows = transactions if keep.all() else transactions.loc[keep]
    # the columns themselves, not a copy (a million customers' log is a gigabyte or more)
    frame = pd.DataFrame({column: rows[column] for column in _REQUIRED}, copy=False)
    frame["customer_id"] = _text(frame["customer_id"])
    frame["product_id"] = _text(frame["product_id"])
    frame["ts"] = _as_times(frame["ts"])
    amount = frame["amount"]
    frame["amount"] = amount if amount.dtype == np.float64 else amount.astype(float)
    return frame


def _text(ids: pd.Series) -> pd.Series:
    """Ids as text; categorical ids of text stay categorical (a million customers' log as
    Python strings would take about ten times the memory)."""
    if isinstance(ids.dtype, pd.CategoricalDtype) and ids.cat.categories.dtype == object:
        return ids
    return ids.astype(str)


def _as_times(values: pd.Series) -> pd.Series:
    """Times as datetimes; a datetime column as it is. On a log of repeated days, pandas'
    `to_datetime` maps even datetimes through a cache of the distinct values: 30 s on a
    million customers' 57 M purchases."""
    return values if pd.api.types.is_datetime64_any_dtype(values) else pd.to_datetime(values)


def read_purchase_log(settings: Settings) -> pd.DataFrame:
    """The contract's purchases (amount >= 0: what cross-sell learns from) in time order, the
    columns it reads, ids as categoricals of text.

    Only `customer_id`, `product_id`, `ts` and `amount` are read, refunds are skipped by the
    reader, and the ids come as dictionary codes: about 21 bytes a row (1.2 GB for a million
    customers' 57 M rows), not the whole table with every id a Python string.

    Raises:
        NotReadyError: no validated transactions table.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from features.tables_io import recover_folder

    folder = settings.paths.contract_dir
    recover_folder(folder)
    path = folder / "transactions.parquet"
    if not path.is_file():
        raise NotReadyError(
            f"no validated transactions table in {folder}: run `loyal generate` and "
            "`loyal ingest`, or `loyal ingest PATH` with your data"
        )
    present = set(pq.read_schema(path).names)
    columns = [c for c in _REQUIRED if c in present]
    ids = [c for c in ("customer_id", "product_id") if c in present]
    purchase = [("amount", ">=", 0)] if "amount" in present else None
    table = pq.read_table(path, columns=columns, read_dictionary=ids, filters=purchase)
    if "ts" in present:  # in time order, every time split is a slice of it, not a copy
        table = table.sort_by("ts")
    frame = table.to_pandas(self_destruct=True, split_blocks=True)
    del table
    pa.default_memory_pool().release_unused()  # the sort's buffers, back to the system
    return frame


def build_interactions(
    transactions: pd.DataFrame,
    value: Value = "count",
    half_life_days: float | None = None,
    as_of: pd.Timestamp | None = None,
) -> Interactions:
    """Aggregate purchases into a customer x product matrix.

    Args:
        transactions: contract transactions; refunds (amount < 0) are ignored.
        value: ``"count"`` (number of purchase rows) or ``"amount"`` (summed revenue, with a small
            floor so a zero-amount holding still counts as held).
        half_life_days: optional recency decay: each purchase is weighted by
            0.5 ** (age in days / half_life_days), age measured back from ``as_of``.
        as_of: reference time for the decay; defaults to the latest purchase.

    Returns:
        The matrix with sorted customer and product ids.
    """
    frame = purchases(transactions)
    if frame.empty:
        raise DataContractError("transactions", "no purchase rows (amount >= 0) to learn from")
    weight = np.ones(len(frame)) if value == "count" else frame["amount"].to_numpy()
    if half_life_days is not None:
        reference = frame["ts"].max() if as_of is None else pd.Timestamp(as_of)
        age_days = (reference - frame["ts"]).dt.total_seconds().to_numpy() / 86_400.0
        weight = weight * 0.5 ** (np.clip(age_days, 0.0, None) / half_life_days)
    customers = _sorted_categorical(frame["customer_id"])
    products = _sorted_categorical(frame["product_id"])
    matrix = sp.csr_matrix(
        (weight.astype(np.float64), (customers.codes, products.codes)),
        shape=(len(customers.categories), len(products.categories)),
    )
    matrix.sum_duplicates()
    if value == "amount":
        matrix.data = np.maximum(matrix.data, _AMOUNT_FLOOR)
    return Interactions(
        matrix.astype(np.float32),
        [str(c) for c in customers.categories],
        [str(p) for p in products.categories],
    )


def _sorted_categorical(ids: pd.Series) -> pd.Categorical:
    return pd.Categorical(ids, categories=sorted(ids.unique()))


# -------------------------------------------------------------------------------- time split
@dataclass(frozen=True)
class TimeSplit:
    """Calibration purchases before a cut-off and the new purchases after it.

    Attributes:
        calibration: purchases with ts < cutoff (what the model may learn from).
        targets: per calibration customer, the products first bought by that customer in
            [cutoff, end); products they bought before the cut-off are not targets. Customers
            first seen after the cut-off are left out: both models give them the same
            popularity ranking, so they cannot separate the two.
        cutoff: the cut-off time.
        end: the end of the target window (exclusive).
    """

    calibration: pd.DataFrame
    targets: dict[str, set[str]]
    cutoff: pd.Timestamp
    end: pd.Timestamp


def time_split(transactions: pd.DataFrame, cutoff: Any, window_days: int = 91) -> TimeSplit:
    """Split purchases at ``cutoff``; targets are new products bought within ``window_days`` after.

    Args:
        transactions: contract transactions.
        cutoff: anything `pandas.Timestamp` accepts.
        window_days: length of the target window (91 days = 13 weeks).

    Returns:
        The split.
    """
    frame = purchases(transactions)
    start = pd.Timestamp(cutoff)
    end = start + pd.Timedelta(days=window_days)
    calibration, later = _before(frame, start), _before(frame, end)
    later = later[later["ts"] >= start]
    if calibration.empty:
        raise DataContractError(
            "transactions",
            "no purchase before the cut-off",
            column="ts",
            detail=f"cut-off {start.date()}, first purchase {frame['ts'].min()}",
        )
    return TimeSplit(calibration, _new_products(calibration, later), start, end)


def _before(frame: pd.DataFrame, moment: pd.Timestamp) -> pd.DataFrame:
    """The rows with ts < moment: a slice (no copy) when the frame is in time order."""
    ts = frame["ts"]
    if ts.is_monotonic_increasing:
        return frame.iloc[: int(ts.searchsorted(moment, side="left"))]
    return frame[ts < moment]


def _new_products(calibration: pd.DataFrame, later: pd.DataFrame) -> dict[str, set[str]]:
    """Per calibration customer, the products bought `later` but never in `calibration`.

    Works on (customer, product) pair numbers rather than frames of pairs: on a million
    customers' log the pandas de-duplication took gigabytes.
    """
    customers = _categories(calibration["customer_id"], later["customer_id"])
    products = _categories(calibration["product_id"], later["product_id"])
    width = len(products)

    def pairs(frame: pd.DataFrame) -> np.ndarray:
        who = codes_in(frame["customer_id"], customers)
        what = codes_in(frame["product_id"], products)
        return np.unique(who * width + what)

    held, new = pairs(calibration), pairs(later)
    known = np.isin(new // width, np.unique(held // width), assume_unique=False)
    fresh = new[known & ~np.isin(new, held, assume_unique=True)]
    owners = fresh // width
    heads = np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]]) if len(fresh) else fresh
    groups = np.split(fresh % width, heads[1:]) if len(fresh) else []
    targets = {
        str(customers[owners[head]]): {str(products[code]) for code in group}
        for head, group in zip(heads, groups, strict=True)
    }
    return dict(sorted(targets.items()))  # by id, as a group-by of text ids gives them


def _categories(*columns: pd.Series) -> pd.Index:
    """The ids of `columns` (categorical or text), as one index."""
    values = [
        c.cat.categories if isinstance(c.dtype, pd.CategoricalDtype) else pd.Index(c.unique())
        for c in columns
    ]
    return values[0].append(values[1:]).unique()


# -------------------------------------------------------------------------------- evaluation
def evaluate(
    recommender: Recommender, targets: Mapping[str, set[str]], k: int = 10
) -> dict[str, float]:
    """Precision, recall, NDCG and MAP at k of ``recommender`` against ``targets``.

    Held products are filtered from the recommendations (and are never targets); definitions are
    in `models.ranking_metrics`. Customers without targets are excluded.
    """
    return mean_ranking_metrics(_recommended(recommender, targets, k), targets, k)


def _recommended(
    recommender: Recommender, targets: Mapping[str, set[str]], k: int
) -> dict[str, list[str]]:
    """The top-k products not yet held of every customer with targets."""
    customers = [c for c, items in targets.items() if items]
    top = recommender.recommend_batch(customers, k=k, filter_already_held=True)
    item_ids = recommender.item_ids_
    return {
        c: item_ids[row[row >= 0]].tolist() for c, row in zip(customers, top.items, strict=True)
    }


_PER_CUSTOMER = {
    "precision": precision_at_k,
    "recall": recall_at_k,
    "ndcg": ndcg_at_k,
    "map": average_precision_at_k,
}


def _standard_error(
    recommended: Mapping[str, list[str]], targets: Mapping[str, set[str]], metric: str
) -> float:
    """Standard error of the mean of ``metric`` (e.g. ``ndcg_at_3``) over the customers."""
    name, k = metric.rsplit("_at_", 1)
    values = [
        _PER_CUSTOMER[name](recommended.get(c, []), items, int(k))
        for c, items in targets.items()
        if items
    ]
    return float(np.std(values, ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0


def fit_als(
    interactions: Interactions,
    params: Mapping[str, Any],
    segments: Mapping[str, str] | None = None,
) -> AlsRecommender:
    """An `AlsRecommender` with ``params`` fitted on ``interactions``."""
    return AlsRecommender(**params).fit(
        interactions.matrix,
        interactions.customer_ids,
        interactions.product_ids,
        _segments_for(interactions, segments),
    )


def fit_popularity(
    interactions: Interactions, segments: Mapping[str, str] | None = None
) -> PopularityRecommender:
    """The popularity baseline fitted on ``interactions``."""
    return PopularityRecommender().fit(
        interactions.matrix,
        interactions.customer_ids,
        interactions.product_ids,
        _segments_for(interactions, segments),
    )


def _segments_for(
    interactions: Interactions, segments: Mapping[str, str] | None
) -> list[str] | None:
    if segments is None:
        return None
    return [str(segments.get(c, "unassigned")) for c in interactions.customer_ids]


# ------------------------------------------------------------------------------------ search
@dataclass(frozen=True)
class SearchSpace:
    """Candidate ALS settings; the search samples combinations without replacement.

    Attributes:
        most_factors: the factor count that stands for every larger one (`for_catalog`);
            None: each count is its own.
    """

    factors: tuple[int, ...] = (32, 64, 128)
    regularization: tuple[float, ...] = (1.0, 5.0, 10.0, 20.0, 50.0)
    alpha: tuple[float, ...] = (0.5, 1.0, 3.0)
    iterations: tuple[int, ...] = (10, 15, 25)
    most_factors: int | None = None

    def sample(self, n_trials: int, seed: int) -> list[dict[str, Any]]:
        """Up to ``n_trials`` distinct combinations, drawn with a seeded generator.

        With `most_factors`, larger counts are drawn as before and then read as it, so the
        draw of the other settings does not change; combinations that become the same are
        tried once.
        """
        grid = [
            {"factors": f, "regularization": r, "alpha": a, "iterations": i}
            for f in self.factors
            for r in self.regularization
            for a in self.alpha
            for i in self.iterations
        ]
        rng = np.random.default_rng(seed)
        chosen = rng.choice(len(grid), size=min(n_trials, len(grid)), replace=False)
        trials: list[dict[str, Any]] = []
        for j in sorted(chosen):
            trial = dict(grid[j])
            if self.most_factors is not None:
                trial["factors"] = min(trial["factors"], self.most_factors)
            if trial not in trials:
                trials.append(trial)
        return trials

    def for_catalog(self, products: int) -> SearchSpace:
        """The space with the factor counts beyond ``products`` read as the smallest one
        that reaches it (`most_factors`).

        Scores are a customers x products matrix, of rank at most ``products``; with at least
        that many factors, ALS's penalised loss has the same minimum whatever their number (the
        factor penalty of a rank-r score matrix is its nuclear norm once factors >= r). So the
        larger counts would cost more time (128 factors take three times 32's) for the same
        model.
        """
        enough = sorted(f for f in self.factors if f >= products)
        if len(enough) < 2:
            return self
        log.info(
            "cross-sell: factors above %d searched as %d (more than the %d products cannot "
            "change the model)", enough[0], enough[0], products,
        )  # fmt: skip
        return dataclasses.replace(self, most_factors=enough[0])


@dataclass(frozen=True)
class SearchResult:
    """The chosen ALS settings and every trial's validation metrics.

    Attributes:
        best_params: the AlsRecommender settings of the chosen trial.
        best_metrics: that trial's validation metrics.
        metric: the validation metric maximized.
        trials: one row per trial: settings, validation metrics, the standard error of the
            searched metric over every customer, seconds.
        validation_cutoff: where the validation targets start.
        customers: customers the search learned from and validated on (a sample when capped).
    """

    best_params: dict[str, Any]
    best_metrics: dict[str, float]
    metric: str
    trials: pd.DataFrame
    validation_cutoff: pd.Timestamp
    customers: int = 0


def search_hyperparameters(
    calibration: pd.DataFrame,
    cutoff: Any,
    validation_days: int = 91,
    k: int = 10,
    space: SearchSpace | None = None,
    n_trials: int = 12,
    seed: int = 42,
    base_params: Mapping[str, Any] | None = None,
    value: Value = "count",
    half_life_days: float | None = None,
    metric: str | None = None,
    max_customers: int | None = None,
    standard_errors: float = 0.0,
) -> SearchResult:
    """Pick ALS settings on a validation split carved from the calibration period only.

    The last ``validation_days`` before ``cutoff`` become validation targets; models learn from
    the purchases before them. The test targets (after ``cutoff``) are never seen here.

    Args:
        calibration: purchases before ``cutoff``.
        cutoff: the test cut-off; the validation cut-off is ``validation_days`` earlier.
        validation_days: length of the validation target window.
        k: the ranking cut-off.
        space: candidate settings (defaults to `SearchSpace()`).
        n_trials: how many combinations to try.
        seed: seeds the sampling of combinations and of customers (ALS uses ``random_state``).
        base_params: fixed AlsRecommender settings the trials override (weighting, seed, ...).
        value: interaction value, as in `build_interactions`.
        half_life_days: recency decay, as in `build_interactions`.
        metric: the validation metric maximized; defaults to ``ndcg_at_{k}``.
        max_customers: the trials learn from and are validated on a seeded sample of this many
            customers (None: all). A trial's cost grows with the customers; the settings it
            ranks do not depend on their number, but for the penalty, which is scaled to every
            customer (`_penalty_for_everyone`).
        standard_errors: choose the cheapest trial (fewest factors x iterations) whose metric
            is within this many standard errors (over validation customers) of the best one's;
            0 keeps the best. On a sample, the standard error is the one the metric would have
            over every customer (the sample's times sqrt(sampled / all)): a sample estimates
            the metric less precisely, but the rule must not pick cheaper settings for it.

    Returns:
        The chosen settings (ties go to the earlier trial) and the trial table.
    """
    metric = metric or f"ndcg_at_{k}"
    validation_cutoff = pd.Timestamp(cutoff) - pd.Timedelta(days=validation_days)
    calibration, sampled_share = _customer_sample(calibration, max_customers, seed)
    split = time_split(calibration, validation_cutoff, validation_days)
    interactions = build_interactions(split.calibration, value, half_life_days, split.cutoff)
    candidates = (space or SearchSpace()).sample(n_trials, seed)
    rows = []
    for trial, params in enumerate(candidates):
        started = time.perf_counter()
        model = fit_als(interactions, {**(base_params or {}), **params})
        recommended = _recommended(model, split.targets, k)
        scores = mean_ranking_metrics(recommended, split.targets, k)
        error = _standard_error(recommended, split.targets, metric) * sampled_share**0.5
        rows.append(
            {
                "trial": trial,
                **params,
                **scores,
                "standard_error": error,
                "seconds": time.perf_counter() - started,
            }
        )
        log.info("trial %d %s: %s %.4f", trial, params, metric, scores[metric])
    trials = pd.DataFrame(rows)
    chosen = _cheapest_near_best(trials, metric, standard_errors)
    best = rows[chosen]
    best_params = {**(base_params or {}), **{name: best[name] for name in candidates[0]}}
    if sampled_share < 1.0 and "regularization" in best_params:
        best_params["regularization"] = _penalty_for_everyone(
            best_params["regularization"], sampled_share
        )
    best_metrics = {name: float(best[name]) for name in scores if name != "n_customers"}
    return SearchResult(
        best_params,
        best_metrics,
        metric,
        trials,
        validation_cutoff,
        len(interactions.customer_ids),
    )


def _penalty_for_everyone(sampled: float, sampled_share: float) -> float:
    """The ALS penalty for every customer, from the one chosen on a share of them.

    ALS uses one penalty for both sides while each product's data grows with the customers, so
    a penalty right for a sample is too weak for all of them. On the generated bank (32
    factors, alpha 0.5, 25 iterations; test NDCG@3), a penalty of 5 gave 0.5579 on 20,000
    customers and 0.5515 on 100,000, but 0.4998 on a million, below popularity's 0.5082;
    there 20 gave 0.5476, 50 gave 0.5512 and 150 gave 0.5518. Below a floor that grows with the
    customers the model collapses, above it the metric is flat, so the penalty is scaled with
    the customers (linearly, as each product's data grows), not by less.
    """
    scaled = float(sampled) / sampled_share
    log.info(
        "cross-sell search: regularization %.4g chosen on %.1f%% of the customers, %.4g for all",
        sampled,
        100 * sampled_share,
        scaled,
    )
    return scaled


def _customer_sample(
    purchases: pd.DataFrame, max_customers: int | None, seed: int
) -> tuple[pd.DataFrame, float]:
    """The purchases of a seeded sample of ``max_customers`` customers (all when fewer), and
    the share of the customers sampled.

    The ids are factorized once (on a categorical column, from its codes) rather than each row
    turned into text: a million customers' log holds about 57 M rows.
    """
    codes, uniques = pd.factorize(purchases["customer_id"])
    names = np.asarray(pd.Index(uniques).astype(str), dtype=object)
    if max_customers is None or len(names) <= max_customers:
        return purchases, 1.0
    by_name = np.argsort(names, kind="stable")
    chosen = np.random.default_rng(seed).choice(len(names), size=max_customers, replace=False)
    kept = np.zeros(len(names), dtype=bool)
    kept[by_name[chosen]] = True
    log.info("cross-sell search: %d of %d customers sampled", max_customers, len(names))
    return purchases[(codes >= 0) & kept[codes]], max_customers / len(names)


def _cheapest_near_best(trials: pd.DataFrame, metric: str, standard_errors: float) -> int:
    """Row of the trial with the fewest factors x iterations among those whose metric is within
    ``standard_errors`` standard errors of the best (ties: higher metric, then earlier)."""
    scores = trials[metric].to_numpy()
    best = int(scores.argmax())
    band = standard_errors * float(trials["standard_error"].iloc[best])
    near = np.flatnonzero(scores >= scores[best] - band)
    cost = (trials["factors"] * trials["iterations"]).to_numpy()
    return int(min(near, key=lambda i: (cost[i], -scores[i], i)))


# -------------------------------------------------------------------------- the whole flow
@dataclass(frozen=True)
class CrossSellConfig:
    """How cross-sell is trained and evaluated.

    Attributes:
        cutoff: test cut-off; defaults to ``window_days`` before the last purchase.
        window_days: target window after the cut-off (and the validation window before it).
        k: ranking cut-off of every metric and of the batch top-k.
        value: interaction value, ``"count"`` or ``"amount"``.
        half_life_days: optional recency decay of purchases.
        search: run the hyper-parameter search (else use ``als``).
        n_trials: search trials.
        seed: search seed.
        space: the candidate settings the search samples from.
        als: AlsRecommender settings used as-is (no search) or as the base the search overrides.
        extra_k: more ranking cut-offs reported beside ``k`` (e.g. 10 on a small catalog where
            ``k`` is 3); the search and promotion still use ``k``.
        window_note: how ``window_days`` was chosen (sized from the history), logged.
        search_max_customers: customers the search's trials learn from (None: all).
        search_standard_errors: the search keeps the cheapest trial within this many standard
            errors of the best (0: the best).
    """

    cutoff: str | None = None
    window_days: int = 91
    k: int = 10
    value: Value = "count"
    half_life_days: float | None = None
    search: bool = True
    n_trials: int = 12
    seed: int = 42
    space: SearchSpace = field(default_factory=SearchSpace)
    als: dict[str, Any] = field(default_factory=lambda: {"weighting": "log1p"})
    extra_k: tuple[int, ...] = ()
    window_note: str = "configured"
    search_max_customers: int | None = None
    search_standard_errors: float = 0.0


@dataclass(frozen=True)
class CrossSellEvaluation:
    """ALS beside popularity on one time split.

    Attributes:
        als: ALS fitted on the calibration period with ``params``.
        popularity: the baseline fitted on the same period.
        metrics: ALS metrics and the same prefixed ``popularity_``.
        params: every AlsRecommender setting used (chosen and default).
        search: the search result, when a search ran.
        cutoff: the test cut-off used.
        seconds: wall time of the whole evaluation.
        targets: the test targets (customer -> products first bought in the window).
    """

    als: AlsRecommender
    popularity: PopularityRecommender
    metrics: dict[str, float]
    params: dict[str, Any]
    search: SearchResult | None
    cutoff: pd.Timestamp
    seconds: float
    targets: Mapping[str, set[str]] = field(default_factory=dict)


def evaluate_cross_sell(
    transactions: pd.DataFrame,
    config: CrossSellConfig | None = None,
    segments: Mapping[str, str] | None = None,
) -> CrossSellEvaluation:
    """Time split, optional search on the calibration period, then ALS vs popularity on the test.

    Args:
        transactions: contract transactions.
        config: protocol and model settings (defaults to `CrossSellConfig()`).
        segments: optional customer -> segment map for the cold-start fallback.

    Returns:
        Both fitted models and their test metrics.
    """
    config = config or CrossSellConfig()
    started = time.perf_counter()
    cutoff = _cutoff(transactions, config)
    split = time_split(transactions, cutoff, config.window_days)
    search = None
    params = dict(config.als)
    if config.search:
        search = search_hyperparameters(
            split.calibration,
            cutoff,
            validation_days=config.window_days,
            k=config.k,
            space=config.space,
            n_trials=config.n_trials,
            seed=config.seed,
            base_params=config.als,
            value=config.value,
            half_life_days=config.half_life_days,
            max_customers=config.search_max_customers,
            standard_errors=config.search_standard_errors,
        )
        params = search.best_params
    interactions = build_interactions(
        split.calibration, config.value, config.half_life_days, split.cutoff
    )
    _warn_if_k_covers_the_catalog(config.k, len(interactions.product_ids))
    als = fit_als(interactions, params, segments)
    popularity = fit_popularity(interactions, segments)
    metrics: dict[str, float] = {}
    for k in (config.k, *[k for k in config.extra_k if k != config.k]):
        at_k = evaluate(als, split.targets, k)
        baseline = evaluate(popularity, split.targets, k)
        metrics.update(at_k)
        metrics.update({f"popularity_{name}": v for name, v in baseline.items()})
    seconds = time.perf_counter() - started
    return CrossSellEvaluation(
        als, popularity, metrics, als.get_params(), search, cutoff, seconds, split.targets
    )


def _warn_if_k_covers_the_catalog(k: int, n_products: int) -> None:
    if k >= n_products - 1:
        log.warning(
            "k=%d but only %d products: nearly every product not yet held is recommended, so "
            "precision@k and recall@k cannot tell models apart; use a smaller k (e.g. 3)",
            k,
            n_products,
        )


def _cutoff(transactions: pd.DataFrame, config: CrossSellConfig) -> pd.Timestamp:
    if config.cutoff is not None:
        return pd.Timestamp(config.cutoff)
    last = _as_times(transactions["ts"]).max()
    return (last - pd.Timedelta(days=config.window_days)).normalize()


@dataclass(frozen=True)
class CrossSellResult:
    """What `train_cross_sell` produced.

    Attributes:
        model: the ALS refitted on every purchase with the chosen settings (what is registered).
        evaluation: the holdout evaluation behind the logged metrics.
        run_id: the MLflow run.
        model_version: the registered ``cross_sell`` version (None when not registered).
        recommendations: batch top-k of every customer (`train_cross_sell_bank` only).
        seconds: wall time of the whole training (evaluation, refit, logging).
    """

    model: AlsRecommender
    evaluation: CrossSellEvaluation
    run_id: str
    model_version: str | None
    recommendations: pd.DataFrame | None = None
    seconds: float = 0.0


def train_cross_sell(
    settings: Settings,
    transactions: pd.DataFrame,
    config: CrossSellConfig | None = None,
    segments: Mapping[str, str] | None = None,
    register: bool = True,
) -> CrossSellResult:
    """Evaluate, refit on all purchases, log to MLflow and register as ``cross_sell``.

    Args:
        settings: where MLflow lives (``settings.mlflow``).
        transactions: contract transactions.
        config: protocol and model settings.
        segments: optional customer -> segment map for the cold-start fallback.
        register: register the logged model as ``cross_sell``.

    Returns:
        The refitted model, the evaluation, the run id and the registered version.
    """
    started = time.perf_counter()
    config = config or CrossSellConfig()
    evaluation = evaluate_cross_sell(transactions, config, segments)
    everything = build_interactions(transactions, config.value, config.half_life_days)
    model = fit_als(everything, evaluation.params, segments)
    run_id, version = log_cross_sell_run(
        settings, model, evaluation, config, transactions, register
    )
    seconds = time.perf_counter() - started
    return CrossSellResult(model, evaluation, run_id, version, seconds=seconds)


# ----------------------------------------------------------------------------- batch scoring
def batch_recommendations(recommender: Recommender, k: int = 10) -> pd.DataFrame:
    """Top-k not-yet-held products for every known customer, for the feature store.

    Returns:
        A new frame with ``customer_id``, ``rank`` (1 = best), ``product_id`` and ``score``;
        customers holding every product get no row. For one customer at request time use
        ``recommender.recommend(customer_id, k)`` instead.
    """
    top = recommender.recommend_all(k=k)
    frame = top_k_frame(top, recommender.user_ids_.tolist(), recommender.item_ids_)
    return frame.drop(columns="cold_start")


# --------------------------------------------------------------------- promotion holdout
HOLDOUT_CALIBRATION = "calibration"
HOLDOUT_TARGET = "target"
_METRIC_NAME = re.compile(r"(precision|recall|ndcg|map)_at_(\d+)")


def holdout_frame(evaluation: CrossSellEvaluation) -> pd.DataFrame:
    """The test split as one long frame, logged with the run for promotion to re-score on.

    Rows with ``role`` "calibration" are the entries of the customer x product matrix the
    evaluated models learned from (``value`` as built: count or amount, decayed if asked);
    rows with ``role`` "target" are the products each customer first bought in the target
    window (``value`` NaN).
    """
    matrix = evaluation.als.user_items_.tocoo()
    users, items = evaluation.als.user_ids_, evaluation.als.item_ids_
    calibration = pd.DataFrame(
        {
            "customer_id": users[matrix.row].astype(object),
            "product_id": items[matrix.col].astype(object),
            "value": matrix.data.astype(np.float64),
            "role": HOLDOUT_CALIBRATION,
        }
    )
    pairs = [(c, p) for c, products in evaluation.targets.items() for p in sorted(products)]
    targets = pd.DataFrame(pairs, columns=["customer_id", "product_id"], dtype=object)
    targets["value"] = np.nan
    targets["role"] = HOLDOUT_TARGET
    return pd.concat([calibration, targets], ignore_index=True)


def holdout_split(frame: pd.DataFrame) -> tuple[Interactions, dict[str, set[str]]]:
    """The calibration matrix and the targets back from a `holdout_frame`.

    Raises:
        DataContractError: the frame lacks a column or holds no calibration rows.
    """
    for column in ("customer_id", "product_id", "value", "role"):
        if column not in frame.columns:
            raise DataContractError("cross_sell holdout", "column missing", column=column)
    calibration = frame[frame["role"] == HOLDOUT_CALIBRATION]
    if calibration.empty:
        raise DataContractError("cross_sell holdout", "no calibration rows to refit on")
    customers = _sorted_categorical(calibration["customer_id"].astype(str))
    products = _sorted_categorical(calibration["product_id"].astype(str))
    matrix = sp.csr_matrix(
        (calibration["value"].to_numpy(np.float32), (customers.codes, products.codes)),
        shape=(len(customers.categories), len(products.categories)),
    )
    target_rows = frame[frame["role"] == HOLDOUT_TARGET]
    targets: dict[str, set[str]] = {}
    for customer, product in zip(
        target_rows["customer_id"].astype(str), target_rows["product_id"].astype(str), strict=True
    ):
        targets.setdefault(customer, set()).add(product)
    interactions = Interactions(
        matrix, [str(c) for c in customers.categories], [str(p) for p in products.categories]
    )
    return interactions, targets


def log_holdout(evaluation: CrossSellEvaluation, config: CrossSellConfig) -> None:
    """Log the test split in the active run (`training.tracking.log_holdout`)."""
    from training import tracking

    tracking.log_holdout(
        holdout_frame(evaluation),
        label="role",
        prediction="product_id",
        extra={
            "kind": "ranking",
            "k": config.k,
            "metric": f"ndcg_at_{config.k}",
            "cutoff": str(evaluation.cutoff.date()),
            "window_days": config.window_days,
            "value": config.value,
            "half_life_days": config.half_life_days,
        },
    )


def parse_metric(metric: str) -> int:
    """The cut-off k of a ranking metric name such as ``ndcg_at_3``.

    Raises:
        LoyalError: the name is not ``precision|recall|ndcg|map`` + ``_at_`` + k.
    """
    match = _METRIC_NAME.fullmatch(metric)
    if match is None or int(match.group(2)) < 1:
        raise LoyalError(
            f"unknown cross-sell metric '{metric}'; use precision, recall, ndcg or map "
            "followed by _at_K, e.g. ndcg_at_3"
        )
    return int(match.group(2))


def load_recommender(model_uri: str) -> Recommender:
    """The `Recommender` inside a logged ``cross_sell`` pyfunc."""
    import mlflow.pyfunc

    wrapper = mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
    return wrapper.recommender_


def refit_on(recommender: Recommender, interactions: Interactions) -> Recommender:
    """A new recommender of the same class and settings fitted on ``interactions``.

    The same recipe on the same matrix gives the same factors, on any number of threads (ALS
    solves each customer's and each product's system on its own), so the same score.
    """
    params = recommender.get_params()
    return type(recommender)(**params).fit(
        interactions.matrix, interactions.customer_ids, interactions.product_ids
    )


def ranking_scorer(metric: str = "ndcg_at_3") -> Scorer:
    """A `training.registry` scorer: refit a version's recipe on the holdout's split, rank, score.

    A registered ``cross_sell`` model is refitted on every purchase up to its training day, the
    test window included, so its factors cannot be scored on that window as they are. Promotion
    therefore compares recipes on one split: each version's class and settings (read from its
    artifact) are fitted on the challenger's logged calibration matrix and scored on the
    challenger's targets, champion and challenger alike.

    Args:
        metric: a ranking metric at k, e.g. ``ndcg_at_3`` (the bank) or ``ndcg_at_10``.
    """
    k = parse_metric(metric)
    scored: dict[tuple[int, str], float] = {}
    holdouts: list[pd.DataFrame] = []  # keeps each id() in `scored` from being reused

    def score(model_uri: str, holdout: pd.DataFrame, meta: Mapping[str, Any]) -> float:
        recommender = load_recommender(model_uri)
        # one seed, factors independent of the thread count: a champion with the
        # challenger's recipe scores the same on the same holdout, so it is refitted once
        recipe = (id(holdout), _recipe(recommender))
        if recipe not in scored:
            interactions, targets = holdout_split(holdout)
            if not any(targets.values()):
                raise NotReadyError("the cross_sell holdout has no targets to score on")
            refitted = refit_on(recommender, interactions)
            scored[recipe] = float(evaluate(refitted, targets, k)[metric])
            holdouts.append(holdout)
        return scored[recipe]

    return score


def _recipe(recommender: Recommender) -> str:
    """A recommender's class and the settings its factors depend on (not the thread count),
    as one comparable string."""
    settings = {k: v for k, v in recommender.get_params().items() if k != "num_threads"}
    params = json.dumps(settings, sort_keys=True, default=str)
    return f"{type(recommender).__name__}{params}"


# --------------------------------------------------------------------------- sample bank
BANK_K = 3
"""Ranking cut-off on a 10-product catalog: at 10 every product not yet held is recommended,
so precision and recall at 10 are the same for every model (reported beside it anyway)."""
RECOMMENDATIONS_FILE = "recommendations.parquet"


def bank_config(n_trials: int = 12, seed: int = 42) -> CrossSellConfig:
    """The sample bank's protocol: targets in the last 13 weeks, k=3 (10 reported too).

    Interaction values are purchase counts (log1p confidence); ALS uses every core (0
    threads: implicit's "all"), which does not change its factors.
    """
    return CrossSellConfig(
        cutoff=None,
        window_days=91,
        k=BANK_K,
        value="count",
        search=n_trials > 0,
        n_trials=max(n_trials, 1),
        seed=seed,
        als={"weighting": "log1p", "num_threads": 0},
        extra_k=(10,),
    )


def applicable_config(transactions: pd.DataFrame, config: CrossSellConfig) -> CrossSellConfig:
    """The config with a target window the history supports (`features.history`) and a
    search space sized to the catalog (`SearchSpace.for_catalog`).

    Raises:
        StepSkippedError: fewer than two products are bought (nothing to cross-sell), or the
            history is too short for the shortest target window.
    """
    from features.history import cross_sell_window, history_days

    bought = transactions.loc[transactions["amount"] >= 0, "product_id"]
    products = _text(bought).nunique()
    if products < 2:
        only = f" ('{bought.iloc[0]}')" if products == 1 else ""
        raise StepSkippedError(
            f"cross-sell: the transactions hold {products} product{only}; recommending "
            "products a customer does not hold needs at least two"
        )
    config = dataclasses.replace(config, space=config.space.for_catalog(products))
    if config.cutoff is not None:
        return config
    stamps = _as_times(transactions["ts"])
    days = history_days(stamps.min(), stamps.max() + pd.Timedelta(days=1))
    choice = cross_sell_window(days, config.window_days)
    if choice.chosen is None:
        raise StepSkippedError(f"cross-sell: {choice.reason}")
    log.info("cross-sell: %s", choice.reason)
    return dataclasses.replace(config, window_days=choice.chosen, window_note=choice.reason)


def open_customers(customers: pd.DataFrame) -> list[str] | None:
    """Ids of customers who have not closed (None when the table records no closures)."""
    if "closed_at" not in customers.columns:
        return None
    return customers.loc[customers["closed_at"].isna(), "customer_id"].astype(str).tolist()


def train_cross_sell_bank(
    settings: Settings,
    config: CrossSellConfig | None = None,
    register: bool = True,
    top_k: int | None = None,
) -> CrossSellResult:
    """Train, log and register ``cross_sell`` on the loaded contract data.

    Reads the validated transactions, evaluates ALS beside popularity on a time split (new
    products bought in the last 13 weeks are the targets), picks ALS settings by a seeded
    search on the 13 weeks before, refits on every purchase, logs the run with its holdout and
    registers it; then ranks the top-k products of every open customer. Behind
    `loyal train cross-sell`.

    Args:
        settings: where the contract tables and MLflow live.
        config: the protocol (default `bank_config()`).
        register: register the logged model as ``cross_sell``.
        top_k: products per customer in the batch (default: the config's k).

    Returns:
        The training result with ``recommendations`` (customer_id, rank, product_id, score).
    """
    from features.tables_io import read_contract

    started = time.perf_counter()
    transactions = read_purchase_log(settings)
    config = applicable_config(transactions, config or bank_config())
    result = train_cross_sell(settings, transactions, config, register=register)
    del transactions
    recommendations = batch_recommendations(result.model, top_k or config.k)
    keep = open_customers(read_contract(settings, only=["customers"])["customers"])
    if keep is not None:
        recommendations = recommendations[recommendations["customer_id"].isin(keep)]
    recommendations = recommendations.reset_index(drop=True)
    seconds = time.perf_counter() - started
    log.info(
        "cross_sell: %s, top-%d for %d customers in %.1f s",
        {k: round(v, 4) for k, v in result.evaluation.metrics.items()},
        top_k or config.k,
        recommendations["customer_id"].nunique(),
        seconds,
    )
    return dataclasses.replace(result, recommendations=recommendations, seconds=seconds)


def train_bank(
    settings: Settings, trials: int | None = None, register: bool = True
) -> CrossSellResult:
    """Train, log and register `cross_sell` (the spec's train) with the `cross_sell` section.

    Args:
        settings: the loaded data, MLflow and the `cross_sell` section of `loyal.yaml`.
        trials: ALS settings searched (None: the section's `search_trials`).
        register: register the model version.

    The batch recommendations ride on the result; `publish_recommendations` writes them.
    """
    config = settings.cross_sell
    n_trials = config.search_trials if trials is None else trials
    protocol = dataclasses.replace(
        bank_config(n_trials, config.seed),
        search_max_customers=config.search_max_customers,
        search_standard_errors=config.search_standard_errors,
    )
    return train_cross_sell_bank(settings, protocol, register=register)


def publish_recommendations(settings: Settings, result: CrossSellResult) -> None:
    """Write a training result's batch recommendations (when it has any)."""
    if result.recommendations is not None:
        write_recommendations(settings, result.recommendations)


def write_recommendations(settings: Settings, frame: pd.DataFrame) -> Path:
    """Write batch recommendations to ``<data_dir>/scores/recommendations.parquet`` atomically.

    The file is written beside its target and renamed over it, so a reader sees the old file
    or the new one, never half of one; other files in the folder are left alone.

    Raises:
        DataContractError: a column of customer_id, rank, product_id, score is missing.
        LoyalError: the file could not be written.
    """
    columns = ["customer_id", "rank", "product_id", "score"]
    for column in columns:
        if column not in frame.columns:
            raise DataContractError("recommendations", "column missing", column=column)
    target = settings.paths.data_dir / "scores" / RECOMMENDATIONS_FILE
    try:
        with staged_file(target) as staging:
            frame[columns].to_parquet(staging, index=False)
    except OSError as exc:
        raise LoyalError(f"could not write recommendations to {target}: {exc}") from exc
    log.info("wrote %d recommendations to %s", len(frame), target)
    return target


# ------------------------------------------------------------------------------ data readers
def read_online_retail(path: str | Path) -> pd.DataFrame:
    """UCI Online Retail as contract transactions (customer_id, ts, product_id, amount).

    Rows without a customer and non-product codes (postage, fees, manual lines, vouchers) are
    dropped; amount = Quantity x UnitPrice, negative for cancellations and returns.
    """
    raw = pd.read_csv(
        path,
        dtype={"InvoiceNo": str, "StockCode": str},
        usecols=["StockCode", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID"],
    )
    raw = raw.dropna(subset=["CustomerID"])
    raw = raw[raw["StockCode"].str.fullmatch(_PRODUCT_CODE)]
    return pd.DataFrame(
        {
            "customer_id": raw["CustomerID"].astype(int).astype(str),
            "ts": pd.to_datetime(raw["InvoiceDate"]),
            "product_id": raw["StockCode"].str.upper(),
            "amount": raw["Quantity"] * raw["UnitPrice"],
        }
    ).reset_index(drop=True)


# ------------------------------------------------------------------------------------ MLflow
# Plain mlflow calls in small functions, so they can move onto training.tracking / registry.


def log_cross_sell_run(
    settings: Settings,
    model: Recommender,
    evaluation: CrossSellEvaluation,
    config: CrossSellConfig,
    transactions: pd.DataFrame,
    register: bool = True,
) -> tuple[str, str | None]:
    """Log params, metrics, the search trials and the model in one MLflow run.

    Returns:
        The run id and the registered model version (None when ``register`` is False).
    """
    import mlflow

    experiment_id = _mlflow_experiment(settings)
    with mlflow.start_run(experiment_id=experiment_id, run_name=REGISTERED_MODEL) as run:
        mlflow.set_tags(_run_tags(transactions))
        mlflow.log_params(_run_params(evaluation, config))
        mlflow.log_metrics(_run_metrics(evaluation))
        if evaluation.search is not None:
            mlflow.log_text(evaluation.search.trials.to_csv(index=False), "search_trials.csv")
        log_holdout(evaluation, config)
        version = _log_model(model, REGISTERED_MODEL if register else None)
    return run.info.run_id, version


def _mlflow_experiment(settings: Settings) -> str:
    """Point mlflow at the configured store and return the experiment id (created if needed)."""
    from training.tracking import configure

    return configure(settings)


def _run_params(evaluation: CrossSellEvaluation, config: CrossSellConfig) -> dict[str, Any]:
    protocol = {k: v for k, v in asdict(config).items() if k not in ("als", "space")}
    if config.search:
        protocol["search_space"] = json.dumps(asdict(config.space))
    protocol["cutoff"] = str(evaluation.cutoff.date())
    if evaluation.search is not None:
        protocol["validation_cutoff"] = str(evaluation.search.validation_cutoff.date())
        protocol["search_customers"] = evaluation.search.customers
    return {**protocol, **{f"als_{k}": v for k, v in evaluation.params.items()}}


def _run_metrics(evaluation: CrossSellEvaluation) -> dict[str, float]:
    metrics = {k: v for k, v in evaluation.metrics.items() if not k.endswith("n_customers")}
    metrics["eval_customers"] = evaluation.metrics["n_customers"]
    metrics["evaluation_seconds"] = evaluation.seconds
    if evaluation.search is not None:
        metrics.update({f"validation_{k}": v for k, v in evaluation.search.best_metrics.items()})
    return metrics


def _run_tags(transactions: pd.DataFrame) -> dict[str, str]:
    from training.tracking import TAG_GIT_COMMIT, git_commit

    return {
        "model": REGISTERED_MODEL,
        "data_snapshot_id": data_snapshot_id(transactions),
        TAG_GIT_COMMIT: git_commit(),
    }


def data_snapshot_id(transactions: pd.DataFrame) -> str:
    """A short content hash of the transactions the model learned from."""
    frame = transactions[_REQUIRED]
    digest = hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


def _log_model(model: Recommender, registered_name: str | None) -> str | None:
    """Log ``model`` as a models-from-code pyfunc with npz + json artifacts; maybe register it."""
    from training import tracking

    with tempfile.TemporaryDirectory() as tmp:
        folder = model.save(Path(tmp) / "recommender")
        info = tracking.log_pyfunc(
            "models.pyfuncs.cross_sell",
            {"recommender": folder},
            _signature(),
            pd.DataFrame({"customer_id": [str(model.user_ids_[0])]}),
            _requirements(),
            registered_model_name=registered_name,
        )
    version = info.registered_model_version
    return None if version is None else str(version)


def _signature() -> Any:
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    return ModelSignature(
        inputs=Schema(
            [ColSpec("string", "customer_id"), ColSpec("string", "segment", required=False)]
        ),
        outputs=Schema(
            [
                ColSpec("string", "customer_id"),
                ColSpec("long", "rank"),
                ColSpec("string", "product_id"),
                ColSpec("double", "score"),
                ColSpec("boolean", "cold_start"),
            ]
        ),
        params=ParamSchema(
            [ParamSpec("k", "long", 10), ParamSpec("filter_already_held", "boolean", True)]
        ),
    )


def _requirements() -> list[str]:
    names = ("mlflow", "implicit", "numpy", "scipy", "pandas", "threadpoolctl", "pydantic")
    return [f"{n}=={importlib.metadata.version(n)}" for n in names]
