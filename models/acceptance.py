"""The acceptance model: P(accept | offer, channel, need segment), learned from answered decisions.

Hierarchical pseudo-counts: the catalog's `p_accept` is a prior worth `offer_strength` answers;
each offer's answers move it to a per-offer rate; that rate is in turn the prior (worth
`cell_strength` answers) of each offer x channel x segment cell, which its own answers move. With
no answers at all the catalog's prior is served unchanged; as answers grow the cells speak for
themselves. Every prediction says what it rests on (the `evidence`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

ARTIFACT = "acceptance_model"
"""The JSON artifact's name in the registered pyfunc."""

Cell = tuple[str, str, str]
"""(offer id, channel, segment) with the segment as text ('?' unknown)."""


@dataclass(frozen=True)
class Answer:
    """One answered primary action: which offer, where, for which segment, accepted or not."""

    offer_id: str
    channel: str
    segment: str
    accepted: bool


def segment_key(value: Any) -> str:
    """A segment id as the text the model keys on ('?' when missing)."""
    if value is None or value != value or value == "":
        return "?"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass
class AcceptanceModel:
    """Beta-binomial shrinkage from the catalog prior to offers, then to offer x channel x segment.

    Attributes:
        offer_strength: how many answers the catalog's prior is worth.
        cell_strength: how many answers an offer's rate is worth as a cell's prior.
        offers_: offer id -> (accepted, answered).
        cells_: (offer, channel, segment) -> (accepted, answered).
    """

    offer_strength: float = 50.0
    cell_strength: float = 30.0
    offers_: dict[str, tuple[int, int]] = field(default_factory=dict)
    cells_: dict[Cell, tuple[int, int]] = field(default_factory=dict)

    def fit(self, answers: Iterable[Answer]) -> AcceptanceModel:
        """Count accepted and answered per offer and per cell; returns self."""
        offers: dict[str, list[int]] = {}
        cells: dict[Cell, list[int]] = {}
        for answer in answers:
            for counts in (
                offers.setdefault(answer.offer_id, [0, 0]),
                cells.setdefault(_cell(answer), [0, 0]),
            ):
                counts[0] += int(answer.accepted)
                counts[1] += 1
        self.offers_ = {k: (a, n) for k, (a, n) in offers.items()}
        self.cells_ = {k: (a, n) for k, (a, n) in cells.items()}
        return self

    @property
    def answers(self) -> int:
        """Answers the model learned from."""
        return sum(n for _, n in self.offers_.values())

    def predict(self, offer_id: str, channel: str, segment: Any, prior: float) -> tuple[float, str]:
        """P(accept) of an offer for a customer of `segment` on `channel`, and its evidence."""
        accepted, answered = self.offers_.get(offer_id, (0, 0))
        if answered == 0:
            return prior, f"catalog prior {prior:.3f} (no answers yet)"
        m = self.offer_strength
        offer_rate = (prior * m + accepted) / (m + answered)
        seg = segment_key(segment)
        cell_accepted, cell_answered = self.cells_.get((offer_id, channel, seg), (0, 0))
        c = self.cell_strength
        p = (offer_rate * c + cell_accepted) / (c + cell_answered)
        evidence = (
            f"catalog prior {prior:.3f}; {accepted} of {answered} accepted overall -> "
            f"{offer_rate:.3f}; {cell_accepted} of {cell_answered} on {channel} in segment {seg}"
        )
        return p, evidence

    def for_customer(
        self, priors: Mapping[str, float], channel: str, segment: Any
    ) -> dict[str, tuple[float, str]]:
        """P(accept) and evidence of every offer with answers, for one customer and channel.

        Offers without answers are left out: the policy keeps the catalog's prior for them
        (with its cross-sell lift).
        """
        return {
            o: self.predict(o, channel, segment, p) for o, p in priors.items() if o in self.offers_
        }

    def acceptance(
        self,
        customer_id: str,
        features: Mapping[str, Any],
        channel: str,
        priors: Mapping[str, float],
    ) -> dict[str, tuple[float, str]]:
        """The serving protocol: `for_customer` on the customer's need segment."""
        return self.for_customer(priors, channel, features.get("segment_id"))

    def scores(self, customer_id: str, features: Any) -> dict[str, Any]:
        """No customer-level score field (the service asks `for_customer` per decision)."""
        return {}

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe state."""
        return {
            "offer_strength": self.offer_strength,
            "cell_strength": self.cell_strength,
            "offers": {k: list(v) for k, v in self.offers_.items()},
            "cells": [[*k, a, n] for k, (a, n) in self.cells_.items()],
        }

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> AcceptanceModel:
        """The model `to_dict` saved."""
        model = cls(float(state["offer_strength"]), float(state["cell_strength"]))
        model.offers_ = {k: (int(v[0]), int(v[1])) for k, v in state["offers"].items()}
        model.cells_ = {(o, ch, s): (int(a), int(n)) for o, ch, s, a, n in state["cells"]}
        return model


def predict_rows(
    model: AcceptanceModel,
    offers: Iterable[Any],
    channels: Iterable[Any],
    segments: Iterable[Any],
    priors: Iterable[Any],
) -> list[float]:
    """P(accept) of rows given column by column."""
    return [
        model.predict(str(o), str(c), s, float(p))[0]
        for o, c, s, p in zip(offers, channels, segments, priors, strict=True)
    ]


def load_champion(artifact: Any) -> AcceptanceModel:
    """The champion loader (spec `acceptance`): the JSON artifact as an `AcceptanceModel`."""
    import json

    path = artifact.artifact(ARTIFACT)
    return AcceptanceModel.from_dict(json.loads(path.read_text(encoding="utf-8")))


def _cell(answer: Answer) -> Cell:
    return (answer.offer_id, answer.channel, segment_key(answer.segment))
