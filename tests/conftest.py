"""Shared fixtures: isolated settings under a temporary home, never the developer's own data."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from business_flow import (
    CDNOW_HOLDOUT_WEEKS,
    BusinessHome,
    no_loyal_environment,
    run_business_flow,
    write_retail_sample,
)

from loyal.settings import Settings, get_settings, load_settings


def pytest_configure(config: pytest.Config) -> None:
    """Give the suite Python's Ctrl-C handler even when started with SIGINT ignored.

    A shell without job control starts background commands with SIGINT ignored; Python then
    installs no KeyboardInterrupt handler, and the subprocesses of the Ctrl-C tests inherit the
    ignored signal. A handled signal is reset to its default in the subprocesses instead.
    """
    signal.signal(signal.SIGINT, signal.default_int_handler)


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
    from pipelines.ingest import ingest_folder
    from samplebank.generate import generate_sample_bank

    home = tmp_path_factory.mktemp("feature_bank")
    bank = load_settings(home=home)
    raw = generate_sample_bank(bank, bank.generate.overridden(customers=800, seed=11))
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


# ------------------------------------------------------------------ any business, end to end
@pytest.fixture(scope="session")
def scored_retail_home(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> BusinessHome:
    """A retailer's home: an Online Retail sample through the whole flow, scored.

    About 1,100 customers (every 4th id), 12 months, 2,900 product codes, no categories,
    margins, consent, channels, balances or interactions. Churn, cross-sell, CLV and segments
    are trained and promoted, every customer is scored and online, the churn list and the
    report are written. Read-only for tests (e.g. a serving test asking for a retail NBA).
    """
    with no_loyal_environment():
        sample = write_retail_sample(
            shared_data / "online_retail" / "online_retail.csv.gz",
            tmp_path_factory.mktemp("retail_source"),
        )
        settings = load_settings(home=tmp_path_factory.mktemp("retail_home"))
        return run_business_flow(settings, sample, "online-retail")


@pytest.fixture(scope="session")
def scored_cdnow_home(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> BusinessHome:
    """A music store's home: the CDNOW 2,357-customer sample through the whole flow.

    One product, no categories, margins, consent, channels, balances or interactions; the CLV
    holdout is the papers' 39 weeks. Cross-sell is skipped (one product), the rest runs.
    """
    with no_loyal_environment():
        settings = load_settings(
            home=tmp_path_factory.mktemp("cdnow_home"),
            clv={"holdout_weeks": CDNOW_HOLDOUT_WEEKS},
        )
        return run_business_flow(settings, shared_data / "cdnow", "cdnow-sample")
