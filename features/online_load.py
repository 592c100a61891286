"""Bulk load of one snapshot into the online store, in customer chunks instead of row by row.

Feast's `materialize` turns every value into a protobuf message in Python and, on SQLite, runs one
`INSERT` per customer and feature (about 1,000 customers a second here). This module writes the
same rows in bulk; values are encoded column by column with numpy into exactly the bytes Feast
writes (a serialized `feast.types.Value`):

- SQLite: every view is rebuilt beside its table and swapped in, all views in one transaction, so
  a reader sees the previous load or the new one, never half of one. Per chunk of customers (in
  entity-key order) one wide row per customer goes into a staging table, and one
  `INSERT ... SELECT` fans it out into Feast's layout (one row per customer and feature) in
  primary-key order, so SQLite appends instead of searching. The rebuilt table has Feast's
  columns and primary key but is clustered on it (WITHOUT ROWID: one B-tree instead of Feast's
  rowid table plus primary-key index), and Feast's separate `entity_key` index, which the
  primary key's prefix makes redundant, is replaced by an always-empty one of the same name (so
  Feast's `CREATE INDEX IF NOT EXISTS` at apply does not rebuild it); see `clustered_create_sql`.
  Customers of the previous load missing from this one are carried over, as Feast's upsert
  would keep them. `synchronous` is off during the load (the rollback journal still protects
  against a crash of the process) and restored after;
- Redis: one `HSET` per customer with Feast's hash layout (the event timestamp under
  `_ts:<view>`, each value under the murmur3 hash of `<view>:<feature>`), sent in one pipeline per
  chunk; a customer whose stored timestamp is as new or newer is skipped, as Feast does;
- any other online store: each chunk goes through Feast's own DataFrame write,
  `FeatureStore.write_to_online_store`.

Only the snapshot's rows of a view's columns are read (a pyarrow filter on `event_timestamp`).
"""

from __future__ import annotations

import logging
import sqlite3
import struct
import time
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from feast import FeatureStore, FeatureView
from feast.infra.key_encoding_utils import serialize_entity_key, serialize_entity_key_prefix
from feast.infra.online_stores.helpers import _mmh3, compute_table_id, compute_versioned_name
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value
from feast.repo_config import RepoConfig
from feast.types import Bool, Float64, Int64, String
from feast.value_type import ValueType
from google.protobuf.timestamp_pb2 import Timestamp

from features.catalog import ENTITY_KEY, TIMESTAMP_FIELD
from loyal.errors import NotReadyError

log = logging.getLogger(__name__)
_T = TypeVar("_T")

CHUNK_ROWS = 50_000
"""Customers per chunk: bounds memory (about 60 features x 50,000 values in flight)."""

SQLITE_CACHE_MB = 512
"""Page cache of the loading connection: the index updates of a large load stay in memory."""

_DOUBLE_TAG, _INT64_TAG, _BOOL_TAG, _STRING_TAG = 0x29, 0x20, 0x38, 0x12
"""Protobuf field tags of `feast.types.Value`: double_val=5 (fixed64), int64_val=4 (varint),
bool_val=7 (varint), string_val=2 (length-delimited)."""


@dataclass(frozen=True)
class LoadReport:
    """What one bulk load wrote.

    Attributes:
        views: the views loaded.
        customers: distinct customers written (the largest view's count).
        rows: (customer, feature) rows written across views.
        seconds: wall time.
    """

    views: tuple[str, ...]
    customers: int
    rows: int
    seconds: float

    @property
    def customers_per_second(self) -> float:
        """Throughput of the load."""
        return self.customers / self.seconds if self.seconds > 0 else float("inf")


def bulk_load(
    store: FeatureStore,
    views: dict[str, Path],
    start: datetime,
    end: datetime,
    chunk_rows: int = CHUNK_ROWS,
) -> LoadReport:
    """Write the rows of each view with `start <= event_timestamp < end` to the online store.

    Args:
        store: the feature store (its online store decides the write path).
        views: table path of each registered view to load, by view name.
        start: first timestamp loaded (inclusive), like Feast's `materialize`.
        end: last timestamp loaded (exclusive).
        chunk_rows: customers per write.
    """
    started = time.perf_counter()
    written = _load_views(store, views, start, end, chunk_rows)
    for name in views:
        view = store.get_feature_view(name)
        store.registry.apply_materialization(view, store.project, start, end)
    customers = max((count for count, _ in written.values()), default=0)
    rows = sum(cells for _, cells in written.values())
    seconds = time.perf_counter() - started
    report = LoadReport(tuple(views), customers, rows, seconds)
    log.info(
        "Loaded %d customers (%d values, %d views) into the online store in %.1f s (%.0f/s)",
        customers,
        rows,
        len(views),
        seconds,
        report.customers_per_second,
    )
    return report


def _load_views(
    store: FeatureStore, views: dict[str, Path], start: datetime, end: datetime, chunk_rows: int
) -> dict[str, tuple[int, int]]:
    """(customers, values) written per view, through the store's fastest path."""
    loaded = {name: store.get_feature_view(name) for name in views}
    online = store.config.online_store.type
    if online == "sqlite":
        return _write_sqlite(store, loaded, views, start, end, chunk_rows)
    written = {}
    for name, view in loaded.items():
        batches = snapshot_batches(view, views[name], start, end, chunk_rows)
        if online == "redis":
            written[name] = _write_redis(store, view, batches)
        else:
            written[name] = _write_through_feast(store, view, batches)
    return written


def _write_through_feast(
    store: FeatureStore, view: FeatureView, batches: Iterator[pa.Table]
) -> tuple[int, int]:
    customers = 0
    for batch in batches:
        store.write_to_online_store(view.name, batch.to_pandas())
        customers += batch.num_rows
    return customers, customers * len(view.features)


def snapshot_batches(
    view: FeatureView, path: Path, start: datetime, end: datetime, chunk_rows: int
) -> Iterator[pa.Table]:
    """The view's rows in `[start, end)`, only its feature columns, a chunk at a time."""
    for batch in _snapshot_dataset(view, path, start, end):
        for offset in range(0, batch.num_rows, chunk_rows):
            yield batch.slice(offset, chunk_rows)


def _snapshot_dataset(
    view: FeatureView, path: Path, start: datetime, end: datetime
) -> Iterator[pa.Table]:
    columns = [ENTITY_KEY, TIMESTAMP_FIELD, *(f.name for f in view.features)]
    dataset = ds.dataset(path, format="parquet")
    stamp = dataset.schema.field(TIMESTAMP_FIELD).type
    lower = pa.scalar(start.astimezone(UTC), type=pa.timestamp("us", tz="UTC")).cast(stamp)
    upper = pa.scalar(end.astimezone(UTC), type=pa.timestamp("us", tz="UTC")).cast(stamp)
    condition = (pc.field(TIMESTAMP_FIELD) >= lower) & (pc.field(TIMESTAMP_FIELD) < upper)
    for batch in dataset.to_batches(columns=columns, filter=condition):
        if batch.num_rows:
            yield pa.Table.from_batches([batch])


# ----------------------------------------------------------------------------------- SQLite


def _write_sqlite(
    store: FeatureStore,
    views: dict[str, FeatureView],
    paths: dict[str, Path],
    start: datetime,
    end: datetime,
    chunk_rows: int,
) -> dict[str, tuple[int, int]]:
    config = store.config
    versioning = config.registry.enable_online_feature_view_versioning
    connection = sqlite3.connect(_sqlite_path(store), timeout=60, isolation_level=None)
    written = {}
    try:
        synchronous = connection.execute("PRAGMA synchronous").fetchone()[0]
        connection.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_MB * 1024}")
        connection.execute("PRAGMA synchronous = OFF")
        connection.execute("PRAGMA temp_store = MEMORY")  # the staging chunk never hits a file
        connection.execute("BEGIN IMMEDIATE")
        try:
            for name, view in views.items():
                table = compute_table_id(config.project, view, versioning)
                snapshot = _sorted_snapshot(view, paths[name], start, end, config)
                written[name] = _rebuild_table(connection, table, view, snapshot, chunk_rows)
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        finally:
            connection.execute(f"PRAGMA synchronous = {synchronous}")
    finally:
        connection.close()
    return written


@dataclass(frozen=True)
class _Snapshot:
    """One view's snapshot rows and their Feast entity keys, in entity-key order."""

    rows: pa.Table
    keys: np.ndarray


def _sorted_snapshot(
    view: FeatureView, path: Path, start: datetime, end: datetime, config: RepoConfig
) -> _Snapshot:
    parts = list(_snapshot_dataset(view, path, start, end))
    if not parts:
        return _Snapshot(pa.table({}), np.empty(0, dtype=object))
    rows = pa.concat_tables(parts)
    keys = np.array(
        entity_keys(rows.column(ENTITY_KEY).to_pylist(), config.entity_key_serialization_version),
        dtype=object,
    )
    order = np.argsort(keys, kind="stable")
    if (order != np.arange(len(order))).any():
        rows, keys = rows.take(pa.array(order)), keys[order]
    return _Snapshot(rows, keys)


def _rebuild_table(
    connection: sqlite3.Connection,
    table: str,
    view: FeatureView,
    snapshot: _Snapshot,
    chunk_rows: int,
) -> tuple[int, int]:
    """Build the view's new table beside the old one, then swap it in (inside the caller's
    transaction); (customers, values) written."""
    schema = _table_schema(connection, table)
    loading = f"{table}__loading"
    connection.execute(f"DROP TABLE IF EXISTS {_quoted(loading)}")
    connection.execute(
        clustered_create_sql(schema.create_sql).replace(_quoted(table), _quoted(loading), 1)
    )
    # the old table keeps its primary key (all the carry-over needs) until it is dropped
    connection.execute(f"DROP INDEX IF EXISTS {_quoted(entity_key_index(table))}")
    connection.execute(placeholder_index_sql(table, loading))
    features = sorted(f.name for f in view.features)
    dtypes = {f.name: f.dtype for f in view.features}
    fan_out = _stage(connection, loading, features)
    for rows in _prefetched(_encoded_chunks(snapshot, features, dtypes, chunk_rows)):
        connection.executemany(fan_out.insert_sql, rows)
        connection.execute(fan_out.fan_out_sql)
        connection.execute(f"DELETE FROM {_STAGE}")
    kept = _carry_over(connection, table, loading, schema.columns)
    connection.execute(f"DROP TABLE {_quoted(table)}")
    connection.execute(f"ALTER TABLE {_quoted(loading)} RENAME TO {_quoted(table)}")
    connection.execute(f"DROP TABLE {_STAGE}")
    connection.execute(f"DROP TABLE {_FEATURES}")
    log.info(
        "Online view %s: %s customers x %d features written, %s rows of earlier customers kept",
        view.name,
        f"{snapshot.rows.num_rows:,}",
        len(features),
        f"{kept:,}",
    )
    return snapshot.rows.num_rows, snapshot.rows.num_rows * len(features)


def clustered_create_sql(create_sql: str) -> str:
    """Feast's `CREATE TABLE` of a view, as a table clustered on its primary key.

    Feast's table is a rowid B-tree plus the B-tree of its PRIMARY KEY (entity_key,
    feature_name): every row is stored twice. WITHOUT ROWID keeps the rows in the primary
    key's B-tree alone, which Feast's reads (`entity_key IN (...)`), its upserts (`ON
    CONFLICT (entity_key, feature_name)`) and Loyal's reader search directly.
    """
    if create_sql.rstrip().upper().endswith("WITHOUT ROWID"):
        return create_sql
    return f"{create_sql.rstrip()} WITHOUT ROWID"


def entity_key_index(table: str) -> str:
    """The name of the index Feast's `update` creates on a view's `entity_key`."""
    return f"{table}_ek"


def placeholder_index_sql(table: str, target: str) -> str:
    """An always-empty index under the name of Feast's entity-key index.

    The primary key's prefix already serves every lookup by entity_key (see EXPLAIN QUERY
    PLAN), so Feast's separate index only costs a third B-tree of every row. Feast's `apply`
    runs `CREATE INDEX IF NOT EXISTS <table>_ek`, which would rebuild it over every row: an
    index of that name must exist. Primary-key columns of a WITHOUT ROWID table are NOT NULL,
    so this partial index never holds an entry and the planner never picks it.
    """
    return (
        f"CREATE INDEX {_quoted(entity_key_index(table))} ON {_quoted(target)} (entity_key) "
        "WHERE entity_key IS NULL"
    )


@dataclass(frozen=True)
class _TableSchema:
    create_sql: str
    columns: tuple[str, ...]


def _table_schema(connection: sqlite3.Connection, table: str) -> _TableSchema:
    """How Feast created a view's table, read back from SQLite itself."""
    found = connection.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()
    if found is None or _quoted(table) not in found[0]:
        raise NotReadyError(
            f"online store: table {table} is missing: run `loyal features apply` first"
        )
    columns = [row[1] for row in connection.execute(f"PRAGMA table_info({_quoted(table)})")]
    return _TableSchema(found[0], tuple(columns))


_STAGE = "temp.loyal_online_stage"
_FEATURES = "temp.loyal_online_features"


@dataclass(frozen=True)
class _FanOut:
    insert_sql: str
    fan_out_sql: str


def _stage(connection: sqlite3.Connection, target: str, features: list[str]) -> _FanOut:
    """A staging table of one wide row per customer, and the SQL fanning it out into `target`.

    The fan-out crosses each staged customer with the features in name order, so the rows come
    out in the primary key's order (entity_key, feature_name).
    """
    width = len(features)
    value_columns = ", ".join(f"v{j} BLOB, t{j} TEXT" for j in range(width))
    connection.execute(f"DROP TABLE IF EXISTS {_STAGE}")
    connection.execute(f"DROP TABLE IF EXISTS {_FEATURES}")
    connection.execute(f"CREATE TABLE {_STAGE} (k BLOB, ts TIMESTAMP, {value_columns})")
    connection.execute(f"CREATE TABLE {_FEATURES} (j INTEGER PRIMARY KEY, name TEXT)")
    connection.executemany(f"INSERT INTO {_FEATURES} VALUES (?, ?)", enumerate(features))
    value, text = _column_of_feature("s.v", 0, width), _column_of_feature("s.t", 0, width)
    return _FanOut(
        insert_sql=f"INSERT INTO {_STAGE} VALUES ({', '.join('?' * (2 + 2 * width))})",
        fan_out_sql=(
            f"INSERT INTO {_quoted(target)} "
            "(entity_key, feature_name, value, value_text, event_ts, created_ts) "
            f"SELECT s.k, f.name, {value}, {text}, s.ts, NULL "
            f"FROM {_STAGE} AS s CROSS JOIN {_FEATURES} AS f"
        ),
    )


def _column_of_feature(prefix: str, low: int, high: int) -> str:
    """SQL picking column `<prefix><f.j>` among `low <= j < high` by bisection.

    A flat `CASE f.j WHEN 0 ... WHEN 57` compares each fanned-out row about 29 times on
    average; nested halves compare it about six times."""
    if high - low == 1:
        return f"{prefix}{low}"
    middle = (low + high) // 2
    below, above = _column_of_feature(prefix, low, middle), _column_of_feature(prefix, middle, high)
    return f"CASE WHEN f.j < {middle} THEN {below} ELSE {above} END"


def _encoded_chunks(
    snapshot: _Snapshot, features: list[str], dtypes: Mapping[str, object], chunk_rows: int
) -> Iterator[list[tuple[object, ...]]]:
    for offset in range(0, snapshot.rows.num_rows, chunk_rows):
        chunk = snapshot.rows.slice(offset, chunk_rows)
        keys = snapshot.keys[offset : offset + chunk_rows]
        yield list(_wide_rows(chunk, keys, features, dtypes))


def _prefetched(chunks: Iterator[_T]) -> Iterator[_T]:
    """The chunks, each computed in a worker thread while the caller uses the one before.

    SQLite runs the fan-out without the GIL, so encoding the next chunk overlaps writing this
    one (two cores do both at once)."""
    with ThreadPoolExecutor(max_workers=1) as worker:
        pending = worker.submit(next, chunks, None)
        while (current := pending.result()) is not None:
            pending = worker.submit(next, chunks, None)
            yield current


def _wide_rows(
    chunk: pa.Table, keys: np.ndarray, features: list[str], dtypes: Mapping[str, object]
) -> Iterator[tuple[object, ...]]:
    """(entity key, event timestamp, value 0, text 0, value 1, text 1, ...) per customer.

    Values are bound as `bytearray`: Python's `sqlite3` binds a bytearray directly but sends
    every `bytes` parameter through its adapter look-up first, which made binding the wide rows
    about three times slower than building them."""
    columns: list[Iterable[object]] = [keys, _stored_timestamps(chunk.column(TIMESTAMP_FIELD))]
    for name in features:
        values, texts = encode_column(chunk.column(name), dtypes[name])
        columns += [list(map(bytearray, values)), texts]
    return zip(*columns, strict=True)


def _carry_over(
    connection: sqlite3.Connection, table: str, loading: str, columns: tuple[str, ...]
) -> int:
    """Copy the rows of customers the previous load had and this one lacks (Feast's upsert
    leaves them in place); how many rows."""
    names = ", ".join(_quoted(c) for c in columns)
    return connection.execute(
        f"INSERT INTO {_quoted(loading)} ({names}) SELECT {names} FROM {_quoted(table)} "
        f"WHERE entity_key IN (SELECT d.entity_key FROM "
        f"(SELECT DISTINCT entity_key FROM {_quoted(table)}) AS d WHERE NOT EXISTS "
        f"(SELECT 1 FROM {_quoted(loading)} AS n WHERE n.entity_key = d.entity_key))"
    ).rowcount


def _quoted(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


# ------------------------------------------------------------------------------------ Redis


def _write_redis(
    store: FeatureStore, view: FeatureView, batches: Iterator[pa.Table]
) -> tuple[int, int]:
    """Feast's Redis layout written directly: one HSET per customer, one pipeline per chunk.

    As in Feast's `online_write_batch`, a customer whose stored `_ts:<view>` is as new as this
    row or newer keeps its values.
    """
    config = store.config
    versioned = compute_versioned_name(view, config.registry.enable_online_feature_view_versioning)
    ts_field = f"_ts:{versioned}"
    features = [(f.name, f.dtype, _mmh3(f"{versioned}:{f.name}")) for f in view.features]
    # Feast's own client: the same connection string, TLS, cluster or sentinel settings
    redis_store: Any = store._get_provider().online_store
    client = redis_store._get_client(config.online_store)
    project = config.project.encode("utf-8")
    customers, cells = 0, 0
    for batch in batches:
        keys = [
            key + project
            for key in entity_keys(
                batch.column(ENTITY_KEY).to_pylist(), config.entity_key_serialization_version
            )
        ]
        stamps = _proto_timestamps(batch.column(TIMESTAMP_FIELD))
        newer = _newer_than_stored(client, keys, ts_field, stamps)
        encoded = [encode_column(batch.column(name), dtype)[0] for name, dtype, _ in features]
        fields = [ts_field, *(field for _, _, field in features)]
        with client.pipeline(transaction=False) as pipe:
            for i in np.flatnonzero(newer):
                values = [stamps[i][1], *(column[i] for column in encoded)]
                pipe.hset(keys[i], mapping=dict(zip(fields, values, strict=True)))
                if config.online_store.key_ttl_seconds:
                    pipe.expire(name=keys[i], time=config.online_store.key_ttl_seconds)
            pipe.execute()
        customers += int(newer.sum())
        cells += int(newer.sum()) * len(features)
    return customers, cells


def _proto_timestamps(column: pa.ChunkedArray) -> list[tuple[int, bytes]]:
    """(nanoseconds since the epoch, serialized `google.protobuf.Timestamp`) of each row."""
    nanos = pc.cast(column, pa.timestamp("ns", tz="UTC")).to_numpy(zero_copy_only=False)
    serialized: dict[int, tuple[int, bytes]] = {}
    out = []
    for value in nanos.astype("int64").tolist():
        if value not in serialized:
            stamp = Timestamp(seconds=value // 1_000_000_000, nanos=value % 1_000_000_000)
            serialized[value] = (value, stamp.SerializeToString())
        out.append(serialized[value])
    return out


def _newer_than_stored(
    client: Any, keys: list[bytes], ts_field: str, stamps: list[tuple[int, bytes]]
) -> np.ndarray:
    """Whether each row is newer than the timestamp Redis holds for its customer and view."""
    with client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.hmget(key, ts_field)
        stored = [found[0] for found in pipe.execute()]
    newer = np.ones(len(keys), dtype=bool)
    for i, previous in enumerate(stored):
        if previous:
            before = Timestamp()
            before.ParseFromString(previous)
            newer[i] = stamps[i][0] > before.seconds * 1_000_000_000 + before.nanos
    return newer


def _sqlite_path(store: FeatureStore) -> str:
    config = store.config
    path = Path(config.online_store.path)
    if config.repo_path and not path.is_absolute():
        path = Path(config.repo_path) / path
    return str(path)


def entity_keys(customer_ids: list[str], version: int) -> list[bytes]:
    """Feast's serialized entity keys of customers (the online tables' `entity_key`).

    Version 3 keys are a fixed prefix (the join key) then the value's type, length and UTF-8
    bytes: built here with one `struct.pack` per customer; checked against Feast's own
    `serialize_entity_key` on the first customer, which serializes them all otherwise.
    """
    if not customer_ids:
        return []
    encoded = [str(c).encode("utf8") for c in customer_ids]
    if version >= 3:
        head = serialize_entity_key_prefix([ENTITY_KEY], version) + struct.pack(
            "<I", ValueType.STRING.value
        )
        fast = [head + struct.pack("<I", len(b)) + b for b in encoded]
        if fast[0] == _feast_key(customer_ids[0], version):
            return fast
    return [_feast_key(c, version) for c in customer_ids]


def _feast_key(customer_id: str, version: int) -> bytes:
    return serialize_entity_key(
        EntityKey(join_keys=[ENTITY_KEY], entity_values=[Value(string_val=str(customer_id))]),
        entity_key_serialization_version=version,
    )


def _stored_timestamps(column: pa.ChunkedArray) -> np.ndarray:
    """Timestamps as Feast's SQLite store writes them: naive UTC datetimes, passed through the
    `datetime` adapter Feast's module registers with `sqlite3` (epoch seconds today).

    A snapshot holds one timestamp: each distinct one is converted once, not once per row at
    binding time."""
    import feast.infra.online_stores.sqlite  # noqa: F401  (registers the adapters)

    utc = pc.cast(column, pa.timestamp("us", tz="UTC"))
    distinct = pc.unique(utc)
    adapt = sqlite3.adapters.get((datetime, sqlite3.PrepareProtocol), lambda value: value)
    stored = np.array(
        [adapt(value.replace(tzinfo=None)) for value in distinct.to_pylist()], dtype=object
    )
    return stored[pc.index_in(utc, value_set=distinct).to_numpy(zero_copy_only=False)]


def encode_column(column: pa.ChunkedArray, dtype: object) -> tuple[np.ndarray, np.ndarray]:
    """One column as serialized `feast.types.Value` bytes and `value_text` strings."""
    n = len(column)
    values = np.full(n, b"", dtype=object)
    texts = np.full(n, None, dtype=object)
    if dtype == Float64:
        numbers = column.to_numpy(zero_copy_only=False).astype(np.float64)
        present = ~np.isnan(numbers)
        values[present] = _fixed_bytes(_DOUBLE_TAG, numbers[present])
        texts[present] = list(map(str, numbers[present].tolist()))
    elif dtype in (Int64, Bool):
        present = ~np.asarray(column.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        filler = pa.scalar(False if dtype == Bool else 0, type=column.type)
        raw = pc.fill_null(column, filler).to_numpy(zero_copy_only=False)[present]
        if dtype == Bool:
            flags = raw.astype(bool)
            values[present] = np.array([b"8\x00", b"8\x01"], dtype=object)[flags.astype(int)]
            texts[present] = np.array(["False", "True"], dtype=object)[flags.astype(int)]
        else:
            numbers = raw.astype(np.int64)
            values[present] = _varint_bytes(_INT64_TAG, numbers)
            texts[present] = list(map(str, numbers.tolist()))
    elif dtype == String:
        for i, text in enumerate(column.to_pylist()):
            if text is not None:
                values[i] = Value(string_val=text).SerializeToString()
                texts[i] = text
    else:
        raise TypeError(f"bulk online load does not handle feature type {dtype}")
    return values, texts


def _fixed_bytes(tag: int, numbers: np.ndarray) -> np.ndarray:
    """Tag byte plus 8 little-endian bytes per double, as bytes objects."""
    packed = np.empty((len(numbers), 9), dtype=np.uint8)
    packed[:, 0] = tag
    packed[:, 1:] = numbers.astype("<f8").view(np.uint8).reshape(-1, 8)
    return _rows_as_bytes(packed)


def _varint_bytes(tag: int, numbers: np.ndarray) -> np.ndarray:
    """Tag byte plus the protobuf varint of each int64 (negatives take ten bytes)."""
    unsigned = numbers.astype(np.int64).view(np.uint64)
    groups = np.stack([(unsigned >> np.uint64(7 * k)) & np.uint64(0x7F) for k in range(10)], 1)
    higher = np.zeros((len(numbers), 10), dtype=bool)
    for k in range(9):  # a tenth group never has a successor (and a shift by 70 is undefined)
        higher[:, k] = (unsigned >> np.uint64(7 * (k + 1))) != 0
    lengths = 1 + higher.sum(axis=1)
    packed = np.zeros((len(numbers), 11), dtype=np.uint8)
    packed[:, 0] = tag
    packed[:, 1:] = (groups | np.where(higher, 0x80, 0).astype(np.uint64)).astype(np.uint8)
    out = np.empty(len(numbers), dtype=object)
    for length in np.unique(lengths):
        rows = lengths == length
        out[rows] = _rows_as_bytes(np.ascontiguousarray(packed[rows, : length + 1]))
    return out


def _rows_as_bytes(packed: np.ndarray) -> np.ndarray:
    """Each row of a uint8 matrix as one bytes object (C speed through a void view)."""
    out = np.empty(len(packed), dtype=object)
    if len(packed):
        out[:] = packed.view(f"V{packed.shape[1]}").ravel().tolist()
    return out
