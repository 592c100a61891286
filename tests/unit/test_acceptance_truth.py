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
    customers["wealth"] = rng.lognormal(10, 1.5, 600)
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


def test_traffic_follows_each_customers_engagement_by_channel() -> None:
    from simulation.run import interaction_pool

    features = {
        "C1": {"logins_90d": 8, "calls_90d": 0, "branch_visits_90d": 2},
        "C2": {"logins_90d": 0, "calls_90d": 2, "branch_visits_90d": 0},
    }
    pool, weights = interaction_pool(features, ["mobile", "web", "call_center", "branch"])
    share = dict(zip(pool, weights, strict=True))
    assert share[("C1", "mobile")] == pytest.approx(4 / 12)  # logins split mobile / web
    assert share[("C2", "call_center")] == pytest.approx(2 / 12)
    assert share[("C2", "mobile")] == 0.0
    _, uniform = interaction_pool({"C1": {}, "C2": None}, ["web", "atm"])
    assert uniform.tolist() == [0.25] * 4  # no engagement counts: every pair alike
