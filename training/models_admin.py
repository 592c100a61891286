"""Model administration: train, promote, list, whatever the model, from its spec.

The specs (`loyal.specs.MODELS`) say, per registered model, its command name, the holdout metric
its training runs log, and the metric, direction and scorer promotion compares challenger and
champion on. `train_model` and `promote_model` are the one training and promotion path every
command and flow takes; `list_versions` reads the registry into plain rows for `loyal models`;
`versions_table` renders them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from loyal.settings import Settings
from loyal.specs import MODELS, ModelSpec, model_spec, resolve

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.tracking import MlflowClient
    from rich.table import Table

    from training.registry import PromotionDecision

log = logging.getLogger(__name__)


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

    The same checks its training makes before fitting (the spec's `applicable`): promotion calls
    this when no version is registered, so `loyal promote` after a skipped `loyal train` says
    why, with exit 0.

    Args:
        settings: where the contract and feature tables are.
        name: registered model name (`churn`, `cross_sell`, `clv`, `segments`, ...).
    """
    spec = model_spec(name)
    if spec.applicable is not None:
        resolve(spec.applicable)(settings)


def train_model(settings: Settings, name: str, **options: Any) -> Any:
    """Train, log and register a new version of a model (its spec's `train`).

    Returns:
        The model's training result (it has `model_version`).
    """
    return resolve(model_spec(name).train)(settings, **options)


def promote_model(
    settings: Settings,
    name: str,
    version: str | int | None = None,
    force: bool = False,
    reason: str = "",
    metric: str | None = None,
) -> PromotionDecision:
    """The one promotion path: challenger vs champion on the challenger's holdout.

    Args:
        settings: where MLflow lives.
        name: the model (registered or command name).
        version: the challenger (default: the latest version).
        force: promote even without a win (needs a reason).
        reason: why; recorded with the decision.
        metric: another metric than the spec's (its direction from `models.metrics.METRICS`).

    Raises:
        StepSkippedError: no version registered because the data cannot support the model.
        NotReadyError: no version registered yet.
    """
    from loyal.errors import NotReadyError
    from training import registry

    spec = model_spec(name)
    metric = metric or spec.promotion_metric
    try:
        return registry.promote(
            settings,
            spec.name,
            metric,
            higher_is_better=_direction(spec, metric),
            version=version,
            force=force,
            reason=reason,
            scorer=spec.scorer(metric),
        )
    except NotReadyError:
        check_applicable(settings, spec.name)  # skipped with the reason if inapplicable
        raise


def _direction(spec: ModelSpec, metric: str) -> bool:
    """Whether higher is better for `metric`: the spec's, else the metric table's (default up)."""
    if metric == spec.promotion_metric:
        return spec.higher_is_better
    from models.metrics import METRICS

    return METRICS[metric][1] if metric in METRICS else True
