"""Reference profiles: per column quantile bins (or category shares) and missing share, in JSON.

A profile is what a model version remembers of the data it was evaluated on: for each numeric
column the interior cut points of its reference deciles and the share of rows in each bin, for
each text column the shares of its most common categories (the rest pooled as "other"), and for
both the share of missing values. It has a fixed size per column (at most `MAX_BINS` or
`MAX_CATEGORIES` numbers), so a profile of a million rows weighs what one of a thousand does:
a few kilobytes per column.

Everything here is numpy and pyarrow: `profile_columns` bins plain arrays, `count_into` counts a
new sample into a reference's bins chunk by chunk, and `profile_parquet` / `count_parquet` read
a Parquet file one column at a time (row group by row group), never a pandas copy of the table.
Nothing imports training, so the service can use it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from numpy.typing import NDArray

MAX_BINS = 10
"""Quantile bins per numeric column (deciles); fewer when values repeat (counts, flags)."""
MAX_CATEGORIES = 30
"""Categories kept per text column; rarer ones are pooled in the last share ("other")."""
PROFILE_FORMAT = 1
OTHER = "__other__"

Kind = Literal["numeric", "categorical"]


@dataclass(frozen=True)
class ColumnProfile:
    """One column of a profile.

    Attributes:
        name: the column.
        kind: numeric (quantile bins) or categorical (category shares).
        rows: rows profiled, missing included.
        edges: numeric only: interior cut points; bin i holds edges[i-1] < x <= edges[i].
        categories: categorical only: the categories kept, most common first.
        shares: share of all rows in each bin (numeric: len(edges)+1; categorical:
            len(categories)+1, the last being every other category).
        missing: share of rows missing (null or NaN), so sum(shares) + missing = 1.
        outcome: optional mean of a label per bin (the reference calibration of a score).
    """

    name: str
    kind: Kind
    rows: int
    shares: list[float]
    missing: float
    edges: list[float] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    outcome: list[float | None] | None = None

    @classmethod
    def from_counts(
        cls, name: str, kind: Kind, rows: int, counts: NDArray[np.int64], **details: Any
    ) -> ColumnProfile:
        """The profile of rows counted per bin, the last count being the missing rows."""
        total = max(rows, 1)
        return cls(
            name=name,
            kind=kind,
            rows=rows,
            shares=(counts[:-1] / total).tolist(),
            missing=float(counts[-1] / total),
            **details,
        )

    @property
    def bins(self) -> int:
        """Bins of the share vector `distribution` returns (the missing bin included)."""
        return len(self.shares) + 1

    def distribution(self) -> NDArray[np.float64]:
        """Shares of every bin, the missing bin last; sums to 1."""
        return np.append(np.asarray(self.shares, dtype=float), self.missing)

    def counts_of(self, values: Any) -> NDArray[np.int64]:
        """Counts of `values` (numpy or pyarrow) in this column's bins, the missing bin last."""
        if self.kind == "categorical":
            return _category_counts(values, self.categories)
        return _numeric_counts(_as_float(values), np.asarray(self.edges, dtype=float))


@dataclass(frozen=True)
class Profile:
    """A profile of one dataset: its columns, row count and where it came from."""

    columns: dict[str, ColumnProfile]
    rows: int
    source: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """The profile as compact JSON (floats rounded to 6 significant digits)."""
        payload = {
            "format": PROFILE_FORMAT,
            "rows": self.rows,
            "source": self.source,
            "columns": [_rounded(asdict(column)) for column in self.columns.values()],
        }
        return json.dumps(payload, separators=(",", ":"), default=str)

    @classmethod
    def from_json(cls, text: str) -> Profile:
        """The profile `to_json` wrote."""
        payload = json.loads(text)
        columns = [ColumnProfile(**column) for column in payload["columns"]]
        return cls({c.name: c for c in columns}, int(payload["rows"]), payload.get("source", {}))

    def save(self, path: Path) -> Path:
        """Write the JSON to `path`."""
        path.write_text(self.to_json(), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: Path) -> Profile:
        """Read a profile saved by `save`."""
        return cls.from_json(path.read_text(encoding="utf-8"))


# ----------------------------------------------------------------------------- building


def profile_column(
    name: str, values: Any, outcome: NDArray[np.float64] | None = None
) -> ColumnProfile:
    """Profile one column (numpy, pandas or pyarrow values); numbers and booleans are numeric.

    Args:
        name: the column name.
        values: its values.
        outcome: optional label per row; the profile then keeps its mean per bin.
    """
    if _is_text(values):
        return _categorical_profile(name, values, outcome)
    return _numeric_profile(name, _as_float(values), outcome)


def profile_columns(
    columns: Mapping[str, Any],
    outcome: NDArray[np.float64] | None = None,
    outcome_for: Iterable[str] = (),
    source: Mapping[str, Any] | None = None,
) -> Profile:
    """Profile every column of a mapping (e.g. a DataFrame's columns).

    Args:
        columns: column name -> values, all of one length.
        outcome: optional label per row, kept per bin for the columns in `outcome_for`.
        outcome_for: the columns (scores) whose bins remember the label's mean.
        source: facts stored with the profile (model, run, snapshot).
    """
    wanted = set(outcome_for)
    profiles = {
        name: profile_column(name, values, outcome if name in wanted else None)
        for name, values in columns.items()
    }
    rows = next(iter(profiles.values())).rows if profiles else 0
    return Profile(profiles, rows, dict(source or {}))


def profile_parquet(
    path: Path, columns: Sequence[str] | None = None, source: Mapping[str, Any] | None = None
) -> Profile:
    """Profile columns of a Parquet file, reading one column at a time (no pandas table).

    Each column is read whole (8 bytes a row for numbers) because exact quantiles need all of
    it; a million rows is 8 MB per column, freed before the next.
    """
    file = pq.ParquetFile(path, memory_map=True)
    names = list(columns) if columns is not None else file.schema_arrow.names
    profiles = {}
    for name in names:
        values = file.read(columns=[name], use_threads=False).column(0)
        profiles[name] = profile_column(name, values)
    return Profile(profiles, file.metadata.num_rows, dict(source or {}))


def count_parquet(
    path: Path, reference: Profile, columns: Sequence[str] | None = None
) -> dict[str, NDArray[np.int64]]:
    """Counts of a Parquet file's columns in a reference profile's bins, row group by row group.

    pyarrow's own thread pool is left out (`use_threads=False`): on a small shared machine
    it slowed these reads down several times.

    Columns the reference does not know, or the file lacks, are left out.
    """
    file = pq.ParquetFile(path, memory_map=True)
    present = set(file.schema_arrow.names)
    names = [c for c in (columns or reference.columns) if c in reference.columns and c in present]
    counts = {name: np.zeros(reference.columns[name].bins, dtype=np.int64) for name in names}
    for group in range(file.num_row_groups):
        chunk = file.read_row_group(group, columns=names, use_threads=False)
        for name in names:
            counts[name] += reference.columns[name].counts_of(chunk[name])
    return counts


def count_chunks(
    chunks: Iterator[Mapping[str, Any]], reference: Profile
) -> dict[str, NDArray[np.int64]]:
    """Counts of chunks (column name -> values) in a reference's bins, for the columns it knows."""
    counts: dict[str, NDArray[np.int64]] = {}
    for chunk in chunks:
        for name, values in chunk.items():
            column = reference.columns.get(name)
            if column is None:
                continue
            added = column.counts_of(values)
            counts[name] = counts[name] + added if name in counts else added
    return counts


# ----------------------------------------------------------------------------- internals


def _is_text(values: Any) -> bool:
    if isinstance(values, pa.ChunkedArray | pa.Array):
        kind = values.type
        if pa.types.is_dictionary(kind):
            kind = kind.value_type
        return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))
    dtype = getattr(values, "dtype", None)
    if dtype is None:
        return _is_text(np.asarray(values))
    return str(dtype) in ("string", "category", "str") or dtype.kind in "OUS"


def _as_float(values: Any) -> NDArray[np.float64]:
    """Values as float64 with NaN for missing (pyarrow nulls, pandas NA)."""
    if isinstance(values, pa.ChunkedArray | pa.Array):
        if pa.types.is_timestamp(values.type) or pa.types.is_date(values.type):
            values = pc.cast(values, pa.int64())
        cast = pc.cast(values, pa.float64())
        if isinstance(cast, pa.ChunkedArray):
            cast = cast.combine_chunks() if cast.num_chunks != 1 else cast.chunk(0)
        return np.asarray(cast.fill_null(np.nan).to_numpy(zero_copy_only=False), dtype=float)
    to_numpy = getattr(values, "to_numpy", None)
    if to_numpy is not None:
        try:
            return np.asarray(to_numpy(dtype=float, na_value=np.nan), dtype=float)
        except TypeError:
            return np.asarray(to_numpy(), dtype=float)
    return np.asarray(values, dtype=float)


def _numeric_profile(
    name: str, values: NDArray[np.float64], outcome: NDArray[np.float64] | None
) -> ColumnProfile:
    rows = len(values)
    present = values[~np.isnan(values)]
    edges = np.array([], dtype=float)
    if len(present):
        cuts = np.quantile(present, np.linspace(0, 1, MAX_BINS + 1)[1:-1])
        edges = np.unique(cuts)
        edges = edges[edges < present.max()]  # no empty top bin
    counts = _numeric_counts(values, edges)
    return ColumnProfile.from_counts(
        name,
        "numeric",
        rows,
        counts,
        edges=edges.tolist(),
        outcome=_outcome_by_bin(_numeric_bins(values, edges), len(edges) + 2, outcome),
    )


def _numeric_bins(values: NDArray[np.float64], edges: NDArray[np.float64]) -> NDArray[np.int64]:
    bins = np.searchsorted(edges, values, side="left").astype(np.int64)
    bins[np.isnan(values)] = len(edges) + 1
    return bins


def _numeric_counts(values: NDArray[np.float64], edges: NDArray[np.float64]) -> NDArray[np.int64]:
    return np.bincount(_numeric_bins(values, edges), minlength=len(edges) + 2).astype(np.int64)


def _text_array(values: Any) -> pa.Array | pa.ChunkedArray:
    if isinstance(values, pa.ChunkedArray | pa.Array):
        if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
            return values
        return pc.cast(values, pa.string())  # categories, or numbers where text was profiled
    import pandas as pd

    series = pd.Series(values, copy=False)
    return pa.array(series.astype("string"), type=pa.string(), from_pandas=True)


def _categorical_profile(
    name: str, values: Any, outcome: NDArray[np.float64] | None
) -> ColumnProfile:
    text = _text_array(values)
    rows = len(text)
    tally = pc.value_counts(text.drop_null() if hasattr(text, "drop_null") else text)
    pairs = sorted(
        zip(tally.field("values").to_pylist(), tally.field("counts").to_pylist(), strict=True),
        key=lambda pair: (-pair[1], str(pair[0])),
    )
    categories = [str(value) for value, _ in pairs[:MAX_CATEGORIES]]
    counts = _category_counts(text, categories)
    bins = _category_bins(text, categories) if outcome is not None else None
    return ColumnProfile.from_counts(
        name,
        "categorical",
        rows,
        counts,
        categories=categories,
        outcome=None if bins is None else _outcome_by_bin(bins, len(categories) + 2, outcome),
    )


def _category_bins(values: Any, categories: Sequence[str]) -> NDArray[np.int64]:
    text = _text_array(values)
    index = pc.index_in(text, value_set=pa.array(list(categories), type=pa.string()))
    bins = np.asarray(index.fill_null(len(categories)).to_numpy(zero_copy_only=False), np.int64)
    missing = np.asarray(text.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    bins[missing] = len(categories) + 1
    return bins


def _category_counts(values: Any, categories: Sequence[str]) -> NDArray[np.int64]:
    bins = _category_bins(values, categories)
    return np.bincount(bins, minlength=len(categories) + 2).astype(np.int64)


def _outcome_by_bin(
    bins: NDArray[np.int64], size: int, outcome: NDArray[np.float64] | None
) -> list[float | None] | None:
    """Mean outcome per non-missing bin (None for an empty bin)."""
    if outcome is None:
        return None
    y = np.asarray(outcome, dtype=float)
    known = ~np.isnan(y)
    sums = np.bincount(bins[known], weights=y[known], minlength=size)
    counts = np.bincount(bins[known], minlength=size)
    return [float(s / c) if c else None for s, c in zip(sums[:-1], counts[:-1], strict=True)]


def _rounded(payload: dict[str, Any]) -> dict[str, Any]:
    for key in ("shares", "edges", "outcome"):
        if payload.get(key) is not None:
            payload[key] = [None if v is None else float(f"{v:.6g}") for v in payload[key]]
    payload["missing"] = float(f"{payload['missing']:.6g}")
    return payload
