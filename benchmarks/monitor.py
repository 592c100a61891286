"""Benchmark monitoring at scale: profile + PSI, 1,000,000 customers x all features; one JSON line.

The 1M-row snapshot is synthesised, not generated: a small sample bank (`--seed-customers`,
5,000) is generated, ingested and featurized (latest snapshot only), its feature views are
joined into one wide table, and its rows are **resampled with replacement** to `--rows`
(1,000,000) twice: once as the reference, once (another random draw) as the current snapshot.
Both are written as Parquet in row groups of 100,000. Resampling keeps every column's real
distribution (counts, flags, skewed money, text categories, missing values); it does not make
new customers, which monitoring does not need.

Timed, after the files exist: `profile_seconds` (the reference profile of every column, read
one column at a time: what a training run logs) and `psi_seconds` (the current file counted
into the reference's bins row group by row group, then PSI per column), `seconds` their sum.
`peak_rss_mb` is the process's peak resident memory during those two steps (the peak is reset
before them through /proc/self/clear_refs), `baseline_rss_mb` its memory before.

    .venv/bin/python benchmarks/monitor.py [--rows 1000000] [--seed-customers 5000]
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROW_GROUP = 100_000


def _status(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak() -> None:
    """Reset the kernel's peak resident memory mark of this process (Linux)."""
    Path("/proc/self/clear_refs").write_text("5")


def seed_table(home: Path, customers: int) -> pa.Table:
    """The latest feature snapshot of a small sample bank, all views joined on customer_id."""
    from features.store import built_views, table_path
    from loyal.settings import load_settings
    from pipelines.features import build_features
    from pipelines.ingest import ingest_folder
    from samplebank.generate import generate_sample_bank

    settings = load_settings(home=home)
    bank = settings.generate.overridden(customers=customers, seed=42)
    ingest_folder(settings, generate_sample_bank(settings, bank))
    build_features(settings, last_n=1)
    wide = None
    for name, view in built_views(settings).items():
        if name == "scores":
            continue
        table = pq.read_table(table_path(settings, view)).drop_columns(["event_timestamp"])
        frame = table.to_pandas()
        wide = frame if wide is None else wide.merge(frame, on="customer_id", how="left")
    assert wide is not None
    return pa.Table.from_pandas(wide.drop(columns=["customer_id"]), preserve_index=False)


def resampled(table: pa.Table, rows: int, seed: int, path: Path) -> Path:
    """`rows` rows drawn with replacement from `table`, written in row groups."""
    rng = np.random.default_rng(seed)
    with pq.ParquetWriter(path, table.schema) as writer:
        for start in range(0, rows, ROW_GROUP):
            size = min(ROW_GROUP, rows - start)
            writer.write_table(table.take(rng.integers(0, table.num_rows, size)))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed-customers", type=int, default=5_000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from monitoring.drift import drifts
    from monitoring.profile import count_parquet, profile_parquet

    with tempfile.TemporaryDirectory(prefix="loyal-bench-monitor-") as tmp:
        folder = Path(tmp)
        seed = seed_table(folder / "home", args.seed_customers)
        reference = resampled(seed, args.rows, 1, folder / "reference.parquet")
        current = resampled(seed, args.rows, 2, folder / "current.parquet")
        del seed
        baseline = _status("VmRSS:")
        reset_peak()
        started = time.perf_counter()
        profile = profile_parquet(reference)
        profiled = time.perf_counter()
        found = drifts(profile.columns, count_parquet(current, profile))
        finished = time.perf_counter()
        peak = _status("VmHWM:")
    print(
        json.dumps(
            {
                "benchmark": "monitor",
                "rows": args.rows,
                "columns": len(profile.columns),
                "synthesised": f"resampled from a {args.seed_customers}-customer sample bank",
                "seconds": round(finished - started, 2),
                "profile_seconds": round(profiled - started, 2),
                "psi_seconds": round(finished - profiled, 2),
                "profile_bytes": len(profile.to_json()),
                "max_corrected_psi": round(max(d.corrected for d in found), 5),
                "alerts": sum(d.level == "alert" for d in found),
                "baseline_rss_mb": round(baseline),
                "peak_rss_mb": round(peak),
            }
        )
    )


if __name__ == "__main__":
    main()
