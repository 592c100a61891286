"""The production profile: the same feature definitions on Redis and a PostgreSQL registry."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator

import pandas as pd
import pytest
import redis
from sqlalchemy import create_engine, text

from features.catalog import ENTITY_KEY
from features.store import apply_definitions, materialize, online_features, open_store
from loyal.settings import Settings

pytestmark = pytest.mark.service

POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432"


def reachable(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def production(feature_bank: Settings) -> Iterator[Settings]:
    """The feature bank's tables served from Redis with a fresh SQL registry database."""
    if not (reachable(6379) and reachable(5432)):
        pytest.skip("the production profile needs Redis on 127.0.0.1:6379 and PostgreSQL on :5432")
    name = f"loyal_test_{uuid.uuid4().hex[:8]}"
    admin = create_engine(f"{POSTGRES}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    settings = feature_bank.model_copy(deep=True)
    settings.profile = "production"
    settings.feast.project = name
    settings.feast.online_store = "redis"
    settings.feast.registry = "sql"
    settings.feast.registry_sql_url = f"{POSTGRES}/{name}"
    settings.paths.runtime_dir = feature_bank.paths.runtime_dir.with_name(f"runtime_{name}")
    yield settings
    with admin.connect() as connection:
        connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


def test_production_profile_serves_the_same_online_features(
    production: Settings, feature_bank: Settings
) -> None:
    apply_definitions(production)
    materialize(production)
    customers = pd.read_parquet(feature_bank.paths.contract_dir / "customers.parquet")
    ids = customers[ENTITY_KEY].head(10).tolist()
    from_redis = online_features(open_store(production), "churn_v1", ids)
    from_sqlite = online_features(open_store(feature_bank), "churn_v1", ids)
    assert from_redis.columns.tolist() == from_sqlite.columns.tolist()
    pd.testing.assert_frame_equal(from_redis, from_sqlite, check_dtype=False)
    assert open_store(production).config.online_store.type == "redis"


def test_bulk_load_writes_what_feast_writes_to_redis(production: Settings) -> None:
    apply_definitions(production)
    client = redis.Redis(host="127.0.0.1", port=6379)
    project = production.feast.project.encode()

    materialize(production, row_by_row=True)
    by_feast = redis_hashes(client, project)
    client.delete(*by_feast)
    materialize(production)
    in_bulk = redis_hashes(client, project)
    materialize(production)  # a second load of the same snapshot is not newer: nothing changes
    again = redis_hashes(client, project)
    client.delete(*in_bulk)

    assert len(by_feast) > 100
    assert in_bulk == by_feast
    assert again == by_feast


def redis_hashes(client: redis.Redis, project: bytes) -> dict[bytes, dict[bytes, bytes]]:
    """Every hash of one Feast project (its keys end with the project's name)."""
    hashes: dict[bytes, dict[bytes, bytes]] = {}
    for key in client.scan_iter(match=b"*" + project):
        hashes[key] = dict(client.hgetall(key))  # type: ignore[arg-type]
    return hashes
