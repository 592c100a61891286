"""The acceptance model: skipped on an empty log, trained from answers, registered, promoted by OPE.

A decision log with a known acceptance truth (the catalog's prior is right on average, wrong per
segment) in a fresh home: `train` says why it skips while the log is empty, then fits on the
earlier answers, judges its policy by doubly robust OPE on the later ones, registers a version;
promotion takes it, and the served champion's P(accept) carries its evidence.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from decisions.record import log_target
from loyal.errors import StepSkippedError
from loyal.settings import Settings
from tests.unit.test_policy_evaluation import NOW, logged

pytestmark = pytest.mark.pipeline


def test_acceptance_skips_on_an_empty_log_then_learns_registers_and_serves(
    settings: Settings,
) -> None:
    from inference.champions import MlflowChampions, load_champions
    from training.acceptance import train
    from training.models_admin import list_versions, promote_model

    with pytest.raises(StepSkippedError, match="catalog's p_accept keeps serving"):
        train(settings, now=NOW)
    logged(log_target(settings), 6000, share=0.3)  # type: ignore[arg-type]
    result = train(settings, now=NOW + timedelta(days=30))
    assert result.model_version is not None
    assert result.holdout["ope_dr_low"] > result.holdout["logged_value"]  # learning pays
    decision = promote_model(settings, "acceptance")
    assert decision.promoted and decision.outcome == "first"
    (row,) = list_versions(settings, ["acceptance"])
    assert row.champion
    source = MlflowChampions(settings.mlflow.tracking_uri, settings.paths.runtime_dir / "models")
    model = load_champions(source, ["acceptance"])["acceptance"].obj
    p, evidence = model.for_customer({"a": 0.2, "b": 0.15}, "web", 1)["b"]
    assert p > 0.2 and "accepted overall" in evidence  # segment 1 prefers b
