"""`loyal train clv|segments` and `loyal promote clv|segments`: thin shells.

Only typer and the settings are imported at module level, so the CLI starts fast; each
command imports its heavy machinery when it runs. Every command has a plain function with
the same parameters (tests and `make run` call those).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from loyal.settings import Settings, get_settings
from pipelines.commands.admin import promote_command_for

if TYPE_CHECKING:
    from training.clv import ClvTrainResult
    from training.registry import PromotionDecision
    from training.segments import SegmentsTrainResult

log = logging.getLogger(__name__)

SUMMARY_METRICS = ("mae", "rmse", "naive_mae", "naive_rmse", "predicted_total", "actual_total")


# ------------------------------------------------------------------------ plain functions
def train_clv(settings: Settings, register: bool = True) -> ClvTrainResult:
    """Plain function behind `loyal train clv` (see `training.clv.train_clv`)."""
    from training.clv import train_clv as train

    return train(settings, register=register)


def train_segments(
    settings: Settings, register: bool = True, match_champion: bool = True
) -> SegmentsTrainResult:
    """Plain function behind `loyal train segments` (see `training.segments.train_segments`)."""
    from training.segments import train_segments as train

    return train(settings, register=register, match_champion=match_champion)


def promote_clv(
    settings: Settings, version: str | None = None, force: bool = False, reason: str = ""
) -> PromotionDecision:
    """Plain function behind `loyal promote clv`: lower holdout MAE wins."""
    from training.models_admin import promote_model

    return promote_model(settings, "clv", version, force, reason)


def promote_segments(
    settings: Settings, version: str | None = None, force: bool = False, reason: str = ""
) -> PromotionDecision:
    """Plain function behind `loyal promote segments`: higher silhouette on one sample wins."""
    from training.models_admin import promote_model

    return promote_model(settings, "segments", version, force, reason)


def train_and_promote_value(settings: Settings) -> dict[str, Any]:
    """`make run`'s value step: train and promote `clv`, then `segments` (tiers need CLV).

    A model the data cannot support is skipped with its reason (`StepSkippedError`) and the other
    one still runs; the summary carries `<model>_skipped` with the reason.
    """
    from loyal.errors import StepSkippedError
    from training.models_admin import promote_model, train_model

    summary: dict[str, Any] = {}
    summaries: dict[str, Callable[[Any], dict[str, Any]]] = {
        "clv": clv_summary,
        "segments": segments_summary,
    }
    for name, summarize in summaries.items():
        try:
            result = train_model(settings, name)
            summary[name] = summarize(result)
            summary[f"{name}_promotion"] = promote_model(
                settings, name, result.model_version
            ).outcome
        except StepSkippedError as skipped:
            log.warning("skipped: %s", skipped)
            summary[f"{name}_skipped"] = str(skipped)
    return summary


def clv_summary(result: ClvTrainResult) -> dict[str, Any]:
    """The headline of a CLV run as plain data."""
    return {
        "run_id": result.run_id,
        "model_version": result.model_version,
        "calibration_end": str(result.calibration_end.date()),
        "observation_end": str(result.observation_end.date()),
        "holdout_weeks": round((result.observation_end - result.calibration_end).days / 7, 1),
        "value_basis": (
            "margin" if result.value_column == "monetary_margin" else "revenue (no margin known)"
        ),
        **{f"holdout_{k}": round(result.metrics[k], 4) for k in SUMMARY_METRICS},
        "fit_seconds": round(result.seconds, 1),
    }


def segments_summary(result: SegmentsTrainResult) -> dict[str, Any]:
    """The headline of a segments run as plain data."""
    sizes = result.labels.value_counts().sort_index()
    sizes.index = sizes.index.astype(int)
    names = result.model.segment_names_
    return {
        "run_id": result.run_id,
        "model_version": result.model_version,
        "k": int(result.model.k_),
        "silhouette": round(result.metrics["silhouette"], 4),
        "ari_true_segment": None if result.ari is None else round(result.ari, 4),
        "segments": {f"{s}: {names[s]}": int(n) for s, n in zip(sizes.index, sizes, strict=True)},
        "tier_value_shares": {
            key: round(result.metrics[f"tier_{key}_value_share"], 4)
            for key in ("top1", "top5", "top20")
        },
        "fit_seconds": round(result.seconds, 1),
    }


# ------------------------------------------------------------------------------ commands
def train_clv_command(
    register: Annotated[bool, typer.Option(help="Register the model version.")] = True,
) -> None:
    """Train the CLV model (BG/NBD + Gamma-Gamma), log it to MLflow and register it as `clv`."""
    typer.echo(json.dumps(clv_summary(train_clv(get_settings(), register))))


def train_segments_command(
    register: Annotated[bool, typer.Option(help="Register the model version.")] = True,
    match_champion: Annotated[
        bool, typer.Option(help="Keep the champion's segment ids (match centroids).")
    ] = True,
) -> None:
    """Train the need segments and value tiers, log them to MLflow and register `segments`."""
    result = train_segments(get_settings(), register, match_champion)
    typer.echo(json.dumps(segments_summary(result)))


promote_clv_command = promote_command_for(
    "clv", "Make the latest CLV model the champion if its holdout MAE beats the champion's."
)


promote_segments_command = promote_command_for(
    "segments", "Make the latest segments model the champion if it separates customers better."
)
