"""`loyal pipeline retrain`: rebuild features, retrain every model, promote the winners.

The order makes an interruption safe. Features are rebuilt in a staging folder and swapped in
whole. Every model is trained and registered as a new version, and every promotion decided
(challenger vs champion on the challenger's holdout), before any `champion` alias moves: an
interrupted run leaves new, unpromoted versions behind and the champions, scores and batch
recommendations exactly as they were. Only then are the winners promoted (one alias write
per model), the scores republished (written to a temporary file, then renamed) and the Bento
rebuilt. Data generation and ingestion are not part of it: it retrains on the loaded data.

The trainings run on two lanes (threads): a model starts as soon as what it reads is there
and a lane is free. Cross-sell learns from the contract's purchase log alone
(`ModelSpec.trains_on_features=False`), so it trains while the features are rebuilt; the
others start once the features are in, churn on one lane while CLV, the need segments (after
CLV: `ModelSpec.after`), uplift and acceptance follow each other on the other. The fits release
Python's lock (XGBoost, implicit, NumPy, DuckDB), so the two lanes share both cores. Every
new version is still decided before any alias moves; peak memory is that of two trainings
together. `RetrainOptions(lanes=1)` (`loyal pipeline retrain --sequential`) runs everything
in turn, in the specs' order.
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar, cast

from loyal.errors import StepSkippedError
from loyal.logs import console
from loyal.settings import Settings

if TYPE_CHECKING:
    from rich.table import Table

    from pipelines.stages import Stage
    from training.registry import PromotionDecision

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class RetrainOptions:
    """Budgets and switches of a retrain.

    Attributes:
        churn_trials: Optuna trials of the churn search.
        churn_timeout: seconds after which the churn search starts no new trial.
        cross_sell_trials: ALS settings tried by the cross-sell search.
        churn_params: fixed `ChurnModel` parameters the churn search starts from (e.g. a
            deliberately small model, to see a worse challenger refused).
        bento: rebuild the Bento after promotion.
        lanes: trainings run side by side (1: everything in turn, in the specs' order).
    """

    churn_trials: int | None = None
    churn_timeout: float | None = None
    cross_sell_trials: int | None = None
    churn_params: Mapping[str, Any] | None = None
    bento: bool = True
    lanes: int = 2

    def for_model(self, name: str) -> dict[str, Any]:
        """Keyword options of a model's `train` (its spec's): the budgets given (None: the
        model's `loyal.yaml` section decides)."""
        budgets: dict[str, dict[str, Any]] = {
            "churn": {
                "search_trials": self.churn_trials,
                "search_timeout": self.churn_timeout,
                "params": self.churn_params,
            },
            "cross_sell": {"trials": self.cross_sell_trials},
        }
        return {k: v for k, v in budgets.get(name, {}).items() if v is not None}


@dataclass(frozen=True)
class RetrainReport:
    """What a retrain did.

    Attributes:
        decisions: promotion decision per registered model, in training order.
        seconds: wall time per stage title.
        cpu_seconds: CPU time of this process (all its threads) per stage title; a stage
            run beside others has none (their CPU time cannot be told apart).
        scored_customers: rows of the republished scores table.
        bento: the built Bento's tag (None when skipped or failed).
        bento_error: why the Bento was not built, when it failed.
    """

    decisions: dict[str, PromotionDecision]
    seconds: dict[str, float] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    scored_customers: int = 0
    bento: str | None = None
    bento_error: str | None = None


class Stages:
    """Numbered stages on the console, each with its elapsed and CPU seconds.

    CPU seconds do not depend on what else runs on the machine, wall seconds do. Stages may
    run side by side (thread-safe); the process's CPU time cannot be split between them, so a
    stage that overlapped another records wall seconds only."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.seconds: dict[str, float] = {}
        self.cpu_seconds: dict[str, float] = {}
        self._lock = threading.Lock()
        self._running = 0
        self._starts = 0

    def run(self, title: str, step: Callable[[], T]) -> T:
        """Run one stage, announcing it and its wall time."""
        return cast(T, self._run(title, step, skippable=False))

    def run_or_skip(self, title: str, step: Callable[[], T]) -> T | None:
        """Run one stage; a `StepSkippedError` is printed as one line and gives None."""
        return self._run(title, step, skippable=True)

    def _run(self, title: str, step: Callable[[], T], skippable: bool) -> T | None:
        with self._lock:
            self.done += 1
            label = f"[{self.done}/{self.total}] {title}"
            alone = self._running == 0
            self._running += 1
            self._starts += 1
            starts = self._starts
        console.print(f"{label} ...", markup=False, highlight=False)
        started, cpu = time.perf_counter(), time.process_time()
        try:
            result = step()
        except StepSkippedError as skipped:
            if not skippable:
                raise
            console.print(f"{label}: skipped: {skipped}", markup=False, highlight=False)
            return None
        finally:
            with self._lock:
                self._running -= 1
                self.seconds[title] = time.perf_counter() - started
                if alone and self._starts == starts:  # nothing ran beside it
                    self.cpu_seconds[title] = time.process_time() - cpu
        spent = f" (CPU {self.cpu_seconds[title]:.1f} s)" if title in self.cpu_seconds else ""
        console.print(f"{label}: {self.seconds[title]:.1f} s{spent}", markup=False, highlight=False)
        return result


class Trainings:
    """Model trainings on lanes: each starts once the models it reads (`ModelSpec.after`)
    are trained and a lane is free; after a failure, none starts any more.

    Use as a context manager: leaving on an error stops the trainings not yet started and
    waits for the running ones to end; leaving on Ctrl+C (or `SystemExit`) does not wait.
    On Ctrl+C with a lane still training, the process ends at once with status 130, as a kill
    would end it: left to the interpreter's shutdown, a lane inside native code (XGBoost's,
    DuckDB's) is unwound by a forced thread exit that their C++ catch blocks do not rethrow,
    and the process aborts ("FATAL: exception not rethrown", status -6; seen once in CI).
    """

    def __init__(self, settings: Settings, options: RetrainOptions, stages: Stages) -> None:
        from pipelines.stages import training_stages

        self.settings, self.stages = settings, stages
        self.pending = training_stages(options.for_model)
        self.order = [str(training.model) for training in self.pending]
        self.running: dict[str, Future[Any]] = {}
        self.stopped = threading.Event()
        self.inline = options.lanes <= 1
        self.lanes = _Lanes(0 if self.inline else options.lanes)

    def __enter__(self) -> Trainings:
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        if kind is not None:
            self.stopped.set()
        interrupted = kind is not None and not issubclass(kind, Exception)
        self.lanes.close(cancel=kind is not None, wait=not interrupted)
        if kind is not None and issubclass(kind, KeyboardInterrupt) and self.lanes.busy():
            _exit_now(INTERRUPTED_STATUS)

    def start(self, only: Callable[[Stage], bool] = lambda stage: True) -> None:
        """Start the trainings (in the specs' order) that `only` picks; in turn with one
        lane, here and now."""
        for training in [t for t in self.pending if only(t)]:
            self.pending.remove(training)
            model = str(training.model)
            after = [self.running[name] for name in training.after if name in self.running]
            if self.inline:
                self.running[model] = _done(self._train, training, after)
            else:
                self.running[model] = self.lanes.submit(self._train, training, after)

    def results(self) -> dict[str, Any]:
        """Every started training's result, in the specs' order (skipped ones left out).

        Raises:
            The first failure in the specs' order (not the trainings it kept from starting).
        """
        started = [model for model in self.order if model in self.running]
        for model in started:
            failure = self.running[model].exception()
            if failure is not None and not isinstance(failure, _NotStartedError):
                raise failure
        results = {}
        for model in started:
            result = self.running[model].result()
            if result is not None:
                results[model] = result
        return results

    def _train(self, training: Stage, after: list[Future[Any]]) -> Any:
        for earlier in after:
            earlier.result()  # a failed prerequisite fails this one too
        if self.stopped.is_set():
            raise _NotStartedError(f"{training.title}: not started, another training failed")
        try:
            return self.stages.run_or_skip(training.title, partial(training.step, self.settings))
        except Exception:
            self.stopped.set()
            raise


INTERRUPTED_STATUS = 130
"""Exit status after Ctrl+C (128 + SIGINT), as the CLI's."""


def _exit_now(status: int) -> None:
    """Say so, flush, and end the process without the interpreter's shutdown (see `Trainings`).

    Nothing durable is lost: every table is staged and swapped in whole, and registry aliases
    move only after every training; a training cut short leaves what a kill leaves.
    """
    console.print("interrupted; nothing half-written is kept", markup=False, highlight=False)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(status)


class _Lanes:
    """A fixed number of daemon threads taking calls from one queue, first in, first out."""

    def __init__(self, count: int) -> None:
        self.calls: queue.SimpleQueue[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]
                                      | None] = queue.SimpleQueue()  # fmt: skip
        self.threads = [
            threading.Thread(target=self._work, name=f"loyal-lane-{i}", daemon=True)
            for i in range(count)
        ]
        for thread in self.threads:
            thread.start()

    def submit(self, function: Callable[..., T], *args: Any) -> Future[T]:
        """Queue `function(*args)`; its result or exception comes from the future."""
        future: Future[T] = Future()
        self.calls.put((future, function, args))
        return future

    def busy(self) -> bool:
        """Whether a lane thread is still alive (it may be inside a call)."""
        return any(thread.is_alive() for thread in self.threads)

    def close(self, cancel: bool, wait: bool) -> None:
        """No more calls: cancel the queued ones (with `cancel`), then let the threads end
        (waiting for the running calls with `wait`)."""
        while cancel and not self.calls.empty():
            call = self.calls.get_nowait()
            if call is not None:
                call[0].cancel()
        for _ in self.threads:
            self.calls.put(None)
        if wait:
            for thread in self.threads:
                thread.join()

    def _work(self) -> None:
        while (call := self.calls.get()) is not None:
            future, function, args = call
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(function(*args))
            except BaseException as exc:  # handed to whoever waits for the future
                future.set_exception(exc)


class _NotStartedError(Exception):
    """A training not started because another one failed."""


def _done(function: Callable[..., T], *args: Any) -> Future[T]:
    """A future already holding `function(*args)` (or its exception)."""
    future: Future[T] = Future()
    try:
        future.set_result(function(*args))
    except Exception as exc:
        future.set_exception(exc)
    return future


def retrain(settings: Settings, options: RetrainOptions | None = None) -> RetrainReport:
    """Rebuild features, train every model, decide, promote the winners, rescore, rebuild.

    Args:
        settings: the loaded data, feature store, MLflow and scores folder.
        options: budgets and switches (default `RetrainOptions()`).

    Returns:
        The decisions, stage times, scored customers and the Bento tag; the old-vs-new table
        is printed too.

    Raises:
        NotReadyError: nothing loaded yet (run `loyal ingest` or `make run` first).
    """
    options = options or RetrainOptions()
    from loyal.specs import MODELS

    # features (3), one training per model, compare, promote, rescore, and the Bento
    stages = Stages(total=3 + len(MODELS) + 3 + int(options.bento))
    started, cpu = time.perf_counter(), time.process_time()
    versions, results = _train_all(settings, options, stages)
    decisions = stages.run("Compare every challenger with its champion",
                           lambda: decide_all(settings, versions))  # fmt: skip
    stages.run("Promote the winners", lambda: promote_winners(settings, decisions, results))
    scores = stages.run("Republish the scores", lambda: _rescore(settings))
    tag, error = None, None
    if options.bento:
        tag, error = stages.run("Rebuild the Bento", lambda: rebuild_bento(settings))
    console.print(decisions_table(decisions))
    console.print(
        f"Retrained in {time.perf_counter() - started:.1f} s "
        f"(CPU {time.process_time() - cpu:.1f} s in this process)",
        highlight=False,
    )
    return RetrainReport(decisions, stages.seconds, stages.cpu_seconds, scores, tag, error)


def _refresh_features(settings: Settings, stages: Stages) -> None:
    from features.tables_io import recover_folder
    from pipelines.stages import feature_stages

    recover_folder(settings.paths.features_dir)  # a swap cut short by an earlier kill
    for stage in feature_stages("Rebuild"):
        stages.run(stage.title, partial(stage.step, settings))


def _train_all(
    settings: Settings, options: RetrainOptions, stages: Stages
) -> tuple[dict[str, str], dict[str, Any]]:
    """Rebuild the features, and train and register a new version of every model on the
    lanes; no alias moves.

    A model the data cannot support is skipped with its reason (`StepSkippedError`): it gets
    no new version and its champion, if any, stays.

    Returns:
        The new version per registered model, and the training results of those trained
        (what a spec's `on_promoted` publishes, e.g. cross-sell's batch recommendations).
    """
    with Trainings(settings, options, stages) as trainings:
        if not trainings.inline:  # inline (one lane): the features, then each model in order
            trainings.start(only=lambda training: not training.reads_features)
        _refresh_features(settings, stages)
        trainings.start()
        results = trainings.results()
    versions = {name: str(result.model_version) for name, result in results.items()}
    log.info("new versions: %s", versions)
    return versions, results


def decide_all(settings: Settings, versions: Mapping[str, str]) -> dict[str, PromotionDecision]:
    """Each new version against its champion, on its own holdout; nothing is written."""
    from loyal.specs import model_spec
    from training.registry import decide

    decisions = {}
    for name, version in versions.items():
        spec = model_spec(name)
        started = time.perf_counter()
        decisions[name] = decide(
            settings, spec.name, spec.promotion_metric, spec.higher_is_better, version,
            scorer=spec.scorer(),
        )  # fmt: skip
        log.info(
            "%s: challenger and champion scored in %.1f s", name, time.perf_counter() - started
        )
    return decisions


def promote_winners(
    settings: Settings,
    decisions: Mapping[str, PromotionDecision],
    results: Mapping[str, Any] | None = None,
) -> list[str]:
    """Apply every decision (aliases move for the winners only); publish what winners bring.

    Args:
        settings: where MLflow and the scores folder live.
        decisions: from `decide_all`.
        results: training results by model: a promoted model's spec `on_promoted` publishes
            its result (cross-sell's batch recommendations replace the batch file).

    Returns:
        The models whose champion changed.
    """
    from training.registry import apply_decision

    promoted = []
    for name, decision in decisions.items():
        apply_decision(settings, decision)
        console.print(decision.summary(), highlight=False, soft_wrap=True)
        if decision.promoted:
            promoted.append(name)
    for name in promoted:
        publish_promoted(settings, name, (results or {}).get(name))
    return promoted


def publish_promoted(settings: Settings, name: str, result: Any | None) -> None:
    """Run a promoted model's `on_promoted` on its training result (when it has both)."""
    from loyal.specs import model_spec, resolve

    hook = model_spec(name).on_promoted
    if hook is not None and result is not None:
        resolve(hook)(settings, result)


def _rescore(settings: Settings) -> int:
    from pipelines.commands.scoring import score

    return len(score(settings, publish=True))


def rebuild_bento(settings: Settings) -> tuple[str | None, str | None]:
    """Build the Bento on the champions; a failure is reported, not raised.

    Returns:
        (the Bento tag, None) or (None, why it failed).
    """
    from pipelines.commands.serve import build_bento

    try:
        bento = build_bento(settings)
    except Exception as exc:  # BentoML raises many types; the champions are already in place
        message = f"{exc.__class__.__name__}: {exc}"
        console.print(
            f"[yellow]Bento not rebuilt[/] ({message}). Champions and scores are in place; "
            "fix the cause and run `loyal bento build`.",
            highlight=False,
            soft_wrap=True,
        )
        log.debug("bento build failed", exc_info=True)
        return None, message
    return str(bento.tag), None


def decisions_table(decisions: Mapping[str, PromotionDecision]) -> Table:
    """Old champion vs new version per model, scored on the same holdout, and the verdict."""
    from rich.table import Table

    table = Table(title="Retrain: champion before vs new version, on the same holdout")
    for header in ("model", "metric", "before", "new", "decision", "now"):
        table.add_column(header)
    for name, d in decisions.items():
        before = "none" if d.champion_version is None else f"v{d.champion_version}"
        if d.champion_version is not None:
            before += " n/a" if d.champion_score is None else f" {d.champion_score:.4f}"
        now = d.challenger_version if d.promoted else d.champion_version
        table.add_row(
            name,
            f"{d.metric} {'↑' if d.higher_is_better else '↓'}",
            before,
            f"v{d.challenger_version} {d.challenger_score:.4f}",
            d.outcome,
            "none" if now is None else f"v{now}",
        )
    table.caption = "↑ higher is better, ↓ lower is better; n/a: the champion could not be scored"
    return table
