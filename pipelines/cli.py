"""The `loyal` command line: one thin sub-command per stage, each calling a plain function."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from loyal.errors import LoyalError
from loyal.logs import console, setup_logging
from loyal.settings import get_settings

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
) -> None:
    """Run the main job end to end on the embedded defaults."""
    from pipelines.run import run_all

    run_all(get_settings(), customers=customers, seed=seed)


@app.command()
def generate(
    customers: Annotated[int | None, typer.Option(help="Number of customers.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder for the raw tables.")] = None,
) -> None:
    """Generate the sample bank's raw tables (and its ground truth, kept apart)."""
    from pipelines.generate import generate_sample_bank

    generate_sample_bank(get_settings(), customers=customers, seed=seed, out=out)


@app.command()
def ingest(
    path: Annotated[Path, typer.Argument(help="Folder of CSV or Parquet tables.")],
    preset: Annotated[
        str | None, typer.Option(help="Map a known public dataset: online-retail, cdnow.")
    ] = None,
) -> None:
    """Validate a folder of tables against the data contract and load it atomically."""
    from pipelines.ingest import ingest_folder

    ingest_folder(get_settings(), path, preset=preset)


@app.command()
def summary() -> None:
    """Print rows per table, date range, churn rate and top products of the loaded data."""
    from pipelines.ingest import print_summary

    print_summary(get_settings())


def main() -> None:
    """Console-script entry point: domain errors become one readable line and a non-zero exit."""
    try:
        app()
    except LoyalError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]; nothing half-written is kept")
        sys.exit(130)
