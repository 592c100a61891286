"""Model promotion: the challenger takes the `champion` alias only if it wins on the same holdout.

Generic over models: a challenger run logs its holdout with `training.tracking.log_holdout`
(features, label and which output column to score); promotion re-scores the challenger and
the current champion on that one holdout, through their MLflow pyfuncs, with a metric from
`models.metrics.METRICS` or a custom scorer (ranking models, regressions).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from loyal.errors import LoyalError, NotReadyError
from loyal.settings import Settings
from training import tracking

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

CHAMPION = "champion"
Scorer = Callable[[str, pd.DataFrame, Mapping[str, Any]], float]
"""(model URI, holdout frame, holdout metadata) -> score."""


@dataclass(frozen=True)
class PromotionDecision:
    """What promotion decided and on what evidence.

    Attributes:
        model_name: registered model.
        metric: the metric compared.
        higher_is_better: direction of the metric.
        challenger_version: the version that asked to become champion.
        challenger_score: its score on the holdout.
        champion_version: the champion before the decision (None if there was none).
        champion_score: the champion's score on the same holdout (None if none or unscorable).
        promoted: whether the alias now points at the challenger.
        forced: promoted with `force` although it did not win.
        outcome: "first" (no champion yet), "won", "forced", "rejected", "refused" (its
            training run marked it unfit to serve, `tracking.TAG_REFUSED`; the reason says
            why) or "unchanged" (the challenger already is the champion).
        reason: the operator's note (required reading when forced).
        holdout_run_id: the run whose holdout both were scored on.
        holdout_rows: rows in that holdout.
    """

    model_name: str
    metric: str
    higher_is_better: bool
    challenger_version: str
    challenger_score: float
    champion_version: str | None
    champion_score: float | None
    promoted: bool
    forced: bool
    outcome: str
    reason: str
    holdout_run_id: str
    holdout_rows: int

    def summary(self) -> str:
        """One readable line for the console."""
        challenger = f"v{self.challenger_version} {self.metric}={self.challenger_score:.4f}"
        if self.champion_version is None:
            champion = "no champion"
        elif self.champion_score is None:
            champion = f"champion v{self.champion_version} (not scorable on this holdout)"
        else:
            champion = f"champion v{self.champion_version} {self.metric}={self.champion_score:.4f}"
        verdict = {
            "first": "promoted (first champion)",
            "won": "promoted",
            "forced": "promoted by force",
            "rejected": "rejected: the champion stays",
            "refused": "refused",
            "unchanged": "already champion",
        }[self.outcome]
        rows = f"on {self.holdout_rows} holdout rows of run {self.holdout_run_id}"
        note = f" (reason: {self.reason})" if self.reason.strip() else ""
        return f"{self.model_name}: {challenger} vs {champion} {rows}: {verdict}{note}"

    def to_dict(self) -> dict[str, Any]:
        """Plain data, e.g. for a JSON line."""
        return asdict(self)


def metric_scorer(metric: str) -> Scorer:
    """Scorer computing a `models.metrics.METRICS` metric on the pyfunc's prediction column."""
    from models.metrics import METRICS

    if metric not in METRICS:
        known = ", ".join(sorted(METRICS))
        raise LoyalError(f"unknown promotion metric '{metric}'; use one of: {known}")
    function = METRICS[metric][0]

    def score(model_uri: str, holdout: pd.DataFrame, meta: Mapping[str, Any]) -> float:
        import mlflow.pyfunc

        model = mlflow.pyfunc.load_model(model_uri)
        inputs = holdout.drop(columns=[meta["label"], *meta.get("exclude", [])], errors="ignore")
        output = model.predict(inputs, params=meta.get("predict_params") or None)
        predicted = output[meta["prediction"]] if isinstance(output, pd.DataFrame) else output
        return float(function(holdout[meta["label"]].to_numpy(), pd.Series(predicted).to_numpy()))

    return score


def latest_version(registry: MlflowClient, model_name: str) -> ModelVersion:
    """The highest-numbered version of a registered model."""
    versions = registry.search_model_versions(f"name = '{model_name}'")
    if not versions:
        raise NotReadyError(f"no '{model_name}' model is registered yet; train it first")
    return max(versions, key=lambda v: int(v.version))


def champion_version(registry: MlflowClient, model_name: str) -> ModelVersion | None:
    """The version holding the `champion` alias, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return registry.get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException:
        return None


def _wins(challenger: float, champion: float, higher_is_better: bool) -> bool:
    """Strictly better; a tie keeps the champion and a NaN score never wins."""
    if not (math.isfinite(challenger) and math.isfinite(champion)):
        return False
    return challenger > champion if higher_is_better else challenger < champion


def _score_champion(
    scorer: Scorer, uri: str, holdout: pd.DataFrame, meta: Mapping[str, Any], force: bool
) -> float | None:
    """The champion's score, or None when it cannot read this holdout and force is set."""
    try:
        return scorer(uri, holdout, meta)
    except Exception as exc:
        if force:
            log.warning("champion %s could not be scored on this holdout: %s", uri, exc)
            return None
        raise LoyalError(
            f"the champion ({uri}) cannot be scored on the challenger's holdout ({exc}); "
            "promote with --force and a --reason if the change of inputs is intended"
        ) from exc


def _decide(
    challenger_score: float,
    champion_score: float | None,
    has_champion: bool,
    higher_is_better: bool,
    force: bool,
) -> str:
    if not has_champion:
        return "first"
    if champion_score is not None and _wins(challenger_score, champion_score, higher_is_better):
        return "won"
    return "forced" if force else "rejected"


def _tag(registry: MlflowClient, decision: PromotionDecision) -> None:
    """Record the decision and both scores on the challenger version."""
    tags = {
        "promotion.outcome": decision.outcome,
        "promotion.metric": decision.metric,
        "promotion.challenger_score": f"{decision.challenger_score:.6f}",
        "promotion.champion_version": decision.champion_version or "",
        "promotion.champion_score": (
            "" if decision.champion_score is None else f"{decision.champion_score:.6f}"
        ),
        "promotion.forced": str(decision.forced).lower(),
        "promotion.reason": decision.reason,
        "promotion.holdout_run_id": decision.holdout_run_id,
        "promotion.decided_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if decision.promoted and decision.champion_version is not None:
        tags["promotion.previous_champion"] = decision.champion_version
    for key, value in tags.items():
        registry.set_model_version_tag(decision.model_name, decision.challenger_version, key, value)


def promote(settings: Settings, model_name: str, metric: str, **options: Any) -> PromotionDecision:
    """Make the challenger the `champion` if it beats the champion on the challenger's holdout.

    `decide` (its keyword `options`: higher_is_better, version, force, reason, scorer), then
    `apply_decision`: see both for the arguments and the errors.

    Returns:
        The decision, also tagged on the challenger version.
    """
    decision = decide(settings, model_name, metric, **options)
    apply_decision(settings, decision)
    return decision


def decide(
    settings: Settings,
    model_name: str,
    metric: str,
    higher_is_better: bool = True,
    version: str | int | None = None,
    force: bool = False,
    reason: str = "",
    scorer: Scorer | None = None,
) -> PromotionDecision:
    """Score the challenger and the champion on the challenger's holdout; write nothing.

    The retrain pipeline decides for every model before it moves any alias.

    Args:
        settings: where MLflow lives.
        model_name: registered model, e.g. "churn".
        metric: the metric compared, e.g. "roc_auc".
        higher_is_better: direction of the metric (False for brier, ece, errors).
        version: the challenger; the latest version when None.
        force: promote even without a win (the decision is "forced").
        reason: why; required with force, recorded as a tag either way.
        scorer: custom (model URI, holdout, metadata) -> score; default `metric_scorer(metric)`.

    Returns:
        The decision: apply it with `apply_decision`.

    Raises:
        LoyalError: forcing without a reason, an unknown metric, or a champion that cannot be
            scored on the holdout (without force).
        NotReadyError: no registered version, or a challenger run without a holdout.
    """
    if force and not reason.strip():
        raise LoyalError("--force needs a --reason, which is recorded with the decision")
    score = scorer or metric_scorer(metric)
    registry = tracking.client(settings)
    challenger = _challenger(registry, model_name, version)
    champion = champion_version(registry, model_name)
    holdout_run = tracking.version_run_id(challenger)
    holdout, meta = tracking.load_holdout(holdout_run)
    challenger_score = score(f"models:/{model_name}/{challenger.version}", holdout, meta)
    if champion is not None and champion.version == challenger.version:
        champion_score: float | None = challenger_score
        outcome = "unchanged"
    else:
        champion_score = None
        if champion is not None:
            champion_uri = f"models:/{model_name}/{champion.version}"
            champion_score = _score_champion(score, champion_uri, holdout, meta, force)
        outcome = _decide(
            challenger_score, champion_score, champion is not None, higher_is_better, force
        )
    refusal = (challenger.tags or {}).get(tracking.TAG_REFUSED, "")
    if refusal and not force and outcome != "unchanged":
        outcome, reason = "refused", refusal
    return PromotionDecision(
        model_name=model_name,
        metric=metric,
        higher_is_better=higher_is_better,
        challenger_version=str(challenger.version),
        challenger_score=challenger_score,
        champion_version=None if champion is None else str(champion.version),
        champion_score=champion_score,
        promoted=outcome in ("first", "won", "forced"),
        forced=outcome == "forced",
        outcome=outcome,
        reason=reason,
        holdout_run_id=holdout_run,
        holdout_rows=len(holdout),
    )


def _challenger(registry: MlflowClient, model_name: str, version: str | int | None) -> ModelVersion:
    """The version asked for, or the latest; a readable error for a version that is not there."""
    from mlflow.exceptions import MlflowException

    if version is None:
        return latest_version(registry, model_name)
    try:
        return registry.get_model_version(model_name, str(version))
    except MlflowException as exc:
        raise NotReadyError(f"'{model_name}' has no version {version}") from exc


def apply_decision(settings: Settings, decision: PromotionDecision) -> None:
    """Carry out a decision: move the `champion` alias (one write) if promoted, then tag it.

    Raises:
        LoyalError: the champion changed since the decision (someone promoted meanwhile);
            nothing is written, decide again.
    """
    registry = tracking.client(settings)
    if decision.promoted:
        current = champion_version(registry, decision.model_name)
        now = None if current is None else str(current.version)
        if now != decision.champion_version:
            raise LoyalError(
                f"'{decision.model_name}' champion changed from v{decision.champion_version} "
                f"to v{now} since the decision; promote v{decision.challenger_version} again"
            )
        registry.set_registered_model_alias(
            decision.model_name, CHAMPION, decision.challenger_version
        )
    if decision.outcome != "unchanged":
        _tag(registry, decision)
    log.info(decision.summary())


def rollback(settings: Settings, model_name: str, reason: str) -> str:
    """Give the `champion` alias back to the version the current champion replaced.

    The demoted version is tagged with when, why and to which version it was rolled back,
    and the reason is logged.

    Args:
        settings: where MLflow lives.
        model_name: registered model, e.g. "churn".
        reason: why; required, recorded as a tag and in the log.

    Returns:
        The version that is champion again.

    Raises:
        LoyalError: no reason given.
        NotReadyError: no champion, the champion replaced nothing, or that earlier version
            is gone from the registry.
    """
    if not reason.strip():
        raise LoyalError("a rollback needs a --reason, which is recorded with it")
    registry = tracking.client(settings)
    current = champion_version(registry, model_name)
    if current is None:
        raise NotReadyError(f"'{model_name}' has no champion to roll back")
    previous = (current.tags or {}).get("promotion.previous_champion")
    if not previous:
        raise NotReadyError(
            f"'{model_name}' champion v{current.version} replaced no earlier champion"
        )
    _challenger(registry, model_name, previous)  # still registered?
    registry.set_registered_model_alias(model_name, CHAMPION, previous)
    tags = {
        "promotion.rolled_back_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "promotion.rolled_back_to": previous,
        "promotion.rollback_reason": reason,
    }
    for key, value in tags.items():
        registry.set_model_version_tag(model_name, current.version, key, value)
    log.info(
        "%s: champion rolled back from v%s to v%s (reason: %s)",
        model_name, current.version, previous, reason,
    )  # fmt: skip
    return previous
