"""Benchmark cross-sell: ALS vs popularity on Online Retail, speed at bank scale; one JSON line.

Online Retail protocol (issue 6): calibration to 2011-09-09, targets = products a customer first
buys in the 13 weeks after, customer x product purchase counts, metrics at 10 with held products
filtered. ALS settings come from a seeded search on a validation split carved from the
calibration period (``--no-search`` uses the AlsRecommender defaults instead).

With ``--synthetic-customers N`` it also times training and top-10 scoring on a synthetic
bank-like holdings matrix (N customers x 10 products) built here, with the AlsRecommender
defaults. Speed only: a random leave-one-out on so small and dense a catalog mostly hides the
near-universal checking account, which favours popularity and says little about cross-sell.

    .venv/bin/python benchmarks/cross_sell.py [--synthetic-customers 100000]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from models.recommender import AlsRecommender, Recommender
from training.cross_sell import (
    CrossSellConfig,
    batch_recommendations,
    evaluate_cross_sell,
    read_online_retail,
)

DEFAULT_DATA = (
    Path(__file__).resolve().parents[2] / "shared/data/online_retail/online_retail.csv.gz"
)
METRICS = ("precision_at_10", "recall_at_10", "ndcg_at_10", "map_at_10")

BANK_PRODUCTS = [
    "checking",
    "savings",
    "credit_card",
    "premium_card",
    "mortgage",
    "home_insurance",
    "auto_loan",
    "personal_loan",
    "brokerage",
    "life_insurance",
]
# Holding probability of each product (columns above) in five latent customer groups.
BANK_PROPENSITY = np.array(
    [
        [0.95, 0.30, 0.40, 0.02, 0.01, 0.01, 0.05, 0.20, 0.05, 0.02],  # students, starters
        [0.95, 0.60, 0.70, 0.15, 0.10, 0.08, 0.30, 0.25, 0.20, 0.10],  # young professionals
        [0.97, 0.55, 0.60, 0.10, 0.65, 0.55, 0.45, 0.20, 0.10, 0.45],  # families
        [0.98, 0.85, 0.50, 0.60, 0.40, 0.35, 0.15, 0.05, 0.75, 0.40],  # affluent
        [0.96, 0.80, 0.25, 0.10, 0.05, 0.30, 0.05, 0.02, 0.30, 0.35],  # retirees
    ]
)
BANK_GROUP_SHARES = np.array([0.20, 0.25, 0.30, 0.10, 0.15])


def online_retail(data: Path, search: bool, n_trials: int, seed: int) -> dict[str, Any]:
    """ALS and popularity metrics under the issue's protocol, plus what was chosen."""
    transactions = read_online_retail(data)
    config = CrossSellConfig(
        cutoff="2011-09-09", window_days=91, search=search, n_trials=n_trials, seed=seed
    )
    result = evaluate_cross_sell(transactions, config)
    figures: dict[str, Any] = {
        name: round(result.metrics[name], 4)
        for prefix in ("", "popularity_")
        for name in (f"{prefix}{m}" for m in METRICS)
    }
    figures["customers_evaluated"] = int(result.metrics["n_customers"])
    figures["als_params"] = result.params
    if result.search is not None:
        figures["selected_by"] = (
            f"validation {result.search.metric}, targets from "
            f"{result.search.validation_cutoff.date()} to 2011-09-09"
        )
        figures["validation_" + result.search.metric] = round(
            result.search.best_metrics[result.search.metric], 4
        )
    figures["retail_seconds"] = round(result.seconds, 1)
    return figures


def synthetic_bank(customers: int, seed: int) -> sp.csr_matrix:
    """Purchase counts of ``customers`` x 10 bank products drawn from five latent groups."""
    rng = np.random.default_rng(seed)
    groups = rng.choice(len(BANK_GROUP_SHARES), size=customers, p=BANK_GROUP_SHARES)
    holds = rng.random((customers, len(BANK_PRODUCTS))) < BANK_PROPENSITY[groups]
    counts = (rng.poisson(3.0, size=holds.shape) + 1) * holds
    return sp.csr_matrix(counts.astype(np.float32))


def bank_scale(customers: int, seed: int, factors: int) -> dict[str, Any]:
    """Training time and top-10 latency on the synthetic bank."""
    matrix = synthetic_bank(customers, seed)
    user_ids = [f"C{i:07d}" for i in range(customers)]
    model = AlsRecommender(factors=factors)
    started = time.perf_counter()
    model.fit(matrix, user_ids, BANK_PRODUCTS)
    train_seconds = time.perf_counter() - started
    return {
        "synthetic_customers": customers,
        "synthetic_products": len(BANK_PRODUCTS),
        "synthetic_holdings": int(matrix.nnz),
        "synthetic_als_params": {k: v for k, v in model.get_params().items() if k != "use_gpu"},
        "train_seconds": round(train_seconds, 2),
        **_latency(model, user_ids, seed),
    }


def _latency(model: Recommender, user_ids: list[str], seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    sample = rng.choice(user_ids, size=min(2000, len(user_ids)), replace=False).tolist()
    for user in sample[:50]:  # warm-up
        model.recommend(user, k=10)
    timings = []
    for user in sample:
        started = time.perf_counter()
        model.recommend(user, k=10)
        timings.append(time.perf_counter() - started)
    started = time.perf_counter()
    model.recommend_all(k=10)
    all_arrays = time.perf_counter() - started
    started = time.perf_counter()
    batch_recommendations(model, k=10)
    all_frame = time.perf_counter() - started
    return {
        "top10_one_customer_ms_median": round(1000 * float(np.median(timings)), 3),
        "top10_one_customer_ms_p99": round(1000 * float(np.percentile(timings, 99)), 3),
        "top10_all_customers_seconds": round(all_arrays, 3),
        "top10_all_customers_frame_seconds": round(all_frame, 3),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse arguments, run the benchmark, print and return the JSON line's contents."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="online_retail.csv.gz")
    parser.add_argument("--no-search", action="store_true", help="skip the validation search")
    parser.add_argument("--trials", type=int, default=12, help="search trials")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--synthetic-customers", type=int, default=0, help="also time a synthetic bank this big"
    )
    parser.add_argument(
        "--synthetic-factors", type=int, default=64, help="ALS factors on the synthetic bank"
    )
    args = parser.parse_args(argv)
    result = online_retail(args.data, not args.no_search, args.trials, args.seed)
    if args.synthetic_customers > 0:
        result.update(bank_scale(args.synthetic_customers, args.seed, args.synthetic_factors))
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
