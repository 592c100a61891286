"""Product and account-type names shared by the feature catalog and the offer catalog.

They live in the common base so `models/` (the offer catalog's known fields) reads them without
importing `features/`.
"""

from __future__ import annotations

SAMPLE_BANK_PRODUCTS: tuple[str, ...] = (
    "checking",
    "savings",
    "high_yield_savings",
    "credit_card",
    "premium_card",
    "mortgage",
    "personal_loan",
    "investment_fund",
    "insurance",
    "overdraft_protection",
)
"""The sample bank's products: the default columns of the holdings view."""

BALANCE_TYPES: tuple[str, ...] = (
    "checking",
    "savings",
    "high_yield_savings",
    "mortgage",
    "personal_loan",
    "investment_fund",
)
"""Account types with a balance and a rate column in the balances view."""
