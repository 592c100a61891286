"""A new embedded online store gets Loyal's page size; an existing one keeps its own."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from features.store import ONLINE_PAGE_SIZE, create_online_db


def _page_size(path: Path) -> int:
    with sqlite3.connect(path) as connection:
        return int(connection.execute("PRAGMA page_size").fetchone()[0])


def test_a_new_store_gets_the_online_page_size(tmp_path: Path) -> None:
    path = tmp_path / "online.db"
    create_online_db(path)
    with sqlite3.connect(path) as connection:  # what Feast does next: create its tables
        connection.execute("CREATE TABLE view (entity_key BLOB, value BLOB)")
    assert _page_size(path) == ONLINE_PAGE_SIZE != 4096


def test_an_existing_store_and_its_rows_are_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "online.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE view (entity_key BLOB, value BLOB)")
        connection.execute("INSERT INTO view VALUES (x'01', x'02')")
    before = _page_size(path)
    create_online_db(path)
    assert _page_size(path) == before
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT count(*) FROM view").fetchone()[0] == 1
