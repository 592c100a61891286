"""Batch scoring: every customer's value, tier, need segment and churn risk into the `scores` view.

`write_batch_scores` scores the customers of the latest feature snapshot with the registered
models (champions; CLV and segments fall back to their latest versions with a warning) and
writes `data/scores/scores.parquet`, in bounded memory:

1. **Features**: the latest snapshot's rows straight from the offline Parquet tables the
   feature store reads (`features.latest`: Feast's point-in-time join at that snapshot,
   without Feast), a chunk of customers at a time.
2. **Transactions**: one streaming pass over the contract log (`inference.transactions`) gives
   every customer's CLV summary, trailing margin and channel mix as a few numbers each.
3. **Value and tiers**: CLV for everyone from those summaries, then tiers, which rank all
   customers at once (`models.tiers.assign_tiers`): a handful of floats per customer.
4. **Chunks**: churn (the champion's boosters) and segments on each chunk's features; the
   chunk's rows are appended to a staging Parquet file as one row group.
5. **Swap**: the old `scores.parquet` is kept as `scores.previous.parquet` (the report
   compares the two) and the staging file renamed over it; both renames are atomic and run
   with Ctrl+C and SIGTERM held back, so an interrupted run leaves both files as they were.

`publish_batch_scores` then registers the `scores` view in Feast and materializes it, so the
API reads tier, segment and CLV online. `score_customers` and `publish_scores` return the
scores as a DataFrame (read back from the file); `reference_scores` is the former path
(Feast's `get_historical_features`, pandas over the whole log), kept to check this one.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from os import getpid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.catalog import ENTITY_KEY, PROFILE, SCORES, TIMESTAMP_FIELD
from features.store import (
    PREVIOUS_SCORES_FILE,
    apply_definitions,
    materialize,
    scores_table_path,
)
from features.tables_io import recover_folder
from loyal.compute import dask_client
from loyal.errors import LoyalError, NotReadyError
from loyal.logs import progress_bar
from loyal.settings import Settings

if TYPE_CHECKING:
    from distributed import Client
    from rich.progress import Progress

    from features.latest import IdIndex, LatestSnapshot
    from inference.fast import BatchModels, ChurnScorer, ValueScores

log = logging.getLogger(__name__)

CHUNK_ROWS = 100_000
"""Customers scored per chunk (and per row group of the scores table)."""
RECOMMENDATION_COLUMNS = [f"recommendation_{rank}" for rank in (1, 2, 3)]
_STAGING_PREFIX = f".{SCORES.name}.parquet.tmp-"
_ARROW_TYPES = {"float": pa.float64(), "int": pa.int64(), "str": pa.string(), "bool": pa.bool_()}
SCORES_SCHEMA = pa.schema(
    [
        pa.field(ENTITY_KEY, pa.string()),
        pa.field(TIMESTAMP_FIELD, pa.timestamp("ns", tz="UTC")),
        *(pa.field(f.name, _ARROW_TYPES[f.type]) for f in SCORES.features),
    ]
)
"""The scores table's Parquet schema: the `scores` view's columns and types."""

Sink = Callable[[pa.Table], None]


@dataclass
class ScoringRun:
    """What a batch scoring run did.

    Attributes:
        customers: customers scored.
        snapshot: the feature snapshot scored (UTC).
        path: the scores table written (None when not written).
        tiers: customers per tier.
        segments: customers per segment name.
        with_clv: customers with a CLV.
        with_churn_probability: customers with a churn probability.
        models: the model versions used, e.g. ``{"clv": "clv v3 (champion)"}``.
        seconds: wall time per stage: features, models, ids, transactions, value, tiers,
            recommendations, chunks (features read, churn, segments, rows written), swap;
            apply and materialize when published.
        chunks: chunks scored.
    """

    customers: int
    snapshot: pd.Timestamp
    path: Path | None = None
    tiers: dict[str, int] = field(default_factory=dict)
    segments: dict[str, int] = field(default_factory=dict)
    with_clv: int = 0
    with_churn_probability: int = 0
    models: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    chunks: int = 0

    def summary(self) -> dict[str, Any]:
        """The run as plain JSON-able data (what `loyal score` prints)."""
        return {
            "customers": self.customers,
            "snapshot": str(self.snapshot),
            "tiers": self.tiers,
            "segments": self.segments,
            "with_clv": self.with_clv,
            "with_churn_probability": self.with_churn_probability,
            "models": self.models,
            "seconds": {k: round(v, 2) for k, v in self.seconds.items()},
            "path": str(self.path) if self.path is not None else None,
        }


# --------------------------------------------------------------------------------- entry points
def score_customers(
    settings: Settings, write: bool = True, chunk_rows: int = CHUNK_ROWS
) -> pd.DataFrame:
    """Score every customer of the latest snapshot (and write the scores table).

    Columns: `customer_id`, `event_timestamp` (the latest snapshot) and the `scores` view's
    features: clv, p_alive, expected_purchases_12m, tier, segment_id, segment_name,
    churn_probability and recommendation_1..3. A model that is not registered leaves its
    columns empty (NaN, -1 or "") with a warning; tiers then rank by trailing 12-month margin.

    Args:
        settings: where the contract tables, feature tables and MLflow live.
        write: write `data/scores/scores.parquet` (staged, then swapped in; the old table is
            kept as `scores.previous.parquet`).
        chunk_rows: customers per chunk.

    Returns:
        The scores, one row per customer, sorted by customer id.

    Raises:
        NotReadyError: no contract or feature tables, or no model registered at all.
    """
    if write:
        return read_scores(write_batch_scores(settings, chunk_rows).path)
    parts: list[pa.Table] = []
    score_batches(settings, parts.append, chunk_rows)
    table = pa.concat_tables(parts) if parts else SCORES_SCHEMA.empty_table()
    return _sorted_frame(table.to_pandas())


def write_batch_scores(settings: Settings, chunk_rows: int = CHUNK_ROWS) -> ScoringRun:
    """Score every customer into `scores.parquet` chunk by chunk; the bounded-memory path.

    Returns:
        The run (counts, models, seconds per stage); `path` is the table written.
    """
    path = scores_table_path(settings)
    with staged_scores(path) as writer:
        run = score_batches(settings, writer.write_table, chunk_rows)
        started = time.perf_counter()
    run.seconds["swap"] = time.perf_counter() - started
    run.path = path
    return run


PAST_SCORES_DIR = "history"
"""Folder beside the scores table holding the scores of past snapshots (`write_past_scores`)."""


def write_past_scores(
    settings: Settings, as_of: pd.Timestamp, chunk_rows: int = CHUNK_ROWS
) -> ScoringRun:
    """Score the customers as they were at the latest snapshot by `as_of`, into their own
    table under `data/scores/history/` (the scores table and the online store stay as they
    are). `loyal campaign report` reads them for the tiers and segments of a past campaign.

    Raises:
        NotReadyError: as `score_batches`.
    """
    moment = _latest(settings, as_of).moment
    path = past_scores_path(settings, moment)
    with staged_scores(path, keep_previous=False) as writer:
        run = score_batches(settings, writer.write_table, chunk_rows, as_of=moment)
    run.path = path
    return run


def past_scores_path(settings: Settings, moment: pd.Timestamp) -> Path:
    """Where the scores of a past snapshot are written (`write_past_scores`)."""
    stamp = pd.Timestamp(moment).tz_convert("UTC")
    return (
        scores_table_path(settings).parent
        / PAST_SCORES_DIR
        / f"scores-{stamp:%Y%m%dT%H%M%S}.parquet"
    )


def publish_batch_scores(settings: Settings, chunk_rows: int = CHUNK_ROWS) -> ScoringRun:
    """Write the scores, register the `scores` view in Feast and load it into the online store.

    `seconds` gains `apply` and `materialize` (the online store's own time, apart).
    """
    run = write_batch_scores(settings, chunk_rows)
    started = time.perf_counter()
    apply_definitions(settings)
    applied = time.perf_counter()
    materialize_scores(settings, run.snapshot)
    run.seconds["apply"] = applied - started
    run.seconds["materialize"] = time.perf_counter() - applied
    return run


def publish_scores(settings: Settings) -> pd.DataFrame:
    """Score, write, register the `scores` view in Feast and load it into the online store.

    Returns:
        The scores written, sorted by customer id.
    """
    return read_scores(publish_batch_scores(settings).path)


def materialize_scores(settings: Settings, snapshot: pd.Timestamp) -> None:
    """Load the scores of one snapshot into the online store (the other views are untouched)."""
    moment = pd.Timestamp(snapshot).tz_convert("UTC").to_pydatetime()
    started = time.perf_counter()
    materialize(
        settings, moment - timedelta(seconds=1), moment + timedelta(seconds=1), [SCORES.name]
    )
    log.info("Scores of %s are online (%.1f s)", moment, time.perf_counter() - started)


def read_scores(path: Path | None) -> pd.DataFrame:
    """A scores table as a DataFrame sorted by customer id."""
    if path is None or not path.is_file():
        raise NotReadyError("no scores table yet: run `loyal score` first")
    return _sorted_frame(pd.read_parquet(path))


def _sorted_frame(frame: pd.DataFrame) -> pd.DataFrame:
    if frame[ENTITY_KEY].is_monotonic_increasing:
        return frame.reset_index(drop=True)
    return frame.sort_values(ENTITY_KEY, kind="stable").reset_index(drop=True)


# ------------------------------------------------------------------------------- the pipeline
def score_batches(
    settings: Settings,
    sink: Sink,
    chunk_rows: int = CHUNK_ROWS,
    as_of: pd.Timestamp | None = None,
) -> ScoringRun:
    """Score every customer of the latest snapshot, handing each chunk's rows to `sink`.

    With `as_of`, the customers of the latest snapshot at or before it, from the features
    and the transactions up to that snapshot (the champions are today's); without the cross-sell
    batch, which is today's, and the tables other models publish.

    Raises:
        NotReadyError: no contract or feature tables, no model registered at all, or no
            snapshot by `as_of`.
    """
    from features.latest import IdIndex, population_ids
    from inference.batch import batch_specs, score_own_tables
    from inference.fast import BatchModels

    seconds: dict[str, float] = {}
    clock = _Clock(seconds)
    transactions, products = _contract_inputs(settings)
    snapshot = clock.run("features", lambda: _latest(settings, as_of))
    models = clock.run("models", lambda: BatchModels.load(settings))
    if models.empty:
        raise NotReadyError(
            "no clv, segments or churn model is registered: run `loyal train clv` and "
            "`loyal train segments` first"
        )
    ids = clock.run("features", lambda: population_ids(snapshot), add=True)
    index = clock.run("ids", lambda: IdIndex(ids))
    log.info(
        "Scoring %d customers of the %s snapshot with %s (chunks of %d)",
        len(ids), snapshot.moment, ", ".join(models.labels.values()) or "no model", chunk_rows,
    )  # fmt: skip
    with progress_bar() as progress:
        aggregates = clock.run(
            "transactions",
            lambda: _aggregate(settings, transactions, products, index, snapshot, models, progress),
        )
        values = clock.run("value", lambda: _values(models, aggregates, snapshot))
        tiers = clock.run("tiers", lambda: _tiers(settings, ids, values.tier_value))
        recommendations = (
            _no_recommendations(index)
            if as_of is not None
            else clock.run("recommendations", lambda: _recommendations(settings, index))
        )
        chunks = _Chunks(snapshot, models, aggregates, values, tiers, recommendations, progress)
        with dask_client(settings.compute) as client:
            clock.run("chunks", lambda: chunks.run(settings, sink, chunk_rows, client))
    run = chunks.report(snapshot.moment, len(ids), models.labels, seconds)
    if batch_specs() and as_of is None:  # models that publish a table of their own
        own = clock.run("own tables", lambda: score_own_tables(settings, ids.to_pylist()))
        run.models.update(own)
    log.info(
        "Scored %d customers at %s in %.1f s: tiers %s",
        run.customers, run.snapshot, sum(seconds.values()), run.tiers,
    )  # fmt: skip
    return run


class _Clock:
    """Times stages into a dict of seconds."""

    def __init__(self, seconds: dict[str, float]) -> None:
        self.seconds = seconds

    def run(self, stage: str, step: Callable[[], Any], add: bool = False) -> Any:
        started = time.perf_counter()
        result = step()
        spent = time.perf_counter() - started
        self.seconds[stage] = self.seconds.get(stage, 0.0) + spent if add else spent
        return result


def _contract_inputs(settings: Settings) -> tuple[Path, pd.DataFrame | None]:
    """The transactions table's path and the products table (small), or NotReadyError."""
    folder = settings.paths.contract_dir
    recover_folder(folder)
    transactions = folder / "transactions.parquet"
    if not transactions.is_file() or not (folder / "customers.parquet").is_file():
        raise NotReadyError(
            f"no validated transactions table in {folder}: run `loyal generate` and "
            "`loyal ingest`, or `loyal ingest PATH` with your data"
        )
    products = folder / "products.parquet"
    return transactions, pd.read_parquet(products) if products.is_file() else None


def _latest(settings: Settings, as_of: pd.Timestamp | None = None) -> LatestSnapshot:
    """The latest snapshot (at or before `as_of`) of every built feature view (the tables
    Feast's sources read)."""
    from features.latest import latest_snapshot
    from features.store import built_views, table_path

    views = {n: v for n, v in built_views(settings).items() if n != SCORES.name}
    if PROFILE.name not in views:
        raise NotReadyError("no feature tables found: run `loyal features build` first")
    tables = {name: table_path(settings, view) for name, view in views.items()}
    ttl = {n: v.ttl_days for n, v in views.items()}
    return latest_snapshot(tables, ttl, PROFILE.name, as_of)


def _observation_end(snapshot: LatestSnapshot) -> pd.Timestamp:
    """The CLV observation end: the last whole day before the snapshot (naive UTC)."""
    return snapshot.moment.tz_convert("UTC").tz_localize(None).normalize() - pd.Timedelta(days=1)


def _aggregate(
    settings: Settings,
    transactions: Path,
    products: pd.DataFrame | None,
    index: IdIndex,
    snapshot: LatestSnapshot,
    models: BatchModels,
    progress: Progress,
) -> Any:
    """The streaming pass over the transactions (CLV summaries, trailing margin, channels)."""
    from inference.fast import channel_columns, clv_config
    from inference.reference import TRAILING_DAYS
    from inference.transactions import PassWindows, aggregate_transactions
    from training.segments import segment_settings

    period = clv_config(models.clv)[0] if models.clv is not None else "D"
    wants_mix = bool(channel_columns(models.segment_inputs()))
    windows = PassWindows(
        end=_observation_end(snapshot),
        snapshot=snapshot.moment.tz_convert("UTC").tz_localize(None),
        period=period,
        trailing_days=TRAILING_DAYS,
        channel_days=segment_settings(settings).channel_window_days if wants_mix else None,
    )
    rows = pq.ParquetFile(transactions).metadata.num_rows
    task = progress.add_task("Reading transactions", total=rows)
    aggregates = aggregate_transactions(
        transactions,
        index,
        windows,
        products,
        progress=lambda n: progress.advance(task, n),
    )
    log.info(
        "Transactions: %d rows read, %d customers with a purchase by %s, channels %s",
        aggregates.rows, int((aggregates.periods.purchases > 0).sum()), windows.end.date(),
        aggregates.channels,
    )  # fmt: skip
    return aggregates


def _values(models: BatchModels, aggregates: Any, snapshot: LatestSnapshot) -> ValueScores:
    from inference.fast import value_scores

    return value_scores(models, aggregates, _observation_end(snapshot))


@dataclass(frozen=True)
class _Labels:
    """Text labels as codes into a list of names (-1: the empty string), for Arrow columns."""

    codes: np.ndarray
    names: list[str]

    def column(self, positions: slice | None = None) -> pa.Array:
        """The labels (of `positions`) as an Arrow string column."""
        codes = self.codes if positions is None else self.codes[positions]
        return labels_column(codes, self.names)


def labels_column(codes: np.ndarray, names: list[str]) -> pa.Array:
    """Strings from codes into `names` (-1: ""), built as an Arrow dictionary, then decoded."""
    indices = np.where(codes >= 0, codes, len(names)).astype(np.int32)
    dictionary = pa.array([*names, ""], type=pa.string())
    return pa.DictionaryArray.from_arrays(pa.array(indices), dictionary).cast(pa.string())


def _tiers(settings: Settings, ids: pa.Array, tier_value: np.ndarray) -> _Labels:
    """Tier of every customer: all customers ranked at once (exact sizes on ties)."""
    from inference.reference import tiers_for

    index = pd.Index(ids.to_numpy(zero_copy_only=False), name=ENTITY_KEY)
    tiers = tiers_for(settings, pd.Series(tier_value, index=index))
    return _Labels(
        np.asarray(tiers.cat.codes, dtype=np.int64), [str(c) for c in tiers.cat.categories]
    )


@dataclass(frozen=True)
class _Recommendations:
    """Top-3 batch recommendations per customer as product codes (-1: none)."""

    products: list[str]
    codes: np.ndarray

    def column(self, rank: int, positions: slice) -> pa.Array:
        return labels_column(self.codes[positions, rank], self.products)


def _no_recommendations(index: IdIndex) -> _Recommendations:
    """No recommendation for anyone (-1: no product)."""
    return _Recommendations([], np.full((index.size, len(RECOMMENDATION_COLUMNS)), -1, np.int64))


def _recommendations(settings: Settings, index: IdIndex) -> _Recommendations:
    """The cross-sell batch top 3 per customer (all empty before any cross-sell run)."""
    from training.cross_sell import RECOMMENDATIONS_FILE

    path = settings.paths.data_dir / "scores" / RECOMMENDATIONS_FILE
    if not path.is_file():
        log.warning("no batch recommendations yet: run `loyal train cross-sell` to fill them")
        return _no_recommendations(index)
    codes = _no_recommendations(index).codes
    batch = pq.read_table(
        path,
        columns=[ENTITY_KEY, "rank", "product_id"],
        filters=[("rank", "<=", len(RECOMMENDATION_COLUMNS)), ("rank", ">=", 1)],
    )
    product = batch["product_id"].combine_chunks().cast(pa.string()).dictionary_encode()
    where = index.positions(batch[ENTITY_KEY])
    rank = batch["rank"].to_numpy().astype(np.int64) - 1
    found = where >= 0
    codes[where[found], rank[found]] = np.asarray(product.indices.fill_null(-1))[found]
    return _Recommendations([str(p) for p in product.dictionary.to_pylist()], codes)


@dataclass(frozen=True)
class RowScores:
    """What a range of the population needs besides its features, aligned to its rows.

    The whole population's arrays for the local engine; a unit's slices for a Dask task.
    """

    moment: pd.Timestamp
    values: ValueScores
    tiers: _Labels
    recommendations: _Recommendations
    shares: Callable[[np.ndarray], dict[str, np.ndarray]]

    def sliced(self, start: int, rows: int) -> RowScores:
        """The same for the population's rows `start` to `start + rows` (a unit's own copy)."""
        from inference.fast import ValueScores

        where = slice(start, start + rows)
        values = ValueScores(*(np.array(getattr(self.values, f)[where]) for f in _VALUE_FIELDS))
        return RowScores(
            self.moment,
            values,
            _Labels(np.array(self.tiers.codes[where]), self.tiers.names),
            _Recommendations(
                self.recommendations.products, np.array(self.recommendations.codes[where])
            ),
            _Shares(self.shares(np.arange(start, start + rows))),
        )


_VALUE_FIELDS = ("clv", "p_alive", "expected_purchases_12m", "tier_value")


@dataclass(frozen=True)
class _Shares:
    """Channel shares already gathered for a unit's rows, looked up by position within it."""

    shares: dict[str, np.ndarray]

    def __call__(self, positions: np.ndarray) -> dict[str, np.ndarray]:
        return {name: values[positions] for name, values in self.shares.items()}


def score_rows(
    features: pa.Table, inputs: RowScores, models: BatchModels, churn: ChurnScorer, start: int
) -> pa.Table:
    """The scores table of feature rows that are the population's rows from `start` on.

    One scorer for both engines: the local loop and every Dask task call it.
    """
    from inference.fast import segment_chunk, with_channel_mix

    rows = features.num_rows
    where = slice(start, start + rows)
    frame = features.to_pandas()
    probability = churn(frame)
    behaviour = with_channel_mix(frame, inputs.shares(np.arange(start, start + rows)))
    segment_id, names = segment_chunk(models, behaviour)
    known = sorted(names)
    segment_name = labels_column(np.searchsorted(known, segment_id), [names[i] for i in known])
    moment = pa.scalar(inputs.moment.value, pa.timestamp("ns", tz="UTC"))
    values = inputs.values
    columns: dict[str, pa.Array] = {
        ENTITY_KEY: features[ENTITY_KEY].combine_chunks().cast(pa.string()),
        TIMESTAMP_FIELD: pa.repeat(moment, rows),
        "clv": pa.array(values.clv[where]),
        "p_alive": pa.array(values.p_alive[where]),
        "expected_purchases_12m": pa.array(values.expected_purchases_12m[where]),
        "tier": inputs.tiers.column(where),
        "segment_id": pa.array(segment_id, type=pa.int64()),
        "segment_name": segment_name,
        "churn_probability": pa.array(probability),
    }
    for rank, column in enumerate(RECOMMENDATION_COLUMNS):
        columns[column] = inputs.recommendations.column(rank, where)
    return pa.table(columns, schema=SCORES_SCHEMA)


def score_unit(
    snapshot: LatestSnapshot,
    columns: dict[str, list[str]],
    chunk_rows: int,
    inputs: RowScores,
    settings: Settings,
    labels: dict[str, str],
) -> pa.Table:
    """Read and score one unit of the snapshot (a Dask task): its rows, chunk by chunk."""
    from features.latest import iter_chunks
    from inference.fast import ChurnScorer

    models = _worker_models(settings, labels)
    churn = ChurnScorer(models)
    parts = []
    done = 0
    for features in iter_chunks(snapshot, columns, chunk_rows):
        parts.append(score_rows(features, inputs, models, churn, done))
        done += features.num_rows
    return pa.concat_tables(parts) if parts else SCORES_SCHEMA.empty_table()


_WORKER_MODELS: dict[tuple[str, tuple[tuple[str, str], ...]], BatchModels] = {}
"""The models a Dask worker process loaded, by tracking URI and versions (one entry kept)."""


def _worker_models(settings: Settings, labels: dict[str, str]) -> BatchModels:
    """The run's models in a worker process: loaded from MLflow once, versions checked."""
    from inference.fast import BatchModels

    key = (settings.mlflow.tracking_uri, tuple(sorted(labels.items())))
    if key not in _WORKER_MODELS:
        models = BatchModels.load(settings)
        if models.labels != labels:
            raise LoyalError(
                f"the registered models changed during scoring ({labels} at the start, "
                f"{models.labels} on a worker): run `loyal score` again"
            )
        _WORKER_MODELS.clear()
        _WORKER_MODELS[key] = models
    return _WORKER_MODELS[key]


@dataclass
class _Chunks:
    """Scores the feature snapshot chunk by chunk and keeps the run's counts."""

    snapshot: LatestSnapshot
    models: BatchModels
    aggregates: Any
    values: ValueScores
    tiers: _Labels
    recommendations: _Recommendations
    progress: Progress
    segment_counts: dict[str, int] = field(init=False, default_factory=dict)
    with_churn: int = field(init=False, default=0)
    done: int = field(init=False, default=0)
    chunks: int = field(init=False, default=0)

    def inputs(self) -> RowScores:
        return RowScores(
            self.snapshot.moment,
            self.values,
            self.tiers,
            self.recommendations,
            self.aggregates.channel_shares,
        )

    def run(
        self, settings: Settings, sink: Sink, chunk_rows: int, client: Client | None = None
    ) -> None:
        """Score every chunk here, or every unit of the snapshot as a Dask task."""
        from features.latest import iter_chunks
        from features.store import built_views
        from inference.fast import ChurnScorer

        columns = self.models.feature_columns(built_views(settings))
        if client is not None:
            self._run_dask(client, settings, columns, sink, chunk_rows)
            return
        total = self.snapshot.customers
        task = self.progress.add_task(
            "Scoring customers", total=max(1, -(-total // chunk_rows)) if total else 0
        )
        inputs, churn = self.inputs(), ChurnScorer(self.models)
        for features in iter_chunks(self.snapshot, columns, chunk_rows):
            self._emit(score_rows(features, inputs, self.models, churn, self.done), sink)
            self.progress.advance(task)
            log.info("chunk %d: %d of %d customers scored", self.chunks, self.done, total)

    def _run_dask(
        self,
        client: Client,
        settings: Settings,
        columns: dict[str, list[str]],
        sink: Sink,
        chunk_rows: int,
    ) -> None:
        """One task per unit of whole row groups; results written in the population's order.

        Each worker loads the models itself from MLflow, once (models-from-code pyfuncs do
        not travel by pickle), and checks it got the versions this run scores with.
        """
        from features.latest import split_snapshot

        units = split_snapshot(self.snapshot)
        inputs = self.inputs()
        settings = client.scatter(settings, broadcast=True)
        futures = [
            client.submit(
                score_unit,
                unit,
                columns,
                chunk_rows,
                inputs.sliced(start, unit.customers),
                settings,
                self.models.labels,
                pure=False,
            )
            for unit, start in units
        ]
        for position, future in enumerate(futures, start=1):
            self._emit(future.result(), sink)
            log.info(
                "unit %d/%d scored on the cluster: %d of %d customers",
                position, len(units), self.done, self.snapshot.customers,
            )  # fmt: skip

    def _emit(self, table: pa.Table, sink: Sink) -> None:
        sink(table)
        names, counts = np.unique(
            np.asarray(table["segment_name"].to_pylist(), dtype=object), return_counts=True
        )
        for name, count in zip(names.tolist(), counts.tolist(), strict=True):
            self.segment_counts[name] = self.segment_counts.get(name, 0) + count
        churn = table["churn_probability"].to_numpy()
        self.with_churn += int((~np.isnan(churn)).sum())
        self.done += table.num_rows
        self.chunks += 1

    def report(
        self, moment: pd.Timestamp, customers: int, models: dict[str, str], seconds: dict
    ) -> ScoringRun:
        codes, counts = np.unique(self.tiers.codes, return_counts=True)
        return ScoringRun(
            customers=customers,
            snapshot=moment,
            tiers={
                self.tiers.names[c] if c >= 0 else "": int(n)
                for c, n in zip(codes.tolist(), counts.tolist(), strict=True)
            },
            segments=self.segment_counts,
            with_clv=int((~np.isnan(self.values.clv)).sum()),
            with_churn_probability=self.with_churn,
            models=models,
            seconds=seconds,
            chunks=self.chunks,
        )


# ------------------------------------------------------------------------------ staging, swap
class _Writer:
    """Appends chunk tables to a Parquet file, one row group each."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._writer: pq.ParquetWriter | None = None
        self._closed = False

    def write_table(self, table: pa.Table) -> None:
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.path, SCORES_SCHEMA)
        self._writer.write_table(table)

    def close(self) -> None:
        """Finish the file (an empty table when nothing was written)."""
        if self._closed:
            return
        self._closed = True
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.path, SCORES_SCHEMA)
        self._writer.close()


@contextmanager
def staged_scores(path: Path, keep_previous: bool = True) -> Iterator[_Writer]:
    """A writer on a staging file beside `path` that replaces it only if the block completes.

    The replaced table is kept as `PREVIOUS_SCORES_FILE` (unless `keep_previous` is False). On
    any error or interruption the staging file is removed and both tables stay as they were.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    _clear_stale_staging(path.parent)
    staging = path.with_name(f"{_STAGING_PREFIX}{getpid()}")
    writer = _Writer(staging)
    try:
        yield writer
        writer.close()
        _sync(staging)
        if keep_previous:
            swap_in(staging, path)
        else:
            staging.replace(path)
            _sync(path.parent)
    finally:
        writer.close()
        staging.unlink(missing_ok=True)


def swap_in(staging: Path, path: Path) -> None:
    """Keep `path` as the previous table, then rename `staging` over it (atomic renames).

    Ctrl+C and SIGTERM are held back while the two renames run and delivered after them.
    """
    previous = path.with_name(PREVIOUS_SCORES_FILE)
    with _signals_held():
        if path.is_file():
            link = path.with_name(f".{PREVIOUS_SCORES_FILE}.tmp-{getpid()}")
            link.unlink(missing_ok=True)
            try:
                os.link(path, link)
            except OSError:  # no hard links on this file system: copy instead
                import shutil

                shutil.copy2(path, link)
            link.replace(previous)
        staging.replace(path)
    _sync(path.parent)


def write_scores(scores: pd.DataFrame, path: Path) -> Path:
    """Write a scores frame atomically, keeping the old table as the previous one."""
    with staged_scores(path) as writer:
        table = pa.Table.from_pandas(scores, schema=SCORES_SCHEMA, preserve_index=False)
        writer.write_table(table)
    return path


@contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back during the block; deliver them when it ends."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    wanted = (signal.SIGINT, signal.SIGTERM)
    saved = {s: signal.signal(s, lambda number, _frame: caught.append(number)) for s in wanted}
    try:
        yield
    finally:
        for wanted_signal, handler in saved.items():
            signal.signal(wanted_signal, handler)
        for number in caught:
            signal.raise_signal(number)


def _sync(path: Path) -> None:
    """Flush a file (or a folder's entries) to disk, where the platform allows it."""
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _clear_stale_staging(folder: Path) -> None:
    """Remove staging files left by runs that were killed (their process is gone)."""
    for leftover in folder.glob(f"{_STAGING_PREFIX}*"):
        pid = leftover.name.removeprefix(_STAGING_PREFIX)
        if pid.isdigit() and not _alive(int(pid)):
            leftover.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ------------------------------------------------------------------------- the reference path
def reference_scores(settings: Settings) -> pd.DataFrame:
    """The scores by the former path: Feast's point-in-time join and DuckDB over the log.

    Slow (Feast's `get_historical_features`) but independent of the fast path and its own
    streaming pass over the log: tests check that both give the same scores.
    """
    from features.log_aggregates import transaction_log
    from inference.reference import churn_scores, segment_scores, tiers_for, value_scores
    from training.segments import behaviour_frame

    transactions = transaction_log(settings)
    frame, snapshot = behaviour_frame(settings, transactions)
    values = value_scores(settings, frame.index, transactions)
    segments = segment_scores(settings, frame)
    entities = pd.DataFrame({ENTITY_KEY: frame.index.astype(str), TIMESTAMP_FIELD: snapshot})
    churn = churn_scores(settings, entities)
    return assemble(frame.index, snapshot, values, tiers_for(settings, values["tier_value"]),
                    segments, churn, top_recommendations(settings))  # fmt: skip


def assemble(
    customers: pd.Index,
    snapshot: pd.Timestamp,
    values: pd.DataFrame,
    tiers: pd.Series,
    segments: pd.DataFrame,
    churn: pd.Series,
    recommendations: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The scores table in the `scores` view's column order and types."""
    ids = pd.Index(customers.astype(str), name=ENTITY_KEY)
    table = pd.DataFrame(
        {
            ENTITY_KEY: ids,
            TIMESTAMP_FIELD: pd.Timestamp(snapshot).tz_convert("UTC"),
            "clv": values["clv"].reindex(ids).astype(float).to_numpy(),
            "p_alive": values["p_alive"].reindex(ids).astype(float).to_numpy(),
            "expected_purchases_12m": values["expected_purchases_12m"].reindex(ids).to_numpy(),
            "tier": tiers.reindex(ids).astype(str).to_numpy(),
            "segment_id": segments["segment_id"].reindex(ids).astype("int64").to_numpy(),
            "segment_name": segments["segment_name"].reindex(ids).astype(str).to_numpy(),
            "churn_probability": churn.reindex(ids).astype(float).to_numpy(),
        }
    )
    for column in RECOMMENDATION_COLUMNS:
        known = recommendations[column] if recommendations is not None else pd.Series(dtype=str)
        table[column] = known.reindex(ids).fillna("").astype(str).to_numpy()
    table[TIMESTAMP_FIELD] = table[TIMESTAMP_FIELD].astype("datetime64[ns, UTC]")
    table["expected_purchases_12m"] = table["expected_purchases_12m"].astype(float)
    table = table[[ENTITY_KEY, TIMESTAMP_FIELD, *SCORES.feature_names]]
    return table.sort_values(ENTITY_KEY, kind="stable").reset_index(drop=True)


def top_recommendations(settings: Settings) -> pd.DataFrame | None:
    """The batch cross-sell top 3 per customer, one column per rank (None before any run)."""
    from training.cross_sell import RECOMMENDATIONS_FILE

    path = settings.paths.data_dir / "scores" / RECOMMENDATIONS_FILE
    if not path.is_file():
        log.warning("no batch recommendations yet: run `loyal train cross-sell` to fill them")
        return None
    batch = pd.read_parquet(path, columns=[ENTITY_KEY, "rank", "product_id"])
    batch = batch[batch["rank"] <= len(RECOMMENDATION_COLUMNS)]
    wide = batch.pivot(index=ENTITY_KEY, columns="rank", values="product_id")
    wide.columns = [f"recommendation_{int(rank)}" for rank in wide.columns]
    return wide.reindex(columns=RECOMMENDATION_COLUMNS).fillna("")
