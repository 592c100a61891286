"""Uplift: how much a contact changes a customer's outcome, learned from randomised campaigns.

A meta-learner on gradient boosting (XGBoost), with no file or network I/O:

* `TwoModel` (the T-learner): one classifier on the treated, one on the control; the uplift is
  the difference of their probabilities. With default boosters it is the plain baseline.
* `XLearner` (Kuenzel et al., 2019): the two outcome models first, then each group's imputed
  effects (treated: y - mu0(x); control: mu1(x) - y) regressed on the features, combined
  with the treated share as weight: tau(x) = e tau0(x) + (1 - e) tau1(x). The imputations
  are cross-fitted (out-of-fold outcome models), and shallow, slowly learning, subsampled
  boosters with large leaves keep the noisy second stage from overfitting.

The outcome `y` is the good one (1 = stayed, or visited), so a positive uplift means the
contact helps; for churn, uplift = P(churn | no contact) - P(churn | contact).

Metrics (`qini_curve`, `qini_auc`, `uplift_at_k`) rank customers by predicted uplift:
Qini(n) = Y_t(n) - Y_c(n) N_t(n) / N_c(n) over the top n (Y: positive outcomes, N: customers
of each group), divided by the number of customers; the Qini AUC is the mean height of that
curve above the random line (from 0 to the overall Qini), over 101 equally spaced fractions.
uplift@k is the treated minus the control outcome rate among the top k share.
`qini_auc_bootstrap` resamples a holdout (each group on its own) to say how sure a Qini AUC is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.model_selection import StratifiedKFold

DEFAULT_BOOSTER: dict[str, Any] = {
    "n_estimators": 100,
    "max_depth": 6,
    "learning_rate": 0.3,
    "tree_method": "hist",
    "n_jobs": 1,
}
"""XGBoost's defaults, made explicit: the plain baseline's boosters."""
REGULARISED_BOOSTER: dict[str, Any] = {
    "n_estimators": 300,
    "max_depth": 3,
    "learning_rate": 0.03,
    "min_child_weight": 20,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "reg_lambda": 5.0,
    "tree_method": "hist",
    "n_jobs": 1,
}
"""Shallow, slow, subsampled boosters: the uplift model's outcome models."""
EFFECT_BOOSTER: dict[str, Any] = {
    **REGULARISED_BOOSTER,
    "n_estimators": 200,
    "min_child_weight": 100,
}
"""The effect models': a leaf needs 100 customers (their imputed effects are mostly noise)."""
CROSS_FIT_FOLDS = 5


def _matrix(features: pd.DataFrame | np.ndarray) -> np.ndarray:
    return np.asarray(features, dtype=np.float32)


@dataclass
class TwoModel:
    """T-learner: uplift = P(y | treated, x) - P(y | control, x)."""

    booster: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_BOOSTER))
    random_state: int = 0

    def fit(
        self, features: pd.DataFrame | np.ndarray, treated: np.ndarray, outcome: np.ndarray
    ) -> TwoModel:
        """Fit one classifier per group; returns self."""
        x, t, y = _matrix(features), np.asarray(treated, bool), np.asarray(outcome, int)
        self.treated_model_ = _classifier(self.booster, self.random_state).fit(x[t], y[t])
        self.control_model_ = _classifier(self.booster, self.random_state).fit(x[~t], y[~t])
        return self

    def outcome_probabilities(self, features: pd.DataFrame | np.ndarray) -> np.ndarray:
        """P(y = 1) without and with the contact: columns (control, treated)."""
        x = _matrix(features)
        return np.column_stack(
            [self.control_model_.predict_proba(x)[:, 1], self.treated_model_.predict_proba(x)[:, 1]]
        )

    def predict(self, features: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Predicted uplift per row."""
        p = self.outcome_probabilities(features)
        return p[:, 1] - p[:, 0]


@dataclass
class XLearner:
    """Cross-fitted X-learner on gradient boosting (outcome classifiers, effect regressors).

    The outcome models' predictions that impute each customer's effect come from models that
    did not see that customer (`folds`-fold cross-fitting): imputed from in-sample predictions,
    a customer's own noise leaks into its imputed effect and the effect models learn it back.
    The effect models are heavily regularised (`EFFECT_BOOSTER`): their targets are mostly
    noise around effects of a point or two.
    """

    booster: dict[str, Any] = field(default_factory=lambda: dict(REGULARISED_BOOSTER))
    effect_booster: dict[str, Any] = field(default_factory=lambda: dict(EFFECT_BOOSTER))
    folds: int = CROSS_FIT_FOLDS
    random_state: int = 0

    def fit(
        self, features: pd.DataFrame | np.ndarray, treated: np.ndarray, outcome: np.ndarray
    ) -> XLearner:
        """Fit the outcome models out of fold, then the effect models; returns self."""
        x, t, y = _matrix(features), np.asarray(treated, bool), np.asarray(outcome, float)
        p = self._out_of_fold_outcomes(x, t, y.astype(int))
        imputed_treated = y[t] - p[t, 0]
        imputed_control = p[~t, 1] - y[~t]
        self.treated_effect_ = _regressor(self.effect_booster, self.random_state).fit(
            x[t], imputed_treated
        )
        self.control_effect_ = _regressor(self.effect_booster, self.random_state).fit(
            x[~t], imputed_control
        )
        self.treated_share_ = float(t.mean())
        return self

    def _out_of_fold_outcomes(self, x: np.ndarray, t: np.ndarray, y: np.ndarray) -> np.ndarray:
        """P(y = 1) without and with the contact, each row's from models fitted without it."""
        strata = 2 * t.astype(int) + y
        folds = min(self.folds, int(np.bincount(strata).min()))
        if folds < 2:
            raise ValueError("cross-fitting needs at least 2 of each (treated, outcome) pair")
        splits = StratifiedKFold(folds, shuffle=True, random_state=self.random_state)
        out = np.empty((len(y), 2))
        for train, held in splits.split(x, strata):
            fold = TwoModel(self.booster, self.random_state).fit(x[train], t[train], y[train])
            out[held] = fold.outcome_probabilities(x[held])
        return out

    def predict(self, features: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Predicted uplift per row."""
        x = _matrix(features)
        e = self.treated_share_
        return e * self.control_effect_.predict(x) + (1 - e) * self.treated_effect_.predict(x)

    def to_state(self) -> dict[str, Any]:
        """The fitted learner as plain JSON-able data (boosters in XGBoost's JSON format)."""
        boosters = {"control_effect": self.control_effect_, "treated_effect": self.treated_effect_}
        return {
            "kind": "x_learner",
            "treated_share": self.treated_share_,
            "boosters": {
                name: bytes(model.get_booster().save_raw("json")).decode("utf-8")
                for name, model in boosters.items()
            },
        }


@dataclass(frozen=True)
class FittedUplift:
    """A fitted X-learner read back from `XLearner.to_state` (prediction only)."""

    treated_share: float
    boosters: dict[str, xgb.Booster]

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> FittedUplift:
        """Rebuild the boosters from their JSON, predicting on one thread.

        XGBoost's default (every core) costs 80-110 ms a one-row prediction on a busy 2-core
        machine (thread start-up and contention), against a few milliseconds on one thread.
        """
        boosters = {}
        for name, text in state["boosters"].items():
            booster = xgb.Booster()
            booster.load_model(bytearray(text.encode("utf-8")))
            booster.set_param({"nthread": 1})
            boosters[name] = booster
        return cls(float(state["treated_share"]), boosters)

    def predict(self, features: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Predicted uplift per row (as `XLearner.predict`)."""
        x = _matrix(features)
        e = self.treated_share
        tau0 = self.boosters["control_effect"].inplace_predict(x)
        tau1 = self.boosters["treated_effect"].inplace_predict(x)
        return np.asarray(e * tau0 + (1 - e) * tau1, dtype=float)


def _classifier(params: dict[str, Any], seed: int) -> xgb.XGBClassifier:
    return xgb.XGBClassifier(**params, random_state=seed, eval_metric="logloss")


def _regressor(params: dict[str, Any], seed: int) -> xgb.XGBRegressor:
    return xgb.XGBRegressor(**params, random_state=seed)


# ---------------------------------------------------------------------------------- metrics
def _order(uplift: np.ndarray) -> np.ndarray:
    """Rows by predicted uplift, highest first (ties in row order)."""
    return np.argsort(-np.asarray(uplift, float), kind="stable")


def qini_curve(
    outcome: np.ndarray,
    treated: np.ndarray,
    uplift: np.ndarray,
    weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(share of customers targeted, Qini / customers) after each customer, from 0.

    `weights` counts each row that many times (a bootstrap resample's counts; rows weighing 0
    are left out); None: once each.

    Raises:
        ValueError: no treated or no control customer.
    """
    t = np.asarray(treated, bool)
    w = np.ones(len(t)) if weights is None else np.asarray(weights, float)
    if not (w[t] > 0).any() or not (w[~t] > 0).any():
        raise ValueError("the Qini curve needs treated and control customers")
    order = _order(uplift)
    order = order[w[order] > 0]
    y, t, w = np.asarray(outcome, float)[order], t[order], w[order]
    n_t, n_c = np.cumsum(w * t), np.cumsum(w * ~t)
    y_t, y_c = np.cumsum(w * y * t), np.cumsum(w * y * ~t)
    scale = np.divide(n_t, n_c, out=np.zeros(len(y)), where=n_c > 0)
    total = float(np.sum(w))
    qini = (y_t - y_c * scale) / total
    share = np.cumsum(w) / total
    return np.concatenate([[0.0], share]), np.concatenate([[0.0], qini])


def qini_auc(
    outcome: np.ndarray,
    treated: np.ndarray,
    uplift: np.ndarray,
    weights: np.ndarray | None = None,
) -> float:
    """Mean height of the Qini curve above the random line, over 101 fractions in [0, 1]."""
    share, qini = qini_curve(outcome, treated, uplift, weights)
    grid = np.linspace(0, 1, 101)
    curve = np.interp(grid, share, qini)
    return float(np.mean(curve - grid * qini[-1]))


def qini_auc_bootstrap(
    outcome: np.ndarray,
    treated: np.ndarray,
    uplift: np.ndarray,
    draws: int = 1000,
    seed: int = 0,
) -> np.ndarray:
    """The Qini AUC of `draws` bootstrap resamples, each group resampled on its own.

    Resampling the treated and the control customers separately keeps each group's size, as
    the randomised campaign fixed it.
    """
    t = np.asarray(treated, bool)
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(t), np.flatnonzero(~t)]
    out = np.empty(draws)
    for draw in range(draws):
        weights = np.zeros(len(t))
        for rows in groups:
            weights[rows] = np.bincount(rng.integers(0, len(rows), len(rows)), minlength=len(rows))
        out[draw] = qini_auc(outcome, t, uplift, weights)
    return out


def uplift_at_k(outcome: np.ndarray, treated: np.ndarray, uplift: np.ndarray, k: float) -> float:
    """Treated minus control outcome rate among the top `k` share by predicted uplift."""
    if not 0 < k <= 1:
        raise ValueError(f"k must be in (0, 1], got {k}")
    order = _order(uplift)[: max(1, round(k * len(uplift)))]
    y, t = np.asarray(outcome, float)[order], np.asarray(treated, bool)[order]
    if t.all() or not t.any():
        return float("nan")
    return float(y[t].mean() - y[~t].mean())
