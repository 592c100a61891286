"""The `loyal` command line: one thin sub-command per stage, each calling a plain function."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from loyal.errors import LoyalError, StepSkippedError
from loyal.logs import console, setup_logging
from loyal.settings import get_settings
from loyal.specs import MODELS, resolve

app = typer.Typer(
    name="loyal",
    help="Loyal: customer value, needs, churn risk and next best action.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _configure() -> None:
    setup_logging(get_settings().log_level)


@app.command()
def run(
    customers: Annotated[int | None, typer.Option(help="Sample bank size.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed for the sample bank.")] = None,
    serve: Annotated[bool, typer.Option(help="End by serving the API until interrupted.")] = True,
    port: Annotated[int, typer.Option(help="Port of the API served at the end.")] = 3000,
    force: Annotated[
        bool, typer.Option(help="Replace data ingested from another source (refused otherwise).")
    ] = False,
    data: Annotated[
        Path | None,
        typer.Option(help="Load this folder (your tables) instead of generating the sample bank."),
    ] = None,
    preset: Annotated[
        str | None, typer.Option(help="Preset mapping --data: online-retail, cdnow, cdnow-sample.")
    ] = None,
) -> None:
    """Run the main job end to end on the embedded defaults."""
    from pipelines.run import run_all

    settings = get_settings()
    run_all(
        settings,
        settings.generate.overridden(customers, seed),
        serve_api=serve,
        port=port,
        force=force,
        data=data,
        preset=preset,
    )


@app.command()
def generate(
    customers: Annotated[int | None, typer.Option(help="Number of customers.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder for the raw tables.")] = None,
    shift: Annotated[
        str | None,
        typer.Option(help="A shifted future: competitor, rate-cut or outage (truth kept apart)."),
    ] = None,
) -> None:
    """Generate the sample bank's raw tables (and its ground truth, kept apart)."""
    from samplebank.generate import generate_sample_bank

    settings = get_settings()
    bank = settings.generate.overridden(customers, seed)
    generate_sample_bank(settings, bank, out=out, shift=shift)


@app.command()
def ingest(
    path: Annotated[Path, typer.Argument(help="Folder of CSV or Parquet tables.")],
    preset: Annotated[
        str | None, typer.Option(help="Map a known public dataset: online-retail, cdnow.")
    ] = None,
    date_format: Annotated[
        str | None,
        typer.Option(
            help="strptime format of text dates, e.g. %d/%m/%Y (default: ISO 8601 only; "
            "other formats are rejected, never guessed)."
        ),
    ] = None,
) -> None:
    """Validate a folder of tables against the data contract and load it atomically."""
    from pipelines.ingest import ingest_folder

    ingest_folder(get_settings(), path, preset=preset, date_format=date_format)


@app.command()
def summary() -> None:
    """Print rows per table, date range, churn rate and top products of the loaded data."""
    from pipelines.ingest import print_summary

    print_summary(get_settings())


features_app = typer.Typer(
    help="Build, register, materialize and inspect features.", no_args_is_help=True
)
app.add_typer(features_app, name="features")


@features_app.command("build")
def features_build(
    last_n: Annotated[
        int | None, typer.Option(help="Keep only the last N snapshots (default: all).")
    ] = None,
) -> None:
    """Build snapshot feature tables and churn labels from the validated contract tables."""
    from pipelines.features import build_features

    build_features(get_settings(), last_n=last_n)


@features_app.command("apply")
def features_apply() -> None:
    """Register entities, feature views and feature services in Feast."""
    from pipelines.features import apply_features

    apply_features(get_settings())


@features_app.command("materialize")
def features_materialize() -> None:
    """Load the latest feature values into the online store."""
    from pipelines.features import materialize_features

    materialize_features(get_settings())


@features_app.command("show")
def features_show(
    customer_id: Annotated[str, typer.Argument(help="The customer to look up.")],
    service: Annotated[str, typer.Option(help="Feature service to read.")] = "nba_v1",
) -> None:
    """Print one customer's online feature values (for support staff and debugging)."""
    from pipelines.features import show_customer

    show_customer(get_settings(), customer_id, service=service)


def _register_model_commands() -> None:
    """`loyal train MODEL` and `loyal promote MODEL` for every registered spec, then the rest."""
    from pipelines.commands import (
        admin,
        campaign,
        churn,
        lists,
        monitor,
        policy,
        report,
        scoring,
        serve,
        simulate,
    )

    for spec in MODELS.values():
        if spec.commands is None:
            train = admin.train_command_for(spec.name)
            promote = admin.promote_command_for(spec.name)
        else:
            train, promote = (resolve(reference) for reference in spec.commands)
        train_app.command(spec.command)(train)
        promote_app.command(spec.command)(promote)
    app.add_typer(churn.app, name="churn")
    app.command("score")(scoring.score_command)
    app.command("churn-list")(lists.churn_list_command)
    app.command("report")(report.report_command)
    app.command("monitor")(monitor.monitor_command)
    app.add_typer(campaign.app, name="campaign")
    app.command("models")(admin.models_command)
    app.command("rollback")(admin.rollback_command)
    app.add_typer(admin.pipeline_app, name="pipeline")
    app.command("serve")(serve.serve_command)
    app.add_typer(serve.bento_app, name="bento")
    app.add_typer(policy.policy_app, name="policy")
    app.command("simulate")(simulate.simulate_command)


train_app = typer.Typer(
    help="Train a model, log it to MLflow and register it.", no_args_is_help=True
)
promote_app = typer.Typer(
    help="Make a model version the champion if it wins on the same holdout.", no_args_is_help=True
)
app.add_typer(train_app, name="train")
app.add_typer(promote_app, name="promote")
_register_model_commands()


def main() -> None:
    """Console-script entry point: domain errors become one readable line and a non-zero exit."""
    try:
        app()
    except StepSkippedError as exc:
        console.print(f"[bold yellow]skipped:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except LoyalError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]; nothing half-written is kept")
        sys.exit(130)
