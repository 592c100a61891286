"""The uplift model on the sample bank's past campaigns: trained, gated, and ranking the list.

One private copy of the scored bank (2,000 customers): `loyal train uplift` learns from the
three simulated campaigns and logs its Qini curves against the two-model baseline. On so small
a bank its holdout Qini AUC is not surely above 0, so the one promotion path refuses it (with
the reason) and `loyal churn-list` keeps ranking by expected loss; promoted by force, the list
then ranks by expected saved value by default. The service's compiled trees (`FastUplift`)
give the pyfunc's estimates on the holdout's real rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from test_retrain import private_copy

import mlflow
from campaigns.churn_list import build_churn_list
from campaigns.list_campaigns import ControlOptions
from inference.champions import ModelArtifact
from loyal.settings import Settings
from serving.champions import load_uplift
from training import tracking
from training.models_admin import promote_model, train_model

pytestmark = pytest.mark.pipeline


@dataclass(frozen=True)
class Trained:
    settings: Settings
    result: Any


@pytest.fixture(scope="module")
def trained_uplift(scored_bank_home: Settings, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """`loyal train uplift` on a private copy of the scored bank (no promotion yet)."""
    settings = private_copy(scored_bank_home, tmp_path_factory.mktemp("uplift") / "home")
    return Trained(settings, train_model(settings, "uplift"))


def test_uplift_is_refused_then_forced_in_and_ranks_the_list_by_saved_value(
    trained_uplift: Trained, tmp_path: Path
) -> None:
    settings, trained = trained_uplift.settings, trained_uplift.result
    metrics = trained.metrics
    for name in ("qini_auc", "qini_auc_two_model_baseline", "uplift_at_30"):
        assert np.isfinite(metrics[name]), name
    run = mlflow.MlflowClient(settings.mlflow.tracking_uri).get_run(trained.run_id)
    artifacts = [a.path for a in mlflow.MlflowClient().list_artifacts(trained.run_id, "plots")]
    assert "plots/qini_curve.png" in artifacts
    assert run.data.metrics["qini_auc"] == pytest.approx(metrics["qini_auc"])
    assert metrics["qini_auc_low"] <= 0 and metrics["promotable"] == 0
    decision = promote_model(settings, "uplift", trained.model_version)
    assert decision.outcome == "refused" and not decision.promoted
    assert "not surely above 0" in decision.reason and "refused" in decision.summary()
    unranked = build_churn_list(
        settings, tmp_path / "risk.csv", control=ControlOptions(record=False)
    )
    assert unranked.meta["ranking"].startswith("expected_loss")
    assert "uplift" not in unranked.meta["models"]

    forced = promote_model(settings, "uplift", force=True, reason="test the saved-value list")
    assert forced.promoted  # by force, the refusal overridden with a reason
    out = tmp_path / "calls.csv"
    result = build_churn_list(settings, out, control=ControlOptions(record=False))
    listed = pd.read_csv(out)
    assert result.meta["ranking"].startswith("saved_value = uplift x max(clv, 0)")
    assert result.meta["models"]["uplift"]["version"] == trained.model_version
    assert listed["saved_value"].is_monotonic_decreasing
    cost = result.meta["models"]["uplift"]["contact_cost"]
    expected = (listed["uplift"] * listed["clv"].clip(lower=0) - cost).round(2)
    assert np.allclose(listed["saved_value"], expected, atol=0.02 + 1e-4 * listed["clv"].abs())


def test_the_compiled_trees_give_the_pyfunc_estimates_on_real_rows(
    trained_uplift: Trained, tmp_path: Path
) -> None:
    settings, trained = trained_uplift.settings, trained_uplift.result
    uri = f"models:/uplift/{trained.model_version}"
    mlflow.set_tracking_uri(settings.mlflow.tracking_uri)
    folder = Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(tmp_path)))
    fast = load_uplift(ModelArtifact("uplift", trained.model_version, folder, "test"))
    holdout, meta = tracking.load_holdout(trained.run_id)
    inputs = holdout.drop(columns=[meta["label"], *meta["exclude"]], errors="ignore")
    reference = mlflow.pyfunc.load_model(uri).predict(inputs)["uplift"].to_numpy()
    rows = inputs.astype(object).where(inputs.notna(), None).to_dict("records")
    served = np.array([fast.scores("c", row)["uplift"] for row in rows])
    assert len(rows) > 100 and inputs.isna().any().any()  # real rows, missing values included
    assert np.ptp(reference) > 0.01  # estimates that differ between customers
    np.testing.assert_allclose(served, reference, rtol=0, atol=1e-6)


@pytest.mark.parametrize("definition", ["closure", "inactivity"])
def test_campaign_outcomes_read_only_the_columns_they_need(
    feature_bank: Settings, definition: str
) -> None:
    from features.labels import churn_labels
    from features.tables_io import read_contract
    from training.uplift import outcome_tables

    snapshots = feature_bank.snapshots.model_copy(update={"churn_definition": definition})
    settings = feature_bank.model_copy(update={"snapshots": snapshots})
    whole, narrow = read_contract(settings), outcome_tables(settings)
    dates = pd.to_datetime(whole["campaigns"]["ts"]).unique()
    pd.testing.assert_frame_equal(
        churn_labels(narrow, dates, snapshots.horizon_days, definition),
        churn_labels(whole, dates, snapshots.horizon_days, definition),
    )
    pd.testing.assert_frame_equal(narrow["campaigns"], whole["campaigns"])
    purchases = {"ts", "customer_id", "amount"} if definition == "inactivity" else {"ts"}
    assert set(narrow["transactions"].columns) == purchases
    assert set(narrow["customers"].columns) <= {"customer_id", "signup_date", "closed_at"}
