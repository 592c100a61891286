"""The acceptance model's contextual level: XGBoost on customer features, offer, channel, tier
and segment.

One classifier for every offer with enough answers: the customer's numeric features as the
policy read them (holdings, balances, activity, scores), one-hot offer, channel, tier and need
segment, so trees can split an offer's acceptance by what the counts cannot see (wealth,
engagement within a segment). `models.acceptance` blends it with the pseudo-count estimate,
weighted by how many answers the offer has, so thin evidence stays near the counts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xgboost as xgb
from numpy.typing import NDArray

CATEGORIES = ("offer_id", "channel", "tier", "segment")
"""The categorical inputs, one-hot encoded (an unseen value: all zeros)."""
PARAMS = {
    "objective": "binary:logistic",
    "eval_metric": "logloss",
    "max_depth": 3,
    "eta": 0.1,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "min_child_weight": 5.0,
    "tree_method": "hist",
    "nthread": 1,
}
"""Shallow, regularised trees: answers are few and noisy, and serving predicts on one thread."""
MAX_ROUNDS = 300
EARLY_STOPPING = 20
VALIDATION_SHARE = 0.2
"""The latest share of the training answers that stops the boosting (time order kept)."""
MIN_POSITIVES = 30
"""Fewer accepted answers than this among the contextual offers: no contextual level."""

CELL_STRENGTH = 30.0
"""The baseline's shrinkage of a cell's rate to its offer's (as the pseudo-count level)."""

Row = Mapping[str, Any]


def _log_loss(y: NDArray[np.float64], p: NDArray[np.float64]) -> float:
    q = np.clip(p, 1e-6, 1 - 1e-6)
    return float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)))


def _cell_rates(
    categories: Mapping[str, Sequence[str]], cut: int, labels: NDArray[np.float64]
) -> NDArray[np.float64]:
    """The rows after `cut` scored by the offer x channel x segment rates of the rows before."""
    offers: dict[str, list[float]] = {}
    cells: dict[tuple[str, str, str], list[float]] = {}
    keys = list(
        zip(categories["offer_id"], categories["channel"], categories["segment"], strict=True)
    )
    for key, y in zip(keys[:cut], labels[:cut], strict=True):
        for counts in (offers.setdefault(key[0], [0.0, 0.0]), cells.setdefault(key, [0.0, 0.0])):
            counts[0] += y
            counts[1] += 1
    overall = float(labels[:cut].mean()) if cut else 0.5
    out = []
    for key in keys[cut:]:
        accepted, answered = offers.get(key[0], [0.0, 0.0])
        offer_rate = (accepted + overall) / (answered + 1)
        cell_accepted, cell_answered = cells.get(key, [0.0, 0.0])
        out.append((offer_rate * CELL_STRENGTH + cell_accepted) / (CELL_STRENGTH + cell_answered))
    return np.asarray(out, dtype=float)


def _number(value: Any) -> float:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and math.isfinite(float(value)):
        return float(value)
    return math.nan


def numeric_names(rows: Sequence[Row | None]) -> tuple[str, ...]:
    """Feature names whose every present value is a number or a bool (text is left out)."""
    seen: dict[str, bool] = {}
    for row in rows:
        for name, value in (row or {}).items():
            if value is None:
                continue
            numeric = isinstance(value, bool | int | float)
            seen[name] = seen.get(name, True) and numeric
    return tuple(sorted(name for name, ok in seen.items() if ok))


@dataclass
class ContextualLevel:
    """A fitted XGBoost acceptance classifier and its encoding.

    Attributes:
        booster: the trees.
        numeric: the numeric feature names, in column order.
        vocab: per categorical input, its known values, in column order.
        answers: offer id -> answers it learned from (the offers it speaks for).
        fast: scores an input matrix instead of the booster (the service sets its compiled
            trees, `serving.fastacceptance`); None: the booster scores.
    """

    booster: xgb.Booster
    numeric: tuple[str, ...]
    vocab: dict[str, tuple[str, ...]]
    answers: dict[str, int]
    fast: Callable[[NDArray[np.float32]], NDArray[np.float64]] | None = None

    @classmethod
    def fit(
        cls,
        categories: Mapping[str, Sequence[str]],
        features: Sequence[Row | None],
        accepted: Sequence[bool],
        seed: int = 0,
    ) -> ContextualLevel | None:
        """Fit on answers in time order; None when too few accepted answers to learn from, or
        when on the latest `VALIDATION_SHARE` of them it is no better (log loss) than the
        offer x channel x segment rates of the earlier answers (shrunk to the offer's rate
        with `CELL_STRENGTH` answers): then the counts alone serve.

        Args:
            categories: per name of `CATEGORIES`, one value per answer.
            features: the customer features each answered decision read.
            accepted: the answers.
            seed: XGBoost's seed.
        """
        labels = np.asarray(accepted, dtype=float)
        if labels.sum() < MIN_POSITIVES or (1 - labels).sum() < MIN_POSITIVES:
            return None
        offers = list(categories["offer_id"])
        level = cls(
            xgb.Booster(),
            numeric_names(features),
            {name: tuple(sorted(set(categories[name]))) for name in CATEGORIES},
            {o: offers.count(o) for o in set(offers)},
        )
        x = level.encode(categories, features)
        cut = int(len(labels) * (1 - VALIDATION_SHARE))
        train = xgb.DMatrix(x[:cut], label=labels[:cut])
        valid = xgb.DMatrix(x[cut:], label=labels[cut:])
        level.booster = xgb.train(
            {**PARAMS, "seed": seed},
            train,
            num_boost_round=MAX_ROUNDS,
            evals=[(valid, "valid")],
            early_stopping_rounds=EARLY_STOPPING,
            verbose_eval=False,
        )
        best = level.booster.best_iteration + 1
        level.booster = level.booster[:best]  # keep the trees up to the best round
        learned = np.asarray(level.booster.inplace_predict(x[cut:]), dtype=float)
        baseline = _cell_rates(categories, cut, labels)
        if _log_loss(labels[cut:], learned) >= _log_loss(labels[cut:], baseline):
            return None  # no better than the counts on the answers it did not learn from
        return level

    def encode(
        self, categories: Mapping[str, Sequence[str]], features: Sequence[Row | None]
    ) -> NDArray[np.float32]:
        """The model's input matrix: numeric features, then one-hot categories."""
        n = len(features)
        numeric = np.array(
            [[_number((row or {}).get(name)) for name in self.numeric] for row in features],
            dtype=np.float32,
        ).reshape(n, len(self.numeric))
        parts = [numeric]
        for name in CATEGORIES:
            known = self.vocab[name]
            index = {value: i for i, value in enumerate(known)}
            onehot = np.zeros((n, len(known)), dtype=np.float32)
            for row, value in enumerate(categories[name]):
                column = index.get(value)
                if column is not None:
                    onehot[row, column] = 1.0
            parts.append(onehot)
        return np.hstack(parts)

    def predict(
        self, categories: Mapping[str, Sequence[str]], features: Sequence[Row | None]
    ) -> NDArray[np.float64]:
        """P(accept) of each row."""
        x = self.encode(categories, features)
        if x.shape[0] == 0:
            return np.zeros(0)
        return self._scored(x)

    def _scored(self, x: NDArray[np.float32]) -> NDArray[np.float64]:
        if self.fast is not None:
            return self.fast(x)
        return np.asarray(self.booster.inplace_predict(x), dtype=float)

    def predict_customer(
        self, offer_ids: Sequence[str], fixed: Mapping[str, str], features: Row
    ) -> NDArray[np.float64]:
        """P(accept) of several offers for one customer (the request path: the customer's
        features are encoded once). `fixed`: channel, tier and segment."""
        numeric = np.array([_number(features.get(name)) for name in self.numeric], np.float32)
        x = np.zeros((len(offer_ids), self._width()), dtype=np.float32)
        x[:, : len(numeric)] = numeric
        start = len(numeric)
        for name in CATEGORIES:
            known = self._index(name)
            if name == "offer_id":
                for row, offer in enumerate(offer_ids):
                    column = known.get(offer)
                    if column is not None:
                        x[row, start + column] = 1.0
            else:
                column = known.get(fixed[name])
                if column is not None:
                    x[:, start + column] = 1.0
            start += len(known)
        return self._scored(x)

    def _width(self) -> int:
        return len(self.numeric) + sum(len(v) for v in self.vocab.values())

    def _index(self, name: str) -> dict[str, int]:
        cache = self.__dict__.setdefault("_indexes", {})
        if name not in cache:
            cache[name] = {value: i for i, value in enumerate(self.vocab[name])}
        index: dict[str, int] = cache[name]
        return index

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe state (the trees in XGBoost's own JSON format)."""
        return {
            "booster": bytes(self.booster.save_raw("json")).decode("utf-8"),
            "numeric": list(self.numeric),
            "vocab": {k: list(v) for k, v in self.vocab.items()},
            "answers": self.answers,
        }

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> ContextualLevel:
        """The level `to_dict` saved."""
        booster = xgb.Booster(params={"nthread": 1})
        booster.load_model(bytearray(state["booster"].encode("utf-8")))
        return cls(
            booster,
            tuple(state["numeric"]),
            {k: tuple(v) for k, v in state["vocab"].items()},
            {k: int(v) for k, v in state["answers"].items()},
        )
