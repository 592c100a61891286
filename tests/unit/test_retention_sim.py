"""The sample bank's simulated retention campaigns: random, modest on average, heterogeneous."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from samplebank.bank import generate_bank

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def bank():  # type: ignore[no-untyped-def]
    return generate_bank(6000, seed=5)


def test_campaigns_are_randomised_with_a_control_group(bank) -> None:  # type: ignore[no-untyped-def]
    campaigns = bank.tables["campaigns"]
    assert campaigns["campaign_id"].nunique() == 3
    share = campaigns.groupby("campaign_id")["treated"].mean()
    assert share.between(0.45, 0.55).all()
    assert (campaigns.loc[~campaigns["treated"], "cost"] == 0).all()
    truth = bank.truth["campaigns_truth"]
    # Random assignment: treated and control members have the same true risk without contact.
    p0 = truth.groupby("treated")["p_control"].mean()
    assert abs(p0[True] - p0[False]) < 0.01


def test_a_contact_cuts_churn_modestly_on_average(bank) -> None:  # type: ignore[no-untyped-def]
    truth = bank.truth["campaigns_truth"]
    relative = 1 - truth["p_treated"].mean() / truth["p_control"].mean()
    assert 0.10 <= relative <= 0.30


def test_effects_are_heterogeneous_and_not_risk_alone(bank) -> None:  # type: ignore[no-untyped-def]
    truth = bank.truth["retention_effects"]
    strata = truth["stratum"].value_counts(normalize=True)
    assert {"sure_thing", "persuadable", "lost_cause", "sleeping_dog"} <= set(strata.index)
    assert 0 < strata["sleeping_dog"] < 0.1
    uplift = truth["p_control"] - truth["p_treated"]
    # Within each decile of true risk the effect still varies a lot: risk does not decide it.
    decile = pd.qcut(truth["p_control"], 10, labels=False)
    spread = uplift.groupby(decile).std() / uplift.groupby(decile).mean().abs()
    assert (spread.iloc[5:] > 0.3).all()
    assert abs(np.corrcoef(truth["p_control"], uplift)[0, 1]) < 0.9


def test_without_campaigns_there_is_no_campaigns_table() -> None:
    bank = generate_bank(300, seed=5, with_campaigns=False)
    assert "campaigns" not in bank.tables
    assert "retention_effects" not in bank.truth
