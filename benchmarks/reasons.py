"""Churn reasons for one request: tabulated tree SHAP vs pred_contribs; prints one JSON line.

A synthetic 3,000-row table (numbers with gaps, a six-level category) is fitted at depths 1, 4
and 6 with a fixed number of rounds (no early stopping) and the service's bag of 5 boosters;
each depth reports the trees, the table cells, the start-up seconds to build the tables and
the microseconds per row of `FastChurn.contributions` (tables) and of `pred_contribs` on a
one-row DMatrix (the previous path), over the same 200 rows.

    .venv/bin/python benchmarks/reasons.py [--rounds 100]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)  # run as a script, this folder would shadow top-level packages

import numpy as np
import pandas as pd

from models.churn import ChurnModel
from serving.fastchurn import FastChurn

DEPTHS = (1, 4, 6)


def table(n: int = 3000, seed: int = 5) -> tuple[pd.DataFrame, np.ndarray]:
    """Churn-like features with gaps and a category; labels from a known logit."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "complaints_90d": np.where(rng.random(n) < 0.1, np.nan, rng.poisson(0.8, n)),
            "tenure_days": rng.integers(30, 4000, n).astype(float),
            "balance": np.where(rng.random(n) < 0.2, np.nan, rng.lognormal(7, 1, n)),
            "holds_savings": (rng.random(n) < 0.5).astype(float),
            "region": rng.choice(["north", "south", "east", "west", "capital", "isles"], n),
        }
    )
    complaints = frame["complaints_90d"].fillna(0)
    logit = -2.0 + 0.7 * complaints - frame["tenure_days"] / 3000
    logit += np.where(frame["region"].isin(["east", "isles"]), 0.6 * complaints, 0.0)
    return frame, (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)


def per_row_us(fn: Any, rows: list[np.ndarray]) -> float:
    """Mean microseconds of fn(row) over the rows."""
    started = time.perf_counter()
    for row in rows:
        fn(row)
    return round((time.perf_counter() - started) / len(rows) * 1e6, 1)


def measure(depth: int, rounds: int, X: pd.DataFrame, y: np.ndarray) -> dict[str, Any]:
    """Fit one depth and time both paths."""
    model = ChurnModel(
        max_depth=depth,
        max_rounds=rounds,
        early_stopping_rounds=10 * rounds,
        max_cat_to_onehot=2,
        min_child_weight=0.5,
    ).fit(X, y)
    started = time.perf_counter()
    fast = FastChurn(model)
    build = time.perf_counter() - started
    records = X.head(200).to_dict(orient="records")
    rows = [
        fast.encode(
            {str(k): None if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()}
        )
        for r in records
    ]
    return {
        "depth": depth,
        "trees": len(fast._trees.roots),
        "table_cells": fast._shap.cells if fast._shap else None,
        "build_seconds": round(build, 2),
        "tables_us_per_row": per_row_us(fast.contributions, rows),
        "pred_contribs_us_per_row": per_row_us(fast._xgboost_contributions, rows),
    }


def main() -> None:
    """Print one JSON line with every depth's figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100)
    options = parser.parse_args()
    X, y = table()
    print(json.dumps({"depths": [measure(d, options.rounds, X, y) for d in DEPTHS]}))


if __name__ == "__main__":
    main()
