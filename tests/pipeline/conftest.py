"""Pipeline fixtures: a small sample bank with churn and cross-sell trained, registered, promoted.

`trained_bank_home` (Settings) is what other pipeline or service tests reuse: features built,
registered in Feast and materialized; `churn` and `cross_sell` each have a champion version in
the home's MLflow store; batch recommendations are written under `data/scores`. Session-scoped
and read-only for the data; tests may register more (rejected) challenger versions, so load
models by the `champion` alias, never as "the latest version".
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

from loyal.settings import Settings, load_settings

if TYPE_CHECKING:
    from training.churn import TrainResult
    from training.cross_sell import CrossSellResult
    from training.registry import PromotionDecision

BANK_CUSTOMERS = 2_000
BANK_SEED = 7
CHURN_TRIALS = 3
CROSS_SELL_TRIALS = 3


@dataclass(frozen=True)
class TrainedBank:
    """What the trained-bank fixture produced, for tests that check the training itself.

    Attributes:
        settings: the bank's home.
        churn: the first churn training result.
        churn_promotion: its promotion decision (the first champion).
        cross_sell: the cross-sell training result, with the batch recommendations.
        cross_sell_promotion: its promotion decision (the first champion).
    """

    settings: Settings
    churn: TrainResult
    churn_promotion: PromotionDecision
    cross_sell: CrossSellResult
    cross_sell_promotion: PromotionDecision


@pytest.fixture(scope="session")
def _clean_environment() -> Iterator[None]:
    """No LOYAL_ variable of the developer's shell leaks into the session's settings."""
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("LOYAL_"):
                patch.delenv(name)
        yield


@pytest.fixture(scope="session")
def bank_home(tmp_path_factory: pytest.TempPathFactory, _clean_environment: None) -> Settings:
    """A 2,000-customer sample bank, ingested, featurized, registered in Feast, materialized."""
    from pipelines.features import apply_features, build_features, materialize_features
    from pipelines.ingest import ingest_folder
    from samplebank.generate import generate_sample_bank

    home = tmp_path_factory.mktemp("trained_bank")
    settings = load_settings(home=home)
    bank = settings.generate.overridden(customers=BANK_CUSTOMERS, seed=BANK_SEED)
    raw = generate_sample_bank(settings, bank)
    ingest_folder(settings, raw)
    build_features(settings)
    apply_features(settings)
    materialize_features(settings)
    return settings


@pytest.fixture(scope="session")
def trained_bank(bank_home: Settings) -> TrainedBank:
    """Churn and cross-sell trained on the bank with small search budgets, then promoted."""
    from pipelines.commands.churn import promote_churn, train_churn
    from pipelines.commands.cross_sell import promote_cross_sell, train_cross_sell_command

    churn = train_churn(bank_home, search_trials=CHURN_TRIALS, search_timeout=60.0)
    churn_promotion = promote_churn(bank_home)
    cross_sell = train_cross_sell_command(bank_home, trials=CROSS_SELL_TRIALS)
    cross_sell_promotion = promote_cross_sell(bank_home)
    return TrainedBank(bank_home, churn, churn_promotion, cross_sell, cross_sell_promotion)


@pytest.fixture(scope="session")
def trained_bank_home(trained_bank: TrainedBank) -> Settings:
    """Settings of a small sample bank whose churn and cross_sell have champions."""
    return trained_bank.settings


@pytest.fixture(scope="session")
def scored_bank_home(trained_bank: TrainedBank) -> Settings:
    """The trained bank with CLV and segments promoted too and every customer scored.

    `data/scores/scores.parquet` holds tier, segment, CLV and churn probability for every
    customer of the latest snapshot, and the scores view is online. Read-only for tests.
    """
    from pipelines.commands.value import train_and_promote_value
    from pipelines.scores import publish_scores

    settings = trained_bank.settings
    train_and_promote_value(settings)
    publish_scores(settings)
    return settings
