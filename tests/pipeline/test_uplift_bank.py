"""The uplift model on the sample bank's past campaigns: trained, gated, and ranking the list.

One private copy of the scored bank (2,000 customers): `loyal train uplift` learns from the
three simulated campaigns and logs its Qini curves against the two-model baseline. On so small
a bank its holdout Qini AUC is not surely above 0, so the one promotion path refuses it (with
the reason) and `loyal churn-list` keeps ranking by expected loss; promoted by force, the list
then ranks by expected saved value by default.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_retrain import private_copy

import mlflow
from campaigns.churn_list import build_churn_list
from campaigns.list_campaigns import ControlOptions
from loyal.settings import Settings
from training.models_admin import promote_model, train_model

pytestmark = pytest.mark.pipeline


def test_uplift_trains_promotes_and_ranks_the_list_by_saved_value(
    scored_bank_home: Settings, tmp_path: Path
) -> None:
    settings = private_copy(scored_bank_home, tmp_path / "home")
    trained = train_model(settings, "uplift")
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
