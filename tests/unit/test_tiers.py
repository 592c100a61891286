"""Value tiers: exact sizes on ties, deterministic tie-breaks, value shares."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from loyal.settings import TierSettings
from models.tiers import TIERS, assign_tiers, rank_customers, tier_sizes, tier_value_shares

pytestmark = pytest.mark.unit


def _ids(n: int) -> list[str]:
    return [f"c{i:05d}" for i in range(n)]


def test_equal_values_still_give_exact_sizes() -> None:
    values = pd.Series(np.full(1000, 42.0), index=_ids(1000))
    counts = assign_tiers(values).value_counts()
    assert [counts[t] for t in TIERS] == [10, 40, 150, 800]


def test_ties_are_broken_by_customer_id_whatever_the_input_order() -> None:
    values = pd.Series([5.0, 5.0, 5.0, 1.0] * 50, index=_ids(200))
    tiers = assign_tiers(values)
    shuffled = values.sample(frac=1.0, random_state=3)
    assert assign_tiers(shuffled).reindex(tiers.index).equals(tiers)
    platinum = tiers[tiers == "platinum"].index.tolist()
    assert platinum == ["c00000", "c00001"]  # 200 x 1% = 2: the two smallest ids among the 5s


def test_higher_value_never_gets_a_lower_tier() -> None:
    rng = np.random.default_rng(0)
    values = pd.Series(rng.integers(0, 5, 777).astype(float), index=_ids(777))
    codes = assign_tiers(values).cat.codes  # lead 0 .. platinum 3
    order = values.sort_index().sort_values(ascending=False, kind="stable").index
    assert np.all(np.diff(codes[order].to_numpy()) <= 0)


def test_sizes_follow_round_half_up_of_cumulative_counts() -> None:
    assert tier_sizes(1000) == {"platinum": 10, "gold": 40, "iron": 150, "lead": 800}
    assert tier_sizes(300) == {"platinum": 3, "gold": 12, "iron": 45, "lead": 240}
    assert tier_sizes(50) == {"platinum": 1, "gold": 2, "iron": 7, "lead": 40}  # 0.5 rounds up
    assert tier_sizes(10) == {"platinum": 0, "gold": 1, "iron": 1, "lead": 8}
    assert all(sum(tier_sizes(n).values()) == n for n in range(0, 500))


def test_cuts_come_from_tier_settings() -> None:
    cuts = TierSettings(platinum=0.02, gold=0.10, iron=0.30)
    values = pd.Series(np.arange(100.0), index=_ids(100))
    counts = assign_tiers(values, (cuts.platinum, cuts.gold, cuts.iron)).value_counts()
    assert [counts[t] for t in TIERS] == [2, 8, 20, 70]


def test_missing_values_rank_last() -> None:
    values = pd.Series([np.nan, -3.0, 10.0], index=["a", "b", "c"])
    assert rank_customers(values).to_dict() == {"c": 0, "b": 1, "a": 2}


def test_bad_cuts_and_duplicate_ids_are_refused() -> None:
    with pytest.raises(ValueError, match="0 < platinum"):
        assign_tiers(pd.Series([1.0, 2.0]), (0.05, 0.01, 0.2))
    with pytest.raises(ValueError, match="unique"):
        assign_tiers(pd.Series([1.0, 2.0], index=["a", "a"]))


def test_value_shares_on_a_hand_computed_case() -> None:
    values = pd.Series(np.arange(1.0, 101.0), index=_ids(100))  # 1..100, total 5050
    table = tier_value_shares(values, assign_tiers(values))
    assert table["customers"].tolist() == [1, 4, 15, 80]
    assert table.loc["platinum", "value"] == 100.0
    assert table.loc["gold", "value"] == 99 + 98 + 97 + 96
    assert table.loc["platinum", "value_share"] == pytest.approx(100 / 5050)
    assert table["value_share"].sum() == pytest.approx(1.0)
    assert table["customer_share"].tolist() == [0.01, 0.04, 0.15, 0.80]
