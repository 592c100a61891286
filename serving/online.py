"""Online features for serving: through Feast, or straight from Feast's SQLite tables (fast path).

Both readers answer the same question, one dict of feature values per customer (None for a
customer the store does not know), with the names and values `get_online_features(...).to_dict()`
gives for the feature service. The SQLite reader skips Feast's per-call planning (registry
lookups, response protos) and reads the same rows with one indexed query; a service test keeps
its answers equal to Feast's.
"""

from __future__ import annotations

import logging
import sqlite3
import struct
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from features.catalog import ENTITY_KEY
from loyal.errors import LoyalError

if TYPE_CHECKING:
    from feast import FeatureService, FeatureStore

    from loyal.settings import Settings

log = logging.getLogger(__name__)

Row = dict[str, Any]


class FeatureStoreError(LoyalError):
    """The online feature store cannot be read (missing, unreachable or not set up)."""


class OnlineReader(Protocol):
    """Reads a feature service's online values by customer id."""

    name: str

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The features each row holds, in the service's order."""
        ...

    @property
    def views(self) -> tuple[str, ...]:
        """The feature views the service reads."""
        ...

    def read(self, customer_ids: Sequence[str]) -> list[Row | None]:
        """One row per id, in order; None for a customer the store does not know.

        Raises:
            FeatureStoreError: the store cannot be read.
        """
        ...

    def probe(self) -> None:
        """Raise FeatureStoreError when the store cannot be read right now."""
        ...


def _is_unknown(row: Row) -> bool:
    return all(value is None for value in row.values())


def _feature_service(store: FeatureStore, name: str) -> FeatureService:
    try:
        return store.get_feature_service(name)
    except Exception as exc:  # Feast raises its own not-found types
        raise FeatureStoreError(
            f"feature service '{name}' is not registered in Feast ({exc}); "
            "run `loyal features apply`"
        ) from None


# --- Feast ---------------------------------------------------------------------------------------


class FeastReader:
    """`FeatureStore.get_online_features` through the feature service (any online store)."""

    name = "feast"

    def __init__(self, store: FeatureStore, service: str) -> None:
        self._store = store
        self._service = _feature_service(store, service)
        self._names = tuple(
            f.name for p in self._service.feature_view_projections for f in p.features
        )
        self._views = tuple(p.name for p in self._service.feature_view_projections)

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The features each row holds, in the service's order."""
        return self._names

    @property
    def views(self) -> tuple[str, ...]:
        """The feature views the service reads."""
        return self._views

    def read(self, customer_ids: Sequence[str]) -> list[Row | None]:
        """One row per id, in order; None for a customer the store does not know."""
        try:
            response = self._store.get_online_features(
                features=self._service,
                entity_rows=[{ENTITY_KEY: cid} for cid in customer_ids],
            ).to_dict()
        except Exception as exc:
            raise FeatureStoreError(f"online store read failed: {exc}") from exc
        rows: list[Row | None] = []
        for i in range(len(customer_ids)):
            row = {name: response[name][i] for name in self._names}
            rows.append(None if _is_unknown(row) else row)
        return rows

    def probe(self) -> None:
        """Read one (unknown) customer."""
        self.read(["__probe__"])


# --- SQLite fast path ----------------------------------------------------------------------------


ROWS_KEPT = 20_000
"""Decoded rows a reader keeps per thread while the store is unchanged (then restarted)."""


@dataclass(frozen=True)
class _Table:
    """One feature view's online table and the features the service takes from it."""

    name: str
    features: frozenset[str]


@dataclass(frozen=True)
class _Plan:
    """What to read: the tables, the features in output order, and the query for one id."""

    tables: tuple[_Table, ...]
    names: tuple[str, ...]
    views: tuple[str, ...]
    one_sql: str


class SqliteReader:
    """Feast's embedded SQLite online store read directly: one UNION query per customer.

    Values are Feast `ValueProto`s decoded with Feast's own converter, so rows equal
    `get_online_features(...).to_dict()`. The file is opened read-only (a missing file is an
    error, never a new empty store) and reopened when it is replaced; the plan is rebuilt when
    the Feast registry changes (a view added, e.g. batch scores). Decoded rows are kept while
    SQLite's `data_version` says nothing was written since (checked on every read).
    """

    name = "sqlite"

    def __init__(self, store: FeatureStore, service: str, refresh_seconds: float = 30.0) -> None:
        from feast.infra.online_stores.sqlite import SqliteOnlineStoreConfig

        config = store.config
        online = config.online_store
        if not isinstance(online, SqliteOnlineStoreConfig):
            raise FeatureStoreError(
                f"the SQLite reader needs Feast's sqlite online store, not {online.type}"
            )
        self._store = store
        self._service_name = service
        self._path = Path(online.path)
        self._key_version = config.entity_key_serialization_version
        self._refresh_seconds = refresh_seconds
        self._registry_path = _file_registry_path(store)
        self._registry_mtime = _mtime(self._registry_path)
        self._checked_at = time.monotonic()
        self._plan = self._make_plan()
        self._local = threading.local()

    # ------------------------------------------------------------------------------- planning
    def _make_plan(self) -> _Plan:
        from feast.infra.online_stores.helpers import compute_table_id

        service = _feature_service(self._store, self._service_name)
        versioning = bool(
            getattr(self._store.config.registry, "enable_online_feature_view_versioning", False)
        )
        tables: list[_Table] = []
        names: list[str] = []
        for projection in service.feature_view_projections:
            view = self._store.get_feature_view(projection.name)
            table = compute_table_id(self._store.config.project, view, versioning)
            features = [f.name for f in projection.features]
            tables.append(_Table(table, frozenset(features)))
            names.extend(features)
        union = " UNION ALL ".join(
            f'SELECT {i}, feature_name, value FROM "{t.name}" WHERE entity_key = ?'
            for i, t in enumerate(tables)
        )
        return _Plan(
            tables=tuple(tables),
            names=tuple(names),
            views=tuple(p.name for p in service.feature_view_projections),
            one_sql=union,
        )

    def _maybe_refresh(self) -> None:
        """Rebuild the plan when the file registry changed (checked every refresh_seconds)."""
        now = time.monotonic()
        if self._registry_path is None or now - self._checked_at < self._refresh_seconds:
            return
        self._checked_at = now
        mtime = _mtime(self._registry_path)
        if mtime == self._registry_mtime:
            return
        self._registry_mtime = mtime
        try:
            self._store.refresh_registry()
            self._plan = self._make_plan()
            log.info("feature service %s re-read: views %s", self._service_name, self._plan.views)
        except Exception as exc:  # keep serving with the plan we have
            log.warning("could not re-read the Feast registry: %s", exc)

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The features each row holds, in the service's order."""
        return self._plan.names

    @property
    def views(self) -> tuple[str, ...]:
        """The feature views the service reads."""
        return self._plan.views

    # -------------------------------------------------------------------------------- reading
    def _connection(self) -> sqlite3.Connection:
        """This thread's read-only connection, reopened when the file was replaced."""
        try:
            stat = self._path.stat()
        except OSError:
            raise FeatureStoreError(
                f"online store {self._path} is missing; run `loyal features materialize`"
            ) from None
        identity = (stat.st_dev, stat.st_ino)
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and self._local.identity == identity:
            return conn
        if conn is not None:
            conn.close()
        try:
            conn = sqlite3.connect(
                f"file:{self._path}?mode=ro", uri=True, timeout=0.5, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise FeatureStoreError(f"cannot open online store {self._path}: {exc}") from None
        self._local.conn = conn
        self._local.identity = identity
        return conn

    def _key(self, customer_id: str) -> bytes:
        return _entity_key(customer_id, self._key_version)

    def _query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        conn = self._connection()
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            self._local.conn = None
            conn.close()
            raise FeatureStoreError(f"online store read failed: {exc}") from None

    def read(self, customer_ids: Sequence[str]) -> list[Row | None]:
        """One row per id, in order; None for a customer the store does not know."""
        self._maybe_refresh()
        if len(customer_ids) == 1:
            return [self._read_one(customer_ids[0])]
        return self._read_many(customer_ids)

    def _read_one(self, customer_id: str) -> Row | None:
        plan = self._plan
        kept = self._kept(plan)
        if customer_id in kept:
            row = kept[customer_id]
        else:
            key = self._key(customer_id)
            rows = self._query(plan.one_sql, [key] * len(plan.tables))
            row = self._decode(plan, ((t, n, v) for t, n, v in rows))
            if len(kept) >= ROWS_KEPT:
                kept.clear()
            kept[customer_id] = row
        return None if row is None else dict(row)

    def _kept(self, plan: _Plan) -> dict[str, Row | None]:
        """This thread's decoded rows, valid while nothing was written to the store.

        SQLite's `data_version` changes when any other connection (a materialization, another
        process) commits to the file, so rows kept under the same version, connection and plan
        are exactly what the tables hold now; a change starts them afresh.
        """
        version = self._query("PRAGMA data_version", ())[0][0]
        local = self._local
        state = (local.conn, plan, version)
        kept: dict[str, Row | None] | None = getattr(local, "kept", None)
        if kept is None or local.kept_state != state:
            kept = local.kept = {}
            local.kept_state = state
        return kept

    def _read_many(self, customer_ids: Sequence[str]) -> list[Row | None]:
        plan = self._plan
        keys = {cid: self._key(cid) for cid in dict.fromkeys(customer_ids)}
        by_key: dict[bytes, list[tuple[int, str, bytes]]] = {k: [] for k in keys.values()}
        marks = ",".join("?" * len(keys))
        for i, table in enumerate(plan.tables):
            sql = (
                f'SELECT entity_key, feature_name, value FROM "{table.name}" '
                f"WHERE entity_key IN ({marks})"
            )
            for key, name, value in self._query(sql, list(keys.values())):
                by_key[key].append((i, name, value))
        decoded = {cid: self._decode(plan, by_key[key]) for cid, key in keys.items()}
        return [decoded[cid] for cid in customer_ids]

    @staticmethod
    def _decode(plan: _Plan, rows: Any) -> Row | None:
        row: Row = dict.fromkeys(plan.names)
        found = False
        for index, name, blob in rows:
            if name not in plan.tables[index].features:
                continue
            found = True
            row[name] = decode_value(blob)
        return row if found and not _is_unknown(row) else None

    def probe(self) -> None:
        """Check that every table of the plan can be read."""
        for table in self._plan.tables:
            self._query(f'SELECT 1 FROM "{table.name}" LIMIT 1', [])


_SCALARS = frozenset(
    {"int32_val", "int64_val", "float_val", "double_val", "string_val", "bool_val"}
)
_DOUBLE = struct.Struct("<d")
_FLOAT = struct.Struct("<f")
_TAG_STRING, _TAG_INT32, _TAG_INT64, _TAG_DOUBLE, _TAG_FLOAT, _TAG_BOOL = (
    0x12,  # field 2, length-delimited
    0x18,  # field 3, varint
    0x20,  # field 4, varint
    0x29,  # field 5, 64-bit
    0x35,  # field 6, 32-bit
    0x38,  # field 7, varint
)


def _varint(blob: bytes, start: int) -> tuple[int, int]:
    """A protobuf varint at `start`: its value and the position after it."""
    value, shift, position = 0, 0, start
    while True:
        byte = blob[position]
        value |= (byte & 0x7F) << shift
        position += 1
        if byte < 0x80:
            return value, position
        shift += 7


def decode_value(blob: bytes | None) -> Any:
    """A serialized Feast `Value` as Python, as Feast's converter gives it.

    Scalar values (one field: double, float, int32, int64, bool, string) are read straight
    from the protobuf wire format, ~5x faster than parsing a message; anything else (lists,
    maps, timestamps, extra fields) goes through protobuf and Feast's own converter.
    """
    if not blob:
        return None
    tag, size = blob[0], len(blob)
    if tag == _TAG_DOUBLE and size == 9:
        return _DOUBLE.unpack_from(blob, 1)[0]
    if tag in (_TAG_INT64, _TAG_INT32, _TAG_BOOL):
        value, end = _varint(blob, 1)
        if end == size:
            if tag == _TAG_BOOL:
                return bool(value)
            return value - (1 << 64) if value >= 1 << 63 else value
    elif tag == _TAG_STRING:
        length, start = _varint(blob, 1)
        if start + length == size:
            return blob[start:].decode("utf-8")
    elif tag == _TAG_FLOAT and size == 5:
        return _FLOAT.unpack_from(blob, 1)[0]
    return _parsed_value(blob)


def _parsed_value(blob: bytes) -> Any:
    """The general path: parse the message, convert like `OnlineResponse.to_dict`."""
    from feast.protos.feast.types.Value_pb2 import Value

    value = Value()
    value.ParseFromString(blob)
    kind = value.WhichOneof("val")
    if kind is None:
        return None
    if kind in _SCALARS:
        return getattr(value, kind)
    from feast.type_map import feast_value_type_to_python_type

    return feast_value_type_to_python_type(value)


@lru_cache(maxsize=200_000)
def _entity_key(customer_id: str, version: int) -> bytes:
    """Feast's serialized entity key of a customer (the online tables' primary key), cached."""
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    key = EntityKey(join_keys=[ENTITY_KEY], entity_values=[Value(string_val=customer_id)])
    return serialize_entity_key(key, entity_key_serialization_version=version)


def _file_registry_path(store: FeatureStore) -> Path | None:
    registry = store.config.registry
    if getattr(registry, "registry_type", "file") != "file":
        return None
    return Path(str(registry.path))


def _mtime(path: Path | None) -> float | None:
    if path is None:
        return None
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def open_reader(settings: Settings, service: str, kind: str = "auto") -> OnlineReader:
    """The online reader for the configured store.

    Args:
        settings: where the Feast registry and online store live.
        service: the feature service to read.
        kind: "sqlite" (direct, embedded profile only), "feast", or "auto" (sqlite when the
            online store is SQLite).

    Raises:
        FeatureStoreError: Feast cannot be opened or the service is not registered.
    """
    from features.store import open_store

    try:
        store = open_store(settings)
    except Exception as exc:
        raise FeatureStoreError(f"cannot open the Feast store: {exc}") from exc
    use_sqlite = kind == "sqlite" or (kind == "auto" and settings.feast.online_store == "sqlite")
    return SqliteReader(store, service) if use_sqlite else FeastReader(store, service)
