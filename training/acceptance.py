"""Train the acceptance model from the decision log; score versions by off-policy evaluation.

The log's answered decisions are split by time: the earlier 75% fit the hierarchical
pseudo-count model (`models.acceptance`), the later 25% are the holdout. On the holdout each
version is judged by the policy it would make: greedy on its P(accept) x value among each
decision's logged eligible actions, valued by doubly robust off-policy evaluation. A challenger
is promoted on a paired comparison: the doubly robust value of its policy minus the champion's
(the catalog policy as it served, for a first version), decision by decision with one reward
model, must have a bootstrap lower bound above 0; decisions where the two policies agree add
nothing to the difference's variance, so a real gain shows with far fewer decisions than two
separate intervals need.
"""

from __future__ import annotations

import hashlib
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
from decisions.ope import Comparison, Evaluation, Logged, Policy, VerdictRules, compare, evaluate
from decisions.policy import answers_of
from decisions.record import log_target
from features.tables_io import recorded_catalog
from loyal.errors import StepSkippedError
from loyal.settings import DecisionSettings, Settings
from models.acceptance import ARTIFACT, AcceptanceModel, predict_rows
from models.offers import choose_catalog, load_catalog
from training.tracking import RegisteredRun

log = logging.getLogger(__name__)

NAME = "acceptance"
METRIC = "ope_dr_value"
GAIN_METRIC = "ope_paired_gain_low"
"""The promotion metric: lower bound of the gain over the champion (the catalog when none)."""
INPUT_COLUMNS = ("offer_id", "channel", "segment", "prior", "features")
"""The pyfunc's input: one row per offer to score; `features` is the customer's row as JSON."""
HOLDOUT_SHARE = 0.25
MIN_ANSWERS = 200
"""Answered decisions needed before a model is trained (fewer: the catalog priors serve)."""
MIN_ESS = 30.0
"""Below this effective sample size of a candidate's weights, OPE gives no verdict."""


@dataclass(frozen=True)
class AcceptanceResult(RegisteredRun):
    """What `train` returns."""

    answers: int
    holdout: dict[str, float]


def answered(settings: Settings, now: datetime | None = None) -> list[Outcome]:
    """The log's decisions whose answer window has closed, oldest first."""
    store = DecisionLog(log_target(settings))
    ignore = timedelta(hours=settings.decisions.ignore_after_hours)
    return closed_outcomes(store, now or datetime.now(UTC), ignore)


def closed_outcomes(store: DecisionLog, now: datetime, ignore: timedelta) -> list[Outcome]:
    """Decisions older than the answer window (accepted, declined or ignored), oldest first.

    A younger decision is left out even when answered: keeping the answered ones while their
    unanswered neighbours are still pending would over-weight acceptances (an acceptance is
    always answered, a decline often never).
    """
    return [
        o
        for o in store.outcomes(now, ignore)
        if o.outcome != PENDING
        and o.decision.action_id
        and o.decision.candidates
        and o.decision.ts <= now - ignore
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
        features = json.dumps(decision.features, default=str) if decision.features else ""
        for candidate in decision.candidates:
            logged = candidate.action_id == decision.action_id
            rows.append(
                {
                    "decision": decision.decision_id,
                    "customer": decision.customer_id,
                    "offer_id": candidate.action_id,
                    "channel": decision.channel,
                    "segment": "?" if segment is None else str(segment),
                    "features": features,
                    "prior": priors.get(candidate.action_id, candidate.p_accept),
                    "logged_p_accept": candidate.p_accept,
                    "uplift_valued": candidate.uplift_valued,
                    "score": candidate.score,
                    "cost": candidate.cost,
                    "value": candidate.value,
                    "logged": logged,
                    "propensity": decision.propensity if logged else candidate.propensity,
                    "accepted": float(outcome.reward) if logged else 0.0,
                }
            )
    return pd.DataFrame(rows)


def _choices(frame: pd.DataFrame, p_accept: Any) -> pd.DataFrame:
    """Per decision, the row of the action the greedy policy on `p_accept` puts first.

    Its score of an action is the logged one re-priced with the new P(accept):
    `(score + cost) * p / logged p - cost` (the logged value and segment weight kept; an
    uplift-valued action keeps its logged score, as serving does whatever the model says).
    """
    p = np.asarray(p_accept, dtype=float)
    fixed = frame["uplift_valued"].to_numpy(dtype=bool)  # serving keeps the uplift price
    frame = frame.assign(p=np.where(fixed, frame["logged_p_accept"].to_numpy(dtype=float), p))
    gross = frame["score"] + frame["cost"]
    ratio = np.where(frame["logged_p_accept"] > 0, frame["p"] / frame["logged_p_accept"], 0.0)
    frame = frame.assign(rescored=gross * ratio - frame["cost"])
    return frame.loc[frame.groupby("decision", sort=False)["rescored"].idxmax()].set_index(
        "decision"
    )


@dataclass(frozen=True)
class _LoggedDecisions:
    """The logged decisions of an OPE frame under one reward model (P(accept) x value).

    What both doubly robust estimates read: each decision's logged action, its reward and
    propensity, and the reward model's value of the action a greedy policy takes instead.

    Attributes:
        frame: the OPE frame, with `q`, the reward model's value of each eligible action.
        logged: the logged action's row of each decision, indexed by decision.
    """

    frame: pd.DataFrame
    logged: pd.DataFrame

    @classmethod
    def under(cls, frame: pd.DataFrame, p_reward: Any) -> _LoggedDecisions:
        """The frame's decisions, `p_reward` times each action's value as the reward model."""
        frame = frame.assign(q=np.asarray(p_reward, dtype=float) * frame["value"])
        return cls(frame, frame[frame["logged"]].set_index("decision"))

    @property
    def log(self) -> Logged:
        """The logged decisions as OPE reads them.

        Each logged action's accepted value (0 when not accepted), the probability that the
        logging policy took it, and the reward model's value of it.
        """
        logged = self.logged
        rewards = (logged["accepted"] * logged["value"]).to_numpy()
        return Logged(rewards, logged["propensity"].to_numpy(), logged["q"].to_numpy())

    def greedy(self, p_accept: Any) -> Policy:
        """The greedy policy on `p_accept`, as OPE sees it on the logged decisions.

        Per logged decision: 1.0 where it takes the logged action (else 0.0), and the reward
        model's value of the action it takes.
        """
        chosen = _choices(self.frame, p_accept).reindex(self.logged.index)
        takes_logged = (chosen["offer_id"] == self.logged["offer_id"]).astype(float).to_numpy()
        return Policy(takes_logged, chosen["q"].to_numpy())

    def value(self, p_accept: Any, seed: int) -> Evaluation:
        """The doubly robust value per decision of the greedy policy on `p_accept`."""
        rules = VerdictRules(min_ess=MIN_ESS, seed=seed)
        return evaluate(self.log, self.greedy(p_accept), clip=None, rules=rules)

    def gain(self, p_candidate: Any, p_champion: Any, seed: int) -> Comparison:
        """The paired doubly robust gain of one greedy policy over another, decision by decision."""
        new, old = self.greedy(p_candidate), self.greedy(p_champion)
        return compare(self.log, new, old, rules=VerdictRules(min_ess=MIN_ESS, seed=seed))


def policy_value(frame: pd.DataFrame, p_accept: np.ndarray, seed: int = 0) -> Evaluation:
    """Doubly robust accepted value per decision of the greedy policy on `p_accept`.

    The reward model is the same P(accept) times each action's value.
    """
    return _LoggedDecisions.under(frame, p_accept).value(p_accept, seed)


def paired_gain(
    frame: pd.DataFrame,
    p_candidate: Any,
    p_champion: Any,
    p_reward: Any,
    seed: int = 0,
) -> Comparison:
    """The candidate's accepted value per decision minus the champion's, on the same decisions.

    Both are greedy policies (on their own P(accept)); `p_reward` x value is the one reward
    model of both doubly robust estimates (the candidate's, fitted on earlier answers), so a
    decision where the two choose alike contributes exactly 0 to the difference.
    """
    return _LoggedDecisions.under(frame, p_reward).gain(p_candidate, p_champion, seed)


FOLDS = 5
"""Customer folds of the cross-fitted comparison."""


def fold_of(customer_id: str, folds: int = FOLDS) -> int:
    """The customer's fold (a stable hash: every decision of a customer is in one fold)."""
    digest = hashlib.blake2b(customer_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % folds


def crossfit_gain(
    outcomes: Sequence[Outcome],
    priors: Mapping[str, float],
    options: DecisionSettings | None = None,
    champion_until: datetime | None = None,
    folds: int = FOLDS,
    seed: int = 0,
) -> Comparison:
    """The paired doubly robust gain of the model fitted on `outcomes` over the champion's,
    judged on every answered decision instead of a last-week holdout.

    Decisions are split into customer folds; each fold is scored by a candidate fitted on the
    other folds (and by the champion's recipe, refitted on the other folds' answers from before
    `champion_until`; the catalog policy when None), so every prediction, and the reward
    model, is out of fold. Judging every decision instead of the latest week gives the
    comparison several times the decisions (a narrower interval) and the candidate all but one
    fold to learn from; a customer never informs a prediction of their own answers.
    """
    frame = ope_frame(outcomes, priors)
    of_row = frame["customer"].map(lambda c: fold_of(str(c), folds)).to_numpy()
    p_new = np.empty(len(frame))
    p_old = catalog_policy(frame).copy()
    of_outcome = [fold_of(o.decision.customer_id, folds) for o in outcomes]
    for k in range(folds):
        rows = of_row == k
        if not rows.any():
            continue
        rest = [o for o, f in zip(outcomes, of_outcome, strict=True) if f != k]
        p_new[rows] = predict_frame(fit(rest, options), frame[rows])
        if champion_until is not None:
            older = [o for o in rest if o.decision.ts < champion_until]
            p_old[rows] = predict_frame(fit(older, options), frame[rows])
    return paired_gain(frame, p_new, p_old, p_new, seed)


def catalog_policy(frame: pd.DataFrame) -> np.ndarray:
    """The P(accept) the logged decisions used: greedy on it is the policy as it served."""
    return frame["logged_p_accept"].to_numpy(dtype=float)


def _split(outcomes: list[Outcome]) -> tuple[list[Outcome], list[Outcome]]:
    ordered = sorted(outcomes, key=lambda o: o.decision.ts)
    cut = int(len(ordered) * (1 - HOLDOUT_SHARE))
    return ordered[:cut], ordered[cut:]


def fit(outcomes: Sequence[Outcome], options: DecisionSettings | None = None) -> AcceptanceModel:
    """The acceptance model on answered decisions (oldest first)."""
    options = options or DecisionSettings()
    model = AcceptanceModel(
        contextual_min_answers=options.contextual_min_answers,
        contextual_strength=options.contextual_strength,
    )
    return model.fit(answers_of(outcomes))


def frame_features(frame: pd.DataFrame) -> list[dict[str, Any] | None]:
    """Each row's customer features (the `features` JSON column; None where not logged)."""
    cache: dict[str, dict[str, Any] | None] = {}
    out = []
    for text in frame["features"]:
        if text not in cache:
            cache[text] = json.loads(text) if text else None
        out.append(cache[text])
    return out


def predict_frame(model: AcceptanceModel, frame: pd.DataFrame) -> np.ndarray:
    """The model's P(accept) of each row of an `ope_frame`."""
    offers, channels, segments, priors = (
        frame[c] for c in ("offer_id", "channel", "segment", "prior")
    )
    predicted = predict_rows(model, offers, channels, segments, priors, frame_features(frame))
    return np.asarray(predicted, dtype=float)


def answer_metrics(model: AcceptanceModel, outcomes: Sequence[Outcome]) -> dict[str, float]:
    """Log loss and ROC-AUC on held-out answers: the model, its pseudo-count level alone, and
    the catalog's prior (the plain baseline)."""
    from sklearn.metrics import log_loss, roc_auc_score

    frame = ope_frame(outcomes, {})
    frame = frame[frame["logged"]]
    y = frame["accepted"].to_numpy(dtype=float)
    if len(frame) == 0 or y.min() == y.max():
        return {}
    out = {}
    for name, p in (
        ("model", predict_frame(model, frame)),
        ("counts", predict_frame(model.counts_only(), frame)),
        ("catalog", frame["logged_p_accept"].to_numpy(dtype=float)),
    ):
        clipped = np.clip(p, 1e-6, 1 - 1e-6)
        out[f"answers_log_loss_{name}"] = float(log_loss(y, clipped, labels=[0, 1]))
        out[f"answers_auc_{name}"] = float(roc_auc_score(y, clipped))
    return out


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
    model = fit(train_part, settings.decisions)
    holdout = ope_frame(holdout_part, priors)
    p_learned = predict_frame(model, holdout)
    learned = policy_value(holdout, p_learned)
    gain = paired_gain(holdout, p_learned, catalog_policy(holdout), p_learned)
    metrics = {
        METRIC: learned.best.value,
        "ope_dr_low": learned.best.low,
        "ope_dr_high": learned.best.high,
        "ope_ess": learned.ess,
        "logged_value": learned.logged.value,
        "catalog_dr_value": gain.champion.value,
        GAIN_METRIC: gain.difference.low,
        "ope_paired_gain": gain.difference.value,
        "ope_paired_gain_high": gain.difference.high,
        "ope_disagreements": float(gain.disagreements),
        "train_answers": float(len(train_part)),
        "holdout_decisions": float(len(holdout_part)),
        "contextual_offers": float(0 if model.context_ is None else len(model.context_.answers)),
        **answer_metrics(model, holdout_part),
    }
    refused = _refusal(gain, "the catalog policy")
    full = fit(outcomes, settings.decisions)  # the served model learns from every answer
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
            example = holdout[list(INPUT_COLUMNS)].head(3)
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


def _refusal(gain: Comparison, champion: str) -> str | None:
    """Why this version must not serve: no OPE verdict, or no sure gain over `champion`."""
    if gain.refusal is not None:
        return f"off-policy evaluation gives no verdict: {gain.refusal}"
    if not gain.promotes:
        low, high = gain.difference.low, gain.difference.high
        return (
            f"its gain over {champion} on the holdout, {gain.difference.value:+.2f} "
            f"[{low:+.2f}, {high:+.2f}] a decision over {gain.disagreements} decisions where "
            "they differ, is not surely positive"
        )
    return None


def ope_scorer(metric: str) -> Callable[[str, pd.DataFrame, Mapping[str, Any]], float]:
    """Promotion scorer on a paired comparison: the challenger scores the lower bound of its
    gain over the champion (over the catalog policy when there is none), the champion 0.

    The registry promotes when the challenger's score beats the champion's, i.e. when the gain
    is surely positive; a comparison the log's overlap cannot support scores NaN (never wins).
    Which role a version plays is read from the `champion` alias.
    """

    def score(model_uri: str, holdout: pd.DataFrame, meta: Mapping[str, Any]) -> float:
        from mlflow import MlflowClient

        name, version = model_uri.removeprefix("models:/").split("/")
        try:
            champion = MlflowClient().get_model_version_by_alias(name, "champion").version
        except Exception:  # no champion yet
            champion = None
        if str(champion) == version:
            return 0.0
        p_new = _pyfunc_p_accept(model_uri, holdout)
        p_old = (
            catalog_policy(holdout)
            if champion is None
            else _pyfunc_p_accept(f"models:/{name}/{champion}", holdout)
        )
        gain = paired_gain(holdout, p_new, p_old, p_new)
        return gain.difference.low if gain.refusal is None else float("nan")

    return score


def _pyfunc_p_accept(model_uri: str, holdout: pd.DataFrame) -> np.ndarray:
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model(model_uri)
    return np.asarray(model.predict(holdout[list(INPUT_COLUMNS)])["p_accept"], dtype=float)
