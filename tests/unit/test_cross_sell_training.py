"""Cross-sell training steps on tiny frames: interactions, time split, evaluation, search."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pytest

from loyal.errors import DataContractError
from loyal.settings import Settings
from models.recommender import PopularityRecommender
from training.cross_sell import (
    CrossSellConfig,
    SearchResult,
    SearchSpace,
    applicable_config,
    batch_recommendations,
    build_interactions,
    data_snapshot_id,
    evaluate,
    evaluate_cross_sell,
    fit_als,
    read_purchase_log,
    search_hyperparameters,
    time_split,
)

pytestmark = pytest.mark.unit


def tx(rows: Sequence[tuple[str, str | pd.Timestamp, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["customer_id", "ts", "product_id", "amount"])


SMALL = tx(
    [
        ("a", "2024-01-01", "p1", 10.0),
        ("a", "2024-01-05", "p1", 5.0),
        ("a", "2024-01-06", "p2", -5.0),  # refund: not a purchase
        ("b", "2024-01-02", "p2", 0.0),
        ("a", "2024-02-02", "p3", 1.0),  # new for a: a target
        ("a", "2024-02-03", "p1", 1.0),  # already held: not a target
        ("b", "2024-02-04", "p1", 2.0),  # new for b
        ("c", "2024-02-05", "p1", 2.0),  # c is new after the cut-off: no targets
        ("b", "2024-03-15", "p3", 2.0),  # after the window
    ]
)


def test_interactions_count_purchases_and_ignore_refunds() -> None:
    interactions = build_interactions(SMALL[SMALL["ts"] < "2024-02-01"])
    assert interactions.customer_ids == ["a", "b"]
    assert interactions.product_ids == ["p1", "p2"]
    np.testing.assert_array_equal(interactions.matrix.toarray(), [[2, 0], [0, 1]])


def test_amount_interactions_keep_zero_amount_holdings() -> None:
    matrix = build_interactions(SMALL[SMALL["ts"] < "2024-02-01"], value="amount").matrix
    assert matrix[0, 0] == pytest.approx(15.0)
    assert 0 < matrix[1, 1] < 0.01


def test_recency_decay_halves_a_purchase_one_half_life_old() -> None:
    frame = tx([("a", "2024-01-01", "p1", 1.0), ("a", "2024-01-31", "p2", 1.0)])
    matrix = build_interactions(frame, half_life_days=30, as_of=pd.Timestamp("2024-01-31")).matrix
    np.testing.assert_allclose(matrix.toarray(), [[0.5, 1.0]], rtol=1e-6)


def test_inputs_are_not_modified() -> None:
    before = SMALL.copy()
    build_interactions(SMALL)
    time_split(SMALL, "2024-02-01", 30)
    pd.testing.assert_frame_equal(SMALL, before)


def test_time_split_targets_are_new_products_of_known_customers_within_the_window() -> None:
    split = time_split(SMALL, "2024-02-01", window_days=30)
    assert split.calibration["ts"].max() < pd.Timestamp("2024-02-01")
    assert split.targets == {"a": {"p3"}, "b": {"p1"}}
    assert split.end == pd.Timestamp("2024-03-02")


def test_a_missing_column_names_table_and_column() -> None:
    with pytest.raises(DataContractError, match="table 'transactions', column 'amount'"):
        build_interactions(SMALL.drop(columns="amount"))


def test_a_cutoff_before_any_purchase_is_a_clear_error() -> None:
    with pytest.raises(DataContractError, match="no purchase before the cut-off"):
        time_split(SMALL, "2023-01-01")


def test_evaluate_filters_held_products_and_scores_the_targets() -> None:
    split = time_split(SMALL, "2024-02-01", window_days=30)
    interactions = build_interactions(split.calibration)
    model = PopularityRecommender().fit(
        interactions.matrix, interactions.customer_ids, interactions.product_ids
    )
    # a holds p1 and gets p2; b holds p2 and gets p1 (a hit); p3 is unknown to the model
    result = evaluate(model, split.targets, k=1)
    assert result["precision_at_1"] == pytest.approx(0.5)
    assert result["n_customers"] == 2


def test_batch_recommendations_frame_has_no_held_products() -> None:
    interactions = build_interactions(SMALL)
    model = PopularityRecommender().fit(
        interactions.matrix, interactions.customer_ids, interactions.product_ids
    )
    frame = batch_recommendations(model, k=5)
    assert list(frame.columns) == ["customer_id", "rank", "product_id", "score"]
    held = set(zip(SMALL["customer_id"], SMALL["product_id"], strict=True))
    assert not {(c, p) for c, p in zip(frame["customer_id"], frame["product_id"], strict=True)} & (
        held - {("a", "p2")}  # a's p2 was refunded, never bought
    )
    # b already holds all three products, so b gets no row
    assert frame.groupby("customer_id")["rank"].apply(list).to_dict() == {"a": [1], "c": [1, 2]}


def test_search_space_sampling_is_seeded_and_without_repeats() -> None:
    space = SearchSpace(factors=(4, 64), regularization=(1.0, 10.0), alpha=(1.0,), iterations=(5,))
    first = space.sample(3, seed=1)
    assert first == space.sample(3, seed=1)
    assert len({tuple(trial.values()) for trial in first}) == 3
    assert len(space.sample(10, seed=0)) == 4  # the whole grid, once


def test_the_search_reads_factor_counts_beyond_the_catalog_as_the_smallest_that_reaches_it() -> (
    None
):
    space = SearchSpace(factors=(4, 8, 16, 32), regularization=(1.0, 10.0), iterations=(5,))
    everything = space.sample(24, seed=3)
    for products, most in ((10, 16), (8, 8), (2, 4)):
        capped = space.for_catalog(products)
        assert capped.most_factors == most
        expected = []  # the same draw, larger counts read as `most`, repeats tried once
        for trial in everything:
            trial = {**trial, "factors": min(trial["factors"], most)}
            if trial not in expected:
                expected.append(trial)
        assert capped.sample(24, seed=3) == expected
    assert space.for_catalog(20) == space.for_catalog(1000) == space  # 32 alone reaches 20
    twelve_products = applicable_config(synthetic_shop(0), CrossSellConfig())
    assert {t["factors"] for t in twelve_products.space.sample(12, seed=42)} == {32}


@pytest.mark.parametrize("regularization", [1.0, 10.0])
def test_als_scores_are_the_same_with_more_factors_than_products(regularization: float) -> None:
    """Why `for_catalog` may drop them: 12 products, 12 or 48 factors, the same model."""
    shop = synthetic_shop(0)
    interactions = build_interactions(shop, "count")
    assert interactions.matrix.shape[1] == 12
    scores = {}
    for factors in (12, 48):
        params = {"factors": factors, "regularization": regularization, "iterations": 30}
        model = fit_als(interactions, {**params, "num_threads": 1, "random_state": 0})
        scores[factors] = model.user_factors_ @ model.item_factors_.T
    assert np.abs(scores[12] - scores[48]).max() < 0.02 * np.abs(scores[48]).max()


def synthetic_shop(seed: int, customers: int = 300) -> pd.DataFrame:
    """Two customer groups, each buying from its own half of 12 products, over 8 months."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(customers):
        group = c % 2
        for _ in range(rng.integers(3, 9)):
            product = f"p{group * 6 + rng.integers(0, 6)}"
            day = pd.Timestamp("2024-01-01") + pd.Timedelta(days=int(rng.integers(0, 240)))
            rows.append((f"c{c}", day, product, 1.0))
    return tx(rows)


def test_the_search_never_sees_the_test_targets() -> None:
    shop = synthetic_shop(0)
    cutoff = pd.Timestamp("2024-07-01")
    space = SearchSpace(factors=(2, 4), regularization=(1.0, 10.0), alpha=(1.0,), iterations=(5,))
    config = CrossSellConfig(
        cutoff=str(cutoff.date()), window_days=60, k=3, n_trials=3, space=space
    )
    after = shop["ts"] >= cutoff
    scrambled = shop.copy()
    scrambled.loc[after, "product_id"] = np.random.default_rng(1).permutation(
        scrambled.loc[after, "product_id"].to_numpy()
    )
    first = evaluate_cross_sell(shop, config)
    second = evaluate_cross_sell(scrambled, config)
    assert first.search is not None and second.search is not None
    pd.testing.assert_frame_equal(
        first.search.trials.drop(columns="seconds"), second.search.trials.drop(columns="seconds")
    )
    assert first.search.validation_cutoff == cutoff - pd.Timedelta(days=60)
    assert first.metrics != second.metrics  # the test targets themselves did change


def test_als_beats_popularity_on_a_grouped_shop() -> None:
    config = CrossSellConfig(cutoff="2024-07-01", window_days=60, k=3, search=False)
    result = evaluate_cross_sell(synthetic_shop(0), config)
    assert result.metrics["ndcg_at_3"] > result.metrics["popularity_ndcg_at_3"]


def search(shop: pd.DataFrame, n_trials: int = 4, **options: Any) -> SearchResult:
    space = SearchSpace(factors=(2, 8), regularization=(1.0,), alpha=(1.0,), iterations=(3, 6))
    return search_hyperparameters(
        shop[shop["ts"] < "2024-07-01"], "2024-07-01", validation_days=60, k=3, space=space,
        n_trials=n_trials, base_params={"num_threads": 1}, **options,
    )  # fmt: skip


def test_the_search_learns_from_a_seeded_sample_of_customers_when_capped() -> None:
    shop = synthetic_shop(0)
    everyone = search(shop)
    sampled = search(shop, max_customers=120)
    assert sampled.customers <= 120 < everyone.customers
    assert (
        search(shop, max_customers=120)
        .trials.drop(columns="seconds")
        .equals(sampled.trials.drop(columns="seconds"))
    )


def test_the_search_keeps_the_cheapest_trial_near_the_best() -> None:
    shop = synthetic_shop(0)
    best = search(shop)
    trials = best.trials
    top = trials["ndcg_at_3"].max()
    assert best.best_metrics["ndcg_at_3"] == top  # 0 standard errors: the best trial
    lenient = search(shop, standard_errors=1e9)  # every trial is near the best
    assert (lenient.best_params["factors"], lenient.best_params["iterations"]) == (2, 3)
    cost = trials["factors"] * trials["iterations"]
    near = search(shop, standard_errors=1.0)
    chosen = near.best_params["factors"] * near.best_params["iterations"]
    assert chosen <= cost[trials["ndcg_at_3"] == top].min()
    assert near.best_metrics["ndcg_at_3"] <= top


def test_the_categorical_purchase_log_learns_what_the_text_log_learns(settings: Settings) -> None:
    shop = synthetic_shop(3, customers=120)
    refund = tx([("c1", pd.Timestamp("2024-03-01"), "p1", -1.0)])
    shop = pd.concat([shop, refund], ignore_index=True)
    settings.paths.contract_dir.mkdir(parents=True)
    shop.to_parquet(settings.paths.contract_dir / "transactions.parquet", index=False)
    log = read_purchase_log(settings)
    assert isinstance(log["customer_id"].dtype, pd.CategoricalDtype)
    bought = shop[shop["amount"] >= 0].sort_values("ts", kind="stable")  # as the reader gives
    bought = bought.reset_index(drop=True)
    assert data_snapshot_id(log) == data_snapshot_id(bought)
    config = CrossSellConfig(
        cutoff="2024-07-01", window_days=60, k=3, n_trials=2,
        space=SearchSpace(factors=(2, 4), regularization=(1.0,), alpha=(1.0,), iterations=(5,)),
    )  # fmt: skip
    text, categorical = evaluate_cross_sell(shop, config), evaluate_cross_sell(log, config)
    assert categorical.targets == text.targets and categorical.metrics == text.metrics
    assert text.search is not None and categorical.search is not None
    pd.testing.assert_frame_equal(
        categorical.search.trials.drop(columns="seconds"),
        text.search.trials.drop(columns="seconds"),
    )
    for value in ("count", "amount"):
        got, expected = build_interactions(log, value, 30.0), build_interactions(shop, value, 30.0)
        assert got.customer_ids == expected.customer_ids
        assert got.product_ids == expected.product_ids
        assert (got.matrix != expected.matrix).nnz == 0


def test_a_sampled_search_holds_trials_to_the_standard_error_over_every_customer() -> None:
    shop = synthetic_shop(0, customers=1200)
    everyone = search(shop, standard_errors=1.0)
    sampled = search(shop, max_customers=150, standard_errors=1.0)
    # a sample of an eighth measures each trial about sqrt(8) times less precisely; the
    # one-standard-error band must stay as narrow as a search over every customer would draw
    ratio = sampled.trials["standard_error"] / everyone.trials["standard_error"]
    assert ratio.between(0.6, 1.6).all(), ratio.tolist()
    best = sampled.trials["ndcg_at_3"].idxmax()
    band = sampled.trials["ndcg_at_3"].max() - sampled.trials.loc[best, "standard_error"]
    chosen = sampled.trials[sampled.trials["ndcg_at_3"] >= band]
    cost = chosen["factors"] * chosen["iterations"]
    assert sampled.best_params["factors"] * sampled.best_params["iterations"] == cost.min()


def test_a_sampled_search_scales_its_penalty_to_every_customer() -> None:
    shop = synthetic_shop(0, customers=1200)
    calibration = shop[shop["ts"] < "2024-07-01"]  # what `search` hands the search
    everyone = calibration["customer_id"].nunique()
    sampled = search(shop, max_customers=150)
    trial = sampled.trials.loc[
        (sampled.trials["factors"] == sampled.best_params["factors"])
        & (sampled.trials["iterations"] == sampled.best_params["iterations"])
    ].iloc[0]
    assert sampled.best_params["regularization"] == pytest.approx(
        trial["regularization"] * everyone / 150
    )
    assert search(shop).best_params["regularization"] == 1.0  # on every customer: as tried
