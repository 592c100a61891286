"""Feature services: one per model version, used by training and serving alike."""

from __future__ import annotations

from feast import FeatureService, FeatureView

SERVICE_VIEWS: dict[str, tuple[str, ...]] = {
    "churn_v1": ("profile", "rfm", "holdings", "engagement", "balances", "lifecycle"),
    "segments_v1": ("profile", "rfm", "holdings", "engagement", "balances"),
    "cross_sell_v1": ("profile", "holdings"),
    "nba_v1": ("profile", "rfm", "holdings", "engagement", "balances", "lifecycle", "scores"),
}
"""Which views each model reads; a view missing from the store is left out of the service."""


def feature_services(views: dict[str, FeatureView]) -> list[FeatureService]:
    """The feature services over the views that exist."""
    return [
        FeatureService(
            name=name,
            features=[views[v] for v in view_names if v in views],
            description=f"Features read by the {name.removesuffix('_v1')} model, version 1.",
        )
        for name, view_names in SERVICE_VIEWS.items()
    ]
