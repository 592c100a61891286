"""Batch scores of the registered models that publish their own table (a spec's `batch_scorer`).

The champion comes from the one champion source (`inference.champions`), loaded by the spec's
`champion_loader`; the spec's `batch_scorer(model, customer_ids)` returns one row per customer
with its `score_fields`, written atomically to `<data_dir>/scores/<model>.parquet`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from features.tables_io import staged_file
from inference.champions import MlflowChampions, load_champions
from loyal.errors import LoyalError
from loyal.settings import Settings
from loyal.specs import MODELS, ModelSpec, resolve

log = logging.getLogger(__name__)


def batch_specs() -> list[ModelSpec]:
    """The registered models with a batch scorer of their own, in registration order."""
    return [spec for spec in MODELS.values() if spec.batch_scorer is not None]


def scores_path(settings: Settings, name: str) -> Path:
    """Where a model's own batch scores are written."""
    return settings.paths.data_dir / "scores" / f"{name}.parquet"


def score_own_tables(settings: Settings, customer_ids: Sequence[str]) -> dict[str, str]:
    """Score `customer_ids` with every model that has a batch scorer; write each one's table.

    A model without a champion is skipped with a warning (its table stays as it was).

    Returns:
        Model name -> e.g. ``extra v2 (champion)``, for the models scored.
    """
    specs = batch_specs()
    if not specs:
        return {}
    source = MlflowChampions(
        settings.mlflow.tracking_uri, settings.paths.runtime_dir / "scoring" / "models"
    )
    loaded = load_champions(source, [spec.name for spec in specs])
    labels: dict[str, str] = {}
    for spec in specs:
        model = loaded[spec.name]
        if model.obj is None:
            log.warning("%s: not scored (%s)", spec.name, model.problem)
            continue
        frame = resolve(str(spec.batch_scorer))(model.obj, list(customer_ids))
        write_scores(settings, spec, frame)
        labels[spec.name] = f"{spec.name} v{model.version} (champion)"
    return labels


def write_scores(settings: Settings, spec: ModelSpec, frame: pd.DataFrame) -> Path:
    """Write a model's batch scores (customer_id plus its score fields) atomically.

    Raises:
        LoyalError: a score field is missing, or the file could not be written.
    """
    columns = ["customer_id", *spec.score_fields]
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise LoyalError(f"{spec.name}: batch scores lack {', '.join(missing)}")
    target = scores_path(settings, spec.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with staged_file(target) as staging:
            frame[columns].to_parquet(staging, index=False)
    except OSError as exc:
        raise LoyalError(f"could not write {spec.name} scores to {target}: {exc}") from exc
    log.info("wrote %d %s scores to %s", len(frame), spec.name, target)
    return target
