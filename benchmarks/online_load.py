"""Benchmark the bulk online load on a large synthetic newest snapshot; one JSON line.

The newest snapshot of every view of a built bank (`--source`, e.g. the home of
`benchmarks/scale.py --customers 100000`) is tiled up to `--customers` customers: customer i gets
the feature values of source customer i mod n under a new id, so the columns, types, missing
values and value mix are the real ones. The tiled tables go to a new home (`--home`) with a copy
of the source's Feast registry; the online store is emptied, then loaded twice in a child
process: into the empty store (`online_load_s`, `online_load_cpu_s`: the CPU seconds, which
do not depend on what else runs) and, with `--reload`, again on top of the first load
(`reload_s`: what a daily refresh costs). Peak memory is each child's maximum resident set.

    .venv/bin/python benchmarks/online_load.py --source /tmp/loyal-bench-scale-100000 \\
        --customers 1000000 [--home PATH] [--reload]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features.catalog import ENTITY_KEY, TIMESTAMP_FIELD
from features.store import (
    ONLINE_PAGE_SIZE,
    VIEWS_FILE,
    built_views,
    feast_dir,
    latest_snapshot_time,
    table_path,
)
from loyal.settings import Settings, load_settings


def tile_snapshot(source: Settings, target: Settings, customers: int) -> int:
    """Write every view's newest snapshot, tiled to `customers` rows, into the target home."""
    newest = pa.scalar(latest_snapshot_time(source), type=pa.timestamp("us", tz="UTC"))
    target.paths.features_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(source.paths.features_dir / VIEWS_FILE, target.paths.features_dir / VIEWS_FILE)
    ids = pa.array([f"S{i:07d}" for i in range(customers)], pa.string())
    source_rows = 0
    for view in built_views(source).values():
        table = pq.read_table(table_path(source, view))
        stamps = pc.cast(table.column(TIMESTAMP_FIELD), pa.timestamp("us", tz="UTC"))
        snapshot = table.filter(pc.equal(stamps, newest)).sort_by(ENTITY_KEY)
        source_rows = max(source_rows, snapshot.num_rows)
        tiled = snapshot.take(pa.array(np.arange(customers) % snapshot.num_rows))
        position = tiled.schema.get_field_index(ENTITY_KEY)
        tiled = tiled.set_column(
            position, ENTITY_KEY, ids.cast(tiled.schema.field(ENTITY_KEY).type)
        )
        path = table_path(target, view)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(tiled, path)
    return source_rows


def copy_registry(source: Settings, target: Settings) -> None:
    """The source's Feast registry and online tables, emptied, with a new store's page size."""
    shutil.copytree(feast_dir(source), feast_dir(target), dirs_exist_ok=True)
    with sqlite3.connect(feast_dir(target) / "online.db") as connection:
        names = connection.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall()
        for (name,) in names:
            connection.execute(f'DELETE FROM "{name}"')
    with sqlite3.connect(feast_dir(target) / "online.db") as connection:
        connection.execute(f"PRAGMA page_size = {ONLINE_PAGE_SIZE}")
        connection.execute("VACUUM")


def load_once(home: Path) -> dict[str, Any]:
    """Run the bulk load (what `loyal features materialize` runs) and report it."""
    from features.store import materialize
    from loyal.logs import setup_logging

    settings = load_settings(home=home)
    setup_logging(settings.log_level)
    started, cpu = time.perf_counter(), time.process_time()
    materialize(settings)
    return {
        "seconds": round(time.perf_counter() - started, 1),
        "cpu_s": round(time.process_time() - cpu, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def measured_load(home: Path) -> dict[str, Any]:
    """One load in a fresh child process (so its peak memory is the load's alone)."""
    output = subprocess.run(
        [sys.executable, __file__, "--load", "--home", str(home)],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(output.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    """Parse arguments, tile the snapshot, load it twice and print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, help="home of a bank with built features")
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--home", type=Path, default=None)
    parser.add_argument("--reload", action="store_true", help="load a second time on top")
    parser.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    home = (args.home or Path(f"/tmp/loyal-bench-online-{args.customers}")).resolve()
    if args.load:
        print(json.dumps(load_once(home)))
        return
    shutil.rmtree(home, ignore_errors=True)
    source, target = load_settings(home=args.source.resolve()), load_settings(home=home)
    source_rows = tile_snapshot(source, target, args.customers)
    copy_registry(source, target)
    load_before = [round(v, 2) for v in os.getloadavg()]
    first = measured_load(home)
    result: dict[str, Any] = {
        "customers": args.customers,
        "tiled_from_customers": source_rows,
        "features": sum(len(view.features) for view in built_views(target).values()),
        "online_load_s": first["seconds"],
        "online_load_cpu_s": first["cpu_s"],
        "online_load_peak_rss_mb": first["peak_rss_mb"],
        "customers_per_s": round(args.customers / first["seconds"]),
        "online_db_mb": round((feast_dir(target) / "online.db").stat().st_size / 1024**2),
    }
    if args.reload:
        again = measured_load(home)
        result.update(reload_s=again["seconds"], reload_cpu_s=again["cpu_s"])
        result["reload_peak_rss_mb"] = again["peak_rss_mb"]
    result["load_average_before"] = load_before
    result["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    print(json.dumps(result))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
