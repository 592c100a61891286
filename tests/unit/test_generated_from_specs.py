"""The scores view and the Feast feature services follow the registered model specs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from feast import FeatureService

from features.catalog import scores_view, views_for
from features.feature_repo import definitions
from features.feature_repo.services import service_views
from loyal.errors import LoyalError
from loyal.specs import MODELS, ModelSpec, register, unregister

pytestmark = pytest.mark.unit

EXTRA = ModelSpec(
    name="tenure_risk",  # command and title `tenure-risk`, run metric the promotion metric
    promotion_metric="brier",
    higher_is_better=False,
    train="extra:train",
    feature_service="tenure_risk_v1",
    feature_views=("profile", "engagement"),
)


@pytest.fixture
def extra() -> Iterator[ModelSpec]:
    spec = register(EXTRA)
    yield spec
    unregister(spec.name)


def services(tmp_path: Path) -> dict[str, list[str]]:
    objects = definitions(tmp_path, views_for())
    return {
        o.name: [p.name for p in o.feature_view_projections]
        for o in objects
        if isinstance(o, FeatureService)
    }


def test_the_scores_view_holds_the_score_fields_of_the_models_it_scores() -> None:
    fields = set(scores_view().feature_names)
    for spec in MODELS.values():
        assert set(spec.score_fields) <= fields
    assert "churn_probability" in fields and "segment_name" in fields


def test_a_model_without_its_score_field_leaves_the_scores_view(extra: ModelSpec) -> None:
    register(replace(MODELS["churn"], score_fields=()))
    try:
        assert "churn_probability" not in scores_view().feature_names
    finally:
        register(replace(MODELS["churn"], score_fields=("churn_probability",)))
    assert "churn_probability" in scores_view().feature_names


def test_an_undescribed_score_field_is_refused_by_name(extra: ModelSpec) -> None:
    register(replace(EXTRA, score_fields=("tenure_risk_score",)))
    with pytest.raises(LoyalError, match=r"tenure_risk\.tenure_risk_score"):
        scores_view()


def test_each_model_spec_gets_its_feature_service(tmp_path: Path, extra: ModelSpec) -> None:
    built = services(tmp_path)
    assert built["tenure_risk_v1"] == ["profile", "engagement"]
    assert built["churn_v1"] == list(MODELS["churn"].feature_views)
    assert set(built["nba_v1"]) == {
        "profile",
        "rfm",
        "holdings",
        "engagement",
        "balances",
        "lifecycle",
    }  # the scores view joins once it exists
    assert service_views()["nba_v1"][-1] == "scores"


def test_a_spec_derives_what_it_does_not_state() -> None:
    assert (EXTRA.command, EXTRA.title, EXTRA.run_metric) == ("tenure-risk", "tenure-risk", "brier")
    clv = MODELS["clv"]
    assert (clv.command, clv.title, clv.run_metric, clv.higher_is_better) == (
        "clv", "CLV", "mae", False,
    )  # fmt: skip
    assert MODELS["cross_sell"].commands == (
        "pipelines.commands.cross_sell:train_command",
        "pipelines.commands.cross_sell:promote_command",
    )
