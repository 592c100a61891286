"""Serving settings: the `LOYAL_SERVING__*` environment variables (a section to fold into Settings).

Kept apart from `loyal.settings.Settings` until the lead adds a `serving` section there; the
field names are the ones that section would have, so `LOYAL_SERVING__API_KEY` keeps working.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_MODELS: tuple[str, ...] = ("churn", "cross_sell")
"""Registered models the service loads at start-up (their `champion` versions)."""


class ServingSettings(BaseSettings):
    """How the next-best-action service runs.

    Attributes:
        api_key: when set, every API call must send it in `api_key_header` (401 otherwise).
        api_key_header: the header carrying the key.
        models: registered models to load (`champion` alias); a missing one degrades answers.
        feature_service: the Feast feature service the service reads online.
        feature_reader: `sqlite` reads Feast's SQLite online tables directly (the fast path,
            kept equal to Feast by a test), `feast` calls `get_online_features`, `auto` picks
            `sqlite` for the embedded profile and `feast` otherwise.
        catalog_path: the offer catalog (default: the one shipped for the sample bank).
        recommendations: cross-sell products handed to the policy as candidates.
        reasons: churn reasons per customer.
        feedback_db: the feedback store (default: `<runtime_dir>/serving/feedback.db`).
        workers: BentoML worker processes.
        tracing: keep BentoML's OpenTelemetry tracing on every request (costs ~0.5 ms each).
        require_models: readiness (`/readyz`) fails while a configured model is missing.
    """

    model_config = SettingsConfigDict(env_prefix="LOYAL_SERVING__", extra="ignore")

    api_key: SecretStr | None = None
    api_key_header: str = "X-API-Key"
    models: Annotated[tuple[str, ...], NoDecode] = DEFAULT_MODELS
    feature_service: str = "nba_v1"
    feature_reader: Literal["auto", "sqlite", "feast"] = "auto"
    catalog_path: Path | None = None
    recommendations: int = Field(default=5, ge=1, le=50)
    reasons: int = Field(default=3, ge=0, le=10)
    feedback_db: Path | None = None
    workers: int = Field(default=1, ge=1, le=64)
    tracing: bool = False
    require_models: bool = True

    @field_validator("models", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        """`LOYAL_SERVING__MODELS=churn,cross_sell` (an empty string loads no model)."""
        if isinstance(value, str):
            return tuple(name.strip() for name in value.split(",") if name.strip())
        return value

    @property
    def auth_enabled(self) -> bool:
        """Whether API calls need the key."""
        return self.api_key is not None and bool(self.api_key.get_secret_value())


def load_serving_settings(**overrides: object) -> ServingSettings:
    """Read the serving settings from the environment (arguments win)."""
    return ServingSettings(**overrides)  # type: ignore[arg-type]
