"""The Feast store client: configuration from settings, apply, materialize, read and push."""

from __future__ import annotations

import json
import logging
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from feast import FeatureService, FeatureStore, FeatureView, RepoConfig
from feast.data_source import PushMode

from features.catalog import ENTITY_KEY, SCORES, TIMESTAMP_FIELD, VIEWS, View, views_for
from features.feature_repo import definitions
from features.feature_repo.sources import batch_source, view_table_path
from features.feature_repo.views import feature_view
from loyal.errors import NotReadyError
from loyal.settings import Settings

log = logging.getLogger(__name__)


def feast_dir(settings: Settings) -> Path:
    """Folder of the embedded registry, SQLite online store and rendered feature_store.yaml."""
    return settings.paths.runtime_dir / "feast"


def repo_config(settings: Settings) -> RepoConfig:
    """A Feast configuration for the active profile (embedded or production)."""
    runtime = feast_dir(settings)
    feast = settings.feast
    online: dict[str, Any]
    if feast.online_store == "redis":
        online = {"type": "redis", "connection_string": feast.redis_connection_string}
    else:
        online = {"type": "sqlite", "path": str(runtime / "online.db")}
    registry: dict[str, Any] | str
    if feast.registry == "sql":
        registry = {
            "registry_type": "sql",
            "path": feast.registry_sql_url,
            "cache_ttl_seconds": 60,
            "sqlalchemy_config_kwargs": {"pool_pre_ping": True},
        }
    else:
        registry = {"registry_type": "file", "path": str(runtime / "registry.db")}
    return RepoConfig(
        project=feast.project,
        provider="local",
        registry=registry,
        online_store=online,
        offline_store={"type": feast.offline_store},
        repo_path=runtime,
        entity_key_serialization_version=feast.entity_key_serialization_version,
    )


ONLINE_PAGE_SIZE = 16_384
"""SQLite page size of a new embedded online store, in bytes (SQLite's default is 4,096).

Feast's layout is one row of about 115 bytes per customer and feature, clustered on the primary
key, so a customer's values sit side by side: with 16 KiB pages the bulk load handles a quarter
as many pages and took 20-25% less CPU (`benchmarks/online_load.py`: 54.8 against 73.7 CPU s at
300,000 customers; 32 KiB and 64 KiB were no better)."""


def open_store(settings: Settings) -> FeatureStore:
    """Open the configured feature store (creating its runtime folder and online database)."""
    feast_dir(settings).mkdir(parents=True, exist_ok=True)
    config = repo_config(settings)
    if settings.feast.online_store != "redis":
        create_online_db(Path(config.online_store.path))
    return FeatureStore(config=config)


def create_online_db(path: Path) -> None:
    """Create the SQLite online store with `ONLINE_PAGE_SIZE` pages, before Feast first opens it.

    A page size holds from a database's first write on; an existing store keeps its own."""
    if path.exists() and path.stat().st_size > 0:
        return
    connection = sqlite3.connect(path)
    try:
        connection.execute(f"PRAGMA page_size = {ONLINE_PAGE_SIZE}")
        connection.execute("VACUUM")  # writes the header, so the page size is fixed
    finally:
        connection.close()


VIEWS_FILE = "_views.json"
"""Written by the feature build: which products got a holdings column (the data decides)."""
SCORES_DIR = "scores"
"""Folder under the data folder holding the scores table: apart from the feature tables, which
`loyal features build` replaces wholesale, so a rebuild never deletes the published scores."""


PREVIOUS_SCORES_FILE = "scores.previous.parquet"
"""The scores table a batch scoring replaced, kept beside it (the report compares the two)."""


def scores_table_path(settings: Settings) -> Path:
    """Where batch scoring writes the scores view table."""
    return settings.paths.data_dir / SCORES_DIR / f"{SCORES.name}.parquet"


def table_path(settings: Settings, view: View) -> Path:
    """The Parquet table of a view: the scores table, or the view's feature table."""
    if view.name == SCORES.name:
        return scores_table_path(settings)
    return view_table_path(settings.paths.features_dir, view)


def built_views(settings: Settings) -> dict[str, View]:
    """The views whose tables exist, with the holdings columns they have; scores once written."""
    offline = settings.paths.features_dir
    recorded = offline / VIEWS_FILE
    products = json.loads(recorded.read_text())["holding_products"] if recorded.is_file() else None
    views = views_for(products) if products is not None else dict(VIEWS)
    extra = {name: view for name, view in VIEWS.items() if name not in views}
    candidates = {**views, **extra, SCORES.name: SCORES}
    return {name: view for name, view in candidates.items() if table_path(settings, view).is_file()}


def views_manifest(holding_products: list[str]) -> str:
    """The text of the views file the feature build writes beside its tables."""
    return json.dumps({"holding_products": holding_products}, indent=2)


def apply_definitions(settings: Settings) -> list[str]:
    """Register the entity, the views with built tables and the feature services.

    Returns:
        The names of the registered views.
    """
    views = built_views(settings)
    if not views:
        raise NotReadyError("no feature tables found: run `loyal features build` first")
    store = open_store(settings)
    objects: list[Any] = _definitions(settings, views)
    store.apply(objects, partial=False)
    _render_feature_store_yaml(settings)
    log.info("Registered %d feature views and their services in Feast: %s", len(views), list(views))
    return list(views)


def _definitions(settings: Settings, views: dict[str, View]) -> list[Any]:
    """The Feast objects, with the scores view reading its own folder (see `SCORES_DIR`)."""
    objects: list[Any] = definitions(settings.paths.features_dir, views)
    if SCORES.name not in views:
        return objects
    scores = feature_view(SCORES, batch_source(SCORES, scores_table_path(settings).parent))
    return [scores if isinstance(o, FeatureView) and o.name == SCORES.name else o for o in objects]


def materialize(
    settings: Settings,
    start: datetime | None = None,
    end: datetime | None = None,
    views: list[str] | None = None,
    row_by_row: bool = False,
) -> None:
    """Load the newest snapshot of every registered view into the online store.

    Args:
        settings: the active settings.
        start: load rows from this moment (default: the newest built snapshot, which holds
            every customer still open; older rows would only be overwritten).
        end: load rows up to this moment (default: just after the newest snapshot, so the
            result does not depend on the wall clock).
        views: the views to load (default: every registered view).
        row_by_row: use Feast's own `materialize` (one row at a time) instead of the bulk load
            of `features.online_load`; kept to check that both write the same values.
    """
    store = open_store(settings)
    registered = [fv.name for fv in store.list_feature_views()]
    if not registered:
        raise NotReadyError("no feature views registered: run `loyal features apply` first")
    names = [name for name in registered if views is None or name in views]
    if start is None or end is None:
        newest = latest_snapshot_time(settings)
        start = start or newest - timedelta(seconds=1)
        end = end or newest + timedelta(seconds=1)
    log.info("Materializing %d views from %s to %s", len(names), start, end)
    if row_by_row:
        store.materialize(start_date=start, end_date=end, feature_views=names)
        return
    from features.online_load import bulk_load

    built = built_views(settings)
    tables = {name: table_path(settings, built[name]) for name in names if name in built}
    bulk_load(store, tables, start, end)


def latest_snapshot_time(settings: Settings) -> datetime:
    """The newest `event_timestamp` across the built view tables."""
    newest = [
        pd.read_parquet(table_path(settings, view), columns=[TIMESTAMP_FIELD])[
            TIMESTAMP_FIELD
        ].max()
        for view in built_views(settings).values()
    ]
    if not newest:
        raise NotReadyError("no feature tables found: run `loyal features build` first")
    return pd.Timestamp(max(newest)).tz_convert(UTC).to_pydatetime()


def online_features(
    store: FeatureStore, service: str | FeatureService, customer_ids: list[str]
) -> pd.DataFrame:
    """Online feature values for customers, one row each, in the order given."""
    feature_service = (
        service if isinstance(service, FeatureService) else store.get_feature_service(service)
    )
    response = store.get_online_features(
        features=feature_service,
        entity_rows=[{ENTITY_KEY: cid} for cid in customer_ids],
    )
    return response.to_df()


def historical_features(
    store: FeatureStore, service: str, entity_frame: pd.DataFrame
) -> pd.DataFrame:
    """Point-in-time features for (customer_id, event_timestamp) rows through Feast."""
    frame = entity_frame[[ENTITY_KEY, TIMESTAMP_FIELD]].copy()
    frame[TIMESTAMP_FIELD] = pd.to_datetime(frame[TIMESTAMP_FIELD], utc=True)
    job = store.get_historical_features(
        entity_df=frame, features=store.get_feature_service(service)
    )
    try:
        return job.to_df()
    except RuntimeError as error:
        # DuckDB catches Ctrl+C itself during a query and raises this instead of
        # KeyboardInterrupt: the user pressed Ctrl+C, so the CLI's interrupt path applies
        if "Query interrupted" in str(error):
            raise KeyboardInterrupt from None
        raise
    finally:
        if store.config.offline_store.type == "duckdb":
            release_offline_buffers()


def release_offline_buffers() -> None:
    """Close the DuckDB connection Feast's DuckDB offline store joins in, freeing its buffers.

    The store queries ibis's default DuckDB connection, which keeps what a join allocated until
    it is closed: at a million customers, 2 GB beside the 1 GB frame of a 1.7 M-row churn join.
    The next join opens a new default connection (ibis creates one when none is set) and reads
    the Parquet tables again, as every join does.
    """
    import ibis

    backend = ibis.options.default_backend
    if backend is not None:
        ibis.options.default_backend = None
        backend.disconnect()


def push_view(store: FeatureStore, view_name: str, rows: pd.DataFrame) -> None:
    """Push fresh values of a pushed view (e.g. balances) straight to the online store."""
    frame = rows.copy()
    frame[TIMESTAMP_FIELD] = pd.to_datetime(frame[TIMESTAMP_FIELD], utc=True)
    store.push(f"{view_name}_push", frame, to=PushMode.ONLINE)


def _render_feature_store_yaml(settings: Settings) -> None:
    """Write feature_store.yaml beside the registry so the `feast` CLI and UI can open the store."""
    import yaml

    config = repo_config(settings)
    document = {
        "project": config.project,
        "provider": config.provider,
        "registry": config.registry_config,
        "online_store": config.online_config,
        "offline_store": {"type": config.offline_store.type},
        "entity_key_serialization_version": config.entity_key_serialization_version,
    }
    target = feast_dir(settings) / "feature_store.yaml"
    target.write_text(yaml.safe_dump(document, sort_keys=False))
