"""Loyal's Feast feature repository: definitions only, generated from the feature catalog.

Split by concept as in Feast's templates: entities, sources, views, services. Nothing here
reads or writes data; `features.store` applies these objects to a configured store.
"""

from __future__ import annotations

from pathlib import Path

from feast import Entity, FeatureService, FeatureView

from features.catalog import View
from features.feature_repo.entities import customer
from features.feature_repo.services import feature_services
from features.feature_repo.sources import batch_source, push_source
from features.feature_repo.views import PUSHED_VIEWS, feature_view

FeastObject = Entity | FeatureView | FeatureService


def definitions(offline_dir: Path, views: dict[str, View]) -> list[FeastObject]:
    """Every Feast object Loyal registers, reading view tables from `offline_dir`.

    Args:
        offline_dir: folder holding one `<view>.parquet` per feature view.
        views: the catalog views to register, by name (the holdings view depends on the data).
    """
    feature_views: dict[str, FeatureView] = {}
    for name, view in views.items():
        source = batch_source(view, offline_dir)
        feature_views[name] = feature_view(
            view, push_source(view, source) if name in PUSHED_VIEWS else source
        )
    return [customer, *feature_views.values(), *feature_services(feature_views)]
