"""Presets: declarative mappings from known public transaction logs to raw contract tables."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import pandas as pd

from loyal.errors import LoyalError

Expr = Callable[[pd.DataFrame], pd.Series]
"""A column expression: source rows in, one value per row out (index kept)."""


# ---------------------------------------------------------------------------------- expressions


def column(name: str) -> Expr:
    """A source column as it is."""
    return lambda rows: rows[name]


def constant(value: object) -> Expr:
    """The same value on every row (e.g. the one product of a single-product log)."""
    return lambda rows: pd.Series(value, index=rows.index)


def integer_id(name: str) -> Expr:
    """A numeric id as its integer text: no decimals, no zero padding; non-integers blank.

    The one id rule of every preset, so users type ids as the numbers they are: `17850.0`
    becomes `'17850'` and CDNOW's zero-padded `00001` becomes `'1'`.
    """

    def expr(rows: pd.DataFrame) -> pd.Series:
        numbers = pd.to_numeric(rows[name], errors="coerce")
        whole = numbers.where(numbers == numbers.round())
        return whole.astype("Int64").astype("string")

    return expr


def timestamp(name: str, fmt: str) -> Expr:
    """A text column parsed with an explicit format; values that do not fit become blank."""
    return lambda rows: pd.to_datetime(rows[name], format=fmt, errors="coerce")


def times(left: str, right: str, decimals: int = 4) -> Expr:
    """The product of two numeric columns (quantity x unit price), rounded against float noise."""
    return lambda rows: (rows[left] * rows[right]).round(decimals)


# ------------------------------------------------------------------------------------- presets


@dataclass(frozen=True)
class RowFilter:
    """Keep the rows where `column` has a value and, if `pattern` is set, fully matches it.

    Attributes:
        column: source column the filter looks at.
        pattern: regular expression the whole value must match (None: any non-blank value).
        reason: what the dropped rows are, for the ingest log.
    """

    column: str
    pattern: str | None = None
    reason: str = ""

    def keep(self, rows: pd.DataFrame) -> pd.Series:
        """Boolean mask of the rows to keep."""
        values = rows[self.column]
        present = values.notna()
        if self.pattern is None:
            return present
        matches = values.astype("string").str.fullmatch(self.pattern)
        return present & matches.fillna(False).astype(bool)


def _frozen(mapping: Mapping[str, Expr] | None = None) -> Mapping[str, Expr]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class Preset:
    """How one public transaction log becomes the contract's customers, transactions, products.

    Customers are every customer id left after `row_filters`, signed up at their first row's
    date; transactions are the rows also passing `transaction_filters`; products are the
    distinct product ids of those transactions.

    Attributes:
        name: the `--preset` value.
        description: one line on the source, for help and logs.
        source_file: the file to read in the folder given to `loyal ingest`.
        read_options: keyword arguments for `pandas.read_csv`.
        row_filters: filters applied to every source row (rows that belong to no customer).
        transaction_filters: filters applied to transactions only (e.g. postage lines).
        transactions: contract transaction column -> expression; must give customer_id, ts,
            product_id and amount.
        customer_attributes: customers column -> expression, last non-blank value per customer.
        product_attributes: products column -> expression, first non-blank value per product.
        catalog: the shipped offer catalog a home loaded this way serves (`models.offers`).
    """

    name: str
    description: str
    source_file: str
    read_options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    row_filters: tuple[RowFilter, ...] = ()
    transaction_filters: tuple[RowFilter, ...] = ()
    transactions: Mapping[str, Expr] = field(default_factory=_frozen)
    customer_attributes: Mapping[str, Expr] = field(default_factory=_frozen)
    product_attributes: Mapping[str, Expr] = field(default_factory=_frozen)
    catalog: str = "retail"


ONLINE_RETAIL = Preset(
    name="online-retail",
    description="UCI Online Retail, 2010-12-01 to 2011-12-09 (see its SOURCE.md)",
    source_file="online_retail.csv.gz",
    read_options=MappingProxyType({"dtype": {"InvoiceNo": str, "StockCode": str}}),
    row_filters=(RowFilter("CustomerID", reason="no CustomerID (guest checkout)"),),
    transaction_filters=(
        RowFilter(
            "StockCode",
            pattern=r"\d{5}[A-Za-z]*",
            reason="non-product StockCode (postage, fees, manual, discount, ...)",
        ),
    ),
    transactions=_frozen(
        {
            "customer_id": integer_id("CustomerID"),
            "ts": timestamp("InvoiceDate", "%Y-%m-%d %H:%M:%S"),
            "product_id": column("StockCode"),
            "amount": times("Quantity", "UnitPrice"),  # cancellations are negative: refunds
            "quantity": column("Quantity"),
        }
    ),
    customer_attributes=_frozen({"region": column("Country")}),
    product_attributes=_frozen({"name": column("Description")}),
)

CDNOW = Preset(
    name="cdnow",
    description="CDNOW 1997Q1 cohort, purchases 1997-01-01 to 1998-06-30 (see its SOURCE.md)",
    source_file="CDNOW_master.txt",
    read_options=MappingProxyType({"sep": r"\s+", "dtype": {"customer_id": str, "date": str}}),
    transactions=_frozen(
        {
            "customer_id": integer_id("customer_id"),
            "ts": timestamp("date", "%Y%m%d"),
            "product_id": constant("cd"),
            "amount": column("dollar_value"),
            "quantity": column("number_of_cds"),
        }
    ),
    product_attributes=_frozen({"name": constant("CDs"), "category": constant("music")}),
)

CDNOW_SAMPLE = Preset(
    name="cdnow-sample",
    description="CDNOW 1/10 sample of the 1997Q1 cohort (2,357 customers; see its SOURCE.md)",
    source_file="CDNOW_sample.txt",
    read_options=MappingProxyType(
        {
            "sep": r"\s+",
            "header": None,
            "names": ["customer_id", "sample_id", "date", "number_of_cds", "dollar_value"],
            "dtype": {"customer_id": str, "sample_id": str, "date": str},
        }
    ),
    transactions=CDNOW.transactions,
    product_attributes=CDNOW.product_attributes,
)

PRESETS: dict[str, Preset] = {p.name: p for p in (ONLINE_RETAIL, CDNOW, CDNOW_SAMPLE)}
"""Every preset by its `--preset` name."""


def catalog_for(manifest: Mapping[str, Any]) -> str:
    """The shipped offer catalog loaded data calls for, from its ingest manifest.

    The preset's catalog when one was applied; otherwise `bank` when the data holds account
    balances, else `retail` (a business that sells products).
    """
    preset = PRESETS.get(str(manifest.get("preset")))
    if preset is not None:
        return preset.catalog
    rows = manifest.get("rows")
    return "bank" if isinstance(rows, Mapping) and rows.get("balances") else "retail"


def get_preset(name: str) -> Preset:
    """The preset called `name`.

    Raises:
        LoyalError: when no preset has that name.
    """
    try:
        return PRESETS[name]
    except KeyError:
        known = ", ".join(PRESETS)
        raise LoyalError(f"unknown preset '{name}': choose one of {known}") from None


# ----------------------------------------------------------------------------------- applying


@dataclass(frozen=True)
class PresetTables:
    """Raw contract tables made by a preset, and how many source rows each filter dropped."""

    tables: dict[str, pd.DataFrame]
    dropped: dict[str, int]


def apply_preset(preset: Preset, source: pd.DataFrame) -> PresetTables:
    """Map a source log to raw contract tables, ready for `features.validation`.

    Transactions keep the source index, so validation errors name source rows.

    Args:
        preset: the mapping.
        source: the rows of `preset.source_file` as read with `preset.read_options`.

    Returns:
        Raw customers, transactions and products tables, and rows dropped per filter reason.
    """
    dropped: dict[str, int] = {}
    rows = _filtered(source, preset.row_filters, dropped)
    mapped = _evaluate(rows, preset.transactions)
    sold = _filtered(rows, preset.transaction_filters, dropped).index
    transactions = mapped.loc[sold]
    tables = {
        "customers": _customers(mapped, _evaluate(rows, preset.customer_attributes)),
        "transactions": transactions,
        "products": _products(transactions, _evaluate(rows.loc[sold], preset.product_attributes)),
    }
    return PresetTables(tables=tables, dropped=dropped)


def _filtered(
    rows: pd.DataFrame, filters: tuple[RowFilter, ...], dropped: dict[str, int]
) -> pd.DataFrame:
    for row_filter in filters:
        keep = row_filter.keep(rows)
        dropped[row_filter.reason or row_filter.column] = int((~keep).sum())
        rows = rows[keep]
    return rows


def _evaluate(rows: pd.DataFrame, expressions: Mapping[str, Expr]) -> pd.DataFrame:
    return pd.DataFrame({name: expr(rows) for name, expr in expressions.items()}, index=rows.index)


def _customers(mapped: pd.DataFrame, attributes: pd.DataFrame) -> pd.DataFrame:
    """One row per customer: first activity as sign-up date, last known attributes."""
    rows = pd.concat([mapped[["customer_id", "ts"]], attributes], axis=1).sort_values(
        "ts", kind="stable"
    )
    aggregations: dict[str, tuple[str, str]] = {"signup_date": ("ts", "min")}
    aggregations |= {str(name): (str(name), "last") for name in attributes.columns}
    customers = rows.groupby("customer_id", sort=True).agg(**aggregations).reset_index()
    customers["signup_date"] = customers["signup_date"].dt.normalize()
    return customers


def _products(transactions: pd.DataFrame, attributes: pd.DataFrame) -> pd.DataFrame:
    """One row per product sold, with its first known attributes."""
    rows = pd.concat([transactions[["product_id"]], attributes], axis=1)
    aggregations = {str(name): (str(name), "first") for name in attributes.columns}
    if not aggregations:
        products = rows[["product_id"]].drop_duplicates().sort_values("product_id")
        return products.reset_index(drop=True)
    return rows.groupby("product_id", sort=True).agg(**aggregations).reset_index()
