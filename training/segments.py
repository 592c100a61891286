"""Need-segment training: behaviour at the latest snapshot, k-means, tiers, MLflow and promotion.

What `train_segments` does, in order:

1. **Behaviour frame** (`behaviour_frame`): the `segments_v1` feature service at the latest
   snapshot through Feast (profile, RFM, holdings, engagement, balances) plus the channel mix
   derived here from the contract transactions (share of the last `channel_window_days`
   days' transactions on each channel; point in time: only `ts < snapshot`).
2. **Model columns** (`model_columns`): what the customer holds (`holds_*`), which channels
   they use (`channel_*_share`) and who they are (`age`). On the sample bank this recovers the
   planted need segments (adjusted Rand index ~0.86 at 20,000 customers) and the silhouette
   peaks clearly at k = 5; engagement counts and money columns (balances, spend) add noise
   that blurs the segments (0.50-0.76 with engagement instead of the channel mix), so they
   describe the segments in the profiles but do not define them. `SegmentSettings.columns`
   overrides the choice.
3. **Fit** (`models.segments.NeedSegmenter`): k from `k_min..k_max` by the stated criterion,
   the highest silhouette among the k whose bootstrap stability (mean ARI) is at least
   `min_stability`; ten k-means restarts per fit, since with four the k = 5 fit sometimes
   landed in a poorer local optimum and lost the comparison. Segment ids are matched to the
   current champion's centroids, so "segment 3" keeps its meaning across retrains.
4. **Evaluation**: silhouette and stability per k, sizes, profiles (heat maps), the adjusted
   Rand index against the generator's `true_segment` when ground truth exists (evaluation
   only), and value tiers (CLV of the `clv` model, trailing 12-month margin where CLV is
   unknown) with the value share of each tier.
5. **Log and register** `segments` (JSON state, models-from-code pyfunc, no pickle) with an
   evaluation sample for promotion: `promote_segments` compares challenger and champion by the
   silhouette of their labels on that one sample, in one space fitted on the sample itself.
"""

from __future__ import annotations

import logging
import re
import tempfile
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from features.catalog import ENTITY_KEY, PROFILE, TIMESTAMP_FIELD, products_read_as_words
from features.contract import has_values
from features.log_aggregates import TransactionLog, transaction_log
from loyal import settings as settings_module
from loyal.errors import DataContractError, NotReadyError
from loyal.settings import Settings, section
from loyal.specs import promotion_for
from models.segments import NeedSegmenter, profile

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from training.registry import Scorer

log = logging.getLogger(__name__)

MODEL_NAME = "segments"
SERVICE = "segments_v1"
PYFUNC_ARTIFACT = "segments_model"
HOLDING_PREFIX = "holds_"
CHANNEL_PREFIX = "channel_"
CATEGORY_PREFIX = "category_"
CHANNEL_SUFFIX = "_share"
BEHAVIOUR_COLUMNS = (
    "recency_days", "frequency_365d", "monetary_365d", "avg_basket_365d",
    "distinct_categories_365d", "spend_trend", "tenure_days",
)  # fmt: skip
"""RFM and basket columns segments fall back on when nothing else describes needs."""

TRUTH_FILE = Path("sample_bank") / "customers_truth.parquet"
TRUTH_COLUMN = "true_segment"
DESCRIBE_COLUMNS = (
    "age", "tenure_days", "n_products_held", "monetary_365d", "margin_365d", "frequency_365d",
    "logins_90d", "calls_90d", "complaints_90d", "branch_visits_90d", "atm_visits_90d",
    "email_opens_90d", "digital_share", "total_deposits", "idle_cash", "balance_checking",
    "balance_savings", "balance_high_yield_savings", "balance_investment_fund",
    "balance_mortgage", "balance_personal_loan", "clv",
)  # fmt: skip
"""Columns the behaviour profile describes segments with (those present), beyond the model's."""
REQUIREMENTS = ("mlflow", "scikit-learn", "scipy", "numpy", "pandas", "pyarrow")


class SegmentSettings(settings_module.SegmentSettings):
    """Segment settings with the helpers training needs (fields live in `loyal.settings`)."""

    def segmenter(self, **overrides: Any) -> NeedSegmenter:
        """An unfitted segmenter with these settings (overrides win)."""
        params: dict[str, Any] = {
            "k_range": (self.k_min, self.k_max),
            "n_init": self.n_init,
            "stability_runs": self.stability_runs,
            "min_stability": self.min_stability,
            "sample_size": self.sample_size,
            "selection_size": self.selection_size,
            "random_state": self.random_state,
        }
        return NeedSegmenter(**{**params, **overrides})


DEFAULTS = SegmentSettings()
"""The segments section's defaults, for callers without settings."""


def segment_settings(settings: Settings) -> SegmentSettings:
    """`settings.segments` once the settings carry it (any model with the fields), else defaults."""
    return section(settings, "segments", SegmentSettings)


# -------------------------------------------------------------------------- behaviour
def population(settings: Settings) -> pd.DataFrame:
    """`customer_id` and `event_timestamp` of every customer in the latest snapshot.

    Raises:
        NotReadyError: no feature tables yet.
    """
    path = settings.paths.features_dir / f"{PROFILE.name}.parquet"
    if not path.is_file():
        raise NotReadyError("no feature tables found: run `loyal features build` first")
    keys = pd.read_parquet(path, columns=[ENTITY_KEY, TIMESTAMP_FIELD])
    latest = keys[keys[TIMESTAMP_FIELD] == keys[TIMESTAMP_FIELD].max()]
    return latest.sort_values(ENTITY_KEY, kind="stable").reset_index(drop=True)


def channel_mix(transactions: pd.DataFrame, snapshot: pd.Timestamp, days: int) -> pd.DataFrame:
    """Share of each customer's transactions per channel in `[snapshot - days, snapshot)`.

    Args:
        transactions: contract transactions with a `channel` column.
        snapshot: the snapshot time (naive UTC, like the contract's timestamps).
        days: window length.

    Returns:
        One row per customer with a transaction in the window (index `customer_id`), one
        column `channel_<name>_share` per channel seen (lower-cased); empty when the log
        records no channel, or only one (a share that is 1 for everyone says nothing).
    """
    empty = _no_rows()
    if not has_values(transactions, "channel"):
        return empty
    ts = pd.to_datetime(transactions["ts"])
    window = transactions[(ts < snapshot) & (ts >= snapshot - pd.Timedelta(days=days))]
    channel = window["channel"].astype(str).str.strip().str.lower()
    channel = channel.where(window["channel"].notna(), "unknown")
    if channel.nunique() < 2:
        return empty
    return _channel_shares(pd.crosstab(window["customer_id"].astype(str), channel))


def channel_mix_of(log: TransactionLog, snapshot: pd.Timestamp, days: int) -> pd.DataFrame:
    """`channel_mix` of a transaction log, counted out of core (DuckDB)."""
    counts = log.channel_counts(snapshot - pd.Timedelta(days=days), snapshot)
    if counts.shape[1] < 2:
        return _no_rows()
    return _channel_shares(counts)


def _channel_shares(counts: pd.DataFrame) -> pd.DataFrame:
    """Transactions per customer (rows) and channel (columns) as shares of the customer's."""
    shares = counts.div(counts.sum(axis=1), axis=0).astype(float)
    shares.columns = [f"{CHANNEL_PREFIX}{c}{CHANNEL_SUFFIX}" for c in shares.columns]
    shares.index.name = ENTITY_KEY
    shares.columns.name = None
    return shares


def _no_rows() -> pd.DataFrame:
    return pd.DataFrame(index=pd.Index([], name=ENTITY_KEY, dtype=object))


def product_groups(
    products: pd.DataFrame | None, max_groups: int = DEFAULTS.max_need_columns
) -> pd.Series | None:
    """Each product's group (`category`) when categories describe needs, else None.

    Categories count when at least two are known, they are fewer than the products (else
    they are the products under another name) and at most `max_groups` (the segments
    section's `max_need_columns`).
    """
    if products is None or not has_values(products, "category"):
        return None
    groups = products.set_index(products["product_id"].astype(str))["category"]
    known = groups.dropna().astype(str).str.strip()
    distinct = known.nunique()
    if distinct < 2 or distinct >= len(products) or distinct > max_groups:
        return None
    return known


def category_mix(
    transactions: pd.DataFrame, groups: pd.Series, snapshot: pd.Timestamp, days: int
) -> pd.DataFrame:
    """Share of each customer's spend per product category in `[snapshot - days, snapshot)`.

    Refunds count against their category; a customer whose net spend is not positive gets no
    row (the scaler reads a missing share as none).

    Returns:
        One row per customer (index `customer_id`), one column `category_<name>_share` each.
    """
    ts = pd.to_datetime(transactions["ts"])
    window = transactions[(ts < snapshot) & (ts >= snapshot - pd.Timedelta(days=days))]
    category = window["product_id"].astype(str).map(groups)
    window = window.assign(category=category.fillna("other"))
    spend = window.pivot_table(
        index=window["customer_id"].astype(str),
        columns="category",
        values="amount",
        aggfunc="sum",
        fill_value=0.0,
    )
    return _category_shares(spend)


def category_mix_of(
    log: TransactionLog, groups: pd.Series, snapshot: pd.Timestamp, days: int
) -> pd.DataFrame:
    """`category_mix` of a transaction log, summed out of core (DuckDB)."""
    return _category_shares(
        log.category_spend(groups, snapshot - pd.Timedelta(days=days), snapshot)
    )


def _category_shares(spend: pd.DataFrame) -> pd.DataFrame:
    """Net spend per customer (rows) and category (columns) as shares of the positive spend."""
    spend = spend.clip(lower=0.0)
    total = spend.sum(axis=1)
    shares = spend[total > 0].div(total[total > 0], axis=0).astype(float)
    shares.columns = [f"{CATEGORY_PREFIX}{_slug(c)}{CHANNEL_SUFFIX}" for c in shares.columns]
    shares.index.name = ENTITY_KEY
    shares.columns.name = None
    return shares


def _slug(text: object) -> str:
    """A category as a column-name part: lower case, words joined by `_`."""
    return re.sub(r"\W+", "_", str(text).strip().lower()).strip("_") or "unnamed"


def behaviour_frame(
    settings: Settings,
    transactions: TransactionLog | None = None,
    config: SegmentSettings | None = None,
) -> tuple[pd.DataFrame, pd.Timestamp]:
    """Every customer's behaviour at the latest snapshot, indexed by `customer_id`.

    The `segments_v1` features come through Feast's point-in-time join; the channel and
    category mixes are aggregated from the contract transactions before the same snapshot, out
    of core (DuckDB). Booleans become 0/1.

    Returns:
        The frame (sorted by customer id) and the snapshot time (UTC).
    """
    config = config or segment_settings(settings)
    transactions = transactions if transactions is not None else transaction_log(settings)
    from features.frames import training_frame

    entities = population(settings)
    snapshot = pd.Timestamp(entities[TIMESTAMP_FIELD].max()).tz_convert("UTC")
    frame = training_frame(settings, SERVICE, entities, with_labels=False)
    frame = frame.drop(columns=[TIMESTAMP_FIELD]).set_index(ENTITY_KEY).sort_index()
    for column in frame.columns:
        if pd.api.types.is_bool_dtype(frame[column]):
            frame[column] = frame[column].astype(float)
    naive = snapshot.tz_localize(None)
    mix = channel_mix_of(transactions, naive, config.channel_window_days)
    if mix.empty:
        log.info("the transactions record fewer than two channels: no channel mix")
    frame = frame.join(mix, how="left")
    groups = product_groups(transactions.products, config.max_need_columns)
    if groups is not None:
        shares = category_mix_of(transactions, groups, naive, config.channel_window_days)
        frame = frame.join(shares, how="left")
    return frame, snapshot


def model_columns(frame: pd.DataFrame, config: SegmentSettings) -> list[str]:
    """The columns segments are fitted on (`SegmentSettings.columns` overrides the choice).

    Needs first, from what the business's data holds:

    - what the customer holds (`holds_*`) when the catalog is small enough for products to
      be needs and product ids are words (`features.catalog.products_read_as_words`: a bank's
      `savings`, `mortgage`), else the spend share per product category (`category_*_share`)
      where categories exist; never product codes (`22086`, `P01`), which would name segments;
    - which channels they use (`channel_*_share`, when the log records two channels or more);
    - who they are (`age`, when known).

    Without any holdings, category or channel column, customers are segmented on RFM and
    basket behaviour (`BEHAVIOUR_COLUMNS`: recency, frequency, spend, basket size, breadth of
    products bought, spend trend, tenure), which every transaction log supports.

    Raises:
        DataContractError: a configured column is missing.
        NotReadyError: no usable column at all.
    """
    if config.columns:
        missing = [c for c in config.columns if c not in frame.columns]
        if missing:
            raise DataContractError(
                "behaviour frame", "configured segment column missing", missing[0]
            )
        return list(config.columns)
    holdings = [c for c in frame.columns if c.startswith(HOLDING_PREFIX) and _varies(frame[c])]
    if not products_read_as_words(c.removeprefix(HOLDING_PREFIX) for c in holdings):
        holdings = []
    categories = [
        c for c in frame.columns if c.startswith(CATEGORY_PREFIX) and c.endswith(CHANNEL_SUFFIX)
    ]
    needs = holdings or categories
    channels = [
        c for c in frame.columns if c.startswith(CHANNEL_PREFIX) and c.endswith(CHANNEL_SUFFIX)
    ]
    age = ["age"] if "age" in frame.columns and _varies(frame["age"]) else []
    if not needs and not channels:
        behaviour = [c for c in BEHAVIOUR_COLUMNS if c in frame.columns and _varies(frame[c])]
        if "distinct_categories_365d" in behaviour and frame["distinct_categories_365d"].max() < 2:
            behaviour.remove("distinct_categories_365d")  # one product: breadth is just activity
        log.info(
            "segments: no product holdings, categories or channels describe needs here; "
            "segmenting on RFM and basket behaviour: %s", ", ".join(behaviour),
        )  # fmt: skip
        columns = [*behaviour, *age]
    else:
        columns = [*needs, *channels, *age]
    if not columns:
        raise NotReadyError("no holdings, category, channel, behaviour or age column varies")
    return columns


def _varies(values: pd.Series) -> bool:
    """Whether a column takes at least two distinct known values."""
    return bool(values.dropna().nunique() >= 2)


def degenerate_reason(
    model: NeedSegmenter,
    frame: pd.DataFrame,
    columns: list[str],
    labels: pd.Series,
    limits: settings_module.SegmentSettings | None = None,
) -> str | None:
    """Why a segmentation means nothing (it is then refused promotion), or None.

    Degenerate: a silhouette near 1 at every k tried (the features take a few distinct values,
    so any k separates them perfectly), one segment holding almost everyone, or a model
    column that is an id (named like one, or distinct whole numbers for nearly every row).
    """
    limits = limits or DEFAULTS
    scores = [v for v in model.scores_.values() if np.isfinite(v)]
    if scores and min(scores) >= limits.degenerate_silhouette:
        return (
            f"silhouette {min(scores):.2f} or more at every k: the columns "
            f"({', '.join(columns)}) take a few distinct values, not needs"
        )
    largest = float(labels.value_counts(normalize=True).max()) if len(labels) else 1.0
    if largest >= limits.degenerate_share:
        return f"one segment holds {largest:.0%} of the customers"
    for column in columns:
        values = frame[column].dropna()
        named = re.search(r"(^|_)(id|code|key|number)($|_)", column.lower()) is not None
        whole = len(values) > 0 and bool((values == np.round(values)).all())
        distinct = len(values) > 0 and values.nunique() >= limits.id_like_share * len(values)
        if named or (whole and distinct):
            return f"column '{column}' looks like an id, not a need"
    return None


def numeric_columns(frame: pd.DataFrame) -> list[str]:
    """Numeric (and 0/1) columns of a behaviour frame."""
    return [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])]


# ------------------------------------------------------------------------- evaluation
def read_truth(settings: Settings) -> pd.Series | None:
    """The generator's true segment per customer, or None (any user's own data)."""
    path = settings.paths.truth_dir / TRUTH_FILE
    if not path.is_file():
        return None
    truth = pd.read_parquet(path, columns=[ENTITY_KEY, TRUTH_COLUMN])
    return truth.set_index(truth[ENTITY_KEY].astype(str))[TRUTH_COLUMN].astype(str)


def truth_agreement(
    truth: pd.Series | None, labels: pd.Series
) -> tuple[float | None, pd.DataFrame | None]:
    """Adjusted Rand index of labels against the true segments, and their cross table."""
    if truth is None:
        return None, None
    from sklearn.metrics import adjusted_rand_score

    known = truth.reindex(labels.index)
    mask = known.notna().to_numpy()
    if mask.sum() < 2:
        return None, None
    ari = float(adjusted_rand_score(known[mask], labels[mask]))
    return ari, pd.crosstab(known[mask].rename(TRUTH_COLUMN), labels[mask].rename("segment"))


def sample_space(frame: pd.DataFrame) -> np.ndarray:
    """A frame in a standardized space fitted on itself (the promotion ruler)."""
    from models.segments import BehaviourScaler

    return BehaviourScaler().fit_transform(frame.astype(float))


def silhouette(Z: np.ndarray, labels: np.ndarray) -> float:
    """Silhouette of labels in Z; NaN when fewer than two segments (or too few rows)."""
    from sklearn.metrics import silhouette_score

    n_labels = np.unique(labels).size
    if n_labels < 2 or n_labels > len(labels) - 1:
        return float("nan")
    return float(silhouette_score(Z, labels))


def silhouette_scorer(metric: str = "holdout_silhouette") -> Scorer:
    """Promotion's scorer: `holdout_silhouette` (the only metric segments promotion compares)."""
    return holdout_silhouette


def holdout_silhouette(model_uri: str, holdout: pd.DataFrame, meta: Mapping[str, Any]) -> float:
    """Promotion scorer: silhouette of a pyfunc's segments on the logged evaluation sample.

    The space is the challenger's model columns standardized on the sample itself (logged in
    the metadata as `space_columns`), so champion and challenger are measured with one ruler.
    """
    import mlflow.pyfunc
    from threadpoolctl import threadpool_limits

    model = mlflow.pyfunc.load_model(model_uri)
    schema = model.metadata.get_input_schema()
    names = schema.input_names() if schema is not None else list(meta["space_columns"])
    missing = [c for c in names if c not in holdout.columns]
    if missing:
        raise DataContractError("segments evaluation sample", "input column missing", missing[0])
    labels = model.predict(holdout[names].astype(float))["segment_id"].to_numpy()
    with threadpool_limits(limits=1):
        return silhouette(sample_space(holdout[list(meta["space_columns"])]), labels)


# ------------------------------------------------------------------------------ training
@dataclass(frozen=True)
class SegmentsTrainResult:
    """What a segments training run produced.

    Attributes:
        run_id: the MLflow run.
        model_version: registered `segments` version (None when not registered).
        metrics: k, silhouette and stability per k, sizes, ARI vs truth, tier value shares.
        model: the fitted segmenter.
        labels: segment id per customer (index `customer_id`).
        profile: the behaviour profile (model and descriptive columns) with generated names.
        tiers: tier per customer.
        tier_shares: customers and value per tier (`models.tiers.tier_value_shares`).
        ari: adjusted Rand index against the true segments (None without ground truth).
        previous_version: the champion version whose ids were kept (None on a first fit).
        seconds: wall time of the fit.
        refused: why the segmentation is degenerate (`degenerate_reason`): the version is
            tagged and promotion refuses it; None when it means something.
    """

    run_id: str
    model_version: str | None
    metrics: dict[str, float]
    model: NeedSegmenter
    labels: pd.Series
    profile: pd.DataFrame
    tiers: pd.Series
    tier_shares: pd.DataFrame
    ari: float | None
    previous_version: str | None
    seconds: float
    refused: str | None = None


def train_segments(
    settings: Settings,
    register: bool = True,
    previous: NeedSegmenter | Mapping[str, Any] | None = None,
    segments: SegmentSettings | None = None,
    transactions: TransactionLog | None = None,
    match_champion: bool = True,
    **overrides: Any,
) -> SegmentsTrainResult:
    """Fit, evaluate, log and register the need segments (and report the value tiers).

    Args:
        settings: where the feature store, the contract tables and MLflow live.
        register: register the logged model as `segments`.
        previous: the model whose segment ids to keep (fitted segmenter or its `to_dict`);
            by default the current `segments` champion, if any.
        segments: segment settings (default: `segment_settings(settings)`).
        transactions: the transaction log (default: the loaded contract's, read by DuckDB).
        match_champion: with `previous` None, match ids to the champion (False: number afresh).
        **overrides: `NeedSegmenter` parameters that replace the settings (e.g. n_clusters).

    Returns:
        Run, version, metrics, the model, labels, profile and tiers.
    """
    from threadpoolctl import threadpool_limits

    from inference.reference import value_scores

    config = segments or segment_settings(settings)
    transactions = transactions if transactions is not None else transaction_log(settings)
    frame, snapshot = behaviour_frame(settings, transactions, config)
    columns = model_columns(frame, config)
    previous_version = None
    if previous is None and match_champion:
        previous, previous_version = champion_segmenter(settings)
    started = time.perf_counter()
    with threadpool_limits(limits=1), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        model = config.segmenter(**overrides).fit(frame[columns], previous=previous)
    for caught_warning in caught:  # matching notes become log lines; others pass through
        if issubclass(caught_warning.category, UserWarning):
            log.warning("%s", caught_warning.message)
        else:
            warnings.warn_explicit(
                caught_warning.message,
                caught_warning.category,
                caught_warning.filename,
                caught_warning.lineno,
            )
    seconds = time.perf_counter() - started
    labels = pd.Series(model.labels_, index=frame.index, name="segment_id")
    values = value_scores(settings, frame.index, transactions)
    frame = frame.assign(clv=values["clv"])
    evaluation = _evaluate(settings, model, frame, columns, labels, values, config)
    refused = degenerate_reason(model, frame, columns, labels, config)
    evaluation.metrics["degenerate"] = float(refused is not None)
    if refused is not None:
        log.warning("segments: degenerate, promotion will refuse it: %s", refused)
    log.info(
        "segments: k=%d (silhouette %s), sizes %s, ARI vs truth %s",
        model.k_, {k: round(v, 3) for k, v in model.scores_.items()},
        labels.value_counts().sort_index().to_dict(),
        "n/a" if evaluation.ari is None else f"{evaluation.ari:.3f}",
    )  # fmt: skip
    run_id, version = _log_run(
        settings, config, model, frame, columns, evaluation, snapshot, seconds, register,
        previous_version, refused,
    )  # fmt: skip
    return SegmentsTrainResult(
        run_id, version, evaluation.metrics, model, labels, evaluation.profile,
        evaluation.tiers, evaluation.tier_shares, evaluation.ari, previous_version, seconds,
        refused,
    )  # fmt: skip


def champion_segmenter(settings: Settings) -> tuple[NeedSegmenter | None, str | None]:
    """The `segments` champion's fitted segmenter and version, or (None, None)."""
    from inference.reference import registered_model

    loaded = registered_model(settings, MODEL_NAME, champion_only=True)
    if loaded is None:
        return None, None
    wrapper = loaded.obj.unwrap_python_model()
    log.info("keeping the segment ids of champion v%s", loaded.version)
    return wrapper.model, loaded.version


@dataclass(frozen=True)
class _Evaluation:
    metrics: dict[str, float]
    profile: pd.DataFrame
    tiers: pd.Series
    tier_shares: pd.DataFrame
    ari: float | None
    crosstab: pd.DataFrame | None
    sample: pd.DataFrame


def _evaluate(
    settings: Settings,
    model: NeedSegmenter,
    frame: pd.DataFrame,
    columns: list[str],
    labels: pd.Series,
    values: pd.DataFrame,
    config: SegmentSettings,
) -> _Evaluation:
    """Metrics, profile, tiers and the evaluation sample of a fitted segmenter."""
    from models.tiers import assign_tiers, tier_value_shares

    metrics: dict[str, float] = {"k": float(model.k_), "customers": float(len(frame))}
    metrics.update({f"silhouette_k{k}": v for k, v in model.scores_.items()})
    metrics.update({f"stability_k{k}": v for k, v in model.stability_.items()})
    metrics["silhouette"] = model.scores_.get(model.k_, float("nan"))
    for segment, size in labels.value_counts().sort_index().items():
        metrics[f"segment_{segment}_size"] = float(size)
        metrics[f"segment_{segment}_share"] = float(size) / len(labels)
    ari, crosstab = truth_agreement(read_truth(settings), labels)
    if ari is not None:
        metrics["ari_true_segment"] = ari
    sample = _evaluation_sample(frame, config)
    sample["segment_id"] = labels.reindex(sample[ENTITY_KEY]).to_numpy()
    metrics["holdout_silhouette"] = silhouette(
        sample_space(sample[columns]), sample["segment_id"].to_numpy()
    )
    cuts = (settings.tiers.platinum, settings.tiers.gold, settings.tiers.iron)
    tiers = assign_tiers(values["tier_value"], cuts)
    shares = tier_value_shares(values["tier_value"], tiers)
    cumulative = shares["value_share"].cumsum()
    for tier, share in zip(("top1", "top5", "top20"), cumulative.iloc[:3], strict=True):
        metrics[f"tier_{tier}_value_share"] = float(share)
    metrics["clv_coverage"] = float(values["clv"].notna().mean())
    described = [c for c in dict.fromkeys([*columns, *DESCRIBE_COLUMNS]) if c in frame.columns]
    table = profile(
        frame[described], labels.to_numpy(), names=model.segment_names_, top_n=model.top_n
    )
    return _Evaluation(metrics, table, tiers, shares, ari, crosstab, sample)


def _evaluation_sample(frame: pd.DataFrame, config: SegmentSettings) -> pd.DataFrame:
    """A seeded sample of numeric behaviour rows with ids: the holdout promotion scores on."""
    rows = min(len(frame), config.sample_size)
    sample = frame[numeric_columns(frame)].sample(rows, random_state=config.random_state)
    sample = sample.sort_index().astype(float).reset_index()
    sample[ENTITY_KEY] = sample[ENTITY_KEY].astype(str)
    return sample


# ------------------------------------------------------------------------------- logging
def _log_run(
    settings: Settings,
    config: SegmentSettings,
    model: NeedSegmenter,
    frame: pd.DataFrame,
    columns: list[str],
    evaluation: _Evaluation,
    snapshot: pd.Timestamp,
    seconds: float,
    register: bool,
    previous_version: str | None,
    refused: str | None = None,
) -> tuple[str, str | None]:
    """One MLflow run: params, metrics, heat maps, tier plot, tables, sample and pyfunc."""
    import mlflow
    from training import tracking
    from training.segments_plots import profile_heatmap

    snapshot_id = tracking.frame_snapshot_id(evaluation.sample)
    with tracking.start_run(settings, MODEL_NAME, snapshot_id) as run:
        mlflow.log_params(
            {
                **{f"segments_{k}": v for k, v in config.model_dump().items() if k != "columns"},
                "model_columns": ",".join(columns),
                "snapshot": str(snapshot),
                "criterion": "highest silhouette among k with bootstrap stability >= "
                f"{config.min_stability}",
                "previous_version": previous_version or "",
                "degenerate": refused or "",
                "tier_cuts": f"{settings.tiers.platinum},{settings.tiers.gold},"
                f"{settings.tiers.iron}",
            }
        )
        mlflow.log_metrics({**evaluation.metrics, "fit_seconds": seconds})
        tracking.log_figure(profile_heatmap(model.profile_), "segment_profile")
        tracking.log_figure(profile_heatmap(evaluation.profile), "segment_profile_behaviour")
        tracking.log_figure(tier_figure(evaluation.tier_shares, frame, evaluation.tiers), "tiers")
        mlflow.log_text(_profile_text(evaluation.profile), "tables/segment_profiles.csv")
        mlflow.log_text(evaluation.tier_shares.to_csv(), "tables/tier_value_shares.csv")
        if evaluation.crosstab is not None:
            mlflow.log_text(evaluation.crosstab.to_csv(), "tables/segments_vs_truth.csv")
        mlflow.log_dict(model.matching_ or {}, "tables/matching.json")
        tracking.log_holdout(
            evaluation.sample,
            label="segment_id",
            prediction="segment_id",
            exclude=[ENTITY_KEY],
            extra={"rows": len(evaluation.sample), "snapshot_id": snapshot_id,
                   "space_columns": columns, "metric": "silhouette"},
        )  # fmt: skip
        model_uri = _log_model(model, frame[columns].head(5).astype(float))
        silhouette = float(evaluation.metrics["holdout_silhouette"])
        tags = tracking.lineage(snapshot_id, k=model.k_, holdout_silhouette=silhouette)
        if refused is not None:
            tags[tracking.TAG_REFUSED] = refused
        version = tracking.register_if(
            register, settings, model_uri, MODEL_NAME, run.info.run_id, tags
        )
    return run.info.run_id, version


def _profile_text(table: pd.DataFrame) -> str:
    head = ["name", "description", "size", "share", "top_features"]
    return table[head + [c for c in table.columns if c not in head]].to_csv()


def _log_model(model: NeedSegmenter, example: pd.DataFrame) -> str:
    """Log the pyfunc (JSON state artifact, models-from-code entry) with its signature."""
    import json

    from mlflow.models import infer_signature

    from training import tracking

    ids = model.predict(example).astype("int64")
    output = pd.DataFrame(
        {"segment_id": ids, "segment_name": [model.segment_names_[int(i)] for i in ids]}
    )
    with warnings.catch_warnings():  # segment ids are never missing: an integer output is right
        warnings.filterwarnings("ignore", message=".*integer column", category=UserWarning)
        signature = infer_signature(example, output)
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / f"{PYFUNC_ARTIFACT}.json"
        state.write_text(json.dumps({"model": model.to_dict()}), "utf-8")
        info = tracking.log_pyfunc(
            "models.pyfuncs.segments",
            {PYFUNC_ARTIFACT: state},
            signature,
            example,
            tracking.requirements(REQUIREMENTS),
        )
        return str(info.model_uri)


def tier_figure(shares: pd.DataFrame, frame: pd.DataFrame, tiers: pd.Series) -> Figure:
    """Share of customers, of tier value and of trailing 12-month revenue and margin per tier."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    bars = {
        "customers": shares["customer_share"],
        "value (CLV, else 12-month margin)": shares["value_share"],
    }
    for column, label in (
        ("monetary_365d", "12-month revenue"),
        ("margin_365d", "12-month margin"),
    ):
        if column in frame.columns:
            money = frame[column].astype(float).fillna(0.0)
            per_tier = money.groupby(tiers.to_numpy(), observed=False).sum()
            bars[label] = per_tier.reindex(shares.index).fillna(0.0) / money.sum()
    figure = Figure(figsize=(8.0, 4.5), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    x = np.arange(len(shares.index))
    width = 0.8 / len(bars)
    for i, (label, values) in enumerate(bars.items()):
        heights = np.asarray(values, dtype=float)
        drawn = axes.bar(x + (i - (len(bars) - 1) / 2) * width, heights, width, label=label)
        axes.bar_label(drawn, labels=[f"{h:.0%}" for h in heights], fontsize=7)
    axes.set_xticks(x, labels=list(shares.index))
    axes.set(ylabel="share of the total", title="Value tiers: customers vs value and revenue")
    axes.legend(loc="upper left")
    return figure


promote_segments = promotion_for("segments")
"""Make a `segments` version the champion if it wins on its holdout (the one promotion path)."""
