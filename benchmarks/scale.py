"""Benchmark Loyal at scale: every stage's time and peak memory on one bank; one JSON line.

Each stage runs in its own child process (this script with `--stage`), so each peak memory
figure (`<stage>_peak_rss_mb`) belongs to that stage alone: the largest sum of the resident sets
of the child and all its descendants (Dask's scheduler and worker processes included), sampled
every 0.2 s, and never less than the child's own maximum from `os.wait4`. A stage whose tree
passes `--max-rss-mb` (default 8,000) is killed and reported as such, so the benchmark itself
cannot take the machine down:

1. **generate**: the sample bank's raw tables, validated and loaded (`loyal generate`, `ingest`);
2. **features**: the point-in-time feature tables and labels, registered in Feast;
3. **online_load**: the newest snapshot of every view into the online store (bulk load);
4. **train_churn**: the churn model trained (point-in-time frame through the offline store,
   seeded search), registered and promoted;
5. **train_all**: churn (the stage above) plus CLV, need segments and cross-sell, each trained,
   registered and promoted, in the specs' order; `train_all_s` is their sum, its peak the max;
6. **train_learned**: the models that learn from the business's own actions, uplift (past
   campaigns) and acceptance (the decision log), when their data is there; `train_every_s` adds
   them to `train_all_s`;
7. **score**: every customer scored into the scores view and put online (`loyal score`).

    .venv/bin/python benchmarks/scale.py --customers 100000 [--home PATH] [--engine local|dask]
        [--stages generate,online_load] [--max-rss-mb 8000]

`--engine dask` runs every stage with `LOYAL_COMPUTE__ENGINE=dask` on a `LocalCluster` of 2
worker processes (`compute:` in `loyal.yaml`); the stages that have a Dask path use it. The home
(default `/tmp/loyal-bench-scale-<customers>`) is replaced at the start unless `--stages` picks
a subset (then the earlier stages' output must already be there). Settings come from
`loyal.yaml` and `LOYAL_*` variables as usual (e.g. `LOYAL_CHURN__SEARCH_TRIALS=5`). The JSON
line also records the machine's load average before and after the run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

STAGES = (
    "generate",
    "features",
    "online_load",
    "train_churn",
    "train_others",
    "train_learned",
    "score",
)
LEARNED = ("uplift", "acceptance")
"""Models trained from the outcomes of the business's own actions (campaigns, decisions)."""
SEED = 42


def stage_generate(home: Path, customers: int) -> None:
    """Generate the bank's raw tables and load them through the contract's validation."""
    from pipelines.ingest import ingest_folder
    from samplebank.generate import generate_sample_bank

    settings = _settings(home)
    bank = settings.generate.overridden(customers=customers, seed=SEED)
    ingest_folder(settings, generate_sample_bank(settings, bank))


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

    return [name for name in MODELS if name != "churn" and name not in LEARNED]


def _learned_models() -> list[str]:
    from loyal.specs import MODELS

    return [name for name in MODELS if name in LEARNED]


STAGE_RUNNERS: dict[str, Callable[[argparse.Namespace], None]] = {
    "generate": lambda a: stage_generate(a.home, a.customers),
    "features": lambda a: stage_features(a.home),
    "online_load": lambda a: stage_online_load(a.home),
    "train_churn": lambda a: stage_train(a.home, ["churn"]),
    "train_others": lambda a: stage_train(a.home, _other_models()),
    "train_learned": lambda a: stage_train(a.home, _learned_models()),
    "score": lambda a: stage_score(a.home),
}


DASK_ENVIRONMENT = {
    "LOYAL_COMPUTE__ENGINE": "dask",
    "LOYAL_COMPUTE__SCHEDULER": "local-cluster",
    "LOYAL_COMPUTE__WORKERS": "2",
}
SAMPLE_SECONDS = 0.2


@dataclass
class StageResult:
    """One stage's wall time, CPU seconds (user + system of the stage and the processes it
    waited for, Dask's workers included), peak memory of its process tree, and whether the
    guard killed it."""

    seconds: float
    peak_rss_mb: float
    cpu_s: float = 0.0
    killed: bool = False


class TreeMemory(threading.Thread):
    """Samples the summed resident memory of a process and its descendants; kills the tree
    (process group) when it passes the limit."""

    def __init__(self, pid: int, limit_mb: float) -> None:
        super().__init__(daemon=True)
        self.pid, self.limit_mb = pid, limit_mb
        self.peak_mb, self.killed = 0.0, False
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(SAMPLE_SECONDS):
            current = tree_rss_mb(self.pid)
            self.peak_mb = max(self.peak_mb, current)
            if current > self.limit_mb and not self.killed:
                self.killed = True
                os.killpg(self.pid, signal.SIGKILL)


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants, in MiB (0 once it is gone)."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total / 1024**2


def run_stage(name: str, args: argparse.Namespace) -> StageResult:
    """Run one stage in a child process (its own process group); time and peak tree memory."""
    command = [sys.executable, __file__, "--stage", name, "--home", str(args.home)]
    command += ["--customers", str(args.customers), "--engine", args.engine]
    environment = {**os.environ, "LOYAL_HOME": str(args.home)}
    if args.engine == "dask":
        environment.update(DASK_ENVIRONMENT)
    print(f"[scale] {name} ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    child = subprocess.Popen(command, env=environment, start_new_session=True)
    memory = TreeMemory(child.pid, args.max_rss_mb)
    memory.start()
    _, status, usage = os.wait4(child.pid, 0)
    memory.done.set()
    memory.join()
    seconds = time.perf_counter() - started
    _kill_leftovers(child.pid)
    cpu_s = usage.ru_utime + usage.ru_stime
    peak_mb = max(memory.peak_mb, usage.ru_maxrss / 1024)
    result = StageResult(seconds, peak_mb, cpu_s, memory.killed)
    code = os.waitstatus_to_exitcode(status)
    if memory.killed:
        print(f"[scale] {name}: killed above {args.max_rss_mb} MiB", file=sys.stderr, flush=True)
    elif code != 0:
        raise SystemExit(f"stage {name} failed with exit code {code}")
    else:
        print(
            f"[scale] {name}: {seconds:.1f} s, {cpu_s:.1f} CPU s, peak {peak_mb:.0f} MiB",
            file=sys.stderr,
            flush=True,
        )
    return result


def _kill_leftovers(group: int) -> None:
    """End what a stage left running in its process group (e.g. a stray Dask worker)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)


def load_average() -> list[float]:
    """The machine's 1, 5 and 15 minute load averages (2 cores here: above 2 is contention)."""
    return [round(value, 2) for value in os.getloadavg()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--home", type=Path, default=None)
    parser.add_argument("--engine", choices=("local", "dask"), default="local")
    parser.add_argument("--stages", default=",".join(STAGES), help="comma-separated subset")
    parser.add_argument("--max-rss-mb", type=float, default=8_000.0)
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.home = (args.home or Path(f"/tmp/loyal-bench-scale-{args.customers}")).resolve()
    if args.stage:
        STAGE_RUNNERS[args.stage](args)
        return
    chosen = [name for name in STAGES if name in args.stages.split(",")]
    if chosen == list(STAGES):
        shutil.rmtree(args.home, ignore_errors=True)
    args.home.mkdir(parents=True, exist_ok=True)
    load_before = load_average()
    measured = {name: run_stage(name, args) for name in chosen}
    print(json.dumps(summary(args, measured, load_before)))


def summary(
    args: argparse.Namespace, measured: dict[str, StageResult], load_before: list[float]
) -> dict[str, Any]:
    """The JSON line: seconds, CPU seconds and peak MiB per stage (train_all = churn + the
    others; train_every adds the learned models)."""
    result: dict[str, Any] = {"customers": args.customers, "engine": args.engine}
    for name in STAGES:
        if name in measured:
            result[f"{name}_s"] = round(measured[name].seconds, 1)
            result[f"{name}_cpu_s"] = round(measured[name].cpu_s, 1)
            result[f"{name}_peak_rss_mb"] = round(measured[name].peak_rss_mb)
    if "train_churn" in measured and "train_others" in measured:
        churn, others = measured["train_churn"], measured["train_others"]
        result["train_all_s"] = round(churn.seconds + others.seconds, 1)
        result["train_all_cpu_s"] = round(churn.cpu_s + others.cpu_s, 1)
        result["train_all_peak_rss_mb"] = round(max(churn.peak_rss_mb, others.peak_rss_mb))
        if "train_learned" in measured:
            learned = measured["train_learned"]
            result["train_every_s"] = round(result["train_all_s"] + learned.seconds, 1)
    killed = [name for name, stage in measured.items() if stage.killed]
    if killed:
        result["killed_over_max_rss"] = killed
    result["load_average_before"] = load_before
    result["load_average_after"] = load_average()
    return result


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
