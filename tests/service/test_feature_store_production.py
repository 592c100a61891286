"""The production profile: the same feature definitions on Redis and a PostgreSQL registry."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator

import pandas as pd
import pytest
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
