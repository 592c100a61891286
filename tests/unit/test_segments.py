"""Need segments: planted segments recovered, k chosen, stable ids across retrains, names, I/O."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from sklearn.base import clone
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score
from sklearn.pipeline import Pipeline
from sklearn.utils.estimator_checks import check_estimator
from threadpoolctl import threadpool_limits

from models.segments import (
    LOW_ENGAGEMENT,
    MAINSTREAM,
    BehaviourScaler,
    NeedSegmenter,
    SegmentError,
    choose_k,
    match_to_previous,
    name_segments,
    profile,
)
from training.segments_plots import profile_heatmap, save_profile_heatmap

pytestmark = pytest.mark.unit

FAST: dict[str, Any] = {"n_init": 2, "stability_runs": 1, "sample_size": 1_000}


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """k-means on a few hundred rows is fastest on one thread, above all on shared cores."""
    with threadpool_limits(1):
        yield


def planted_blobs(seed: int = 0, per_segment: int = 250) -> tuple[pd.DataFrame, np.ndarray]:
    """Four blobs of different spreads, dressed as behaviour columns.

    Four columns are exponentiated into heavy-tailed money and counts (so k-means only sees
    the blobs if the segmenter logs them back), one squashed into a share, one left linear.
    """
    centers = np.array(
        [
            [4.0, 4.0, 0.0, 0.0, 0.0, 0.0],
            [-4.0, 0.0, 4.0, 0.0, 4.0, 0.0],
            [0.0, -4.0, -4.0, 4.0, 0.0, 4.0],
            [0.0, 0.0, 0.0, -4.0, -4.0, -4.0],
        ]
    )
    Z, truth = make_blobs(
        n_samples=[per_segment] * 4,
        centers=centers,
        cluster_std=[0.5, 0.8, 1.0, 0.7],
        random_state=seed,
    )
    frame = pd.DataFrame(
        {
            "balance_checking": np.expm1(0.6 * Z[:, 0] + 8.0),
            "total_deposits": np.expm1(0.6 * Z[:, 1] + 9.0),
            "logins_90d": np.expm1(0.5 * Z[:, 2] + 5.0),
            "branch_visits_90d": np.expm1(0.4 * Z[:, 3] + 4.0),
            "digital_share": 1.0 / (1.0 + np.exp(-Z[:, 4] / 2.0)),
            "calls_90d": Z[:, 5] + 20.0,
        }
    )
    return frame, truth


BANK_SEGMENTS = ("investors", "digital", "branch", "mortgage", "dormant")


def planted_bank(
    sizes: dict[str, int] | None = None, seed: int = 0
) -> tuple[pd.DataFrame, np.ndarray]:
    """A small bank with five planted need segments; returns features and planted names."""
    sizes = sizes or dict.fromkeys(BANK_SEGMENTS, 150)
    rng = np.random.default_rng(seed)
    parts, truth = [], []
    for segment, n in sizes.items():
        fund = 0.85 if segment == "investors" else 0.03
        mortgage = 0.9 if segment == "mortgage" else 0.05
        balance = {"investors": 10.5, "dormant": 5.0}.get(segment, 7.5)
        logins = {"digital": 40.0, "dormant": 0.3, "branch": 1.0}.get(segment, 8.0)
        branch = {"branch": 6.0, "investors": 1.5}.get(segment, 0.2)
        digital = {"digital": 0.9, "branch": 0.1, "dormant": 0.3}.get(segment, 0.5)
        calls = {"mortgage": 3.0, "dormant": 0.1}.get(segment, 0.8)
        parts.append(
            pd.DataFrame(
                {
                    "holds_investment_fund": rng.random(n) < fund,
                    "holds_mortgage": rng.random(n) < mortgage,
                    "balance_checking": rng.lognormal(balance, 0.5, n),
                    "total_deposits": rng.lognormal(balance + 0.5, 0.5, n),
                    "logins_90d": rng.poisson(logins, n),
                    "branch_visits_90d": rng.poisson(branch, n),
                    "calls_90d": rng.poisson(calls, n),
                    "digital_share": np.clip(rng.normal(digital, 0.08, n), 0.0, 1.0),
                }
            )
        )
        truth += [segment] * n
    frame = pd.concat(parts, ignore_index=True)
    frame.index = pd.Index([f"c{i:05d}" for i in range(len(frame))], name="customer_id")
    return frame, np.asarray(truth)


def segment_of(model: NeedSegmenter, labels: np.ndarray, truth: np.ndarray) -> dict[str, int]:
    """The segment id that holds most customers of each planted segment."""
    frame = pd.DataFrame({"label": labels, "truth": truth})
    return {str(t): int(g["label"].mode()[0]) for t, g in frame.groupby("truth")}


def matching(model: NeedSegmenter) -> dict[str, Any]:
    """The model's matching report, which a fit with `previous=` must have."""
    assert model.matching_ is not None
    return model.matching_


@pytest.fixture(scope="module")
def bank() -> tuple[pd.DataFrame, np.ndarray]:
    """Five planted segments of 150 customers."""
    return planted_bank()


@pytest.fixture(scope="module")
def bank_model(bank: tuple[pd.DataFrame, np.ndarray]) -> NeedSegmenter:
    """A segmenter fitted on the planted bank with k fixed at 5."""
    with threadpool_limits(1):
        return NeedSegmenter(n_clusters=5, **FAST).fit(bank[0])


# -- recovery and the choice of k -------------------------------------------------------------


def test_planted_blobs_are_recovered_with_the_planted_k() -> None:
    X, truth = planted_blobs()
    model = NeedSegmenter(n_init=2, random_state=0).fit(X)
    assert model.k_ == 4
    assert adjusted_rand_score(truth, model.labels_) >= 0.9
    assert sorted(model.scores_) == [3, 4, 5, 6, 7, 8]
    assert max(model.scores_, key=model.scores_.__getitem__) == 4
    assert model.stability_[4] >= model.min_stability
    assert set(model.preprocessor_.log_columns_) == {
        "balance_checking",
        "total_deposits",
        "logins_90d",
        "branch_visits_90d",
    }


def test_planted_bank_segments_are_recovered(bank, bank_model) -> None:
    _, truth = bank
    assert adjusted_rand_score(truth, bank_model.labels_) >= 0.9
    assert len(set(segment_of(bank_model, bank_model.labels_, truth).values())) == 5


def test_choose_k_takes_the_best_silhouette_among_stable_k() -> None:
    scores = {3: 0.5, 4: 0.6, 5: 0.7}
    assert choose_k(scores, {3: 0.9, 4: 0.95, 5: 0.5}, min_stability=0.8) == 4
    assert choose_k(scores, None) == 5
    assert choose_k(scores, {3: 0.1, 4: 0.2, 5: 0.3}, min_stability=0.8) == 5
    assert choose_k({3: 0.6, 4: 0.6, 5: float("nan")}, {}) == 3


def test_fixed_n_clusters_skips_the_search(bank) -> None:
    model = NeedSegmenter(n_clusters=3, **FAST).fit(bank[0])
    assert model.k_ == 3
    assert list(model.scores_) == [3]
    assert sorted(np.unique(model.labels_)) == [0, 1, 2]


def test_too_few_rows_for_k_is_a_clear_error() -> None:
    X = pd.DataFrame({"logins_90d": [1.0, 2.0, 3.0]})
    with pytest.raises(SegmentError, match="too few"):
        NeedSegmenter(n_clusters=5).fit(X)


# -- ids stable across retrains ---------------------------------------------------------------


def test_match_to_previous_on_a_hand_made_case() -> None:
    old = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    new = np.array([[0.5, 9.5], [0.2, -0.1], [9.8, 0.3], [20.0, 20.0]])
    mapping = match_to_previous(new, old, old_ids=[0, 2, 5])
    assert mapping == {0: 5, 1: 0, 2: 2, 3: 6}
    assert match_to_previous(new, old, old_ids=[0, 2, 5], next_id=9)[3] == 9
    moved = new[:3] + np.array([[0.0, 0.0], [0.0, 0.0], [5.0, 0.0]])
    far = match_to_previous(moved, old, max_distance=2)
    assert far == {0: 2, 1: 0, 2: 3}


def test_match_to_previous_needs_one_space() -> None:
    with pytest.raises(SegmentError, match="shared space"):
        match_to_previous(np.zeros((2, 3)), np.zeros((2, 2)))


def retrain_sample(X: pd.DataFrame, truth: np.ndarray) -> pd.DataFrame:
    """Same customers, reshuffled, with the segment mix changed so size order changes."""
    keep = {"investors": 1.0, "digital": 0.3, "branch": 1.0, "mortgage": 0.5, "dormant": 0.2}
    rng = np.random.default_rng(7)
    mask = rng.random(len(X)) < np.asarray([keep[t] for t in truth])
    return X[mask].sample(frac=1.0, random_state=3)


def test_retrain_with_previous_keeps_each_customer_in_the_same_segment(bank, bank_model) -> None:
    X, truth = bank
    X_new = retrain_sample(X, truth)
    first = pd.Series(bank_model.labels_, index=X.index).loc[X_new.index].to_numpy()
    settings = {**FAST, "random_state": 11}

    retrained = NeedSegmenter(n_clusters=5, **settings).fit(X_new, previous=bank_model)
    plain = NeedSegmenter(n_clusters=5, **settings).fit(X_new)

    assert adjusted_rand_score(first, retrained.labels_) >= 0.95
    assert (retrained.labels_ == first).mean() >= 0.98  # the same ids, not just the partition
    assert (plain.labels_ != first).mean() > 0.3  # without matching the ids do move
    assert matching(retrained)["new_segments"] == []
    assert set(matching(retrained)["distances"]) == set(bank_model.segment_ids_.tolist())


def test_previous_given_as_its_dict_matches_the_same(bank, bank_model) -> None:
    X, truth = bank
    X_new = retrain_sample(X, truth)
    payload = json.loads(json.dumps(bank_model.to_dict()))
    from_model = NeedSegmenter(n_clusters=5, **FAST).fit(X_new, previous=bank_model)
    from_dict = NeedSegmenter(n_clusters=5, **FAST).fit(X_new, previous=payload)
    np.testing.assert_array_equal(from_model.labels_, from_dict.labels_)


def test_an_extra_segment_gets_a_fresh_id(bank) -> None:
    X, truth = bank
    old_rows = truth != "mortgage"
    old = NeedSegmenter(n_clusters=4, **FAST).fit(X[old_rows])
    new = NeedSegmenter(n_clusters=5, **{**FAST, "random_state": 5}).fit(X, previous=old)
    kept = pd.Series(new.labels_[old_rows])
    assert (kept.to_numpy() == old.labels_).mean() >= 0.98
    mortgage = new.labels_[truth == "mortgage"]
    assert (mortgage == 4).mean() >= 0.9
    assert matching(new)["new_segments"] == [4]
    assert new.next_segment_id_ == 5


def test_a_retired_id_is_never_reused(bank) -> None:
    X, truth = bank
    five = NeedSegmenter(n_clusters=5, **FAST).fit(X)
    mortgage_id = segment_of(five, five.labels_, truth)["mortgage"]
    four = NeedSegmenter(n_clusters=4, **FAST).fit(X[truth != "mortgage"], previous=five)
    assert mortgage_id in matching(four)["retired_segments"]
    again = NeedSegmenter(n_clusters=5, **FAST).fit(X, previous=four)
    assert segment_of(again, again.labels_, truth)["mortgage"] == 5


def test_feature_mismatch_matches_on_shared_features_and_says_so(bank, bank_model) -> None:
    X, truth = bank
    X_new = retrain_sample(X, truth).drop(columns=["calls_90d"])
    X_new = X_new.assign(atm_visits_90d=np.random.default_rng(0).poisson(2.0, len(X_new)))
    with pytest.warns(UserWarning, match="only in the previous model: \\['calls_90d'\\]"):
        retrained = NeedSegmenter(n_clusters=5, **FAST).fit(X_new, previous=bank_model)
    first = pd.Series(bank_model.labels_, index=X.index).loc[X_new.index].to_numpy()
    assert (retrained.labels_ == first).mean() >= 0.95
    assert matching(retrained)["only_new"] == ["atm_visits_90d"]
    assert "calls_90d" not in matching(retrained)["shared_features"]


# -- profiles and names -----------------------------------------------------------------------


def test_names_come_from_distinguishing_features(bank, bank_model) -> None:
    _, truth = bank
    ids = segment_of(bank_model, bank_model.labels_, truth)
    names = bank_model.segment_names_
    top = bank_model.profile_["top_features"]
    assert "investors" in names[ids["investors"]]
    assert "holds_investment_fund" in top[ids["investors"]]
    assert "digital" in names[ids["digital"]]
    assert "branch-goers" in names[ids["branch"]]
    assert "branch_visits_90d" in top[ids["branch"]]
    assert "mortgage holders" in names[ids["mortgage"]]
    assert names[ids["dormant"]] == LOW_ENGAGEMENT
    assert len(set(names.values())) == len(names)


def test_descriptions_quote_the_numbers(bank_model) -> None:
    for segment, row in bank_model.profile_.iterrows():
        assert row["description"].startswith(f"{row['name']}: ")
        assert bank_model.segment_descriptions_[segment] == row["description"]
    investors = bank_model.profile_[bank_model.profile_["name"].str.contains("investors")]
    assert "hold investment fund (vs" in investors["description"].iloc[0]


def test_colliding_names_get_a_distinguishing_feature() -> None:
    z = pd.DataFrame(
        {
            "balance_checking": [2.0, 2.1, -1.0, 0.1],
            "holds_investment_fund": [1.5, 1.4, -0.8, 0.0],
            "branch_visits_90d": [0.8, 0.2, -0.5, 0.1],
            "logins_90d": [-0.2, 0.9, -0.9, -0.1],
        },
        index=[0, 1, 2, 3],
    )
    names = name_segments(z, top_n=2)
    assert names[0] == "affluent investors, lower logins in 90 days"
    assert names[1] == "affluent investors, higher logins in 90 days"
    assert names[2] == LOW_ENGAGEMENT
    assert names[3] == MAINSTREAM


def test_profile_sizes_shares_and_lift_by_hand(bank, bank_model) -> None:
    X, _ = bank
    table = bank_model.profile_
    assert table.index.name == "segment"
    assert table["size"].sum() == len(X)
    assert table["share"].sum() == pytest.approx(1.0)
    segment = int(table.index[0])
    inside = X["balance_checking"].to_numpy()[bank_model.labels_ == segment]
    expected = inside.mean() / X["balance_checking"].mean()
    assert table.loc[segment, "lift__balance_checking"] == pytest.approx(expected)
    assert table.loc[segment, "mean__balance_checking"] == pytest.approx(inside.mean())
    z = table.filter(like="z__")
    assert z.shape == (5, X.shape[1])


def test_profile_function_on_new_data_keeps_the_model_names(bank, bank_model) -> None:
    X, _ = bank
    table = bank_model.profile(X.iloc[::2])
    assert table["name"].to_dict() == {s: bank_model.segment_names_[s] for s in table.index}
    assert table["size"].sum() == len(X.iloc[::2])


def test_profile_rejects_misaligned_labels(bank) -> None:
    with pytest.raises(SegmentError, match="labels"):
        profile(bank[0], np.zeros(3))


# -- serialization, estimator contract, robustness --------------------------------------------


@pytest.mark.filterwarnings("error")
def test_dict_round_trip_predicts_identically(bank, bank_model) -> None:
    X, _ = bank
    payload = json.loads(json.dumps(bank_model.to_dict(), allow_nan=False))
    restored = NeedSegmenter.from_dict(payload)
    np.testing.assert_array_equal(restored.predict(X), bank_model.predict(X))
    holes = X.astype(float).mask(np.random.default_rng(1).random(X.shape) < 0.2)
    np.testing.assert_array_equal(restored.predict(holes), bank_model.predict(holes))
    assert restored.segment_names_ == bank_model.segment_names_
    assert restored.get_params() == bank_model.get_params()


def test_from_dict_refuses_a_foreign_payload() -> None:
    with pytest.raises(SegmentError, match="payload"):
        NeedSegmenter.from_dict({"format": "something else", "version": 1})


def test_clone_and_pipeline(bank, bank_model) -> None:
    X, _ = bank
    copy = clone(bank_model)
    assert copy.get_params() == bank_model.get_params()
    assert not hasattr(copy, "labels_")
    pipe = Pipeline([("segments", clone(bank_model))])
    pipe.fit(X, segments__previous=bank_model)
    np.testing.assert_array_equal(pipe.predict(X), bank_model.labels_)


def test_scikit_learn_estimator_checks() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_estimator(NeedSegmenter(n_init=1, k_range=(2, 3), stability_runs=0))
        check_estimator(BehaviourScaler())


def test_inputs_are_not_modified(bank) -> None:
    X, _ = bank
    X = X.copy()
    X.iloc[0, 2] = np.nan
    before = X.copy()
    model = NeedSegmenter(n_clusters=5, **FAST).fit(X)
    model.predict(X)
    model.profile(X)
    profile(X, model.labels_)
    pd.testing.assert_frame_equal(X, before)


def test_missing_values_count_as_zero_by_default(bank, bank_model) -> None:
    X, _ = bank
    holes = X.astype(float).mask(np.random.default_rng(2).random(X.shape) < 0.1)
    model = NeedSegmenter(n_clusters=5, **FAST).fit(holes)
    assert np.isfinite(model.cluster_centers_).all()
    np.testing.assert_array_equal(model.predict(holes), model.predict(holes.fillna(0.0)))
    empty = pd.DataFrame(np.nan, index=[0], columns=X.columns)
    assert bank_model.predict(empty)[0] in bank_model.segment_ids_


@pytest.mark.filterwarnings("error")
def test_median_imputation_adds_missing_indicators(bank) -> None:
    X, _ = bank
    holes = X.astype(float)
    holes.loc[holes.index[::4], "balance_checking"] = np.nan
    model = NeedSegmenter(n_clusters=5, impute="median", **FAST).fit(holes)
    names = model.preprocessor_.get_feature_names_out().tolist()
    assert names[-1] == "balance_checking__missing"
    assert model.cluster_centers_.shape == (5, X.shape[1] + 1)
    restored = NeedSegmenter.from_dict(json.loads(json.dumps(model.to_dict())))
    np.testing.assert_array_equal(restored.predict(holes), model.labels_)


def test_a_constant_column_changes_nothing(bank) -> None:
    X, _ = bank
    model = NeedSegmenter(n_clusters=5, **FAST).fit(X)
    with_constant = NeedSegmenter(n_clusters=5, **FAST).fit(X.assign(holds_checking=True))
    assert np.isfinite(with_constant.cluster_centers_).all()
    assert adjusted_rand_score(model.labels_, with_constant.labels_) == pytest.approx(1.0)
    assert with_constant.preprocessor_.scale_[-1] == 1.0


def test_columns_must_come_in_the_fitted_order(bank, bank_model) -> None:
    X, _ = bank
    with pytest.raises(ValueError, match="same order"):
        bank_model.predict(X[X.columns[::-1]])


# -- plot ------------------------------------------------------------------------------------


def test_profile_heatmap_shows_every_segment(bank_model, tmp_path: Path) -> None:
    figure = profile_heatmap(bank_model.profile_)
    assert isinstance(figure, Figure)
    labels = [t.get_text() for t in figure.axes[0].get_yticklabels()]
    assert len(labels) == bank_model.k_
    assert all(name in " ".join(labels) for name in bank_model.segment_names_.values())
    path = save_profile_heatmap(bank_model.profile_, tmp_path / "profiles.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
