"""Train the acceptance model from the decision log; score versions by off-policy evaluation.

The log's answered decisions are split by time: the earlier 75% fit the hierarchical
pseudo-count model (`models.acceptance`), the later 25% are the holdout. On the holdout each
version is judged by the policy it would make: greedy on its P(accept) x value among each
decision's logged eligible actions, valued by doubly robust off-policy evaluation. A challenger
is promoted only if the lower bound of its estimate beats the champion's estimate (or, for the
first version, the value the logged policy actually earned on the holdout).
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from decisions.log import PENDING, DecisionLog, Outcome
from decisions.ope import Evaluation, evaluate
from decisions.policy import answers_of
from decisions.record import log_target
from features.tables_io import recorded_catalog
from loyal.errors import StepSkippedError
from loyal.settings import Settings
from models.acceptance import ARTIFACT, AcceptanceModel, predict_rows
from models.offers import choose_catalog, load_catalog

log = logging.getLogger(__name__)

NAME = "acceptance"
METRIC = "ope_dr_value"
HOLDOUT_SHARE = 0.25
MIN_ANSWERS = 200
"""Answered decisions needed before a model is trained (fewer: the catalog priors serve)."""


@dataclass(frozen=True)
class AcceptanceResult:
    """What `train` returns."""

    run_id: str
    model_version: str | None
    answers: int
    holdout: dict[str, float]


def answered(settings: Settings, now: datetime | None = None) -> list[Outcome]:
    """The log's decisions with an answer (or ignored past the window), oldest first."""
    store = DecisionLog(log_target(settings))
    ignore = timedelta(hours=settings.decisions.ignore_after_hours)
    return [
        o
        for o in store.outcomes(now or datetime.now(UTC), ignore)
        if o.outcome != PENDING and o.decision.action_id and o.decision.candidates
    ]


def check_applicable(settings: Settings) -> None:
    """Enough answered decisions to learn from; else the catalog's priors keep serving."""
    count = len(answered(settings))
    if count < MIN_ANSWERS:
        raise StepSkippedError(
            f"acceptance: the decision log holds {count} answered decisions (needs "
            f"{MIN_ANSWERS}); the catalog's p_accept keeps serving"
        )


def catalog_priors(settings: Settings) -> dict[str, float]:
    """Offer id -> the catalog's p_accept, from the catalog this home serves."""
    options = settings.serving
    path, _ = choose_catalog(options.catalog_path, options.catalog, recorded_catalog(settings))
    return {offer.id: offer.p_accept for offer in load_catalog(path).offers}


def ope_frame(outcomes: Sequence[Outcome], priors: Mapping[str, float]) -> pd.DataFrame:
    """One row per (decision, eligible action): what off-policy evaluation of a version needs."""
    rows = []
    for outcome in outcomes:
        decision = outcome.decision
        segment = (decision.features or {}).get("segment_id")
        for candidate in decision.candidates:
            logged = candidate.action_id == decision.action_id
            rows.append(
                {
                    "decision": decision.decision_id,
                    "offer_id": candidate.action_id,
                    "channel": decision.channel,
                    "segment": "?" if segment is None else str(segment),
                    "prior": priors.get(candidate.action_id, candidate.p_accept),
                    "logged_p_accept": candidate.p_accept,
                    "score": candidate.score,
                    "cost": candidate.cost,
                    "value": candidate.value,
                    "logged": logged,
                    "propensity": decision.propensity if logged else candidate.propensity,
                    "accepted": float(outcome.reward) if logged else 0.0,
                }
            )
    return pd.DataFrame(rows)


def policy_value(frame: pd.DataFrame, p_accept: np.ndarray, seed: int = 0) -> Evaluation:
    """Doubly robust accepted value per decision of the greedy policy on `p_accept`.

    The reward model is the same P(accept) times each action's value.
    """
    frame = frame.assign(p=p_accept)
    gross = frame["score"] + frame["cost"]
    ratio = np.where(frame["logged_p_accept"] > 0, frame["p"] / frame["logged_p_accept"], 0.0)
    frame = frame.assign(rescored=gross * ratio - frame["cost"], q=frame["p"] * frame["value"])
    best = frame.loc[frame.groupby("decision", sort=False)["rescored"].idxmax()]
    logged = frame[frame["logged"]].set_index("decision")
    chosen = best.set_index("decision").reindex(logged.index)
    pi = (chosen["offer_id"] == logged["offer_id"]).astype(float).to_numpy()
    reward = (logged["accepted"] * logged["value"]).to_numpy()
    return evaluate(
        reward,
        logged["propensity"].to_numpy(),
        pi,
        logged["q"].to_numpy(),
        chosen["q"].to_numpy(),
        clip=None,
        min_ess=30.0,
        seed=seed,
    )


def _split(outcomes: list[Outcome]) -> tuple[list[Outcome], list[Outcome]]:
    ordered = sorted(outcomes, key=lambda o: o.decision.ts)
    cut = int(len(ordered) * (1 - HOLDOUT_SHARE))
    return ordered[:cut], ordered[cut:]


def fit(outcomes: Sequence[Outcome]) -> AcceptanceModel:
    """The acceptance model on answered decisions."""
    return AcceptanceModel().fit(answers_of(outcomes))


def predict_frame(model: AcceptanceModel, frame: pd.DataFrame) -> np.ndarray:
    """The model's P(accept) of each row of an `ope_frame`."""
    columns = (frame[c] for c in ("offer_id", "channel", "segment", "prior"))
    return np.asarray(predict_rows(model, *columns), dtype=float)


def train(settings: Settings, register: bool = True, now: datetime | None = None) -> Any:
    """Fit on the earlier answers, evaluate by OPE on the later ones, log and register.

    Raises:
        StepSkippedError: too few answered decisions (the catalog's priors keep serving).
    """
    from training import tracking

    outcomes = answered(settings, now)
    if len(outcomes) < MIN_ANSWERS:
        check_applicable(settings)
    priors = catalog_priors(settings)
    train_part, holdout_part = _split(outcomes)
    model = fit(train_part)
    holdout = ope_frame(holdout_part, priors)
    learned = policy_value(holdout, predict_frame(model, holdout))
    static = policy_value(holdout, holdout["prior"].to_numpy(dtype=float))
    metrics = {
        METRIC: learned.best.value,
        "ope_dr_low": learned.best.low,
        "ope_dr_high": learned.best.high,
        "ope_ess": learned.ess,
        "logged_value": learned.logged.value,
        "catalog_prior_dr_value": static.best.value,
        "train_answers": float(len(train_part)),
        "holdout_decisions": float(len(holdout_part)),
    }
    refused = _refusal(learned)
    full = fit(outcomes)  # the served model learns from every answer
    with tracking.start_run(settings, NAME, tracking.frame_snapshot_id(holdout)) as run:
        import mlflow

        mlflow.log_params({"offer_strength": full.offer_strength, "cells": len(full.cells_)})
        mlflow.log_metrics(metrics)
        tracking.log_holdout(
            holdout,
            label="accepted",
            prediction="p_accept",
            exclude=[c for c in holdout.columns if c not in ("offer_id", "channel", "segment")],
            extra={"rows": len(holdout), "metric": METRIC},
        )
        with tempfile.TemporaryDirectory() as tmp:
            state = Path(tmp) / f"{ARTIFACT}.json"
            state.write_text(json.dumps(full.to_dict()), encoding="utf-8")
            example = holdout[["offer_id", "channel", "segment", "prior"]].head(3)
            info = tracking.log_pyfunc(
                "models.pyfuncs.acceptance", {ARTIFACT: state}, None, example, []
            )
        tags = tracking.lineage(tracking.frame_snapshot_id(holdout), **{METRIC: metrics[METRIC]})
        if refused is not None:
            tags[tracking.TAG_REFUSED] = refused
        version = tracking.register_if(
            register, settings, str(info.model_uri), NAME, run.info.run_id, tags
        )
    log.info("acceptance: %s", metrics)
    return AcceptanceResult(run.info.run_id, version, len(outcomes), metrics)


def _refusal(learned: Evaluation) -> str | None:
    """Why this version must not serve: no OPE verdict, or no better than the logged policy."""
    if learned.refusal is not None:
        return f"off-policy evaluation gives no verdict: {learned.refusal}"
    if learned.best.low <= learned.logged.value:
        return (
            f"the lower bound of its policy's value {learned.best.low:.2f} does not beat "
            f"the logged policy's {learned.logged.value:.2f} on the holdout"
        )
    return None


def ope_scorer(metric: str) -> Callable[[str, pd.DataFrame, Mapping[str, Any]], float]:
    """Promotion scorer: the challenger's DR lower bound, the champion's DR estimate.

    The registry compares the two on the challenger's holdout; which role a version plays is
    read from the `champion` alias.
    """

    def score(model_uri: str, holdout: pd.DataFrame, meta: Mapping[str, Any]) -> float:
        import mlflow.pyfunc

        from mlflow import MlflowClient

        name, version = model_uri.removeprefix("models:/").split("/")
        try:
            champion = MlflowClient().get_model_version_by_alias(name, "champion").version
        except Exception:  # no champion yet
            champion = None
        model = mlflow.pyfunc.load_model(model_uri)
        inputs = holdout[["offer_id", "channel", "segment", "prior"]]
        p = np.asarray(model.predict(inputs)["p_accept"], dtype=float)
        estimate = policy_value(holdout, p).best
        return estimate.value if str(champion) == version else estimate.low

    return score
