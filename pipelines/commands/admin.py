"""`loyal models`, `loyal rollback MODEL` and `loyal pipeline retrain`: thin shells.

Only typer and the settings are imported at module level, so the CLI starts fast; each
command imports its heavy machinery when it runs. The plain functions live in
`training.models_admin`, `training.registry` and `pipelines.retrain`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from loyal.settings import Settings, get_settings

if TYPE_CHECKING:
    from pipelines.retrain import RetrainReport
    from training.models_admin import VersionRow

pipeline_app = typer.Typer(help="Multi-stage pipelines.", no_args_is_help=True)


@pipeline_app.callback()
def _group() -> None:
    """Multi-stage pipelines (a group even while it holds one command)."""


def list_models(
    settings: Settings, model: str | None = None, limit: int | None = 10
) -> list[VersionRow]:
    """Plain function behind `loyal models`: print and return the registered versions."""
    from loyal.logs import console
    from training.models_admin import list_versions, versions_table

    rows = list_versions(settings, None if model is None else [model], limit)
    if rows:
        console.print(versions_table(rows))
    else:
        console.print("no model is registered yet: run `make run` or `loyal train MODEL`")
    return rows


def models_command(
    model: Annotated[
        str | None, typer.Argument(help="One model: churn, cross-sell, clv or segments.")
    ] = None,
    limit: Annotated[
        int, typer.Option(help="Newest versions shown per model, besides the champion (0: all).")
    ] = 10,
) -> None:
    """List registered model versions, their holdout metric, the champions and why."""
    list_models(get_settings(), model, limit or None)


def rollback_model(settings: Settings, model: str, reason: str) -> str:
    """Plain function behind `loyal rollback`: the previous champion takes the alias back."""
    from training.models_admin import model_spec
    from training.registry import rollback

    return rollback(settings, model_spec(model).name, reason)


def rollback_command(
    model: Annotated[str, typer.Argument(help="churn, cross-sell, clv or segments.")],
    reason: Annotated[str, typer.Option(help="Why; recorded on the version rolled back.")],
) -> None:
    """Give the champion alias back to the version the current champion replaced."""
    restored = rollback_model(get_settings(), model, reason)
    typer.echo(
        f"{model}: v{restored} is champion again; run `loyal score` to republish the scores "
        "and restart the service (or `loyal bento build`) to serve it"
    )


def train_command_for(name: str) -> Callable[..., None]:
    """A `loyal train <model>` command for a model without its own (the spec's `train`)."""

    def train_command(
        register: Annotated[bool, typer.Option(help="Register the model version.")] = True,
    ) -> None:
        from training.models_admin import train_model

        result = train_model(get_settings(), name, register=register)
        typer.echo(json.dumps({"model": name, "model_version": result.model_version}))

    train_command.__doc__ = f"Train `{name}`, log it to MLflow and register it."
    return train_command


def promote_command_for(name: str, doc: str | None = None) -> Callable[..., None]:
    """The `loyal promote <model>` command: the one promotion path, with the spec's metric.

    Args:
        name: the registered model.
        doc: its help line (default: a generic one naming the model).
    """

    def promote_command(
        version: Annotated[
            str | None, typer.Option(help="Challenger version (default: the latest).")
        ] = None,
        force: Annotated[bool, typer.Option(help="Promote even without a win.")] = False,
        reason: Annotated[str, typer.Option(help="Why; required with --force.")] = "",
        metric: Annotated[
            str | None,
            typer.Option(help="Metric compared on the holdout (default: the model's own)."),
        ] = None,
    ) -> None:
        from training.models_admin import promote_model

        decision = promote_model(get_settings(), name, version, force, reason, metric)
        typer.echo(decision.summary())

    promote_command.__doc__ = doc or f"Make the latest `{name}` the champion if it wins."
    return promote_command


def retrain_pipeline(
    settings: Settings,
    churn_trials: int | None = None,
    churn_timeout: float | None = None,
    cross_sell_trials: int | None = None,
    bento: bool = True,
    sequential: bool = False,
) -> RetrainReport:
    """Plain function behind `loyal pipeline retrain` (see `pipelines.retrain.retrain`).

    A budget left None comes from the model's section of `loyal.yaml`.
    """
    from pipelines.retrain import RetrainOptions, retrain

    options = RetrainOptions(
        churn_trials=churn_trials,
        churn_timeout=churn_timeout,
        cross_sell_trials=cross_sell_trials,
        bento=bento,
        lanes=1 if sequential else 2,
    )
    return retrain(settings, options)


def sleeping_openmp_threads() -> None:
    """Make idle OpenMP threads sleep rather than spin, unless `OMP_WAIT_POLICY` is set.

    The retrain's two lanes run OpenMP thread teams (XGBoost's, implicit's) beside other work on
    shared cores, where a team's waiting threads spinning burn the CPU the other lane needs: on
    the 100,000-customer bank, 281-301 CPU s and 2 min 48 s to 3 min 0 s spinning, 251 CPU s
    and 2 min 33 s sleeping. It takes effect only before the first OpenMP library loads, so
    it is called first thing.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pipeline_app.command("retrain")
def retrain_command(
    churn_trials: Annotated[
        int | None, typer.Option(help="Optuna trials of the churn search (default: loyal.yaml).")
    ] = None,
    churn_timeout: Annotated[
        float | None, typer.Option(help="Churn search time budget in seconds (loyal.yaml).")
    ] = None,
    cross_sell_trials: Annotated[
        int | None, typer.Option(help="ALS settings tried by the cross-sell search (0: none).")
    ] = None,
    bento: Annotated[bool, typer.Option(help="Rebuild the Bento on the new champions.")] = True,
    sequential: Annotated[
        bool,
        typer.Option(help="Train one model at a time, after the features (less peak memory)."),
    ] = False,
    if_drift: Annotated[
        bool, typer.Option(help="Retrain only when `loyal monitor` raises an alert now.")
    ] = False,
) -> None:
    """Rebuild features, retrain every model, promote the winners, rescore, rebuild the Bento.

    No champion moves until every model is trained and compared, so an interrupted run
    leaves the champions, scores and features as they were.
    """
    if not sequential:
        sleeping_openmp_threads()
    if if_drift:
        from pipelines.commands.monitor import monitor

        level = monitor(get_settings())["level"]
        if level != "alert":
            typer.echo(f"monitoring level {level}: no drift alert, nothing retrained")
            return
        typer.echo("drift alert: retraining")
    retrain_pipeline(
        get_settings(), churn_trials, churn_timeout, cross_sell_trials, bento, sequential
    )
