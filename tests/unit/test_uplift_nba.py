"""NBA retention offers valued by the uplift champion (uplift x CLV) when one is served."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from inference.champions import LoadedModel
from loyal.settings import ServingSettings
from models.offers import load_catalog
from models.pyfuncs.uplift import UpliftScorer
from serving.feedback import FeedbackStore
from serving.runtime import Runtime
from serving.schemas import NextBestActionRequest
from tests.unit.test_control_groups import Reader, row

pytestmark = pytest.mark.unit

NOW = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)


class FakeUplift:
    """A fitted uplift model whose estimate is the complaints column x a fixed effect."""

    def __init__(self, per_complaint: float) -> None:
        self.per_complaint = per_complaint

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        return matrix[:, 0] * self.per_complaint


def service(tmp_path: Path, per_complaint: float | None) -> Runtime:
    models: dict[str, LoadedModel] = {}
    if per_complaint is not None:
        scorer = UpliftScorer(FakeUplift(per_complaint), ["complaints_90d"], {})  # type: ignore[arg-type]
        models["uplift"] = LoadedModel("uplift", scorer, "1", "test")
    return Runtime(
        load_catalog(),
        models,
        lambda: Reader({"C1": row()}),
        FeedbackStore(tmp_path / "feedback.db"),
        ServingSettings(),
        clock=lambda: NOW,
    )


def best(runtime: Runtime) -> Any:
    answer = runtime.next_best_action(NextBestActionRequest(customer_id="C1", channel="branch"))
    return answer.actions[0] if answer.actions else None


def test_without_an_uplift_champion_retention_follows_churn_risk(tmp_path: Path) -> None:
    action = best(service(tmp_path, None))
    assert action.kind == "retention" and action.action_id != "retention_check_in"
    assert not any("uplift model" in r for r in action.reasons)


def test_uplift_champion_values_retention_as_uplift_times_clv(tmp_path: Path) -> None:
    action = best(service(tmp_path, 0.04))  # 3 complaints: +12 points of staying
    assert action.action_id == "retention_check_in"
    assert action.expected_value == pytest.approx(0.12 * 2400.0 * 1.0 - 8.0)
    assert any("uplift model" in r and "+12.0%" in r for r in action.reasons)


def test_negative_uplift_means_no_retention_contact(tmp_path: Path) -> None:
    action = best(service(tmp_path, -0.01))
    assert action is None or action.kind != "retention"


def test_configured_uplift_without_a_champion_answers_as_before(tmp_path: Path) -> None:
    before = service(tmp_path / "before", None)
    after = service(tmp_path / "after", None)
    after.models["uplift"] = LoadedModel("uplift", None, None, None, "no uplift@champion")
    request = NextBestActionRequest(customer_id="C1", channel="branch", explain=True)
    answers = [r.next_best_action(request).model_dump() for r in (before, after)]
    for answer in answers:
        answer.pop("decision_id")
    assert answers[0] == answers[1]
    assert "uplift" not in answers[1]["model_versions"]
    assert not any("uplift" in reason for reason in answers[1]["degraded_reasons"])
    status = after.status()
    assert status.fallbacks == [
        "uplift: no uplift champion: retention offers valued by churn risk x CLV x save rate"
    ]
    assert not any("uplift" in reason for reason in status.degraded_reasons)
    assert after.ready() == before.ready()


def test_the_serving_row_reads_features_as_the_batch_matrix() -> None:
    scorer = UpliftScorer(
        FakeUplift(1.0),  # type: ignore[arg-type]
        ["complaints_90d", "state", "holds_savings", "absent"],
        {"state": ["active", "at_risk", "lapsed"]},
    )
    rows = [
        {"complaints_90d": 2, "state": "at_risk", "holds_savings": True},
        {"complaints_90d": None, "state": "unheard-of", "holds_savings": False},
        {"complaints_90d": "3", "state": None, "holds_savings": "n/a"},
        {"complaints_90d": float("nan")},
    ]
    for features in rows:
        batch = scorer.matrix(pd.DataFrame([features]))
        np.testing.assert_array_equal(scorer.row(features), batch)
