"""`loyal churn ...`, `loyal train churn` and `loyal promote churn`: thin shells over training.

Only typer and the settings are imported at module level, so the CLI starts fast; each
command imports its heavy machinery when it runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from loyal.errors import NotReadyError
from loyal.settings import ChurnSettings, Settings, get_settings
from loyal.specs import promotion_for
from pipelines.commands.admin import promote_command_for

if TYPE_CHECKING:
    from training.churn import TrainResult


app = typer.Typer(help="Churn model: evaluate a bring-your-own table.", no_args_is_help=True)


@app.callback()
def _group() -> None:
    """Churn model commands (a group even while it holds one command)."""


@app.command("evaluate")
def evaluate(
    table: Annotated[
        Path, typer.Option("--table", help="CSV, TSV or Parquet, one row per customer.")
    ],
    label: Annotated[
        str, typer.Option("--label", help="Churn label column (yes/no, 1/0, churned/stayed...).")
    ],
    id_col: Annotated[
        str | None, typer.Option("--id", help="Customer id column (default: none, rows numbered).")
    ] = None,
    folds: Annotated[int, typer.Option(help="Stratified cross-validation folds.")] = 5,
    seed: Annotated[int, typer.Option(help="Seed of the shuffled folds and the models.")] = 42,
    budget_seconds: Annotated[
        float | None,
        typer.Option(
            "--budget-seconds",
            help="Search time budget over all folds (default: 60 s per 10,000 rows, at least "
            "60 s; 0: no search).",
        ),
    ] = None,
    log_run: Annotated[
        bool, typer.Option("--mlflow/--no-mlflow", help="Log the run to MLflow.")
    ] = True,
) -> None:
    """Cross-validate the churn model and two baselines on a table; print one JSON line."""
    from training.churn import evaluate_table, log_evaluation

    # The line: `evaluate_table`'s metrics, baselines, chosen settings and seconds, plus the
    # MLflow `run_id` when logged; with --no-mlflow the settings are not read (churn defaults).
    settings = get_settings() if log_run else None
    options = settings.churn if settings is not None else ChurnSettings()
    result = evaluate_table(
        table,
        id_col,
        label,
        folds=folds,
        seed=seed,
        budget_seconds=budget_seconds,
        options=options,
    )
    summary = result.summary()
    if settings is not None:
        summary["run_id"] = log_evaluation(settings, table, result)
    typer.echo(json.dumps(summary))


def train_churn(
    settings: Settings,
    table: Path | None = None,
    id_col: str | None = None,
    label_col: str | None = None,
    search_trials: int | None = None,
    search_timeout: float | None = None,
    register: bool = True,
    max_train_snapshots: int | None = None,
) -> TrainResult:
    """Plain function behind `loyal train churn`: train, log to MLflow and register `churn`.

    Args:
        settings: the feature store, labels and MLflow.
        table: a bring-your-own table; without one, the model trains on the loaded data
            through the `churn_v1` feature service (`training.churn.train_churn_bank`).
        id_col: the table's customer id column (None: rows are numbered).
        label_col: the table's churn label column.
        search_trials: most search trials (None: the `churn` section of `loyal.yaml`, as for
            the next two).
        search_timeout: the search's time budget in seconds (`--budget-seconds`).
        register: register the model version.
        max_train_snapshots: feature-store training only: the latest training snapshots
            fetched (0: all).

    Raises:
        NotReadyError: a table without its id and label columns, or no features built yet.
    """
    trials = settings.churn.search_trials if search_trials is None else search_trials
    timeout = settings.churn.search_timeout if search_timeout is None else search_timeout
    if table is None:
        from training.churn import train_configured

        snapshots = settings.churn.max_train_snapshots
        if max_train_snapshots is not None:
            snapshots = max_train_snapshots or None
        return train_configured(
            settings,
            search_trials=trials,
            search_timeout=timeout,
            max_train_snapshots=snapshots,
            register=register,
        )
    if not label_col:
        raise NotReadyError("--table needs --label (the churn label column)")
    from training.churn import train_from_table

    return train_from_table(
        settings,
        table,
        id_col,
        label_col,
        search_trials=trials,
        search_timeout=timeout,
        register=register,
    )


def train_command(
    table: Annotated[
        Path | None,
        typer.Option("--table", help="Train from a bring-your-own table (default: features)."),
    ] = None,
    id_col: Annotated[str | None, typer.Option("--id", help="Customer id column.")] = None,
    label: Annotated[str | None, typer.Option("--label", help="Churn label column.")] = None,
    trials: Annotated[
        int | None, typer.Option(help="Most search trials (default: loyal.yaml's churn section).")
    ] = None,
    budget_seconds: Annotated[
        float | None, typer.Option("--budget-seconds", help="Search time budget in seconds.")
    ] = None,
    register: Annotated[bool, typer.Option(help="Register the model version.")] = True,
    snapshots: Annotated[
        int | None,
        typer.Option(help="Latest training snapshots fetched from features (0: all)."),
    ] = None,
) -> None:
    """Train the churn model, log it to MLflow and register it as `churn`."""
    result = train_churn(
        get_settings(), table, id_col, label, trials, budget_seconds, register, snapshots
    )
    summary = {
        "run_id": result.run_id,
        "model_version": result.model_version,
        **{f"test_{k}": round(v, 6) for k, v in result.metrics.items()},
        "fit_seconds": round(result.seconds, 1),
        "frame_seconds": round(result.frame_seconds, 1),
    }
    typer.echo(json.dumps(summary))


promote_churn = promotion_for("churn")
"""Plain function behind `loyal promote churn`: challenger vs champion on one holdout."""


promote_command = promote_command_for(
    "churn",
    "Make the latest churn model the champion if it beats the champion on the same holdout.",
)
