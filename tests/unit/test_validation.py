"""Data contract validation: normalization, and one clear message per kind of bad input."""

from __future__ import annotations

import pandas as pd
import pytest

from features.validation import validate_tables
from loyal.errors import DataContractError

pytestmark = pytest.mark.unit

NOW = pd.Timestamp("2025-01-01")
Tables = dict[str, pd.DataFrame]


def raw_tables() -> Tables:
    """Three customers, three transactions, two products, as text the way a CSV reads."""
    return {
        "customers": pd.DataFrame(
            {
                "customer_id": ["c1", "c2", "c3"],
                "signup_date": ["2024-01-01", "2024-02-01", "2024-03-01"],
                "consent_marketing": ["yes", "No", None],
                "closed_at": [None, "2024-06-30", ""],
                "age": ["30", "41", None],
            }
        ),
        "transactions": pd.DataFrame(
            {
                "customer_id": ["c1", "c2", "c3"],
                "ts": ["2024-01-05 10:00:00", "2024-02-05", "2024-03-05T08:00:00+02:00"],
                "product_id": ["p1", "p2", "p1"],
                "amount": ["10.5", "-3", "7"],
            }
        ),
        "products": pd.DataFrame(
            {"product_id": ["p1", "p2"], "name": ["Card", "Loan"], "margin_rate": ["0.2", "0.3"]}
        ),
    }


def with_optional_tables() -> Tables:
    tables = raw_tables()
    tables["interactions"] = pd.DataFrame(
        {
            "customer_id": ["c1", "c2", "c3"],
            "ts": ["2024-01-06", "2024-02-06", "2024-03-06"],
            "kind": ["call", "complaint", "login"],
            "satisfaction": ["4", "1", None],
        }
    )
    tables["balances"] = pd.DataFrame(
        {
            "customer_id": ["c1", "c2", "c3"],
            "ts": ["2024-01-31", "2024-01-31", "2024-03-31"],
            "account_type": ["checking", "credit_card", "savings"],
            "balance": ["5000", "-1200.50", "0"],
            "rate": ["0.001", "0.22", "-0.005"],
        }
    )
    return tables


def test_valid_tables_are_normalized_to_contract_dtypes() -> None:
    result = validate_tables(with_optional_tables(), now=NOW)
    customers = result.tables["customers"]
    transactions = result.tables["transactions"]
    assert customers["customer_id"].tolist() == ["c1", "c2", "c3"]
    assert str(customers["signup_date"].dtype) == "datetime64[ns]"
    assert customers["consent_marketing"].tolist()[:2] == [True, False]
    assert customers["consent_marketing"].isna().iloc[2]
    assert customers["closed_at"].isna().tolist() == [True, False, True]
    assert customers["age"].dtype == "float64"
    assert transactions["amount"].tolist() == [10.5, -3.0, 7.0]  # refunds are negative
    assert transactions["ts"].iloc[2] == pd.Timestamp("2024-03-05 06:00:00")  # UTC, naive
    assert transactions["ts"].dt.tz is None
    assert result.tables["balances"]["balance"].min() == -1200.5  # negative balances allowed
    assert result.warnings == []


def test_absent_optional_columns_are_added_empty_and_inputs_untouched() -> None:
    tables = raw_tables()
    before = {name: frame.copy() for name, frame in tables.items()}
    result = validate_tables(tables, now=NOW)
    transactions = result.tables["transactions"]
    assert list(transactions.columns) == [
        "customer_id",
        "ts",
        "product_id",
        "amount",
        "margin",
        "quantity",
        "channel",
    ]
    assert transactions["margin"].isna().all()
    assert transactions["margin"].dtype == "float64"
    for name, frame in tables.items():
        pd.testing.assert_frame_equal(frame, before[name])


def test_numeric_ids_become_integer_text() -> None:
    tables = raw_tables()
    tables["customers"]["customer_id"] = [17850.0, 13047.0, 12583.0]
    tables["transactions"]["customer_id"] = [17850, 13047, 12583]
    result = validate_tables(tables, now=NOW)
    assert result.tables["customers"]["customer_id"].tolist() == ["17850", "13047", "12583"]


def test_float_text_ids_lose_the_point_zero_but_keep_padding_and_real_codes() -> None:
    tables = raw_tables()
    tables["customers"]["customer_id"] = ["17850.0", "13047.0", "12583.0"]  # CSV of floats
    tables["transactions"]["customer_id"] = ["17850", "13047", "12583"]
    tables["products"]["name"] = ["1.0", "1.5"]  # real codes: kept as given
    result = validate_tables(tables, now=NOW)
    assert result.tables["customers"]["customer_id"].tolist() == ["17850", "13047", "12583"]
    assert result.tables["products"]["name"].tolist() == ["1.0", "1.5"]
    padded = raw_tables()
    padded["customers"]["customer_id"] = ["00001", "00002", "00003"]
    padded["transactions"]["customer_id"] = ["00001", "00002", "00003"]
    kept = validate_tables(padded, now=NOW).tables["customers"]["customer_id"]
    assert kept.tolist() == ["00001", "00002", "00003"]


def test_unknown_columns_are_kept_with_a_warning() -> None:
    tables = raw_tables()
    tables["transactions"]["invoice"] = ["i1", "i2", "i3"]
    tables["transactions"]["store"] = ["s", "s", "t"]
    result = validate_tables(tables, now=NOW)
    assert result.tables["transactions"]["invoice"].tolist() == ["i1", "i2", "i3"]
    assert any("transactions" in w and "invoice, store" in w for w in result.warnings)


def test_unknown_tables_are_ignored_with_a_warning() -> None:
    tables = raw_tables()
    tables["stores"] = pd.DataFrame({"store_id": ["s"]})
    result = validate_tables(tables, now=NOW)
    assert "stores" not in result.tables
    assert any("stores" in w for w in result.warnings)


def test_column_names_match_regardless_of_case_and_spaces() -> None:
    tables = raw_tables()
    tables["transactions"] = tables["transactions"].rename(columns={"amount": " Amount"})
    assert validate_tables(tables, now=NOW).tables["transactions"]["amount"].sum() == 14.5


BAD_VALUES = {
    # case: (table, column, row index, value, rule, rows in the message)
    "wrong type": ("transactions", "amount", 1, "abc", "expected a number", "2"),
    "unparseable date": ("customers", "signup_date", 2, "31/31/2024", "unparseable date", "3"),
    "unparseable timestamp": ("transactions", "ts", 0, "yesterday", "unparseable", "1"),
    "NaN amount": ("transactions", "amount", 2, None, "missing value", "3"),
    "blank id": ("transactions", "customer_id", 0, " ", "missing value", "1"),
    "infinite amount": ("transactions", "amount", 0, "inf", "not a finite number", "1"),
    "future timestamp": ("transactions", "ts", 1, "2030-01-01", "in the future", "2"),
    "future signup": ("customers", "signup_date", 0, "2099-12-31", "in the future", "1"),
    "negative age": ("customers", "age", 1, "-4", "below the minimum 0", "2"),
    "fractional age": ("customers", "age", 1, "4.5", "whole number", "2"),
    "margin rate above 1": ("products", "margin_rate", 1, "1.5", "above the maximum 1", "2"),
    "negative margin rate": ("products", "margin_rate", 0, "-0.1", "below the minimum 0", "1"),
    "bad boolean": ("customers", "consent_marketing", 2, "maybe", "yes/no", "3"),
    "closed before signup": ("customers", "closed_at", 1, "2023-01-01", "earlier", "2"),
    "duplicate customer ids": ("customers", "customer_id", 2, "c1", "duplicate", "1, 3"),
    "duplicate product ids": ("products", "product_id", 1, "p1", "duplicate", "1, 2"),
    "unknown customer": ("transactions", "customer_id", 2, "c9", "not in table 'customers'", "3"),
    "unknown product": ("transactions", "product_id", 0, "p9", "not in table 'products'", "1"),
}


@pytest.mark.parametrize("case", list(BAD_VALUES))
def test_bad_values_name_table_column_rule_and_rows(case: str) -> None:
    table, column, row, value, rule, rows = BAD_VALUES[case]
    tables = raw_tables()
    tables[table].loc[row, column] = value
    with pytest.raises(DataContractError) as caught:
        validate_tables(tables, now=NOW)
    message = str(caught.value)
    assert message.startswith(f"table '{table}', column '{column}': ")
    assert rule in message
    assert message.endswith(f"first offending rows: {rows}")
    assert "row 1 = first data row" in message


@pytest.mark.parametrize(
    ("table", "column", "value", "rule"),
    [
        ("interactions", "satisfaction", "6", "maximum 5"),
        ("interactions", "satisfaction", "0", "minimum 1"),
        ("interactions", "customer_id", "c9", "not in table 'customers'"),
        ("balances", "rate", "4.1", "maximum 1"),  # a percentage where a fraction belongs
        ("balances", "balance", None, "missing value"),
        ("balances", "customer_id", "c9", "not in table 'customers'"),
    ],
)
def test_optional_tables_follow_their_rules(
    table: str, column: str, value: str | None, rule: str
) -> None:
    tables = with_optional_tables()
    tables[table].loc[1, column] = value
    with pytest.raises(DataContractError, match=rule) as caught:
        validate_tables(tables, now=NOW)
    assert (caught.value.table, caught.value.column, caught.value.rows) == (table, column, [2])


def test_missing_required_column_is_named() -> None:
    tables = raw_tables()
    tables["transactions"] = tables["transactions"].drop(columns=["ts", "amount"])
    with pytest.raises(DataContractError) as caught:
        validate_tables(tables, now=NOW)
    message = str(caught.value)
    assert "table 'transactions', column 'ts': missing required column" in message
    assert "also missing: amount" in message


def test_missing_required_table_is_named() -> None:
    tables = raw_tables()
    del tables["products"]
    with pytest.raises(DataContractError, match="table 'products': missing required table"):
        validate_tables(tables, now=NOW)


def test_optional_tables_may_be_absent() -> None:
    assert set(validate_tables(raw_tables(), now=NOW).tables) == {
        "customers",
        "transactions",
        "products",
    }


@pytest.mark.parametrize("table", ["customers", "transactions", "interactions"])
def test_empty_table_is_rejected(table: str) -> None:
    tables = with_optional_tables()
    tables[table] = tables[table].iloc[:0]
    with pytest.raises(DataContractError, match=f"table '{table}': empty table"):
        validate_tables(tables, now=NOW)


def test_future_is_relative_to_now() -> None:
    tables = raw_tables()
    with pytest.raises(DataContractError, match="in the future"):
        validate_tables(tables, now=pd.Timestamp("2024-02-15"))
    assert validate_tables(tables, now=pd.Timestamp("2024-07-01 08:00", tz="Europe/Paris"))


def test_row_numbers_follow_the_source_index() -> None:
    tables = raw_tables()
    tables["transactions"].index = [10, 20, 30]  # e.g. rows kept by a preset's filters
    tables["transactions"].loc[20, "amount"] = "x"
    with pytest.raises(DataContractError) as caught:
        validate_tables(tables, now=NOW)
    assert caught.value.rows == [21]
