"""Shared fixtures: isolated settings under a temporary home, never the developer's own data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from loyal.settings import Settings, get_settings, load_settings


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings whose every path lies under a fresh temporary folder."""
    for name in list(os.environ):
        if name.startswith("LOYAL_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    return load_settings(home=tmp_path)


@pytest.fixture(scope="session")
def feature_bank(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A small sample bank, ingested, with features built, registered and materialized.

    Session-scoped and read-only for tests: a test that changes the store must use its own copy.
    """
    from pipelines.features import apply_features, build_features, materialize_features
    from pipelines.generate import generate_sample_bank
    from pipelines.ingest import ingest_folder

    home = tmp_path_factory.mktemp("feature_bank")
    bank = load_settings(home=home)
    raw = generate_sample_bank(bank, customers=800, seed=11)
    ingest_folder(bank, raw)
    build_features(bank)
    apply_features(bank)
    materialize_features(bank)
    return bank


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The public datasets beside the checkout (../shared/data); tests skip when absent."""
    folder = Path(__file__).resolve().parents[2] / "shared" / "data"
    if not folder.is_dir():
        pytest.skip(f"public datasets not found at {folder}")
    return folder
