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
