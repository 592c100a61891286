"""Cross-sell end to end on Online Retail: the issue's protocol, MLflow, batch top-k."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from loyal.settings import load_settings
from training.cross_sell import (
    REGISTERED_MODEL,
    CrossSellConfig,
    CrossSellResult,
    batch_recommendations,
    read_online_retail,
    train_cross_sell,
)

pytestmark = pytest.mark.pipeline

RETAIL = (
    Path(__file__).resolve().parents[2].parent / "shared/data/online_retail/online_retail.csv.gz"
)
# The issue's protocol: calibration to 2011-09-09, new purchases in the 13 weeks after as
# targets, customer x product purchase counts.
PROTOCOL = CrossSellConfig(cutoff="2011-09-09", window_days=91, k=10, value="count")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> CrossSellResult:
    if not RETAIL.is_file():
        pytest.skip(f"Online Retail not found at {RETAIL}")
    home = tmp_path_factory.mktemp("cross_sell")
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("LOYAL_"):
                patch.delenv(name)
        patch.chdir(home)
        settings = load_settings(home=home)
        return train_cross_sell(settings, read_online_retail(RETAIL), PROTOCOL)


def test_als_reaches_the_issue_bar_against_popularity(trained: CrossSellResult) -> None:
    metrics = trained.evaluation.metrics
    assert metrics["n_customers"] > 1500
    assert metrics["precision_at_10"] >= 0.09
    assert metrics["precision_at_10"] >= 2 * metrics["popularity_precision_at_10"]


@pytest.mark.parametrize("metric", ["precision", "recall", "ndcg", "map"])
def test_als_beats_popularity_on_every_metric(trained: CrossSellResult, metric: str) -> None:
    metrics = trained.evaluation.metrics
    assert metrics[f"{metric}_at_10"] > metrics[f"popularity_{metric}_at_10"]


def test_settings_were_chosen_before_the_test_window(trained: CrossSellResult) -> None:
    search = trained.evaluation.search
    assert search is not None
    assert search.validation_cutoff == pd.Timestamp("2011-06-10")
    assert len(search.trials) == PROTOCOL.n_trials
    chosen = {k: trained.evaluation.params[k] for k in ("factors", "regularization", "alpha")}
    best = search.trials.iloc[int(search.trials["ndcg_at_10"].to_numpy().argmax())]
    assert chosen == {k: best[k] for k in chosen}


def test_the_run_is_logged_and_registered(trained: CrossSellResult) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    run = client.get_run(trained.run_id)
    assert run.data.metrics["precision_at_10"] == pytest.approx(
        trained.evaluation.metrics["precision_at_10"]
    )
    assert "popularity_map_at_10" in run.data.metrics
    assert run.data.params["cutoff"] == "2011-09-09"
    assert len(run.data.tags["data_snapshot_id"]) == 16
    assert trained.model_version is not None
    version = client.get_model_version(REGISTERED_MODEL, trained.model_version)
    assert version.run_id == trained.run_id


def test_the_registered_pyfunc_serves_the_models_rankings(trained: CrossSellResult) -> None:
    import mlflow

    served = mlflow.pyfunc.load_model(f"models:/{REGISTERED_MODEL}/{trained.model_version}")
    customers = trained.model.user_ids_[:3].tolist()
    answer = served.predict(pd.DataFrame({"customer_id": [*customers, "no-such-customer"]}))
    for customer in customers:
        rows = answer[answer["customer_id"] == customer].sort_values("rank")
        expected = trained.model.recommend(customer, k=10)
        assert rows["product_id"].tolist() == [item for item, _ in expected]
        assert not rows["cold_start"].any()
    unknown = answer[answer["customer_id"] == "no-such-customer"]
    assert len(unknown) == 10 and unknown["cold_start"].all()


def test_batch_top_k_covers_every_customer_without_held_products(
    trained: CrossSellResult,
) -> None:
    model = trained.model
    frame = batch_recommendations(model, k=10)
    assert frame["customer_id"].nunique() == len(model.user_ids_)
    assert frame.groupby("customer_id")["rank"].max().max() == 10
    rows = frame["customer_id"].map({c: i for i, c in enumerate(model.user_ids_)})
    columns = frame["product_id"].map({p: j for j, p in enumerate(model.item_ids_)})
    assert (model.user_items_[rows.to_numpy(), columns.to_numpy()] == 0).all()
