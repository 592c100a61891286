"""The acceptance model: P(accept | offer, channel, segment, tier, customer features), learned
from answered decisions.

Hierarchical pseudo-counts: the catalog's `p_accept` is a prior worth `offer_strength` answers;
each offer's answers move it to a per-offer rate; that rate is in turn the prior (worth
`cell_strength` answers) of each offer x channel x segment cell, which its own answers move. With
no answers at all the catalog's prior is served unchanged; as answers grow the cells speak for
themselves. Once an offer has `contextual_min_answers` answers, a contextual level (XGBoost on
the customer's features, offer, channel, tier and segment: `models.acceptance_context`) speaks
for it too, blended with the cell's estimate by weight n / (n + `contextual_strength`) for its n
answers, so thin evidence stays near the counts. Every prediction says what it rests on (the
`evidence`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from models.acceptance_context import ContextualLevel

ARTIFACT = "acceptance_model"
"""The JSON artifact's name in the registered pyfunc."""

Cell = tuple[str, str, str]
"""(offer id, channel, segment) with the segment as text ('?' unknown)."""


@dataclass(frozen=True)
class Answer:
    """One answered primary action: which offer, where, for whom, accepted or not.

    Attributes:
        features: the customer features the decision read (the contextual level's input).
    """

    offer_id: str
    channel: str
    segment: str
    accepted: bool
    tier: str | None = None
    features: Mapping[str, Any] | None = None


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
        contextual_min_answers: answers an offer needs before the contextual level speaks for it
            (0: no contextual level).
        contextual_strength: how many answers the cell estimate is worth against it.
        offers_: offer id -> (accepted, answered).
        cells_: (offer, channel, segment) -> (accepted, answered).
        context_: the contextual level (None: not enough answers yet, or switched off).
    """

    offer_strength: float = 50.0
    cell_strength: float = 30.0
    contextual_min_answers: int = 300
    contextual_strength: float = 300.0
    offers_: dict[str, tuple[int, int]] = field(default_factory=dict)
    cells_: dict[Cell, tuple[int, int]] = field(default_factory=dict)
    context_: ContextualLevel | None = None

    def fit(self, answers: Iterable[Answer], seed: int = 0) -> AcceptanceModel:
        """Count accepted and answered per offer and per cell, then fit the contextual level on
        the offers with enough answers (answers in time order); returns self."""
        rows = list(answers)
        self._count(rows)
        enough = {o for o, (_, n) in self.offers_.items() if 0 < self.contextual_min_answers <= n}
        chosen = [a for a in rows if a.offer_id in enough]
        self.context_ = (
            ContextualLevel.fit(
                _categories(chosen),
                [a.features for a in chosen],
                [a.accepted for a in chosen],
                seed,
            )
            if chosen
            else None
        )
        return self

    def counts_only(self) -> AcceptanceModel:
        """The same model without its contextual level (the baseline it is judged against)."""
        return replace(self, context_=None)

    def _count(self, answers: Iterable[Answer]) -> None:
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

    @property
    def answers(self) -> int:
        """Answers the model learned from."""
        return sum(n for _, n in self.offers_.values())

    def predict(
        self,
        offer_id: str,
        channel: str,
        segment: Any,
        prior: float,
        features: Mapping[str, Any] | None = None,
    ) -> tuple[float, str]:
        """P(accept) of an offer for a customer of `segment` on `channel`, and its evidence."""
        return self.predict_many([offer_id], channel, segment, [prior], features)[0]

    def predict_many(
        self,
        offer_ids: Sequence[str],
        channel: str,
        segment: Any,
        priors: Sequence[float],
        features: Mapping[str, Any] | None = None,
    ) -> list[tuple[float, str]]:
        """P(accept) and evidence of several offers for one customer on one channel."""
        out = [
            self._counted(o, channel, segment, p) for o, p in zip(offer_ids, priors, strict=True)
        ]
        context = self.context_
        if context is None or features is None:
            return out
        spoken = [i for i, o in enumerate(offer_ids) if o in context.answers]
        if not spoken:
            return out
        fixed = {
            "channel": channel,
            "tier": _text(features.get("tier")),
            "segment": segment_key(segment),
        }
        learned = context.predict_customer([offer_ids[i] for i in spoken], fixed, features)
        for i, p_context in zip(spoken, learned, strict=True):
            out[i] = self._blend(offer_ids[i], out[i], float(p_context))
        return out

    def _counted(
        self, offer_id: str, channel: str, segment: Any, prior: float
    ) -> tuple[float, str]:
        """The pseudo-count estimate and its evidence."""
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

    def _blend(
        self, offer_id: str, counted: tuple[float, str], p_context: float
    ) -> tuple[float, str]:
        """The cell estimate moved towards the contextual one by the offer's evidence."""
        assert self.context_ is not None
        n = self.context_.answers[offer_id]
        weight = n / (n + self.contextual_strength)
        p = (1 - weight) * counted[0] + weight * p_context
        evidence = (
            f"{counted[1]} -> {counted[0]:.3f}; contextual model (XGBoost on customer features, "
            f"{n} answers of this offer) {p_context:.3f}, weight {weight:.2f}"
        )
        return p, evidence

    def for_customer(
        self,
        priors: Mapping[str, float],
        channel: str,
        segment: Any,
        features: Mapping[str, Any] | None = None,
    ) -> dict[str, tuple[float, str]]:
        """P(accept) and evidence of every offer with answers, for one customer and channel.

        Offers without answers are left out: the policy keeps the catalog's prior for them
        (with its cross-sell lift).
        """
        offers = [o for o in priors if o in self.offers_]
        predicted = self.predict_many(
            offers, channel, segment, [priors[o] for o in offers], features
        )
        return dict(zip(offers, predicted, strict=True))

    def acceptance(
        self,
        customer_id: str,
        features: Mapping[str, Any],
        channel: str,
        priors: Mapping[str, float],
    ) -> dict[str, tuple[float, str]]:
        """The serving protocol: `for_customer` on the customer's segment and features."""
        return self.for_customer(priors, channel, features.get("segment_id"), features)

    def scores(self, customer_id: str, features: Any) -> dict[str, Any]:
        """No customer-level score field (the service asks `for_customer` per decision)."""
        return {}

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe state."""
        return {
            "offer_strength": self.offer_strength,
            "cell_strength": self.cell_strength,
            "contextual_min_answers": self.contextual_min_answers,
            "contextual_strength": self.contextual_strength,
            "offers": {k: list(v) for k, v in self.offers_.items()},
            "cells": [[*k, a, n] for k, (a, n) in self.cells_.items()],
            "context": None if self.context_ is None else self.context_.to_dict(),
        }

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> AcceptanceModel:
        """The model `to_dict` saved."""
        model = cls(
            float(state["offer_strength"]),
            float(state["cell_strength"]),
            int(state.get("contextual_min_answers", 0)),
            float(state.get("contextual_strength", 0.0)),
        )
        model.offers_ = {k: (int(v[0]), int(v[1])) for k, v in state["offers"].items()}
        model.cells_ = {(o, ch, s): (int(a), int(n)) for o, ch, s, a, n in state["cells"]}
        context = state.get("context")
        model.context_ = None if context is None else ContextualLevel.from_dict(context)
        return model


def predict_rows(
    model: AcceptanceModel,
    offers: Iterable[Any],
    channels: Iterable[Any],
    segments: Iterable[Any],
    priors: Iterable[Any],
    features: Iterable[Mapping[str, Any] | None] | None = None,
) -> list[float]:
    """P(accept) of rows given column by column (`features`: each row's customer features)."""
    o, c, s, p = (list(x) for x in (offers, channels, segments, priors))
    counted = [
        model._counted(str(oi), str(ci), si, float(pi))
        for oi, ci, si, pi in zip(o, c, s, p, strict=True)
    ]
    out = [value for value, _ in counted]
    context = model.context_
    if context is None or features is None:
        return out
    rows = list(features)
    spoken = [i for i, oi in enumerate(o) if str(oi) in context.answers and rows[i] is not None]
    if not spoken:
        return out
    categories = {
        "offer_id": [str(o[i]) for i in spoken],
        "channel": [str(c[i]) for i in spoken],
        "tier": [_text((rows[i] or {}).get("tier")) for i in spoken],
        "segment": [segment_key(s[i]) for i in spoken],
    }
    learned = context.predict(categories, [rows[i] for i in spoken])
    for i, p_context in zip(spoken, learned, strict=True):
        out[i] = model._blend(str(o[i]), counted[i], float(p_context))[0]
    return out


def load_champion(artifact: Any) -> AcceptanceModel:
    """The champion loader (spec `acceptance`): the JSON artifact as an `AcceptanceModel`."""
    import json

    path = artifact.artifact(ARTIFACT)
    return AcceptanceModel.from_dict(json.loads(path.read_text(encoding="utf-8")))


def _cell(answer: Answer) -> Cell:
    return (answer.offer_id, answer.channel, segment_key(answer.segment))


def _text(value: Any) -> str:
    return "?" if value is None or value != value else str(value)


def _categories(answers: Sequence[Answer]) -> dict[str, list[str]]:
    """The contextual level's categorical inputs of each answer."""
    return {
        "offer_id": [a.offer_id for a in answers],
        "channel": [a.channel for a in answers],
        "tier": [_text(a.tier) for a in answers],
        "segment": [segment_key(a.segment) for a in answers],
    }
