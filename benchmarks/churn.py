"""Benchmark churn: evaluate at 10k rows, Telco CV, training at 100k rows, latency; one JSON line.

Evaluate: `loyal churn evaluate` with its default search budget on a 10,000-row, 20-column
synthetic table written to CSV (`evaluate_10k_seconds`, the whole command: reading, search
in each of 5 folds, both baselines), with its ROC-AUC and the baselines'. Telco: the same
protocol (stratified 5-fold, shuffled, seed 42). Speed: the synthetic bank-like table
(numeric and categorical features, churn driven by a few of them with one interaction, true
probabilities known), `ChurnModel` with its constructor's settings (5 cross-fitted boosters,
Platt or isotonic calibration), scored on 10,000 fresh rows in bulk and row by row through the
fast path (`score_one`, a dict to a float row to `inplace_predict`).

    .venv/bin/python benchmarks/churn.py [--rows 100000] [--n-jobs 1] [--search-trials 0]
        [--skip-telco] [--skip-evaluate]
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.churn import ChurnModel
from models.metrics import binary_metrics
from training.churn import evaluate_table

TELCO = (
    Path(__file__).resolve().parents[2]
    / "shared/data/telco_customer_churn/WA_Fn-UseC_-Telco-Customer-Churn.csv"
)
REGIONS = ["north", "south", "east", "west", "capital"]
SEGMENTS = ["mass", "affluent", "student", "senior", "small_business", "private"]


def synthetic_customers(n: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """A bank-like churn table: features, a 0/1 label and the true churn probability."""
    rng = np.random.default_rng(seed)
    tenure = rng.gamma(2.0, 24.0, n)
    frame = pd.DataFrame(
        {
            "tenure_months": tenure,
            "age": rng.integers(18, 90, n).astype(float),
            "balance": rng.lognormal(8.0, 1.2, n),
            "spend_90d": rng.lognormal(6.0, 1.0, n),
            "spend_trend": np.clip(rng.normal(0.0, 0.4, n), -1.0, 5.0),
            "complaints_90d": rng.poisson(0.3, n).astype(float),
            "calls_90d": rng.poisson(1.5, n).astype(float),
            "logins_30d": rng.poisson(6.0, n).astype(float),
            "products_held": rng.integers(1, 8, n).astype(float),
            "days_since_last_txn": rng.exponential(15.0, n),
            "satisfaction": rng.choice([1.0, 2.0, 3.0, 4.0, 5.0, np.nan], n),
            "region": pd.Categorical(rng.choice(REGIONS, n)),
            "segment": pd.Categorical(rng.choice(SEGMENTS, n)),
            "consent_marketing": rng.random(n) < 0.6,
        }
    )
    for i in range(6):
        frame[f"noise_{i}"] = rng.normal(size=n)
    logit = (
        -2.6
        + 0.9 * frame["complaints_90d"]
        - 0.6 * np.log1p(frame["tenure_months"] / 12)
        - 1.2 * frame["spend_trend"]
        + 0.03 * frame["days_since_last_txn"]
        - 0.25 * (frame["products_held"] - 3)
        + 0.5 * (frame["segment"] == "student")
        + 0.6 * (frame["complaints_90d"] > 0) * (frame["satisfaction"].fillna(3) <= 2)
    )
    truth = 1.0 / (1.0 + np.exp(-logit.to_numpy()))
    return frame, (rng.random(n) < truth).astype(int), truth


def _headline(prefix: str, metrics: dict[str, float]) -> dict[str, float]:
    keys = ["roc_auc", "roc_auc_std", "brier", "ece", "lift_at_10"]
    keys += ["baseline_xgboost_roc_auc", "baseline_logistic_roc_auc"]
    return {f"{prefix}_{k}": round(metrics[k], 4) for k in keys}


def telco_cv() -> dict[str, Any]:
    """The `loyal churn evaluate` figures on Telco, with their wall time."""
    if not TELCO.is_file():
        return {"telco": "file not found"}
    started = time.perf_counter()
    result = evaluate_table(TELCO, "customerID", "Churn")
    return {
        **_headline("telco", result.metrics),
        "telco_chosen_depths": [c["max_depth"] for c in result.chosen],
        "telco_cv_seconds": round(time.perf_counter() - started, 1),
    }


def evaluate_10k() -> dict[str, Any]:
    """`churn evaluate` with the default budget on a 10,000-row, 20-column table, timed."""
    X, y, _ = synthetic_customers(10_000, seed=2)
    table = X.assign(customer_id=[f"C{i:05d}" for i in range(len(X))], churned=y)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "customers_10k.csv"
        table.to_csv(path, index=False)
        started = time.perf_counter()
        result = evaluate_table(path, "customer_id", "churned")
        seconds = time.perf_counter() - started
    return {
        "evaluate_10k_columns": X.shape[1],
        "evaluate_10k_seconds": round(seconds, 1),
        **_headline("evaluate_10k", result.metrics),
        "evaluate_10k_chosen_depths": [c["max_depth"] for c in result.chosen],
    }


def _per_call_ms(function: Any, calls: int) -> float:
    """Median wall time of one call in milliseconds."""
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return float(np.median(times) * 1e3)


def speed(rows: int, n_jobs: int, search_trials: int) -> dict[str, Any]:
    """Training time on `rows` synthetic customers and scoring latency of the fitted model."""
    X, y, _ = synthetic_customers(rows, seed=0)
    test_X, test_y, test_truth = synthetic_customers(10_000, seed=1)
    model = ChurnModel(n_jobs=n_jobs, search_trials=search_trials)
    started = time.perf_counter()
    model.fit(X, y)
    fit_seconds = time.perf_counter() - started
    records: list[dict[str, Any]] = [
        {str(k): v for k, v in r.items()} for r in test_X.head(1000).to_dict("records")
    ]
    single = iter(records * 3)
    one_frame = test_X.head(1)
    model.predict_proba(test_X)  # warm-up
    started = time.perf_counter()
    probability = model.predict_proba(test_X)[:, 1]
    batch_ms = (time.perf_counter() - started) * 1e3
    started = time.perf_counter()
    model.explain(test_X, top=3)
    explain_ms = (time.perf_counter() - started) * 1e3
    metrics = binary_metrics(test_y, probability)
    one_ms = _per_call_ms(lambda: model.score_one(next(single)), 1000)
    one_frame_ms = _per_call_ms(lambda: model.predict_proba(one_frame), 200)
    return {
        "train_rows": rows,
        "train_seconds": round(fit_seconds, 1),
        "train_n_jobs": n_jobs,
        "train_search_trials": search_trials,
        "boosters": len(model.boosters_),
        "rounds": model.n_rounds_,
        "calibration": model.calibrator_.method,
        "score_one_row_ms": round(one_ms, 3),
        "score_one_row_dataframe_ms": round(one_frame_ms, 3),
        "score_10k_rows_ms": round(batch_ms, 1),
        "explain_10k_rows_ms": round(explain_ms, 1),
        "synthetic_test_roc_auc": round(metrics["roc_auc"], 4),
        "synthetic_oracle_roc_auc": round(binary_metrics(test_y, test_truth)["roc_auc"], 4),
        "synthetic_test_ece": round(metrics["ece"], 4),
    }


def main() -> None:
    """Run the benchmark and print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="synthetic training rows")
    parser.add_argument("--n-jobs", type=int, default=1, help="XGBoost threads for training")
    parser.add_argument("--search-trials", type=int, default=0, help="Optuna trials in fit")
    parser.add_argument("--skip-telco", action="store_true", help="no Telco cross-validation")
    parser.add_argument(
        "--skip-evaluate", action="store_true", help="no timed 10,000-row churn evaluate"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    result: dict[str, Any] = {"benchmark": "churn"}
    if not args.skip_evaluate:
        result.update(evaluate_10k())
    if not args.skip_telco:
        result.update(telco_cv())
    result.update(speed(args.rows, args.n_jobs, args.search_trials))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
