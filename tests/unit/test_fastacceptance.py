"""The acceptance model's compiled trees score as its XGBoost booster does."""

from __future__ import annotations

import numpy as np
import pytest

from models.acceptance import AcceptanceModel, Answer
from serving.fastacceptance import compiled

pytestmark = pytest.mark.unit


def _answers(n: int, seed: int) -> list[Answer]:
    """Acceptance by deposits, logins and channel; some features missing."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        deposits = float(rng.lognormal(10.5, 1.0))
        logins = int(rng.integers(0, 20))
        channel = ("web", "atm", "branch")[i % 3]
        logit = -2.5 + 1.2 * (deposits > 50_000) + 0.08 * logins + 0.5 * (channel == "web")
        features: dict[str, object] = {
            "total_deposits": None if i % 11 == 0 else deposits,
            "logins_30d": logins,
            "has_mortgage": bool(i % 4 == 0),
            "tier": ("iron", "gold")[i % 2],
        }
        accepted = bool(rng.random() < 1 / (1 + np.exp(-logit)))
        out.append(Answer(("a", "b")[i % 2], channel, str(i % 4), accepted, None, features))
    return out


def test_compiled_trees_give_the_boosters_probabilities_within_1e6() -> None:
    model = AcceptanceModel(contextual_min_answers=100).fit(_answers(4000, seed=1))
    level = model.context_
    assert level is not None and level.booster.num_boosted_rounds() > 5
    rows = _answers(500, seed=2)
    categories = {
        "offer_id": [a.offer_id for a in rows],
        "channel": [a.channel for a in rows],
        "tier": [str(a.features["tier"]) for a in rows],  # type: ignore[index]
        "segment": [a.segment for a in rows],
    }
    features = [a.features for a in rows]
    reference = level.predict(categories, features)
    one = rows[0].features or {}
    fixed = {"channel": "web", "tier": "gold", "segment": "3"}
    reference_one = level.predict_customer(["a", "b", "zz"], fixed, one)
    compiled(model)
    assert level.fast is not None
    assert np.abs(level.predict(categories, features) - reference).max() < 1e-6
    fast_one = level.predict_customer(["a", "b", "zz"], fixed, one)
    assert np.abs(fast_one - reference_one).max() < 1e-6
