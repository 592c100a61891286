"""Feature services, generated from the model specs: one per model version, plus the NBA's.

Each registered spec with a `feature_service` gets that service over its `feature_views`; the
next-best-action service reads every model's views and the batch scores. Training and serving
read the same services.
"""

from __future__ import annotations

from feast import FeatureService, FeatureView

from loyal.specs import MODELS

NBA_SERVICE = "nba_v1"
SCORES_VIEW = "scores"


def service_views() -> dict[str, tuple[str, ...]]:
    """Feature service -> the views it joins, from the registered specs (and the NBA's)."""
    services = {
        spec.feature_service: spec.feature_views
        for spec in MODELS.values()
        if spec.feature_service is not None
    }
    every_view = dict.fromkeys(view for views in services.values() for view in views)
    services[NBA_SERVICE] = (*every_view, SCORES_VIEW)
    return services


SERVICE_VIEWS: dict[str, tuple[str, ...]] = service_views()
"""Which views each model reads (the built-in specs); a view missing from the store is left out."""


def feature_services(views: dict[str, FeatureView]) -> list[FeatureService]:
    """The feature services of the registered models over the views that exist."""
    return [
        FeatureService(
            name=name,
            features=[views[v] for v in view_names if v in views],
            description=f"Features read by the {name.removesuffix('_v1')} model, version 1.",
        )
        for name, view_names in service_views().items()
    ]
