"""Settings: defaults under home, file values, environment overrides and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from loyal.errors import ConfigError
from loyal.settings import load_settings

pytestmark = pytest.mark.unit


def test_embedded_defaults_live_under_home(settings) -> None:
    assert settings.profile == "embedded"
    assert settings.paths.data_dir == settings.home / "data"
    assert settings.mlflow.tracking_uri == f"sqlite:///{settings.home}/mlflow/mlflow.db"
    assert settings.feast.online_store == "sqlite"


def test_config_file_sets_home_and_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "loyal.yaml").write_text("snapshots:\n  horizon_days: 30\npaths:\n  data_dir: d\n")
    monkeypatch.setenv("LOYAL_CONFIG", str(project / "loyal.yaml"))
    loaded = load_settings()
    assert loaded.snapshots.horizon_days == 30
    assert loaded.paths.data_dir == project / "d"


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "loyal.yaml").write_text("feast:\n  online_store: sqlite\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LOYAL_FEAST__ONLINE_STORE", "redis")
    monkeypatch.setenv("LOYAL_GENERATE__CUSTOMERS", "123")
    loaded = load_settings()
    assert loaded.feast.online_store == "redis"
    assert loaded.generate.customers == 123


@pytest.mark.parametrize(
    ("content", "named"),
    [
        ("tiers:\n  platinum: 0.3\n  gold: 0.2\n  iron: 0.5\n", "tiers"),
        ("feast:\n  online_store: cassandra\n", "feast.online_store"),
        ("snapshots:\n  horizon_days: -5\n", "snapshots.horizon_days"),
        ("unknown_section: 1\n", "unknown_section"),
    ],
)
def test_invalid_values_name_the_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str, named: str
) -> None:
    (tmp_path / "loyal.yaml").write_text(content)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_settings()


def test_missing_explicit_config_file_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOYAL_CONFIG", str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError, match=r"nope\.yaml"):
        load_settings()


def test_compute_engine_defaults_to_local_and_rejects_a_bad_scheduler(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_settings().compute.engine == "local"
    monkeypatch.setenv("LOYAL_COMPUTE__ENGINE", "dask")
    monkeypatch.setenv("LOYAL_COMPUTE__SCHEDULER", "scheduler-host")
    with pytest.raises(ConfigError, match=r"compute\.scheduler"):
        load_settings()
