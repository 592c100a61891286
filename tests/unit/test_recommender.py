"""Recommenders: one contract every implementation passes, plus ALS and popularity specifics."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from loyal.errors import NotReadyError
from models.recommender import (
    AlsRecommender,
    ModelFileError,
    PopularityRecommender,
    Ranking,
    Recommender,
    RecommenderInputError,
    UnknownItemError,
)

pytestmark = pytest.mark.unit

USERS = [f"c{i}" for i in range(8)]
ITEMS = ["checking", "savings", "card", "mortgage", "insurance", "brokerage"]
SEGMENTS = ["young"] * 4 + ["family"] * 4

# Two groups: the first four customers hold checking/savings/card, the last four hold
# checking/mortgage/insurance; each customer misses one product of their group; nobody holds
# brokerage. Values are purchase counts.
HOLDINGS = np.array(
    [
        [3, 1, 0, 0, 0, 0],
        [2, 0, 1, 0, 0, 0],
        [0, 2, 2, 0, 0, 0],
        [4, 1, 1, 0, 0, 0],
        [1, 0, 0, 1, 0, 0],
        [2, 0, 0, 0, 2, 0],
        [0, 0, 0, 1, 1, 0],
        [5, 0, 0, 2, 1, 0],
    ],
    dtype=np.float32,
)


def checkerboard(n: int) -> sp.csr_matrix:
    """Even users like even items, odd users odd items; the diagonal is held out."""
    board = np.zeros((n, n), dtype=np.float32)
    for i in range(n):
        board[i, i % 2 :: 2] = 1.0
    return sp.csr_matrix(board - np.eye(n, dtype=np.float32))


def held(user: str) -> set[str]:
    row = HOLDINGS[USERS.index(user)]
    return {ITEMS[j] for j in np.flatnonzero(row)}


class RecommenderContract:
    """Behaviour every `Recommender` must show; subclasses provide `make`."""

    def make(self) -> Recommender:
        raise NotImplementedError

    def fitted(self) -> Recommender:
        return self.make().fit(sp.csr_matrix(HOLDINGS), USERS, ITEMS, SEGMENTS)

    def test_init_only_stores_settings(self) -> None:
        model = self.make()
        assert not [name for name in vars(model) if name.endswith("_")]
        assert type(model)(**model.get_params()).get_params() == model.get_params()

    def test_fit_returns_self_and_sets_fitted_attributes(self) -> None:
        model = self.make()
        assert model.fit(sp.csr_matrix(HOLDINGS), USERS, ITEMS) is model
        assert model.user_ids_.tolist() == USERS
        assert model.item_ids_.tolist() == ITEMS

    def test_fit_does_not_mutate_its_input(self) -> None:
        matrix = sp.csr_matrix(HOLDINGS)
        before = matrix.toarray().copy()
        self.make().fit(matrix, USERS, ITEMS)
        np.testing.assert_array_equal(matrix.toarray(), before)

    def test_a_failed_fit_leaves_the_model_unfitted(self) -> None:
        model = self.make()
        with pytest.raises(RecommenderInputError):
            model.fit(sp.csr_matrix(-HOLDINGS), USERS, ITEMS)
        with pytest.raises(NotReadyError):
            model.recommend("c0")

    def test_using_an_unfitted_model_raises_not_ready(self) -> None:
        with pytest.raises(NotReadyError, match="not fitted yet"):
            self.make().recommend("c0")

    def test_recommendations_are_ranked_best_first_and_at_most_k(self) -> None:
        ranking = self.fitted().recommend("c0", k=2)
        assert isinstance(ranking, Ranking)
        assert len(ranking) == 2
        scores = [score for _, score in ranking]
        assert scores == sorted(scores, reverse=True)

    @pytest.mark.parametrize("user", USERS)
    def test_held_items_are_filtered(self, user: str) -> None:
        ranking = self.fitted().recommend(user, k=len(ITEMS))
        assert not {item for item, _ in ranking} & held(user)
        assert len(ranking) == len(ITEMS) - len(held(user))

    def test_held_items_come_back_when_not_filtered(self) -> None:
        ranking = self.fitted().recommend("c0", k=len(ITEMS), filter_already_held=False)
        assert {item for item, _ in ranking} == set(ITEMS)

    def test_unknown_customer_gets_popularity_flagged_as_cold_start(self) -> None:
        model = self.fitted()
        ranking = model.recommend("stranger", k=3)
        assert ranking.cold_start
        assert not model.recommend("c0").cold_start
        assert [item for item, _ in ranking] == [
            "checking",
            "savings",
            "card",
        ]  # ties: lower position

    def test_cold_start_ranks_within_the_segment_when_given(self) -> None:
        model = self.fitted()
        young = model.recommend("stranger", k=3, segment="young")
        family = model.recommend("stranger", k=3, segment="family")
        unknown_segment = model.recommend("stranger", k=3, segment="retired")
        assert young.cold_start and family.cold_start
        assert [item for item, _ in young] == ["checking", "savings", "card"]
        assert [item for item, _ in family] == ["checking", "mortgage", "insurance"]
        assert unknown_segment == model.recommend("stranger", k=3)

    def test_batch_top_k_matches_the_single_customer_path(self) -> None:
        model = self.fitted()
        top = model.recommend_all(k=3)
        assert top.items.shape == (len(USERS), 3)
        for row, user in enumerate(USERS):
            ranking = model.recommend(user, k=3)
            expected = [ITEMS.index(item) for item, _ in ranking]
            assert top.items[row, : len(expected)].tolist() == expected
            np.testing.assert_allclose(
                top.scores[row, : len(expected)], [s for _, s in ranking], rtol=1e-6
            )

    def test_batch_top_k_pads_when_fewer_items_remain(self) -> None:
        top = self.fitted().recommend_all(k=len(ITEMS) + 2)
        first = top.items[0]
        remaining = len(ITEMS) - len(held("c0"))
        assert (first[:remaining] >= 0).all()
        assert (first[remaining:] == -1).all()
        assert np.isnan(top.scores[0, remaining:]).all()

    def test_batch_mixes_known_and_unknown_customers(self) -> None:
        model = self.fitted()
        top = model.recommend_batch(["c0", "stranger"], k=2, segments=[None, "family"])
        assert top.cold_start.tolist() == [False, True]
        family = model.recommend("stranger", k=2, segment="family")
        assert [ITEMS[p] for p in top.items[1]] == [item for item, _ in family]

    def test_save_load_round_trip_gives_equal_recommendations(self, tmp_path: Path) -> None:
        model = self.fitted()
        model.save(tmp_path / "model")
        loaded = Recommender.load(tmp_path / "model")
        assert type(loaded) is type(model)
        assert loaded.get_params() == model.get_params()
        for user in [*USERS, "stranger"]:
            assert loaded.recommend(user, k=4) == model.recommend(user, k=4)
        assert loaded.recommend("x", segment="family") == model.recommend("x", segment="family")
        assert loaded.similar_items("checking", 3) == model.similar_items("checking", 3)
        assert loaded.explain("c0", "card") == model.explain("c0", "card")

    def test_saved_files_need_no_pickle(self, tmp_path: Path) -> None:
        folder = self.fitted().save(tmp_path / "model")
        assert sorted(p.name for p in folder.iterdir()) == ["arrays.npz", "meta.json"]
        with np.load(folder / "arrays.npz", allow_pickle=False) as arrays:
            assert all(arrays[name].dtype != object for name in arrays.files)
        meta = json.loads((folder / "meta.json").read_text())
        assert meta["user_ids"] == USERS and meta["item_ids"] == ITEMS

    def test_loading_a_folder_without_a_model_says_what_is_missing(self, tmp_path: Path) -> None:
        with pytest.raises(ModelFileError, match="holds no saved recommender"):
            Recommender.load(tmp_path)

    def test_similar_items_exclude_the_item_itself(self) -> None:
        similar = self.fitted().similar_items("mortgage", k=3)
        assert len(similar) == 3
        assert "mortgage" not in [item for item, _ in similar]

    def test_unknown_items_raise_an_actionable_error(self) -> None:
        with pytest.raises(UnknownItemError, match="unknown to the model"):
            self.fitted().similar_items("yacht")

    def test_explain_names_only_held_products(self) -> None:
        reasons = self.fitted().explain("c0", "card", n=2)
        assert reasons
        assert {item for item, _ in reasons} <= held("c0")
        assert all(weight > 0 for _, weight in reasons)
        assert self.fitted().explain("stranger", "card") == []

    @pytest.mark.parametrize(
        ("matrix", "users", "match"),
        [
            (sp.csr_matrix(HOLDINGS[:3]), USERS, "shape"),
            (sp.csr_matrix(-HOLDINGS), USERS, "negative"),
            (HOLDINGS, USERS, "scipy sparse"),
            (sp.csr_matrix(HOLDINGS), ["c0"] * len(USERS), "duplicates"),
        ],
    )
    def test_malformed_input_is_rejected(self, matrix, users, match) -> None:
        with pytest.raises(RecommenderInputError, match=match):
            self.make().fit(matrix, users, ITEMS)

    def test_k_below_one_is_rejected(self) -> None:
        with pytest.raises(RecommenderInputError, match="k must be at least 1"):
            self.fitted().recommend("c0", k=0)


class TestAlsContract(RecommenderContract):
    def make(self) -> Recommender:
        return AlsRecommender(factors=2, regularization=0.1, iterations=10, random_state=0)


class TestPopularityContract(RecommenderContract):
    def make(self) -> Recommender:
        return PopularityRecommender()


# ----------------------------------------------------------------------------- ALS specifics
@pytest.mark.parametrize("seed", range(5))
def test_als_recommends_item_i_to_user_i_on_a_checkerboard(seed: int) -> None:
    n = 50
    ids = [f"u{i}" for i in range(n)]
    items = [f"i{i}" for i in range(n)]
    model = AlsRecommender(factors=3, regularization=1.0, iterations=15, random_state=seed)
    model.fit(checkerboard(n), ids, items)
    assert [model.recommend(f"u{i}", k=1)[0][0] for i in range(n)] == items
    top = model.recommend_all(k=1)
    assert top.items[:, 0].tolist() == list(range(n))


def test_als_can_overfit_a_tiny_set() -> None:
    model = AlsRecommender(factors=6, regularization=0.001, iterations=30, random_state=0)
    model.fit(sp.csr_matrix(HOLDINGS), USERS, ITEMS)
    for user in USERS:
        ranking = model.recommend(user, k=len(held(user)), filter_already_held=False)
        assert {item for item, _ in ranking} == held(user)


def test_als_fit_is_reproducible_with_a_seed() -> None:
    first = AlsRecommender(factors=3, random_state=7).fit(sp.csr_matrix(HOLDINGS), USERS, ITEMS)
    again = AlsRecommender(factors=3, random_state=7).fit(sp.csr_matrix(HOLDINGS), USERS, ITEMS)
    np.testing.assert_array_equal(first.user_factors_, again.user_factors_)


def test_als_fit_is_warning_free(monkeypatch: pytest.MonkeyPatch) -> None:
    import implicit.utils

    monkeypatch.setattr(implicit.utils, "_checked_blas_config", False)  # re-arm its BLAS check
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        AlsRecommender(factors=2).fit(sp.csr_matrix(HOLDINGS), USERS, ITEMS)


@pytest.mark.parametrize(
    ("weighting", "expected"),
    [
        ("linear", 1 + 2.0 * 3.0),
        ("log1p", 1 + 2.0 * np.log1p(3.0)),
    ],
)
def test_confidence_is_one_plus_alpha_times_the_weighted_value(weighting, expected) -> None:
    model = AlsRecommender(alpha=2.0, weighting=weighting)
    confidence = model.confidence(sp.csr_matrix(HOLDINGS))
    assert confidence[0, 0] == pytest.approx(expected, rel=1e-6)
    assert confidence.nnz == np.count_nonzero(HOLDINGS)


def test_bm25_confidence_down_weights_heavy_buyers_of_a_common_product() -> None:
    confidence = AlsRecommender(alpha=1.0, weighting="bm25").confidence(sp.csr_matrix(HOLDINGS))
    assert confidence.nnz == np.count_nonzero(HOLDINGS)
    assert (confidence.data >= 1.0).all()
    # checking is bought 5 times by c7 but twice by c5: BM25 saturates the count
    assert confidence[7, 0] / confidence[5, 0] < 5 / 2


def test_unknown_weighting_is_rejected() -> None:
    with pytest.raises(RecommenderInputError, match="unknown weighting"):
        AlsRecommender(weighting="sqrt").fit(sp.csr_matrix(HOLDINGS), USERS, ITEMS)  # type: ignore[arg-type]


def test_gpu_is_refused() -> None:
    with pytest.raises(RecommenderInputError, match="use_gpu"):
        AlsRecommender(use_gpu=True).fit(sp.csr_matrix(HOLDINGS), USERS, ITEMS)


def test_als_explanations_add_up_to_roughly_the_score() -> None:
    model = AlsRecommender(factors=3, regularization=0.1, iterations=30, random_state=0)
    model.fit(sp.csr_matrix(HOLDINGS), USERS, ITEMS)
    score = dict(model.recommend("c1", k=len(ITEMS)))["savings"]
    reasons = model.explain("c1", "savings", n=len(ITEMS))
    contributions = model._contributions(1, ITEMS.index("savings"), np.array([0, 2]))
    assert sum(contributions) == pytest.approx(score, abs=0.05)
    assert reasons[0][0] in held("c1")


# ---------------------------------------------------------------------- popularity specifics
def test_popularity_scores_are_holder_shares() -> None:
    model = PopularityRecommender().fit(sp.csr_matrix(HOLDINGS), USERS, ITEMS)
    ranking = model.recommend("stranger", k=len(ITEMS))
    shares = (HOLDINGS > 0).mean(axis=0)
    assert dict(ranking) == pytest.approx({item: shares[j] for j, item in enumerate(ITEMS)})


def test_popularity_similar_items_are_the_ones_held_together() -> None:
    model = PopularityRecommender().fit(sp.csr_matrix(HOLDINGS), USERS, ITEMS)
    assert model.similar_items("mortgage", k=1)[0][0] == "insurance"
    assert model.similar_items("savings", k=1)[0][0] == "card"


# ----------------------------------------------------------------------------------- layering
def test_importing_the_models_does_not_import_mlflow() -> None:
    code = "import sys, models.recommender; sys.exit('mlflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_als_factors_do_not_depend_on_the_thread_count() -> None:
    rng = np.random.default_rng(3)
    purchases = sp.random(3000, 40, density=0.1, format="csr", random_state=rng, dtype=np.float32)
    purchases.data = np.ceil(purchases.data * 4)
    users, items = [f"u{i}" for i in range(3000)], [f"p{j}" for j in range(40)]
    fits = [
        AlsRecommender(factors=16, iterations=5, num_threads=threads).fit(purchases, users, items)
        for threads in (1, 2, 0)
    ]
    for other in fits[1:]:
        np.testing.assert_array_equal(other.user_factors_, fits[0].user_factors_)
        np.testing.assert_array_equal(other.item_factors_, fits[0].item_factors_)
