"""Benchmark the sample bank generator (simulated and written to Parquet block by block, as
`loyal generate` does): time, peak memory, Parquet size and rows, printed as one JSON line."""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from samplebank.bank import BLOCK_CUSTOMERS, generate_blocks
from samplebank.generate import write_blocks


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024**2 if sys.platform == "darwin" else peak / 1024


def run(customers: int, seed: int, months: int, block: int) -> dict[str, object]:
    """Generate one bank block by block and write it as `loyal generate` does; the figures."""
    started = time.perf_counter()
    folder = Path(tempfile.mkdtemp(prefix="loyal-bench-"))
    try:
        (folder / "raw").mkdir()
        (folder / "truth").mkdir()
        blocks = generate_blocks(customers, seed, months=months, block_customers=block)
        rows = write_blocks(blocks, folder / "raw", folder / "truth")
        parquet_mb = sum(f.stat().st_size for f in folder.rglob("*.parquet")) / 1024**2
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "customers": customers,
        "block_customers": block,
        "seconds": round(time.perf_counter() - started, 2),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "parquet_mb": round(parquet_mb, 1),
        "rows": rows,
    }


def main() -> None:
    """Parse arguments, run the benchmark and print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--block", type=int, default=BLOCK_CUSTOMERS, help="customers per block")
    args = parser.parse_args()
    print(json.dumps(run(args.customers, args.seed, args.months, args.block)))


if __name__ == "__main__":
    main()
