"""Ranking metrics at their limits, on a hand-computed case, and their averaging rules."""

from __future__ import annotations

import math

import pytest

from models.ranking_metrics import (
    MetricInputError,
    average_precision_at_k,
    mean_ranking_metrics,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
)

pytestmark = pytest.mark.unit

ALL = (precision_at_k, recall_at_k, ndcg_at_k, average_precision_at_k)


@pytest.mark.parametrize("metric", ALL)
def test_a_perfect_ranking_scores_one(metric) -> None:
    relevant = {"a", "b", "c"}
    assert metric(["a", "b", "c"], relevant, 3) == pytest.approx(1.0)


@pytest.mark.parametrize("metric", (ndcg_at_k, average_precision_at_k))
def test_perfect_top_k_scores_one_even_with_more_relevant_than_k(metric) -> None:
    assert metric(["a", "b"], {"a", "b", "c", "d"}, 2) == pytest.approx(1.0)


@pytest.mark.parametrize("metric", ALL)
def test_no_hits_scores_zero(metric) -> None:
    assert metric(["x", "y", "z"], {"a", "b"}, 3) == 0.0


@pytest.mark.parametrize("metric", ALL)
def test_hits_beyond_k_do_not_count(metric) -> None:
    assert metric(["x", "y", "a"], {"a"}, 2) == 0.0


def test_hand_computed_case() -> None:
    recommended = ["a", "b", "c", "d", "e"]
    relevant = {"a", "c", "f"}
    # hits at ranks 1 and 3
    assert precision_at_k(recommended, relevant, 5) == pytest.approx(2 / 5)
    assert recall_at_k(recommended, relevant, 5) == pytest.approx(2 / 3)
    dcg = 1 / math.log2(2) + 1 / math.log2(4)
    idcg = 1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(recommended, relevant, 5) == pytest.approx(dcg / idcg)
    assert ndcg_at_k(recommended, relevant, 5) == pytest.approx(0.703918, abs=1e-6)
    # AP@5 = (P@1 + P@3) / min(5, 3) = (1 + 2/3) / 3
    assert average_precision_at_k(recommended, relevant, 5) == pytest.approx(5 / 9)


def test_a_short_list_counts_its_missing_places_as_misses() -> None:
    assert precision_at_k(["a"], {"a", "b"}, 4) == pytest.approx(0.25)
    assert average_precision_at_k(["a"], {"a", "b"}, 4) == pytest.approx(0.5)


def test_means_exclude_customers_without_targets_and_count_missing_lists_as_zero() -> None:
    recommended = {"u1": ["a", "b"], "u2": ["c", "d"], "u3": ["a"]}
    relevant = {"u1": {"a"}, "u2": set(), "u4": {"b"}}
    result = mean_ranking_metrics(recommended, relevant, 2)
    assert result["n_customers"] == 2  # u1 and u4; u2 has no target, u3 none given
    assert result["precision_at_2"] == pytest.approx((0.5 + 0.0) / 2)
    assert result["recall_at_2"] == pytest.approx((1.0 + 0.0) / 2)
    assert result["ndcg_at_2"] == pytest.approx(0.5)
    assert result["map_at_2"] == pytest.approx(0.5)


def test_means_without_any_target_raise_an_actionable_error() -> None:
    with pytest.raises(MetricInputError, match="no customer has a relevant"):
        mean_ranking_metrics({"u1": ["a"]}, {"u1": set()}, 10)


@pytest.mark.parametrize("metric", ALL)
def test_k_below_one_is_rejected(metric) -> None:
    with pytest.raises(MetricInputError, match="k must be at least 1"):
        metric(["a"], {"a"}, 0)
