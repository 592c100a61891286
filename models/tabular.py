"""Column roles for a bring-your-own churn table: identifiers, numbers, categories and label."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from loyal.errors import DataContractError

POSITIVE_LABELS = frozenset(
    {"1", "1.0", "yes", "y", "true", "t", "churn", "churned", "left", "lost"}
)
NEGATIVE_LABELS = frozenset(
    {"0", "0.0", "no", "n", "false", "f", "no churn", "not churned", "stayed", "retained", "active"}
)
MIN_MINORITY_ROWS = 50
"""Fewest rows of the rarer label a table needs: below it, folds hold a handful of churners and
neither the search, the calibration nor the reported ROC-AUC means anything."""
FREE_TEXT_CHARS = 30
"""A text column whose values have a median length above this is free text (comments, notes)."""
FREE_TEXT_WORDS = 4
"""...as is one whose values have a median of this many words or more."""
NEARLY_UNIQUE = 0.9
"""A text column with a different value on more than this share of its rows is identifier-like
(e-mails, phone numbers, order references); lower-cardinality text (surnames, states, ZIP
codes) stays a category, which the model reads with XGBoost's native categorical splits."""
ROW_NUMBER = "row"
"""Name of the ids of a table read without an id column: its row numbers, from 1."""


@dataclass(frozen=True)
class TableRoles:
    """What each column of a table is for, as inferred by `infer_roles`.

    Attributes:
        id_col: the customer identifier (kept aside, never a feature); None when the table
            has none (rows are then numbered).
        label_col: the churn label.
        numeric: feature columns used as numbers.
        categorical: feature columns used as categories.
        coerced: numeric-looking text columns parsed to numbers -> how many blanks became missing.
        dropped: columns left out -> why (identifier, free text, constant, empty).
    """

    id_col: str | None
    label_col: str
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    coerced: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, str] = field(default_factory=dict)

    @property
    def features(self) -> list[str]:
        """Feature columns in table order split by kind: numeric first, then categorical."""
        return [*self.numeric, *self.categorical]

    def warnings(self) -> list[str]:
        """One readable line per dropped or coerced column, for the log."""
        lines = [f"column '{c}' dropped: {why}" for c, why in self.dropped.items()]
        lines += [
            f"column '{c}' read as numbers; {n} blank value(s) treated as missing"
            for c, n in self.coerced.items()
        ]
        return lines


@dataclass(frozen=True)
class PreparedTable:
    """A table split into features, label and ids, with the roles that produced it."""

    X: pd.DataFrame
    y: pd.Series
    ids: pd.Series
    roles: TableRoles


def parse_label(values: pd.Series, table: str = "table") -> pd.Series:
    """Turn a label column into 0/1: yes/no, true/false, 1/0, churned/stayed and the like.

    Args:
        values: the raw label column.
        table: table name used in error messages.

    Returns:
        An int8 series of 0 and 1 with the same index.

    Raises:
        DataContractError: when a value is missing or not a known label, the label has more
            than two values, or it is constant (a model needs both churners and non-churners).
    """
    column = str(values.name)
    missing = values.isna()
    if missing.any():
        raise DataContractError(
            table, "the label must not be missing", column, rows=list(values.index[missing])
        )
    if pd.api.types.is_bool_dtype(values):
        parsed = values.astype("int8")
    else:
        text = values.astype(str).str.strip().str.lower()
        distinct = pd.unique(text)
        if len(distinct) > 2:
            raise DataContractError(
                table,
                f"the label must be binary (churned or not); it has {len(distinct)} values",
                column,
                detail=f"values: {_examples(values)}",
            )
        parsed = pd.Series(np.nan, index=values.index)
        parsed[text.isin(POSITIVE_LABELS)] = 1
        parsed[text.isin(NEGATIVE_LABELS)] = 0
        unknown = parsed.isna()
        if unknown.any():
            examples = _examples(values[unknown])
            raise DataContractError(
                table,
                "the label must be yes/no, true/false, 1/0 or churned/stayed",
                column,
                rows=list(values.index[unknown]),
                detail=f"unknown values: {examples}",
            )
        parsed = parsed.astype("int8")
    if parsed.nunique() < 2:
        only = values.iloc[0]
        raise DataContractError(
            table,
            "the label is constant; a churn model needs both churners and non-churners",
            column,
            detail=f"every row is {only!r}",
        )
    return parsed.rename(column)


def _examples(values: pd.Series, most: int = 5) -> str:
    """The first few distinct values of a column, quoted, with how many more there are."""
    distinct = pd.unique(values)
    shown = ", ".join(repr(v) for v in distinct[:most])
    return shown + (f" and {len(distinct) - most} more" if len(distinct) > most else "")


def check_classes(y: pd.Series, raw: pd.Series, table: str = "table") -> None:
    """Refuse a label with fewer than `MIN_MINORITY_ROWS` rows of its rarer class.

    Args:
        y: the parsed 0/1 label.
        raw: the label as given, to name the rare value in the message.
        table: table name used in error messages.

    Raises:
        DataContractError: naming the column, the rare value and its count.
    """
    positives = int(y.sum())
    rare, count = (1, positives) if positives <= len(y) - positives else (0, len(y) - positives)
    if count < MIN_MINORITY_ROWS:
        value = raw[(y == rare).to_numpy()].iloc[0]
        raise DataContractError(
            table,
            f"only {count} row(s) have the label {value!r}; cross-validation and "
            f"calibration need at least {MIN_MINORITY_ROWS} of each class",
            str(raw.name),
        )


def _numeric_text(values: pd.Series) -> pd.Series | None:
    """Parse a text column as numbers if every non-blank value is one, else None."""
    text = values.astype("string").str.strip()
    blank = text.isna() | (text == "")
    if blank.all():
        return None
    parsed = pd.to_numeric(text.where(~blank), errors="coerce")
    if parsed[~blank].isna().any():
        return None
    return parsed.astype(float)


def _free_text(text: pd.Series) -> bool:
    """Whether text values read like sentences (long, or several words) rather than codes."""
    sample = text.dropna().astype(str).head(1000)
    lengths = sample.str.len()
    words = sample.str.count(r"\S+")
    return bool(lengths.median() > FREE_TEXT_CHARS or words.median() >= FREE_TEXT_WORDS)


def _dates(text: pd.Series) -> bool:
    """Whether text values are dates or timestamps (almost all parse, and look like dates)."""
    sample = text.dropna().astype(str).head(200)
    if sample.empty or not sample.str.contains(r"\d[-/.]\d|\d{4}", regex=True).all():
        return False
    parsed = pd.to_datetime(sample, errors="coerce", format="mixed")
    return bool(parsed.notna().mean() >= 0.95)


def _is_integer_valued(values: pd.Series) -> bool:
    finite = values.dropna()
    return bool(len(finite)) and bool(np.all(np.equal(np.mod(finite, 1), 0)))


def _classify(values: pd.Series, n_rows: int) -> tuple[str, pd.Series | None, str]:
    """Role of one feature column: ("numeric" | "categorical" | "coerced" | "drop", data, why)."""
    distinct = values.nunique(dropna=True)
    if distinct == 0:
        return "drop", None, "empty"
    if distinct == 1 and not values.isna().any():
        return "drop", None, "constant"
    if pd.api.types.is_bool_dtype(values):
        return "numeric", values.astype(float), ""
    if pd.api.types.is_numeric_dtype(values):
        if n_rows > 20 and distinct == n_rows and _is_integer_valued(values):
            return "drop", None, "identifier (a different whole number on every row)"
        return "numeric", values, ""
    if isinstance(values.dtype, pd.CategoricalDtype):
        return "categorical", values, ""
    if pd.api.types.is_datetime64_any_dtype(values):
        return "drop", None, "a date; derive a number from it (e.g. tenure) to use it"
    numbers = _numeric_text(values)
    if numbers is not None:
        return "coerced", numbers, ""
    if _free_text(values):
        return "drop", None, f"free text (long or many-word values, {distinct} distinct)"
    if _dates(values):
        return "drop", None, "dates; derive a number from them (e.g. tenure) to use them"
    if n_rows > 20 and distinct == n_rows:
        return "drop", None, "identifier (a different value on every row)"
    present = int(values.notna().sum())
    if n_rows > 20 and distinct > NEARLY_UNIQUE * present:
        share = distinct / max(present, 1)
        return "drop", None, f"identifier-like ({share:.0%} of its values are distinct)"
    return "categorical", values, ""


def infer_roles(
    frame: pd.DataFrame, id_col: str | None, label_col: str, table: str = "table"
) -> TableRoles:
    """Infer what each column of a one-row-per-customer table is for.

    Args:
        frame: the table as read, untouched.
        id_col: the customer identifier column (None: the table has none).
        label_col: the churn label column.
        table: table name used in error messages.

    Returns:
        The roles; nothing is modified.

    Raises:
        DataContractError: when the id or label column is missing.
    """
    for role, column in (("id", id_col), ("label", label_col)):
        if column is not None and column not in frame.columns:
            available = ", ".join(map(str, frame.columns[:30]))
            raise DataContractError(
                table, f"the {role} column is missing", column, detail=f"columns are: {available}"
            )
    numeric: list[str] = []
    categorical: list[str] = []
    coerced: dict[str, int] = {}
    dropped: dict[str, str] = {}
    for column in frame.columns:
        if column in (id_col, label_col):
            continue
        kind, data, why = _classify(frame[column], len(frame))
        if kind == "drop":
            dropped[column] = why
        elif kind == "categorical":
            categorical.append(column)
        else:
            numeric.append(column)
            if kind == "coerced" and data is not None:
                blanks = int(data.isna().sum() - frame[column].isna().sum())
                if blanks:
                    coerced[column] = blanks
    return TableRoles(id_col, label_col, tuple(numeric), tuple(categorical), coerced, dropped)


def apply_roles(frame: pd.DataFrame, roles: TableRoles) -> pd.DataFrame:
    """Feature frame for the roles: numbers as float (blanks -> NaN), categories as category.

    Returns a new frame; the input is not modified.
    """
    out: dict[str, pd.Series] = {}
    for column in roles.numeric:
        values = frame[column]
        if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            out[column] = values.astype(float)
        else:
            text = values.astype("string").str.strip()
            out[column] = pd.to_numeric(text.where(text != ""), errors="coerce").astype(float)
    for column in roles.categorical:
        out[column] = frame[column].astype("string").astype("category")
    return pd.DataFrame(out, index=frame.index)[roles.features]


def prepare_table(
    frame: pd.DataFrame, id_col: str | None, label_col: str, table: str = "table"
) -> PreparedTable:
    """Split a bring-your-own churn table into features, a 0/1 label and ids.

    Args:
        frame: the table as read.
        id_col: the customer identifier column; None numbers the rows from 1 instead.
        label_col: the churn label column.
        table: table name used in error messages.

    Raises:
        DataContractError: on a missing id or label column, a missing, unknown, non-binary or
            constant label, fewer than `MIN_MINORITY_ROWS` of either class, or a table with no
            usable feature column.
    """
    roles = infer_roles(frame, id_col, label_col, table)
    y = parse_label(frame[label_col], table)
    check_classes(y, frame[label_col], table)
    if not roles.features:
        raise DataContractError(
            table, "no usable feature column is left after dropping identifiers and free text"
        )
    if id_col is None:
        ids = pd.Series(np.arange(1, len(frame) + 1), index=frame.index, name=ROW_NUMBER)
    else:
        ids = frame[id_col].copy()
    return PreparedTable(apply_roles(frame, roles), y, ids, roles)
