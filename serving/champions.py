"""The service's champion loaders: the in-process objects it answers with.

Champions are found and loaded by `inference.champions` (the one champion source, shared with
batch scoring); the loaders here, named by the churn, cross-sell, uplift and acceptance specs,
never call the pyfunc wrappers per request: they read the same JSON / npz artifacts the pyfuncs
read and return the in-process objects (`FastChurn`, a `Recommender`, `FastUplift`, an
`AcceptanceModel` on compiled trees).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from inference.champions import (
    CHAMPION,
    ChainedChampions,
    ChampionSource,
    LoadedModel,
    MlflowChampions,
    ModelArtifact,
    ModelLoadError,
    load_champions,
)
from loyal.errors import LoyalError

__all__ = [
    "CHAMPION",
    "LOADERS",
    "ChainedChampions",
    "ChampionSource",
    "LoadedModel",
    "MlflowChampions",
    "ModelArtifact",
    "ModelLoadError",
    "load_acceptance",
    "load_champions",
    "load_churn",
    "load_cross_sell",
    "load_uplift",
]

CHURN_ARTIFACT = "churn_model"
CROSS_SELL_ARTIFACT = "recommender"


def load_churn(artifact: ModelArtifact) -> Any:
    """The churn champion as a `FastChurn` (exact fast path, reasons worded from the catalog)."""
    from models.churn import ChurnModel, template_sentence
    from serving.fastchurn import FastChurn

    path = artifact.artifact(CHURN_ARTIFACT)
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        model = ChurnModel.from_state(payload["model"])
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"{artifact.source}: cannot read {path}: {exc}") from None
    return FastChurn(model, template_sentence(payload.get("templates") or {}))


def load_cross_sell(artifact: ModelArtifact) -> Any:
    """The cross-sell champion as a `Recommender` (its fast `recommend` path)."""
    from models.recommender import Recommender

    try:
        return Recommender.load(artifact.artifact(CROSS_SELL_ARTIFACT))
    except LoyalError as exc:
        raise ModelLoadError(f"{artifact.source}: {exc}") from None


def load_uplift(artifact: ModelArtifact) -> Any:
    """The uplift champion as a `FastUplift` (its effect trees compiled to numpy)."""
    from models.pyfuncs.uplift import load
    from serving.fastuplift import FastUplift

    try:
        return FastUplift(load(artifact))
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"{artifact.source}: cannot read its uplift model: {exc}") from None


def load_acceptance(artifact: ModelArtifact) -> Any:
    """The acceptance champion, its contextual level (if any) scoring on compiled trees."""
    from models.acceptance import load_champion
    from serving.fastacceptance import compiled

    return compiled(load_champion(artifact))


LOADERS: dict[str, Callable[[ModelArtifact], Any]] = {
    "acceptance": load_acceptance,
    "churn": load_churn,
    "cross_sell": load_cross_sell,
    "uplift": load_uplift,
}
"""Registered model name -> loader of its in-process serving object."""
