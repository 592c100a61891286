"""Feature engineering: point in time to the second, window edges, holdings, balances, types."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.catalog import (
    ENTITY_KEY,
    LIFECYCLE_STATES,
    SAMPLE_BANK_PRODUCTS,
    TIMESTAMP_FIELD,
    VIEWS,
    feature,
    holding_column,
    holdings_view,
)
from features.engineering import (
    age_band,
    build_feature_tables,
    feature_views,
    holding_products,
    iter_feature_tables,
    latest_snapshot,
    lifecycle_state,
    snapshot_times,
    spend_trend,
)

pytestmark = pytest.mark.unit

T = pd.Timestamp("2025-03-01")
SECOND = pd.Timedelta(seconds=1)
DAY = pd.Timedelta(days=1)


def _tables(
    transactions: list[tuple[str, pd.Timestamp, str, float]] | None = None,
    interactions: list[tuple[str, pd.Timestamp, str, float]] | None = None,
    balances: list[tuple[str, pd.Timestamp, str, float, float]] | None = None,
) -> dict[str, pd.DataFrame]:
    """A tiny bank: A (long-standing), B (closes later), C (new), D (closed before T)."""
    customers = pd.DataFrame(
        {
            "customer_id": ["A", "B", "C", "D"],
            "signup_date": pd.to_datetime(["2023-01-01", "2024-06-01", "2025-02-01", "2023-05-01"]),
            "region": ["north", None, "south", "east"],
            "age": [41.0, np.nan, 23.0, 70.0],
            "consent_marketing": pd.array([True, None, False, True], dtype="boolean"),
            "closed_at": pd.to_datetime([None, "2025-06-01", None, "2025-01-10"]),
        }
    )
    products = pd.DataFrame(
        {
            "product_id": ["checking", "savings", "credit_card"],
            "name": ["Checking", "Savings", "Credit card"],
            "category": ["deposit", "deposit", "card"],
            "margin_rate": [0.1, 0.05, 0.3],
        }
    )
    rows = transactions or [("A", T - 10 * DAY, "checking", 100.0)]
    tx = pd.DataFrame(rows, columns=["customer_id", "ts", "product_id", "amount"])
    tx["margin"] = np.nan
    tx["channel"] = "branch"
    tables = {"customers": customers, "products": products, "transactions": tx}
    if interactions is not None:
        tables["interactions"] = pd.DataFrame(
            interactions, columns=["customer_id", "ts", "kind", "satisfaction"]
        )
    if balances is not None:
        tables["balances"] = pd.DataFrame(
            balances, columns=["customer_id", "ts", "account_type", "balance", "rate"]
        )
    return tables


def _at(frames: dict[str, pd.DataFrame], view: str, customer: str) -> pd.Series:
    frame = frames[view]
    return frame.loc[frame[ENTITY_KEY] == customer].iloc[0]


def _build(tables: dict[str, pd.DataFrame], *snapshots: pd.Timestamp) -> dict[str, pd.DataFrame]:
    return build_feature_tables(tables, pd.DatetimeIndex(list(snapshots) or [T]))


BASE_TX = [
    ("A", T - 40 * DAY, "checking", 50.0),
    ("A", T - 10 * DAY, "savings", 20.0),
    ("B", T - 200 * DAY, "checking", 30.0),
]
BASE_INTERACTIONS = [("A", T - 5 * DAY, "login", np.nan), ("A", T - 60 * DAY, "call", 4.0)]
BASE_BALANCES = [("A", T - 3 * DAY, "checking", 2_500.0, 0.001)]


def _after_snapshot_events(offset: pd.Timedelta) -> dict[str, pd.DataFrame]:
    """The base tables plus, for A, one event of every kind at T + offset."""
    when = T + offset
    return _tables(
        [*BASE_TX, ("A", when, "credit_card", 999.0), ("A", when, "checking", 5.0)],
        [*BASE_INTERACTIONS, ("A", when, "complaint", 1.0), ("A", when, "login", np.nan)],
        [*BASE_BALANCES, ("A", when, "checking", 9_999.0, 0.05), ("A", when, "savings", 7.0, 0.02)],
    )


@pytest.mark.parametrize("offset", [SECOND, pd.Timedelta(0), pd.Timedelta(milliseconds=1)])
def test_no_feature_counts_an_event_at_or_after_the_snapshot(offset: pd.Timedelta) -> None:
    base = _build(_tables(BASE_TX, BASE_INTERACTIONS, BASE_BALANCES))
    later = _build(_after_snapshot_events(offset))
    for name in base:
        pd.testing.assert_frame_equal(later[name], base[name], obj=name)


def test_an_event_one_second_before_the_snapshot_counts_everywhere() -> None:
    base = _build(_tables(BASE_TX, BASE_INTERACTIONS, BASE_BALANCES))
    before = _build(_after_snapshot_events(-SECOND))
    assert _at(before, "rfm", "A")["frequency_30d"] == _at(base, "rfm", "A")["frequency_30d"] + 1
    assert _at(before, "rfm", "A")["monetary_30d"] == pytest.approx(20.0 + 999.0 + 5.0)
    assert _at(before, "rfm", "A")["recency_days"] == pytest.approx(1 / 86_400)
    assert _at(before, "rfm", "A")["distinct_categories_365d"] == 2
    assert _at(before, "holdings", "A")["holds_credit_card"]
    assert not _at(base, "holdings", "A")["holds_credit_card"]
    assert _at(before, "engagement", "A")["complaints_30d"] == 1
    assert _at(before, "engagement", "A")["logins_30d"] == 2
    assert _at(before, "engagement", "A")["last_satisfaction"] == 1.0
    assert _at(before, "balances", "A")["balance_checking"] == 9_999.0
    assert _at(before, "balances", "A")["balance_savings"] == 7.0
    assert _at(before, "lifecycle", "A")["months_since_last_new_product"] == pytest.approx(
        1 / 86_400 / 30.4375
    )


def test_window_edges_are_closed_at_the_start_and_open_at_the_snapshot() -> None:
    frames = _build(
        _tables(
            [
                ("A", T - 30 * DAY, "checking", 1.0),  # first second of the 30-day window
                ("A", T - 30 * DAY - SECOND, "checking", 10.0),  # just outside it
                ("A", T - 365 * DAY, "checking", 100.0),  # first second of the year
                ("A", T - 365 * DAY - SECOND, "checking", 1_000.0),  # just outside it
            ]
        )
    )
    rfm = _at(frames, "rfm", "A")
    assert rfm["monetary_30d"] == 1.0
    assert rfm["monetary_90d"] == 11.0
    assert rfm["monetary_365d"] == 111.0
    assert rfm["frequency_365d"] == 3  # two of the rows fall on the same UTC day


def test_purchases_are_customer_days_and_refunds_are_not_purchases() -> None:
    frames = _build(
        _tables(
            [
                ("A", T - 3 * DAY + pd.Timedelta(hours=9), "checking", 40.0),
                ("A", T - 3 * DAY + pd.Timedelta(hours=15), "savings", 60.0),
                ("A", T - 2 * DAY, "checking", -30.0),
            ]
        )
    )
    rfm = _at(frames, "rfm", "A")
    assert rfm["frequency_30d"] == 1
    assert rfm["monetary_30d"] == 70.0
    assert rfm["avg_basket_365d"] == 70.0
    assert rfm["recency_days"] == pytest.approx(3 - 15 / 24)  # the latest purchase, not the refund
    assert rfm["margin_365d"] == pytest.approx(40 * 0.1 + 60 * 0.05 - 30 * 0.1)


def test_population_is_signed_up_before_and_not_closed_before_the_snapshot() -> None:
    tables = _tables()
    tables["customers"].loc[1, "closed_at"] = T  # B closes on the snapshot day: still counted
    frames = _build(tables)
    for frame in frames.values():
        assert list(frame[ENTITY_KEY]) == ["A", "B", "C"]
    frames = _build(tables, pd.Timestamp("2025-02-01"), T + DAY)
    stamps = frames["profile"][TIMESTAMP_FIELD].dt.tz_convert(None)
    early = frames["profile"].loc[stamps == pd.Timestamp("2025-02-01"), ENTITY_KEY]
    assert list(early) == ["A", "B"]  # C signs up that very day, D closed in January
    late = frames["profile"].loc[stamps == T + DAY, ENTITY_KEY]
    assert list(late) == ["A", "C"]


def test_holdings_come_from_recent_transactions_or_a_non_zero_latest_balance() -> None:
    frames = _build(
        _tables(
            [
                ("A", T - 89 * DAY, "credit_card", 10.0),
                ("B", T - 91 * DAY, "credit_card", 10.0),
                ("A", T - 5 * DAY, "checking", 1.0),
            ],
            balances=[
                ("A", T - 20 * DAY, "checking", 300.0, 0.0),
                ("A", T - 40 * DAY, "savings", 800.0, 0.02),
                ("B", T - 40 * DAY, "savings", 800.0, 0.02),
                ("B", T - 10 * DAY, "savings", 0.0, 0.02),
                ("C", T - 2 * DAY, "mortgage", 150_000.0, 0.04),
            ],
        )
    )
    a, b, c = (_at(frames, "holdings", x) for x in "ABC")
    assert a["holds_credit_card"] and a["holds_checking"] and a["holds_savings"]
    assert not b["holds_credit_card"] and not b["holds_savings"]
    assert not c.drop([ENTITY_KEY, TIMESTAMP_FIELD]).any()  # mortgage has no holdings column
    assert _at(frames, "profile", "A")["n_products_held"] == 3  # checking counted once
    assert _at(frames, "profile", "B")["n_products_held"] == 0
    assert _at(frames, "profile", "C")["n_products_held"] == 1  # the mortgage still counts


def test_balances_take_the_latest_row_and_idle_cash_is_checking_above_the_buffer() -> None:
    frames = _build(
        _tables(
            balances=[
                ("A", T - 40 * DAY, "checking", 900.0, 0.0),
                ("A", T - 10 * DAY, "checking", 5_000.0, 0.001),
                ("A", T - 10 * DAY, "high_yield_savings", 2_000.0, 0.041),
                ("A", T - 10 * DAY, "mortgage", 100_000.0, 0.035),
                ("B", T - 10 * DAY, "checking", 800.0, 0.0),
                ("C", T - 10 * DAY, "savings", 50.0, 0.01),
            ]
        )
    )
    a, b, c = (_at(frames, "balances", x) for x in "ABC")
    assert a["balance_checking"] == 5_000.0 and a["rate_high_yield_savings"] == 0.041
    assert a["idle_cash"] == 4_000.0
    assert a["total_deposits"] == 7_000.0  # the mortgage is not a deposit
    assert b["idle_cash"] == 0.0
    assert np.isnan(c["idle_cash"]) and np.isnan(c["balance_checking"])
    assert c["total_deposits"] == 50.0


def test_engagement_counts_kinds_in_their_windows() -> None:
    frames = _build(
        _tables(
            interactions=[
                ("A", T - 29 * DAY, "Complaint", 2.0),
                ("A", T - 31 * DAY, "complaint", 3.0),
                ("A", T - 100 * DAY, "complaint", np.nan),
                ("A", T - 50 * DAY, "atm_visit", np.nan),
                ("A", T - 400 * DAY, "call", 5.0),
                ("A", T - 1 * DAY, "chat", np.nan),  # not a tracked kind
                ("B", T - 400 * DAY, "call", 5.0),
            ]
        )
    )
    a, b = _at(frames, "engagement", "A"), _at(frames, "engagement", "B")
    assert (a["complaints_30d"], a["complaints_90d"], a["atm_visits_90d"]) == (1, 2, 1)
    assert a["last_satisfaction"] == 2.0
    assert np.isnan(b["last_satisfaction"])  # older than 365 days


def test_low_satisfaction_counts_scores_of_two_or_less_in_90_days() -> None:
    frames = _build(
        _tables(
            interactions=[
                ("A", T - 1 * DAY, "call", 2.0),
                ("A", T - 89 * DAY, "complaint", 1.0),
                ("A", T - 91 * DAY, "complaint", 1.0),  # outside the window
                ("A", T - 2 * DAY, "call", 3.0),  # not low
                ("A", T, "call", 1.0),  # at the snapshot: not yet seen
            ]
        )
    )
    assert _at(frames, "engagement", "A")["low_satisfaction_90d"] == 2
    assert _at(frames, "engagement", "B")["low_satisfaction_90d"] == 0


def test_activity_trend_compares_the_last_quarter_with_the_one_before() -> None:
    frames = _build(
        _tables(
            transactions=[
                ("A", T - 10 * DAY, "checking", 100.0),
                ("A", T - 100 * DAY, "checking", 100.0),
                ("A", T - 120 * DAY, "checking", 100.0),
                ("C", T - 3 * DAY, "checking", 100.0),
            ],
            interactions=[
                ("A", T - 20 * DAY, "login", np.nan),
                ("A", T - 95 * DAY, "login", np.nan),
                ("A", T - 96 * DAY, "email_open", np.nan),
                ("A", T - 97 * DAY, "complaint", 1.0),  # not engagement
            ],
        )
    )
    a = _at(frames, "engagement", "A")
    assert a["activity_trend"] == pytest.approx((2 + 1) / (4 + 1) - 1)  # 2 recent, 4 before
    assert _at(frames, "engagement", "B")["activity_trend"] == 0.0  # nothing in either window
    assert np.isnan(_at(frames, "engagement", "C")["activity_trend"])  # signed up 28 days ago


def test_digital_share_is_the_share_of_digital_transactions_in_90_days() -> None:
    tables = _tables(
        [
            ("A", T - 10 * DAY, "checking", 1.0),
            ("A", T - 20 * DAY, "checking", 1.0),
            ("A", T - 30 * DAY, "checking", 1.0),
            ("A", T - 100 * DAY, "checking", 1.0),
        ]
    )
    tables["transactions"]["channel"] = ["Mobile", "online", "branch", "online"]
    frames = _build(tables)
    assert _at(frames, "engagement", "A")["digital_share"] == pytest.approx(2 / 3)
    assert np.isnan(_at(frames, "engagement", "B")["digital_share"])


def test_lifecycle_states_follow_their_rules() -> None:
    tenure = np.array([30, 400, 400, 400, 400, 400, 400, 100])
    recency = np.array([np.nan, 10, 10, 120, 200, 400, np.nan, np.nan])
    earlier = np.array([False, True, False, False, False, False, False, False])
    states = lifecycle_state(tenure, recency, earlier)
    assert set(states) == set(LIFECYCLE_STATES)
    assert list(states) == [
        "new",
        "repeat",
        "active",
        "at_risk",
        "lapsed",
        "lost",
        "lost",
        "at_risk",  # never bought, signed up 100 days ago
    ]


def test_lifecycle_view_on_a_fixture() -> None:
    frames = _build(
        _tables(
            [
                ("A", T - 10 * DAY, "checking", 1.0),
                ("A", T - 200 * DAY, "savings", 1.0),
                ("A", T - 100 * DAY, "savings", 1.0),
                ("B", T - 150 * DAY, "checking", 1.0),
            ]
        )
    )
    a, b, c = (_at(frames, "lifecycle", x) for x in "ABC")
    assert (a["state"], b["state"], c["state"]) == ("repeat", "at_risk", "new")
    assert a["repeat_purchase_count"] == 2 and c["repeat_purchase_count"] == 0
    assert a["purchase_regularity"] == pytest.approx(3 / 12)
    assert c["purchase_regularity"] == 0.0
    assert a["months_since_last_new_product"] == pytest.approx(10 / 30.4375)  # checking
    assert np.isnan(c["months_since_last_new_product"])


def test_regularity_counts_only_months_that_end_after_signup() -> None:
    tables = _tables([("C", T - 3 * DAY, "checking", 1.0)])
    frames = _build(tables, T + pd.DateOffset(months=1))
    assert _at(frames, "lifecycle", "C")["purchase_regularity"] == pytest.approx(1 / 2)


@pytest.mark.parametrize(
    ("last", "before", "expected"),
    [
        (0.0, 0.0, 0.0),
        (50.0, 0.0, 5.0),
        (150.0, 100.0, 0.5),
        (0.0, 100.0, -1.0),
        (10_000.0, 1.0, 5.0),
        (-20.0, 100.0, -1.0),
        (-20.0, -5.0, 0.0),
    ],
)
def test_spend_trend_handles_zeros_and_is_clipped(
    last: float, before: float, expected: float
) -> None:
    assert spend_trend(np.array([last]), np.array([before]))[0] == pytest.approx(expected)


def test_profile_fills_missing_attributes() -> None:
    frames = _build(_tables())
    a, b = _at(frames, "profile", "A"), _at(frames, "profile", "B")
    assert a["tenure_days"] == (T - pd.Timestamp("2023-01-01")).days
    assert (a["age_band"], a["region"], a["consent_marketing"]) == ("35-44", "north", True)
    assert (b["age_band"], b["region"], b["consent_marketing"]) == ("unknown", "unknown", False)
    assert list(age_band(np.array([18, 25, 64.9, 65, np.nan]))) == [
        "<25",
        "25-34",
        "55-64",
        "65+",
        "unknown",
    ]


def _assert_catalog_types(frames: dict[str, pd.DataFrame]) -> None:
    assert set(frames) == set(VIEWS)
    for name, frame in frames.items():
        view = VIEWS[name]
        assert list(frame.columns) == [ENTITY_KEY, TIMESTAMP_FIELD, *view.feature_names], name
        assert str(frame[TIMESTAMP_FIELD].dtype) == "datetime64[ns, UTC]"
        assert frame[ENTITY_KEY].map(type).eq(str).all()
        for f in view.features:
            column = frame[f.name]
            assert str(column.dtype) == {"float": "float64", "int": "int64", "str": "object",
                                         "bool": "bool"}[f.type], f.name  # fmt: skip
            if f.type != "float":
                assert column.notna().all(), f.name
            if f.type == "str":
                assert column.map(type).eq(str).all(), f.name


def test_tables_have_exactly_the_catalog_columns_and_types() -> None:
    tables = _tables(BASE_TX, BASE_INTERACTIONS, BASE_BALANCES)
    frames = build_feature_tables(tables, [T, T + 31 * DAY], products=list(SAMPLE_BANK_PRODUCTS))
    _assert_catalog_types(frames)


@pytest.mark.parametrize("time_sorted", [False, True])
def test_inputs_are_not_mutated(time_sorted: bool) -> None:
    tables = _tables(BASE_TX, BASE_INTERACTIONS, BASE_BALANCES)
    tables["transactions"]["margin"] = [5.0, np.nan, np.nan]  # filled from margin_rate inside
    if time_sorted:  # sorted input is used without reordering: nothing may be written back
        tables = {name: f.sort_values("ts") if "ts" in f else f for name, f in tables.items()}
    copies = {name: frame.copy(deep=True) for name, frame in tables.items()}
    _build(tables, T, T + DAY)
    for name, frame in tables.items():
        pd.testing.assert_frame_equal(frame, copies[name], obj=name)


def test_non_contractual_data_still_builds_every_view_with_defaults() -> None:
    customers = pd.DataFrame(
        {"customer_id": ["x", "y"], "signup_date": pd.to_datetime(["2024-01-05", "2024-02-01"])}
    )
    products = pd.DataFrame({"product_id": ["mug", "tea"]})
    transactions = pd.DataFrame(
        {
            "customer_id": ["x", "x", "y"],
            "ts": [T - 40 * DAY, T - 5 * DAY, T - 300 * DAY],
            "product_id": ["mug", "tea", "tea"],
            "amount": [12.0, 4.0, 4.0],
        }
    )
    tables = {"customers": customers, "products": products, "transactions": transactions}
    frames = build_feature_tables(tables, [T], products=list(SAMPLE_BANK_PRODUCTS))
    _assert_catalog_types(frames)
    x = {name: _at(frames, name, "x") for name in frames}
    assert x["engagement"]["logins_90d"] == 0 and np.isnan(x["engagement"]["digital_share"])
    assert np.isnan(x["balances"]["total_deposits"])
    assert x["rfm"]["distinct_categories_365d"] == 2  # products are their own category
    assert x["rfm"]["margin_365d"] == 0.0  # no margin and no margin_rate
    assert x["lifecycle"]["state"] == "active"  # bought lately, not in the 275 days before
    assert _at(frames, "lifecycle", "y")["state"] == "lapsed"
    shop = build_feature_tables(tables, [T])
    assert shop["holdings"].columns[2:].tolist() == ["holds_mug", "holds_tea"]
    assert feature_views(tables)["holdings"].feature_names == ["holds_mug", "holds_tea"]


def test_iterating_by_snapshot_gives_the_same_tables() -> None:
    tables = _tables(BASE_TX, BASE_INTERACTIONS, BASE_BALANCES)
    snapshots = [T, T + 10 * DAY, T + 40 * DAY]
    whole = build_feature_tables(tables, snapshots)
    parts = list(iter_feature_tables(tables, snapshots))
    assert len(parts) == 3
    for name, frame in whole.items():
        joined = pd.concat([p[name] for p in parts], ignore_index=True)
        pd.testing.assert_frame_equal(joined, frame, obj=name)


def test_snapshots_in_any_order_and_precision_are_sorted_and_floored() -> None:
    tables = _tables(BASE_TX)
    frames = build_feature_tables(tables, [T + 10 * DAY, T + pd.Timedelta(milliseconds=700)])
    stamps = frames["rfm"][TIMESTAMP_FIELD].drop_duplicates().dt.tz_convert(None)
    assert list(stamps) == [T, T + 10 * DAY]


def test_snapshot_times_default_to_month_starts_over_the_history() -> None:
    tables = _tables([("A", pd.Timestamp("2024-11-15 10:00"), "checking", 1.0)])
    tables["transactions"].loc[1] = ["A", pd.Timestamp("2025-02-27 08:00"), "checking", 1.0, 0, ""]
    tables["customers"]["closed_at"] = pd.NaT  # a closure date also extends the observed data
    snapshots = snapshot_times(tables)
    assert list(snapshots) == list(pd.to_datetime(["2024-12-01", "2025-01-01", "2025-02-01"]))
    assert list(snapshot_times(tables, last_n=1)) == [pd.Timestamp("2025-02-01")]
    weekly = snapshot_times(tables["transactions"], frequency="W-MON", start="2025-02-01")
    assert weekly[0] == pd.Timestamp("2025-02-03") and weekly[-1] == pd.Timestamp("2025-02-24")
    month_end = snapshot_times(tables, end=pd.Timestamp("2025-03-01", tz="UTC"))
    assert month_end[-1] == pd.Timestamp("2025-03-01")


def test_latest_snapshot_sees_every_event() -> None:
    tables = _tables([("A", pd.Timestamp("2025-02-27 08:00:00.5"), "checking", 1.0)])
    (now,) = latest_snapshot(tables)
    assert now == pd.Timestamp("2025-02-27 08:00:01")
    frames = build_feature_tables(tables, [now])
    assert _at(frames, "rfm", "A")["frequency_30d"] == 1
    assert latest_snapshot(tables, at="2025-03-01 12:30:00.9+00:00")[0] == pd.Timestamp(
        "2025-03-01 12:30"
    )


def test_holdings_columns_come_from_the_products_table_with_a_cap() -> None:
    tables = _tables(
        [
            ("A", T - DAY, "savings", 1.0),
            ("B", T - DAY, "savings", 1.0),
            ("A", T - DAY, "checking", 1.0),
        ]
    )
    assert holding_products(tables) == ["checking", "savings", "credit_card"]
    assert holding_products(tables, max_columns=2) == ["savings", "checking"]
    frames = build_feature_tables(tables, [T], products=["savings", "unknown-product"])
    assert frames["holdings"].columns[2:].tolist() == ["holds_savings", "holds_unknown_product"]
    assert not frames["holdings"]["holds_unknown_product"].any()


def test_catalog_features_are_described_unique_and_render_reasons() -> None:
    names = [f.name for view in VIEWS.values() for f in view.features]
    assert len(names) == len(set(names))
    assert VIEWS["holdings"].feature_names == [holding_column(p) for p in SAMPLE_BANK_PRODUCTS]
    for view in VIEWS.values():
        assert view.ttl_days > 0
        for f in view.features:
            assert f.description and f.reason
            sample = {"float": 0.25, "int": 3, "str": "active", "bool": True}[f.type]
            assert "{" not in f.sentence(sample)
    assert feature("complaints_90d").sentence(3) == "3 complaints in the last 90 days"
    assert feature("spend_trend").sentence(-0.25) == "spending changed -25% on the quarter before"
    assert holdings_view(["a-b", "a_b"]).feature_names == ["holds_a_b"]


def test_sparse_pairs_and_wide_time_spans_give_the_same_features(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tables = _tables(BASE_TX, BASE_INTERACTIONS, BASE_BALANCES)
    dense = _build(tables, T, T + 40 * DAY)
    monkeypatch.setattr("features.engineering.DENSE_PAIR_LIMIT", 0)  # factorized pairs
    ancient = pd.DataFrame(  # 75 years of history: times no longer fit int32 seconds
        {"customer_id": ["B"], "ts": [pd.Timestamp("1950-01-01")], "product_id": ["savings"]}
    ).assign(amount=1.0, margin=np.nan, channel="branch")
    tables["transactions"] = pd.concat([tables["transactions"], ancient], ignore_index=True)
    sparse = _build(tables, T, T + 40 * DAY)
    b = sparse["lifecycle"][ENTITY_KEY] == "B"
    assert (sparse["lifecycle"].loc[b, "repeat_purchase_count"] == 1).all()  # the 1950 purchase
    for name, frame in dense.items():
        if name != "lifecycle":
            pd.testing.assert_frame_equal(sparse[name], frame, obj=name)


def test_a_missing_value_reads_as_plain_words_in_reasons() -> None:
    from models.churn import template_sentence
    from training.churn import catalog_templates

    assert feature("recency_days").sentence(float("nan")) == "no purchase yet"
    assert feature("recency_days").sentence(12.0) == "last purchase 12 days ago"
    render = template_sentence(catalog_templates(["activity_trend", "spend_trend"]))
    assert render("activity_trend", float("nan")).startswith("a new customer (under 180 days)")
    assert render("spend_trend", None).endswith(": missing")  # no wording given: the description


def test_a_partition_without_channels_keeps_the_digital_share_of_the_whole_bank() -> None:
    # Customers whose channels are all blank, in a bank that records channels elsewhere:
    # a digital share of 0 (no digital transaction), as the whole bank's build gives them.
    tables = _tables(BASE_TX)
    tables["transactions"]["channel"] = None
    blank = next(iter_feature_tables(tables, [T]))["engagement"]
    known = next(iter_feature_tables(tables, [T], has_channel=True))["engagement"]
    buyer = known[ENTITY_KEY] == "A"
    assert blank.loc[buyer, "digital_share"].isna().all()
    assert (known.loc[buyer, "digital_share"] == 0.0).all()
