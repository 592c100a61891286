"""CLV on the reference data: published CDNOW parameters, holdout error, Online Retail."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.clv import BgNbd, ClvModel, GammaGamma
from models.tiers import assign_tiers, tier_value_shares
from training.clv_data import (
    cdnow_split,
    holdout_metrics,
    read_cdnow_log,
    read_cdnow_summary,
    retail_split,
)

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
CDNOW = DATA / "cdnow"

pytestmark = [
    pytest.mark.pipeline,
    pytest.mark.skipif(not CDNOW.is_dir(), reason=f"CDNOW data not found at {CDNOW}"),
]

# Fader, Hardie & Lee (2005), BG/NBD on the 2,357-customer CDNOW sample (weeks); Gamma-Gamma on
# its repeat buyers (as reproduced in the lifetimes documentation).
PUBLISHED_BGNBD = {"r": 0.2426, "alpha": 4.4135, "a": 0.7929, "b": 2.4258}
PUBLISHED_GAMMA_GAMMA = {"p": 6.25, "q": 3.74, "v": 15.45}


@pytest.fixture(scope="module")
def cdnow_holdout() -> pd.DataFrame:
    if not (CDNOW / "CDNOW_sample.txt").is_file():
        pytest.skip(f"CDNOW data not found under {CDNOW}")
    return cdnow_split(DATA)


def test_bgnbd_matches_the_published_cdnow_parameters() -> None:
    summary = read_cdnow_summary(CDNOW / "cdnow_customers_summary.csv")
    assert len(summary) == 2357
    fitted = BgNbd().fit(summary).params_
    for name, published in PUBLISHED_BGNBD.items():
        assert fitted[name] == pytest.approx(published, rel=0.01), name


def test_gamma_gamma_matches_the_published_cdnow_parameters() -> None:
    summary = read_cdnow_summary(CDNOW / "cdnow_customers_summary_with_transactions.csv")
    model = GammaGamma().fit(summary)
    assert model.n_fitted_ == 946
    for name, published in PUBLISHED_GAMMA_GAMMA.items():
        assert model.params_[name] == pytest.approx(published, rel=0.02), name


def test_summary_from_the_log_reproduces_the_published_summary(cdnow_holdout) -> None:
    published = read_cdnow_summary(CDNOW / "cdnow_customers_summary_with_transactions.csv")
    raw = pd.read_csv(CDNOW / "CDNOW_sample.txt", sep=r"\s+", header=None, dtype=str)
    sample_id = raw.drop_duplicates(0).set_index(0)[1].astype(int).astype(str)
    ours = cdnow_holdout.rename(index=sample_id.to_dict()).loc[published.index]
    assert (ours["frequency"] == published["frequency"]).all()
    for column in ("recency", "T", "monetary_value"):
        assert np.allclose(ours[column], published[column], atol=0.006), column
    assert len(read_cdnow_log(CDNOW / "CDNOW_sample.txt")) == 6919


def test_cdnow_holdout_error_beats_the_naive_rate(cdnow_holdout) -> None:
    model = ClvModel().fit(cdnow_holdout)
    assert model.penalizer_ == 0.0
    predicted = model.expected_purchases(cdnow_holdout, cdnow_holdout["duration_holdout"])
    metrics = holdout_metrics(cdnow_holdout, predicted)
    assert metrics["mae"] <= 0.80
    assert metrics["naive_mae"] == pytest.approx(1.02, abs=0.02)
    assert metrics["predicted_total"] == pytest.approx(metrics["actual_total"], rel=0.2)


def test_online_retail_converges_with_a_penalizer_and_keeps_dropout() -> None:
    path = DATA / "online_retail" / "online_retail.csv.gz"
    if not path.is_file():
        pytest.skip(f"Online Retail not found at {path}")
    split = retail_split(DATA)
    model = ClvModel().fit(split)
    assert model.penalizer_ > 0  # plain maximum likelihood runs to a -> 0 (no dropout)
    assert model.bgnbd_.report_.converged
    p_alive = model.p_alive(split)
    assert p_alive.min() < 0.5 < np.median(p_alive)
    scores = model.predict(split)
    assert np.isfinite(scores.to_numpy()).all()
    shares = tier_value_shares(scores["clv"], assign_tiers(scores["clv"]))
    assert shares["customers"].tolist() == [34, 134, 505, 2693]  # 3,366 customers
    assert shares.loc["platinum", "value_share"] > 0.05
