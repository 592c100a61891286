"""After a point-in-time join, Feast's DuckDB connection is closed; the next join opens one."""

from __future__ import annotations

from pathlib import Path

import duckdb
import ibis
import pandas as pd
import pytest

from features.store import release_offline_buffers


def test_the_join_connection_is_closed_and_the_next_one_works(tmp_path: Path) -> None:
    table = tmp_path / "view.parquet"
    pd.DataFrame({"customer_id": ["C1", "C2"], "x": [1.0, 2.0]}).to_parquet(table)
    joined = ibis.read_parquet(table)  # what Feast's DuckDB store does: the default backend
    used = ibis.get_backend()
    assert joined.x.sum().execute() == 3.0

    release_offline_buffers()

    with pytest.raises(duckdb.ConnectionException):  # closed: it holds nothing any more
        used.raw_sql("SELECT 1").fetchall()
    again = ibis.read_parquet(table)
    assert ibis.get_backend() is not used
    assert again.x.sum().execute() == 3.0


def test_nothing_to_release_is_fine() -> None:
    ibis.options.default_backend = None
    release_offline_buffers()
    assert ibis.options.default_backend is None
