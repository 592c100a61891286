"""`loyal pipeline retrain`: rebuild features, retrain every model, promote the winners.

The order makes an interruption safe. Features are rebuilt in a staging folder and swapped in
whole. Every model is trained and registered as a new version, and every promotion decided
(challenger vs champion on the challenger's holdout), before any `champion` alias moves: an
interrupted run leaves new, unpromoted versions behind and the champions, scores and batch
recommendations exactly as they were. Only then are the winners promoted (one alias write
per model), the scores republished (written to a temporary file, then renamed) and the Bento
rebuilt. Data generation and ingestion are not part of it: it retrains on the loaded data.

A model that learns from the contract data alone (a spec with `trains_on_features=False`:
cross-sell) is trained in a second thread while the features are rebuilt: the feature build
keeps one core busy, and the model's fits release Python's lock. Its new version is decided
with the others, so the order above holds; peak memory is that of both stages together.
`RetrainOptions(overlap=False)` (`loyal pipeline retrain --sequential`) trains it in turn.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar, cast

from loyal.errors import StepSkippedError
from loyal.logs import console
from loyal.settings import Settings

if TYPE_CHECKING:
    from rich.table import Table

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
        overlap: train the models that read no features while the features are rebuilt.
    """

    churn_trials: int | None = None
    churn_timeout: float | None = None
    cross_sell_trials: int | None = None
    churn_params: Mapping[str, Any] | None = None
    bento: bool = True
    overlap: bool = True

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

    CPU seconds do not depend on what else runs on the machine, wall seconds do."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.seconds: dict[str, float] = {}
        self.cpu_seconds: dict[str, float] = {}

    def run(self, title: str, step: Callable[[], T]) -> T:
        """Run one stage, announcing it and its wall time."""
        return cast(T, self._run(title, step, skippable=False))

    def run_or_skip(self, title: str, step: Callable[[], T]) -> T | None:
        """Run one stage; a `StepSkippedError` is printed as one line and gives None."""
        return self._run(title, step, skippable=True)

    def start_or_skip(
        self, title: str, step: Callable[[], T], beside: ThreadPoolExecutor
    ) -> Future[T | None]:
        """Start a skippable stage in `beside`'s thread; its result (None when skipped) or
        its error comes from the future."""
        label = self._announce(title, "(beside the next stages) ")
        return beside.submit(self._finish, title, label, step, skippable=True, cpu=None)

    def _run(self, title: str, step: Callable[[], T], skippable: bool) -> T | None:
        label = self._announce(title)
        return self._finish(title, label, step, skippable, time.process_time())

    def _announce(self, title: str, note: str = "") -> str:
        self.done += 1
        label = f"[{self.done}/{self.total}] {title}"
        console.print(f"{label} {note}...", markup=False, highlight=False)
        return label

    def _finish(
        self,
        title: str,
        label: str,
        step: Callable[[], T],
        skippable: bool,
        cpu: float | None,
    ) -> T | None:
        started = time.perf_counter()
        try:
            result = step()
        except StepSkippedError as skipped:
            if not skippable:
                raise
            self._record(title, started, cpu)
            console.print(f"{label}: skipped: {skipped}", markup=False, highlight=False)
            return None
        self._record(title, started, cpu)
        spent = f" (CPU {self.cpu_seconds[title]:.1f} s)" if title in self.cpu_seconds else ""
        console.print(f"{label}: {self.seconds[title]:.1f} s{spent}", markup=False, highlight=False)
        return result

    def _record(self, title: str, started: float, cpu: float | None) -> None:
        self.seconds[title] = time.perf_counter() - started
        if cpu is not None:
            self.cpu_seconds[title] = time.process_time() - cpu


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
    with _early_training(settings, options, stages) as early:
        _refresh_features(settings, stages)
        versions, results = _train_all(settings, options, stages, early)
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


@contextmanager
def _early_training(
    settings: Settings, options: RetrainOptions, stages: Stages
) -> Iterator[dict[str, Future[Any]]]:
    """Start training the models that read no features (none without `options.overlap`);
    their futures by model name. Leaving waits for them."""
    from pipelines.stages import training_stages

    if not options.overlap:
        yield {}
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="loyal-early") as beside:
        yield {
            str(training.model): stages.start_or_skip(
                training.title, partial(training.step, settings), beside
            )
            for training in training_stages(options.for_model)
            if not training.reads_features
        }


def _train_all(
    settings: Settings,
    options: RetrainOptions,
    stages: Stages,
    early: Mapping[str, Future[Any]] | None = None,
) -> tuple[dict[str, str], dict[str, Any]]:
    """Train and register a new version of every model; no alias moves, nothing is written.

    A model the data cannot support is skipped with its reason (`StepSkippedError`): it gets
    no new version and its champion, if any, stays.

    Args:
        settings: the loaded data, feature store and MLflow.
        options: the budgets.
        stages: the numbered console stages.
        early: trainings already started (`_early_training`), by model name: waited for in
            their turn instead of run.

    Returns:
        The new version per registered model, and the training results of those trained
        (what a spec's `on_promoted` publishes, e.g. cross-sell's batch recommendations).
    """
    results = train_every_model(settings, options.for_model, stages.run_or_skip, early)
    versions = {name: str(result.model_version) for name, result in results.items()}
    log.info("new versions: %s", versions)
    return versions, results


def train_every_model(
    settings: Settings,
    options: Callable[[str], Mapping[str, Any]],
    stage: Callable[[str, Callable[[], Any]], Any],
    started: Mapping[str, Future[Any]] | None = None,
) -> dict[str, Any]:
    """The shared `Train <model>` stages (`pipelines.stages`), each skippable.

    Args:
        settings: the loaded data, feature store and MLflow.
        options: keyword options of a model's `train`, by model name.
        stage: runs one titled stage, giving None when it is skipped.
        started: trainings already running elsewhere, by model name: their result is
            waited for in the model's turn (their error raised there).

    Returns:
        The training result per model trained (skipped ones left out).
    """
    from pipelines.stages import training_stages

    results = {}
    for training in training_stages(options):
        model = str(training.model)
        running = (started or {}).get(model)
        if running is None:
            result = stage(training.title, partial(training.step, settings))
        else:
            result = _wait_for(training.title, running)
        if result is not None:
            results[model] = result
    return results


def _wait_for(title: str, running: Future[T]) -> T:
    if not running.done():
        console.print(f"Waiting for: {title} ...", markup=False, highlight=False)
    return running.result()


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
