"""The bulk online load writes exactly what Feast's row-by-row materialize writes."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from test_feature_store import assert_same_values

from features import online_load
from features.catalog import ENTITY_KEY
from features.store import feast_dir, materialize, online_features, open_store
from loyal.settings import Settings, load_settings

pytestmark = pytest.mark.pipeline


def online_rows(settings: Settings) -> dict[str, pd.DataFrame]:
    """Every row of every Feast SQLite table, sorted, by table."""
    with sqlite3.connect(feast_dir(settings) / "online.db") as connection:
        tables = [
            name
            for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
        ]
        return {
            table: pd.read_sql(
                f"SELECT entity_key, feature_name, value, value_text, event_ts, created_ts "
                f'FROM "{table}" ORDER BY entity_key, feature_name',
                connection,
            )
            for table in tables
        }


def emptied(settings: Settings) -> Settings:
    """Delete every online row, so the next load alone decides the contents."""
    with sqlite3.connect(feast_dir(settings) / "online.db") as connection:
        for (name,) in connection.execute(
            "SELECT name FROM sqlite_master WHERE type='table'"
        ).fetchall():
            connection.execute(f'DELETE FROM "{name}"')
    return settings


def test_bulk_load_writes_the_same_rows_as_feast_materialize(
    feature_bank: Settings, tmp_path: Path
) -> None:
    home = tmp_path / "copy"
    shutil.copytree(feature_bank.home, home)
    settings = load_settings(home=home)

    schema = online_schema(settings)
    materialize(with_departed_customer(emptied(settings)), row_by_row=True)
    by_feast = online_rows(settings)
    customers = _customer_ids(settings, 30)
    read_from_feast = online_features(open_store(settings), "churn_v1", customers)
    materialize(with_departed_customer(emptied(settings)))
    in_bulk = online_rows(settings)
    read_from_bulk = online_features(open_store(settings), "churn_v1", customers)

    assert online_schema(settings) == schema  # the swapped-in tables are Feast's, indexes too
    assert sorted(in_bulk) == sorted(by_feast)
    for table, rows in by_feast.items():
        assert len(rows) > 0, table
        assert (rows["entity_key"] == DEPARTED).sum() == 1, table  # kept, as Feast's upsert does
        pd.testing.assert_frame_equal(in_bulk[table], rows, check_dtype=False, obj=table)
    features = [c for c in read_from_feast.columns if c != ENTITY_KEY]
    assert len(features) > 40
    assert read_from_bulk[features].notna().to_numpy().mean() > 0.5
    assert_same_values(read_from_bulk, read_from_feast, features)


def test_a_failed_bulk_load_leaves_the_previous_load(
    feature_bank: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "copy"
    shutil.copytree(feature_bank.home, home)
    settings = load_settings(home=home)
    before = online_rows(settings)
    real_encode = online_load.encode_column
    calls = {"n": 0}

    def failing_encode(column: pa.ChunkedArray, dtype: object) -> tuple[np.ndarray, np.ndarray]:
        calls["n"] += 1
        if calls["n"] == 30:  # in the fourth view: three views are swapped, not committed
            raise OSError("disk full")
        return real_encode(column, dtype)

    monkeypatch.setattr(online_load, "encode_column", failing_encode)
    with pytest.raises(OSError, match="disk full"):
        materialize(settings)
    after = online_rows(settings)
    assert sorted(after) == sorted(before)
    for table, rows in before.items():
        pd.testing.assert_frame_equal(after[table], rows, obj=table)


def test_the_loaded_tables_are_clustered_and_survive_feast_apply(
    feature_bank: Settings, tmp_path: Path
) -> None:
    from pipelines.features import apply_features

    home = tmp_path / "copy"
    shutil.copytree(feature_bank.home, home)
    settings = load_settings(home=home)
    customers = _customer_ids(settings, 20)
    before = online_features(open_store(settings), "churn_v1", customers)
    schema = online_schema(settings)
    tables = {name: sql for kind, name, sql in schema if kind == "table"}
    indexes = {name: sql for kind, name, sql in schema if kind == "index"}
    assert tables and all(sql.endswith("WITHOUT ROWID") for sql in tables.values())
    for table in tables:  # Feast's index name is kept, always empty
        assert indexes[f"{table}_ek"].endswith("WHERE entity_key IS NULL")

    apply_features(settings)  # Feast's CREATE TABLE / INDEX IF NOT EXISTS

    assert online_schema(settings) == schema
    with sqlite3.connect(feast_dir(settings) / "online.db") as connection:
        for table in tables:
            plan = connection.execute(
                "EXPLAIN QUERY PLAN SELECT entity_key, feature_name, value, event_ts "
                f'FROM "{table}" WHERE entity_key IN (?, ?) ORDER BY entity_key',
                (b"a", b"b"),
            ).fetchall()
            assert "USING PRIMARY KEY" in plan[0][-1], plan
    after = online_features(open_store(settings), "churn_v1", customers)
    pd.testing.assert_frame_equal(after, before)


DEPARTED = b"departed-customer"


def with_departed_customer(settings: Settings) -> Settings:
    """One row of a customer the snapshot no longer holds in every online table."""
    with sqlite3.connect(feast_dir(settings) / "online.db") as connection:
        for (name,) in connection.execute(
            "SELECT name FROM sqlite_master WHERE type='table'"
        ).fetchall():
            connection.execute(
                f'INSERT INTO "{name}" (entity_key, feature_name, value, value_text, event_ts) '
                "VALUES (?, 'gone', x'', NULL, '2020-01-01 00:00:00')",
                (DEPARTED,),
            )
    return settings


def online_schema(settings: Settings) -> list[tuple[str, str, str]]:
    with sqlite3.connect(feast_dir(settings) / "online.db") as connection:
        return connection.execute(
            "SELECT type, name, sql FROM sqlite_master ORDER BY type, name"
        ).fetchall()


def _customer_ids(settings: Settings, n: int) -> list[str]:
    customers = pd.read_parquet(settings.paths.contract_dir / "customers.parquet")
    return customers[ENTITY_KEY].astype(str).head(n).tolist()
