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

    .venv/bin/python benchmarks/uplift.py [--customers 20000] [--budget 500[,1000,...]]
        [--seeds 42[,7,...]] [--skip-hillstrom]

Each seed is its own bank; `runs` lists every (seed, budget) and the line gives the ratio's mean
and worst case. Diagnostics per bank: each past campaign's treated and control members, its
observed lift with the standard error and the true lift (`bank_campaigns`); the model's Qini AUC
on the latest campaign when trained on the earlier ones, beside the Qini AUC the simulator's true
uplift scores on the same members (`bank_holdout_qini_auc_true_uplift`: the ceiling that noise
leaves), its one-sided 95% bootstrap lower bound, and whether `loyal train uplift`'s promotion
gate would let it become champion (`bank_holdout_promotion_gate`: the saved-value list is the
default only then). The first seed's and budget's figures stay at top level.
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
from training.uplift import evaluate, promotion_refusal, qini_bounds
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


def campaign_diagnostics(rows: pd.DataFrame, campaigns_truth: pd.DataFrame) -> list[dict[str, Any]]:
    """Per past campaign: treated and control members with an outcome, the observed lift in
    P(stay) with its standard error, and the true mean lift (effect size against noise)."""
    truth = campaigns_truth.assign(
        true_lift=campaigns_truth["p_control"] - campaigns_truth["p_treated"]
    )
    out = []
    for campaign, members in rows.groupby("campaign_id", sort=True):
        treated, control = members[members[TREATED]], members[~members[TREATED]]
        lift = treated["stayed"].mean() - control["stayed"].mean()
        se = np.sqrt(
            treated["stayed"].var() / len(treated) + control["stayed"].var() / len(control)
        )
        true_lift = truth.loc[truth["campaign_id"] == campaign, "true_lift"].mean()
        out.append(
            {
                "campaign": str(campaign),
                "treated": len(treated),
                "control": len(control),
                "observed_lift": round(float(lift), 4),
                "observed_lift_se": round(float(se), 4),
                "true_lift": round(float(true_lift), 4),
            }
        )
    return out


def holdout_qini(rows: pd.DataFrame, features: list[str], truth: pd.DataFrame) -> dict[str, Any]:
    """The latest campaign as holdout (as `loyal train uplift`): the model's Qini AUC against
    the Qini AUC of the simulator's true uplift on the same members (the noise ceiling)."""
    latest = (rows["campaign_id"] == rows["campaign_id"].max()).to_numpy()
    x = numeric_features(rows, features)
    treated = rows.loc[~latest, TREATED].to_numpy(bool)
    stayed = rows.loc[~latest, "stayed"].to_numpy()
    model = XLearner().fit(x[~latest], treated, stayed)
    baseline = TwoModel(dict(DEFAULT_BOOSTER)).fit(x[~latest], treated, stayed)
    keys = ["campaign_id", ENTITY_KEY]
    held = rows[latest].merge(truth[[*keys, "p_control", "p_treated"]], on=keys, how="left")
    true_uplift = (held["p_control"] - held["p_treated"]).to_numpy()
    y, t = held["stayed"].to_numpy(), held[TREATED].to_numpy(bool)
    predictions = {
        "model": model.predict(x[latest]),
        "two_model_baseline": baseline.predict(x[latest]),
    }
    metrics = {**evaluate(y, t, predictions), **qini_bounds(y, t, predictions["model"])}
    return {
        "bank_holdout_members": int(latest.sum()),
        "bank_holdout_qini_auc": round(metrics["qini_auc"], 5),
        "bank_holdout_qini_auc_low": round(metrics["qini_auc_low"], 5),
        "bank_holdout_qini_auc_true_uplift": round(qini_auc(y, t, true_uplift), 5),
        "bank_holdout_promotion_gate": "refused" if promotion_refusal(metrics) else "passed",
    }


def sample_bank(customers: int, budgets: list[int], seed: int) -> dict[str, Any]:
    """Value retained by each ranking at each budget, against the simulator's truth."""
    with tempfile.TemporaryDirectory() as home:
        settings = load_settings(home=Path(home))
        bank = settings.generate.overridden(customers=customers, seed=seed)
        raw = generate_sample_bank(settings, bank)
        ingest_folder(settings, raw)
        tables = read_contract(settings)
        truth_dir = settings.paths.truth_dir / "sample_bank"
        truth = pd.read_parquet(truth_dir / "retention_effects.parquet")
        campaigns_truth = pd.read_parquet(truth_dir / "campaigns_truth.parquet")
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
        "oracle": true_uplift * value,
    }
    seconds = round(time.perf_counter() - started, 1)
    runs = []
    for budget in budgets:
        retained = {}
        for name, key in rankings.items():
            chosen = np.argsort(-key, kind="stable")[:budget]
            retained[name] = float(np.sum(true_uplift[chosen] * value[chosen]))
        runs.append(
            {
                "seed": seed,
                "bank_customers": customers,
                "bank_budget_contacts": budget,
                "value_retained_expected_loss": round(retained["expected_loss"], 2),
                "value_retained_saved_value": round(retained["saved_value"], 2),
                "value_retained_ratio": round(
                    retained["saved_value"] / retained["expected_loss"], 3
                ),
                "value_retained_oracle": round(retained["oracle"], 2),
            }
        )
    campaigns_truth[ENTITY_KEY] = campaigns_truth[ENTITY_KEY].astype(str)
    return {
        "bank_open_customers": len(ids),
        "bank_campaign_rows": len(rows),
        "bank_uplift_fit_and_score_seconds": seconds,
        "bank_campaigns": campaign_diagnostics(rows, campaigns_truth),
        **holdout_qini(rows, features, campaigns_truth),
        "runs": runs,
    }


def summary(banks: list[dict[str, Any]]) -> dict[str, Any]:
    """The first run's figures at top level, each run, and the ratio's mean and worst case."""
    runs = [run for bank in banks for run in bank["runs"]]
    ratios = [run["value_retained_ratio"] for run in runs]
    worst = runs[int(np.argmin(ratios))]
    first = {k: v for k, v in banks[0].items() if k != "runs"}
    return {
        **runs[0],
        **first,
        "runs": runs if len(runs) > 1 else [],
        "holdout_qini_by_seed": [
            [bank["bank_holdout_qini_auc"], bank["bank_holdout_qini_auc_true_uplift"]]
            for bank in banks
        ],
        "promotion_gate_by_seed": [bank["bank_holdout_promotion_gate"] for bank in banks],
        "value_retained_ratio_mean": round(float(np.mean(ratios)), 3),
        "value_retained_ratio_worst": worst["value_retained_ratio"],
        "value_retained_ratio_worst_at": [worst["seed"], worst["bank_budget_contacts"]],
        "runs_at_least_1_5": f"{sum(r >= 1.5 for r in ratios)}/{len(ratios)}",
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


def _numbers(text: str) -> list[int]:
    """`500,1000` -> [500, 1000]; one clear line for anything else."""
    try:
        numbers = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected whole numbers separated by commas: {text!r}"
        ) from None
    if not numbers or min(numbers) <= 0:
        raise argparse.ArgumentTypeError(f"expected positive whole numbers: {text!r}")
    return numbers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--budget", type=_numbers, default=[500], help="contacts, e.g. 500,1000")
    parser.add_argument("--seeds", type=_numbers, default=[42], help="banks' seeds, e.g. 42,7")
    parser.add_argument("--skip-hillstrom", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    result: dict[str, Any] = {"benchmark": "uplift"}
    banks = []
    for seed in args.seeds:
        banks.append(sample_bank(args.customers, args.budget, seed))
        log.warning("seed %d: %s", seed, [r["value_retained_ratio"] for r in banks[-1]["runs"]])
    result.update(summary(banks))
    if not args.skip_hillstrom:
        result.update(hillstrom())
    print(json.dumps(result))


if __name__ == "__main__":
    main()
