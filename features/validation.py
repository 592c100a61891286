"""Data contract validation: raw tables in, normalized tables out, or one DataContractError."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from features.contract import TABLES, Column, ColumnType, TableSpec
from loyal.errors import DataContractError

ROWS_NOTE = "row 1 = first data row"
"""How offending rows are numbered in messages: data rows from 1, the CSV header not counted."""

_TRUE_WORDS = frozenset({"true", "t", "yes", "y", "1", "1.0"})
_FALSE_WORDS = frozenset({"false", "f", "no", "n", "0", "0.0"})
_EXPECTED = {
    "float": "wrong type: expected a number",
    "int": "wrong type: expected a whole number",
    "bool": "wrong type: expected yes/no, true/false or 1/0",
    "date": "unparseable date",
    "timestamp": "unparseable timestamp",
}
_PANDERA_RULES = {
    "not_nullable": "missing value in a required column",
    "field_uniqueness": "duplicate values in a column that must be unique",
}

Converter = Callable[[pd.Series], tuple[pd.Series, pd.Series]]


@dataclass(frozen=True)
class ValidatedTables:
    """Tables that passed the contract, normalized, and what was accepted with a warning.

    Attributes:
        tables: contract table name -> normalized frame. Every contract column is present (absent
            optional ones are all-null) with its contract dtype, in contract order, followed by
            the extra columns exactly as they came; the index is a fresh RangeIndex.
        warnings: readable notes on input that was accepted but looks off.
    """

    tables: dict[str, pd.DataFrame]
    warnings: list[str] = field(default_factory=list)

    @property
    def rows(self) -> dict[str, int]:
        """Rows per table."""
        return {name: len(frame) for name, frame in self.tables.items()}


def validate_tables(
    tables: Mapping[str, pd.DataFrame],
    now: pd.Timestamp | None = None,
    date_format: str | None = None,
) -> ValidatedTables:
    """Check raw tables against the data contract and normalize them.

    Normalization: ids and other text to `str` (stripped, blanks become missing), dates and
    timestamps to naive UTC `datetime64[ns]` (dates at midnight), booleans from yes/no,
    true/false, 1/0 to the nullable `boolean` dtype, numbers to `float64`. The inputs are not
    modified.

    Args:
        tables: raw frames by contract table name; unknown names are ignored with a warning.
        now: the moment after which dates count as "in the future" (default: the current UTC
            time); tz-aware values are converted to UTC.
        date_format: the `strptime` format of every date and timestamp written as text (say
            `%d/%m/%Y`); None reads ISO 8601 only, and a column in another format is rejected
            (one whose day/month order cannot be decided says so), never guessed.

    Returns:
        The normalized tables and the warnings.

    Raises:
        DataContractError: on the first broken rule, naming table, column, rule and the first
            offending rows (numbered from 1 = first data row, header excluded; for a frame with a
            non-default index, index label + 1).
    """
    cutoff = _naive_utc(pd.Timestamp.now(tz="UTC") if now is None else now)
    notes = unknown_table_warnings(tables)
    check_required_tables(tables)
    normalized: dict[str, pd.DataFrame] = {}
    for name, spec in TABLES.items():
        if name in tables:
            normalized[name], table_notes = validate_table(spec, tables[name], cutoff, date_format)
            notes.extend(table_notes)
    _check_references(normalized)
    for name, frame in normalized.items():
        check_unique_key(TABLES[name], frame)
    return ValidatedTables(
        tables={name: frame.reset_index(drop=True) for name, frame in normalized.items()},
        warnings=notes,
    )


def validate_table(
    spec: TableSpec, frame: pd.DataFrame, now: pd.Timestamp, date_format: str | None = None
) -> tuple[pd.DataFrame, list[str]]:
    """Check and normalize one table on its own; references to other tables are checked apart.

    Args:
        spec: the contract table.
        frame: its raw rows.
        now: naive UTC cutoff for dates that may not lie in the future.
        date_format: `strptime` format of text dates (None: ISO 8601 only).

    Returns:
        The normalized frame (source index kept, for row numbers) and warnings.

    Raises:
        DataContractError: on the first broken rule.
    """
    if not frame.index.is_unique:
        frame = frame.reset_index(drop=True)
    if not all(isinstance(c, str) for c in frame.columns):
        frame = frame.set_axis([str(c) for c in frame.columns], axis=1)
    frame = _match_column_names(spec, frame)
    _check_not_empty(spec, frame)
    _check_required_columns(spec, frame)
    declared = [c.name for c in spec.columns]
    extras = [c for c in frame.columns if c not in declared]
    notes = []
    if extras:
        notes.append(
            f"table '{spec.name}': unknown extra columns kept as they are: "
            + ", ".join(str(c) for c in extras)
        )
    columns = {c.name: _normalized_column(spec.name, c, frame, date_format) for c in spec.columns}
    out = pd.concat([pd.DataFrame(columns, index=frame.index), frame[extras]], axis=1)
    _check_rules(spec, out, now)
    _check_not_before(spec, out)
    return out, notes


def row_numbers(labels: Iterable[object]) -> list[object]:
    """Turn index labels into the row numbers shown to users (integers + 1), sorted, unique."""
    return sorted({_row_number(label) for label in labels}, key=_sort_key)


# ----------------------------------------------------------------------------- table-level checks


def unknown_table_warnings(tables: Mapping[str, object]) -> list[str]:
    """A warning naming the tables that are not in the contract (they are ignored)."""
    unknown = sorted(name for name in tables if name not in TABLES)
    if not unknown:
        return []
    known = ", ".join(TABLES)
    return [f"ignored tables not in the contract: {', '.join(unknown)} (contract tables: {known})"]


def check_required_tables(tables: Mapping[str, object]) -> None:
    """Raise DataContractError naming the first required contract table absent from `tables`."""
    for name, spec in TABLES.items():
        if spec.required_table and name not in tables:
            required = ", ".join(n for n, s in TABLES.items() if s.required_table)
            raise DataContractError(
                name,
                "missing required table",
                detail=f"bring it as {name}.csv or {name}.parquet; required tables: {required}",
            )


def _match_column_names(spec: TableSpec, frame: pd.DataFrame) -> pd.DataFrame:
    """Accept contract columns written with other case or surrounding spaces ('Amount ')."""
    declared = {c.name for c in spec.columns}
    renames = {}
    for column in frame.columns:
        wanted = str(column).strip().lower()
        if column not in declared and wanted in declared and wanted not in frame.columns:
            renames[column] = wanted
    return frame.rename(columns=renames) if renames else frame


def _check_not_empty(spec: TableSpec, frame: pd.DataFrame) -> None:
    if frame.empty:
        raise DataContractError(
            spec.name,
            "empty table: no data rows",
            detail="the file has no rows below its header; remove it if the table does not apply"
            if not spec.required_table
            else "the file has no rows below its header",
        )


def _check_required_columns(spec: TableSpec, frame: pd.DataFrame) -> None:
    missing = [name for name in spec.required_columns if name not in frame.columns]
    if missing:
        found = ", ".join(str(c) for c in frame.columns)
        also = f"also missing: {', '.join(missing[1:])}; " if len(missing) > 1 else ""
        raise DataContractError(
            spec.name, "missing required column", missing[0], detail=f"{also}found: {found}"
        )


# ---------------------------------------------------------------------------------- conversion


def _normalized_column(
    table: str, column: Column, frame: pd.DataFrame, date_format: str | None = None
) -> pd.Series:
    if column.name not in frame.columns:
        return pd.Series(None, index=frame.index, dtype=_DTYPES[column.type])
    values = frame[column.name]
    if column.type in ("date", "timestamp"):
        converted, bad = parse_datetimes(values, date_format)
        if column.type == "date":
            converted = converted.dt.normalize()
        if bad.any() and date_format is None:
            _reject_non_iso(table, column, values[bad])
    else:
        converted, bad = _CONVERTERS[column.type](values)
    if bad.any():
        raise DataContractError(
            table,
            _EXPECTED[column.type],
            column.name,
            rows=row_numbers(values.index[bad.to_numpy()]),
            detail=f"found {_examples(values[bad])}; {ROWS_NOTE}",
        )
    return converted


def _to_text(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Text, stripped; whole numbers written as floats (17850.0, '17850.0') lose the `.0`.

    The `.0` goes only when every value of the column has it (a numeric column exported as
    floats): a column of real codes such as '1.0' beside '1.5' is kept exactly as given.
    Zero padding ('00001') is kept: in a business's own tables it may be part of the id.
    """
    if pd.api.types.is_float_dtype(values) and _is_whole_number_dtype(values):
        values = values.astype("Int64")  # ids stored as 17850.0 read back as '17850'
    text = _stripped(values)
    present = text.dropna()
    if len(present) and _all_whole_floats(present.astype(str)):
        text = text.where(text.isna(), text.astype(str).str.replace(r"\.0+$", "", regex=True))
    return text, pd.Series(False, index=values.index)


def _all_whole_floats(text: pd.Series) -> bool:
    """Whether every value reads like 17850.0; the first value usually decides, in O(1)."""
    if not re.fullmatch(_WHOLE_FLOAT, text.iloc[0]):
        return False
    return bool(text.str.fullmatch(_WHOLE_FLOAT).all())


_WHOLE_FLOAT = r"-?\d+\.0+"


def _to_float(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    if pd.api.types.is_bool_dtype(values):
        return values.astype("float64"), values.notna()
    source = values if pd.api.types.is_numeric_dtype(values) else _stripped(values)
    numbers = pd.to_numeric(source, errors="coerce").astype("float64")
    return numbers, source.notna() & numbers.isna()


def _to_whole(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    numbers, bad = _to_float(values)
    fractional = numbers.notna() & np.isfinite(numbers) & (numbers != np.floor(numbers))
    return numbers, bad | fractional


def _to_bool(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    if pd.api.types.is_bool_dtype(values):
        return values.astype("boolean"), pd.Series(False, index=values.index)
    words = _stripped(values).str.lower()
    truth = pd.Series(pd.NA, index=values.index, dtype="boolean")
    truth[words.isin(_TRUE_WORDS).fillna(False)] = True
    truth[words.isin(_FALSE_WORDS).fillna(False)] = False
    return truth, words.notna() & truth.isna()


_DAY_MONTH = re.compile(r"^(\d{1,2})[/.-](\d{1,2})[/.-](\d{2}|\d{4})(?:[ T].*)?$")
"""A date written day and month first, in some order: `01/03/2024`, `13.02.24 10:00`."""


def parse_datetimes(
    values: pd.Series, date_format: str | None = None
) -> tuple[pd.Series, pd.Series]:
    """Dates or timestamps as naive UTC, and which values could not be read.

    Text is read as ISO 8601 (`2024-03-01`, `2024-03-01T10:00:00+01:00`), and other values
    with the `strptime` format `date_format`; nothing is guessed from the first rows.

    Returns:
        The parsed values (`datetime64[ns]`, NaT where missing or unreadable) and a mask of the
        values present but unreadable.
    """
    if pd.api.types.is_datetime64_any_dtype(values):
        stamps = values.dt.tz_convert("UTC").dt.tz_localize(None) if values.dt.tz else values
        return stamps.astype("datetime64[ns]"), pd.Series(False, index=values.index)
    text = _stripped(values.astype("Int64") if _is_whole_number_dtype(values) else values)
    parsed = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
    if date_format:  # ISO 8601 is never ambiguous: only the other values need the format
        other = parsed.isna() & text.notna()
        parsed[other] = pd.to_datetime(text[other], errors="coerce", utc=True, format=date_format)
    stamps = parsed.dt.tz_localize(None).astype("datetime64[ns]")
    return stamps, text.notna() & stamps.isna()


def _reject_non_iso(table: str, column: Column, bad: pd.Series) -> None:
    """Non-ISO dates without a format: say whether the day/month order is even decidable.

    Raises:
        DataContractError: when every unreadable value is written day and month first (the
            format must be named); other unreadable values fall through to "unparseable".
    """
    text = bad.astype("string").str.strip()
    parts = text.str.extract(_DAY_MONTH)
    if parts[0].isna().any():
        return
    first, second = parts[0].astype(int), parts[1].astype(int)
    examples = _examples(bad)
    if (first > 12).any() and (second > 12).any():
        return  # both orders in one column: unparseable either way
    if (first > 12).any() or (second > 12).any():
        order = "%d/%m/%Y" if (first > 12).any() else "%m/%d/%Y"
        rule = "dates not in ISO 8601 (YYYY-MM-DD)"
        hint = f"name the format with --date-format or the preset, e.g. {order}"
    else:
        rule = "ambiguous dates: day/month order cannot be decided"
        hint = "name the format with --date-format or the preset: %d/%m/%Y or %m/%d/%Y"
    raise DataContractError(
        table,
        rule,
        column.name,
        rows=row_numbers(bad.index),
        detail=f"found {examples}; {hint}; {ROWS_NOTE}",
    )


_CONVERTERS: dict[ColumnType, Converter] = {
    "str": _to_text,
    "float": _to_float,
    "int": _to_whole,
    "bool": _to_bool,
}
"""Converters of the non-date types (dates go through `parse_datetimes`)."""
_DTYPES: dict[ColumnType, str] = {
    "str": "object",
    "float": "float64",
    "int": "float64",
    "bool": "boolean",
    "date": "datetime64[ns]",
    "timestamp": "datetime64[ns]",
}


# ------------------------------------------------------------------------------------ row rules


def _schema(spec: TableSpec, now: pd.Timestamp) -> pa.DataFrameSchema:
    """The pandera schema of a normalized table: nulls, uniqueness, ranges, no future dates."""
    return pa.DataFrameSchema(
        {c.name: _pandera_column(c, now) for c in spec.columns}, name=spec.name, strict=False
    )


def _pandera_column(column: Column, now: pd.Timestamp) -> pa.Column:
    checks = []
    if column.type in ("float", "int"):
        checks.append(pa.Check(_finite, error="not a finite number"))
    low, high = column.min_value, column.max_value
    if low is not None:
        checks.append(pa.Check.ge(low, error=f"below the minimum {low:g}"))
    if high is not None:
        checks.append(pa.Check.le(high, error=f"above the maximum {high:g}"))
    if column.not_in_future:
        future = f"date in the future: after {now:%Y-%m-%d %H:%M} UTC"
        checks.append(pa.Check.le(now, error=future))
    return pa.Column(
        None,
        checks=checks,
        nullable=column.nullable,
        unique=column.unique,
        report_duplicates="all",
        required=False,
    )


def _finite(values: pd.Series) -> pd.Series:
    return pd.Series(np.isfinite(values.to_numpy(dtype="float64")), index=values.index)


def _check_rules(spec: TableSpec, frame: pd.DataFrame, now: pd.Timestamp) -> None:
    try:
        _schema(spec, now).validate(frame, lazy=True)
    except SchemaErrors as exc:
        raise _first_failure(spec, exc.failure_cases) from None


def _first_failure(spec: TableSpec, cases: pd.DataFrame) -> DataContractError:
    """The failure of the first column (contract order) and its first check, as one error."""
    for column in spec.columns:
        mine = cases[cases["column"] == column.name]
        if mine.empty:
            continue
        check = mine["check"].iloc[0]
        failed = mine[mine["check"] == check]
        return DataContractError(
            spec.name,
            _PANDERA_RULES.get(str(check), str(check)),
            column.name,
            rows=row_numbers(failed["index"].dropna()),
            detail=f"found {_examples(failed['failure_case'])}; {ROWS_NOTE}",
        )
    first = cases.iloc[0]
    return DataContractError(spec.name, str(first["check"]), detail=str(first["failure_case"]))


def _check_not_before(spec: TableSpec, frame: pd.DataFrame) -> None:
    for column in spec.columns:
        if column.not_before is None:
            continue
        bad = frame[column.name] < frame[column.not_before]
        if bad.any():
            raise DataContractError(
                spec.name,
                f"earlier than {column.not_before}",
                column.name,
                rows=row_numbers(frame.index[bad.to_numpy()]),
                detail=f"found {_examples(frame.loc[bad, column.name])}; {ROWS_NOTE}",
            )


def check_unique_key(spec: TableSpec, frame: pd.DataFrame) -> None:
    """Refuse rows that repeat the table's key (e.g. a customer twice in one campaign: once
    contacted and once held out, it would count in both groups).

    Raises:
        DataContractError: naming the key's columns, the first repeated key and its rows.
    """
    key = list(spec.unique_key)
    if not key or frame.empty:
        return
    repeated = frame.duplicated(subset=key, keep=False).to_numpy()
    if not repeated.any():
        return
    first = frame.loc[repeated, key].iloc[0]
    same = repeated & (frame[key] == first).all(axis=1).to_numpy()
    found = ", ".join(_show(first[c]) for c in key)
    raise DataContractError(
        spec.name,
        f"each ({', '.join(key)}) at most once",
        ", ".join(key),
        rows=row_numbers(frame.index[same]),
        detail=f"found {found} on {int(same.sum())} rows; {ROWS_NOTE}",
    )


def _check_references(tables: Mapping[str, pd.DataFrame]) -> None:
    for name, frame in tables.items():
        check_references(name, frame, tables)


def check_references(name: str, frame: pd.DataFrame, tables: Mapping[str, pd.DataFrame]) -> None:
    """Check that a normalized table's (or chunk's) ids exist in the tables it references.

    Args:
        name: the contract table `frame` belongs to.
        frame: its normalized rows (source index kept, for row numbers).
        tables: normalized tables by name; a referenced table that is absent is not checked.

    Raises:
        DataContractError: an id is not in its referenced table.
    """
    for column, target in TABLES[name].references.items():
        if target not in tables:
            continue
        unknown = ~frame[column].isin(tables[target][column])
        if unknown.any():
            raise DataContractError(
                name,
                f"unknown {column}: not in table '{target}'",
                column,
                rows=row_numbers(frame.index[unknown.to_numpy()]),
                detail=f"found {_examples(frame.loc[unknown, column])}; {ROWS_NOTE}",
            )


# -------------------------------------------------------------------------------------- helpers


def _naive_utc(moment: pd.Timestamp) -> pd.Timestamp:
    moment = pd.Timestamp(moment)
    return moment.tz_convert("UTC").tz_localize(None) if moment.tzinfo else moment


def _stripped(values: pd.Series) -> pd.Series:
    """Values as stripped text (object dtype), blanks as None; strips each distinct value once."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    text = pd.Index(uniques).astype("string").str.strip()
    labels = np.empty(len(text) + 1, dtype=object)  # the extra last slot (code -1) is None
    labels[:-1] = text.where(text != "", None).to_numpy(dtype=object)
    return pd.Series(labels[codes], index=values.index, dtype=object)


def _is_whole_number_dtype(values: pd.Series) -> bool:
    if pd.api.types.is_integer_dtype(values):
        return True
    if not pd.api.types.is_float_dtype(values):
        return False
    present = values.dropna()
    return bool((present == np.floor(present)).all())


def _examples(values: pd.Series, limit: int = 3) -> str:
    distinct = pd.unique(values.to_numpy(dtype=object))[:limit]
    return ", ".join(_show(v) for v in distinct)


def _show(value: object) -> str:
    if value is None or value is pd.NA or value is pd.NaT:
        return "a blank"
    if isinstance(value, float) and np.isnan(value):
        return "a blank"
    if isinstance(value, pd.Timestamp):
        return str(value.date()) if value == value.normalize() else str(value)
    if isinstance(value, float):
        return f"{value:g}"
    return repr(value) if isinstance(value, str) else str(value)


def _row_number(label: object) -> object:
    if isinstance(label, int | np.integer):
        return int(label) + 1
    if isinstance(label, float | np.floating) and float(label).is_integer():
        return int(label) + 1
    return label


def _sort_key(value: object) -> tuple[int, float, str]:
    if isinstance(value, int | float):
        return (0, float(value), "")
    return (1, 0.0, str(value))
