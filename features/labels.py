"""Churn labels: did a customer leave within the horizon after each snapshot, point in time.

A label at snapshot ``t`` looks only forward, at ``[t, t + horizon)``; who is labelled (the
population) depends only on data before ``t``. Two definitions:

- ``closure`` (contractual businesses): the population is every customer who signed up before
  ``t`` and had not closed before ``t``; churned = ``closed_at`` in ``[t, t + horizon)``.
- ``inactivity`` (non-contractual, e.g. an online shop): the population is those customers who
  also bought in ``[t - active_days, t)``; churned = no purchase in ``[t, t + horizon)``. A
  purchase is a non-refund transaction (amount >= 0), as in the features.
- ``auto``: closure when customers has any non-null ``closed_at``, else inactivity.

``label_complete`` is True when the whole horizon lies within the observed data
(``t + horizon <= observed end``); train only on complete labels, since an incomplete one
would call a customer churned merely because the data stops.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Literal

import numpy as np
import pandas as pd

from features.catalog import ENTITY_KEY, TIMESTAMP_FIELD
from features.engineering import (
    DAY,
    FOREVER,
    NEVER,
    Tables,
    codes_in,
    customer_index,
    normalize_snapshots,
    observed_until,
    purchase_mask,
    time_order,
    to_seconds,
)

log = logging.getLogger(__name__)

Definition = Literal["auto", "closure", "inactivity"]

LABEL_COLUMNS = (ENTITY_KEY, TIMESTAMP_FIELD, "churned", "label_complete")


def churn_definition(tables: Tables, definition: Definition = "auto") -> str:
    """The definition in force: `auto` becomes closure when any `closed_at` is known.

    Args:
        tables: the contract tables.
        definition: "auto", "closure" or "inactivity".
    """
    if definition not in ("auto", "closure", "inactivity"):
        raise ValueError(f"unknown churn definition {definition!r}: auto, closure or inactivity")
    if definition != "auto":
        return definition
    customers = tables["customers"]
    has_closures = "closed_at" in customers.columns and customers["closed_at"].notna().any()
    return "closure" if has_closures else "inactivity"


def churn_labels(
    tables: Tables,
    snapshots: Iterable[object],
    horizon_days: int = 90,
    definition: Definition = "auto",
    active_days: int = 365,
    observed_end: object | None = None,
) -> pd.DataFrame:
    """Churn labels per (customer, snapshot), looking only forward within the horizon.

    Args:
        tables: validated, normalized contract tables.
        snapshots: snapshot times (floored to whole seconds, as the features are).
        horizon_days: length of the window after each snapshot.
        definition: "closure", "inactivity" or "auto" (see the module docstring).
        active_days: inactivity only: a customer is in the population if they bought in the
            `active_days` before the snapshot.
        observed_end: end of the observed data (default: midnight after the latest day holding
            any event or date); labels whose horizon reaches past it are incomplete.

    Returns:
        `customer_id`, `event_timestamp` (UTC), `churned` (int 0/1), `label_complete` (bool);
        one row per customer in the population of each snapshot, by snapshot then customer.
    """
    if horizon_days <= 0 or active_days <= 0:
        raise ValueError("horizon_days and active_days must be positive")
    kind = churn_definition(tables, definition)
    end = pd.Timestamp(observed_end) if observed_end is not None else observed_until(tables)  # type: ignore[arg-type]
    end_second = int(end.tz_localize(None).value // 10**9) if end.tz else int(end.value // 10**9)
    customers = tables["customers"]
    index = customer_index(customers)
    signup = to_seconds(customers["signup_date"])
    closed = (
        to_seconds(customers["closed_at"])
        if "closed_at" in customers.columns
        else np.full(len(index), NEVER)
    )
    closed = np.where(closed == NEVER, FOREVER, closed)
    purchases = _purchases(tables["transactions"], index) if kind == "inactivity" else None
    horizon = horizon_days * DAY
    parts = []
    for t in [int(v) for v in normalize_snapshots(snapshots).asi8 // 10**9]:
        alive = (signup < t) & (closed >= t)
        if purchases is None:
            population = np.flatnonzero(alive)
            churned = closed[population] < t + horizon
        else:
            seconds, customer = purchases
            before, now, after = np.searchsorted(seconds, [t - active_days * DAY, t, t + horizon])
            active = np.bincount(customer[before:now], minlength=len(index)) > 0
            stayed = np.bincount(customer[now:after], minlength=len(index)) > 0
            population = np.flatnonzero(alive & active)
            churned = ~stayed[population]
        parts.append(_labels(index, population, t, churned, t + horizon <= end_second))
        log.info(
            "Labels at %s (%s): %d customers, %d churned",
            pd.Timestamp(t, unit="s").isoformat(),
            kind,
            population.size,
            int(churned.sum()),
        )
    if not parts:
        return _labels(index, np.zeros(0, dtype=np.int64), 0, np.zeros(0, dtype=bool), False)
    return pd.concat(parts, ignore_index=True)


def _purchases(transactions: pd.DataFrame, index: pd.Index) -> tuple[np.ndarray, np.ndarray]:
    """Times (seconds) and customer codes of purchases, sorted by time."""
    customer = codes_in(transactions[ENTITY_KEY], index)
    keep = purchase_mask(transactions) & (customer >= 0)
    seconds = to_seconds(transactions["ts"])[keep]
    customer = customer[keep]
    order = time_order(seconds)
    if order is None:
        return seconds, customer
    return seconds[order], customer[order]


def _labels(
    index: pd.Index, population: np.ndarray, t: int, churned: np.ndarray, complete: bool
) -> pd.DataFrame:
    stamps = pd.DatetimeIndex(np.full(population.size, t * 10**9, dtype="datetime64[ns]"))
    return pd.DataFrame(
        {
            ENTITY_KEY: index.to_numpy(dtype=object)[population],
            TIMESTAMP_FIELD: stamps.tz_localize("UTC"),
            "churned": churned.astype(np.int64),
            "label_complete": np.full(population.size, complete, dtype=bool),
        }
    )
