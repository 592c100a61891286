"""Customer lifetime value: BG/NBD purchases and P(alive), Gamma-Gamma spend, discounted CLV."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize, special
from threadpoolctl import threadpool_limits

from loyal.errors import LoyalError

DAYS_PER_MONTH = 365.25 / 12
FULL_FIT = "full"
"""The CLV model fitted on the whole history (what scores), by its name in a saved pair."""
HOLDOUT_FIT = "holdout"
"""The CLV model fitted before the holdout (what its evaluation reads)."""
_EDGE = np.log(1e4)  # a shape parameter beyond [1e-4, 1e4] means the optimum ran to a boundary
_SCALE_EDGE = np.log(1e8)  # scale parameters (alpha, v) carry units and may be large

Array = np.ndarray
Objective = Callable[[Array], tuple[float, Array]]


class ClvFitError(LoyalError):
    """A CLV model could not be fitted to the data (no converged optimum)."""


@dataclass(frozen=True)
class FitReport:
    """How an optimization ended.

    Attributes:
        converged: L-BFGS-B succeeded and no log-parameter sits at its bound.
        neg_log_likelihood: mean negative log-likelihood per customer at the optimum.
        iterations: L-BFGS-B iterations of the kept start.
        message: the optimizer's message for the kept start.
    """

    converged: bool
    neg_log_likelihood: float
    iterations: int
    message: str


def _collapse(columns: Sequence[Array]) -> tuple[list[Array], Array]:
    """Unique rows of the given columns and how often each occurs."""
    stacked = np.column_stack(columns)
    unique, counts = np.unique(stacked, axis=0, return_counts=True)
    return [unique[:, j] for j in range(unique.shape[1])], counts.astype(float)


def _minimize(
    objective: Objective,
    starts: Sequence[Array],
    edges: Sequence[float],
    names: Sequence[str],
    model: str,
) -> tuple[Array, FitReport]:
    """Minimize over log-parameters from several starts; keep the best converged optimum.

    A start whose optimum sits on a bound (|log-parameter| at its edge) has not converged: the
    likelihood keeps rising towards a degenerate model there (e.g. no dropout at all).
    """
    limit = np.asarray(edges)
    bounds = [(-e, e) for e in edges]
    candidates: list[tuple[Array, FitReport]] = []
    for start in starts:
        with threadpool_limits(limits=1, user_api="blas"):  # BLAS threads only slow 4-d steps
            result = optimize.minimize(
                objective,
                np.clip(start, -limit + 1, limit - 1),
                jac=True,
                method="L-BFGS-B",
                bounds=bounds,
                options={"maxiter": 1000, "ftol": 1e-13, "gtol": 1e-8},
            )
        at_bound = bool(np.any(np.abs(result.x) >= limit - 1e-3))
        # a line-search stop at a flat optimum is fine when the gradient is ~0 there
        stationary = bool(result.success) or float(np.max(np.abs(result.jac))) < 1e-6
        report = FitReport(
            converged=stationary and not at_bound and bool(np.isfinite(result.fun)),
            neg_log_likelihood=float(result.fun),
            iterations=int(result.nit),
            message=str(result.message),
        )
        candidates.append((result.x, report))
    best = max(candidates, key=lambda c: (c[1].converged, -c[1].neg_log_likelihood))
    if not best[1].converged:
        values = ", ".join(f"{n}={v:.4g}" for n, v in zip(names, np.exp(best[0]), strict=True))
        raise ClvFitError(
            f"{model} did not converge to an interior optimum ({best[1].message}; {values}): "
            "measure time in weeks, check the summary for bad rows, or set a small penalizer "
            "such as 0.001"
        )
    return best


def _check_summary(summary: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in summary.columns]
    if missing:
        raise ValueError(f"the RFM summary lacks column(s) {missing}; see training.clv_data")
    values = summary[list(columns)].to_numpy(dtype=float)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"the RFM summary has missing or infinite values in {list(columns)}")


def _rft(summary: pd.DataFrame) -> tuple[Array, Array, Array]:
    """frequency, recency and T of a summary as float arrays, validated."""
    _check_summary(summary, ("frequency", "recency", "T"))
    x = summary["frequency"].to_numpy(dtype=float)
    t_x = summary["recency"].to_numpy(dtype=float)
    T = summary["T"].to_numpy(dtype=float)
    if np.any(x < 0) or np.any(t_x < 0) or np.any(t_x > T + 1e-9):
        raise ValueError("the RFM summary needs frequency >= 0 and 0 <= recency <= T")
    if np.any((x == 0) & (t_x > 0)):
        raise ValueError("the RFM summary has recency > 0 for customers with frequency 0")
    return x, t_x, T


class BgNbd:
    """BG/NBD: Poisson purchases at a gamma-distributed rate, beta-geometric dropout.

    The closed-form likelihood of Fader, Hardie & Lee (2005, "Counting your customers the easy
    way"), maximized with L-BFGS-B over log-parameters with analytic gradients. PyMC-Marketing's
    ``BetaGeoModel`` (MAP, flat priors) gives the same estimates, but for a service it costs
    ~220 MB of dependencies, a C compiler at run time, ~10 s of import per process, and its
    maintained line needs Python 3.12.

    Input: an RFM summary in the `lifetimes` conventions (see `training.clv_data`): frequency
    = repeat purchase periods, recency = time from the first to the last purchase, T = time
    from the first purchase to the end of calibration, all in one time unit (weeks advised).

    What keeps the fit stable on awkward logs (UCI Online Retail):

    - time in weeks rather than days keeps ``alpha`` near the scale of the data;
    - log-parameters keep every parameter positive without hard constraints;
    - identical rows are collapsed into weights, and the objective is the *mean* negative
      log-likelihood, so tolerances and the penalizer mean the same at any sample size;
    - six data-driven starts; the best converged optimum is kept;
    - an optional L2 penalizer on the log-parameters pulls parameters that run off along a flat
      ridge (no dropout: a -> 0 or b -> inf) back towards 1;
    - an optimum with a shape parameter outside [1e-4, 1e4] is a boundary, not a fit:
      :class:`ClvFitError` says so and suggests the penalizer.

    Attributes set by ``fit``:
        params_: fitted ``{"r", "alpha", "a", "b"}``; ``r``/``alpha`` shape and scale of the
            purchase rate (per time unit), ``a``/``b`` of the dropout probability.
        report_: how the optimization ended.
    """

    param_names = ("r", "alpha", "a", "b")

    def __init__(self, penalizer: float = 0.0) -> None:
        """Store settings.

        Args:
            penalizer: weight of the L2 penalty on the log-parameters, added to the mean
                negative log-likelihood; 0 gives the maximum likelihood estimate.
        """
        self.penalizer = penalizer

    def fit(self, summary: pd.DataFrame) -> BgNbd:
        """Fit by maximum (penalized) likelihood on a summary with frequency, recency, T."""
        x, t_x, T = _rft(summary)
        if not np.any(x > 0):
            raise ClvFitError("BG/NBD needs at least one repeat purchase in the calibration data")
        (ux, ut, uT), weights = _collapse((x, t_x, T))

        def objective(log_params: Array) -> tuple[float, Array]:
            ll, grad = bgnbd_log_likelihood(np.exp(log_params), ux, ut, uT)
            total = weights.sum()
            value = -(weights @ ll) / total + self.penalizer * log_params @ log_params
            gradient = -(weights @ grad) / total * np.exp(log_params)
            return float(value), gradient + 2 * self.penalizer * log_params

        edges = (_EDGE, _SCALE_EDGE, _EDGE, _EDGE)
        log_params, self.report_ = _minimize(
            objective, self._starts(x, T), edges, self.param_names, "BG/NBD"
        )
        self.params_ = dict(zip(self.param_names, np.exp(log_params).tolist(), strict=True))
        return self

    @staticmethod
    def _starts(x: Array, T: Array) -> list[Array]:
        """Starting points: a purchase rate matching the data, several dropout shapes."""
        rate = max(float(x.sum()) / max(float(T.sum()), 1e-9), 1e-6)
        starts = []
        for r in (1.0, 0.25):
            for a, b in ((1.0, 1.0), (0.5, 3.0), (2.0, 10.0)):
                starts.append(np.log([r, r / rate, a, b]))
        return starts

    def _theta(self) -> tuple[float, float, float, float]:
        p = self.params_
        # the expectations divide by a - 1: step off the removable singularity at a = 1
        a = p["a"] if abs(p["a"] - 1.0) > 1e-7 else 1.0 + 1e-7
        return p["r"], p["alpha"], a, p["b"]

    def p_alive(self, summary: pd.DataFrame) -> Array:
        """Probability each customer is still active at the end of calibration (1 if x = 0)."""
        x, t_x, T = _rft(summary)
        r, alpha, a, b = self._theta()
        return 1.0 / (1.0 + _dropout_odds(x, t_x, T, r, alpha, a, b))

    def expected_purchases(self, summary: pd.DataFrame, t: float | Array) -> Array:
        """Expected purchases in the next ``t`` time units given each customer's history.

        This is the conditional expectation E[Y(t) | x, t_x, T] used to score a holdout.
        """
        x, t_x, T = _rft(summary)
        r, alpha, a, b = self._theta()
        t = np.broadcast_to(np.asarray(t, dtype=float), x.shape)
        z = t / (alpha + T + t)
        hyp = special.hyp2f1(r + x, b + x, a + b + x - 1, z)
        head = (a + b + x - 1) / (a - 1)
        tail = 1.0 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp
        result = head * tail / (1.0 + _dropout_odds(x, t_x, T, r, alpha, a, b))
        if not np.all(np.isfinite(result)):
            raise ClvFitError("BG/NBD expected purchases are not finite for these parameters")
        return result

    def expected_purchases_new(self, t: float | Array) -> Array:
        """Expected purchases in ``t`` time units of a customer just acquired, E[X(t)]."""
        r, alpha, a, b = self._theta()
        t = np.asarray(t, dtype=float)
        hyp = special.hyp2f1(r, b, a + b - 1, t / (alpha + t))
        return (a + b - 1) / (a - 1) * (1.0 - (alpha / (alpha + t)) ** r * hyp)


def _dropout_odds(
    x: Array, t_x: Array, T: Array, r: float, alpha: float, a: float, b: float
) -> Array:
    """Odds that a customer has dropped out, given the history (0 when x = 0)."""
    odds = np.zeros_like(x)
    has = x > 0
    log_odds = (
        np.log(a)
        - np.log(b + x[has] - 1)
        + (r + x[has]) * (np.log(alpha + T[has]) - np.log(alpha + t_x[has]))
    )
    odds[has] = np.exp(np.minimum(log_odds, 700.0))
    return odds


def bgnbd_log_likelihood(params: Array, x: Array, t_x: Array, T: Array) -> tuple[Array, Array]:
    """Per-customer BG/NBD log-likelihood and its gradient in (r, alpha, a, b).

    Args:
        params: r, alpha, a, b.
        x: frequency; t_x: recency; T: age at the end of calibration.

    Returns:
        The log-likelihoods (n,) and their gradients (n, 4).
    """
    r, alpha, a, b = params
    psi = special.digamma
    a1 = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha)
    a2 = (
        special.gammaln(a + b)
        + special.gammaln(b + x)
        - special.gammaln(b)
        - special.gammaln(a + b + x)
    )
    a3 = -(r + x) * np.log(alpha + T)
    has = x > 0
    bx1 = np.where(has, b + x - 1, 1.0)
    a4 = np.where(has, np.log(a) - np.log(bx1) - (r + x) * np.log(alpha + t_x), -np.inf)
    a34 = np.logaddexp(a3, a4)
    w3, w4 = np.exp(a3 - a34), np.exp(a4 - a34)
    grad = np.column_stack(
        [
            psi(r + x) - psi(r) + np.log(alpha) - w3 * np.log(alpha + T) - w4 * np.log(alpha + t_x),
            r / alpha - (r + x) * (w3 / (alpha + T) + w4 / (alpha + t_x)),
            psi(a + b) - psi(a + b + x) + w4 / a,
            psi(a + b) + psi(b + x) - psi(b) - psi(a + b + x) - w4 / bx1,
        ]
    )
    return a1 + a2 + a34, grad


class GammaGamma:
    """Gamma-Gamma spend model: each customer's mean spend is gamma-distributed.

    Fitted on repeat buyers only (frequency > 0, positive monetary value); it assumes spend is
    independent of purchase frequency (``spend_frequency_corr_`` lets you check).

    Attributes set by ``fit``:
        params_: fitted ``{"p", "q", "v"}``.
        report_: how the optimization ended.
        monetary_cap_: the cap applied to the fitting data (``inf`` when none).
        n_fitted_: number of repeat buyers fitted on.
        spend_frequency_corr_: Pearson correlation of frequency and monetary value among them.
    """

    param_names = ("p", "q", "v")

    def __init__(self, penalizer: float = 0.0, cap_quantile: float | None = None) -> None:
        """Store settings.

        Args:
            penalizer: weight of the L2 penalty on the log-parameters.
            cap_quantile: winsorize the monetary values used for *fitting* at this quantile of
                the repeat buyers (None: no cap). Predictions still use each customer's own
                observed mean, so big spenders keep their rank.
        """
        self.penalizer = penalizer
        self.cap_quantile = cap_quantile

    def fit(self, summary: pd.DataFrame, value_column: str = "monetary_value") -> GammaGamma:
        """Fit on the repeat buyers of a summary with frequency and ``value_column``."""
        _check_summary(summary, ("frequency", value_column))
        x = summary["frequency"].to_numpy(dtype=float)
        m = summary[value_column].to_numpy(dtype=float)
        keep = (x > 0) & (m > 0)
        if keep.sum() < 3:
            raise ClvFitError("Gamma-Gamma needs at least 3 repeat buyers with positive spend")
        x, m = x[keep], m[keep]
        self.monetary_cap_ = (
            float(np.quantile(m, self.cap_quantile)) if self.cap_quantile else float("inf")
        )
        m = np.minimum(m, self.monetary_cap_)
        self.n_fitted_ = int(keep.sum())
        self.spend_frequency_corr_ = float(np.corrcoef(x, m)[0, 1]) if len(x) > 2 else 0.0
        (ux, um), weights = _collapse((x, m))

        def objective(log_params: Array) -> tuple[float, Array]:
            ll, grad = gamma_gamma_log_likelihood(np.exp(log_params), ux, um)
            total = weights.sum()
            value = -(weights @ ll) / total + self.penalizer * log_params @ log_params
            gradient = -(weights @ grad) / total * np.exp(log_params)
            return float(value), gradient + 2 * self.penalizer * log_params

        mean, var = float(np.average(m)), float(np.var(m)) + 1e-9
        starts = [np.log([max(mean**2 / var, 0.1), q, (q - 1) * mean]) for q in (3.0, 10.0)]
        starts.append(np.zeros(3))
        edges = (_EDGE, _EDGE, _SCALE_EDGE)
        log_params, self.report_ = _minimize(
            objective, starts, edges, self.param_names, "Gamma-Gamma"
        )
        self.params_ = dict(zip(self.param_names, np.exp(log_params).tolist(), strict=True))
        return self

    def population_mean(self) -> float:
        """Mean spend per purchase of the population, p v / (q - 1); needs q > 1."""
        p, q, v = self.params_["p"], self.params_["q"], self.params_["v"]
        if q <= 1:
            raise ClvFitError(
                f"Gamma-Gamma q = {q:.3g} <= 1: the mean spend is infinite; cap monetary values "
                "(cap_quantile) or raise the penalizer"
            )
        return p * v / (q - 1)

    def expected_avg_spend(
        self, summary: pd.DataFrame, value_column: str = "monetary_value"
    ) -> Array:
        """Expected mean spend per future purchase of each customer.

        Repeat buyers get the conditional mean p (v + x m) / (p x + q - 1); customers with
        frequency 0 carry no spend information and get the population mean.
        """
        _check_summary(summary, ("frequency", value_column))
        p, q, v = self.params_["p"], self.params_["q"], self.params_["v"]
        population = self.population_mean()
        x = summary["frequency"].to_numpy(dtype=float)
        m = np.maximum(summary[value_column].to_numpy(dtype=float), 0.0)
        conditional = p * (v + x * m) / (p * x + q - 1)
        return np.where(x > 0, conditional, population)


def gamma_gamma_log_likelihood(params: Array, x: Array, m: Array) -> tuple[Array, Array]:
    """Per-customer Gamma-Gamma log-likelihood (up to a constant) and its gradient in (p, q, v).

    Args:
        params: p, q, v.
        x: number of repeat purchases (> 0); m: their mean spend (> 0).

    Returns:
        The log-likelihoods (n,) and their gradients (n, 3).
    """
    p, q, v = params
    px = p * x
    psi = special.digamma
    log_xmv = np.log(x * m + v)
    ll = (
        special.gammaln(px + q)
        - special.gammaln(px)
        - special.gammaln(q)
        + q * np.log(v)
        + (px - 1) * np.log(m)
        + px * np.log(x)
        - (px + q) * log_xmv
    )
    grad = np.column_stack(
        [
            x * (psi(px + q) - psi(px) + np.log(m) + np.log(x) - log_xmv),
            psi(px + q) - psi(q) + np.log(v) - log_xmv,
            q / v - (px + q) / (x * m + v),
        ]
    )
    return ll, grad


class ClvModel:
    """BG/NBD for purchases and P(alive), Gamma-Gamma for spend, combined into CLV.

    CLV over ``horizon_months`` months with monthly discount rate ``d``::

        CLV = sum_{k=1..H} [ dE_k * (spend * margin_rate - cost_per_purchase)
                             - p_alive * cost_per_month ] / (1 + d)^k

    where ``dE_k`` is the expected number of purchases in month k (from BG/NBD's conditional
    expectation), ``spend`` the Gamma-Gamma expected mean spend and ``p_alive`` the current
    probability of being active (an upper bound on the share of the horizon served).

    Attributes set by ``fit``:
        bgnbd_: the fitted :class:`BgNbd`.
        gamma_gamma_: the fitted :class:`GammaGamma`.
        penalizer_: the BG/NBD penalizer actually used.
    """

    PENALIZER_LADDER = (0.0, 0.001, 0.01)

    def __init__(
        self,
        penalizer: float | None = None,
        spend_penalizer: float = 0.0,
        monetary_cap_quantile: float | None = 0.99,
        value_column: str = "monetary_value",
        time_unit_days: float = 7.0,
    ) -> None:
        """Store settings.

        Args:
            penalizer: BG/NBD L2 penalty on log-parameters; None tries the maximum likelihood
                first and, only if it runs to a boundary (the Online Retail case: no dropout,
                a -> 0), the penalties in ``PENALIZER_LADDER`` in turn.
            spend_penalizer: Gamma-Gamma L2 penalty on log-parameters.
            monetary_cap_quantile: quantile of the repeat buyers' mean spend at which the
                Gamma-Gamma *fitting* data are winsorized, so a few wholesale accounts do not
                drag q towards 1 (infinite mean spend); None disables the cap.
            value_column: summary column Gamma-Gamma models: ``monetary_value`` (revenue, then
                apply ``margin_rate`` in :meth:`clv`) or ``monetary_margin`` (margin itself).
            time_unit_days: days per time unit of the summary (7 for weeks).
        """
        self.penalizer = penalizer
        self.spend_penalizer = spend_penalizer
        self.monetary_cap_quantile = monetary_cap_quantile
        self.value_column = value_column
        self.time_unit_days = time_unit_days

    def fit(self, summary: pd.DataFrame) -> ClvModel:
        """Fit BG/NBD on every customer and Gamma-Gamma on the repeat buyers."""
        self.bgnbd_ = self._fit_bgnbd(summary)
        self.penalizer_ = self.bgnbd_.penalizer
        self.gamma_gamma_ = GammaGamma(
            penalizer=self.spend_penalizer, cap_quantile=self.monetary_cap_quantile
        ).fit(summary, self.value_column)
        self.gamma_gamma_.population_mean()  # fail at fit time, not at scoring time
        return self

    def _fit_bgnbd(self, summary: pd.DataFrame) -> BgNbd:
        ladder = self.PENALIZER_LADDER if self.penalizer is None else (self.penalizer,)
        for penalizer in ladder[:-1]:
            try:
                return BgNbd(penalizer=penalizer).fit(summary)
            except ClvFitError:
                continue
        return BgNbd(penalizer=ladder[-1]).fit(summary)

    @property
    def params_(self) -> dict[str, float]:
        """All fitted parameters: r, alpha, a, b, p, q, v."""
        return {**self.bgnbd_.params_, **self.gamma_gamma_.params_}

    def expected_purchases(self, summary: pd.DataFrame, t: float | Array) -> Array:
        """Conditional expected purchases in the next ``t`` time units (the holdout forecast)."""
        return self.bgnbd_.expected_purchases(summary, t)

    def p_alive(self, summary: pd.DataFrame) -> Array:
        """Probability each customer is still active."""
        return self.bgnbd_.p_alive(summary)

    def expected_avg_spend(self, summary: pd.DataFrame) -> Array:
        """Expected mean spend (or margin) per future purchase."""
        return self.gamma_gamma_.expected_avg_spend(summary, self.value_column)

    def monthly_purchases(self, summary: pd.DataFrame, horizon_months: int) -> Array:
        """Expected purchases in each of the next months, shape (customers, horizon_months)."""
        month = DAYS_PER_MONTH / self.time_unit_days
        cumulative = [np.zeros(len(summary))]
        cumulative += [
            self.expected_purchases(summary, k * month) for k in range(1, horizon_months + 1)
        ]
        return np.diff(np.column_stack(cumulative), axis=1)

    def clv(
        self,
        summary: pd.DataFrame,
        horizon_months: int = 12,
        monthly_discount: float = 0.01,
        margin_rate: float = 1.0,
        cost_per_month: float = 0.0,
        cost_per_purchase: float = 0.0,
    ) -> Array:
        """Discounted expected margin over the horizon minus the cost to serve.

        Args:
            summary: RFM summary of the customers to score.
            horizon_months: months ahead (default 12).
            monthly_discount: discount rate per month (0.01 is about 12.7% a year).
            margin_rate: margin per unit of modelled value (1.0 when modelling margin).
            cost_per_month: fixed cost to serve an active customer for one month.
            cost_per_purchase: variable cost of serving one purchase.

        Returns:
            CLV per customer, in the currency of the monetary values.
        """
        if horizon_months < 1:
            raise ValueError("horizon_months must be at least 1")
        discount = (1.0 + monthly_discount) ** -np.arange(1, horizon_months + 1)
        purchases = self.monthly_purchases(summary, horizon_months) @ discount
        per_purchase = self.expected_avg_spend(summary) * margin_rate - cost_per_purchase
        serving = self.p_alive(summary) * cost_per_month * discount.sum()
        return purchases * per_purchase - serving

    def predict(
        self, summary: pd.DataFrame, horizon_months: int = 12, **clv_args: Any
    ) -> pd.DataFrame:
        """Scores per customer: p_alive, expected purchases over the horizon, spend and CLV."""
        month = DAYS_PER_MONTH / self.time_unit_days
        return pd.DataFrame(
            {
                "p_alive": self.p_alive(summary),
                "expected_purchases": self.expected_purchases(summary, horizon_months * month),
                "expected_avg_spend": self.expected_avg_spend(summary),
                "clv": self.clv(summary, horizon_months, **clv_args),
            },
            index=summary.index,
        )

    def to_dict(self) -> dict[str, Any]:
        """Settings and fitted parameters as plain JSON-safe values."""
        return {
            "settings": {
                "penalizer": self.penalizer,
                "spend_penalizer": self.spend_penalizer,
                "monetary_cap_quantile": self.monetary_cap_quantile,
                "value_column": self.value_column,
                "time_unit_days": self.time_unit_days,
            },
            "penalizer_used": self.penalizer_,
            "bgnbd": self.bgnbd_.params_,
            "gamma_gamma": self.gamma_gamma_.params_,
            "monetary_cap": cap if np.isfinite(cap := self.gamma_gamma_.monetary_cap_) else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClvModel:
        """Rebuild a fitted model from :meth:`to_dict` output."""
        model = cls(**data["settings"])
        model.penalizer_ = float(data["penalizer_used"])
        model.bgnbd_ = BgNbd(penalizer=model.penalizer_)
        model.bgnbd_.params_ = {k: float(data["bgnbd"][k]) for k in BgNbd.param_names}
        model.gamma_gamma_ = GammaGamma(model.spend_penalizer, model.monetary_cap_quantile)
        model.gamma_gamma_.params_ = {
            k: float(data["gamma_gamma"][k]) for k in GammaGamma.param_names
        }
        cap = data["monetary_cap"]
        model.gamma_gamma_.monetary_cap_ = float("inf") if cap is None else float(cap)
        return model
