"""The latest feature snapshot straight from the offline Parquet tables, chunk by chunk.

Feast's point-in-time join for entity rows at time `T` gives, per view, each customer's newest
row with `event_timestamp <= T` that is no older than the view's ttl. The view tables hold one
row per (customer, snapshot) and are written one snapshot per row group
(`pipelines.features`), so at the latest snapshot that join is "the row groups of the newest
snapshot at or before `T`": `latest_snapshot` finds them from the Parquet statistics (reading a
timestamp column only where a row group lacks them or mixes snapshots) and `iter_chunks` reads
just those rows, column-pruned, a chunk of customers at a time, in the population view's row
order. The feature build writes every view's rows of a snapshot in the same customer order; a
view that does not line up is joined by id instead (exact, but it holds that view's snapshot in
memory), with a warning.

`IdIndex` maps customer ids to their positions in the population, vectorized: ids of one
fixed width with a constant prefix and a digit suffix (`C0000042`, `00042`) are parsed straight
from the Arrow buffers; other ids go through Arrow's hash lookup.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from numpy.typing import NDArray

from features.catalog import ENTITY_KEY, TIMESTAMP_FIELD
from loyal.errors import NotReadyError

log = logging.getLogger(__name__)

NANOS_PER_DAY = 86_400 * 10**9
MAX_DIGITS = 18
"""Longest digit suffix `IdIndex` parses into an int64."""


# ------------------------------------------------------------------------------ snapshots
@dataclass(frozen=True)
class ViewSnapshot:
    """Where one view's rows of the latest snapshot are.

    Attributes:
        name: view name.
        path: the view's Parquet table.
        as_of: the snapshot read (UTC), or None when the view has no row within its ttl.
        row_groups: the row groups holding rows at `as_of`.
        mixed: some of those row groups also hold other snapshots (rows are then filtered).
        rows: rows at `as_of`.
    """

    name: str
    path: Path
    as_of: pd.Timestamp | None
    row_groups: tuple[int, ...] = ()
    mixed: bool = False
    rows: int = 0


@dataclass(frozen=True)
class LatestSnapshot:
    """The latest snapshot of every view, keyed to the population view's customers.

    Attributes:
        moment: the latest snapshot time (UTC): the newest timestamp of the population view.
        population: the view whose rows at `moment` are the customers (profile).
        views: every view's snapshot, the population view included.
    """

    moment: pd.Timestamp
    population: str
    views: dict[str, ViewSnapshot] = field(default_factory=dict)

    @property
    def customers(self) -> int:
        """Number of customers at the snapshot."""
        return self.views[self.population].rows


@dataclass(frozen=True)
class _RowGroup:
    index: int
    rows: int
    low: int | None
    high: int | None


def _row_groups(file: pq.ParquetFile, column: str) -> list[_RowGroup]:
    """Non-empty row groups with the min and max of a timestamp column (ns since the epoch, UTC).

    Empty row groups (a snapshot with no customers, e.g. before the first purchase of a log)
    hold no timestamps and are left out.
    """
    position = file.schema_arrow.get_field_index(column)
    groups = []
    for index in range(file.metadata.num_row_groups):
        meta = file.metadata.row_group(index)
        if meta.num_rows == 0:
            continue
        stats = meta.column(position).statistics
        low = high = None
        if stats is not None and stats.has_min_max:
            low, high = pd.Timestamp(stats.min).value, pd.Timestamp(stats.max).value
        groups.append(_RowGroup(index, meta.num_rows, low, high))
    return groups


def _stamps(file: pq.ParquetFile, index: int) -> NDArray[np.int64]:
    """The timestamps of one row group as ns since the epoch."""
    column = file.read_row_group(index, columns=[TIMESTAMP_FIELD]).column(0)
    return _nanos(column)


def _nanos(column: pa.ChunkedArray | pa.Array) -> NDArray[np.int64]:
    """A timestamp column as int64 ns since the epoch (nulls as the minimum int64)."""
    as_ns = pc.cast(column, pa.timestamp("ns", tz=getattr(column.type, "tz", None)))
    return np.asarray(pc.fill_null(as_ns.cast(pa.int64()), np.iinfo(np.int64).min), dtype=np.int64)


def _exact_bounds(file: pq.ParquetFile, group: _RowGroup, moment: int) -> tuple[int, int] | None:
    """(min, max) of the row group's timestamps at or before `moment`; None when it has none."""
    if group.low is not None and group.high is not None and group.high <= moment:
        return group.low, group.high
    if group.low is not None and group.low > moment:
        return None
    stamps = _stamps(file, group.index)
    kept = stamps[stamps <= moment]
    return (int(kept.min()), int(kept.max())) if kept.size else None


def view_snapshot(name: str, path: Path, moment: int, ttl_days: int | None) -> ViewSnapshot:
    """The row groups of a view's newest snapshot at or before `moment` (ns), within its ttl."""
    file = pq.ParquetFile(path)
    groups = _row_groups(file, TIMESTAMP_FIELD)
    bounds = {g.index: _exact_bounds(file, g, moment) for g in groups}
    newest = max((b[1] for b in bounds.values() if b is not None), default=None)
    if newest is None or (ttl_days is not None and newest < moment - ttl_days * NANOS_PER_DAY):
        return ViewSnapshot(name, path, None)
    chosen: list[int] = []
    mixed = False
    rows = 0
    for group in groups:
        bound = bounds[group.index]
        if bound is None or not bound[0] <= newest <= bound[1]:
            continue
        chosen.append(group.index)
        if group.low == group.high == newest:
            rows += group.rows
        else:
            mixed = True
            rows += int((_stamps(file, group.index) == newest).sum())
    return ViewSnapshot(name, path, pd.Timestamp(newest, tz="UTC"), tuple(chosen), mixed, rows)


def latest_snapshot(
    tables: Mapping[str, Path],
    ttl_days: Mapping[str, int] | None = None,
    population: str = "profile",
    as_of: pd.Timestamp | None = None,
) -> LatestSnapshot:
    """Locate the latest snapshot of every view table (at or before `as_of` when given).

    Args:
        tables: view name -> its Parquet table (the paths the feature store's sources read).
        ttl_days: each view's ttl in days (as registered in Feast); None: no limit.
        population: the view whose rows at its newest timestamp are the customers.
        as_of: the latest moment a snapshot may have (tz-aware; None: the newest).

    Raises:
        NotReadyError: no population table, an empty one, or no snapshot by `as_of`.
    """
    if population not in tables or not Path(tables[population]).is_file():
        raise NotReadyError("no feature tables found: run `loyal features build` first")
    file = pq.ParquetFile(tables[population])
    groups = _row_groups(file, TIMESTAMP_FIELD)
    highs = [g.high if g.high is not None else int(_stamps(file, g.index).max()) for g in groups]
    if not highs:
        raise NotReadyError(f"the {population} feature table is empty: rebuild the features")
    moment = int(max(h for h in highs if h is not None))
    if as_of is not None:
        moment = _snapshot_by(population, Path(tables[population]), as_of)
    ttl = dict(ttl_days or {})
    views = {
        name: view_snapshot(name, Path(path), moment, ttl.get(name))
        for name, path in tables.items()
    }
    return LatestSnapshot(pd.Timestamp(moment, tz="UTC"), population, views)


def _snapshot_by(population: str, path: Path, as_of: pd.Timestamp) -> int:
    """The newest snapshot time (ns) of the population view at or before `as_of`."""
    found = view_snapshot(population, path, pd.Timestamp(as_of).tz_convert("UTC").value, None)
    if found.as_of is None:
        raise NotReadyError(
            f"no feature snapshot at or before {pd.Timestamp(as_of):%Y-%m-%d}: the {population} "
            "table starts later"
        )
    return int(found.as_of.value)


def split_snapshot(snapshot: LatestSnapshot) -> list[tuple[LatestSnapshot, int]]:
    """The snapshot as independent units of whole row groups, with each unit's first row.

    The partitioned feature build writes every view's rows of a snapshot as one row group per
    partition, the same customers in the same order in every view; each such row group is a
    unit that can be read and scored alone (a Dask task). Tables that do not line up that way
    (a view with a different row-group layout, or row groups mixing snapshots) give one unit.
    """
    base = snapshot.views[snapshot.population]
    sizes = _group_rows(base)
    if sizes is None:
        return [(snapshot, 0)]
    for view in snapshot.views.values():
        if view.as_of is not None and _group_rows(view) != sizes:
            return [(snapshot, 0)]
    units: list[tuple[LatestSnapshot, int]] = []
    start = 0
    for position, rows in enumerate(sizes):
        views = {
            name: view
            if view.as_of is None
            else ViewSnapshot(
                name, view.path, view.as_of, (view.row_groups[position],), False, rows
            )
            for name, view in snapshot.views.items()
        }
        units.append((LatestSnapshot(snapshot.moment, snapshot.population, views), start))
        start += rows
    return units


def _group_rows(view: ViewSnapshot) -> list[int] | None:
    """Rows of each of the view's row groups at its snapshot; None when some mix snapshots."""
    if view.mixed or view.as_of is None:
        return None
    meta = pq.ParquetFile(view.path).metadata
    return [meta.row_group(g).num_rows for g in view.row_groups]


# --------------------------------------------------------------------------------- chunks
def _rows_at(view: ViewSnapshot, columns: Sequence[str], chunk_rows: int) -> Iterator[pa.Table]:
    """A view's rows at its snapshot, `columns` only, in file order (batches of any size)."""
    if view.as_of is None:
        return
    file = pq.ParquetFile(view.path)
    read = list(dict.fromkeys([*columns, *([TIMESTAMP_FIELD] if view.mixed else [])]))
    moment = view.as_of.value
    for group in view.row_groups:  # one reader per row group (see `inference.transactions`)
        for batch in file.iter_batches(batch_size=chunk_rows, row_groups=[group], columns=read):
            table = pa.Table.from_batches([batch])
            if view.mixed:
                table = table.filter(pa.array(_nanos(table[TIMESTAMP_FIELD]) == moment))
            yield table.select(list(columns))


def _rechunk(tables: Iterator[pa.Table], size: int) -> Iterator[pa.Table]:
    """The same rows in tables of exactly `size` rows (the last one may be shorter)."""
    pending: list[pa.Table] = []
    held = 0
    for table in tables:
        pending.append(table)
        held += table.num_rows
        while held >= size:
            merged = pa.concat_tables(pending)
            yield merged.slice(0, size)
            rest = merged.slice(size)
            pending, held = [rest], rest.num_rows
    if held:
        yield pa.concat_tables(pending)


class _KeyedView:
    """A view's snapshot held in memory and joined by customer id (the fallback path)."""

    def __init__(self, view: ViewSnapshot, columns: Sequence[str]) -> None:
        tables = list(_rows_at(view, [ENTITY_KEY, *columns], 1 << 20))
        self.columns = list(columns)
        self.table = pa.concat_tables(tables) if tables else None

    def rows_for(self, ids: pa.Array, schema: pa.Schema) -> pa.Table:
        """The rows of `ids` (nulls where the view has none)."""
        if self.table is None:
            return _nulls(schema, len(ids))
        positions = pc.index_in(ids, value_set=self.table[ENTITY_KEY].combine_chunks())
        return self.table.select(self.columns).take(positions)


def _nulls(schema: pa.Schema, rows: int) -> pa.Table:
    return pa.table({f.name: pa.nulls(rows, f.type) for f in schema})


def iter_chunks(
    snapshot: LatestSnapshot, columns: Mapping[str, Sequence[str]], chunk_rows: int
) -> Iterator[pa.Table]:
    """The latest snapshot's features, a chunk of customers at a time.

    Args:
        snapshot: from `latest_snapshot`.
        columns: view name -> the feature columns to read from it (views not named are not
            read; a view without rows within its ttl gives nulls).
        chunk_rows: customers per chunk.

    Yields:
        Tables of `customer_id` and the requested columns, the population view's customers in
        its file order.
    """
    base = snapshot.views[snapshot.population]
    own = [c for c in columns.get(snapshot.population, ()) if c != ENTITY_KEY]
    others = {n: [c for c in cols if c != ENTITY_KEY] for n, cols in columns.items()}
    others.pop(snapshot.population, None)
    streams = {
        name: _rechunk(_rows_at(snapshot.views[name], [ENTITY_KEY, *cols], chunk_rows), chunk_rows)
        for name, cols in others.items()
    }
    schemas = {name: _schema(snapshot.views[name], cols) for name, cols in others.items()}
    keyed: dict[str, _KeyedView] = {}
    for chunk in _rechunk(_rows_at(base, [ENTITY_KEY, *own], chunk_rows), chunk_rows):
        ids = chunk[ENTITY_KEY].combine_chunks()
        for name, cols in others.items():
            part = _aligned(snapshot.views[name], streams, keyed, name, cols, ids, schemas[name])
            for column in cols:
                chunk = chunk.append_column(column, part[column])
        yield chunk


def _schema(view: ViewSnapshot, columns: Sequence[str]) -> pa.Schema:
    schema = pq.read_schema(view.path)
    return pa.schema([schema.field(c) for c in columns])


def _aligned(
    view: ViewSnapshot,
    streams: dict[str, Iterator[pa.Table]],
    keyed: dict[str, _KeyedView],
    name: str,
    columns: Sequence[str],
    ids: pa.Array,
    schema: pa.Schema,
) -> pa.Table:
    """The view's rows for these customers: the next rows of its stream when they line up."""
    if view.as_of is None:
        return _nulls(schema, len(ids))
    if name not in keyed:
        part = next(streams[name], None)
        if (
            part is not None
            and part.num_rows == len(ids)
            and part[ENTITY_KEY].equals(pa.chunked_array([ids]))
        ):
            return part
        log.warning(
            "the %s table's latest snapshot does not list customers in the profile's order: "
            "joining it by id (holds that view's snapshot in memory)",
            name,
        )
        keyed[name] = _KeyedView(view, columns)
    return keyed[name].rows_for(ids, schema)


def population_ids(snapshot: LatestSnapshot) -> pa.Array:
    """The customer ids of the snapshot, in the population table's order."""
    parts = list(_rows_at(snapshot.views[snapshot.population], [ENTITY_KEY], 1 << 20))
    if not parts:
        return pa.array([], pa.string())
    return pa.concat_tables(parts)[ENTITY_KEY].combine_chunks()


# ------------------------------------------------------------------------------------ ids
@dataclass(frozen=True)
class _Pattern:
    """Ids of one byte width: a constant prefix, then digits."""

    width: int
    prefix: bytes

    @property
    def digits(self) -> int:
        return self.width - len(self.prefix)


def _string_buffers(values: pa.Array) -> tuple[NDArray[np.int64], NDArray[np.uint8]]:
    """Offsets (one more than the values) and the data bytes of a string array."""
    if pa.types.is_large_string(values.type):
        offset_type: type[np.signedinteger] = np.int64
    elif pa.types.is_string(values.type):
        offset_type = np.int32
    else:
        raise TypeError(f"customer ids must be strings, not {values.type}")
    _, offsets_buffer, data_buffer = values.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=offset_type)
    offsets = offsets[values.offset : values.offset + len(values) + 1].astype(np.int64)
    data = (
        np.frombuffer(data_buffer, dtype=np.uint8)
        if data_buffer is not None
        else np.zeros(0, np.uint8)
    )
    return offsets, data


def _byte_matrix(values: pa.Array, width: int) -> tuple[NDArray[np.uint8], NDArray[np.bool_]]:
    """Each value's bytes as a row of a (n, width) matrix, and which values have that width."""
    offsets, data = _string_buffers(values)
    starts = offsets[:-1]
    fits = (offsets[1:] - starts) == width
    if values.null_count:
        fits &= np.asarray(values.is_valid(), dtype=bool)
    if fits.all() and (len(values) == 0 or offsets[-1] - starts[0] == width * len(values)):
        first = int(starts[0]) if len(values) else 0
        return data[first : first + width * len(values)].reshape(-1, width), fits
    rows = np.where(fits, starts, 0)
    if data.size < width:  # nothing fits; keep the gather in bounds
        return np.zeros((len(values), width), np.uint8), np.zeros(len(values), bool)
    return data[rows[:, None] + np.arange(width)], fits


def _detect(values: pa.Array) -> _Pattern | None:
    """The pattern every id follows (constant prefix, digit suffix), or None."""
    if len(values) == 0 or values.null_count:
        return None
    offsets, _ = _string_buffers(values)
    lengths = np.diff(offsets)
    width = int(lengths[0])
    if width == 0 or not (lengths == width).all():
        return None
    matrix, _ = _byte_matrix(values, width)
    constant = (matrix == matrix[0]).all(axis=0)
    prefix = int(np.argmin(constant)) if not constant.all() else width
    digits = matrix[:, prefix:]
    if width - prefix > MAX_DIGITS or not ((digits >= 48) & (digits <= 57)).all():
        return None
    return _Pattern(width, bytes(matrix[0, :prefix]))


def _parse(values: pa.Array, pattern: _Pattern) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    """The digit suffix of each value as an int, and which values follow the pattern."""
    matrix, ok = _byte_matrix(values, pattern.width)
    for column, byte in enumerate(pattern.prefix):
        ok &= matrix[:, column] == byte
    number = np.zeros(len(values), dtype=np.int64)
    for column in range(len(pattern.prefix), pattern.width):
        digit = matrix[:, column] - np.uint8(48)  # wraps around below "0"
        ok &= digit <= 9
        number *= 10
        number += digit
    return number, ok


class IdIndex:
    """Positions of customer ids in a population (vectorized, exact).

    Args:
        ids: the population's unique ids, in population order.
    """

    DENSE_FACTOR = 4
    """A dense lookup table is used when the parsed ids span at most this many slots a row."""

    def __init__(self, ids: pa.Array | pa.ChunkedArray) -> None:
        values = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
        if pa.types.is_dictionary(values.type):
            values = values.dictionary_decode()
        self.ids: pa.Array = values
        self.size = len(values)
        self._pattern = _detect(values)
        self._table: NDArray[np.int64] | None = None
        self._sorted: NDArray[np.int64] | None = None
        if self._pattern is not None:
            self._prepare_numeric()
        if self._pattern is None and len(pc.unique(values)) != self.size:
            raise ValueError("customer ids must be unique")

    def _prepare_numeric(self) -> None:
        assert self._pattern is not None
        numbers, _ = _parse(self.ids, self._pattern)
        if np.unique(numbers).size != self.size:
            raise ValueError("customer ids must be unique")
        self._low = int(numbers.min()) if self.size else 0
        span = int(numbers.max()) - self._low + 1 if self.size else 1
        if span <= max(self.DENSE_FACTOR * self.size, 1 << 16):
            table = np.full(span, -1, dtype=np.int64)
            table[numbers - self._low] = np.arange(self.size)
            self._table = table
        else:
            order = np.argsort(numbers, kind="stable")
            self._sorted, self._order = numbers[order], order

    @property
    def fast(self) -> bool:
        """Whether ids are parsed (fixed width, digit suffix) rather than hashed."""
        return self._pattern is not None

    def positions(self, values: pa.Array | pa.ChunkedArray) -> NDArray[np.int64]:
        """Each value's position in the population, -1 for ids not in it (and nulls)."""
        array = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
        if pa.types.is_dictionary(array.type):
            inner = self.positions(array.dictionary)
            codes = np.asarray(pc.fill_null(array.indices, -1), dtype=np.int64)
            return np.where(codes >= 0, inner[np.maximum(codes, 0)], -1)
        if self._pattern is None:
            found = pc.index_in(array, value_set=self.ids)
            return np.asarray(pc.fill_null(found, -1), dtype=np.int64)
        numbers, ok = _parse(array, self._pattern)
        return self._lookup(numbers, ok)

    def _lookup(self, numbers: NDArray[np.int64], ok: NDArray[np.bool_]) -> NDArray[np.int64]:
        out = np.full(len(numbers), -1, dtype=np.int64)
        if self._table is not None:
            slot = numbers - self._low
            ok &= (slot >= 0) & (slot < len(self._table))
            if ok.all():
                return np.take(self._table, slot)
            out[ok] = np.take(self._table, slot[ok])
            return out
        assert self._sorted is not None
        where = np.searchsorted(self._sorted, numbers[ok])
        where = np.minimum(where, len(self._sorted) - 1)
        hit = self._sorted[where] == numbers[ok]
        found = np.full(where.size, -1, dtype=np.int64)
        found[hit] = self._order[where[hit]]
        out[ok] = found
        return out
