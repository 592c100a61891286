"""The acceptance model's levels: pseudo-counts, then XGBoost on customer features."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import log_loss

from models.acceptance import AcceptanceModel, Answer, predict_rows

pytestmark = pytest.mark.unit


def _answers(n: int, seed: int) -> list[Answer]:
    """Offer 'a' is accepted by 40% of customers with deposits over 50,000 and by 5% of the
    others, in one channel and one segment: only the customer's features tell them apart.
    Offer 'b' has too few answers for the contextual level."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        deposits = float(rng.lognormal(10.5, 1.0))
        features = {
            "total_deposits": deposits,
            "logins_30d": int(rng.integers(0, 20)),
            "tier": "iron",
        }
        rate = 0.40 if deposits > 50_000 else 0.05
        offer = "b" if i % 20 == 0 else "a"
        out.append(Answer(offer, "web", "1", bool(rng.random() < rate), "iron", features))
    return out


def test_the_contextual_level_learns_what_the_cells_cannot_see_and_beats_them_on_new_answers() -> (
    None
):
    model = AcceptanceModel(contextual_min_answers=300).fit(_answers(3000, seed=1))
    assert model.context_ is not None and set(model.context_.answers) == {"a"}  # 'b': 150
    held_out = [a for a in _answers(1000, seed=2) if a.offer_id == "a"]
    y = [a.accepted for a in held_out]

    def predicted(m: AcceptanceModel) -> list[float]:
        return predict_rows(
            m,
            [a.offer_id for a in held_out],
            [a.channel for a in held_out],
            [a.segment for a in held_out],
            [0.1] * len(held_out),
            [a.features for a in held_out],
        )

    contextual, counts = log_loss(y, predicted(model)), log_loss(y, predicted(model.counts_only()))
    assert contextual < counts - 0.02  # the baseline, measured on the same answers
    rich, poor = (
        {"total_deposits": 200_000.0, "logins_30d": 3, "tier": "iron"},
        {
            "total_deposits": 2_000.0,
            "logins_30d": 3,
            "tier": "iron",
        },
    )
    p_rich, evidence = model.predict("a", "web", 1, 0.1, rich)
    p_poor, _ = model.predict("a", "web", 1, 0.1, poor)
    assert p_rich > 2 * p_poor and "contextual model (XGBoost" in evidence
    _, evidence_b = model.predict("b", "web", 1, 0.1, rich)
    assert "contextual" not in evidence_b  # below the threshold: the counts alone


def test_the_contextual_level_survives_the_json_artifact_and_is_off_at_zero() -> None:
    answers = _answers(1500, seed=3)
    model = AcceptanceModel(contextual_min_answers=300).fit(answers)
    again = AcceptanceModel.from_dict(json.loads(json.dumps(model.to_dict())))
    features = answers[0].features
    assert again.predict("a", "web", 1, 0.1, features) == model.predict(
        "a", "web", 1, 0.1, features
    )
    assert AcceptanceModel(contextual_min_answers=0).fit(answers).context_ is None


def test_the_request_path_gives_what_the_batch_path_gives() -> None:
    model = AcceptanceModel(contextual_min_answers=100).fit(_answers(2500, seed=4))
    features = {"total_deposits": 80_000.0, "logins_30d": 2, "tier": "gold"}
    one = model.predict_many(["a", "b", "zz"], "web", 1, [0.1, 0.2, 0.3], features)
    rows = predict_rows(
        model, ["a", "b", "zz"], ["web"] * 3, [1] * 3, [0.1, 0.2, 0.3], [features] * 3
    )
    assert [p for p, _ in one] == pytest.approx(rows, abs=1e-7)
    assert one[2] == (0.3, "catalog prior 0.300 (no answers yet)")
