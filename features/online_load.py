"""Bulk load of one snapshot into the online store, in customer chunks instead of row by row.

Feast's `materialize` turns every value into a protobuf message in Python and, on SQLite, runs one
`INSERT` per customer and feature (about 1,000 customers a second here). This module writes the
same rows in bulk:

- SQLite: the values are encoded column by column with numpy into exactly the bytes Feast writes
  (a serialized `feast.types.Value`), then inserted with one `executemany` per chunk of customers,
  in key order, inside one transaction per view (a failed load leaves the view as it was);
- Redis (and any other online store): each chunk goes through Feast's own DataFrame write,
  `FeatureStore.write_to_online_store`, which the Redis store sends as one pipeline per batch.

Only the snapshot's rows are read (a pyarrow filter on `event_timestamp`), one chunk at a time,
so memory stays flat however many snapshots the tables hold.
"""

from __future__ import annotations

import logging
import sqlite3
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import repeat
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from feast import FeatureStore, FeatureView
from feast.infra.key_encoding_utils import serialize_entity_key, serialize_entity_key_prefix
from feast.infra.online_stores.helpers import compute_table_id
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value
from feast.types import Bool, Float64, Int64, String
from feast.value_type import ValueType

from features.catalog import ENTITY_KEY, TIMESTAMP_FIELD

log = logging.getLogger(__name__)

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
    customers, rows = 0, 0
    for name, path in views.items():
        view = store.get_feature_view(name)
        written, cells = _load_view(store, view, path, start, end, chunk_rows)
        customers = max(customers, written)
        rows += cells
        store.registry.apply_materialization(view, store.project, start, end)
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


def _load_view(
    store: FeatureStore,
    view: FeatureView,
    path: Path,
    start: datetime,
    end: datetime,
    chunk_rows: int,
) -> tuple[int, int]:
    batches = snapshot_batches(view, path, start, end, chunk_rows)
    if store.config.online_store.type == "sqlite":
        return _write_sqlite(store, view, batches)
    customers, cells = 0, 0
    for batch in batches:
        store.write_to_online_store(view.name, batch.to_pandas())
        customers += batch.num_rows
        cells += batch.num_rows * len(view.features)
    return customers, cells


def snapshot_batches(
    view: FeatureView, path: Path, start: datetime, end: datetime, chunk_rows: int
) -> Iterator[pa.Table]:
    """The view's rows in `[start, end)`, only its feature columns, a chunk at a time."""
    columns = [ENTITY_KEY, TIMESTAMP_FIELD, *(f.name for f in view.features)]
    dataset = ds.dataset(path, format="parquet")
    stamp = dataset.schema.field(TIMESTAMP_FIELD).type
    lower = pa.scalar(start.astimezone(UTC), type=pa.timestamp("us", tz="UTC")).cast(stamp)
    upper = pa.scalar(end.astimezone(UTC), type=pa.timestamp("us", tz="UTC")).cast(stamp)
    condition = (pc.field(TIMESTAMP_FIELD) >= lower) & (pc.field(TIMESTAMP_FIELD) < upper)
    for batch in dataset.to_batches(columns=columns, filter=condition, batch_size=chunk_rows):
        if batch.num_rows:
            yield pa.Table.from_batches([batch])


def _write_sqlite(
    store: FeatureStore, view: FeatureView, batches: Iterator[pa.Table]
) -> tuple[int, int]:
    config = store.config
    table = compute_table_id(
        config.project, view, config.registry.enable_online_feature_view_versioning
    )
    sql = (
        f'INSERT INTO "{table}" (entity_key, feature_name, value, value_text, event_ts, '
        "created_ts) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(entity_key, feature_name) DO UPDATE "
        "SET value = excluded.value, value_text = excluded.value_text, "
        "event_ts = excluded.event_ts, created_ts = excluded.created_ts"
    )
    version = config.entity_key_serialization_version
    features = sorted(view.features, key=lambda f: f.name)
    customers, cells = 0, 0
    connection = sqlite3.connect(_sqlite_path(store), timeout=60)
    connection.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_MB * 1024}")
    try:
        with connection:
            for batch in batches:
                keys = entity_keys(batch.column(ENTITY_KEY).to_pylist(), version)
                order = np.argsort(np.array(keys, dtype=object), kind="stable")
                values, texts = _encoded(batch, features)
                stamps = _naive_utc(batch.column(TIMESTAMP_FIELD))
                width = len(features)
                rows = zip(
                    np.repeat(np.array(keys, dtype=object)[order], width),
                    np.tile(np.array([f.name for f in features], dtype=object), len(keys)),
                    values[order].ravel(),
                    texts[order].ravel(),
                    np.repeat(np.array(stamps, dtype=object)[order], width),
                    repeat(None),
                    strict=False,
                )
                connection.executemany(sql, rows)
                customers += batch.num_rows
                cells += batch.num_rows * width
    finally:
        connection.close()
    return customers, cells


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


def _naive_utc(column: pa.ChunkedArray) -> list[datetime]:
    """Timestamps as naive UTC datetimes, as Feast's SQLite store writes them."""
    utc = pc.cast(column, pa.timestamp("us", tz="UTC"))
    return [value.replace(tzinfo=None) for value in utc.to_pylist()]


def _encoded(batch: pa.Table, features: list) -> tuple[np.ndarray, np.ndarray]:
    """Serialized `Value` bytes and their `value_text`, one column per feature (rows x features).

    A missing value (null, or NaN in a float column) is an empty `Value`, as Feast writes it.
    """
    values = np.empty((batch.num_rows, len(features)), dtype=object)
    texts = np.empty((batch.num_rows, len(features)), dtype=object)
    for j, feature in enumerate(features):
        values[:, j], texts[:, j] = encode_column(batch.column(feature.name), feature.dtype)
    return values, texts


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
