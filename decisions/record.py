"""Between the policy and the answer: explore within the rules, then log the decision durably.

`DecisionRecorder.settle` takes the policy's greedy decision, lets exploration pick what is shown
among the eligible actions (every rule already applied), writes the decision with the exact
propensity of every eligible and shown action, and returns the decision to answer with.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from decisions.explore import Exploration, arrange
from decisions.log import Candidate, DecisionLog, DecisionLogError
from decisions.log import Decision as Logged
from loyal.settings import PRODUCTION_DECISIONS_URL, Settings
from models.nba import Decision

log = logging.getLogger(__name__)

LOG_DOWN = "decision log unavailable: this answer is not logged"
"""The degraded reason of an answer whose decision could not be written."""


@dataclass
class DecisionRecorder:
    """Explores and logs every decision.

    Args:
        store: where decisions go (None: not logged, e.g. a read-only tool).
        exploration: the explored share, its period and salt.
        log_features: keep the features the policy read with each decision.
    """

    store: DecisionLog | None
    exploration: Exploration = field(default_factory=Exploration)
    log_features: bool = True

    def settle(
        self,
        decision: Decision,
        decision_id: str,
        customer_id: str,
        features: Mapping[str, Any] | None,
        model_versions: Mapping[str, str | None],
        k: int,
    ) -> tuple[Decision, str | None]:
        """The decision to answer with, and a degraded reason when it could not be logged."""
        eligible = decision.eligible
        chosen = arrange(
            eligible,
            k,
            decision.marketing_quota,
            customer_id,
            decision.decided_at,
            self.exploration,
        )
        shown = [eligible[i] for i in chosen.shown]
        if chosen.explored:
            decision = decision.model_copy(update={"actions": shown})
        if self.store is None:
            return decision, None
        candidates = tuple(
            Candidate(
                action_id=action.action_id,
                score=action.score,
                p_accept=action.p_accept,
                value=action.value,
                cost=action.cost,
                propensity=chosen.primary[i],
                shown=i in chosen.shown,
                shown_propensity=chosen.shown_anywhere[i],
                evidence=action.evidence,
            )
            for i, action in enumerate(eligible)
        )
        first = chosen.shown[0] if chosen.shown else None
        entry = Logged(
            decision_id=decision_id,
            ts=decision.decided_at,
            customer_id=customer_id,
            channel=decision.channel,
            policy=self.exploration.policy,
            explored=chosen.explored,
            action_id=None if first is None else eligible[first].action_id,
            propensity=None if first is None else chosen.primary[first],
            candidates=candidates,
            shown=tuple(a.action_id for a in shown),
            model_versions=model_versions,
            features=dict(features) if self.log_features and features is not None else None,
            cold_start=decision.cold_start,
        )
        try:
            self.store.record(entry)
        except DecisionLogError as exc:
            log.error("%s", exc)
            return decision, LOG_DOWN
        return decision, None


def log_target(settings: Settings) -> str | Path:
    """Where decisions are logged: `decisions.url`, PostgreSQL in production, else the file."""
    options = settings.decisions
    if options.url:
        return options.url
    if settings.profile == "production":
        return PRODUCTION_DECISIONS_URL
    return options.db or settings.paths.runtime_dir / "serving" / "decisions.db"


def open_recorder(settings: Settings) -> DecisionRecorder:
    """The recorder the service uses, from the `decisions` settings.

    Raises:
        DecisionLogError: the log cannot be opened.
    """
    options = settings.decisions
    exploration = Exploration(
        options.explore_share, options.explore_period_days, options.explore_salt
    )
    return DecisionRecorder(DecisionLog(log_target(settings)), exploration, options.log_features)
