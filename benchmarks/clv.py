"""CLV benchmark: holdout repeat-purchase errors on CDNOW and UCI Online Retail, one JSON line."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import pandas as pd

from models.clv import ClvModel
from training.clv_data import cdnow_split, holdout_metrics, retail_split

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def evaluate(split: pd.DataFrame, prefix: str) -> dict[str, Any]:
    """Fit a default ClvModel on the calibration columns and score the holdout."""
    started = time.perf_counter()
    model = ClvModel().fit(split)
    fit_seconds = time.perf_counter() - started
    predicted = model.expected_purchases(split, split["duration_holdout"].to_numpy())
    metrics: dict[str, Any] = dict(holdout_metrics(split, predicted))
    metrics["customers"] = int(metrics["customers"])
    metrics["fit_seconds"] = fit_seconds
    metrics["penalizer"] = model.penalizer_
    metrics["params"] = {k: round(v, 6) for k, v in model.params_.items()}
    return {
        f"{prefix}_{k}": (round(v, 4) if isinstance(v, float) else v) for k, v in metrics.items()
    }


def main() -> None:
    """Run both data sets and print one JSON line.

    CDNOW: the 2,357-customer sample log, calibration 1997-01-01..1997-09-30, 39-week holdout.
    Online Retail: calibration up to 2011-09-09, 13-week holdout from 2011-09-10. Both count
    one purchase per customer and day and measure time in weeks. The naive baseline forecasts
    each customer's calibration rate (frequency / T) times the holdout length.
    Usage: ``.venv/bin/python benchmarks/clv.py [--data ../shared/data]``.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    args = parser.parse_args()
    result = {**evaluate(cdnow_split(args.data), "cdnow")}
    result.update(evaluate(retail_split(args.data), "retail"))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
