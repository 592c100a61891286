"""The sample bank's hidden acceptance truth: P(accept | offer, channel, need segment, customer).

    logit P = b[offer] + u[offer, channel] + v[offer, need segment]
              + g[offer] * z(rate sensitivity) + h[offer] * z(log wealth)

The effects are seeded normal draws; `b_offer` is then set (by bisection) so that the truth's
average over the bank's customers and the offer's channels equals the catalog's `p_accept`: the
static catalog policy is right on average, and learning wins only by telling customers, channels
and segments apart. Kept with the generator's other ground truth
(`<truth_dir>/sample_bank/acceptance_truth.json`) and read only by evaluation (the simulator).

How spread out (the assumptions, model 2): response rates in real marketing differ several-fold
between the best and worst segment or channel, and response models on customer features reach
a ROC-AUC near 0.7-0.8, not 0.95. So the effects' standard deviations on the logit scale are
0.6 (channel: the best of four channels about 3x the worst), 0.8 (need segment: best of five
about 6x the worst) and 0.4 for each customer trait (rate sensitivity; wealth, which the
customer's balances reveal to a model), about 1.2 in all. Model 1 (channel 1.2, segment 2.0,
sensitivity 0.8, 2.5 in all) put an offer's 90th-percentile customer 10 to 1,000 times above
its 10th and the best segment up to thousands of times above the worst: beyond anything
marketing measures. A kept truth of another model is drawn again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.offers import Catalog

TRUTH_FILE = "acceptance_truth.json"
CUSTOMERS_TRUTH = "customers_truth.parquet"
MODEL = 2
"""The truth's model (see above); a kept truth of another model is drawn again."""
CHANNEL_SD = 0.6
SEGMENT_SD = 0.8
SENSITIVITY_SD = 0.4
WEALTH_SD = 0.4


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-x)), dtype=float)


@dataclass
class AcceptanceTruth:
    """The hidden truth's parameters and the customers it knows."""

    base: dict[str, float]
    channel: dict[str, dict[str, float]]
    segment: dict[str, dict[str, float]]
    slope: dict[str, float]
    wealth: dict[str, float]
    customers: dict[str, tuple[str, float, float]]  # id -> (segment, z sensitivity, z wealth)

    def probability(self, offer_id: str, channel: str, customer_id: str) -> float:
        """P(accept) of one offer for one customer on one channel (catalog-unknown offer: 0)."""
        if offer_id not in self.base:
            return 0.0
        segment, z, w = self.customers.get(customer_id, ("?", 0.0, 0.0))
        logit = (
            self.base[offer_id]
            + self.channel[offer_id].get(channel, 0.0)
            + self.segment[offer_id].get(segment, 0.0)
            + self.slope[offer_id] * z
            + self.wealth[offer_id] * w
        )
        return float(1.0 / (1.0 + np.exp(-logit)))

    def acceptance(
        self, customer_id: str, features: Any, channel: str, priors: Mapping[str, float]
    ) -> dict[str, tuple[float, str]]:
        """The oracle's P(accept) of every offer (the runtime's acceptance-model protocol)."""
        return {
            o: (self.probability(o, channel, customer_id), "oracle: the hidden truth")
            for o in priors
        }

    def scores(self, customer_id: str, features: Any) -> dict[str, Any]:
        """No score fields."""
        return {}

    def to_dict(self) -> dict[str, Any]:
        """JSON state (customers are re-read from the customers truth)."""
        return {
            "model": MODEL,
            "base": self.base,
            "channel": self.channel,
            "segment": self.segment,
            "slope": self.slope,
            "wealth": self.wealth,
        }


def draw_truth(
    catalog: Catalog, customers_truth: pd.DataFrame, seed: int = 2026
) -> AcceptanceTruth:
    """Draw the effects and calibrate each offer's base to its catalog `p_accept`."""
    rng = np.random.default_rng(seed)
    segments = sorted(customers_truth["true_segment"].astype(str).unique())
    seg = customers_truth["true_segment"].astype(str).to_numpy()
    z, w = _traits(customers_truth)
    truth = AcceptanceTruth({}, {}, {}, {}, {}, _customers(customers_truth, z, w))
    for offer in catalog.offers:
        channel = {c: float(rng.normal(0, CHANNEL_SD)) for c in offer.channels}
        segment = {s: float(rng.normal(0, SEGMENT_SD)) for s in segments}
        slope = float(rng.normal(0, SENSITIVITY_SD))
        wealth = float(rng.normal(0, WEALTH_SD))
        per_customer = np.array([segment[s] for s in seg]) + slope * z + wealth * w
        grid = np.add.outer(per_customer, np.array(list(channel.values())))
        low, high = -15.0, 15.0
        for _ in range(60):  # bisection: the mean over customers and channels is monotone in b
            mid = (low + high) / 2
            if _sigmoid(grid + mid).mean() < offer.p_accept:
                low = mid
            else:
                high = mid
        truth.base[offer.id] = (low + high) / 2
        truth.channel[offer.id] = channel
        truth.segment[offer.id] = segment
        truth.slope[offer.id] = slope
        truth.wealth[offer.id] = wealth
    return truth


def _standardised(values: np.ndarray) -> np.ndarray:
    return np.asarray((values - values.mean()) / (values.std() or 1.0), dtype=float)


def _traits(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Standardised rate sensitivity and log wealth (0 where the bank has no wealth trait)."""
    z = _standardised(frame["rate_sensitivity"].to_numpy(dtype=float))
    if "wealth" not in frame:
        return z, np.zeros(len(frame))
    wealth = np.log1p(np.clip(frame["wealth"].to_numpy(dtype=float), 0.0, None))
    return z, _standardised(wealth)


def _customers(
    frame: pd.DataFrame, z: np.ndarray, w: np.ndarray
) -> dict[str, tuple[str, float, float]]:
    ids = frame["customer_id"].astype(str).tolist()
    segs = frame["true_segment"].astype(str).tolist()
    return {c: (s, float(a), float(b)) for c, s, a, b in zip(ids, segs, z, w, strict=True)}


def mean_by_offer(truth: AcceptanceTruth, catalog: Catalog) -> dict[str, float]:
    """Each offer's truth averaged over the bank's customers and its channels."""
    out = {}
    for offer in catalog.offers:
        values = [
            truth.probability(offer.id, ch, c) for c in truth.customers for ch in offer.channels
        ]
        out[offer.id] = float(np.mean(values))
    return out


def load_or_draw(truth_folder: Path, catalog: Catalog, seed: int = 2026) -> AcceptanceTruth:
    """The kept truth (drawn and written beside the customers truth the first time, or when
    the kept one is of another model).

    Raises:
        FileNotFoundError: no customers truth: the data is not the generated sample bank.
    """
    customers_truth = pd.read_parquet(truth_folder / CUSTOMERS_TRUTH)
    path = truth_folder / TRUTH_FILE
    state = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    if state.get("model") == MODEL:
        z, w = _traits(customers_truth)
        return AcceptanceTruth(
            state["base"],
            state["channel"],
            state["segment"],
            state["slope"],
            state["wealth"],
            _customers(customers_truth, z, w),
        )
    truth = draw_truth(catalog, customers_truth, seed)
    staging = path.with_suffix(".tmp")
    staging.write_text(json.dumps(truth.to_dict(), indent=1), encoding="utf-8")
    staging.replace(path)
    return truth
