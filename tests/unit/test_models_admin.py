"""Model administration helpers: the model table, listing rows, retrain progress and verdicts."""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest
from rich.console import Console

from loyal.errors import LoyalError, StepSkippedError
from loyal.settings import Settings
from pipelines.retrain import Stages, decisions_table, rebuild_bento, train_every_model
from training.models_admin import MODELS, VersionRow, model_spec, promotion_note, versions_table
from training.registry import PromotionDecision

pytestmark = pytest.mark.unit


def _decision(**changes: Any) -> PromotionDecision:
    base: dict[str, Any] = {
        "model_name": "churn",
        "metric": "roc_auc",
        "higher_is_better": True,
        "challenger_version": "3",
        "challenger_score": 0.61,
        "champion_version": "2",
        "champion_score": 0.65,
        "promoted": False,
        "forced": False,
        "outcome": "rejected",
        "reason": "",
        "holdout_run_id": "run",
        "holdout_rows": 100,
    }
    return PromotionDecision(**{**base, **changes})


def _render(renderable: Any) -> str:
    console = Console(record=True, width=160)
    console.print(renderable)
    return console.export_text()


def test_models_are_found_by_registered_or_command_name() -> None:
    assert model_spec("cross-sell") is model_spec("cross_sell") is MODELS["cross_sell"]
    assert list(MODELS) == ["churn", "cross_sell", "clv", "segments", "uplift", "acceptance"]
    with pytest.raises(LoyalError, match="churn, cross-sell, clv, segments, uplift, acceptance"):
        model_spec("tenure")


@pytest.mark.parametrize("name", ["churn", "cross_sell", "clv", "segments"])
def test_retrain_promotes_each_model_as_loyal_promote_does(
    name: str, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The spec's metric, direction and scorer are the ones the `loyal promote` path passes."""
    import training.registry
    from loyal.specs import promotion_for
    from pipelines.commands.churn import promote_churn
    from pipelines.commands.cross_sell import promote_cross_sell
    from pipelines.commands.value import promote_clv, promote_segments

    calls: list[dict[str, Any]] = []

    def capture(settings: Settings, model_name: str, metric: str, **kwargs: Any) -> None:
        calls.append({"model_name": model_name, "metric": metric, **kwargs})

    monkeypatch.setattr(training.registry, "promote", capture)
    promoters = {
        "churn": promote_churn,
        "cross_sell": promote_cross_sell,
        "clv": promote_clv,
        "segments": promote_segments,
        "acceptance": promotion_for("acceptance"),
    }
    promoters[name](settings, version="7")
    (call,) = calls
    spec = MODELS[name]
    assert call["model_name"] == spec.name
    assert call["metric"] == spec.promotion_metric
    assert call["higher_is_better"] == spec.higher_is_better
    scorer, ours = call.get("scorer"), spec.scorer()
    if scorer is None:  # the default: the named metric on the pyfunc's prediction column
        assert ours.__qualname__.startswith("metric_scorer")
    else:
        assert ours.__qualname__ == scorer.__qualname__
        assert ours.__module__ == scorer.__module__


def test_version_rows_render_with_champion_metric_and_reasons() -> None:
    created = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
    rows = [
        VersionRow("clv", 3, created, "abcdef123456", "mae", 4.12994, True, "won", "", ""),
        VersionRow("clv", 2, created, "0123456789ab", "mae", None, False, "forced", "drill",
                   "drill over"),
        VersionRow("clv", 1, created, "", "mae", 4.2, False, "", "", ""),
    ]  # fmt: skip
    text = _render(versions_table(rows))
    lines = [line for line in text.splitlines() if "│ clv" in line]
    assert "v3" in lines[0] and "abcdef12 " in lines[0] and "mae=4.1299" in lines[0]
    assert "2026-11-02 09:30" in lines[0] and "*" in lines[0]
    assert "*" not in lines[1] and "mae=" not in lines[1]
    assert promotion_note(rows[1]) == "forced; reason: drill; rolled back: drill over"
    assert promotion_note(rows[2]) == "not evaluated"


def test_decisions_table_shows_old_and_new_on_the_same_holdout() -> None:
    decisions = {
        "churn": _decision(),
        "clv": _decision(
            model_name="clv", metric="holdout_mae", higher_is_better=False,
            challenger_score=4.1, champion_score=4.8, promoted=True, outcome="won",
        ),
        "segments": _decision(
            model_name="segments", champion_version=None, champion_score=None, promoted=True,
            outcome="first",
        ),
    }  # fmt: skip
    lines = {
        line.split("│")[1].strip(): line
        for line in _render(decisions_table(decisions)).splitlines()
        if line.startswith("│")
    }
    assert [c.strip() for c in lines["churn"].split("│")[2:7]] == [
        "roc_auc ↑", "v2 0.6500", "v3 0.6100", "rejected", "v2",
    ]  # fmt: skip
    assert [c.strip() for c in lines["clv"].split("│")[2:7]] == [
        "holdout_mae ↓", "v2 4.8000", "v3 4.1000", "won", "v3",
    ]  # fmt: skip
    assert [c.strip() for c in lines["segments"].split("│")[3:7]] == [
        "none", "v3 0.6100", "first", "v3",
    ]  # fmt: skip


def test_stages_number_the_steps_and_time_them(capsys: pytest.CaptureFixture[str]) -> None:
    stages = Stages(total=2)
    assert stages.run("First", lambda: 41) + 1 == 42
    stages.run("Second", lambda: None)
    err = capsys.readouterr().err
    assert "[1/2] First ..." in err and "[2/2] Second ..." in err
    assert "[1/2] First: 0.0 s" in err
    assert list(stages.seconds) == ["First", "Second"]


def test_a_stage_started_beside_runs_while_the_next_stages_run(
    capsys: pytest.CaptureFixture[str],
) -> None:
    stages = Stages(total=2)
    features_running = threading.Event()

    def model() -> str:  # finishes only once the stage after it has started
        assert features_running.wait(timeout=10), "the stages ran one after the other"
        return "trained"

    with ThreadPoolExecutor(max_workers=1) as beside:
        started = stages.start_or_skip("Train model", model, beside)
        stages.run("Build features", features_running.set)
        assert started.result(timeout=10) == "trained"
    err = capsys.readouterr().err
    assert "[1/2] Train model (beside the next stages) ..." in err
    assert "[2/2] Build features ..." in err and "[1/2] Train model: " in err
    assert set(stages.seconds) == {"Train model", "Build features"}
    assert set(stages.cpu_seconds) == {"Build features"}  # a CPU share cannot be told apart


def test_a_skipped_stage_beside_gives_none_and_says_why(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def skipped() -> None:
        raise StepSkippedError("cross-sell: one product")

    with ThreadPoolExecutor(max_workers=1) as beside:
        assert Stages(total=1).start_or_skip("Train model", skipped, beside).result() is None
    assert "[1/1] Train model: skipped: cross-sell: one product" in capsys.readouterr().err


def _finished(result: Any = None, error: Exception | None = None) -> Future[Any]:
    future: Future[Any] = Future()
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)
    return future


def test_a_training_already_started_is_waited_for_not_run_again(settings: Settings) -> None:
    ran: list[str] = []

    def stage(title: str, step: Any) -> str:
        ran.append(title)
        return f"result of {title}"

    results = train_every_model(
        settings, lambda name: {}, stage, {"cross_sell": _finished("early result")}
    )
    assert results["cross_sell"] == "early result"
    assert "Train cross-sell" not in ran and "Train churn" in ran
    assert list(results) == list(MODELS)  # every model, in training order
    failed = {"cross_sell": _finished(error=RuntimeError("ALS diverged"))}
    with pytest.raises(RuntimeError, match="ALS diverged"):
        train_every_model(settings, lambda name: {}, stage, failed)


def test_a_failing_bento_build_is_reported_not_raised(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import pipelines.commands.serve

    def broken(settings: Settings, *args: Any) -> None:
        raise RuntimeError("bentoml: no space left")

    monkeypatch.setattr(pipelines.commands.serve, "build_bento", broken)
    tag, error = rebuild_bento(settings)
    assert tag is None and error == "RuntimeError: bentoml: no space left"
    err = capsys.readouterr().err
    assert "Bento not rebuilt" in err and "loyal bento build" in err
