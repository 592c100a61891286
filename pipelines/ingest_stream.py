"""Validate and write contract tables a chunk of rows at a time, so an ingest's memory follows
the chunk, not the table (a million customers' transaction log is about 57 M rows).

The tables other tables reference (customers, products) are read whole: their ids must be
unique across all rows and every chunk of a referencing table is checked against them. Every
other table (transactions, interactions, balances, campaigns) is read, validated, checked
against them and appended to its Parquet file `CHUNK_ROWS` rows at a time. The rules are those
of `features.validation` (each row's rules depend only on that row and the referenced tables),
so the written tables, their row numbers in errors and the content hash are the same whatever
the chunk size.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.contract import TABLES
from features.validation import (
    check_references,
    check_required_tables,
    check_unique_key,
    unknown_table_warnings,
    validate_table,
)

CHUNK_ROWS = 1_000_000
"""Rows of a streamed table validated and written at a time."""
WHOLE_TABLES = frozenset(target for spec in TABLES.values() for target in spec.references.values())
"""Tables read whole: other tables reference their ids (which are unique)."""

Chunks = Callable[[], Iterator[pd.DataFrame]]
"""Yields a table's raw rows in chunks, indexed by their row in the source (for row numbers)."""


@dataclass
class TableDigest:
    """A table's content hash, row counts and `ts` range, accumulated chunk by chunk."""

    hash: hashlib._Hash = field(default_factory=hashlib.sha256)
    rows: int = 0
    first_ts: pd.Timestamp | None = None
    last_ts: pd.Timestamp | None = None

    def add(self, frame: pd.DataFrame) -> None:
        if not self.rows:  # the dtypes once, as the whole table's (every chunk has the same)
            dtypes = [[str(c), str(t)] for c, t in frame.dtypes.items()]
            self.hash.update(json.dumps(dtypes).encode())
        self.hash.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
        self.rows += len(frame)
        if "ts" in frame.columns and frame["ts"].notna().any():
            low, high = frame["ts"].min(), frame["ts"].max()
            self.first_ts = low if self.first_ts is None else min(self.first_ts, low)
            self.last_ts = high if self.last_ts is None else max(self.last_ts, high)


@dataclass
class LoadedTables:
    """What `load_tables` wrote: per-table digests and the warnings."""

    digests: dict[str, TableDigest]
    warnings: list[str]

    @property
    def rows(self) -> dict[str, int]:
        return {name: digest.rows for name, digest in self.digests.items()}

    @property
    def snapshot_id(self) -> str:
        """A short content hash of all tables: same data, same id, whatever the file format."""
        combined = hashlib.sha256()
        for name in sorted(self.digests):
            combined.update(name.encode())
            combined.update(self.digests[name].hash.digest())
        return combined.hexdigest()[:16]

    @property
    def date_ranges(self) -> dict[str, list[str]]:
        return {
            name: [digest.first_ts.isoformat(), digest.last_ts.isoformat()]
            for name, digest in self.digests.items()
            if digest.first_ts is not None and digest.last_ts is not None
        }


def load_tables(
    sources: Mapping[str, Chunks],
    folder: Path,
    now: pd.Timestamp,
    date_format: str | None = None,
) -> LoadedTables:
    """Validate every contract table of `sources` and write it as `<folder>/<name>.parquet`.

    Args:
        sources: raw chunks by table name; names outside the contract are ignored with a
            warning.
        folder: an empty staging folder.
        now: naive UTC cutoff for dates that may not lie in the future.
        date_format: `strptime` format of text dates (None: ISO 8601 only).

    Raises:
        DataContractError: on the first broken rule (the whole tables' rules first, then each
            streamed table in contract order).
    """
    notes = unknown_table_warnings(sources)
    check_required_tables(sources)
    names = [name for name in TABLES if name in sources]
    whole: dict[str, pd.DataFrame] = {}
    for name in (n for n in names if n in WHOLE_TABLES):
        raw = _concat(sources[name]())
        whole[name], table_notes = validate_table(TABLES[name], raw, now, date_format)
        notes.extend(table_notes)
    for name, frame in whole.items():
        check_references(name, frame, whole)
    digests = {}
    for name in names:
        chunks = (
            [whole[name]]
            if name in whole
            else _validated(name, sources[name], whole, now, date_format, notes)
        )
        digests[name] = _write(folder / f"{name}.parquet", chunks)
        _check_key(name, folder / f"{name}.parquet")
    return LoadedTables(digests, notes)


def _check_key(name: str, path: Path) -> None:
    """A key that must be unique across the whole table, checked on the written (staged) file:
    its rows are the source's, in order, so a row's position is its row number."""
    spec = TABLES[name]
    if spec.unique_key:
        keys = pd.read_parquet(path, columns=list(spec.unique_key), dtype_backend="pyarrow")
        check_unique_key(spec, keys)


def _validated(
    name: str,
    chunks: Chunks,
    whole: Mapping[str, pd.DataFrame],
    now: pd.Timestamp,
    date_format: str | None,
    notes: list[str],
) -> Iterator[pd.DataFrame]:
    for position, raw in enumerate(chunks()):
        if position and raw.empty:
            continue
        frame, table_notes = validate_table(TABLES[name], raw, now, date_format)
        notes.extend(note for note in table_notes if note not in notes)
        check_references(name, frame, whole)
        yield frame


def _concat(chunks: Iterable[pd.DataFrame]) -> pd.DataFrame:
    frames = list(chunks)
    return frames[0] if len(frames) == 1 else pd.concat(frames)


def _write(path: Path, chunks: Iterable[pd.DataFrame]) -> TableDigest:
    """Append normalized chunks to one Parquet file (the first chunk's schema) and digest them."""
    digest = TableDigest()
    writer: pq.ParquetWriter | None = None
    try:
        for chunk in chunks:
            frame = chunk.reset_index(drop=True)
            if writer is None:
                table = pa.Table.from_pandas(frame, preserve_index=False)
                table = table.cast(_texts_for_nulls(table.schema))
                writer = pq.ParquetWriter(path, table.schema)
            else:
                table = pa.Table.from_pandas(frame, schema=writer.schema, preserve_index=False)
            writer.write_table(table)
            digest.add(frame)
    finally:
        if writer is not None:
            writer.close()
    return digest


def _texts_for_nulls(schema: pa.Schema) -> pa.Schema:
    """The schema with all-null columns typed as text, so later chunks' values still fit."""
    fields = [f.with_type(pa.string()) if pa.types.is_null(f.type) else f for f in schema]
    return pa.schema(fields, metadata=schema.metadata)
