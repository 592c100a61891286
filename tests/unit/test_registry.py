"""Promotion: the champion alias moves only when the challenger wins on the same holdout."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner, Result

from loyal.errors import LoyalError, NotReadyError
from loyal.logs import console
from loyal.settings import Settings, get_settings, load_settings
from training import tracking
from training.churn import train_from_frame
from training.registry import (
    CHAMPION,
    apply_decision,
    champion_version,
    decide,
    promote,
    rollback,
)

pytestmark = pytest.mark.unit

WEAK = {"max_rounds": 1, "max_depth": 1, "cv_folds": 2}
"""One stump: sees one of the two drivers, so it ranks clearly worse than the full model."""
STRONG = {"learning_rate": 0.2, "cv_folds": 3}


def _frame(n: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=n), rng.normal(size=n)
    return pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(n)],
            "calls_30d": a,
            "balance_trend": b,
            "churned": (a + b + 0.3 * rng.normal(size=n) > 0.8).astype(int),
        }
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A temporary SQLite MLflow store holding churn v1 (weak), v2 (strong), v3 (weak)."""
    home = tmp_path_factory.mktemp("registry")
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("LOYAL_"):
                patch.delenv(name)
        patch.chdir(home)
        get_settings.cache_clear()
        settings = load_settings(home=home)
        frame = _frame()
        for params in (WEAK, STRONG, WEAK):
            train_from_frame(
                frame,
                "churned",
                settings=settings,
                id_col="customer_id",
                search_trials=0,
                params=params,
                plots=False,
            )
        yield settings


def _crown(settings: Settings, version: str | None) -> None:
    registry = tracking.client(settings)
    if version is None:
        registry.delete_registered_model_alias("churn", CHAMPION)
    else:
        registry.set_registered_model_alias("churn", CHAMPION, version)


def _champion(settings: Settings) -> str | None:
    current = champion_version(tracking.client(settings), "churn")
    return None if current is None else str(current.version)


def test_store_lives_under_the_temporary_home(store: Settings) -> None:
    assert store.mlflow.tracking_uri.startswith("sqlite:///")
    assert Path(store.mlflow.tracking_uri.removeprefix("sqlite:///")).is_file()
    assert str(store.home) in store.mlflow.tracking_uri


def test_every_version_records_its_run_commit_and_data(store: Settings) -> None:
    version = tracking.client(store).get_model_version("churn", "1")
    assert version.tags["run_id"] == version.run_id
    assert version.tags[tracking.TAG_GIT_COMMIT] == tracking.git_commit()
    assert version.tags[tracking.TAG_SNAPSHOT]


def test_first_version_becomes_champion(store: Settings) -> None:
    if _champion(store) is not None:
        _crown(store, None)
    decision = promote(store, "churn", "roc_auc", version=1)
    assert decision.outcome == "first" and decision.promoted
    assert _champion(store) == "1"


def test_better_challenger_wins(store: Settings) -> None:
    _crown(store, "1")
    decision = promote(store, "churn", "roc_auc", version=2)
    assert decision.outcome == "won"
    assert decision.challenger_score > decision.champion_score  # type: ignore[operator]
    assert _champion(store) == "2"


def test_worse_challenger_is_refused_and_the_decision_tagged(store: Settings) -> None:
    _crown(store, "2")
    decision = promote(store, "churn", "roc_auc")  # latest version: v3, a weak model
    assert decision.challenger_version == "3"
    assert decision.outcome == "rejected" and not decision.promoted
    assert decision.champion_score > decision.challenger_score + 0.02  # type: ignore[operator]
    assert _champion(store) == "2"
    tags = tracking.client(store).get_model_version("churn", "3").tags
    assert tags["promotion.outcome"] == "rejected"
    assert float(tags["promotion.champion_score"]) == pytest.approx(decision.champion_score)
    assert "rejected" in decision.summary()


def test_a_version_its_training_marked_unfit_is_refused_even_when_it_wins(
    store: Settings,
) -> None:
    _crown(store, "1")
    registry = tracking.client(store)
    registry.set_model_version_tag("churn", "2", tracking.TAG_REFUSED, "one segment holds 99%")
    try:
        decision = promote(store, "churn", "roc_auc", version=2)
        assert decision.outcome == "refused" and not decision.promoted
        assert decision.reason == "one segment holds 99%"
        assert "refused (reason: one segment holds 99%)" in decision.summary()
        assert _champion(store) == "1"
        forced = promote(store, "churn", "roc_auc", version=2, force=True, reason="checked")
        assert forced.promoted and _champion(store) == "2"
    finally:
        registry.delete_model_version_tag("churn", "2", tracking.TAG_REFUSED)


def test_lower_is_better_metric_also_refuses_a_worse_challenger(store: Settings) -> None:
    _crown(store, "2")
    decision = promote(store, "churn", "brier", higher_is_better=False, version=3)
    assert decision.outcome == "rejected"
    assert _champion(store) == "2"


def test_force_needs_a_reason_is_logged_and_can_be_rolled_back(store: Settings) -> None:
    _crown(store, "2")
    with pytest.raises(LoyalError, match="reason"):
        promote(store, "churn", "roc_auc", version=3, force=True)
    decision = promote(store, "churn", "roc_auc", version=3, force=True, reason="drill")
    assert decision.outcome == "forced" and decision.forced
    assert _champion(store) == "3"
    tags = tracking.client(store).get_model_version("churn", "3").tags
    assert tags["promotion.forced"] == "true" and tags["promotion.reason"] == "drill"
    assert rollback(store, "churn", reason="drill over") == "2"
    assert _champion(store) == "2"


def test_time_split_training_reports_the_ground_truth_ceiling(store: Settings) -> None:
    rng = np.random.default_rng(5)
    months = pd.date_range("2025-01-01", periods=8, freq="MS")
    frames = []
    for month in months:
        frame = _frame(n=300, seed=int(rng.integers(1_000_000)))
        frame["event_timestamp"] = month
        frame["p_true"] = 1 / (1 + np.exp(-3 * (frame["calls_30d"] + frame["balance_trend"] - 0.8)))
        frames.append(frame)
    result = train_from_frame(
        pd.concat(frames, ignore_index=True),
        "churned",
        "event_timestamp",
        settings=store,
        id_col="customer_id",
        oracle_col="p_true",
        horizon_days=60,
        search_trials=2,
        params=STRONG,
        register=False,
        plots=False,
    )
    assert result.split.kind == "time" and result.model_version is None
    assert result.split.description["test_snapshot"] == "2025-08-01"
    assert len(result.model.boosters_) == 1  # early-stopped and calibrated on the later month
    assert {"oracle_roc_auc", "roc_auc_gap"} <= set(result.metrics)
    assert "p_true" not in result.model.feature_names_in_
    assert result.metrics["roc_auc"] > 0.85


# --- promotion by hand, rollback and the model list, through the `loyal` CLI ------------------


def _loyal(settings: Settings, monkeypatch: pytest.MonkeyPatch, *args: str) -> Result:
    """Run `loyal ARGS` (the real app) on the store's home."""
    from pipelines.cli import app

    monkeypatch.setenv("LOYAL_HOME", str(settings.home))
    monkeypatch.setenv("COLUMNS", "200")
    # rich fixes a console's width when it is created, from whatever COLUMNS said then
    monkeypatch.setattr(console, "_width", 200)
    monkeypatch.chdir(settings.home)
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(app, list(args))
    finally:
        get_settings.cache_clear()


def test_cli_promote_by_hand_needs_a_reason_with_force_and_records_it(
    store: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    _crown(store, "2")
    refused = _loyal(store, monkeypatch, "promote", "churn", "--version", "3", "--force")
    assert isinstance(refused.exception, LoyalError) and "--reason" in str(refused.exception)
    assert _champion(store) == "2"
    result = _loyal(
        store, monkeypatch, "promote", "churn", "--version", "3", "--force", "--reason", "audit"
    )
    assert result.exit_code == 0, result.output
    assert "promoted by force (reason: audit)" in result.output
    assert _champion(store) == "3"
    tags = tracking.client(store).get_model_version("churn", "3").tags
    assert tags["promotion.outcome"] == "forced" and tags["promotion.reason"] == "audit"
    assert tags["promotion.previous_champion"] == "2"


def test_cli_promote_a_version_that_does_not_exist(
    store: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _loyal(store, monkeypatch, "promote", "churn", "--version", "99")
    assert isinstance(result.exception, NotReadyError)
    assert "no version 99" in str(result.exception)


def test_cli_rollback_needs_a_reason_and_tags_the_demoted_version(
    store: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    _crown(store, "2")
    promote(store, "churn", "roc_auc", version=3, force=True, reason="drill")
    missing = _loyal(store, monkeypatch, "rollback", "churn")
    assert missing.exit_code == 2 and "--reason" in missing.output
    assert _champion(store) == "3"
    with pytest.raises(LoyalError, match="reason"):
        rollback(store, "churn", reason="  ")
    result = _loyal(store, monkeypatch, "rollback", "churn", "--reason", "bad lift in week 1")
    assert result.exit_code == 0, result.output
    assert "v2 is champion again" in result.output
    assert _champion(store) == "2"
    tags = tracking.client(store).get_model_version("churn", "3").tags
    assert tags["promotion.rolled_back_to"] == "2"
    assert tags["promotion.rollback_reason"] == "bad lift in week 1"
    assert tags["promotion.rolled_back_at"]


def test_rollback_of_a_first_champion_is_refused(store: Settings) -> None:
    _crown(store, "1")
    assert (
        "promotion.previous_champion"
        not in tracking.client(store).get_model_version("churn", "1").tags
    )  # v1 was the first champion
    with pytest.raises(NotReadyError, match="replaced no earlier champion"):
        rollback(store, "churn", reason="nothing to go back to")
    assert _champion(store) == "1"


def test_cli_models_lists_versions_metrics_champion_and_reasons(
    store: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    _crown(store, "2")
    promote(store, "churn", "roc_auc", version=3, force=True, reason="canary")
    rollback(store, "churn", reason="canary failed")
    result = _loyal(store, monkeypatch, "models")
    assert result.exit_code == 0, result.output
    lines = {line.split("│")[2].strip(): line for line in result.output.splitlines() if "│" in line}
    assert set(lines) == {"v1", "v2", "v3"}
    assert "*" in lines["v2"] and "*" not in lines["v1"] + lines["v3"]
    run_v2 = tracking.client(store).get_model_version("churn", "2").run_id
    assert str(run_v2)[:8] in lines["v2"]
    assert "test_roc_auc=0." in lines["v2"]
    assert "forced; reason: canary; rolled back: canary failed" in lines["v3"]
    newest = _loyal(store, monkeypatch, "models", "churn", "--limit", "1")
    shown = [line for line in newest.output.splitlines() if "│ churn" in line]
    assert [line.split("│")[2].strip() for line in shown] == ["v3", "v2"]  # + the champion


def test_cli_models_rejects_an_unknown_model(
    store: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _loyal(store, monkeypatch, "models", "tenure")
    assert isinstance(result.exception, LoyalError)
    assert "cross-sell" in str(result.exception)


def test_a_decision_is_not_applied_when_the_champion_moved_meanwhile(store: Settings) -> None:
    _crown(store, "2")
    decision = decide(store, "churn", "roc_auc", version=3, force=True, reason="late")
    assert decision.promoted and decision.champion_version == "2"
    assert _champion(store) == "2"  # deciding writes nothing
    _crown(store, "1")
    with pytest.raises(LoyalError, match="changed from v2 to v1"):
        apply_decision(store, decision)
    assert _champion(store) == "1"
