"""Shifted futures: `loyal monitor`'s statistics flag what a shift moved and nothing else.

Profiles only, on small banks (fast): the reference is the latest feature snapshot of one
bank; unshifted banks of 20 other seeds must raise no alert against it, and a bank with a
shifted future must alert on the features the shift's truth names.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pandas as pd
import pytest

from features.engineering import build_feature_tables, latest_snapshot
from features.validation import validate_tables
from monitoring.drift import drifts
from monitoring.profile import Profile, profile_columns
from monitoring.shift import KINDS, shift_hook, shift_truth
from samplebank.bank import generate_bank

pytestmark = pytest.mark.unit

MONTHS = 24
REFERENCE_CUSTOMERS = 2000
CUSTOMERS = 400


def latest_features(customers: int, seed: int, shift: str | None = None) -> pd.DataFrame:
    """The latest snapshot's features of a generated bank, every view side by side."""
    hook = None if shift is None else shift_hook(shift, MONTHS, seed)
    bank = generate_bank(customers, seed, months=MONTHS, shift=hook)
    tables = validate_tables(bank.tables).tables
    frames = build_feature_tables(tables, latest_snapshot(tables))
    wide = pd.concat(
        [f.drop(columns=["customer_id", "event_timestamp"]) for f in frames.values()], axis=1
    )
    return wide


@cache
def reference() -> Profile:
    return profile_columns(dict(latest_features(REFERENCE_CUSTOMERS, 1000).items()))


def levels_against_reference(frame: pd.DataFrame) -> dict[str, str]:
    profile = reference()
    counts = {c: profile.columns[c].counts_of(frame[c]) for c in frame if c in profile.columns}
    return {d.column: d.level for d in drifts(profile.columns, counts)}


def test_no_false_alarm_on_unshifted_banks_of_20_other_seeds() -> None:
    alarms = {}
    for seed in range(20):
        levels = levels_against_reference(latest_features(CUSTOMERS, seed))
        alerted = [c for c, level in levels.items() if level == "alert"]
        if alerted:
            alarms[seed] = alerted
    assert alarms == {}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_shifted_future_alerts_on_the_features_its_truth_names(kind: str) -> None:
    levels = levels_against_reference(latest_features(CUSTOMERS, 77, shift=kind))
    expected = set(shift_truth(kind, MONTHS).features)
    flagged = {c for c, level in levels.items() if level == "alert"}
    assert worst_level_of(levels) == "alert"
    assert len(flagged & expected) >= 2, (flagged, expected)


def worst_level_of(levels: dict[str, str]) -> str:
    values = set(levels.values())
    return "alert" if "alert" in values else "warn" if "warn" in values else "ok"


def test_an_unknown_shift_is_refused_naming_the_known_ones() -> None:
    from loyal.errors import LoyalError

    with pytest.raises(LoyalError, match="competitor"):
        shift_truth("meteor", MONTHS)


def test_without_a_shift_the_generator_draws_exactly_as_before() -> None:
    plain = generate_bank(200, 5, months=8)
    hooked = generate_bank(200, 5, months=8, shift=lambda *args: None)
    for name, frame in plain.tables.items():
        pd.testing.assert_frame_equal(frame, hooked.tables[name])
    assert np.isfinite(len(plain.tables["customers"]))
