"""Top-k ranking metrics with binary relevance: precision, recall, NDCG and MAP at k.

Conventions shared by every function here:

- ``recommended`` is one customer's ranked list, best first, without duplicates; only its first
  k entries count. A list shorter than k counts its missing places as misses.
- ``relevant`` is the set of items that customer actually took (the targets); relevance is
  binary: an item is relevant or not.
- Customers with no relevant item are excluded from the means (every metric is undefined or
  trivially zero for them); `mean_ranking_metrics` reports how many customers were averaged.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Mapping, Sequence
from typing import TypeVar

import numpy as np

from loyal.errors import LoyalError

METRICS = ("precision", "recall", "ndcg", "map")

User = TypeVar("User", bound=Hashable)
Item = TypeVar("Item", bound=Hashable)


class MetricInputError(LoyalError, ValueError):
    """A ranking metric was asked for with an impossible k or no customer to average."""


def precision_at_k(
    recommended: Sequence[Hashable], relevant: Collection[Hashable], k: int
) -> float:
    """Precision@k = |top-k ∩ relevant| / k.

    The denominator is always k, so a list shorter than k cannot score 1.
    """
    return float(_hits(recommended, relevant, k).sum() / _checked_k(k))


def recall_at_k(recommended: Sequence[Hashable], relevant: Collection[Hashable], k: int) -> float:
    """Recall@k = |top-k ∩ relevant| / |relevant| (0 when nothing is relevant)."""
    if not relevant:
        return 0.0
    return float(_hits(recommended, relevant, k).sum() / len(relevant))


def ndcg_at_k(recommended: Sequence[Hashable], relevant: Collection[Hashable], k: int) -> float:
    """NDCG@k = DCG@k / IDCG@k with binary gains and a log2 discount.

    DCG@k = sum over ranks i = 1..k of rel_i / log2(i + 1); IDCG@k is the DCG of a perfect list,
    i.e. the sum of 1 / log2(i + 1) for i = 1..min(k, |relevant|). 0 when nothing is relevant.
    """
    if not relevant:
        return 0.0
    hits = _hits(recommended, relevant, k)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = discounts[: min(k, len(relevant))].sum()
    return float((hits * discounts[: len(hits)]).sum() / ideal)


def average_precision_at_k(
    recommended: Sequence[Hashable], relevant: Collection[Hashable], k: int
) -> float:
    """AP@k = (sum over ranks i = 1..k of precision@i x rel_i) / min(k, |relevant|).

    Normalizing by min(k, |relevant|) makes a perfect top-k score 1 even when more than k items
    are relevant. 0 when nothing is relevant. MAP@k is its mean over customers.
    """
    if not relevant:
        return 0.0
    hits = _hits(recommended, relevant, k)
    precision_at_i = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision_at_i * hits).sum() / min(k, len(relevant)))


def mean_ranking_metrics(
    recommended: Mapping[User, Sequence[Item]],
    relevant: Mapping[User, Collection[Item]],
    k: int,
) -> dict[str, float]:
    """Mean precision@k, recall@k, NDCG@k and MAP@k over customers with a relevant item.

    Args:
        recommended: ranked items per customer; a customer missing here has no hits.
        relevant: target items per customer; customers with an empty set are excluded.
        k: the cut-off.

    Returns:
        ``precision_at_{k}``, ``recall_at_{k}``, ``ndcg_at_{k}``, ``map_at_{k}`` and
        ``n_customers`` (how many customers were averaged).
    """
    _checked_k(k)
    users = [u for u, items in relevant.items() if items]
    if not users:
        raise MetricInputError(
            "no customer has a relevant (target) item, so ranking metrics are undefined; "
            "widen the target window or check the time split"
        )
    functions = (precision_at_k, recall_at_k, ndcg_at_k, average_precision_at_k)
    totals = np.zeros(len(functions))
    for user in users:
        ranked: Sequence[Item] = recommended.get(user, ())
        totals += [f(ranked, relevant[user], k) for f in functions]
    means = totals / len(users)
    result = {f"{name}_at_{k}": float(v) for name, v in zip(METRICS, means, strict=True)}
    result["n_customers"] = float(len(users))
    return result


def _hits(recommended: Sequence[Hashable], relevant: Collection[Hashable], k: int) -> np.ndarray:
    """1.0 where the item at each of the first k ranks is relevant, else 0.0."""
    top = list(recommended)[: _checked_k(k)]
    return np.array([1.0 if item in relevant else 0.0 for item in top], dtype=np.float64)


def _checked_k(k: int) -> int:
    if k < 1:
        raise MetricInputError(f"k must be at least 1 (got {k})")
    return k
