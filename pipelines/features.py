"""Feature pipeline: contract tables -> snapshot feature tables and labels -> Feast, online."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from rich.table import Table

from features.catalog import ENTITY_KEY, SCORES, VIEWS
from features.frames import HORIZON_FILE, LABELS_FILE
from features.partitions import (
    REQUIRED_TABLES,
    BuildPlan,
    assemble,
    build_partition,
    customer_rows,
    partition_count,
    plan_build,
    repartition,
    views_rows,
    work_folder,
)
from features.store import (
    VIEWS_FILE,
    apply_definitions,
    materialize,
    online_features,
    open_store,
    views_manifest,
)
from features.tables_io import recover_folder, staged_folder
from loyal.compute import dask_client
from loyal.errors import NotReadyError
from loyal.logs import console
from loyal.settings import Settings

if TYPE_CHECKING:
    from distributed import Client

log = logging.getLogger(__name__)


def build_features(settings: Settings, last_n: int | None = None) -> dict[str, int]:
    """Build every view's snapshot table and the churn labels, replacing the old ones atomically.

    Out of core (`features.partitions`): the contract's customer tables are split by a hash of
    the customer id in one streaming pass, each partition of about
    `compute.partition_customers` customers is built alone (in this process with
    `compute.engine: local`, as Dask tasks with `dask`), and the partitions' files are
    assembled into one table per view. Peak memory follows the partition, not the bank.

    Args:
        settings: where to read the contract tables and write the feature tables.
        last_n: keep only the last `n` snapshots (default: every snapshot in the history).

    Returns:
        Rows written per table file.
    """
    contract = settings.paths.contract_dir
    recover_folder(contract)
    _require_contract(contract)
    compute = settings.compute
    count = partition_count(
        customer_rows(contract), compute.partition_customers, compute.partitions
    )
    started = time.perf_counter()
    with work_folder(work_dir(settings)) as work:
        bounds = repartition(contract, work, count)
        plan = plan_build(
            contract,
            work,
            count,
            bounds,
            frequency=settings.snapshots.frequency,
            horizon_days=settings.snapshots.horizon_days,
            churn_definition=settings.snapshots.churn_definition,
            last_n=last_n,
        )
        log.info(
            "Building %d monthly snapshots of %d customers in %d partitions (engine %s)",
            len(plan.snapshots), bounds.customers, count, compute.engine,
        )  # fmt: skip
        with dask_client(compute) as client:
            _build_partitions(plan, client)
        with staged_folder(settings.paths.features_dir) as staging:
            rows = assemble(plan, staging, LABELS_FILE)
            (staging / HORIZON_FILE).write_text(
                json.dumps(dataclasses.asdict(plan.horizon), indent=2)
            )
            (staging / VIEWS_FILE).write_text(views_manifest(plan.holding))
    log.info(
        "Feature tables for %d snapshots (%s .. %s) written in %.1f s: %s",
        len(plan.snapshots),
        plan.snapshots[0].date(),
        plan.snapshots[-1].date(),
        time.perf_counter() - started,
        rows,
    )
    return rows


def work_dir(settings: Settings) -> str:
    """Where a build's partition files go: `compute.work_dir`, else under the runtime folder."""
    compute = settings.compute
    if compute.work_dir:
        return compute.work_dir
    if compute.engine == "dask" and compute.scheduler != "local-cluster":
        log.warning(
            "compute.work_dir is not set: the partition files go to this machine's disk, "
            "which workers on other machines cannot read (set an s3:// or shared path)"
        )
    return str((settings.paths.runtime_dir / "partitions").resolve())


def _require_contract(contract: Path) -> None:
    missing = [t for t in REQUIRED_TABLES if not (contract / f"{t}.parquet").is_file()]
    if missing:
        raise NotReadyError(
            f"no validated {', '.join(missing)} table in {contract}: "
            "run `loyal generate` and `loyal ingest`, or `loyal ingest PATH` with your data"
        )


def _build_partitions(plan: BuildPlan, client: Client | None) -> None:
    """Build every partition: a loop here, or one Dask task each on the client's cluster."""
    if client is None:
        for index in range(plan.count):
            started = time.perf_counter()
            rows = build_partition(plan, index)
            log.info(
                "partition %d/%d built in %.1f s: %s",
                index + 1, plan.count, time.perf_counter() - started, views_rows(rows),
            )  # fmt: skip
        return
    from distributed import as_completed

    shared = client.scatter(plan, broadcast=True)
    futures = client.map(build_partition, [shared] * plan.count, range(plan.count), pure=False)
    positions = {future.key: index for index, future in enumerate(futures)}
    for done, future in enumerate(as_completed(futures), start=1):
        rows = future.result()
        log.info(
            "partition %d built on the cluster (%d/%d done): %s",
            positions[future.key] + 1, done, plan.count, views_rows(rows),
        )  # fmt: skip


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
