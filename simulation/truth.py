"""The sample bank's hidden acceptance truth: P(accept | offer, channel, need segment, customer).

    logit P = b[offer] + u[offer, channel] + v[offer, need segment] + g[offer] * z(sensitivity)

The effects are seeded normal draws; `b_offer` is then set (by bisection) so that the truth's
average over the bank's customers and the offer's channels equals the catalog's `p_accept`: the
static catalog policy is right on average, and learning wins only by telling customers, channels
and segments apart. Kept with the generator's other ground truth
(`<truth_dir>/sample_bank/acceptance_truth.json`) and read only by evaluation (the simulator).
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
CHANNEL_SD = 1.2
SEGMENT_SD = 2.0
SENSITIVITY_SD = 0.8


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-x)), dtype=float)


@dataclass
class AcceptanceTruth:
    """The hidden truth's parameters and the customers it knows."""

    base: dict[str, float]
    channel: dict[str, dict[str, float]]
    segment: dict[str, dict[str, float]]
    slope: dict[str, float]
    customers: dict[str, tuple[str, float]]  # id -> (true segment, standardised sensitivity)

    def probability(self, offer_id: str, channel: str, customer_id: str) -> float:
        """P(accept) of one offer for one customer on one channel (catalog-unknown offer: 0)."""
        if offer_id not in self.base:
            return 0.0
        segment, z = self.customers.get(customer_id, ("?", 0.0))
        logit = (
            self.base[offer_id]
            + self.channel[offer_id].get(channel, 0.0)
            + self.segment[offer_id].get(segment, 0.0)
            + self.slope[offer_id] * z
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
            "base": self.base,
            "channel": self.channel,
            "segment": self.segment,
            "slope": self.slope,
        }


def draw_truth(
    catalog: Catalog, customers_truth: pd.DataFrame, seed: int = 2026
) -> AcceptanceTruth:
    """Draw the effects and calibrate each offer's base to its catalog `p_accept`."""
    rng = np.random.default_rng(seed)
    segments = sorted(customers_truth["true_segment"].astype(str).unique())
    seg = customers_truth["true_segment"].astype(str).to_numpy()
    sens = customers_truth["rate_sensitivity"].to_numpy(dtype=float)
    z = (sens - sens.mean()) / (sens.std() or 1.0)
    truth = AcceptanceTruth({}, {}, {}, {}, _customers(customers_truth, z))
    for offer in catalog.offers:
        channel = {c: float(rng.normal(0, CHANNEL_SD)) for c in offer.channels}
        segment = {s: float(rng.normal(0, SEGMENT_SD)) for s in segments}
        slope = float(rng.normal(0, SENSITIVITY_SD))
        per_customer = np.array([segment[s] for s in seg]) + slope * z
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
    return truth


def _customers(frame: pd.DataFrame, z: np.ndarray) -> dict[str, tuple[str, float]]:
    ids = frame["customer_id"].astype(str).tolist()
    segs = frame["true_segment"].astype(str).tolist()
    return {c: (s, float(v)) for c, s, v in zip(ids, segs, z, strict=True)}


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
    """The kept truth (drawn and written beside the customers truth the first time).

    Raises:
        FileNotFoundError: no customers truth: the data is not the generated sample bank.
    """
    customers_truth = pd.read_parquet(truth_folder / CUSTOMERS_TRUTH)
    path = truth_folder / TRUTH_FILE
    if path.is_file():
        state = json.loads(path.read_text(encoding="utf-8"))
        sens = customers_truth["rate_sensitivity"].to_numpy(dtype=float)
        z = (sens - sens.mean()) / (sens.std() or 1.0)
        return AcceptanceTruth(
            state["base"],
            state["channel"],
            state["segment"],
            state["slope"],
            _customers(customers_truth, z),
        )
    truth = draw_truth(catalog, customers_truth, seed)
    staging = path.with_suffix(".tmp")
    staging.write_text(json.dumps(truth.to_dict(), indent=1), encoding="utf-8")
    staging.replace(path)
    return truth
