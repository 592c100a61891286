"""Tabulated tree SHAP equals XGBoost's pred_contribs: depths 1..6, missing values, categories."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

import serving.treeshap as treeshap
from models.churn import ChurnModel
from serving.fastchurn import FastChurn

pytestmark = pytest.mark.unit


def churn_table(n: int = 500, seed: int = 5) -> tuple[pd.DataFrame, np.ndarray]:
    """Numbers with gaps, a flag and a six-level category that interacts with complaints."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "complaints_90d": np.where(rng.random(n) < 0.1, np.nan, rng.poisson(0.8, n)),
            "tenure_days": rng.integers(30, 4000, n).astype(float),
            "balance": np.where(rng.random(n) < 0.2, np.nan, rng.lognormal(7, 1, n)),
            "holds_savings": (rng.random(n) < 0.5).astype(float),
            "region": rng.choice(["north", "south", "east", "west", "capital", "isles"], n),
        }
    )
    complaints = frame["complaints_90d"].fillna(0)
    logit = -2.0 + 0.7 * complaints - frame["tenure_days"] / 3000
    logit += np.where(frame["region"].isin(["east", "isles"]), 0.6 * complaints, 0.0)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return frame, y


def as_rows(X: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {str(k): (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
        for r in X.to_dict(orient="records")
    ]


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5, 6])
def test_tables_equal_pred_contribs(depth: int) -> None:
    X, y = churn_table()
    model = ChurnModel(
        max_depth=depth, max_rounds=40, cv_folds=2, max_cat_to_onehot=2, min_child_weight=0.5
    ).fit(X, y)
    fast = FastChurn(model)
    assert fast._shap is not None
    rows = as_rows(X.head(60))
    expected = model.contributions(X.head(60)).drop(columns="bias").to_numpy()
    mine = np.array([fast.contributions(fast.encode(r)) for r in rows])
    np.testing.assert_allclose(mine, expected, rtol=0, atol=1e-5)
    batch = model.predict_proba(X.head(60))[:, 1]
    scored = [fast.score(r, top=3) for r in rows]
    np.testing.assert_allclose([p for p, _ in scored], batch, rtol=0, atol=1e-6)
    reasons = [[r.sentence for r in row] for row in model.explain(X.head(60), top=3)]
    assert [s for _, s in scored] == reasons


def test_categorical_partitions_are_exercised() -> None:
    X, y = churn_table()
    model = ChurnModel(max_depth=4, max_rounds=40, cv_folds=2, max_cat_to_onehot=2).fit(X, y)
    fast = FastChurn(model)
    assert (fast._trees.category_row[fast._trees.left >= 0] >= 0).any()


def test_a_model_too_large_to_tabulate_falls_back_to_xgboost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    X, y = churn_table()
    model = ChurnModel(max_depth=3, max_rounds=20, cv_folds=2).fit(X, y)
    monkeypatch.setattr(treeshap, "MAX_TABLE_CELLS", 10)
    fast = FastChurn(model)
    assert fast._shap is None
    row = as_rows(X.head(1))[0]
    expected = model.contributions(X.head(1)).drop(columns="bias").to_numpy()[0]
    np.testing.assert_allclose(fast.contributions(fast.encode(row)), expected, atol=1e-5)
    assert fast.score(row)[0] == pytest.approx(model.predict_proba(X.head(1))[0, 1], abs=1e-6)


def test_a_row_of_nothing_but_gaps_gets_contributions() -> None:
    X, y = churn_table()
    model = ChurnModel(max_depth=3, max_rounds=20, cv_folds=2).fit(X, y)
    fast = FastChurn(model)
    empty = X.head(1).copy()
    empty.loc[:, ["complaints_90d", "tenure_days", "balance", "holds_savings"]] = np.nan
    empty["region"] = None
    expected = model.contributions(empty).drop(columns="bias").to_numpy()[0]
    np.testing.assert_allclose(fast.contributions(fast.encode({})), expected, atol=1e-5)
