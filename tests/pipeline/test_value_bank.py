"""Value and needs end to end on a small bank: CLV, segments, tiers, promotion, scores online."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from features.catalog import ENTITY_KEY, SCORES, TIMESTAMP_FIELD
from features.clv_inputs import with_margins
from features.store import built_views, online_features, open_store, scores_table_path
from loyal.settings import Settings, load_settings
from models.tiers import TIERS, tier_sizes
from pipelines.features import apply_features, build_features, materialize_features
from pipelines.scores import publish_scores
from training.clv import (
    ClvSettings,
    ClvTrainResult,
    promote_clv,
    top_share,
    train_clv,
)
from training.registry import PromotionDecision
from training.segments import (
    SegmentsTrainResult,
    channel_mix,
    population,
    promote_segments,
    train_segments,
)

pytestmark = pytest.mark.pipeline


@dataclass(frozen=True)
class Trained:
    """Everything the module's tests look at, produced once."""

    settings: Settings
    clv: ClvTrainResult
    clv_decision: PromotionDecision
    segments: SegmentsTrainResult
    segments_decision: PromotionDecision
    scores: pd.DataFrame


@pytest.fixture(scope="module")
def trained(feature_bank: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    """A private copy of the shared bank with clv and segments trained, promoted and scored."""
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("LOYAL_")]:
            patch.delenv(name)  # nothing of the developer's shell reaches these settings
        settings = load_settings(home=tmp_path_factory.mktemp("value_bank"))
        shutil.copytree(feature_bank.paths.data_dir, settings.paths.data_dir)
        build_features(settings)
        apply_features(settings)
        materialize_features(settings)
        clv = train_clv(settings)
        clv_decision = promote_clv(settings)
        segments = train_segments(settings)
        segments_decision = promote_segments(settings)
        scores = publish_scores(settings)
        yield Trained(settings, clv, clv_decision, segments, segments_decision, scores)


def test_clv_holdout_is_the_last_26_weeks_and_beats_the_naive_forecast(trained: Trained) -> None:
    snapshot = population(trained.settings)[TIMESTAMP_FIELD].max().tz_convert(None)
    metrics = trained.clv.metrics
    assert trained.clv.observation_end == snapshot - pd.Timedelta(days=1)
    assert trained.clv.observation_end - trained.clv.calibration_end == pd.Timedelta(weeks=26)
    assert trained.clv.value_column == "monetary_margin"
    assert metrics["mae"] < metrics["naive_mae"]
    assert metrics["rmse"] < metrics["naive_rmse"]
    assert abs(metrics["predicted_total"] / metrics["actual_total"] - 1) < 0.15
    assert metrics["holdout_top20_margin_share"] <= metrics["oracle_top20_margin_share"]
    assert list(trained.clv.deciles.index) == list(range(1, 11))


def test_first_versions_become_champions(trained: Trained) -> None:
    assert trained.clv_decision.outcome == "first"
    assert trained.segments_decision.outcome == "first"
    assert trained.clv_decision.challenger_score == pytest.approx(trained.clv.metrics["mae"])
    assert trained.segments_decision.challenger_score == pytest.approx(
        trained.segments.metrics["holdout_silhouette"]
    )


def test_a_worse_clv_challenger_is_refused(trained: Trained) -> None:
    # a heavy penalty pins every BG/NBD parameter near 1: the population is ignored
    worse = train_clv(trained.settings, clv=ClvSettings(penalizer=100.0))
    decision = promote_clv(trained.settings, version=worse.model_version)
    assert decision.outcome == "rejected"
    assert decision.champion_version == trained.clv.model_version
    assert decision.champion_score == pytest.approx(trained.clv.metrics["mae"])
    assert decision.champion_score is not None
    assert decision.challenger_score > decision.champion_score


def test_segments_recover_the_planted_segments_with_k_by_the_criterion(trained: Trained) -> None:
    model = trained.segments.model
    stable = [k for k, s in model.stability_.items() if s >= model.min_stability]
    assert model.k_ == max(stable, key=lambda k: model.scores_[k])
    assert model.k_ == 5
    assert trained.segments.ari is not None and trained.segments.ari >= 0.7
    assert set(trained.segments.profile["name"]) == set(model.segment_names_.values())


def test_a_worse_segments_challenger_is_refused_and_keeps_the_champion_ids(
    trained: Trained,
) -> None:
    champion_ids = set(trained.segments.model.segment_ids_.tolist())
    worse = train_segments(trained.settings, n_clusters=8)
    decision = promote_segments(trained.settings, version=worse.model_version)
    assert decision.outcome == "rejected"
    assert decision.champion_version == trained.segments.model_version
    assert worse.previous_version == trained.segments.model_version
    assert champion_ids <= set(worse.model.segment_ids_.tolist())
    assert worse.model.matching_ is not None
    assert len(worse.model.matching_["new_segments"]) == 3


def test_a_retrain_keeps_segment_ids(trained: Trained) -> None:
    again = train_segments(trained.settings, register=False, random_state=7)
    same = (again.labels == trained.segments.labels).mean()
    assert again.previous_version == trained.segments.model_version
    assert same > 0.95


def test_tiers_have_exact_sizes_and_concentrate_value(trained: Trained) -> None:
    tiers = trained.scores["tier"].value_counts().reindex(list(TIERS), fill_value=0)
    assert tiers.to_dict() == tier_sizes(len(trained.scores))
    shares = trained.segments.metrics
    top1, top5, top20 = (shares[f"tier_top{n}_value_share"] for n in (1, 5, 20))
    assert 0.01 < top1 < top5 < top20 < 1
    assert top20 > 0.4
    ranked = trained.scores.sort_values("clv", ascending=False)
    assert ranked["tier"].iloc[0] == "platinum"


def test_scores_table_has_one_row_per_customer_at_the_latest_snapshot(trained: Trained) -> None:
    scores = trained.scores
    keys = population(trained.settings)
    written = pd.read_parquet(scores_table_path(trained.settings))
    assert scores_table_path(trained.settings).parent.name == "scores"
    assert list(written.columns) == [ENTITY_KEY, TIMESTAMP_FIELD, *SCORES.feature_names]
    pd.testing.assert_frame_equal(written, scores)
    assert scores[ENTITY_KEY].tolist() == sorted(keys[ENTITY_KEY])
    assert (scores[TIMESTAMP_FIELD] == keys[TIMESTAMP_FIELD].max()).all()
    assert scores["clv"].notna().mean() > 0.9
    assert scores["p_alive"].dropna().between(0, 1).all()
    assert (scores["segment_id"] >= 0).all()
    assert scores["churn_probability"].isna().all()  # no churn champion in this bank


def test_online_store_serves_the_scores(trained: Trained) -> None:
    sample = trained.scores.sample(20, random_state=3).reset_index(drop=True)
    online = online_features(open_store(trained.settings), "nba_v1", sample[ENTITY_KEY].tolist())
    assert online["tier"].tolist() == sample["tier"].tolist()
    assert online["segment_name"].tolist() == sample["segment_name"].tolist()
    assert online["segment_id"].astype(int).tolist() == sample["segment_id"].tolist()
    np.testing.assert_allclose(
        online["clv"].astype(float), sample["clv"].astype(float), rtol=1e-9, equal_nan=True
    )


def test_cli_promote_reports_the_decision(
    trained: Trained, monkeypatch: pytest.MonkeyPatch
) -> None:
    import typer
    from typer.testing import CliRunner

    from loyal.settings import get_settings
    from pipelines.commands import value

    app = typer.Typer()
    app.command("clv")(value.promote_clv_command)
    app.command("segments")(value.promote_segments_command)
    monkeypatch.setenv("LOYAL_HOME", str(trained.settings.home))
    monkeypatch.chdir(trained.settings.home)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["clv", "--version", str(trained.clv.model_version)])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "already champion" in result.output


def test_scores_survive_a_feature_rebuild(trained: Trained) -> None:
    build_features(trained.settings)
    assert scores_table_path(trained.settings).is_file()
    assert "scores" in built_views(trained.settings)


# --- the helpers, on three-row fixtures ---------------------------------------------------------


def test_top_share_at_its_limits_and_on_a_hand_computed_case() -> None:
    value = np.array([10.0, 0.0, 0.0, 0.0, 0.0])
    assert top_share(value, value, 0.2) == 1.0  # the one earner ranked first
    assert top_share(-value, value, 0.2) == 0.0  # ranked last
    assert top_share(np.array([5.0, 3.0, 2.0]), np.array([5.0, 3.0, 2.0]), 1 / 3) == 0.5
    assert np.isnan(top_share(value, np.zeros(5), 0.2))


def test_margins_follow_the_catalog_rule_and_fall_back_to_revenue() -> None:
    transactions = pd.DataFrame(
        {
            "customer_id": ["a", "a", "b"],
            "ts": pd.to_datetime(["2026-01-01", "2026-01-02", "2026-01-03"]),
            "product_id": ["p", "p", "unknown"],
            "amount": [100.0, 50.0, 80.0],
            "margin": [30.0, np.nan, np.nan],
        }
    )
    products = pd.DataFrame({"product_id": ["p"], "margin_rate": [0.4]})
    frame, column = with_margins(transactions, products)
    assert column == "monetary_margin"
    assert frame["margin"].tolist() == [30.0, 20.0, 0.0]
    assert transactions["margin"].isna().sum() == 2  # the input is not modified
    _, revenue = with_margins(transactions.drop(columns="margin"), None)
    assert revenue == "monetary_value"


def test_channel_mix_sees_only_the_window_before_the_snapshot() -> None:
    transactions = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "a"],
            "ts": pd.to_datetime(["2025-12-31", "2026-01-01", "2026-06-30", "2026-07-01"]),
            "channel": ["Branch", "mobile", "branch", "mobile"],
        }
    )
    mix = channel_mix(transactions, pd.Timestamp("2026-07-01"), days=181)
    assert mix.loc["a"].to_dict() == {"channel_branch_share": 0.5, "channel_mobile_share": 0.5}
