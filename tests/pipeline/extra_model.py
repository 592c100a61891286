"""A small extra model for the registry test: P(active) from a customer's purchase count.

Everything a model needs beside its spec: `train` (fit, log, register through
`training.tracking`), the pyfunc (this file is also its models-from-code entry point), the
champion loader the service and batch scoring use, and the batch scorer. Nothing else in the
repository knows it.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow.models
import pandas as pd
from mlflow.pyfunc import PythonModel

NAME = "activity"
ARTIFACT = "activity_model"
WINDOW_DAYS = 90


class ActivityPyfunc(PythonModel):
    """`purchases` in; `p_active` out: purchases / (purchases + prior)."""

    def load_context(self, context: Any) -> None:
        """Read the prior from the JSON artifact."""
        payload = json.loads(Path(context.artifacts[ARTIFACT]).read_text(encoding="utf-8"))
        self.prior = float(payload["prior"])

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """P(active) of each row."""
        purchases = pd.DataFrame(model_input)["purchases"].astype(float).reset_index(drop=True)
        return pd.DataFrame({"p_active": purchases / (purchases + self.prior)})


mlflow.models.set_model(ActivityPyfunc())


@dataclass(frozen=True)
class ActivityModel:
    """The served and batch-scored object: P(active) per customer id."""

    prior: float
    purchases: dict[str, float]

    def probability(self, customer_id: str) -> float:
        """P(active) of one customer (0 purchases: 0)."""
        n = self.purchases.get(customer_id, 0.0)
        return n / (n + self.prior)

    def scores(self, customer_id: str, features: Any) -> dict[str, Any]:
        """The spec's score fields of one customer (the service's protocol)."""
        return {"p_active": self.probability(customer_id)}


@dataclass(frozen=True)
class ActivityResult:
    """What `train` returns."""

    run_id: str
    model_version: str
    prior: float


def _counts(transactions: pd.DataFrame, end: pd.Timestamp) -> pd.Series:
    seen = transactions[transactions["ts"] < end]
    return seen.groupby("customer_id")["ts"].count().astype(float)


def train(settings: Any, register: bool = True) -> ActivityResult:
    """Fit the prior on a time split, log the run, its holdout and the pyfunc; register it."""
    from features.tables_io import read_contract
    from training import tracking

    transactions = read_contract(settings, only=["transactions"])["transactions"]
    end = pd.Timestamp(transactions["ts"].max())
    cutoff = end - pd.Timedelta(days=WINDOW_DAYS)
    before = _counts(transactions, cutoff)
    active = set(transactions.loc[transactions["ts"] >= cutoff, "customer_id"])
    holdout = pd.DataFrame(
        {"purchases": before.to_numpy(), "active": [c in active for c in before.index]}
    ).astype({"active": int})
    prior = float(before.median())
    counts = _counts(transactions, end + pd.Timedelta(seconds=1))
    with tracking.start_run(settings, NAME, tracking.frame_snapshot_id(holdout)) as run:
        with tempfile.TemporaryDirectory() as tmp:
            state = Path(tmp) / f"{ARTIFACT}.json"
            payload = {"prior": prior, "purchases": counts.to_dict()}
            state.write_text(json.dumps(payload), encoding="utf-8")
            info = tracking.log_pyfunc(
                "extra_model", {ARTIFACT: state}, None, holdout[["purchases"]].head(3), []
            )
        tracking.log_holdout(holdout, "active", "p_active")
        version = tracking.register(settings, str(info.model_uri), NAME, run.info.run_id)
    return ActivityResult(run.info.run_id, str(version.version), prior)


def load(artifact: Any) -> ActivityModel:
    """The champion loader: the JSON artifact as an `ActivityModel`."""
    payload = json.loads(artifact.artifact(ARTIFACT).read_text(encoding="utf-8"))
    return ActivityModel(float(payload["prior"]), dict(payload["purchases"]))


def batch(model: ActivityModel, customer_ids: list[str]) -> pd.DataFrame:
    """The batch scorer: one row per customer with `p_active`."""
    return pd.DataFrame(
        {"customer_id": customer_ids, "p_active": [model.probability(c) for c in customer_ids]}
    )
