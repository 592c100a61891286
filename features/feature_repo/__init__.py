"""Loyal's Feast feature repository: definitions only, generated from the feature catalog.

Split by concept as in Feast's templates: entities, sources, views, services. Nothing here
reads or writes data; `features.store` applies these objects to a configured store.
"""

from __future__ import annotations

from pathlib import Path

from feast import Entity, FeatureService, FeatureView

from features.catalog import VIEWS
from features.feature_repo.entities import customer
from features.feature_repo.services import feature_services
from features.feature_repo.sources import batch_source, push_source
from features.feature_repo.views import PUSHED_VIEWS, feature_view

FeastObject = Entity | FeatureView | FeatureService


def definitions(offline_dir: Path, view_names: list[str] | None = None) -> list[FeastObject]:
    """Every Feast object Loyal registers, reading view tables from `offline_dir`.

    Args:
        offline_dir: folder holding one `<view>.parquet` per feature view.
        view_names: the views to register (default: every view in the catalog).
    """
    names = view_names if view_names is not None else list(VIEWS)
    views: dict[str, FeatureView] = {}
    for name in names:
        source = batch_source(VIEWS[name], offline_dir)
        if name in PUSHED_VIEWS:
            source = push_source(VIEWS[name], source)
        views[name] = feature_view(VIEWS[name], source)
    return [customer, *views.values(), *feature_services(views)]
