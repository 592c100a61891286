"""Logging set-up for entry points: rich console output, one format everywhere."""

from __future__ import annotations

import logging

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

console = Console(stderr=True)


def setup_logging(level: str = "INFO") -> None:
    """Route Loyal's logs through rich and quiet the chattiest third-party loggers."""
    logging.basicConfig(
        level=level.upper(),
        format="%(message)s",
        datefmt="[%X]",
        handlers=[RichHandler(console=console, show_path=False, rich_tracebacks=False)],
        force=True,
    )
    for noisy in ("feast", "mlflow", "alembic", "urllib3", "bentoml", "numexpr"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def progress_bar(transient: bool = False) -> Progress:
    """A progress bar with counts and elapsed time, on the shared console."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=transient,
    )
