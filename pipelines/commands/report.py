"""`loyal report`: one offline HTML page for management (a thin shell over `reports.management`).

Only typer and the settings are imported at module level, so the CLI starts fast; pandas,
matplotlib and MLflow are imported when the command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from loyal.settings import Settings, get_settings

DEFAULT_TOP = 20
"""Rows of the early-warning list (kept equal to `reports.management.DEFAULT_TOP`)."""


def report(settings: Settings, out: Path | None = None, top: int = DEFAULT_TOP) -> Path:
    """Plain function behind `loyal report` (see `reports.management.build_report`)."""
    from reports.management import build_report

    return build_report(settings, out=out, top=top)


def report_command(
    out: Annotated[
        Path | None,
        typer.Option(help="HTML file to write (default: reports/loyal-report-<snapshot>.html)."),
    ] = None,
    top: Annotated[
        int, typer.Option(min=1, help="Customers in the early-warning list (largest rises).")
    ] = DEFAULT_TOP,
) -> None:
    """Write the management report: one self-contained HTML page over the latest scores."""
    path = report(get_settings(), out, top)
    typer.echo(f"report written to {path}")
