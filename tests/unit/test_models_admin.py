"""Model administration helpers: the model table, listing rows, retrain progress and verdicts."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from typing import Any

import pytest
from rich.console import Console

from loyal.errors import LoyalError, StepSkippedError
from loyal.settings import Settings
from pipelines.retrain import RetrainOptions, Stages, Trainings, decisions_table, rebuild_bento
from pipelines.stages import Stage
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


class FakeTrainings:
    """Training stages that record when they start and end, for `Trainings`."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.lock = threading.Lock()
        self.features_built = threading.Event()
        self.beside = threading.Event()  # set by a training that reads no features

    def note(self, event: str) -> None:
        with self.lock:
            self.events.append(event)

    def stage(self, name: str, *, features: bool = True, after: tuple[str, ...] = (),
              seconds: float = 0.0, fails: bool = False, skips: bool = False) -> Stage:  # fmt: skip
        def step(settings: Settings) -> str:
            self.note(f"start {name}")
            if features:
                assert self.features_built.is_set(), f"{name} started before the features"
            else:
                self.beside.set()
            time.sleep(seconds)
            if fails:
                raise RuntimeError(f"{name} failed")
            if skips:
                raise StepSkippedError(f"{name}: nothing to learn from")
            self.note(f"end {name}")
            return f"{name} v2"

        return Stage(f"Train {name}", step, name, features, after)

    def train(self, monkeypatch: pytest.MonkeyPatch, settings: Settings, lanes: int,
              stages: list[Stage]) -> dict[str, Any]:  # fmt: skip
        import pipelines.stages

        monkeypatch.setattr(pipelines.stages, "training_stages", lambda options: list(stages))
        progress = Stages(total=len(stages) + 1)
        with Trainings(settings, RetrainOptions(lanes=lanes), progress) as trainings:
            if lanes > 1:
                trainings.start(only=lambda training: not training.reads_features)
            beside = lanes > 1 and any(not stage.reads_features for stage in stages)
            progress.run("Build features", partial(self.build_features, beside))
            trainings.start()
            return trainings.results()

    def build_features(self, beside: bool) -> None:
        if beside:  # the model that reads no features has started: it runs beside the build
            assert self.beside.wait(timeout=10), "nothing was trained beside the features"
        self.note("features")
        self.features_built.set()


def test_two_lanes_train_a_model_beside_the_features_and_keep_each_after_its_inputs(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeTrainings()
    stages = [
        fake.stage("churn", seconds=0.3),
        fake.stage("cross_sell", features=False, seconds=0.2),
        fake.stage("clv", seconds=0.1),
        fake.stage("segments", after=("clv",)),
        fake.stage("uplift", skips=True),
    ]
    results = fake.train(monkeypatch, settings, 2, stages)
    assert list(results) == ["churn", "cross_sell", "clv", "segments"]  # skipped: left out
    events = fake.events
    assert (
        events.index("start cross_sell") < events.index("features") < events.index("end cross_sell")
    )  # cross-sell reads no features: it ran while they were built
    assert events.index("end clv") < events.index("start segments")
    assert events.index("start clv") < events.index("end churn")  # churn and CLV side by side


def test_one_lane_trains_in_the_specs_order_after_the_features(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeTrainings()
    stages = [
        fake.stage("churn"),
        fake.stage("cross_sell", features=False),
        fake.stage("clv"),
    ]
    fake.train(monkeypatch, settings, 1, stages)
    assert fake.events == [
        "features", "start churn", "end churn", "start cross_sell", "end cross_sell",
        "start clv", "end clv",
    ]  # fmt: skip


@pytest.mark.parametrize("lanes", [1, 2])
def test_a_failed_training_is_raised_and_stops_the_ones_not_started(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, lanes: int
) -> None:
    fake = FakeTrainings()
    stages = [
        fake.stage("churn", fails=True),
        fake.stage("clv", seconds=0.2),
        fake.stage("segments", after=("clv",)),
    ]
    with pytest.raises(RuntimeError, match="churn failed"):
        fake.train(monkeypatch, settings, lanes, stages)
    assert "start segments" not in fake.events  # started after the failure: never


def test_stages_side_by_side_keep_their_wall_time_but_no_cpu_time() -> None:
    stages = Stages(total=2)
    inside = threading.Event()

    def first() -> None:
        inside.set()
        time.sleep(0.2)

    with ThreadPoolExecutor(max_workers=1) as beside:
        running = beside.submit(stages.run, "First", first)
        assert inside.wait(timeout=10)
        stages.run("Second", lambda: None)
        running.result()
    stages.run("Third", lambda: None)
    assert set(stages.seconds) == {"First", "Second", "Third"}
    assert set(stages.cpu_seconds) == {"Third"}


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


def test_the_retrain_makes_idle_openmp_threads_sleep_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import os

    from pipelines.commands.admin import sleeping_openmp_threads

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    sleeping_openmp_threads()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    sleeping_openmp_threads()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
