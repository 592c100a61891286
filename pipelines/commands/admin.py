"""`loyal models`, `loyal rollback MODEL` and `loyal pipeline retrain` (being built; issue #8)."""

from __future__ import annotations

import typer

from loyal.errors import NotReadyError

pipeline_app = typer.Typer(help="Multi-stage pipelines.", no_args_is_help=True)


def models_command() -> None:
    """List registered model versions and champions."""
    raise NotReadyError("`loyal models` is not built yet")


def rollback_command() -> None:
    """Give the champion alias back to the previous champion."""
    raise NotReadyError("`loyal rollback` is not built yet")


@pipeline_app.command("retrain")
def retrain_command() -> None:
    """Rebuild features, retrain, evaluate, promote winners and rebuild the Bento."""
    raise NotReadyError("`loyal pipeline retrain` is not built yet")
