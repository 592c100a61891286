"""`loyal models` read straight from the SQLite registry says what MLflow's client says."""

from __future__ import annotations

import math

import pytest

from loyal.settings import Settings
from training import models_admin, registry_sql
from training.models_admin import MODELS

pytestmark = pytest.mark.unit


def _fill_registry(settings: Settings) -> None:
    """Churn: five versions (one deleted, the champion an old one, one metric NaN, one run gone);
    CLV: one version without a run; cross-sell and segments: nothing."""
    import mlflow
    from training import tracking

    client = tracking.client(settings)
    experiment = tracking.configure(settings)
    client.create_registered_model("churn")
    runs = []
    for i, auc in enumerate([0.61, 0.65, math.nan, 0.66, 0.67]):
        run = client.create_run(experiment)
        client.log_metric(run.info.run_id, "test_roc_auc", auc)
        client.set_terminated(run.info.run_id)
        runs.append(run.info.run_id)
        version = client.create_model_version(
            "churn", f"runs:/{run.info.run_id}/m", run.info.run_id
        )
        if i == 1:
            client.set_model_version_tag("churn", version.version, "promotion.outcome", "won")
            client.set_model_version_tag("churn", version.version, "promotion.reason", "fine")
        if i == 0:
            client.set_model_version_tag("churn", version.version, "promotion.rolled_back_at", "x")
            client.set_model_version_tag(
                "churn", version.version, "promotion.rollback_reason", "bad lift"
            )
    client.set_registered_model_alias("churn", "champion", "2")
    client.delete_model_version("churn", "5")
    client.delete_run(runs[3])
    client.create_registered_model("clv")
    client.create_model_version("clv", "file:///nowhere", tags={"run_id": "0" * 32})
    mlflow.set_tracking_uri(settings.mlflow.tracking_uri)


@pytest.mark.parametrize("limit", [None, 1, 2])
def test_direct_read_equals_mlflow(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, limit: int | None
) -> None:
    _fill_registry(settings)
    direct = models_admin.list_versions(settings, limit=limit)
    specs = list(MODELS.values())
    assert registry_sql.read_versions(settings.mlflow.tracking_uri, specs, limit) == direct
    monkeypatch.setattr(registry_sql, "read_versions", lambda *args: None)
    through_mlflow = models_admin.list_versions(settings, limit=limit)
    assert [r.version for r in direct if r.model == "churn"][:1] == [4]
    assert any(r.champion for r in direct)
    assert len(direct) == len(through_mlflow)
    for mine, theirs in zip(direct, through_mlflow, strict=True):
        assert mine.__dict__.keys() == theirs.__dict__.keys()
        for key, value in mine.__dict__.items():
            other = theirs.__dict__[key]
            if isinstance(value, float) and math.isnan(value):
                assert math.isnan(other)
            else:
                assert value == other, key


def test_anything_but_an_existing_sqlite_file_goes_through_mlflow(settings: Settings) -> None:
    specs = list(MODELS.values())
    assert registry_sql.read_versions("postgresql://db/mlflow", specs, None) is None
    assert registry_sql.read_versions("sqlite:////nowhere/mlflow.db", specs, None) is None
    (settings.home / "empty.db").write_bytes(b"")
    assert registry_sql.read_versions(f"sqlite:///{settings.home}/empty.db", specs, None) is None
