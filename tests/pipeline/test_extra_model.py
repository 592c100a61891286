"""A model registered by a spec and its module only goes through train, promote, batch, serve.

The extra model (`extra_model.py`, beside this file) is known to nothing else in the repository:
the test registers its spec, trains and promotes it through the one training and promotion path,
scores it in the batch run (its own table, the scores table unchanged) and serves it from an
in-process `Runtime` (the service's engine, without an HTTP server).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from test_retrain import private_copy

from features.store import scores_table_path
from loyal.settings import Settings
from loyal.specs import ModelSpec, register, unregister

pytestmark = pytest.mark.pipeline

ACTIVITY = ModelSpec(
    name="activity",
    promotion_metric="brier",
    higher_is_better=False,
    train="extra_model:train",
    champion_loader="extra_model:load",
    batch_scorer="extra_model:batch",
    score_fields=("p_active",),
)


@pytest.fixture
def activity() -> Iterator[ModelSpec]:
    spec = register(ACTIVITY)
    yield spec
    unregister(spec.name)


def test_an_extra_model_is_trained_promoted_batch_scored_and_served(
    activity: ModelSpec, scored_bank_home: Settings, tmp_path: Path
) -> None:
    from inference.batch import scores_path
    from pipelines.scores import write_batch_scores
    from serving.runtime import Runtime
    from serving.schemas import NextBestActionRequest
    from training.models_admin import list_versions, promote_model, train_model

    settings = private_copy(scored_bank_home, tmp_path / "home")
    trained = train_model(settings, activity.name)
    decision = promote_model(settings, activity.command, trained.model_version)
    assert decision.outcome == "first" and decision.promoted
    assert decision.metric == "brier" and 0.0 <= decision.challenger_score <= 1.0
    (row,) = list_versions(settings, [activity.name])
    assert row.champion and str(row.version) == trained.model_version

    run = write_batch_scores(settings)
    assert run.models[activity.name] == f"activity v{trained.model_version} (champion)"
    own = pd.read_parquet(scores_path(settings, activity.name))
    assert len(own) == run.customers and own["p_active"].between(0.0, 1.0).all()
    original = pd.read_parquet(scores_table_path(scored_bank_home))
    pd.testing.assert_frame_equal(pd.read_parquet(scores_table_path(settings)), original)

    options = settings.serving.model_copy(update={"models": (*settings.serving.models, "activity")})
    served = Runtime.start(settings, options)
    customer = str(own["customer_id"].iloc[0])
    request = NextBestActionRequest(customer_id=customer, channel=served.catalog.channels[0])
    answer = served.next_best_action(request)
    assert answer.model_versions["activity"] == trained.model_version
    assert not answer.degraded, answer.degraded_reasons
    (known,) = served._customers([customer])
    scores = served._scores(known)
    assert scores.extra == {"p_active": pytest.approx(float(own["p_active"].iloc[0]))}
