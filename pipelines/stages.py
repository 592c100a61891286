"""The ordered stages `loyal run` and `loyal pipeline retrain` share: features, then each model.

Both flows run the same feature stages and one `Train <model>` stage per registered spec, in
the specs' order; they differ only in when champions move (`run` promotes each model as soon as
it is trained, since segments' tiers read the CLV champion; `retrain` decides every model before
moving any alias) and in what comes around them (loading data; the Bento).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from loyal.settings import Settings


@dataclass(frozen=True)
class Stage:
    """One titled step of a flow.

    Attributes:
        title: what the console shows.
        step: the work, a function of the settings.
        model: the registered model a training stage trains (None for other stages).
        reads_features: the stage reads the feature tables (a training stage whose model
            learns from the contract data alone does not).
        after: the models whose new version this training reads (its spec's `after`).
    """

    title: str
    step: Callable[[Settings], Any]
    model: str | None = None
    reads_features: bool = True
    after: tuple[str, ...] = ()


def feature_stages(verb: str = "Build") -> list[Stage]:
    """Build the point-in-time features and labels, register them in Feast, materialize.

    Args:
        verb: how the first title says it (`retrain` rebuilds).
    """
    from pipelines.features import apply_features, build_features, materialize_features

    return [
        Stage(f"{verb} point-in-time features and labels", build_features),
        Stage("Register features in Feast", apply_features),
        Stage("Materialize the online store", materialize_features),
    ]


def training_stages(options: Callable[[str], Mapping[str, Any]] | None = None) -> list[Stage]:
    """`Train <model>` for every registered spec, in order.

    Args:
        options: keyword options of a model's `train` by model name (default: none, so the
            model's `loyal.yaml` section decides).
    """
    from loyal.specs import MODELS
    from training.models_admin import train_model

    stages = []
    for spec in list(MODELS.values()):
        given = dict(options(spec.name)) if options is not None else {}
        step = partial(_train, train_model, spec.name, given)
        title = f"Train {spec.title}"
        stages.append(Stage(title, step, spec.name, spec.trains_on_features, spec.after))
    return stages


def _train(
    train: Callable[..., Any], name: str, options: Mapping[str, Any], settings: Settings
) -> Any:
    return train(settings, name, **options)
