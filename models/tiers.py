"""Value tiers of the customer pyramid (platinum, gold, iron, lead) with exact sizes on ties."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

TIERS = ("platinum", "gold", "iron", "lead")
DEFAULT_CUTS = (0.01, 0.05, 0.20)


def _check_cuts(cuts: Sequence[float]) -> tuple[float, float, float]:
    if len(cuts) != 3:
        raise ValueError("tier cuts need three cumulative shares: platinum, gold, iron")
    platinum, gold, iron = (float(c) for c in cuts)
    if not 0 < platinum < gold < iron < 1:
        raise ValueError("tier cuts must satisfy 0 < platinum < gold < iron < 1")
    return platinum, gold, iron


def tier_sizes(n: int, cuts: Sequence[float] = DEFAULT_CUTS) -> dict[str, int]:
    """Number of customers in each tier for ``n`` customers.

    Args:
        n: number of customers.
        cuts: cumulative shares for platinum, gold and iron.

    Returns:
        Sizes keyed by tier name; they sum to ``n``.
    """
    if n < 0:
        raise ValueError("n must be non-negative")
    # the tiny epsilon keeps float noise (e.g. 0.05 * 300 = 15.000000000000002) out of rounding
    cumulative = [min(n, math.floor(n * c + 0.5 + 1e-9)) for c in _check_cuts(cuts)]
    bounds = [0, *cumulative, n]
    return {tier: bounds[i + 1] - bounds[i] for i, tier in enumerate(TIERS)}


def rank_customers(values: pd.Series) -> pd.Series:
    """0-based rank of each customer: highest value first, ties by ascending customer id.

    Args:
        values: value per customer (CLV or trailing margin), indexed by customer id.

    Returns:
        Integer ranks aligned with ``values``; missing values rank after all others.
    """
    if not values.index.is_unique:
        raise ValueError("values must be indexed by unique customer ids")
    missing = values.isna().to_numpy()
    neg_value = -values.astype(float).fillna(0.0).to_numpy()
    ids = np.asarray(values.index.astype(str), dtype=str)
    order = np.lexsort((ids, neg_value, missing))  # last key sorts first
    ranks = np.empty(len(values), dtype=np.int64)
    ranks[order] = np.arange(len(values))
    return pd.Series(ranks, index=values.index, name="rank")


def assign_tiers(values: pd.Series, cuts: Sequence[float] = DEFAULT_CUTS) -> pd.Series:
    """Tier of each customer, with tier sizes that depend on the number of customers only.

    Customers are ranked by value, highest first; ties (and missing values, ranked last) are
    broken by customer id (as text) in ascending order, so the ranking is total and
    deterministic. The cumulative cut points become cumulative counts by rounding half up,
    ``k_j = floor(n * cut_j + 1/2)`` (see :func:`tier_sizes`): the first ``k_1`` ranked
    customers are platinum, the next ``k_2 - k_1`` gold, the next ``k_3 - k_2`` iron, the rest
    lead. 1,000 customers give exactly 10/40/150/800 even when all values are equal; with fewer
    than 50 customers platinum may be empty.

    Args:
        values: value per customer (CLV or trailing margin), indexed by customer id.
        cuts: cumulative shares for platinum, gold and iron (``TierSettings`` order).

    Returns:
        Ordered categorical of tier names (platinum > gold > iron > lead), aligned with values.
    """
    sizes = tier_sizes(len(values), cuts)
    limits = np.cumsum([sizes[t] for t in TIERS])
    ranks = rank_customers(values).to_numpy()
    codes = np.searchsorted(limits, ranks, side="right")
    dtype = pd.CategoricalDtype(list(reversed(TIERS)), ordered=True)
    names = np.asarray(TIERS, dtype=object)[codes]
    return pd.Series(pd.Categorical(names, dtype=dtype), index=values.index, name="tier")


def tier_value_shares(values: pd.Series, tiers: pd.Series) -> pd.DataFrame:
    """Customers and value per tier, with their shares of the total.

    Args:
        values: value per customer.
        tiers: tier per customer, as returned by :func:`assign_tiers`.

    Returns:
        One row per tier (platinum first) with ``customers``, ``customer_share``, ``value``
        and ``value_share`` (missing values count as 0; shares are of the total, which may be
        reduced by negative values).
    """
    frame = pd.DataFrame({"value": values.astype(float).fillna(0.0), "tier": tiers})
    grouped = frame.groupby("tier", observed=False)["value"]
    table = pd.DataFrame({"customers": grouped.size(), "value": grouped.sum()})
    table = table.reindex(list(TIERS))
    table.index = pd.Index(list(TIERS), name="tier")
    total_value = table["value"].sum()
    table["customer_share"] = table["customers"] / max(len(frame), 1)
    table["value_share"] = table["value"] / total_value if total_value else np.nan
    return table[["customers", "customer_share", "value", "value_share"]]
