"""Memory of what CLV and cross-sell fit on, per million customers; one JSON line.

Why ALS and CLV stay single-node: their fitted inputs are per-customer summaries, small next
to the transaction log they are computed from. On a loaded home (`LOYAL_HOME` or `--home`):

* `als_matrix_mb_per_million`: the cross-sell user-item matrix (CSR: data, indices, indptr);
* `als_factors_mb_per_million`: ALS user factors (float32) at each searched factor count;
* `clv_summary_mb_per_million`: CLV's customer summary (frequency, recency, T, spend, ...);
* `transactions_mb_per_million`: the transaction log as pandas holds it (what every model reads).

    .venv/bin/python benchmarks/training_sizes.py --home /tmp/loyal-bench-scale-100000
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

MB = 2**20


def measure(home: Path | None) -> dict[str, Any]:
    """The sizes on the bank in `home` (None: the configured home)."""
    from features.clv_inputs import with_margins
    from features.tables_io import read_contract
    from loyal.settings import load_settings
    from training.clv import INPUT_TABLES, clv_settings, customer_summary, observation_end
    from training.cross_sell import SearchSpace, build_interactions

    settings = load_settings(home=home) if home else load_settings()
    tables = read_contract(settings, only=INPUT_TABLES)
    transactions = tables["transactions"]
    matrix = build_interactions(transactions).matrix
    customers = matrix.shape[0]
    per_million = 1e6 / customers / MB
    als = matrix.data.nbytes + matrix.indices.nbytes + matrix.indptr.nbytes
    priced, _ = with_margins(transactions, tables.get("products"))
    config = clv_settings(settings)
    summary = customer_summary(priced, observation_end(settings, priced), config)
    return {
        "customers": customers,
        "products": matrix.shape[1],
        "transactions": len(transactions),
        "transactions_mb_per_million": round(
            transactions.memory_usage(deep=True).sum() * per_million
        ),
        "als_matrix_mb_per_million": round(als * per_million, 1),
        "als_factors_mb_per_million": {
            str(k): round(1e6 * k * 4 / MB, 1) for k in SearchSpace().factors
        },
        "clv_summary_mb_per_million": round(
            summary.memory_usage(deep=True).sum() * 1e6 / len(summary) / MB, 1
        ),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=None)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.home)))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
