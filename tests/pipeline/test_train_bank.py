"""Churn and cross-sell on the sample bank: feature store, training, registry, promotion."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest

from features.catalog import ENTITY_KEY, TIMESTAMP_FIELD
from features.tables_io import read_contract
from loyal.settings import Settings
from samplebank.truth import ORACLE_COLUMN, window_overlap, window_probability

if TYPE_CHECKING:
    from conftest import TrainedBank

pytestmark = pytest.mark.pipeline

RANKING_METRICS = ("precision", "recall", "ndcg", "map")


# ------------------------------------------------------------------------- the oracle
def test_window_overlap_counts_the_days_of_each_month_inside_the_horizon() -> None:
    months = pd.date_range("2026-01-01", periods=5, freq="MS")
    overlap = window_overlap(months, pd.Timestamp("2026-03-01"), 90)
    # March and April whole, 29 of May's 31 days (1 March + 90 days = 30 May), nothing else
    np.testing.assert_allclose(overlap, [0, 0, 1, 1, 29 / 31])


def test_window_probability_on_a_hand_computed_customer() -> None:
    monthly = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "b"],
            "month": pd.to_datetime(["2026-01-01", "2026-02-01", "2026-03-01", "2026-01-01"]),
            "churn_probability": [0.1, 0.2, 0.3, 0.5],
        }
    )
    rows = pd.DataFrame(
        {
            ENTITY_KEY: ["a", "b", "z"],
            TIMESTAMP_FIELD: pd.to_datetime(["2026-01-01"] * 3, utc=True),
        }
    )
    result = window_probability(rows, monthly, 90)
    # a: 31 + 28 + 31 days = 90: three whole months. b closed in January: its hazard carries on.
    assert result[0] == pytest.approx(1 - 0.9 * 0.8 * 0.7)
    assert result[1] == pytest.approx(1 - 0.5**3)
    assert np.isnan(result[2])


# ------------------------------------------------------------------------------ churn
def test_churn_trains_through_the_feature_store_and_registers(trained_bank: TrainedBank) -> None:
    result = trained_bank.churn
    assert result.model_version == "1"
    assert result.split.kind == "time"
    assert result.holdout[TIMESTAMP_FIELD].nunique() == 1
    assert result.frame_seconds > 0
    learned = set(result.model.feature_names_in_)
    assert {ENTITY_KEY, TIMESTAMP_FIELD, "churned", ORACLE_COLUMN, "label_complete"}.isdisjoint(
        learned
    )
    assert {"tenure_days", "complaints_90d", "n_products_held"} <= learned


def test_churn_test_auc_is_near_the_oracle_and_calibrated(trained_bank: TrainedBank) -> None:
    metrics = trained_bank.churn.metrics
    # ~70 churners in the test month of a 2,000-customer bank: loose bounds. The oracle knows
    # the hidden frailty and the months after the snapshot, so no model reaches it.
    assert 0.55 < metrics["roc_auc"] <= metrics["oracle_roc_auc"] + 0.03
    assert metrics["roc_auc_gap"] < 0.2
    assert metrics["ece"] < 0.05
    assert metrics["snapshot_hazard_without_frailty_roc_auc"] < metrics["oracle_roc_auc"]
    assert metrics["achievable_roc_auc_gap"] == pytest.approx(
        metrics["snapshot_hazard_without_frailty_roc_auc"] - metrics["roc_auc"]
    )
    # the same search code as `churn evaluate`, and the two baselines on the same test rows
    assert trained_bank.churn.model.search_summary_ is not None
    assert trained_bank.churn.model.search_summary_["trials"] >= 1
    for name in ("xgboost", "logistic"):
        assert 0.5 < metrics[f"baseline_{name}_roc_auc"] <= metrics["oracle_roc_auc"] + 0.03


def test_the_oracle_is_calibrated_on_the_test_rows(trained_bank: TrainedBank) -> None:
    holdout = trained_bank.churn.holdout
    assert holdout[ORACLE_COLUMN].notna().all()
    assert holdout[ORACLE_COLUMN].mean() == pytest.approx(holdout["churned"].mean(), abs=0.02)


def test_the_first_churn_model_becomes_champion(trained_bank: TrainedBank) -> None:
    decision = trained_bank.churn_promotion
    assert decision.outcome == "first"
    assert decision.challenger_score == pytest.approx(trained_bank.churn.metrics["roc_auc"])


def test_promotion_refuses_a_worse_churn_challenger(trained_bank: TrainedBank) -> None:
    from pipelines.commands.churn import promote_churn
    from training.churn import train_churn_bank
    from training.registry import champion_version
    from training.tracking import client

    settings = trained_bank.settings
    worse = train_churn_bank(
        settings, search_trials=0, params={"max_rounds": 1}, max_train_snapshots=2, plots=False
    )
    decision = promote_churn(settings, version=worse.model_version)
    assert decision.outcome == "rejected"
    assert not decision.promoted
    # both were scored on the challenger's holdout: the champion's own test rows
    assert decision.holdout_rows == len(trained_bank.churn.holdout)
    assert decision.champion_score is not None
    assert decision.champion_score == pytest.approx(trained_bank.churn.metrics["roc_auc"])
    assert decision.challenger_score < decision.champion_score
    champion = champion_version(client(settings), "churn")
    assert champion is not None and str(champion.version) == "1"


# ------------------------------------------------------------------------- cross-sell
@pytest.mark.parametrize("metric", RANKING_METRICS)
def test_als_is_at_least_as_good_as_popularity_at_3(trained_bank: TrainedBank, metric: str) -> None:
    metrics = trained_bank.cross_sell.evaluation.metrics
    assert metrics["n_customers"] >= 50
    assert metrics[f"{metric}_at_3"] >= metrics[f"popularity_{metric}_at_3"]
    assert f"{metric}_at_10" in metrics


def test_the_first_cross_sell_model_becomes_champion(trained_bank: TrainedBank) -> None:
    result, decision = trained_bank.cross_sell, trained_bank.cross_sell_promotion
    assert result.model_version == "1"
    assert decision.outcome == "first"
    assert decision.metric == "ndcg_at_3"
    # promotion refits the recipe on the logged split: the same score as the evaluation
    assert decision.challenger_score == pytest.approx(result.evaluation.metrics["ndcg_at_3"])


def test_recommendations_are_new_products_for_open_customers(
    trained_bank_home: Settings, trained_bank: TrainedBank
) -> None:
    written = pd.read_parquet(trained_bank_home.paths.data_dir / "scores/recommendations.parquet")
    expected = trained_bank.cross_sell.recommendations
    assert expected is not None
    pd.testing.assert_frame_equal(written, expected[written.columns.tolist()])
    assert list(written.columns) == ["customer_id", "rank", "product_id", "score"]
    assert written.groupby("customer_id")["rank"].max().le(3).all()
    tables = read_contract(trained_bank_home)
    closed = tables["customers"].loc[tables["customers"]["closed_at"].notna(), "customer_id"]
    assert not written["customer_id"].isin(closed).any()
    purchases = tables["transactions"][tables["transactions"]["amount"] >= 0]
    bought = purchases[["customer_id", "product_id"]].drop_duplicates()  # refunds hold nothing
    overlap = written.merge(bought, on=["customer_id", "product_id"])
    assert overlap.empty


def test_cross_sell_promotion_refuses_a_worse_recipe(trained_bank: TrainedBank) -> None:
    from pipelines.commands.cross_sell import promote_cross_sell
    from training.cross_sell import bank_config, train_cross_sell

    settings = trained_bank.settings
    config = bank_config(n_trials=0)
    weak = {**config.als, "factors": 1, "iterations": 1, "regularization": 1000.0}
    config = dataclasses.replace(config, als=weak)
    transactions = read_contract(settings)["transactions"]
    worse = train_cross_sell(settings, transactions, config)
    decision = promote_cross_sell(settings, version=worse.model_version)
    assert decision.outcome == "rejected"
    champion = trained_bank.cross_sell_promotion
    assert decision.champion_score == pytest.approx(champion.challenger_score)


def test_scores_carry_each_customers_top_recommendations(trained_bank_home: Settings) -> None:
    from pipelines.scores import score_customers
    from training.cross_sell import RECOMMENDATIONS_FILE

    scores = score_customers(trained_bank_home, write=False).set_index("customer_id")
    batch = pd.read_parquet(trained_bank_home.paths.data_dir / "scores" / RECOMMENDATIONS_FILE)
    best = batch[batch["rank"] == 1].set_index("customer_id")["product_id"]
    shared = best.index.intersection(scores.index)
    assert len(shared) > 100
    assert (scores.loc[shared, "recommendation_1"] == best.loc[shared]).all()
    third = batch[batch["rank"] == 3].set_index("customer_id")["product_id"]
    shared3 = third.index.intersection(scores.index)
    assert (scores.loc[shared3, "recommendation_3"] == third.loc[shared3]).all()
