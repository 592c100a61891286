"""The feature build out of core: customers split into partitions that are built independently.

Memory of the feature build grows with the customers it holds at once, so the bank is split
by a stable hash of `customer_id` into partitions of about `compute.partition_customers`
customers, and each partition is built alone, in this process or on a Dask worker:

1. **Repartition** (`repartition`): one streaming pass over each contract table that holds
   customers (customers, transactions, interactions, balances), a batch at a time, writes
   every row to its customer's partition file (`<work>/inputs/<table>/part-00003.parquet`),
   so no table is ever held whole. The same pass gathers the few statistics that span every
   customer (`DataBounds`): the first and last event times that place the snapshots and size
   the churn horizon, whether any customer ever closed (the churn definition) and whether
   channels are recorded at all.
2. **Holdings columns**: when the catalog has more products than holdings columns, the most
   held products are counted per partition (distinct buyers add up across disjoint
   customers) and ranked once.
3. **Build** (`build_partition`): a partition's tables, the products and the shared
   statistics give that partition's snapshot feature tables and churn labels, one Parquet
   file per view and partition (`<work>/outputs/<view>/part-00003.parquet`, a row group per
   snapshot). Every feature of a customer depends only on that customer's own events and the
   shared statistics, so the rows are the ones a single build over the whole bank gives.
4. **Assemble** (`assemble`): each view's partition files are copied row group by row group
   into the one `<view>.parquet` table the feature store, batch scoring and monitoring read
   (partition after partition, a snapshot per row group), a row group at a time.

The work folder is a path or an fsspec URL (`s3://bucket/loyal-work`, with Loyal's `s3`
extra): workers of a cluster read and write it, so it must be storage every worker reaches.
`tests/pipeline/test_engines.py` runs the Dask build on an S3 emulator and compares it value for
value with the local build.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from fsspec import AbstractFileSystem
from fsspec.core import url_to_fs

from features.catalog import ENTITY_KEY, TIMESTAMP_FIELD, View, views_for
from features.engineering import (
    MAX_HOLDING_COLUMNS,
    iter_feature_tables,
    most_held,
    product_buyers,
    snapshot_grid,
)
from features.history import WindowChoice, churn_horizon
from features.labels import churn_labels
from loyal.errors import ConfigError, DataContractError

log = logging.getLogger(__name__)

CUSTOMER_TABLES = ("customers", "transactions", "interactions", "balances")
"""Contract tables split by customer; the others (products) are small and read whole."""
REQUIRED_TABLES = ("customers", "transactions", "products")
BATCH_ROWS = 1 << 20
"""Rows per streamed batch of the repartition pass."""
LABELS = "_labels"
"""Output folder of the churn labels (each view's folder is its name)."""
ARROW_TYPES = {"float": pa.float64(), "int": pa.int64(), "str": pa.string(), "bool": pa.bool_()}
LABELS_SCHEMA = pa.schema(
    [
        pa.field(ENTITY_KEY, pa.string()),
        pa.field(TIMESTAMP_FIELD, pa.timestamp("ns", tz="UTC")),
        pa.field("churned", pa.int64()),
        pa.field("label_complete", pa.bool_()),
    ]
)


def arrow_schema(view: View) -> pa.Schema:
    """The fixed Parquet schema of a view table, so every snapshot's row group matches."""
    keys = [
        pa.field(ENTITY_KEY, pa.string()),
        pa.field(TIMESTAMP_FIELD, pa.timestamp("ns", tz="UTC")),
    ]
    return pa.schema(keys + [pa.field(f.name, ARROW_TYPES[f.type]) for f in view.features])


def partition_count(customers: int, per_partition: int, fixed: int = 0) -> int:
    """How many partitions: `fixed` when set, else enough for `per_partition` customers each.

    Never more partitions than customers (at least one).
    """
    wanted = fixed if fixed > 0 else math.ceil(customers / max(per_partition, 1))
    return max(1, min(wanted, customers))


def partition_of(ids: pa.Array | pa.ChunkedArray, count: int) -> np.ndarray:
    """The partition of each customer id: a stable hash of the id's text modulo `count`.

    The hash (pandas' SipHash with its fixed key) is the same in every process and run, so a
    customer's rows land in the same partition from every table. Each distinct id is hashed
    once (ids repeat across a table's rows). Missing ids go to partition 0.
    """
    if count == 1:
        return np.zeros(len(ids), dtype=np.int64)
    array = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
    encoded = array if pa.types.is_dictionary(array.type) else pc.dictionary_encode(array)
    texts = encoded.dictionary.cast(pa.string()).to_numpy(zero_copy_only=False)
    buckets = (pd.util.hash_array(texts.astype(object)) % np.uint64(count)).astype(np.int64)
    indices = encoded.indices.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    if buckets.size == 0:
        return np.zeros(len(array), dtype=np.int64)
    return buckets[indices]


# --------------------------------------------------------------------------- work folder
@dataclass(frozen=True)
class Work:
    """A work folder for one build: a path or an fsspec URL every worker can reach."""

    url: str

    @property
    def filesystem(self) -> AbstractFileSystem:
        return url_to_fs(self.url)[0]

    @property
    def root(self) -> str:
        return str(url_to_fs(self.url)[1])

    def part(self, kind: str, table: str, index: int) -> str:
        """Path (on `filesystem`) of a partition's file: kind is `inputs` or `outputs`."""
        return f"{self.root}/{kind}/{table}/part-{index:05d}.parquet"

    def exists(self, kind: str, table: str) -> bool:
        return bool(self.filesystem.exists(f"{self.root}/{kind}/{table}"))


@contextmanager
def work_folder(base: str) -> Iterator[Work]:
    """A fresh folder under `base` (path or URL) for one build, removed when the block ends.

    Raises:
        ConfigError: `base` cannot be written (unknown protocol, its fsspec package missing,
            no credentials, unreachable endpoint, ...), in one line naming `compute.work_dir`.
    """
    work = Work(f"{base.rstrip('/')}/features-{uuid.uuid4().hex[:12]}")
    _claim(work, base)
    try:
        yield work
    finally:
        work.filesystem.rm(work.root, recursive=True)


WORK_MARKER = "_loyal_build"
"""A small file written first into each work folder: on object storage creating a folder
writes nothing, so only a write shows that the store is reachable and writable."""


def _claim(work: Work, base: str) -> None:
    """Create the work folder and its marker, or say in one line why `base` cannot be used."""
    try:
        fs = work.filesystem
        fs.makedirs(work.root, exist_ok=True)
        with fs.open(f"{work.root}/{WORK_MARKER}", "wb") as marker:
            marker.write(b"a Loyal feature build's partition files\n")
    except ImportError as error:  # fsspec names the package: "Install s3fs to access S3"
        hint = (
            "; install Loyal's s3 extra (`uv sync --extra s3`)"
            if base.startswith(("s3://", "s3a://"))
            else ""
        )
        raise ConfigError(
            f"compute.work_dir: {base} needs a package that is not installed "
            f"({_first_line(error)}){hint}"
        ) from None
    except Exception as error:  # each fsspec backend raises its own types (botocore's, OSError)
        raise ConfigError(
            f"compute.work_dir: cannot write to {base} "
            f"({type(error).__name__}: {_first_line(error)})"
        ) from None


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else ""


# ------------------------------------------------------------------------------ repartition
@dataclass
class DataBounds:
    """Statistics that span every customer, gathered by the repartition pass.

    Attributes:
        customers: rows of the customers table.
        first_transaction: the first transaction's time (naive UTC), None without any.
        first_signup: the earliest sign-up (naive UTC), None when unknown.
        observed_end: midnight after the latest day holding any event or date.
        has_closures: some customer has a `closed_at`.
        has_channel: some transaction has a channel.
    """

    customers: int = 0
    first_transaction: pd.Timestamp | None = None
    first_signup: pd.Timestamp | None = None
    latest: pd.Timestamp | None = None
    has_closures: bool = False
    has_channel: bool = False

    @property
    def observed_end(self) -> pd.Timestamp:
        if self.latest is None:
            raise DataContractError("transactions", "needs at least one row to place snapshots")
        return self.latest.normalize() + pd.Timedelta(days=1)

    def see(self, table: str, batch: pa.RecordBatch) -> None:
        """Fold one batch of a contract table into the statistics."""
        if table == "customers":
            self.customers += batch.num_rows
            self.first_signup = _earliest(self.first_signup, _bound(batch, "signup_date", "min"))
            self.has_closures |= _known(batch, "closed_at")
            for column in ("signup_date", "closed_at"):
                self.latest = _latest(self.latest, _bound(batch, column, "max"))
            return
        if table == "transactions":
            first = _bound(batch, "ts", "min")
            self.first_transaction = _earliest(self.first_transaction, first)
            self.has_channel |= _known(batch, "channel")
        self.latest = _latest(self.latest, _bound(batch, "ts", "max"))


def _bound(batch: pa.RecordBatch, column: str, which: str) -> pd.Timestamp | None:
    if column not in batch.schema.names or batch.num_rows == 0:
        return None
    value = pc.min_max(batch.column(column))[which].as_py()
    if value is None:
        return None
    stamp = pd.Timestamp(value)
    return stamp.tz_convert("UTC").tz_localize(None) if stamp.tz is not None else stamp


def _known(batch: pa.RecordBatch, column: str) -> bool:
    if column not in batch.schema.names:
        return False
    return batch.column(column).null_count < batch.num_rows


def _earliest(a: pd.Timestamp | None, b: pd.Timestamp | None) -> pd.Timestamp | None:
    return b if a is None else a if b is None else min(a, b)


def _latest(a: pd.Timestamp | None, b: pd.Timestamp | None) -> pd.Timestamp | None:
    return b if a is None else a if b is None else max(a, b)


def customer_rows(contract: Path) -> int:
    """Rows of the contract's customers table, from its Parquet footer."""
    return int(pq.ParquetFile(contract / "customers.parquet").metadata.num_rows)


def repartition(contract: Path, work: Work, count: int) -> DataBounds:
    """Split the customer tables into `count` partitions in one streaming pass each.

    Args:
        contract: the validated contract folder (one `<table>.parquet` per table).
        work: where the partition files go (`inputs/<table>/part-XXXXX.parquet`).
        count: number of partitions.

    Returns:
        The statistics spanning every customer (`DataBounds`).
    """
    bounds = DataBounds()
    fs = work.filesystem
    for table in CUSTOMER_TABLES:
        source = contract / f"{table}.parquet"
        if not source.is_file():
            continue
        file = pq.ParquetFile(source)
        fs.makedirs(f"{work.root}/inputs/{table}", exist_ok=True)
        writers = [
            pq.ParquetWriter(work.part("inputs", table, i), file.schema_arrow, filesystem=fs)
            for i in range(count)
        ]
        try:
            for batch in file.iter_batches(batch_size=BATCH_ROWS):
                bounds.see(table, batch)
                _split(batch, count, writers)
        finally:
            for writer in writers:
                writer.close()
        log.info(
            "repartition: %s, %d rows into %d partitions", table, file.metadata.num_rows, count
        )
    return bounds


def _split(batch: pa.RecordBatch, count: int, writers: Sequence[pq.ParquetWriter]) -> None:
    """Append each row of a batch to its customer's partition, keeping the rows' order."""
    if count == 1:
        writers[0].write_batch(batch)
        return
    bucket = partition_of(batch.column(ENTITY_KEY), count)
    order = np.argsort(bucket, kind="stable")
    edges = np.searchsorted(bucket[order], np.arange(count + 1))
    table = pa.Table.from_batches([batch]).take(pa.array(order))
    for index, writer in enumerate(writers):
        rows = table.slice(int(edges[index]), int(edges[index + 1] - edges[index]))
        if rows.num_rows:
            writer.write_table(rows)


def holding_columns(contract: Path, work: Work, count: int) -> list[str]:
    """Products that get a holdings column, from distinct buyers counted partition by partition."""
    products = [str(p) for p in pd.read_parquet(contract / "products.parquet")["product_id"]]
    if len(products) <= MAX_HOLDING_COLUMNS:
        return products
    fs = work.filesystem
    buyers = pd.Series(dtype=np.int64)
    for index in range(count):
        part = pd.read_parquet(
            work.part("inputs", "transactions", index),
            columns=[ENTITY_KEY, "product_id"],
            filesystem=fs,
        )
        buyers = buyers.add(product_buyers(part), fill_value=0)
    log.info(
        "Holdings columns for the %d most held of %d products", MAX_HOLDING_COLUMNS, len(products)
    )
    return most_held(products, buyers)


# -------------------------------------------------------------------------------- plan
@dataclass(frozen=True)
class BuildPlan:
    """Everything a partition's build needs besides its own tables (shared by all partitions).

    Attributes:
        work: the work folder.
        count: number of partitions.
        products: the products table (small: read whole, the same for every partition).
        snapshots: snapshot times (naive UTC).
        holding: products with a holdings column.
        horizon: the churn horizon of the labels.
        definition: the churn definition in force (closure or inactivity).
        observed_end: end of the observed data (labels reaching past it are incomplete).
        has_channel: whether any transaction records a channel.
        tables: the optional customer tables present (besides customers and transactions).
    """

    work: Work
    count: int
    products: pd.DataFrame
    snapshots: pd.DatetimeIndex
    holding: list[str]
    horizon: WindowChoice
    definition: str
    observed_end: pd.Timestamp
    has_channel: bool
    tables: tuple[str, ...] = field(default_factory=tuple)

    def views(self) -> dict[str, View]:
        return views_for(self.holding)


def label_horizon(
    snapshots: pd.DatetimeIndex, first: pd.Timestamp, observed_end: pd.Timestamp, configured: int
) -> WindowChoice:
    """The churn horizon of the labels, sized from the history (`features.history`).

    Populated snapshots are those after the first sign-up or purchase day (a snapshot only
    holds customers who signed up before it). Logged, so the choice shows in the output.
    """
    populated = [t for t in snapshots if t > first.normalize()]
    choice = churn_horizon(populated, observed_end, configured)
    if choice.chosen is None:
        log.warning("churn labels: %s; labels use the configured horizon", choice.reason)
    else:
        log.info("churn labels: %s", choice.reason)
    return choice


def plan_build(
    contract: Path,
    work: Work,
    count: int,
    bounds: DataBounds,
    frequency: str,
    horizon_days: int,
    churn_definition: str,
    last_n: int | None = None,
) -> BuildPlan:
    """The shared part of every partition's build, from the repartition pass's statistics."""
    if bounds.first_transaction is None:
        raise DataContractError("transactions", "needs at least one row to place snapshots")
    end = bounds.observed_end
    snapshots = snapshot_grid(bounds.first_transaction, end, frequency, last_n=last_n)
    first = bounds.first_transaction
    if bounds.first_signup is not None:
        first = min(first, bounds.first_signup)
    horizon = label_horizon(snapshots, first, end, horizon_days)
    definition = churn_definition
    if definition == "auto":
        definition = "closure" if bounds.has_closures else "inactivity"
    optional = tuple(t for t in CUSTOMER_TABLES[2:] if work.exists("inputs", t))
    return BuildPlan(
        work=work,
        count=count,
        products=pd.read_parquet(contract / "products.parquet"),
        snapshots=snapshots,
        holding=holding_columns(contract, work, count),
        horizon=horizon,
        definition=definition,
        observed_end=end,
        has_channel=bounds.has_channel,
        tables=optional,
    )


# ------------------------------------------------------------------------------ partition
def build_partition(plan: BuildPlan, index: int) -> dict[str, int]:
    """Build one partition's feature tables and churn labels into its output files.

    Runs in this process or on a Dask worker: it reads only its partition's files and the
    plan. Each view's file holds a row group per snapshot, as the single-table build wrote.

    Returns:
        Rows written per output (view name or `_labels`).
    """
    tables = _partition_tables(plan, index)
    fs = plan.work.filesystem
    views = plan.views()
    schemas = {name: arrow_schema(view) for name, view in views.items()}
    rows = dict.fromkeys([*views, LABELS], 0)
    writers: dict[str, pq.ParquetWriter] = {}
    try:
        for name in views:
            fs.makedirs(f"{plan.work.root}/outputs/{name}", exist_ok=True)
            path = plan.work.part("outputs", name, index)
            writers[name] = pq.ParquetWriter(path, schemas[name], filesystem=fs)
        frames = iter_feature_tables(
            tables, plan.snapshots, products=plan.holding, has_channel=plan.has_channel
        )
        for snapshot in frames:
            for name, frame in snapshot.items():
                batch = pa.Table.from_pandas(frame, schema=schemas[name], preserve_index=False)
                writers[name].write_table(batch)
                rows[name] += len(frame)
    finally:
        for writer in writers.values():
            writer.close()
    labels = churn_labels(
        tables,
        plan.snapshots,
        horizon_days=plan.horizon.chosen or plan.horizon.configured,
        definition=plan.definition,  # type: ignore[arg-type]
        observed_end=plan.observed_end,
    )
    fs.makedirs(f"{plan.work.root}/outputs/{LABELS}", exist_ok=True)
    table = pa.Table.from_pandas(labels, schema=LABELS_SCHEMA, preserve_index=False)
    pq.write_table(table, plan.work.part("outputs", LABELS, index), filesystem=fs)
    rows[LABELS] = len(labels)
    return rows


def _partition_tables(plan: BuildPlan, index: int) -> dict[str, pd.DataFrame]:
    fs = plan.work.filesystem
    names = ("customers", "transactions", *plan.tables)
    tables = {
        name: pd.read_parquet(plan.work.part("inputs", name, index), filesystem=fs)
        for name in names
    }
    tables["products"] = plan.products
    return tables


# ------------------------------------------------------------------------------ assemble
def assemble(plan: BuildPlan, folder: Path, labels_file: str) -> dict[str, int]:
    """Copy every partition's output into one table per view (and the labels) in `folder`.

    Row groups are copied one at a time, partition after partition, so memory holds one
    partition's snapshot of one view.

    Returns:
        Rows written per file name.
    """
    schemas = {name: arrow_schema(view) for name, view in plan.views().items()}
    schemas[LABELS] = LABELS_SCHEMA
    fs = plan.work.filesystem
    rows: dict[str, int] = {}
    for name, schema in schemas.items():
        file = labels_file if name == LABELS else f"{name}.parquet"
        with pq.ParquetWriter(folder / file, schema) as writer:
            for index in range(plan.count):
                with fs.open(plan.work.part("outputs", name, index), "rb") as handle:
                    part = pq.ParquetFile(handle)
                    for group in range(part.metadata.num_row_groups):
                        writer.write_table(part.read_row_group(group).cast(schema))
                    rows[file] = rows.get(file, 0) + part.metadata.num_rows
    return rows


def views_rows(rows: Mapping[str, int]) -> str:
    """Rows per output for a log line."""
    return ", ".join(f"{name} {count}" for name, count in rows.items())
