"""Benchmark Loyal at scale: every stage's time and peak memory on one bank; one JSON line.

Each stage runs in its own child process (this script with `--stage`), so each peak memory
figure (`<stage>_peak_rss_mb`, the child's maximum resident set from `os.wait4`) belongs to
that stage alone:

1. **generate**: the sample bank's raw tables, validated and loaded (`loyal generate`, `ingest`);
2. **features**: the point-in-time feature tables and labels, registered in Feast;
3. **online_load**: the newest snapshot of every view into the online store (bulk load);
4. **train_churn**: the churn model trained (point-in-time frame through the offline store,
   seeded search), registered and promoted;
5. **train_all**: churn (the stage above) plus CLV, need segments and cross-sell, each trained,
   registered and promoted, in the specs' order; `train_all_s` is their sum, its peak the max;
6. **score**: every customer scored into the scores view and put online (`loyal score`).

    .venv/bin/python benchmarks/scale.py --customers 100000 [--home PATH] [--engine local]

The home (default `/tmp/loyal-bench-scale-<customers>`) is replaced at the start. Settings come
from `loyal.yaml` and `LOYAL_*` variables as usual (e.g. `LOYAL_CHURN__SEARCH_TRIALS=5`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

STAGES = ("generate", "features", "online_load", "train_churn", "train_others", "score")
SEED = 42


def stage_generate(home: Path, customers: int) -> None:
    """Generate the bank's raw tables and load them through the contract's validation."""
    from pipelines.ingest import ingest_folder
    from samplebank.generate import generate_sample_bank

    settings = _settings(home)
    ingest_folder(settings, generate_sample_bank(settings, customers=customers, seed=SEED))


def stage_features(home: Path) -> None:
    """Build the snapshot feature tables and labels and register them in Feast."""
    from pipelines.features import apply_features, build_features

    settings = _settings(home)
    build_features(settings)
    apply_features(settings)


def stage_online_load(home: Path) -> None:
    """Load the newest snapshot of every view into the online store."""
    from pipelines.features import materialize_features

    materialize_features(_settings(home))


def stage_train(home: Path, models: list[str]) -> None:
    """Train, register and promote each model in turn (as `loyal run` does)."""
    from loyal.errors import StepSkippedError
    from training.models_admin import promote_model, train_model

    settings = _settings(home)
    for name in models:
        try:
            result = train_model(settings, name)
        except StepSkippedError as skipped:
            print(f"skipped {name}: {skipped}", file=sys.stderr)
            continue
        promote_model(settings, name, result.model_version)


def stage_score(home: Path) -> None:
    """Score every customer into the scores view and put it online."""
    from pipelines.scores import publish_batch_scores

    publish_batch_scores(_settings(home))


def _settings(home: Path) -> Any:
    from loyal.logs import setup_logging
    from loyal.settings import load_settings

    settings = load_settings(home=home)
    setup_logging(settings.log_level)
    return settings


def _other_models() -> list[str]:
    from loyal.specs import MODELS

    return [name for name in MODELS if name != "churn"]


STAGE_RUNNERS: dict[str, Callable[[argparse.Namespace], None]] = {
    "generate": lambda a: stage_generate(a.home, a.customers),
    "features": lambda a: stage_features(a.home),
    "online_load": lambda a: stage_online_load(a.home),
    "train_churn": lambda a: stage_train(a.home, ["churn"]),
    "train_others": lambda a: stage_train(a.home, _other_models()),
    "score": lambda a: stage_score(a.home),
}


def run_stage(name: str, args: argparse.Namespace) -> tuple[float, float]:
    """Run one stage in a child process; its wall seconds and peak resident memory in MiB."""
    command = [sys.executable, __file__, "--stage", name, "--home", str(args.home)]
    command += ["--customers", str(args.customers), "--engine", args.engine]
    print(f"[scale] {name} ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    child = subprocess.Popen(command, env={**os.environ, "LOYAL_HOME": str(args.home)})
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"stage {name} failed with exit code {child.returncode}")
    peak = usage.ru_maxrss / 1024
    print(f"[scale] {name}: {seconds:.1f} s, peak {peak:.0f} MiB", file=sys.stderr, flush=True)
    return seconds, peak


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--home", type=Path, default=None)
    parser.add_argument("--engine", choices=("local", "dask"), default="local")
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.home = (args.home or Path(f"/tmp/loyal-bench-scale-{args.customers}")).resolve()
    if args.engine != "local":
        raise SystemExit("only --engine local is implemented so far")
    if args.stage:
        STAGE_RUNNERS[args.stage](args)
        return
    shutil.rmtree(args.home, ignore_errors=True)
    args.home.mkdir(parents=True)
    measured = {name: run_stage(name, args) for name in STAGES}
    result: dict[str, Any] = {"customers": args.customers, "engine": args.engine}
    for name in ("generate", "features", "online_load", "train_churn", "score"):
        key = "features" if name == "features" else name
        result[f"{key}_s"] = round(measured[name][0], 1)
        result[f"{key}_peak_rss_mb"] = round(measured[name][1])
    churn, others = measured["train_churn"], measured["train_others"]
    result["train_all_s"] = round(churn[0] + others[0], 1)
    result["train_all_peak_rss_mb"] = round(max(churn[1], others[1]))
    print(json.dumps(result))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
