"""CLV: BG/NBD and Gamma-Gamma on hand-computed cases, the CLV formula, RFM summaries."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import optimize

from features.clv_inputs import calibration_holdout, rfm_summary
from models.clv import (
    BgNbd,
    ClvFitError,
    ClvModel,
    GammaGamma,
    bgnbd_log_likelihood,
    gamma_gamma_log_likelihood,
)
from training.clv_data import holdout_metrics

pytestmark = pytest.mark.unit

CDNOW = {"r": 0.2426, "alpha": 4.4135, "a": 0.7929, "b": 2.4258}


def _fitted(bgnbd: dict[str, float], gamma_gamma: dict[str, float]) -> ClvModel:
    return ClvModel.from_dict(
        {
            "settings": {"penalizer": 0.0},
            "penalizer_used": 0.0,
            "bgnbd": bgnbd,
            "gamma_gamma": gamma_gamma,
            "monetary_cap": None,
        }
    )


def _summary(x: list[float], t_x: list[float], T: list[float], m: list[float] | None = None):
    frame = pd.DataFrame({"frequency": x, "recency": t_x, "T": T})
    frame["monetary_value"] = m if m is not None else 0.0
    return frame


def _simulate(n: int, params: dict[str, float], T: float, dropout: bool, seed: int):
    """Repeat purchases from the BG/NBD story, the first purchase at time 0.

    Purchases follow a Poisson process at a gamma-distributed rate; after each repeat purchase
    the customer drops out with a beta-distributed probability (never, if not ``dropout``).
    """
    rng = np.random.default_rng(seed)
    lam = rng.gamma(params["r"], 1 / params["alpha"], n)
    p = rng.beta(params["a"], params["b"], n) if dropout else np.zeros(n)
    x, t_x = np.zeros(n), np.zeros(n)
    for i in range(n):
        t = rng.exponential(1 / lam[i])
        while t <= T:
            x[i], t_x[i] = x[i] + 1, t
            if rng.random() < p[i]:
                break
            t += rng.exponential(1 / lam[i])
    return pd.DataFrame({"frequency": x, "recency": t_x, "T": T})


# --- BG/NBD -----------------------------------------------------------------------------------


def test_p_alive_is_one_without_repeat_purchases() -> None:
    model = _fitted(CDNOW, {"p": 6.25, "q": 3.74, "v": 15.45})
    summary = _summary([0, 0, 0], [0, 0, 0], [1.0, 20.0, 39.0])
    assert np.all(model.p_alive(summary) == 1.0)


def test_p_alive_on_a_hand_computed_case() -> None:
    # odds of dropout = a/(b+x-1) * ((alpha+T)/(alpha+t_x))^(r+x) = 1/2 * (4/2)^2 = 2
    model = BgNbd()
    model.params_ = {"r": 1.0, "alpha": 1.0, "a": 1.0, "b": 2.0}
    assert model.p_alive(_summary([1], [1.0], [3.0]))[0] == pytest.approx(1 / 3)


def test_expected_purchases_grow_with_frequency() -> None:
    model = _fitted(CDNOW, {"p": 6.25, "q": 3.74, "v": 15.45})
    x = np.arange(0, 30)
    summary = _summary(list(x), [30.0] * len(x), [30.0] * len(x))
    summary.loc[0, "recency"] = 0.0
    expected = model.expected_purchases(summary, 39.0)
    assert np.all(np.diff(expected) > 0)


def test_new_customer_expectation_equals_conditional_at_age_zero() -> None:
    model = _fitted(CDNOW, {"p": 6.25, "q": 3.74, "v": 15.45})
    conditional = model.expected_purchases(_summary([0], [0.0], [0.0]), 52.0)[0]
    assert conditional == pytest.approx(float(model.bgnbd_.expected_purchases_new(52.0)))


@pytest.mark.parametrize("x", [0.0, 1.0, 7.0])
def test_bgnbd_gradient_matches_finite_differences(x: float) -> None:
    data = (np.array([x]), np.array([min(x, 1.0) * 12.0]), np.array([30.0]))

    def value(theta: np.ndarray) -> float:
        return float(bgnbd_log_likelihood(theta, *data)[0][0])

    def gradient(theta: np.ndarray) -> np.ndarray:
        return bgnbd_log_likelihood(theta, *data)[1][0]

    theta = np.array([0.4, 3.0, 0.8, 2.5])
    assert optimize.check_grad(value, gradient, theta) < 1e-5


def test_gamma_gamma_gradient_matches_finite_differences() -> None:
    data = (np.array([1.0, 4.0]), np.array([12.5, 40.0]))

    def value(theta: np.ndarray) -> float:
        return float(gamma_gamma_log_likelihood(theta, *data)[0].sum())

    def gradient(theta: np.ndarray) -> np.ndarray:
        return gamma_gamma_log_likelihood(theta, *data)[1].sum(axis=0)

    assert optimize.check_grad(value, gradient, np.array([6.0, 3.5, 15.0])) < 1e-5


def test_bgnbd_recovers_simulated_parameters() -> None:
    truth = {"r": 0.5, "alpha": 5.0, "a": 0.8, "b": 2.5}
    summary = _simulate(4000, truth, T=52.0, dropout=True, seed=7)
    fitted = BgNbd().fit(summary).params_
    assert fitted["r"] / fitted["alpha"] == pytest.approx(0.1, rel=0.15)  # mean purchase rate
    assert fitted["a"] / (fitted["a"] + fitted["b"]) == pytest.approx(0.8 / 3.3, rel=0.25)


def test_no_dropout_runs_to_the_edge_and_the_penalizer_brings_it_back() -> None:
    summary = _simulate(1500, {"r": 2.0, "alpha": 10.0, "a": 1.0, "b": 1.0}, 39.0, False, 3)
    with pytest.raises(ClvFitError, match="penalizer"):
        BgNbd(penalizer=0.0).fit(summary)
    model = ClvModel(monetary_cap_quantile=None)
    model.bgnbd_ = model._fit_bgnbd(summary)
    assert model.bgnbd_.penalizer > 0
    assert model.bgnbd_.report_.converged
    assert np.all(np.isfinite(model.expected_purchases(summary, 13.0)))


def test_inconsistent_summaries_are_refused() -> None:
    with pytest.raises(ValueError, match="recency <= T"):
        BgNbd().fit(_summary([1, 2], [5.0, 9.0], [4.0, 10.0]))
    with pytest.raises(ValueError, match="lacks column"):
        BgNbd().fit(pd.DataFrame({"frequency": [1]}))


# --- Gamma-Gamma ------------------------------------------------------------------------------


def test_expected_spend_on_a_hand_computed_case() -> None:
    model = GammaGamma()
    model.params_ = {"p": 2.0, "q": 3.0, "v": 10.0}
    summary = _summary([2, 0], [5.0, 0.0], [9.0, 9.0], [20.0, 0.0])
    # repeat buyer: p (v + x m) / (p x + q - 1) = 2 * 50 / 6; one-time buyer: p v / (q - 1) = 10
    assert model.expected_avg_spend(summary) == pytest.approx([100 / 6, 10.0])


def test_cap_keeps_a_wholesaler_from_moving_the_population() -> None:
    rng = np.random.default_rng(1)
    x = rng.integers(1, 6, 500).astype(float)
    m = rng.gamma(6.0, 5.0, 500)
    m[0] = 50_000.0  # one wholesale account
    summary = _summary(list(x), list(x), list(x + 5), list(m))
    capped = GammaGamma(cap_quantile=0.99).fit(summary)
    clean = GammaGamma().fit(summary.iloc[1:])
    assert capped.monetary_cap_ < 200
    assert capped.population_mean() == pytest.approx(clean.population_mean(), rel=0.05)
    assert capped.expected_avg_spend(summary)[0] > 10_000  # its own history still counts


def test_gamma_gamma_uses_repeat_buyers_with_positive_spend_only() -> None:
    rng = np.random.default_rng(4)
    x = np.r_[np.zeros(20), rng.integers(1, 8, 60)]
    m = np.r_[np.zeros(20), rng.gamma(4.0, 10.0, 50), np.zeros(10)]  # 10 repeat buyers at 0
    summary = _summary(list(x), list(x), list(x + 1), list(m))
    model = GammaGamma().fit(summary)
    assert model.n_fitted_ == 50
    assert np.all(model.expected_avg_spend(summary)[:20] == model.population_mean())


# --- CLV ----------------------------------------------------------------------------------------


class _Fixed(ClvModel):
    """A ClvModel with hand-set purchases, spend and P(alive) to check the CLV formula."""

    def monthly_purchases(self, summary: pd.DataFrame, horizon_months: int) -> np.ndarray:
        return np.array([[1.0, 0.5]])

    def expected_avg_spend(self, summary: pd.DataFrame) -> np.ndarray:
        return np.array([100.0])

    def p_alive(self, summary: pd.DataFrame) -> np.ndarray:
        return np.array([0.8])


def test_clv_formula_on_a_hand_computed_case() -> None:
    # month 1: 1.0 purchases x (100 x 0.3 - 1) - 0.8 x 2 = 27.4, discounted by 1.01
    # month 2: 0.5 purchases x 29 - 1.6 = 12.9, discounted by 1.01^2
    expected = 27.4 / 1.01 + 12.9 / 1.01**2
    clv = _Fixed().clv(
        _summary([1], [1.0], [2.0]),
        horizon_months=2,
        monthly_discount=0.01,
        margin_rate=0.3,
        cost_per_month=2.0,
        cost_per_purchase=1.0,
    )
    assert clv[0] == pytest.approx(expected)
    assert expected == pytest.approx(39.774532, abs=1e-6)


def test_monthly_purchases_add_up_to_the_horizon_expectation() -> None:
    model = _fitted(CDNOW, {"p": 6.25, "q": 3.74, "v": 15.45})
    summary = _summary([0, 3, 10], [0.0, 20.0, 35.0], [39.0, 39.0, 39.0], [0.0, 30.0, 40.0])
    monthly = model.monthly_purchases(summary, 12)
    year = model.expected_purchases(summary, 12 * 365.25 / 12 / 7)
    assert monthly.sum(axis=1) == pytest.approx(year)
    undiscounted = model.clv(summary, monthly_discount=0.0)
    assert undiscounted == pytest.approx(year * model.expected_avg_spend(summary))
    assert np.all(model.clv(summary, monthly_discount=0.02) < undiscounted)


def test_fitted_model_survives_a_json_round_trip() -> None:
    summary = _simulate(800, {"r": 0.5, "alpha": 5.0, "a": 0.8, "b": 2.5}, 39.0, True, 11)
    rng = np.random.default_rng(2)
    summary["monetary_value"] = np.where(summary["frequency"] > 0, rng.gamma(5, 8, 800), 0.0)
    model = ClvModel().fit(summary)
    again = ClvModel.from_dict(json.loads(json.dumps(model.to_dict())))
    assert again.clv(summary) == pytest.approx(model.clv(summary))
    scores = model.predict(summary)
    assert list(scores.columns) == ["p_alive", "expected_purchases", "expected_avg_spend", "clv"]


# --- RFM summaries ------------------------------------------------------------------------------


def _log(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["customer_id", "ts", "amount"])
    return frame.assign(ts=pd.to_datetime(frame["ts"], format="ISO8601"), product_id="p")


def test_summary_nets_refunds_and_counts_purchase_days() -> None:
    log = _log(
        [
            ("a", "2024-01-01 09:00", 50.0),
            ("a", "2024-01-01 17:00", 30.0),  # same day: one purchase of 80
            ("a", "2024-01-08", 40.0),
            ("a", "2024-01-08", -10.0),  # refund netted into the day: 30
            ("a", "2024-01-15", -25.0),  # refund-only day: not a purchase
            ("a", "2024-01-22", 10.0),
            ("b", "2024-01-15", 0.0),  # a free item is still a purchase
            ("c", "2024-01-10", 20.0),
            ("c", "2024-01-10", -20.0),  # cancelled the same day: no purchase at all
        ]
    )
    summary = rfm_summary(log, "2024-01-29")
    a = summary.loc["a"]
    assert (a["frequency"], a["recency"], a["T"]) == (2, 3.0, 4.0)
    assert a["monetary_value"] == pytest.approx(20.0)  # (30 + 10) / 2
    assert a["refund_amount"] == -25.0
    assert summary.loc["b", "frequency"] == 0 and summary.loc["b", "T"] == 2.0
    assert "c" not in summary.index
    assert (summary["monetary_value"] >= 0).all()


def test_calibration_holdout_counts_repeat_days_in_the_holdout() -> None:
    log = _log(
        [
            ("a", "2024-01-01", 10.0),
            ("a", "2024-01-15", 10.0),
            ("a", "2024-02-01", 5.0),
            ("a", "2024-02-01", 5.0),
            ("a", "2024-02-05", 7.0),
            ("b", "2024-02-02", 9.0),  # first purchase in the holdout: not a calibration customer
        ]
    )
    split = calibration_holdout(log, "2024-01-28", "2024-02-25")
    assert split.index.tolist() == ["a"]
    row = split.loc["a"]
    assert (row["frequency"], row["T"], row["frequency_holdout"]) == (1, 27 / 7, 2)
    assert row["monetary_value_holdout"] == pytest.approx(8.5)
    assert row["duration_holdout"] == 4.0
    metrics = holdout_metrics(split, np.array([1.5]))
    assert metrics["mae"] == 0.5 and metrics["actual_total"] == 2.0
    assert metrics["naive_mae"] == pytest.approx(abs(1 / (27 / 7) * 4 - 2))
