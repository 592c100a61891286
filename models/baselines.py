"""Baselines every churn report scores beside Loyal's model: logistic regression and plain XGBoost.

Both are what a data scientist would write in five lines, fitted in the same folds (or on the
same training rows) as `models.churn.ChurnModel`, so a report shows at once whether Loyal's
search and calibration help on the user's data:

* `plain_xgboost`: one-hot categories (missing is a category of its own), numbers as given,
  `XGBClassifier` with fixed settings (400 trees, depth 4, learning rate 0.03), no search, no
  early stopping, no calibration.
* `logistic`: numbers imputed by their median (with a missing flag) and standardised, one-hot
  categories, L2-regularised logistic regression.

Inputs are frames as `ChurnModel` takes them: numeric columns and categorical ones (category
or text dtype). Neither baseline does any I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

PLAIN_XGBOOST = {"n_estimators": 400, "max_depth": 4, "learning_rate": 0.03}
"""The fixed settings of the plain XGBoost baseline."""
BASELINES = ("xgboost", "logistic")


class _AsText(TransformerMixin, BaseEstimator):
    """Categorical columns as an object array of strings; missing values become "<missing>"."""

    def fit(self, X: pd.DataFrame, y: object = None) -> _AsText:
        """Nothing to learn."""
        return self

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        """Strings, one column per input column."""
        frame = pd.DataFrame(X)
        return frame.astype(object).where(frame.notna(), "<missing>").astype(str).to_numpy()


def split_columns(X: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(numeric, categorical) column names: booleans and numbers are numeric, the rest not."""
    numeric = [
        str(c)
        for c in X.columns
        if pd.api.types.is_numeric_dtype(X[c]) or pd.api.types.is_bool_dtype(X[c])
    ]
    categorical = [str(c) for c in X.columns if str(c) not in numeric]
    return numeric, categorical


def _one_hot() -> Pipeline:
    return make_pipeline(_AsText(), OneHotEncoder(handle_unknown="ignore"))


def plain_xgboost(
    numeric: Sequence[str], categorical: Sequence[str], seed: int = 42, n_jobs: int = 1
) -> Pipeline:
    """Plain XGBoost: one-hot categories, 400 trees of depth 4 at learning rate 0.03."""
    from xgboost import XGBClassifier

    columns = ColumnTransformer(
        [("numeric", "passthrough", list(numeric)), ("categorical", _one_hot(), list(categorical))]
    )
    booster = XGBClassifier(
        **PLAIN_XGBOOST, tree_method="hist", random_state=seed, n_jobs=n_jobs, verbosity=0
    )
    return Pipeline([("columns", columns), ("xgboost", booster)])


def logistic(numeric: Sequence[str], categorical: Sequence[str]) -> Pipeline:
    """Logistic regression on standardised, median-imputed numbers and one-hot categories."""
    # keep_empty_features: a column with no value in a training fold becomes 0, not a warning
    imputer = SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)
    numbers = make_pipeline(imputer, StandardScaler())
    columns = ColumnTransformer(
        [("numeric", numbers, list(numeric)), ("categorical", _one_hot(), list(categorical))]
    )
    return Pipeline([("columns", columns), ("logistic", LogisticRegression(max_iter=2000))])


def baseline(name: str, X: pd.DataFrame, seed: int = 42, n_jobs: int = 1) -> Pipeline:
    """An unfitted baseline ("xgboost" or "logistic") for the columns of X."""
    numeric, categorical = split_columns(X)
    if name == "xgboost":
        return plain_xgboost(numeric, categorical, seed, n_jobs)
    if name == "logistic":
        return logistic(numeric, categorical)
    raise ValueError(f"baseline must be one of {', '.join(BASELINES)}, got '{name}'")
