"""Evaluate a candidate NBA policy on the decision log before it serves anyone.

A candidate re-ranks the eligible actions each logged decision had (eligibility, consent, spend
and contact rules are the logged ones): its own P(accept) (the catalog's as logged, or an
acceptance model), value multipliers per offer, and its own exploration share. For every
answered decision it gives the probability it would have taken the logged action; the logged
propensity, the answer and a reward model (the acceptance model fitted on the same log) feed
`decisions.ope.evaluate`, for two rewards: acceptance (1/0) and accepted value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from decisions.log import ACCEPTED, PENDING, Candidate, DecisionLog, Outcome
from decisions.ope import Evaluation, Logged, Policy, VerdictRules, evaluate
from loyal.errors import LoyalError
from models.acceptance import AcceptanceModel, Answer, predict_rows


class CandidatePolicy(BaseModel):
    """A candidate policy, as written in its YAML file.

    Attributes:
        name: what to call it in reports.
        p_accept: `logged` (the P(accept) each decision used) or `learned` (an acceptance model
            fitted on the log's answers).
        weights: offer id -> multiplier of its value (1 when absent).
        explore_share: the candidate's own exploration share (0: purely greedy).
    """

    model_config = ConfigDict(extra="forbid")

    name: str = "candidate"
    p_accept: str = Field(default="learned", pattern="^(logged|learned)$")
    weights: dict[str, Annotated[float, Field(ge=0)]] = Field(default_factory=dict)
    explore_share: float = Field(default=0.0, ge=0, le=1)


class PolicyConfigError(LoyalError):
    """A candidate policy file that cannot be read."""


def read_candidate(path: Path) -> CandidatePolicy:
    """The candidate policy in `path` (YAML).

    Raises:
        PolicyConfigError: missing file, bad YAML or an unknown or invalid field (named).
    """
    if not path.is_file():
        raise PolicyConfigError(f"candidate policy file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return CandidatePolicy.model_validate(data)
    except yaml.YAMLError as exc:
        raise PolicyConfigError(f"{path}: not valid YAML ({exc})") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise PolicyConfigError(f"{path}: {where}: {err['msg']}") from None


@dataclass(frozen=True)
class PolicyReport:
    """A candidate's estimated acceptance rate and accepted value per decision vs the logged."""

    name: str
    decisions: int
    acceptance: Evaluation
    value: Evaluation
    verdict: str
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Plain numbers for JSON."""

        def part(e: Evaluation) -> dict[str, Any]:
            return {
                "logged": e.logged.as_dict(),
                "ips": e.ips.as_dict(),
                "snips": e.snips.as_dict(),
                "dr": None if e.dr is None else e.dr.as_dict(),
                "ess": e.ess,
                "clipped_share": e.clipped_share,
                "unsupported_share": e.unsupported_share,
                "refusal": e.refusal,
            }

        return {
            "candidate": self.name,
            "decisions": self.decisions,
            "acceptance_rate": part(self.acceptance),
            "value_per_decision": part(self.value),
            "verdict": self.verdict,
            "notes": self.notes,
        }


def answers_of(outcomes: Sequence[Outcome]) -> list[Answer]:
    """The answered primary actions as acceptance-model training rows."""
    return [
        Answer(
            o.decision.action_id or "",
            o.decision.channel,
            (o.decision.features or {}).get("segment_id"),  # type: ignore[arg-type]
            o.outcome == ACCEPTED,
            (o.decision.features or {}).get("tier"),
            o.decision.features,
        )
        for o in outcomes
        if o.outcome != PENDING and o.decision.action_id
    ]


def target_probabilities(
    candidates: Sequence[Candidate],
    p_accept: Sequence[float],
    weights: Mapping[str, float],
    explore_share: float,
) -> np.ndarray:
    """The candidate policy's probability of putting each eligible action first.

    Its score of an action: the logged expected value re-priced with its P(accept) and weight,
    `(score + cost) * (p' / p) * weight - cost` (an uplift-valued action keeps its score, as
    serving does); greedy on that score, plus uniform exploration.
    """
    n = len(candidates)
    rescored = []
    for candidate, p_new in zip(candidates, p_accept, strict=True):
        gross = candidate.score + candidate.cost
        if candidate.uplift_valued:
            ratio = 1.0  # serving keeps the uplift price, whatever the model says
        else:
            ratio = p_new / candidate.p_accept if candidate.p_accept > 0 else 0.0
        rescored.append(gross * ratio * weights.get(candidate.action_id, 1.0) - candidate.cost)
    best = int(np.argmax(rescored))
    probs = np.full(n, explore_share / n)
    probs[best] += 1.0 - explore_share
    return probs


def _check_weights(candidate: CandidatePolicy, outcomes: Sequence[Outcome]) -> None:
    """Every weighted offer must be among the answered decisions' eligible actions: a weight
    on any other id (a typo, an offer of another catalog) would silently change nothing.

    Raises:
        PolicyConfigError: naming the ids and the actions the log holds.
    """
    logged = {c.action_id for o in outcomes for c in o.decision.candidates}
    unknown = sorted(set(candidate.weights) - logged)
    if unknown:
        raise PolicyConfigError(
            f"weights: {', '.join(unknown)} is among no answered decision's eligible actions, "
            f"so its weight would change nothing (the log's actions: {', '.join(sorted(logged))})"
        )


def evaluate_candidate(
    log: DecisionLog,
    candidate: CandidatePolicy,
    now: datetime,
    ignore_after: timedelta,
    priors: Mapping[str, float] | None = None,
    since: datetime | None = None,
    clip: float | None = 100.0,
    min_ess: float = 50.0,
    seed: int = 0,
) -> PolicyReport:
    """Estimate the candidate's acceptance rate and accepted value per decision from the log.

    Raises:
        LoyalError: no answered decision in the log yet.
    """
    outcomes = [
        o
        for o in log.outcomes(now, ignore_after, since)
        if o.outcome != PENDING and o.decision.candidates and o.decision.propensity
    ]
    if not outcomes:
        raise LoyalError(
            "the decision log holds no answered decision yet: serve /next_best_action, send "
            "answers to /feedback (or wait for the ignore window) and evaluate again"
        )
    _check_weights(candidate, outcomes)
    reward_model = AcceptanceModel().fit(answers_of(outcomes))
    q_all = _predicted(reward_model, outcomes, priors or {})
    targets = (
        q_all
        if candidate.p_accept == "learned"
        else [np.array([c.p_accept for c in o.decision.candidates]) for o in outcomes]
    )
    rows = [_row(o, t, q, candidate) for o, t, q in zip(outcomes, targets, q_all, strict=True)]
    matrix = np.array(rows, dtype=float)
    accept_reward, value_reward, p_logged, pi, q_acc, v_acc, q_val, v_val, lost = matrix.T
    rules = VerdictRules(min_ess=min_ess, seed=seed)
    acceptance = evaluate(
        Logged(accept_reward, p_logged, q_acc), Policy(pi, v_acc, lost), clip=clip, rules=rules
    )
    value = evaluate(
        Logged(value_reward, p_logged, q_val), Policy(pi, v_val, lost), clip=clip, rules=rules
    )
    notes = [
        f"{len(outcomes)} answered decisions; the reward model learned from "
        f"{reward_model.answers} answers (in-sample)",
        "eligibility, consent, spend and contact rules are those the logged decisions applied",
    ]
    return PolicyReport(candidate.name, len(outcomes), acceptance, value, _verdict(value), notes)


def _predicted(
    model: AcceptanceModel, outcomes: Sequence[Outcome], priors: Mapping[str, float]
) -> list[np.ndarray]:
    """The model's P(accept) of every eligible action of every decision, in one batch."""
    offers, channels, segments, prior, features, sizes = [], [], [], [], [], []
    for outcome in outcomes:
        decision = outcome.decision
        cands = decision.candidates
        sizes.append(len(cands))
        for c in cands:
            offers.append(c.action_id)
            channels.append(decision.channel)
            segments.append((decision.features or {}).get("segment_id"))
            prior.append(priors.get(c.action_id, c.p_accept))
            features.append(decision.features)
    flat = np.asarray(predict_rows(model, offers, channels, segments, prior, features))
    return np.split(flat, np.cumsum(sizes)[:-1]) if sizes else []


def _row(
    outcome: Outcome, p_new: np.ndarray, q: np.ndarray, candidate: CandidatePolicy
) -> list[float]:
    """One decision's rewards, logged propensity, target probability and model predictions."""
    cands = outcome.decision.candidates
    logged = next(i for i, c in enumerate(cands) if c.action_id == outcome.decision.action_id)
    pi = target_probabilities(cands, list(p_new), candidate.weights, candidate.explore_share)
    values = np.array([c.value for c in cands])
    lost = float(sum(pi[i] for i, c in enumerate(cands) if c.propensity <= 0))
    reward = outcome.reward
    return [
        reward,
        reward * cands[logged].value,
        float(outcome.decision.propensity or 0.0),
        float(pi[logged]),
        float(q[logged]),
        float(pi @ q),
        float(q[logged] * values[logged]),
        float(pi @ (q * values)),
        lost,
    ]


def _verdict(value: Evaluation) -> str:
    """Better, worse or inconclusive on accepted value (doubly robust interval vs logged)."""
    if value.refusal is not None:
        return f"no verdict: {value.refusal}"
    best = value.best
    if best.low > value.logged.value:
        return (
            f"better: accepted value per decision {best.value:.2f} "
            f"[{best.low:.2f}, {best.high:.2f}] vs logged {value.logged.value:.2f}"
        )
    if best.high < value.logged.value:
        return (
            f"worse: accepted value per decision {best.value:.2f} "
            f"[{best.low:.2f}, {best.high:.2f}] vs logged {value.logged.value:.2f}"
        )
    return (
        f"inconclusive: accepted value per decision {best.value:.2f} "
        f"[{best.low:.2f}, {best.high:.2f}] includes the logged {value.logged.value:.2f}"
    )
