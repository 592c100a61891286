"""Benchmark uplift: saved-value vs expected-loss lists on the sample bank, and Hillstrom.

Sample bank (`--customers`, seed 42): the generator's three past retention campaigns (random
50/50 split) are the training rows (`training.uplift_data.campaign_rows`); the uplift model
(`models.uplift.XLearner`) learns P(stay | contact) - P(stay | no contact) from them. A churn
model (XGBoost, the same features) learns from the monthly snapshots with complete labels. At
the data's end every open customer is scored; the value at stake is the customer's trailing
12-month margin (the same for both rankings). At the same budget (`--budget` contacts):

* expected loss = churn probability x value (today's list), against
* saved value = predicted uplift x value - contact cost (`--rank-by saved-value`);

each list's value retained is measured against the simulator's truth: the sum over the
contacted customers of (true churn probability without contact - with contact) x value.

Hillstrom (../shared/data/hillstrom; women's e-mail vs no e-mail, outcome `visit`): 5-fold
stratified CV (seed 42), the uplift model against a plain two-model baseline (two XGBoost
classifiers with default settings) in the same folds: Qini AUC and uplift@30%.

    .venv/bin/python benchmarks/uplift.py [--customers 20000] [--budget 500] [--skip-hillstrom]
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.model_selection import StratifiedKFold

from features.catalog import ENTITY_KEY, TIMESTAMP_FIELD
from features.engineering import observed_until, snapshot_times
from features.labels import churn_labels
from features.tables_io import read_contract
from loyal.settings import load_settings
from models.uplift import DEFAULT_BOOSTER, TwoModel, XLearner, qini_auc, uplift_at_k
from pipelines.ingest import ingest_folder
from samplebank.generate import generate_sample_bank
from samplebank.retention_sim import CONTACT_COST
from training.uplift_data import TREATED, campaign_rows, feature_frame, numeric_features

HILLSTROM = Path(__file__).resolve().parents[2] / "shared/data/hillstrom/hillstrom.csv.gz"
HORIZON_DAYS = 90
log = logging.getLogger("benchmarks.uplift")


def trailing_margin(tables: dict[str, pd.DataFrame], end: pd.Timestamp) -> pd.Series:
    """Margin per customer over the 365 days before `end` (the value at stake)."""
    tx = tables["transactions"]
    recent = tx[(tx["ts"] >= end - pd.Timedelta(days=365)) & (tx["ts"] < end)]
    return recent.groupby(recent[ENTITY_KEY].astype(str))["margin"].sum().clip(lower=0)


def churn_probabilities(
    tables: dict[str, pd.DataFrame], today: pd.DataFrame, columns: list[str]
) -> np.ndarray:
    """A churn model on the last 9 monthly snapshots with complete labels, scored today."""
    end = observed_until(tables)
    snapshots = [s for s in snapshot_times(tables) if s + pd.Timedelta(days=HORIZON_DAYS) <= end][
        -9:
    ]
    labels = churn_labels(tables, snapshots, HORIZON_DAYS)
    labels[TIMESTAMP_FIELD] = labels[TIMESTAMP_FIELD].dt.tz_localize(None)
    history = feature_frame(tables, list(snapshots))
    history[TIMESTAMP_FIELD] = pd.to_datetime(history[TIMESTAMP_FIELD]).dt.tz_localize(None)
    rows = history.merge(labels, on=[ENTITY_KEY, TIMESTAMP_FIELD])
    model = xgb.XGBClassifier(
        n_estimators=300, max_depth=4, learning_rate=0.05, n_jobs=1, tree_method="hist"
    )
    model.fit(numeric_features(rows, columns), rows["churned"].astype(int))
    return model.predict_proba(numeric_features(today, columns))[:, 1]


def sample_bank(customers: int, budget: int) -> dict[str, Any]:
    """Value retained by each ranking at the same budget, against the simulator's truth."""
    with tempfile.TemporaryDirectory() as home:
        settings = load_settings(home=Path(home))
        raw = generate_sample_bank(settings, customers=customers, seed=42)
        ingest_folder(settings, raw)
        tables = read_contract(settings)
        truth = pd.read_parquet(settings.paths.truth_dir / "sample_bank/retention_effects.parquet")
    started = time.perf_counter()
    rows = campaign_rows(tables, HORIZON_DAYS)
    features = list(numeric_features(rows).columns)
    uplift_model = XLearner().fit(numeric_features(rows, features), rows[TREATED], rows["stayed"])
    end = observed_until(tables)
    today = feature_frame(tables, [end])
    today = today[today[ENTITY_KEY].astype(str).isin(set(truth[ENTITY_KEY].astype(str)))]
    today = today.reset_index(drop=True)
    ids = today[ENTITY_KEY].astype(str)
    value = trailing_margin(tables, end).reindex(ids).fillna(0.0).to_numpy()
    churn = churn_probabilities(tables, today, features)
    uplift = uplift_model.predict(numeric_features(today, features))
    true = truth.set_index(truth[ENTITY_KEY].astype(str)).reindex(ids)
    true_uplift = (true["p_control"] - true["p_treated"]).to_numpy()
    rankings = {
        "expected_loss": churn * value,
        "saved_value": uplift * value - CONTACT_COST,
    }
    retained = {}
    for name, key in rankings.items():
        chosen = np.argsort(-key, kind="stable")[:budget]
        retained[name] = float(np.sum(true_uplift[chosen] * value[chosen]))
    best = np.argsort(-(true_uplift * value), kind="stable")[:budget]
    return {
        "bank_customers": customers,
        "bank_open_customers": len(ids),
        "bank_campaign_rows": len(rows),
        "bank_budget_contacts": budget,
        "value_retained_expected_loss": round(retained["expected_loss"], 2),
        "value_retained_saved_value": round(retained["saved_value"], 2),
        "value_retained_ratio": round(retained["saved_value"] / retained["expected_loss"], 3),
        "value_retained_oracle": round(float(np.sum(true_uplift[best] * value[best])), 2),
        "bank_uplift_fit_and_score_seconds": round(time.perf_counter() - started, 1),
    }


def hillstrom() -> dict[str, Any]:
    """5-fold Qini AUC and uplift@30%: uplift model vs the plain two-model baseline."""
    data = pd.read_csv(HILLSTROM)
    data = data[data["segment"].isin(["Womens E-Mail", "No E-Mail"])].reset_index(drop=True)
    treated = (data["segment"] == "Womens E-Mail").to_numpy()
    visit = data["visit"].to_numpy()
    columns = ["recency", "history", "mens", "womens", "newbie", "zip_code", "channel"]
    features = pd.get_dummies(data[columns], dtype=float)
    folds = StratifiedKFold(5, shuffle=True, random_state=42)
    scores: dict[str, list[tuple[float, float]]] = {"model": [], "baseline": []}
    for train, test in folds.split(features, 2 * treated + visit):
        for name, learner in (("model", XLearner()), ("baseline", TwoModel(dict(DEFAULT_BOOSTER)))):
            learner.fit(features.iloc[train], treated[train], visit[train])
            predicted = learner.predict(features.iloc[test])
            scores[name].append(
                (
                    qini_auc(visit[test], treated[test], predicted),
                    uplift_at_k(visit[test], treated[test], predicted, 0.3),
                )
            )
    mean = {name: np.mean(values, axis=0) for name, values in scores.items()}
    return {
        "hillstrom_rows": len(data),
        "hillstrom_qini_auc": round(float(mean["model"][0]), 5),
        "hillstrom_qini_auc_baseline": round(float(mean["baseline"][0]), 5),
        "hillstrom_uplift_at_30": round(float(mean["model"][1]), 4),
        "hillstrom_uplift_at_30_baseline": round(float(mean["baseline"][1]), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--budget", type=int, default=500)
    parser.add_argument("--skip-hillstrom", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    result: dict[str, Any] = {"benchmark": "uplift"}
    result.update(sample_bank(args.customers, args.budget))
    if not args.skip_hillstrom:
        result.update(hillstrom())
    print(json.dumps(result))


if __name__ == "__main__":
    main()
