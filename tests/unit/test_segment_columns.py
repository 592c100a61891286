"""Which columns need segments are built from on any data, and when a segmentation is refused."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from loyal.settings import SegmentSettings
from models.segments import NeedSegmenter
from training.segments import (
    category_mix,
    channel_mix,
    degenerate_reason,
    model_columns,
    product_groups,
)

pytestmark = pytest.mark.unit

RNG = np.random.default_rng(3)
CONFIG = SegmentSettings()


def behaviour(n: int = 60, **extra: object) -> pd.DataFrame:
    """RFM and basket columns as the feature views give them, plus `extra` columns."""
    frame = pd.DataFrame(
        {
            "recency_days": RNG.uniform(0, 300, n),
            "frequency_365d": RNG.integers(1, 30, n),
            "monetary_365d": RNG.lognormal(5, 1, n),
            "avg_basket_365d": RNG.lognormal(3, 0.5, n),
            "distinct_categories_365d": RNG.integers(1, 40, n),
            "spend_trend": RNG.uniform(-1, 1, n),
            "tenure_days": RNG.integers(30, 400, n),
            "age": np.nan,
        },
        index=pd.Index([f"c{i}" for i in range(n)], name="customer_id"),
    )
    for name, values in extra.items():
        frame[name] = values
    return frame


def test_a_large_catalog_without_categories_falls_back_to_behaviour() -> None:
    holdings = {f"holds_{22000 + i}": RNG.integers(0, 2, 60).astype(float) for i in range(30)}
    columns = model_columns(behaviour(**holdings), CONFIG)
    assert not any(c.startswith("holds_") for c in columns)  # never raw product codes
    assert "recency_days" in columns and "monetary_365d" in columns
    assert "age" not in columns  # unknown for everyone


def test_a_small_catalog_segments_on_holdings_channels_and_age() -> None:
    holdings = {f"holds_{name}": RNG.integers(0, 2, 60).astype(float) for name in "abcd"}
    frame = behaviour(
        **holdings, channel_web_share=RNG.uniform(0, 1, 60), age=RNG.integers(20, 80, 60)
    )
    columns = model_columns(frame, CONFIG)
    assert columns == [*[f"holds_{n}" for n in "abcd"], "channel_web_share", "age"]


def test_category_shares_replace_product_codes_of_a_small_catalog() -> None:
    holdings = {f"holds_P0{i}": RNG.integers(0, 2, 60).astype(float) for i in range(5)}
    frame = behaviour(**holdings, category_home_share=RNG.uniform(0, 1, 60))
    assert model_columns(frame, CONFIG) == ["category_home_share"]


def test_category_shares_replace_a_large_catalog() -> None:
    holdings = {f"holds_{i}": RNG.integers(0, 2, 60).astype(float) for i in range(30)}
    frame = behaviour(**holdings, category_home_share=RNG.uniform(0, 1, 60))
    assert model_columns(frame, CONFIG) == ["category_home_share"]


def test_one_product_gives_no_breadth_column() -> None:
    frame = behaviour(distinct_categories_365d=RNG.integers(0, 2, 60))
    assert "distinct_categories_365d" not in model_columns(frame, CONFIG)


def test_channel_mix_needs_two_recorded_channels() -> None:
    log = pd.DataFrame(
        {
            "customer_id": ["a", "a", "b"],
            "ts": pd.to_datetime(["2024-01-02", "2024-01-03", "2024-01-04"]),
            "channel": [None, None, None],
        }
    )
    snapshot = pd.Timestamp("2024-02-01")
    assert channel_mix(log, snapshot, 365).empty  # all blank: no channel is known
    assert channel_mix(log.assign(channel="web"), snapshot, 365).empty  # one channel says nothing
    mix = channel_mix(log.assign(channel=["web", "store", "web"]), snapshot, 365)
    assert mix.loc["a"].to_dict() == {"channel_store_share": 0.5, "channel_web_share": 0.5}


def test_product_groups_and_category_spend_shares() -> None:
    products = pd.DataFrame(
        {"product_id": ["p1", "p2", "p3"], "category": ["Home & Garden", "Home & Garden", "Food"]}
    )
    assert product_groups(products.assign(category=None)) is None
    assert product_groups(products.assign(category=["x", "y", "z"])) is None  # = the products
    groups = product_groups(products)
    assert groups is not None
    log = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "b"],
            "ts": pd.to_datetime(["2024-01-02"] * 4),
            "product_id": ["p1", "p3", "p3", "p2"],
            "amount": [30.0, 10.0, -5.0, 8.0],
        }
    )
    shares = category_mix(log, groups, pd.Timestamp("2024-02-01"), 365)
    assert shares.loc["a", "category_home_garden_share"] == pytest.approx(30 / 35)
    assert shares.loc["a", "category_food_share"] == pytest.approx(5 / 35)
    assert shares.loc["b", "category_home_garden_share"] == 1.0


def _fitted(frame: pd.DataFrame) -> tuple[NeedSegmenter, pd.Series]:
    model = NeedSegmenter(k_range=(2, 4), stability_runs=0, random_state=0).fit(frame)
    return model, pd.Series(model.labels_, index=frame.index)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # 2 points, k=4
def test_few_distinct_values_are_refused_as_degenerate() -> None:
    frame = pd.DataFrame({"holds_cd": np.repeat([0.0, 1.0], 50), "x": np.repeat([0.0, 1.0], 50)})
    model, labels = _fitted(frame)
    reason = degenerate_reason(model, frame, list(frame.columns), labels)
    assert reason is not None and "at every k" in reason


def test_id_columns_are_refused_and_real_behaviour_is_not() -> None:
    frame = behaviour(n=200)[["recency_days", "monetary_365d"]]
    model, labels = _fitted(frame)
    assert degenerate_reason(model, frame, list(frame.columns), labels) is None
    with_id = frame.assign(member_number=np.arange(200, dtype=float))
    model, labels = _fitted(with_id)
    reason = degenerate_reason(model, with_id, list(with_id.columns), labels)
    assert reason == "column 'member_number' looks like an id, not a need"
