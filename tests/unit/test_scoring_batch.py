"""Batch scoring's building blocks on tiny fixtures: ids, the transaction pass, latest snapshots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features.catalog import ENTITY_KEY, TIMESTAMP_FIELD
from features.clv_inputs import rfm_summary, trailing_margins, with_margins
from features.latest import IdIndex, iter_chunks, latest_snapshot, population_ids
from inference.transactions import PassWindows, _sort_order, aggregate_transactions
from loyal.errors import NotReadyError
from training.segments import channel_mix

pytestmark = pytest.mark.unit


# ------------------------------------------------------------------------------------ ids
def test_fixed_width_ids_are_parsed_and_others_are_not_found() -> None:
    index = IdIndex(pa.array(["C0000003", "C0000001", "C0000010"]))
    assert index.fast
    looked_up = pa.array(
        ["C0000010", "C0000003", "C0000002", "C000001", "D0000001", None, "C00000x1"]
    )
    assert index.positions(looked_up).tolist() == [2, 0, -1, -1, -1, -1, -1]


def test_sparse_fixed_width_ids_use_a_sorted_lookup() -> None:
    ids = pa.array(["900000000000", "000000000001", "123456789012"])
    index = IdIndex(ids)
    assert index.fast and index._table is None
    assert index.positions(pa.array(["123456789012", "000000000002", "900000000000"])).tolist() == [
        2, -1, 0,
    ]  # fmt: skip


def test_free_form_ids_are_hashed_and_dictionary_arrays_work() -> None:
    index = IdIndex(pa.array(["alice", "bob", "carol-7"]))
    assert not index.fast
    values = pa.array(["carol-7", "dave", "alice", "bob", "alice"]).dictionary_encode()
    assert index.positions(values).tolist() == [2, -1, 0, 1, 0]


def test_sliced_and_large_string_arrays_are_read_from_their_own_offsets() -> None:
    index = IdIndex(pa.array(["C01", "C02", "C03"]))
    sliced = pa.array(["C03", "C02", "xx", "C01"]).slice(1, 3)
    assert index.positions(sliced).tolist() == [1, -1, 0]
    large = pa.array(["C02", "C09"], type=pa.large_string())
    assert index.positions(large).tolist() == [1, -1]


def test_duplicate_population_ids_are_refused() -> None:
    with pytest.raises(ValueError, match="unique"):
        IdIndex(pa.array(["C01", "C02", "C01"]))


# ---------------------------------------------------------------------------- the pass
def test_packed_sort_orders_by_key_then_row() -> None:
    key = np.array([31, 19, 31, 19, 7], dtype=np.int64)
    order, keys = _sort_order(key)
    assert order.tolist() == [4, 1, 3, 0, 2]
    assert keys.tolist() == [7, 19, 19, 31, 31]
    huge = np.array([2**61, 5, 2**61, 0], dtype=np.int64)  # too wide to pack: argsort
    order, keys = _sort_order(huge)
    assert order.tolist() == [3, 1, 0, 2] and keys.tolist() == [0, 5, 2**61, 2**61]


def _log() -> pd.DataFrame:
    """A log with the edge cases: same-day lines, refunds (netting to zero and below),
    zero-amount purchases, missing margins, strangers, channels in odd spellings."""
    rows = [
        # customer, ts, product, amount, margin, channel
        ("C01", "2024-01-03 09:00", "p1", 10.0, 1.0, "Mobile"),
        ("C01", "2024-01-03 18:00", "p2", 5.0, None, "mobile "),
        ("C01", "2024-02-10 10:00", "p1", 20.0, 2.0, "branch"),
        ("C01", "2024-02-10 11:00", "p1", -20.0, -2.0, "branch"),  # nets to zero: no purchase
        ("C01", "2024-03-01 08:00", "p2", 7.5, 0.5, None),
        ("C02", "2024-01-05 12:00", "p1", 0.0, 0.0, "atm"),  # a free item: a purchase
        ("C02", "2024-03-20 12:00", "p2", 40.0, 4.0, "ATM"),
        ("C02", "2024-03-21 12:00", "p2", -50.0, -5.0, "atm"),  # refund-only day
        ("C03", "2024-02-02 12:00", "p1", 30.0, 3.0, "online"),
        ("C03", "2024-04-02 12:00", "p1", 30.0, 3.0, "online"),  # after the end
        ("X99", "2024-01-09 12:00", "p1", 99.0, 9.0, "fax"),  # not in the population
        ("C04", "2023-06-01 12:00", "p2", 15.0, None, "web"),
        ("C04", "2023-12-31 23:59", "p2", 15.0, None, "web"),
        ("C04", "2024-03-30 23:59", "p1", 12.0, None, "web"),
    ]
    frame = pd.DataFrame(
        rows, columns=["customer_id", "ts", "product_id", "amount", "margin", "channel"]
    )
    frame["ts"] = pd.to_datetime(frame["ts"])
    return frame


PRODUCTS = pd.DataFrame({"product_id": ["p1", "p2"], "margin_rate": [0.1, 0.4]})
POPULATION = ["C01", "C02", "C03", "C04", "C05"]
END = pd.Timestamp("2024-03-31")
SNAPSHOT = pd.Timestamp("2024-04-01")


def _write(frame: pd.DataFrame, path: Path, row_group_size: int) -> Path:
    pq.write_table(
        pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=row_group_size
    )
    return path


@pytest.mark.parametrize("period", ["D", "W"])
@pytest.mark.parametrize("order", ["time", "shuffled"])
@pytest.mark.parametrize("batch_rows", [2, 3, 1000])
def test_the_pass_equals_the_pandas_summaries(
    tmp_path: Path, period: str, order: str, batch_rows: int
) -> None:
    log = _log().sort_values("ts", kind="stable")
    if order == "shuffled":
        log = log.sample(frac=1.0, random_state=4)
    path = _write(log.reset_index(drop=True), tmp_path / "transactions.parquet", row_group_size=4)
    index = IdIndex(pa.array(POPULATION))
    windows = PassWindows(END, SNAPSHOT, period=period, trailing_days=90, channel_days=120)
    got = aggregate_transactions(path, index, windows, PRODUCTS, batch_rows=batch_rows)

    transactions, value_column = with_margins(log, PRODUCTS)
    assert value_column == got.value_column == "monetary_margin"
    expected = rfm_summary(transactions, END, period=period, time_unit_days=7.0)
    summary = got.summary(END, 7.0)
    summary.index = pd.Index([POPULATION[i] for i in summary.index], name="customer_id")
    expected = expected[expected.index.isin(POPULATION)]
    columns = ["frequency", "recency", "T", "monetary_value", "monetary_margin"]
    pd.testing.assert_frame_equal(
        summary[columns].sort_index(), expected[columns].sort_index(), check_dtype=False
    )
    trailing = trailing_margins(transactions, END, 90, pd.Index(POPULATION))
    np.testing.assert_allclose(got.trailing, trailing)
    mix = channel_mix(log, SNAPSHOT, 120)
    shares = pd.DataFrame(got.channel_shares(np.arange(len(POPULATION))), index=POPULATION)
    shares = shares.dropna(how="all")
    pd.testing.assert_frame_equal(
        shares.sort_index(axis=1), mix.reindex(shares.index).sort_index(axis=1), check_names=False
    )
    assert got.rows == len(log)


def test_without_margins_the_pass_is_revenue_based(tmp_path: Path) -> None:
    log = _log().drop(columns=["margin", "channel"])
    path = _write(log, tmp_path / "transactions.parquet", row_group_size=100)
    index = IdIndex(pa.array(POPULATION))
    got = aggregate_transactions(path, index, PassWindows(END, SNAPSHOT), products=None)
    assert got.value_column == "monetary_value" and got.channels == []
    summary = got.summary(END, 7.0)
    assert "monetary_margin" not in summary.columns
    expected = rfm_summary(log, END)
    assert (
        summary["frequency"].tolist()
        == expected.loc[[POPULATION[i] for i in summary.index], "frequency"].tolist()
    )
    np.testing.assert_allclose(got.trailing, trailing_margins(log, END, 365, pd.Index(POPULATION)))


# --------------------------------------------------------------------------- latest snapshot
def _view(
    path: Path, snapshots: dict[str, list[str]], value: float, mixed_tail: bool = False
) -> Path:
    """A view table, one row group per snapshot (the last two in one group if `mixed_tail`)."""
    schema = pa.schema(
        [
            (ENTITY_KEY, pa.string()),
            (TIMESTAMP_FIELD, pa.timestamp("ns", tz="UTC")),
            ("x", pa.float64()),
            ("flag", pa.bool_()),
        ]
    )
    tables = []
    for stamp, ids in snapshots.items():
        moment = pd.Timestamp(stamp, tz="UTC")
        tables.append(
            pa.table(
                {
                    ENTITY_KEY: ids,
                    TIMESTAMP_FIELD: pa.array([moment] * len(ids), pa.timestamp("ns", tz="UTC")),
                    "x": [value + moment.month + i / 10 for i in range(len(ids))],
                    "flag": [i % 2 == 0 for i in range(len(ids))],
                },
                schema=schema,
            )
        )
    if mixed_tail:
        tables = [*tables[:-2], pa.concat_tables(tables[-2:])]
    with pq.ParquetWriter(path, schema) as writer:
        for table in tables:
            writer.write_table(table)
    return path


def _point_in_time(path: Path, moment: pd.Timestamp, ttl_days: int) -> pd.DataFrame:
    """What a point-in-time join gives at `moment`: each customer's newest row within ttl."""
    frame = pd.read_parquet(path)
    frame = frame[
        (frame[TIMESTAMP_FIELD] <= moment)
        & (frame[TIMESTAMP_FIELD] >= moment - pd.Timedelta(days=ttl_days))
    ]
    return frame.sort_values(TIMESTAMP_FIELD).groupby(ENTITY_KEY).tail(1).set_index(ENTITY_KEY)


def test_chunks_hold_each_customers_newest_row_like_a_point_in_time_join(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ids = [f"C{i:03d}" for i in range(7)]
    profile = _view(tmp_path / "profile.parquet", {"2024-01-01": ids[:5], "2024-02-01": ids}, 0.0)
    rfm = _view(
        tmp_path / "rfm.parquet", {"2024-01-01": ids[:5], "2024-02-01": ids}, 100.0, mixed_tail=True
    )
    reversed_ids = _view(tmp_path / "holdings.parquet", {"2024-02-01": ids[::-1]}, 200.0)
    stale = _view(tmp_path / "balances.parquet", {"2023-10-01": ids}, 300.0)
    tables = {"profile": profile, "rfm": rfm, "holdings": reversed_ids, "balances": stale}
    snapshot = latest_snapshot(tables, {"profile": 366, "rfm": 62, "holdings": 62, "balances": 62})
    moment = pd.Timestamp("2024-02-01", tz="UTC")
    assert snapshot.moment == moment and snapshot.customers == 7
    assert snapshot.views["rfm"].mixed and not snapshot.views["profile"].mixed
    assert snapshot.views["balances"].as_of is None  # older than its ttl: nothing joins
    assert population_ids(snapshot).to_pylist() == ids

    columns = {"profile": ["x"], "rfm": ["x", "flag"], "holdings": ["flag"], "balances": ["x"]}
    chunks = list(iter_chunks(snapshot, columns, chunk_rows=3))
    assert "holdings table's latest snapshot does not list customers" in caplog.text
    assert [c.num_rows for c in chunks] == [3, 3, 1]
    got = (
        pa.concat_tables(
            [
                c.rename_columns(
                    [ENTITY_KEY, "profile_x", "rfm_x", "rfm_flag", "holdings_flag", "balances_x"]
                )
                for c in chunks
            ]
        )
        .to_pandas()
        .set_index(ENTITY_KEY)
    )
    assert got.index.tolist() == ids
    for name, column, target in (
        ("profile", "x", "profile_x"), ("rfm", "x", "rfm_x"), ("rfm", "flag", "rfm_flag"),
        ("holdings", "flag", "holdings_flag"),
    ):  # fmt: skip
        expected = _point_in_time(tables[name], moment, 62)[column].reindex(ids)
        assert got[target].tolist() == expected.tolist(), name
    assert got["balances_x"].isna().all()


def test_an_empty_first_snapshot_is_skipped(tmp_path: Path) -> None:
    # A log's first month start often precedes every sign-up: its row group holds no rows.
    ids = ["C001", "C002"]
    profile = _view(tmp_path / "profile.parquet", {"2024-01-01": [], "2024-02-01": ids}, 0.0)
    rfm = _view(tmp_path / "rfm.parquet", {"2024-01-01": [], "2024-02-01": ids}, 1.0)
    snapshot = latest_snapshot({"profile": profile, "rfm": rfm}, {"profile": 366, "rfm": 62})
    assert snapshot.moment == pd.Timestamp("2024-02-01", tz="UTC") and snapshot.customers == 2
    chunks = list(iter_chunks(snapshot, {"profile": ["x"], "rfm": ["x"]}, chunk_rows=10))
    assert sum(c.num_rows for c in chunks) == 2


def test_a_snapshot_as_of_a_past_date_holds_the_customers_and_rows_of_then(
    tmp_path: Path,
) -> None:
    ids = [f"C{i:03d}" for i in range(7)]
    profile = _view(tmp_path / "profile.parquet", {"2024-01-01": ids[:5], "2024-02-01": ids}, 0.0)
    rfm = _view(tmp_path / "rfm.parquet", {"2024-01-01": ids[:5], "2024-02-01": ids}, 100.0)
    tables, ttl = {"profile": profile, "rfm": rfm}, {"profile": 366, "rfm": 62}
    then = latest_snapshot(tables, ttl, as_of=pd.Timestamp("2024-01-20", tz="UTC"))
    assert then.moment == pd.Timestamp("2024-01-01", tz="UTC") and then.customers == 5
    assert population_ids(then).to_pylist() == ids[:5]
    chunks = list(iter_chunks(then, {"profile": ["x"], "rfm": ["x"]}, chunk_rows=10))
    got = pa.concat_tables(chunks).to_pandas()
    expected = _point_in_time(rfm, then.moment, 62)["x"].reindex(ids[:5])
    assert got.iloc[:, 2].tolist() == expected.tolist()
    same_day = latest_snapshot(tables, ttl, as_of=pd.Timestamp("2024-02-01", tz="UTC"))
    assert same_day.moment == pd.Timestamp("2024-02-01", tz="UTC")
    with pytest.raises(NotReadyError, match="no feature snapshot at or before 2023-12-31"):
        latest_snapshot(tables, ttl, as_of=pd.Timestamp("2023-12-31", tz="UTC"))


def test_all_blank_margins_mean_revenue_not_zero(tmp_path: Path) -> None:
    # Validation keeps absent optional columns as all-null: that is "unknown", never 0.
    log = _log().drop(columns=["channel"]).assign(margin=np.nan)
    products = PRODUCTS.assign(margin_rate=np.nan)
    transactions, value_column = with_margins(log, products)
    assert value_column == "monetary_value" and "margin" not in transactions.columns
    path = _write(log, tmp_path / "transactions.parquet", row_group_size=100)
    got = aggregate_transactions(
        path, IdIndex(pa.array(POPULATION)), PassWindows(END, SNAPSHOT), products=products
    )
    assert got.value_column == "monetary_value"
    revenue = trailing_margins(transactions, END, 365, pd.Index(POPULATION))
    assert revenue.any()  # revenue, not a margin of 0
    np.testing.assert_allclose(got.trailing, revenue)
