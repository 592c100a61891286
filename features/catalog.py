"""The feature catalog: every feature view, its features, types and plain-language descriptions.

One source of truth for feature engineering (which columns each view table has), the Feast
definitions (generated from here) and model explanations (reason sentences).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FeatureType = Literal["float", "int", "str", "bool"]

ENTITY_KEY = "customer_id"
TIMESTAMP_FIELD = "event_timestamp"


@dataclass(frozen=True)
class Feature:
    """One feature column.

    Attributes:
        name: column name in the view table and in Feast.
        type: value type.
        description: what it measures, for people (docs, `loyal features show`).
        reason: sentence template used when this feature drives a prediction; `{value}` is the
            customer's value, e.g. "{value:.0f} complaints in the last 90 days".
    """

    name: str
    type: FeatureType
    description: str
    reason: str = ""

    def sentence(self, value: object) -> str:
        """Render the reason sentence for a value, falling back to the description."""
        template = self.reason or f"{self.description}: {{value}}"
        try:
            return template.format(value=value)
        except (ValueError, TypeError):
            return f"{self.description}: {value}"


@dataclass(frozen=True)
class View:
    """One feature view: a snapshot table keyed by customer and event timestamp."""

    name: str
    description: str
    features: tuple[Feature, ...]
    ttl_days: int = 62

    @property
    def feature_names(self) -> list[str]:
        """Names of the view's features, in order."""
        return [f.name for f in self.features]


VIEWS: dict[str, View] = {}
"""Filled by the feature engineering work: name -> View."""


def feature(name: str) -> Feature:
    """Look a feature up by name across all views."""
    for view in VIEWS.values():
        for f in view.features:
            if f.name == name:
                return f
    raise KeyError(name)
