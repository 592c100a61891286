"""What the service needs from monitoring: where samples go and the champion's reference."""

from __future__ import annotations

import logging
from pathlib import Path

from loyal.settings import Settings
from monitoring.profile import Profile

log = logging.getLogger(__name__)


def monitoring_dir(settings: Settings) -> Path:
    """Where monitoring keeps its reports and the service's request samples."""
    return settings.paths.data_dir / "monitoring"


def champion_reference(settings: Settings, name: str = "churn") -> Profile | None:
    """The reference profile of a model's champion from MLflow (None, logged, when missing)."""
    from mlflow.tracking import MlflowClient

    from monitoring.reference import download_profile

    uri = settings.mlflow.tracking_uri
    try:
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        version = client.get_model_version_by_alias(name, "champion")
        run_id = version.run_id or (version.tags or {}).get("run_id")
        import mlflow

        mlflow.set_tracking_uri(uri)
        profile = download_profile(str(run_id)) if run_id else None
    except Exception as exc:  # no registry, no champion: monitoring waits, serving goes on
        log.warning("no reference profile for %s: %s", name, exc)
        return None
    if profile is None:
        log.warning("%s champion logged no reference profile: retrain it to monitor it", name)
    return profile
