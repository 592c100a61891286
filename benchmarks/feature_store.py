"""Benchmark the feature store: build time and memory, materialize, online latency (one JSON line).

Stages run in child processes so each peak memory figure belongs to its own stage:
generate the sample bank into a temporary home (skipping ingest validation, which
`benchmarks`-free tests cover), build the feature tables, apply and materialize, then time
`get_online_features` for one customer and for a batch of 100 on SQLite (and Redis when
a server answers on 127.0.0.1:6379).

    python benchmarks/feature_store.py --customers 100000
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def stage_generate(home: Path, customers: int) -> dict[str, float]:
    """Generate the bank straight into the contract folder (the generator emits the contract)."""
    from features.tables_io import replace_folder
    from loyal.settings import load_settings
    from samplebank.bank import generate_bank

    settings = load_settings(home=home)
    bank = generate_bank(customers, seed=42)
    replace_folder(settings.paths.contract_dir, {f"{k}.parquet": v for k, v in bank.tables.items()})
    return {}


def stage_build(home: Path) -> dict[str, float]:
    """Build every snapshot feature table and the labels."""
    from loyal.settings import load_settings
    from pipelines.features import build_features

    started = time.perf_counter()
    rows = build_features(load_settings(home=home))
    return {"build_seconds": time.perf_counter() - started, "feature_rows": rows["rfm.parquet"]}


def stage_materialize(home: Path, redis: bool) -> dict[str, float]:
    """Register the definitions and load the online store."""
    from pipelines.features import apply_features, materialize_features

    settings = _settings(home, redis)
    started = time.perf_counter()
    apply_features(settings)
    applied = time.perf_counter()
    materialize_features(settings)
    return {
        "apply_seconds": applied - started,
        "materialize_seconds": time.perf_counter() - applied,
    }


def stage_online(home: Path, redis: bool, requests: int) -> dict[str, float]:
    """Latency of one-customer and 100-customer online reads through the nba_v1 service."""
    import pandas as pd

    from features.store import online_features, open_store

    settings = _settings(home, redis)
    store = open_store(settings)
    service = store.get_feature_service("churn_v1")
    ids = pd.read_parquet(settings.paths.contract_dir / "customers.parquet")["customer_id"]
    rng = np.random.default_rng(0)
    online_features(store, service, [ids.iloc[0]])  # warm the registry cache and connection
    single = _timed(lambda: online_features(store, service, [rng.choice(ids)]), requests)
    batch = _timed(
        lambda: online_features(store, service, list(rng.choice(ids, 100))), requests // 5
    )
    return {
        "p50_ms": float(np.percentile(single, 50)),
        "p99_ms": float(np.percentile(single, 99)),
        "batch100_p50_ms": float(np.percentile(batch, 50)),
        "batch100_p99_ms": float(np.percentile(batch, 99)),
    }


def _timed(call, repeats: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return np.array(times)


def _settings(home: Path, redis: bool):  # type: ignore[no-untyped-def]
    from loyal.settings import load_settings

    if not redis:
        return load_settings(home=home)
    return load_settings(
        home=home,
        feast={"online_store": "redis", "project": "loyal_bench"},
        paths={"runtime_dir": home / ".loyal-redis"},
    )


def run_stage(name: str, home: Path, *args: str) -> dict[str, float]:
    """Run one stage in a child process; return its figures and its peak memory."""
    output = (
        subprocess.run(
            [sys.executable, __file__, "--stage", name, "--home", str(home), *args],
            check=True,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    return json.loads(output)


def redis_reachable() -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", 6379)) == 0


def main() -> None:
    """Parse arguments; either run one stage (child) or the whole benchmark (parent)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--stage")
    parser.add_argument("--home", type=Path)
    parser.add_argument("--redis", action="store_true")
    parser.add_argument(
        "--build-only", action="store_true", help="skip materialize and online latency"
    )
    args = parser.parse_args()
    if args.stage:
        stages = {
            "generate": lambda: stage_generate(args.home, args.customers),
            "build": lambda: stage_build(args.home),
            "materialize": lambda: stage_materialize(args.home, args.redis),
            "online": lambda: stage_online(args.home, args.redis, args.requests),
        }
        figures = stages[args.stage]()
        print(json.dumps({**figures, "peak_rss_mb": peak_rss_mb()}))
        return
    print(json.dumps(benchmark(args.customers, args.requests, args.build_only)))


def benchmark(customers: int, requests: int, build_only: bool = False) -> dict[str, object]:
    """Every stage for one bank size; the figures keyed by what they measure."""
    home = Path(tempfile.mkdtemp(prefix="loyal-features-bench-"))
    try:
        run_stage("generate", home, "--customers", str(customers))
        build = run_stage("build", home)
        result: dict[str, object] = {
            "customers": customers,
            "build_seconds": round(build["build_seconds"], 1),
            "build_peak_rss_mb": round(build["peak_rss_mb"]),
            "feature_rows_per_view": int(build["feature_rows"]),
        }
        backends = [] if build_only else ["sqlite", *(["redis"] if redis_reachable() else [])]
        for backend in backends:
            flag = ["--redis"] if backend == "redis" else []
            loaded = run_stage("materialize", home, *flag)
            online = run_stage("online", home, "--requests", str(requests), *flag)
            result[f"materialize_seconds_{backend}"] = round(loaded["materialize_seconds"], 1)
            for key in ("p50_ms", "p99_ms", "batch100_p50_ms", "batch100_p99_ms"):
                result[f"online_{key}_{backend}"] = round(online[key], 2)
        return result
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
