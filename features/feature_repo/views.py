"""Feature views: one per catalog view, with an explicit schema, ttl and timestamp field."""

from __future__ import annotations

from datetime import timedelta

from feast import FeatureView, Field, FileSource, PushSource
from feast.types import Bool, Float64, Int64, PrimitiveFeastType, String

from features.catalog import FeatureType, View
from features.feature_repo.entities import customer

FEAST_TYPES: dict[FeatureType, PrimitiveFeastType] = {
    "float": Float64,
    "int": Int64,
    "str": String,
    "bool": Bool,
}

PUSHED_VIEWS = frozenset({"balances"})
"""Views whose fresh values arrive through a push source (the ATM must see today's balance)."""


def feature_view(view: View, source: FileSource | PushSource) -> FeatureView:
    """The Feast feature view for a catalog view."""
    return FeatureView(
        name=view.name,
        entities=[customer],
        ttl=timedelta(days=view.ttl_days),
        schema=[
            Field(name=f.name, dtype=FEAST_TYPES[f.type], description=f.description)
            for f in view.features
        ],
        online=True,
        source=source,
        description=view.description,
    )
