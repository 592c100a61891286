"""Benchmark `loyal score`: a million sample-bank customers scored to Parquet; one JSON line.

Stages run in child processes, so each peak memory figure belongs to its own stage, and a
prepared home is reused (`--home`, default `/tmp/loyal-bench-scoring-<customers>`), so the big
bank is generated and featurized once:

1. **models**: a small sample bank (`--train-customers`, 5,000) gets its features built and
   churn (small search budget), CLV and need segments trained, registered and promoted in the
   benchmark home's MLflow store: the champions the big bank is scored with (same generator,
   so the features line up).
2. **generate**: the big bank straight into the contract folder (the generator emits the
   contract; ingest validation is covered by tests), plus a synthetic top-3 cross-sell table
   for every customer (the batch file scoring joins; training ALS is not this benchmark).
3. **build**: the latest feature snapshot only (`build_features(last_n=1)`): all 24 snapshots
   at a million customers peak near 20 GB, the latest one is all scoring reads.
4. **score**: `pipelines.scores.write_batch_scores`, timed per stage. `seconds_1m` is this
   scoring to Parquet (model loading included; Python imports apart, as `import_seconds`:
   this machine runs with PYTHONDONTWRITEBYTECODE, so every import compiles from source).
5. **materialize** (`--materialize`): register the scores view and load it into the SQLite
   online store, reported apart as `materialize_seconds` (Feast writes ~6k rows/s).

    .venv/bin/python benchmarks/scoring.py [--customers 1000000] [--home PATH] [--materialize]
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loyal.settings import Settings

SEED = 42
TRAIN_SEED = 7
CHURN_TRIALS = 3
MARKER = "bench.json"
WARM_IMPORTS = (
    "mlflow.pyfunc", "scipy.special", "sklearn.cluster", "xgboost", "feast", "models.churn",
    "models.clv", "models.segments", "inference.fast", "training.clv", "pipelines.scores",
)  # fmt: skip
"""Imported before the scoring clock starts (imports compile from source on this machine)."""


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    """Resident memory of this process now, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _settings(home: Path) -> Settings:
    from loyal.settings import load_settings

    return load_settings(home=home)


# ------------------------------------------------------------------------------------- stages
def stage_models(home: Path, customers: int) -> dict[str, Any]:
    """Train and promote churn, CLV and segments on a small bank into the home's MLflow."""
    from loyal.settings import load_settings
    from pipelines.commands.churn import promote_churn, train_churn
    from pipelines.commands.value import train_and_promote_value
    from pipelines.features import apply_features, build_features
    from pipelines.ingest import ingest_folder
    from samplebank.generate import generate_sample_bank

    big = _settings(home)
    small = load_settings(
        home=home / "train-bank",
        mlflow={"tracking_uri": big.mlflow.tracking_uri, "artifact_root": big.mlflow.artifact_root},
    )
    started = time.perf_counter()
    bank = small.generate.overridden(customers=customers, seed=TRAIN_SEED)
    ingest_folder(small, generate_sample_bank(small, bank))
    build_features(small)
    apply_features(small)
    train_churn(small, search_trials=CHURN_TRIALS, search_timeout=60.0)
    promote_churn(small)
    train_and_promote_value(small)
    return {"train_seconds": time.perf_counter() - started}


def stage_generate(home: Path, customers: int) -> dict[str, Any]:
    """The big bank's contract tables and a synthetic top-3 recommendation per customer."""
    import numpy as np
    import pandas as pd

    from features.tables_io import replace_folder
    from samplebank.bank import generate_bank
    from training.cross_sell import RECOMMENDATIONS_FILE

    settings = _settings(home)
    started = time.perf_counter()
    bank = generate_bank(customers, seed=SEED)
    tables = {f"{name}.parquet": frame for name, frame in bank.tables.items()}
    replace_folder(settings.paths.contract_dir, tables)
    ids = bank.tables["customers"]["customer_id"].to_numpy()
    products = bank.tables["products"]["product_id"].to_numpy()
    del bank, tables
    rng = np.random.default_rng(SEED)
    picks = np.argsort(rng.random((len(ids), len(products))), axis=1)[:, :3]
    recommendations = pd.DataFrame(
        {
            "customer_id": np.repeat(ids, 3),
            "rank": np.tile(np.arange(1, 4), len(ids)),
            "product_id": products[picks.ravel()],
            "score": np.tile([0.3, 0.2, 0.1], len(ids)),
        }
    )
    folder = settings.paths.data_dir / "scores"
    folder.mkdir(parents=True, exist_ok=True)
    recommendations.to_parquet(folder / RECOMMENDATIONS_FILE, index=False)
    return {"generate_seconds": time.perf_counter() - started}


def stage_build(home: Path) -> dict[str, Any]:
    """The latest feature snapshot of every view."""
    from pipelines.features import build_features

    started = time.perf_counter()
    rows = build_features(_settings(home), last_n=1)
    return {"build_seconds": time.perf_counter() - started, "feature_rows": rows["rfm.parquet"]}


def stage_score(home: Path, chunk_rows: int) -> dict[str, Any]:
    """`write_batch_scores`, after the imports it needs (timed apart)."""
    started = time.perf_counter()
    for module in WARM_IMPORTS:
        importlib.import_module(module)
    from pipelines.scores import write_batch_scores

    imported = time.perf_counter()
    import_rss = rss_mb()
    run = write_batch_scores(_settings(home), chunk_rows)
    return {
        "import_seconds": imported - started,
        "import_rss_mb": import_rss,
        "score_seconds": time.perf_counter() - imported,
        "stages": run.seconds,
        "customers": run.customers,
        "with_clv": run.with_clv,
        "with_churn_probability": run.with_churn_probability,
        "tiers": run.tiers,
        "chunks": run.chunks,
        "models": run.models,
    }


def stage_materialize(home: Path) -> dict[str, Any]:
    """Register the scores view and load it into the SQLite online store."""
    import pandas as pd

    from features.catalog import TIMESTAMP_FIELD
    from features.store import apply_definitions, scores_table_path
    from pipelines.scores import materialize_scores

    settings = _settings(home)
    snapshot = pd.read_parquet(scores_table_path(settings), columns=[TIMESTAMP_FIELD])
    started = time.perf_counter()
    apply_definitions(settings)
    applied = time.perf_counter()
    materialize_scores(settings, pd.Timestamp(snapshot[TIMESTAMP_FIELD].max()))
    return {
        "apply_seconds": applied - started,
        "materialize_seconds": time.perf_counter() - applied,
    }


STAGES = {
    "models": lambda a: stage_models(a.home, a.train_customers),
    "generate": lambda a: stage_generate(a.home, a.customers),
    "build": lambda a: stage_build(a.home),
    "score": lambda a: stage_score(a.home, a.chunk_rows),
    "materialize": lambda a: stage_materialize(a.home),
}


def run_stage(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run one stage in a child process; return its figures and its peak memory."""
    command = [
        sys.executable, __file__, "--stage", name, "--home", str(args.home),
        "--customers", str(args.customers), "--train-customers", str(args.train_customers),
        "--chunk-rows", str(args.chunk_rows),
    ]  # fmt: skip
    print(f"[scoring benchmark] stage {name} ...", file=sys.stderr, flush=True)
    done = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


# ------------------------------------------------------------------------------------ the run
def prepare(args: argparse.Namespace) -> dict[str, Any]:
    """Build what is missing in the home (recorded in its marker file) and return its figures."""
    marker = args.home / MARKER
    recorded = json.loads(marker.read_text()) if marker.is_file() else {}
    wanted = {"customers": args.customers, "train_customers": args.train_customers, "seed": SEED}
    if any(recorded.get(k) != v for k, v in wanted.items()):
        recorded = dict(wanted)
    args.home.mkdir(parents=True, exist_ok=True)
    for name, key in (("models", "train"), ("generate", "generate"), ("build", "build")):
        if f"{key}_seconds" not in recorded:
            figures = run_stage(name, args)
            recorded.update(figures)
            recorded[f"{key}_peak_rss_mb"] = figures.pop("peak_rss_mb", None)
            recorded.pop("peak_rss_mb", None)
            marker.write_text(json.dumps(recorded, indent=2))
    return recorded


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Prepare (or reuse) the home, score it, optionally materialize; the figures."""
    prepared = prepare(args)
    score = run_stage("score", args)
    scored = int(score["customers"])
    seconds = float(score["score_seconds"])
    result: dict[str, Any] = {
        "benchmark": "scoring",
        "customers": args.customers,
        "customers_scored": scored,
        "seconds": round(seconds, 1),
        "seconds_1m": round(seconds * 1_000_000 / args.customers, 1),
        "seconds_1m_extrapolated": args.customers != 1_000_000,
        "seconds_1m_measures": (
            "scoring to Parquet: model loading, latest-snapshot features, one pass over the "
            "transactions, CLV, tiers, churn and segments per chunk, write and swap; Python "
            "imports (import_seconds) and the online store (materialize_seconds) apart"
        ),
        "rows_per_s": round(scored / seconds),
        "rows_per_s_measures": "customers scored (open at the latest snapshot) per second",
        "peak_rss_mb": round(score["peak_rss_mb"]),
        "import_rss_mb": round(score["import_rss_mb"]),
        "import_seconds": round(score["import_seconds"], 1),
        "stage_seconds": {k: round(v, 2) for k, v in score["stages"].items()},
        "chunk_rows": args.chunk_rows,
        "chunks": score["chunks"],
        "with_clv": score["with_clv"],
        "with_churn_probability": score["with_churn_probability"],
        "tiers": score["tiers"],
        "models": score["models"],
        "transactions": _rows(args.home / "data" / "contract" / "transactions.parquet"),
        "prepare": {
            k: round(v, 1) if isinstance(v, float) else v
            for k, v in prepared.items()
            if k.endswith(("_seconds", "_rss_mb")) or k == "feature_rows"
        },
    }
    if args.materialize:
        online = run_stage("materialize", args)
        result["apply_seconds"] = round(online["apply_seconds"], 1)
        result["materialize_seconds"] = round(online["materialize_seconds"], 1)
        result["materialize_rows_per_s"] = round(scored / online["materialize_seconds"])
        result["materialize_peak_rss_mb"] = round(online["peak_rss_mb"])
    return result


def _rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)


def main() -> None:
    """Parse arguments; either run one stage (child) or the whole benchmark (parent)."""
    # Run as a script, this folder comes first on sys.path and this file would shadow the
    # packages it measures.
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--home", type=Path, help="prepared home to reuse (created if missing)")
    parser.add_argument("--train-customers", type=int, default=5_000)
    parser.add_argument("--chunk-rows", type=int, default=100_000)
    parser.add_argument("--materialize", action="store_true", help="also time the online store")
    parser.add_argument("--stage", choices=sorted(STAGES))
    args = parser.parse_args()
    args.home = (args.home or Path(f"/tmp/loyal-bench-scoring-{args.customers}")).resolve()
    if args.stage:
        from loyal.logs import setup_logging

        setup_logging("INFO")
        logging.getLogger("training").setLevel(logging.WARNING)
        figures = STAGES[args.stage](args)
        print(json.dumps({**figures, "peak_rss_mb": peak_rss_mb()}))
        return
    print(json.dumps(benchmark(args)))


if __name__ == "__main__":
    main()
