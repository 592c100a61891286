"""Feature pipeline: contract tables -> snapshot feature tables and labels -> Feast, online."""

from __future__ import annotations

import logging
import time

import pandas as pd
from rich.table import Table

from features.catalog import ENTITY_KEY, VIEWS
from features.engineering import build_feature_tables, holding_products, snapshot_times
from features.labels import churn_labels
from features.store import (
    VIEWS_FILE,
    apply_definitions,
    materialize,
    online_features,
    open_store,
    views_manifest,
)
from features.tables_io import read_contract, replace_folder
from loyal.errors import NotReadyError
from loyal.logs import console
from loyal.settings import Settings
from training.frames import LABELS_FILE

log = logging.getLogger(__name__)


def build_features(settings: Settings, last_n: int | None = None) -> dict[str, int]:
    """Build every view's snapshot table and the churn labels, replacing the old ones atomically.

    Args:
        settings: where to read the contract tables and write the feature tables.
        last_n: keep only the last `n` snapshots (default: every snapshot in the history).

    Returns:
        Rows written per table.
    """
    tables = read_contract(settings)
    snapshots = snapshot_times(tables, frequency=settings.snapshots.frequency, last_n=last_n)
    log.info(
        "Building features for %d snapshots (%s .. %s)",
        len(snapshots),
        snapshots[0].date(),
        snapshots[-1].date(),
    )
    started = time.perf_counter()
    products = holding_products(tables)
    frames = build_feature_tables(tables, snapshots, products=products)
    frames_to_write = {f"{name}.parquet": frame for name, frame in frames.items()}
    labels = churn_labels(
        tables,
        snapshots,
        horizon_days=settings.snapshots.horizon_days,
        definition=settings.snapshots.churn_definition,
    )
    frames_to_write[LABELS_FILE] = labels
    replace_folder(
        settings.paths.features_dir,
        frames_to_write,
        extra_files={VIEWS_FILE: views_manifest(products)},
    )
    log.info("Feature tables written in %.1f s", time.perf_counter() - started)
    return {name: len(frame) for name, frame in frames_to_write.items()}


def apply_features(settings: Settings) -> list[str]:
    """Register the feature definitions in Feast."""
    return apply_definitions(settings)


def materialize_features(settings: Settings) -> None:
    """Load the latest snapshot of every view into the online store."""
    materialize(settings)


def show_customer(
    settings: Settings, customer_id: str, service: str = "nba_v1"
) -> dict[str, object]:
    """Print and return one customer's online feature values."""
    store = open_store(settings)
    try:
        frame = online_features(store, service, [customer_id])
    except Exception as exc:  # Feast raises many types when the registry is empty
        raise NotReadyError(
            f"could not read online features ({exc.__class__.__name__}): "
            "run `loyal features apply` and `loyal features materialize` first"
        ) from exc
    values = frame.iloc[0].to_dict()
    known = any(pd.notna(v) for k, v in values.items() if k != ENTITY_KEY)
    table = Table(title=f"Online features of customer {customer_id}")
    table.add_column("feature")
    table.add_column("value", justify="right")
    table.add_column("meaning")
    descriptions = {f.name: f.description for v in VIEWS.values() for f in v.features}
    for name, value in values.items():
        if name != ENTITY_KEY:
            table.add_row(name, _format(value), descriptions.get(name, ""))
    console.print(table)
    if not known:
        console.print(f"[yellow]customer {customer_id} has no online features (unknown id?)[/]")
    return values


def _format(value: object) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    if isinstance(value, float):
        return f"{value:,.2f}"
    return str(value)
