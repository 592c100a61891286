"""`loyal train cross-sell` and `loyal promote cross-sell`: thin shells over training.

Only typer and the settings are imported at module level, so the CLI starts fast; each
command imports its heavy machinery when it runs.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from loyal.settings import Settings, get_settings
from loyal.specs import promotion_for
from pipelines.commands.admin import promote_command_for

if TYPE_CHECKING:
    from training.cross_sell import CrossSellResult


def train_cross_sell_command(
    settings: Settings,
    trials: int | None = None,
    register: bool = True,
    write: bool = True,
) -> CrossSellResult:
    """Plain function behind `loyal train cross-sell`: train, log, register, write the top-k.

    Args:
        settings: the loaded contract data, MLflow and the scores folder.
        trials: ALS settings tried by the seeded search (0: the defaults, no search; None:
            `cross_sell.search_trials` of `loyal.yaml`).
        register: register the model version as `cross_sell`.
        write: write the batch recommendations to `<data_dir>/scores/recommendations.parquet`.

    Returns:
        The training result, with the batch recommendations.
    """
    from training.cross_sell import publish_recommendations, train_bank

    result = train_bank(settings, trials, register)
    if write:
        publish_recommendations(settings, result)
    return result


def train_command(
    trials: Annotated[
        int | None,
        typer.Option(help="ALS settings tried by the search (0: none; default: loyal.yaml)."),
    ] = None,
    register: Annotated[bool, typer.Option(help="Register the model version.")] = True,
    write: Annotated[bool, typer.Option(help="Write the batch recommendations.")] = True,
) -> None:
    """Train the cross-sell model, log it to MLflow and register it as `cross_sell`."""
    result = train_cross_sell_command(get_settings(), trials, register, write)
    summary = {
        "run_id": result.run_id,
        "model_version": result.model_version,
        **{k: round(v, 6) for k, v in result.evaluation.metrics.items()},
        "params": {k: result.evaluation.params[k] for k in ("factors", "regularization", "alpha")},
        "seconds": round(result.seconds, 1),
    }
    typer.echo(json.dumps(summary))


promote_cross_sell = promotion_for("cross_sell")
"""Plain function behind `loyal promote cross-sell`: both versions' recipes are refitted on the
challenger's logged calibration matrix and scored on its targets (`ranking_scorer`)."""


promote_command = promote_command_for(
    "cross_sell", "Make the latest cross-sell model the champion if it wins on the same holdout."
)
