"""The simulator's hidden acceptance truth: right on average per offer, different per customer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.offers import load_catalog
from simulation.truth import draw_truth, mean_by_offer

pytestmark = pytest.mark.unit


def test_the_truth_averages_to_the_catalog_prior_and_tells_customers_apart() -> None:
    rng = np.random.default_rng(0)
    customers = pd.DataFrame(
        {
            "customer_id": [f"C{i}" for i in range(600)],
            "true_segment": rng.choice(["savers", "families", "retirees"], 600),
            "rate_sensitivity": rng.gamma(2.0, 1.0, 600),
        }
    )
    catalog = load_catalog()
    truth = draw_truth(catalog, customers, seed=3)
    means = mean_by_offer(truth, catalog)
    for offer in catalog.offers:
        assert means[offer.id] == pytest.approx(offer.p_accept, abs=1e-6)
    offer = catalog.offers[0]
    spread = [
        truth.probability(offer.id, ch, c) for c in ("C0", "C1", "C2") for ch in offer.channels
    ]
    assert max(spread) - min(spread) > 0.05  # channels and customers differ
    assert truth.probability("not_an_offer", "web", "C0") == 0.0
