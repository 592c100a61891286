"""The data contract: which tables a business brings, their columns, types and rules.

This module only declares; validation lives in `features.validation`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pandas as pd

ColumnType = Literal["str", "date", "timestamp", "float", "int", "bool"]


@dataclass(frozen=True)
class Column:
    """One contract column: its type, whether it must be present, and the rules it obeys."""

    name: str
    type: ColumnType
    required: bool = False
    nullable: bool = True
    unique: bool = False
    min_value: float | None = None
    max_value: float | None = None
    not_in_future: bool = False
    not_before: str | None = None  # another column of the same row this value may not precede
    description: str = ""


@dataclass(frozen=True)
class TableSpec:
    """One contract table: its columns and the tables it references."""

    name: str
    columns: tuple[Column, ...]
    required_table: bool = True
    references: dict[str, str] = field(default_factory=dict)  # column -> referenced table
    description: str = ""
    unique_key: tuple[str, ...] = ()
    """Columns whose values together identify a row (checked across the whole table)."""

    @property
    def required_columns(self) -> list[str]:
        """Names of the columns every file of this table must have."""
        return [c.name for c in self.columns if c.required]

    def column(self, name: str) -> Column:
        """The declared column called `name`."""
        return next(c for c in self.columns if c.name == name)


CUSTOMERS = TableSpec(
    name="customers",
    description="One row per customer.",
    columns=(
        Column("customer_id", "str", required=True, nullable=False, unique=True),
        Column("signup_date", "date", required=True, nullable=False, not_in_future=True),
        Column("region", "str"),
        Column("age", "int", min_value=0, max_value=120),
        Column("consent_marketing", "bool"),
        Column(
            "closed_at",
            "date",
            not_in_future=True,
            not_before="signup_date",
            description="explicit account closure",
        ),
    ),
)

_CUSTOMER_ID = Column("customer_id", "str", required=True, nullable=False)
"""The customer an event table's row belongs to (a reference to `customers`)."""
_EVENT_TS = Column("ts", "timestamp", required=True, nullable=False, not_in_future=True)
"""When an event table's row happened."""


def _customer_events(
    name: str,
    description: str,
    *columns: Column,
    required_table: bool = False,
    references: dict[str, str] | None = None,
) -> TableSpec:
    """A table of dated events per customer: `_CUSTOMER_ID` (referencing `customers`) and
    `_EVENT_TS`, then its own `columns`; `references` adds the other tables it refers to."""
    return TableSpec(
        name=name,
        required_table=required_table,
        description=description,
        references={"customer_id": "customers", **(references or {})},
        columns=(_CUSTOMER_ID, _EVENT_TS, *columns),
    )


TRANSACTIONS = _customer_events(
    "transactions",
    "Revenue events: purchases, fees, interest margin; refunds are negative.",
    Column("product_id", "str", required=True, nullable=False),
    Column("amount", "float", required=True, nullable=False, description="revenue"),
    Column("margin", "float", description="else the product's margin_rate applies"),
    Column("quantity", "float", description="units bought; negative for returns"),
    Column("channel", "str", description="branch, online, mobile, atm, phone, ..."),
    required_table=True,
    references={"product_id": "products"},
)

PRODUCTS = TableSpec(
    name="products",
    description="The product catalog.",
    columns=(
        Column("product_id", "str", required=True, nullable=False, unique=True),
        Column("name", "str"),
        Column("category", "str"),
        Column("margin_rate", "float", min_value=0.0, max_value=1.0),
    ),
)

INTERACTIONS = _customer_events(
    "interactions",
    "Contacts and visits: call, complaint, login, atm_visit, branch_visit, ...",
    Column("kind", "str", required=True, nullable=False),
    Column("satisfaction", "float", min_value=1, max_value=5),
)

BALANCES = _customer_events(
    "balances",
    "Account balances over time (banking).",
    Column("account_type", "str", required=True, nullable=False),
    Column("balance", "float", required=True, nullable=False),
    Column(
        "rate",
        "float",
        min_value=-1.0,
        max_value=1.0,
        description="annual interest rate as a fraction, 0.041 = 4.1%",
    ),
)

CAMPAIGNS = TableSpec(
    name="campaigns",
    required_table=False,
    description=(
        "Past retention campaigns with a random control group: one row per member, contacted "
        "(treated) or held out; the outcome is the churn label at ts (what the uplift model "
        "learns from)."
    ),
    references={"customer_id": "customers"},
    unique_key=("campaign_id", "customer_id"),
    columns=(
        Column("campaign_id", "str", required=True, nullable=False),
        _CUSTOMER_ID,
        _EVENT_TS,
        Column("treated", "bool", required=True, nullable=False),
        Column("action_id", "str", description="the action taken (blank for control)"),
        Column("cost", "float", min_value=0.0, description="cost of the contact"),
    ),
)

TABLES: dict[str, TableSpec] = {
    t.name: t for t in (CUSTOMERS, TRANSACTIONS, PRODUCTS, INTERACTIONS, BALANCES, CAMPAIGNS)
}
"""Every contract table by name, in load order (referenced tables first)."""


def has_values(frame: pd.DataFrame | None, column: str) -> bool:
    """Whether a table has `column` with at least one value (not all blank).

    Validation keeps every optional contract column, all-null when the business does not have
    it; steps ask this before relying on one (margins, categories, consent, channels).
    """
    if not isinstance(frame, pd.DataFrame) or column not in frame.columns:
        return False
    return bool(frame[column].notna().any())
