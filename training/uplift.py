"""Train, evaluate, log and register the `uplift` model from past campaigns (`loyal train uplift`).

Rows: the members of the contract's `campaigns` table with a complete outcome (stayed over the
churn horizon after the campaign), their features as of the campaign through Feast's
point-in-time join on the churn feature service. Split by time: the latest campaign is the
holdout, the earlier ones, pooled, train (one campaign only: a stratified 30% of it is held
out). The model (`models.uplift.XLearner`, cross-fitted) and a plain two-model baseline (two
default XGBoost classifiers) are fitted on the same rows and measured on the same holdout: Qini AUC,
uplift@10% and uplift@30%, and the Qini curves (PNG) in MLflow. Promotion compares Qini AUC on
the challenger's holdout.

The promotion gate (`promotion_refusal`): a version may become champion, the first one
included, only if on its holdout its Qini AUC beats the two-model baseline's and is surely
above 0 (random targeting), i.e. the 5th percentile of 1,000 bootstrap resamples of the holdout
(treated and control resampled apart) is above 0: a one-sided 95% percentile bound. Otherwise
the version is registered with the reason as `tracking.TAG_REFUSED` and the one promotion path
refuses it; retention keeps being ranked by expected loss (the spec's serving fallback).
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.catalog import ENTITY_KEY, TIMESTAMP_FIELD
from loyal.errors import LoyalError
from loyal.settings import Settings
from models.uplift import (
    DEFAULT_BOOSTER,
    TwoModel,
    XLearner,
    qini_auc,
    qini_auc_bootstrap,
    qini_curve,
    uplift_at_k,
)
from training.tracking import RegisteredRun
from training.uplift_data import (
    OUTCOME,
    TREATED,
    campaign_members,
    feature_columns,
    numeric_features,
    vocabulary,
)

log = logging.getLogger(__name__)

NAME = "uplift"
SERVICE = "churn_v1"
ARTIFACT = "uplift_model"
HOLDOUT_SHARE = 0.3
BOOKKEEPING = [ENTITY_KEY, TIMESTAMP_FIELD, TREATED, "campaign_id"]
GATE_DRAWS = 1000
GATE_CONFIDENCE = 0.95
"""The Qini AUC's bootstrap lower bound must clear 0 with this one-sided confidence."""


@dataclass(frozen=True)
class UpliftResult(RegisteredRun):
    """What `train_uplift` returns."""

    metrics: dict[str, float]


def check_uplift(settings: Settings) -> None:
    """Uplift needs a campaigns table with enough members (raises `StepSkippedError`)."""
    tables = outcome_tables(settings)
    campaign_members(tables, settings.snapshots.horizon_days, settings.snapshots.churn_definition)


def outcome_tables(settings: Settings) -> dict[str, pd.DataFrame]:
    """The contract columns that campaign members' outcomes read, not the whole tables.

    The campaigns, the customers' signup and closure, and the events' times (the end of the
    observed data); the transactions' customers and amounts only under the inactivity
    definition. At a million customers the whole contract held in pandas passes 8 GB, most of
    it the transactions' text columns.
    """
    from features.labels import churn_definition
    from features.tables_io import read_contract

    tables = read_contract(
        settings,
        only=["customers", "campaigns"],
        columns={"customers": [ENTITY_KEY, "signup_date", "closed_at"]},
    )
    inactivity = churn_definition(tables, settings.snapshots.churn_definition) == "inactivity"
    purchases = [ENTITY_KEY, "ts", "amount"] if inactivity else ["ts"]
    events = {"transactions": purchases, "interactions": ["ts"], "balances": ["ts"]}
    return {**tables, **read_contract(settings, only=list(events), columns=events)}


def campaign_frame(settings: Settings) -> pd.DataFrame:
    """Campaign members with their features at the campaign (Feast) and their outcome."""
    from features.frames import training_frame

    tables = outcome_tables(settings)
    snapshots = settings.snapshots
    members = campaign_members(tables, snapshots.horizon_days, snapshots.churn_definition)
    entities = members[[ENTITY_KEY, TIMESTAMP_FIELD]].copy()
    entities[TIMESTAMP_FIELD] = pd.to_datetime(entities[TIMESTAMP_FIELD], utc=True)
    features = training_frame(settings, SERVICE, entities, with_labels=False)
    features[TIMESTAMP_FIELD] = pd.to_datetime(features[TIMESTAMP_FIELD], utc=True)
    members = members.assign(**{TIMESTAMP_FIELD: entities[TIMESTAMP_FIELD].to_numpy()})
    return members.merge(features, on=[ENTITY_KEY, TIMESTAMP_FIELD], how="left")


def split(rows: pd.DataFrame, seed: int = 42) -> tuple[np.ndarray, np.ndarray]:
    """Train and holdout masks: the latest campaign held out (or 30% of a single one)."""
    latest = rows[TIMESTAMP_FIELD] == rows[TIMESTAMP_FIELD].max()
    if latest.all():
        rng = np.random.default_rng(seed)
        holdout = np.zeros(len(rows), dtype=bool)
        for _, positions in rows.groupby([TREATED, OUTCOME]).indices.items():
            count = round(HOLDOUT_SHARE * len(positions))
            holdout[rng.choice(positions, count, replace=False)] = True
        return ~holdout, holdout
    return ~latest.to_numpy(), latest.to_numpy()


def evaluate(
    outcome: np.ndarray, treated: np.ndarray, predictions: Mapping[str, np.ndarray]
) -> dict[str, float]:
    """Qini AUC and uplift@10%/30% of each named prediction (`<metric>` or `<metric>_<name>`)."""
    metrics = {}
    for name, uplift in predictions.items():
        suffix = "" if name == "model" else f"_{name}"
        metrics[f"qini_auc{suffix}"] = qini_auc(outcome, treated, uplift)
        metrics[f"uplift_at_10{suffix}"] = uplift_at_k(outcome, treated, uplift, 0.1)
        metrics[f"uplift_at_30{suffix}"] = uplift_at_k(outcome, treated, uplift, 0.3)
    return metrics


def qini_figure(
    outcome: np.ndarray, treated: np.ndarray, predictions: Mapping[str, np.ndarray]
) -> Any:
    """The Qini curves of each prediction against random targeting."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4.5))
    axes = figure.subplots()
    last = 0.0
    for name, uplift in predictions.items():
        share, qini = qini_curve(outcome, treated, uplift)
        axes.plot(share, qini, label=f"{name} (Qini AUC {qini_auc(outcome, treated, uplift):.4f})")
        last = float(qini[-1])
    axes.plot([0, 1], [0, last], linestyle="--", color="grey", label="random")
    axes.set_xlabel("share of customers contacted (by predicted uplift)")
    axes.set_ylabel("extra customers kept per customer (Qini)")
    axes.set_title("Qini curves on the holdout campaign")
    axes.legend(loc="best")
    figure.tight_layout()
    return figure


def train_uplift(settings: Settings, register: bool = True, seed: int = 42) -> UpliftResult:
    """Fit on past campaigns, evaluate against the two-model baseline, log and register.

    Raises:
        StepSkippedError: no campaigns table, or too few members with an outcome.
    """
    from training import tracking

    rows = campaign_frame(settings)
    train, holdout = split(rows, seed)
    columns = feature_columns(rows)
    vocab = vocabulary(rows[train], columns)
    x_train = numeric_features(rows[train], columns, vocab)
    x_hold = numeric_features(rows[holdout], columns, vocab)
    t_train, y_train = rows.loc[train, TREATED].to_numpy(bool), rows.loc[train, OUTCOME].to_numpy()
    t_hold, y_hold = (
        rows.loc[holdout, TREATED].to_numpy(bool),
        rows.loc[holdout, OUTCOME].to_numpy(),
    )
    model = XLearner(random_state=seed).fit(x_train, t_train, y_train)
    baseline = TwoModel(dict(DEFAULT_BOOSTER), seed).fit(x_train, t_train, y_train)
    predictions = {"model": model.predict(x_hold), "two_model_baseline": baseline.predict(x_hold)}
    metrics = evaluate(y_hold, t_hold, predictions)
    metrics.update(qini_bounds(y_hold, t_hold, predictions["model"], seed))
    refused = promotion_refusal(metrics)
    metrics["promotable"] = float(refused is None)
    log.info(
        "uplift: Qini AUC %.5f [%.5f, %.5f] (two-model baseline %.5f) on %d holdout members",
        metrics["qini_auc"], metrics["qini_auc_low"], metrics["qini_auc_high"],
        metrics["qini_auc_two_model_baseline"], int(holdout.sum()),
    )  # fmt: skip
    if refused is not None:
        log.warning("uplift: promotion will refuse this version: %s", refused)
    holdout_frame = rows.loc[holdout, [*BOOKKEEPING, *columns, OUTCOME]].reset_index(drop=True)
    snapshot = tracking.frame_snapshot_id(rows[[ENTITY_KEY, TIMESTAMP_FIELD, TREATED, OUTCOME]])
    with tracking.start_run(settings, NAME, snapshot) as run:
        import mlflow

        mlflow.log_params(
            {
                "learner": "x_learner",
                "train_members": int(train.sum()),
                "holdout_members": int(holdout.sum()),
                "features": len(columns),
                "cross_fit_folds": model.folds,
                **{f"booster_{k}": v for k, v in model.booster.items()},
                **{f"effect_booster_{k}": v for k, v in model.effect_booster.items()},
            }
        )
        mlflow.log_metrics(metrics)
        tracking.log_figure(qini_figure(y_hold, t_hold, predictions), "qini_curve")
        with tempfile.TemporaryDirectory() as tmp:
            state = Path(tmp) / f"{ARTIFACT}.json"
            payload = {"model": model.to_state(), "columns": columns, "vocabulary": vocab}
            state.write_text(json.dumps(payload), encoding="utf-8")
            example = holdout_frame[columns].head(3)
            info = tracking.log_pyfunc(
                "models.pyfuncs.uplift",
                {ARTIFACT: state},
                None,
                example,
                tracking.requirements(["mlflow", "pandas", "numpy", "xgboost"]),
            )
        tracking.log_holdout(
            holdout_frame, OUTCOME, "uplift", exclude=BOOKKEEPING, extra={"treated": TREATED}
        )
        version = None
        if register:
            tags = tracking.lineage(snapshot, qini_auc=metrics["qini_auc"])
            if refused is not None:
                tags[tracking.TAG_REFUSED] = refused
            version = tracking.register(settings, str(info.model_uri), NAME, run.info.run_id, tags)
    return UpliftResult(run.info.run_id, str(version.version) if version else None, metrics)


def qini_bounds(
    outcome: np.ndarray, treated: np.ndarray, uplift: np.ndarray, seed: int = 42
) -> dict[str, float]:
    """`qini_auc_low` and `qini_auc_high`: the bootstrap's one-sided `GATE_CONFIDENCE` bounds."""
    draws = qini_auc_bootstrap(outcome, treated, uplift, GATE_DRAWS, seed)
    low, high = np.quantile(draws, [1 - GATE_CONFIDENCE, GATE_CONFIDENCE])
    return {"qini_auc_low": float(low), "qini_auc_high": float(high)}


def promotion_refusal(metrics: Mapping[str, float]) -> str | None:
    """Why a version must not become champion (None: it may), from its holdout metrics.

    It must beat the two-model baseline fitted on the same rows (else the plain learner would
    rank better) and its Qini AUC must be surely above 0 (else it may rank no better than
    chance, and expected loss is the safer ranking).
    """
    qini, low = metrics["qini_auc"], metrics["qini_auc_low"]
    baseline = metrics["qini_auc_two_model_baseline"]
    problems = []
    if not qini > baseline:
        problems.append(f"does not beat the two-model baseline's {baseline:.4f}")
    if not low > 0:
        problems.append(
            f"is not surely above 0 (random targeting): its {GATE_CONFIDENCE:.0%} bootstrap "
            f"lower bound is {low:.4f}"
        )
    if not problems:
        return None
    return (
        f"its holdout Qini AUC {qini:.4f} {' and '.join(problems)}; "
        "retention stays ranked by expected loss"
    )


def qini_scorer(metric: str) -> Any:
    """Promotion scorer: the Qini AUC of a logged uplift pyfunc on a holdout."""
    if metric != "qini_auc":
        raise LoyalError(f"uplift promotes on qini_auc only, not {metric}")

    def score(model_uri: str, holdout: pd.DataFrame, meta: Mapping[str, Any]) -> float:
        import mlflow.pyfunc

        model = mlflow.pyfunc.load_model(model_uri)
        inputs = holdout.drop(columns=[meta["label"], *meta.get("exclude", [])], errors="ignore")
        predicted = pd.DataFrame(model.predict(inputs))["uplift"].to_numpy()
        treated = holdout[meta.get("treated", TREATED)].to_numpy(bool)
        return qini_auc(holdout[meta["label"]].to_numpy(), treated, predicted)

    return score
