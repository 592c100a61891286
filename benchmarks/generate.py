"""Benchmark the sample bank generator: time, peak memory and rows, printed as one JSON line."""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from samplebank.bank import SampleBank, generate_bank
from samplebank.generate import write_parquet


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024**2 if sys.platform == "darwin" else peak / 1024


def write_bank(bank: SampleBank, folder: Path) -> None:
    """Write every table as Parquet with the writer `loyal generate` uses."""
    for group, frames in (("raw", bank.tables), ("truth", bank.truth)):
        (folder / group).mkdir(parents=True, exist_ok=True)
        for name, frame in frames.items():
            for _ in write_parquet(frame, folder / group / f"{name}.parquet"):
                pass


def run(customers: int, seed: int, months: int, write: bool) -> dict[str, object]:
    """Generate (and optionally write) one bank; return the figures to print."""
    started = time.perf_counter()
    bank = generate_bank(customers, seed, months=months)
    generated = time.perf_counter() - started
    result: dict[str, object] = {
        "customers": customers,
        "seconds": round(generated, 2),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "rows": bank.rows(),
    }
    if write:
        folder = Path(tempfile.mkdtemp(prefix="loyal-bench-"))
        try:
            write_bank(bank, folder)
            result["write_seconds"] = round(time.perf_counter() - started - generated, 2)
            result["parquet_mb"] = round(
                sum(f.stat().st_size for f in folder.rglob("*.parquet")) / 1024**2, 1
            )
            result["peak_rss_mb"] = round(peak_rss_mb(), 1)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return result


def main() -> None:
    """Parse arguments, run the benchmark and print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--write", action="store_true", help="also write Parquet to a temp dir")
    args = parser.parse_args()
    print(json.dumps(run(args.customers, args.seed, args.months, args.write)))


if __name__ == "__main__":
    main()
