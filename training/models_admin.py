"""Model administration: what is registered, which version is champion, and why.

One table (`MODELS`) says, per registered model, the command name data scientists type, the
holdout metric its training runs log, and the metric, direction and scorer promotion compares
challenger and champion on (the same ones `loyal promote MODEL` uses). `list_versions` reads
the registry into plain rows for `loyal models`; `versions_table` renders them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from loyal.errors import LoyalError
from loyal.settings import Settings

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.tracking import MlflowClient
    from rich.table import Table

    from training.registry import Scorer

log = logging.getLogger(__name__)


def _churn_scorer() -> Scorer:
    from training.registry import metric_scorer

    return metric_scorer("roc_auc")


def _cross_sell_scorer() -> Scorer:
    from training.cross_sell import ranking_scorer

    return ranking_scorer("ndcg_at_3")


def _clv_scorer() -> Scorer:
    from training.clv import holdout_mae

    return holdout_mae


def _segments_scorer() -> Scorer:
    from training.segments import holdout_silhouette

    return holdout_silhouette


@dataclass(frozen=True)
class ModelSpec:
    """How one registered model is listed and promoted.

    Attributes:
        name: the registered model name in MLflow.
        command: its name on the command line (`loyal promote <command>`).
        run_metric: the holdout metric its training run logs (shown by `loyal models`).
        promotion_metric: the metric promotion compares, tagged on each decision.
        higher_is_better: direction of both metrics.
        scorer: builds the promotion scorer (imports the model's training module lazily).
    """

    name: str
    command: str
    run_metric: str
    promotion_metric: str
    higher_is_better: bool
    scorer: Callable[[], Scorer]


_SPECS = (
    ModelSpec("churn", "churn", "test_roc_auc", "roc_auc", True, _churn_scorer),
    ModelSpec("cross_sell", "cross-sell", "ndcg_at_3", "ndcg_at_3", True, _cross_sell_scorer),
    ModelSpec("clv", "clv", "mae", "holdout_mae", False, _clv_scorer),
    ModelSpec("segments", "segments", "holdout_silhouette", "holdout_silhouette", True,
              _segments_scorer),
)  # fmt: skip
MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in _SPECS}
"""Every registered model, in training order (CLV before segments: tiers read CLV)."""


def champion_versions(settings: Settings) -> dict[str, str | None]:
    """The `champion` version of every model in `MODELS` (None when it has none)."""
    from training import tracking
    from training.registry import champion_version

    registry = tracking.client(settings)
    versions: dict[str, str | None] = {}
    for name in MODELS:
        version = champion_version(registry, name)
        versions[name] = None if version is None else str(version.version)
    return versions


def model_spec(name: str) -> ModelSpec:
    """The spec of a model named as registered (`cross_sell`) or as typed (`cross-sell`).

    Raises:
        LoyalError: an unknown model, naming the known ones.
    """
    for spec in MODELS.values():
        if name in (spec.name, spec.command):
            return spec
    known = ", ".join(spec.command for spec in MODELS.values())
    raise LoyalError(f"unknown model '{name}'; use one of: {known}")


@dataclass(frozen=True)
class VersionRow:
    """One registered model version as `loyal models` shows it.

    Attributes:
        model: registered model name.
        version: version number.
        created: registration time (UTC).
        run_id: the training run.
        metric: the holdout metric's name (`ModelSpec.run_metric`).
        value: its value in the run (None when the run did not log it).
        champion: holds the `champion` alias.
        outcome: the promotion decision tagged on it ("" when never evaluated).
        reason: the operator's reason tagged with the decision.
        rolled_back: it was champion once and a rollback replaced it, with the reason.
    """

    model: str
    version: int
    created: datetime
    run_id: str
    metric: str
    value: float | None
    champion: bool
    outcome: str
    reason: str
    rolled_back: str


def list_versions(
    settings: Settings, names: Iterable[str] | None = None, limit: int | None = None
) -> list[VersionRow]:
    """Registered versions of the models, newest first per model, champions always included.

    Args:
        settings: where MLflow lives.
        names: models to list (registered or command names; default: every model).
        limit: newest versions kept per model besides the champion (None: all).

    Returns:
        Rows by model (in `MODELS` order), then by version, newest first. An embedded SQLite
        store is read directly (`training.registry_sql`, no MLflow import); others through
        MLflow's client.
    """
    from training import tracking
    from training.registry_sql import read_versions

    specs = [model_spec(n) for n in names] if names is not None else list(MODELS.values())
    direct = read_versions(settings.mlflow.tracking_uri, specs, limit)
    if direct is not None:
        return direct
    registry = tracking.client(settings)
    rows: list[VersionRow] = []
    for spec in specs:
        rows.extend(_model_rows(registry, spec, limit))
    return rows


def _model_rows(registry: MlflowClient, spec: ModelSpec, limit: int | None) -> list[VersionRow]:
    from training.registry import champion_version

    versions = sorted(
        registry.search_model_versions(f"name = '{spec.name}'"),
        key=lambda v: int(v.version),
        reverse=True,
    )
    champion = champion_version(registry, spec.name)
    crowned = None if champion is None else int(champion.version)
    shown = versions if limit is None else versions[:limit]
    shown += [v for v in versions[len(shown) :] if int(v.version) == crowned]
    return [_row(registry, spec, version, crowned) for version in shown]


def _row(
    registry: MlflowClient, spec: ModelSpec, version: ModelVersion, crowned: int | None
) -> VersionRow:
    tags = version.tags or {}
    run_id = version.run_id or tags.get("run_id", "")
    return VersionRow(
        model=spec.name,
        version=int(version.version),
        created=datetime.fromtimestamp(int(version.creation_timestamp) / 1000, tz=UTC),
        run_id=run_id,
        metric=spec.run_metric,
        value=_run_metric(registry, run_id, spec.run_metric),
        champion=int(version.version) == crowned,
        outcome=tags.get("promotion.outcome", ""),
        reason=tags.get("promotion.reason", ""),
        rolled_back=tags.get("promotion.rollback_reason", "")
        if tags.get("promotion.rolled_back_at")
        else "",
    )


def _run_metric(registry: MlflowClient, run_id: str, metric: str) -> float | None:
    """A run's logged metric, or None (no run, a deleted run, the metric not logged)."""
    from mlflow.exceptions import MlflowException

    if not run_id:
        return None
    try:
        value = registry.get_run(run_id).data.metrics.get(metric)
    except MlflowException:
        log.warning("run %s of a registered version cannot be read", run_id)
        return None
    return None if value is None else float(value)


def versions_table(rows: Sequence[VersionRow]) -> Table:
    """A rich table of the rows: the champion starred, promotion outcomes and reasons."""
    from rich.table import Table

    table = Table(title="Registered models (* = champion)")
    for header in ("model", "version", "created (UTC)", "run id", "holdout metric", "champion"):
        table.add_column(header, justify="right" if header == "version" else "left")
    table.add_column("promotion")
    for row in rows:
        table.add_row(
            row.model,
            f"v{row.version}",
            row.created.strftime("%Y-%m-%d %H:%M"),
            row.run_id[:8],
            "" if row.value is None else f"{row.metric}={row.value:.4f}",
            "*" if row.champion else "",
            promotion_note(row),
        )
    return table


def promotion_note(row: VersionRow) -> str:
    """The promotion outcome tagged on a version, with the reasons given, in a few words."""
    parts = [row.outcome or "not evaluated"]
    if row.reason:
        parts.append(f"reason: {row.reason}")
    if row.rolled_back:
        parts.append(f"rolled back: {row.rolled_back}")
    return "; ".join(parts)


def check_applicable(settings: Settings, name: str) -> None:
    """Raise `StepSkippedError` with the reason when the loaded data cannot support a model.

    The same checks its training makes before fitting: promotion calls this when no version is
    registered, so `loyal promote` after a skipped `loyal train` says why, with exit 0.

    Args:
        settings: where the contract and feature tables are.
        name: registered model name (`churn`, `cross_sell`, `clv`, `segments`).
    """
    from features.tables_io import read_contract
    from loyal.errors import StepSkippedError

    if name == "churn":
        from training.frames import read_horizon

        choice = read_horizon(settings)
        if choice.chosen is None:
            raise StepSkippedError(f"churn: {choice.reason}")
    elif name == "cross_sell":
        from training.cross_sell import applicable_config, bank_config

        transactions = read_contract(settings, only=["transactions"])["transactions"]
        applicable_config(transactions, bank_config(n_trials=0))
    elif name == "clv":
        from training.clv import clv_settings, observation_end, sized_holdout

        transactions = read_contract(settings, only=["transactions"])["transactions"]
        sized_holdout(clv_settings(settings), transactions, observation_end(settings, transactions))
