"""Serving settings: the `serving` section of `loyal.yaml` (`LOYAL_SERVING__*` variables).

The section's model lives in `loyal.settings` with every other section; this module reads it
for the service and lets callers override single fields.
"""

from __future__ import annotations

from loyal.settings import DEFAULT_MODELS, ServingSettings, load_settings

__all__ = ["DEFAULT_MODELS", "ServingSettings", "load_serving_settings"]


def load_serving_settings(**overrides: object) -> ServingSettings:
    """The `serving` section of the settings (file, then environment), arguments winning.

    Raises:
        ConfigError: a value is invalid (named with its section and field).
    """
    section = load_settings().serving
    if not overrides:
        return section
    return ServingSettings.model_validate({**section.model_dump(), **overrides})
