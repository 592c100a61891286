"""Churn reasons in the data's words: what a business without categories or products hears."""

from __future__ import annotations

import pandas as pd
import pytest

from models.churn import template_sentence
from training.churn import absent_features, catalog_templates, data_wording

pytestmark = pytest.mark.unit

COLUMNS = ["distinct_categories_365d", "recency_days", "months_since_last_new_product", "holds_cd"]


def test_without_categories_breadth_is_worded_as_different_products() -> None:
    products = pd.DataFrame({"product_id": ["22086", "21232"], "category": [None, None]})
    templates = catalog_templates(COLUMNS, data_wording(products))
    sentence = template_sentence(templates)("distinct_categories_365d", 3.0)
    assert sentence == "bought 3 different products in the last year"
    with_categories = products.assign(category=["home", "garden"])
    templates = catalog_templates(COLUMNS, data_wording(with_categories))
    assert "categories" in template_sentence(templates)("distinct_categories_365d", 3.0)


def test_one_product_leaves_product_breadth_newness_and_holdings_out() -> None:
    frame = pd.DataFrame(columns=COLUMNS)
    one = pd.DataFrame({"product_id": ["cd"]})
    assert absent_features(frame, one) == [
        "distinct_categories_365d", "months_since_last_new_product", "holds_cd",
    ]  # fmt: skip
    assert absent_features(frame, pd.DataFrame({"product_id": ["savings", "mortgage"]})) == []
    codes = pd.DataFrame({"product_id": ["22423", "85123A"]})
    assert absent_features(frame, codes) == ["holds_cd"]  # holdings of codes cannot be worded
