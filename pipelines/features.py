"""Feature pipeline: contract tables -> snapshot feature tables and labels -> Feast, online."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from rich.progress import track
from rich.table import Table

from features.catalog import ENTITY_KEY, SCORES, TIMESTAMP_FIELD, VIEWS, View, views_for
from features.engineering import (
    holding_products,
    iter_feature_tables,
    observed_until,
    snapshot_times,
)
from features.frames import HORIZON_FILE, LABELS_FILE
from features.history import WindowChoice, churn_horizon
from features.labels import churn_labels
from features.store import (
    VIEWS_FILE,
    apply_definitions,
    materialize,
    online_features,
    open_store,
    views_manifest,
)
from features.tables_io import read_contract, staged_folder
from loyal.errors import NotReadyError
from loyal.logs import console
from loyal.settings import Settings

log = logging.getLogger(__name__)


def build_features(settings: Settings, last_n: int | None = None) -> dict[str, int]:
    """Build every view's snapshot table and the churn labels, replacing the old ones atomically.

    Snapshots are computed and appended one at a time (a Parquet row group each), so memory
    holds the inputs and one snapshot, not the whole history.

    Args:
        settings: where to read the contract tables and write the feature tables.
        last_n: keep only the last `n` snapshots (default: every snapshot in the history).

    Returns:
        Rows written per table file.
    """
    tables = read_contract(settings)
    snapshots = snapshot_times(tables, frequency=settings.snapshots.frequency, last_n=last_n)
    products = holding_products(tables)
    schemas = {f"{name}.parquet": arrow_schema(view) for name, view in views_for(products).items()}
    started = time.perf_counter()
    rows: dict[str, int] = {}
    with staged_folder(settings.paths.features_dir) as staging:
        writers: dict[str, pq.ParquetWriter] = {}
        try:
            for frames in track(
                iter_feature_tables(tables, snapshots, products=products),
                total=len(snapshots),
                description=f"Building {len(snapshots)} monthly snapshots",
                console=console,
            ):
                _append(staging, frames, schemas, writers, rows)
        finally:
            for writer in writers.values():
                writer.close()
        horizon = label_horizon(tables, snapshots, settings.snapshots.horizon_days)
        labels = churn_labels(
            tables,
            snapshots,
            horizon_days=horizon.chosen or horizon.configured,
            definition=settings.snapshots.churn_definition,
        )
        labels.to_parquet(staging / LABELS_FILE, index=False)
        rows[LABELS_FILE] = len(labels)
        (staging / HORIZON_FILE).write_text(json.dumps(dataclasses.asdict(horizon), indent=2))
        (staging / VIEWS_FILE).write_text(views_manifest(products))
    log.info(
        "Feature tables for %d snapshots (%s .. %s) written in %.1f s: %s",
        len(snapshots),
        snapshots[0].date(),
        snapshots[-1].date(),
        time.perf_counter() - started,
        rows,
    )
    return rows


def label_horizon(
    tables: dict[str, pd.DataFrame], snapshots: pd.DatetimeIndex, configured: int
) -> WindowChoice:
    """The churn horizon of the labels, sized from the history (`features.history`).

    Populated snapshots are those after the first sign-up or purchase day (a snapshot only
    holds customers who signed up before it). Logged, so the choice shows in the output.
    """
    first = pd.to_datetime(tables["transactions"]["ts"]).min()
    signups = pd.to_datetime(tables["customers"]["signup_date"])
    if signups.notna().any():
        first = min(first, signups.min())
    populated = [t for t in snapshots if t > first.normalize()]
    choice = churn_horizon(populated, observed_until(tables), configured)
    if choice.chosen is None:
        log.warning("churn labels: %s; labels use the configured horizon", choice.reason)
    else:
        log.info("churn labels: %s", choice.reason)
    return choice


ARROW_TYPES = {"float": pa.float64(), "int": pa.int64(), "str": pa.string(), "bool": pa.bool_()}


def arrow_schema(view: View) -> pa.Schema:
    """The fixed Parquet schema of a view table, so every snapshot's row group matches."""
    keys = [
        pa.field(ENTITY_KEY, pa.string()),
        pa.field(TIMESTAMP_FIELD, pa.timestamp("ns", tz="UTC")),
    ]
    return pa.schema(keys + [pa.field(f.name, ARROW_TYPES[f.type]) for f in view.features])


def _append(
    folder: Path,
    frames: dict[str, pd.DataFrame],
    schemas: dict[str, pa.Schema],
    writers: dict[str, pq.ParquetWriter],
    rows: dict[str, int],
) -> None:
    """Append one snapshot of every view to its Parquet file as a row group."""
    for name, frame in frames.items():
        file = f"{name}.parquet"
        batch = pa.Table.from_pandas(frame, schema=schemas[file], preserve_index=False)
        if file not in writers:
            writers[file] = pq.ParquetWriter(folder / file, schemas[file])
        writers[file].write_table(batch)
        rows[file] = rows.get(file, 0) + len(frame)


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
    values = {str(k): v for k, v in frame.iloc[0].to_dict().items()}
    known = any(pd.notna(v) for k, v in values.items() if k != ENTITY_KEY)
    table = Table(title=f"Online features of customer {customer_id}")
    table.add_column("feature")
    table.add_column("value", justify="right")
    table.add_column("meaning")
    descriptions = {f.name: f.description for v in (*VIEWS.values(), SCORES) for f in v.features}
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
