"""Any business end to end: run the whole flow in a fresh home, as a new user would.

Shared by pipeline tests (through the fixtures in `tests/conftest.py`) and by service tests
that need a scored home of real, non-bank data (`scored_retail_home`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from loyal.errors import StepSkippedError
from loyal.settings import Settings, get_settings

RETAIL_SAMPLE_EVERY = 4
"""Online Retail sample for the business flows: every 4th customer id (about 1,100 of 4,372)."""
FLOW_CHURN_TRIALS = 2
FLOW_CROSS_SELL_TRIALS = 2


@dataclass
class BusinessHome:
    """A fresh home that went through the whole flow on one business's data.

    Attributes:
        settings: the home (its own data, Feast store and MLflow).
        steps: step name -> "ok" or "skipped: <reason>", in the order run.
        results: step name -> what the step's plain function returned.
    """

    settings: Settings
    steps: dict[str, str] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)

    def run(self, name: str, step: Callable[[], Any], after: str | None = None) -> None:
        """Run a step; a `StepSkippedError` is recorded with its reason, as the CLI prints it.

        With `after`, the step is skipped (with that step's reason) when `after` was skipped.
        """
        if after is not None and self.steps.get(after, "").startswith("skipped"):
            self.steps[name] = self.steps[after]
            return
        try:
            self.results[name] = step()
        except StepSkippedError as skipped:
            self.steps[name] = f"skipped: {skipped}"
        else:
            self.steps[name] = "ok"


def run_business_flow(settings: Settings, data: Path, preset: str | None) -> BusinessHome:
    """Ingest, features, train and promote every applicable model, score, churn list, report.

    The CLI's plain functions, in the order a new user runs them (small search budgets). A
    model the data cannot support is skipped with its reason, and so is its promotion.
    """
    from pipelines.commands.churn import promote_churn, train_churn
    from pipelines.commands.cross_sell import promote_cross_sell, train_cross_sell_command
    from pipelines.commands.lists import churn_list
    from pipelines.commands.report import report
    from pipelines.commands.value import promote_clv, promote_segments, train_clv, train_segments
    from pipelines.features import apply_features, build_features, materialize_features
    from pipelines.ingest import ingest_folder
    from pipelines.scores import publish_scores

    home = BusinessHome(settings)
    home.run("ingest", lambda: ingest_folder(settings, data, preset=preset))
    home.run("features build", lambda: build_features(settings))
    home.run("features apply", lambda: apply_features(settings))
    home.run("features materialize", lambda: materialize_features(settings))
    home.run(
        "train churn",
        lambda: train_churn(settings, search_trials=FLOW_CHURN_TRIALS, search_timeout=60.0),
    )
    home.run("promote churn", lambda: promote_churn(settings), after="train churn")
    home.run(
        "train cross-sell",
        lambda: train_cross_sell_command(settings, trials=FLOW_CROSS_SELL_TRIALS),
    )
    home.run("promote cross-sell", lambda: promote_cross_sell(settings), after="train cross-sell")
    home.run("train clv", lambda: train_clv(settings))
    home.run("promote clv", lambda: promote_clv(settings), after="train clv")
    home.run("train segments", lambda: train_segments(settings))
    home.run("promote segments", lambda: promote_segments(settings), after="train segments")
    home.run("score", lambda: publish_scores(settings))
    home.run("churn list", lambda: churn_list(settings, settings.home / "reports" / "calls.csv"))
    home.run("report", lambda: report(settings))
    return home


def write_retail_sample(source: Path, folder: Path, every: int = RETAIL_SAMPLE_EVERY) -> Path:
    """Every `every`-th customer of UCI Online Retail, all their rows, in the source's format.

    The preset reads the copy exactly as it reads the original (same file name and columns).
    """
    raw = pd.read_csv(source, dtype={"InvoiceNo": str, "StockCode": str})
    ids = np.sort(raw["CustomerID"].dropna().unique())
    kept = raw[raw["CustomerID"].isin(ids[::every])]
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / source.name
    kept.to_csv(target, index=False, compression="gzip")
    return folder


@contextmanager
def no_loyal_environment() -> Iterator[None]:
    """No LOYAL_ variable of the developer's shell leaks into a home's settings."""
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("LOYAL_"):
                patch.delenv(name)
        get_settings.cache_clear()
        yield


CDNOW_HOLDOUT_WEEKS = 39
"""The CDNOW papers' holdout (1997-10-01..1998-06-30), so the flow's CLV error compares with
`benchmarks/clv.py`."""
