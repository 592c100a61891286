"""Sample bank: contract layout, realistic statistics, real churn drivers, reproducibility."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score
from sklearn.preprocessing import StandardScaler

import samplebank.generate as generate_module
from features.contract import TABLES, TableSpec
from loyal.errors import LoyalError
from loyal.settings import Settings
from samplebank.bank import PRODUCTS, SEGMENT_SHARES, SampleBank, generate_bank
from samplebank.generate import generate_sample_bank

pytestmark = pytest.mark.unit

CUSTOMERS = 4_000
SEED = 11
MONTHS = 24


@pytest.fixture(scope="module")
def bank() -> SampleBank:
    return generate_bank(CUSTOMERS, SEED, months=MONTHS)


@pytest.fixture(scope="module")
def closure(bank: SampleBank) -> pd.Series:
    customers = bank.tables["customers"]
    return customers.set_index(customers["customer_id"].astype(str))["closed_at"]


def _matches_contract_type(series: pd.Series, declared: str) -> bool:
    if declared == "str":
        if isinstance(series.dtype, pd.CategoricalDtype):
            return pd.api.types.is_string_dtype(series.dtype.categories)
        return pd.api.types.is_string_dtype(series)
    checks = {
        "date": pd.api.types.is_datetime64_dtype,
        "timestamp": pd.api.types.is_datetime64_dtype,
        "float": pd.api.types.is_float_dtype,
        "int": pd.api.types.is_integer_dtype,
        "bool": pd.api.types.is_bool_dtype,
    }
    return bool(checks[declared](series))


def _contract_problems(frame: pd.DataFrame, spec: TableSpec) -> list[str]:
    problems = [f"missing {c}" for c in spec.required_columns if c not in frame.columns]
    declared = [c.name for c in spec.columns]
    problems += [f"unknown {c}" for c in frame.columns if c not in declared]
    for name in frame.columns.intersection(declared):
        column, values = spec.column(name), frame[name]
        if not _matches_contract_type(values, column.type):
            problems.append(f"{name} is {values.dtype}, not {column.type}")
        if not column.nullable and values.isna().any():
            problems.append(f"{name} has nulls")
        if column.unique and values.duplicated().any():
            problems.append(f"{name} has duplicates")
        if column.min_value is not None and (values < column.min_value).any():
            problems.append(f"{name} below {column.min_value}")
        if column.max_value is not None and (values > column.max_value).any():
            problems.append(f"{name} above {column.max_value}")
        if getattr(column, "not_before", None) and (values < frame[column.not_before]).any():
            problems.append(f"{name} before {column.not_before}")
    return problems


@pytest.mark.parametrize("table", list(TABLES))
def test_tables_follow_the_contract(bank: SampleBank, table: str) -> None:
    frame = bank.tables[table]
    spec = TABLES[table]
    assert len(frame) > 0
    assert _contract_problems(frame, spec) == []
    declared_order = [c.name for c in spec.columns if c.name in frame.columns]
    assert list(frame.columns) == declared_order


def test_ids_dates_and_references_are_consistent(bank: SampleBank) -> None:
    tables = bank.tables
    ids = tables["customers"]["customer_id"]
    assert ids.str.fullmatch(r"C\d{7}").all()
    assert pd.api.types.is_string_dtype(ids) and not isinstance(ids.dtype, pd.CategoricalDtype)
    known = set(ids)
    for name in ("transactions", "interactions", "balances"):
        assert set(tables[name]["customer_id"].unique()) <= known, name
        assert tables[name]["ts"].max() < pd.Timestamp("2026-11-01"), name
        assert tables[name]["ts"].min() >= pd.Timestamp("2024-11-01"), name
    assert set(tables["transactions"]["product_id"].unique()) <= set(
        tables["products"]["product_id"]
    )
    assert set(tables["products"]["category"]) == {
        "deposits",
        "cards",
        "lending",
        "wealth",
        "protection",
    }


def test_customers_sign_up_before_and_during_the_window(bank: SampleBank) -> None:
    signup = bank.tables["customers"]["signup_date"]
    joined_in_window = (signup >= pd.Timestamp("2024-11-01")).mean()
    assert 0.15 < joined_in_window < 0.45
    assert (signup < pd.Timestamp("2020-01-01")).mean() > 0.2
    assert 0.70 <= bank.tables["customers"]["consent_marketing"].mean() <= 0.85
    assert bank.tables["customers"]["region"].nunique() == 5


def test_truth_is_kept_apart_from_the_contract_tables(bank: SampleBank) -> None:
    assert set(bank.tables) == set(TABLES)
    assert {"customers_truth", "monthly_churn"} <= set(bank.truth)
    for frame in bank.tables.values():
        assert not {"true_segment", "churn_probability", "segment"} & set(frame.columns)
    truth = bank.truth["customers_truth"]
    assert {"customer_id", "true_segment", "closed_at"} <= set(truth.columns)
    probability = bank.truth["monthly_churn"]["churn_probability"]
    assert probability.between(0, 1, inclusive="neither").all()


def test_segment_shares_match_their_configuration(bank: SampleBank) -> None:
    shares = bank.truth["customers_truth"]["true_segment"].value_counts(normalize=True)
    assert set(shares.index) == set(SEGMENT_SHARES)
    for segment, expected in SEGMENT_SHARES.items():
        assert shares[segment] == pytest.approx(expected, abs=0.03), segment


def test_value_is_heavy_tailed(bank: SampleBank) -> None:
    customers = bank.tables["customers"]["customer_id"]
    margin = bank.tables["transactions"].groupby("customer_id", observed=True)["margin"].sum()
    ranked = margin.reindex(customers, fill_value=0).sort_values(ascending=False).to_numpy()
    total = ranked.sum()
    top_1 = ranked[: len(ranked) // 100].sum() / total
    top_20 = ranked[: len(ranked) // 5].sum() / total
    assert top_20 >= 0.60
    assert top_1 >= 0.08


def test_transactions_are_revenue_events_with_refunds(bank: SampleBank) -> None:
    tx = bank.tables["transactions"]
    refunds = (tx["amount"] < 0).mean()
    assert 0.005 < refunds < 0.05
    margin_rate = tx["product_id"].astype(str).map({p.product_id: p.margin_rate for p in PRODUCTS})
    ratio = tx["margin"] / tx["amount"].where(tx["amount"].abs() > 1)
    assert (ratio / margin_rate).median() == pytest.approx(1.0, abs=0.05)
    customer_months = len(bank.truth["monthly_churn"])
    assert 2.0 <= len(tx) / customer_months <= 4.0


def test_monthly_churn_rate_is_plausible(bank: SampleBank) -> None:
    churn = bank.truth["monthly_churn"]
    by_month = churn.groupby("month")["closed"].mean()
    assert len(by_month) == MONTHS
    assert 0.01 <= by_month.mean() <= 0.03
    assert by_month.mean() == pytest.approx(churn["churn_probability"].mean(), abs=0.003)
    closed_at = bank.tables["customers"]["closed_at"]
    assert closed_at.notna().sum() == churn["closed"].sum()


def test_no_events_after_closure_or_before_signup(bank: SampleBank, closure: pd.Series) -> None:
    signup = bank.tables["customers"].set_index(closure.index)["signup_date"]
    for name in ("transactions", "interactions", "balances"):
        events = bank.tables[name]
        ids = events["customer_id"].astype(str)
        closed_at = closure.reindex(ids).to_numpy()
        after_closure = pd.notna(closed_at) & (events["ts"].to_numpy() >= closed_at)
        assert not after_closure.any(), name
        assert (events["ts"].to_numpy() >= signup.reindex(ids).to_numpy()).all(), name


def test_same_seed_same_bank_other_seed_other_bank() -> None:
    first, again = generate_bank(300, 5, months=12), generate_bank(300, 5, months=12)
    other = generate_bank(300, 6, months=12)
    for name in first.tables:
        pd.testing.assert_frame_equal(first.tables[name], again.tables[name])
    for name in first.truth:
        pd.testing.assert_frame_equal(first.truth[name], again.truth[name])
    assert not first.tables["transactions"].equals(other.tables["transactions"])


def test_idle_cash_waits_for_a_high_yield_offer(bank: SampleBank) -> None:
    balances = bank.tables["balances"]
    last = balances[balances["ts"] == balances["ts"].max()]
    checking = last[last["account_type"] == "checking"].set_index("customer_id")["balance"]
    has_high_yield = set(last.loc[last["account_type"] == "high_yield_savings", "customer_id"])
    idle = checking[(checking >= 5_000) & ~checking.index.isin(has_high_yield)]
    assert len(idle) >= 0.05 * len(checking)
    rates = last.groupby("account_type", observed=True)["rate"]
    assert rates.max()["high_yield_savings"] == pytest.approx(0.041)
    assert rates.max()["checking"] == 0.0
    mortgage = last.loc[last["account_type"] == "mortgage", "rate"]
    assert mortgage.min() < 0.04 and mortgage.max() > 0.06


def _complaints_before(bank: SampleBank) -> pd.DataFrame:
    """Each at-risk customer-month with the complaints its customer made in the 3 months before."""
    churn = bank.truth["monthly_churn"].assign(customer_id=lambda d: d["customer_id"].astype(str))
    interactions = bank.tables["interactions"]
    complaints = interactions[interactions["kind"] == "complaint"]
    per_month = (
        complaints.assign(
            customer_id=complaints["customer_id"].astype(str),
            month=complaints["ts"].dt.to_period("M").dt.to_timestamp(),
        )
        .groupby(["customer_id", "month"])
        .size()
        .rename("complaints")
        .reset_index()
    )
    lagged = [
        per_month.assign(month=per_month["month"] + pd.DateOffset(months=k)) for k in (1, 2, 3)
    ]
    recent = pd.concat(lagged).groupby(["customer_id", "month"])["complaints"].sum()
    joined = churn.join(recent, on=["customer_id", "month"])
    return joined.fillna({"complaints": 0})


def test_churn_probability_rises_with_recent_complaints(bank: SampleBank) -> None:
    joined = _complaints_before(bank)
    complained = joined["complaints"] > 0
    assert complained.mean() > 0.01
    probability = joined.groupby(complained)["churn_probability"].mean()
    assert probability[True] > 1.5 * probability[False]
    closures = joined.groupby(complained)["closed"].mean()
    assert closures[True] > closures[False]


def test_rate_cut_lowers_savings_rates_and_drives_savers_away(bank: SampleBank) -> None:
    balances = bank.tables["balances"]
    savings = balances[balances["account_type"] == "high_yield_savings"]
    cut = bank.truth["rate_changes"]["effective_month"].iloc[0]
    by_month = savings.groupby(savings["ts"].dt.to_period("M").dt.to_timestamp())["rate"].max()
    assert by_month[cut - pd.DateOffset(months=1)] > by_month[cut]
    churn = bank.truth["monthly_churn"].groupby("month")["churn_probability"].mean()
    assert churn[cut + pd.DateOffset(months=1)] > 1.2 * churn[cut - pd.DateOffset(months=1)]


def _behaviour(bank: SampleBank) -> pd.DataFrame:
    """Product-category shares, channel mix, balances and engagement per customer."""
    tables = bank.tables
    category = {p.product_id: p.category for p in PRODUCTS}
    tx = tables["transactions"].assign(
        customer_id=lambda d: d["customer_id"].astype(str),
        category=lambda d: d["product_id"].astype(str).map(category),
        channel=lambda d: d["channel"].astype(str),
    )
    categories = pd.crosstab(tx["customer_id"], tx["category"], normalize="index")
    channels = pd.crosstab(tx["customer_id"], tx["channel"], normalize="index")
    balances = tables["balances"].assign(
        customer_id=lambda d: d["customer_id"].astype(str),
        account_type=lambda d: d["account_type"].astype(str),
    )
    mean_balance = balances.pivot_table(
        index="customer_id", columns="account_type", values="balance", aggfunc="mean"
    )
    months = balances.groupby("customer_id")["ts"].nunique()
    interactions = tables["interactions"].assign(
        customer_id=lambda d: d["customer_id"].astype(str), kind=lambda d: d["kind"].astype(str)
    )
    engagement = pd.crosstab(interactions["customer_id"], interactions["kind"]).div(months, axis=0)
    features = pd.concat(
        [categories, channels, mean_balance.fillna(0).apply(np.log1p), engagement.apply(np.log1p)],
        axis=1,
    )
    return features[features.index.isin(months[months >= 3].index)].fillna(0)


def test_segments_can_be_recovered_from_behaviour(bank: SampleBank) -> None:
    features = _behaviour(bank)
    truth = bank.truth["customers_truth"].set_index(
        bank.truth["customers_truth"]["customer_id"].astype(str)
    )["true_segment"]
    scaled = StandardScaler().fit_transform(features)
    found = KMeans(n_clusters=len(SEGMENT_SHARES), n_init=5, random_state=0).fit_predict(scaled)
    assert adjusted_rand_score(truth.reindex(features.index), found) >= 0.7


def test_generate_writes_raw_and_truth_apart(settings: Settings) -> None:
    raw = generate_sample_bank(settings, settings.generate.overridden(customers=200, seed=3))
    truth = settings.paths.truth_dir / "sample_bank"
    assert raw == settings.paths.raw_dir / "sample_bank"
    assert {p.name for p in raw.iterdir()} == {f"{name}.parquet" for name in TABLES}
    assert {"customers_truth.parquet", "monthly_churn.parquet"} <= {p.name for p in truth.iterdir()}
    assert json.loads((truth / "generator.json").read_text())["seed"] == 3
    transactions = pd.read_parquet(raw / "transactions.parquet")
    assert len(transactions) > 0
    assert not isinstance(transactions["product_id"].dtype, pd.CategoricalDtype)
    assert pd.api.types.is_string_dtype(transactions["product_id"])
    assert pd.api.types.is_datetime64_dtype(transactions["ts"])
    customers = pd.read_parquet(raw / "customers.parquet")
    assert customers["customer_id"].tolist()[:2] == ["C0000001", "C0000002"]


def test_a_failed_write_leaves_the_previous_bank_intact(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "bank"
    generate_sample_bank(settings, settings.generate.overridden(customers=100, seed=1), out=out)
    before = pd.read_parquet(out / "customers.parquet")
    calls = {"n": 0}
    real_write = generate_module._write_slices

    def failing_write(writer: pq.ParquetWriter, frame: pd.DataFrame) -> Iterator[int]:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        yield from real_write(writer, frame)

    monkeypatch.setattr(generate_module, "_write_slices", failing_write)
    with pytest.raises(LoyalError, match="disk full"):
        generate_sample_bank(settings, settings.generate.overridden(customers=150, seed=2), out=out)
    pd.testing.assert_frame_equal(pd.read_parquet(out / "customers.parquet"), before)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".bank")]
    assert leftovers == []


def test_a_bank_written_in_blocks_is_one_bank(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(generate_module, "BLOCK_CUSTOMERS", 250)
    raw = generate_sample_bank(settings, settings.generate.overridden(customers=700, seed=4))
    tables = {name: pd.read_parquet(raw / f"{name}.parquet") for name in TABLES}
    truth = settings.paths.truth_dir / "sample_bank"
    ids = tables["customers"]["customer_id"]
    assert ids.tolist() == [f"C{i:07d}" for i in range(1, 701)]
    assert len(tables["products"]) == len(PRODUCTS)
    assert len(pd.read_parquet(truth / "rate_changes.parquet")) == 3
    for name in ("transactions", "interactions", "balances", "campaigns"):
        assert set(tables[name]["customer_id"]) <= set(ids), name

    def block(frame: pd.DataFrame) -> pd.Series:
        return pd.cut(frame["customer_id"].str[1:].astype(int), [0, 250, 500, 700]).cat.codes

    assert block(tables["transactions"]).nunique() == 3
    assert (block(tables["campaigns"]).value_counts() > 20).all()  # every block is drawn
    ages = tables["customers"]["age"].to_numpy()
    assert (ages[:250] != ages[250:500]).any()  # each block draws from its own stream
    first = generate_bank(250, 4)  # the first block is generate_bank's bank of its size
    pd.testing.assert_frame_equal(
        tables["customers"].head(250),
        pd.read_parquet(_written(first.tables["customers"], settings.home / "first.parquet")),
    )
    campaign_months = tables["campaigns"].groupby("campaign_id")["ts"].nunique()
    assert len(campaign_months) == 3 and (campaign_months == 1).all()


def _written(frame: pd.DataFrame, path: Path) -> Path:
    for _ in generate_module.write_parquet(frame, path):
        pass
    return path


def test_generate_rejects_a_non_positive_size(settings: Settings) -> None:
    with pytest.raises(LoyalError, match="customers"):
        generate_sample_bank(settings, settings.generate.overridden(customers=0))
