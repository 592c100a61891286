"""The main job behind `make run`: every stage end to end on the embedded defaults."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

from loyal.errors import LoyalError, StepSkippedError
from loyal.logs import console
from loyal.settings import GenerateSettings, Settings

log = logging.getLogger(__name__)
T = TypeVar("T")


def run_all(
    settings: Settings,
    bank: GenerateSettings | None = None,
    serve_api: bool = True,
    port: int = 3000,
    force: bool = False,
    data: Path | None = None,
    preset: str | None = None,
) -> None:
    """Load data (the sample bank, or `data`), build features, train, promote, score, serve.

    Each model the data cannot support is skipped with its reason (`StepSkippedError`) and the run
    carries on; the promotion of a skipped model is skipped with it.

    Args:
        settings: the home.
        bank: the sample bank to generate (default: `settings.generate`; ignored with `data`).
        serve_api: end by serving the API.
        port: the API's port.
        force: replace data ingested from another source with a generated sample bank (refused
            otherwise; not needed with `data`, which names what to load).
        data: a folder of contract tables (or a public log with `preset`) to load instead of
            generating the sample bank.
        preset: the preset mapping `data` (`loyal ingest --preset`).

    Raises:
        LoyalError: the home holds ingested data other than the sample bank, no `data` and not
            `force`; or the port is taken.
    """
    from features.tables_io import read_contract
    from pipelines.features import show_customer
    from pipelines.ingest import ingest_folder, print_summary
    from pipelines.scores import publish_scores
    from pipelines.stages import feature_stages
    from samplebank.generate import generate_sample_bank

    if data is None and not force:
        check_no_ingested_data(settings)
    if serve_api:
        from serving.process import check_port_free

        check_port_free(port)
    if data is None:
        raw = _stage("Generate the sample bank", lambda: generate_sample_bank(settings, bank))
        if raw is not None:
            _stage("Validate and load it", lambda: ingest_folder(settings, raw))
    else:
        source = data
        _stage(f"Validate and load {source}", lambda: ingest_folder(settings, source, preset))
    _stage("Summarize", lambda: print_summary(settings))
    for stage in feature_stages():
        _stage(stage.title, partial(stage.step, settings))
    train_and_promote_each(settings)
    _stage("Score customers into the online scores view", lambda: publish_scores(settings))
    _stage("Write the churn list and the management report", lambda: write_outputs(settings))
    example = str(read_contract(settings, only=["customers"])["customers"]["customer_id"].iloc[0])
    _stage(f"Online features of customer {example}", lambda: show_customer(settings, example))
    console.rule("[bold green]Done")
    console.print(
        f"Home: {settings.home} (data, feature store, MLflow, reports). To use the CLI on it "
        f"from another shell: export LOYAL_HOME={settings.home}",
        highlight=False,
        soft_wrap=True,
    )
    if serve_api:
        from pipelines.commands.serve import serve

        serve(settings, port=port)


def train_and_promote_each(settings: Settings) -> None:
    """The shared `Train <model>` stages, each followed by `Promote <model>`, in order.

    Each champion moves before the next model trains (segments' tiers read the CLV champion);
    a promoted model's `on_promoted` publishes its result (cross-sell's batch recommendations).
    A model the data cannot support is skipped, and its promotion with it.
    """
    from loyal.specs import model_spec
    from pipelines.retrain import publish_promoted
    from pipelines.stages import training_stages
    from training.models_admin import promote_model

    for training in training_stages():
        name = str(training.model)
        result = _stage(training.title, partial(training.step, settings))
        if result is None:
            continue
        promote = partial(promote_model, settings, name, result.model_version)
        decision = _stage(f"Promote {model_spec(name).title}", promote)
        if decision is not None:
            console.print(decision.summary(), highlight=False, soft_wrap=True)
            if decision.promoted:
                publish_promoted(settings, name, result)


def check_no_ingested_data(settings: Settings) -> None:
    """Refuse to replace data a user ingested (anything but the generated sample bank).

    Raises:
        LoyalError: the contract folder holds data from another source.
    """
    from features.tables_io import MANIFEST_FILE, loaded_manifest
    from samplebank.generate import SAMPLE_BANK_FOLDER

    if not (settings.paths.contract_dir / MANIFEST_FILE).is_file():
        return
    manifest = loaded_manifest(settings) or {}  # unreadable: from an unknown source
    source = str(manifest.get("source", "an unknown source"))
    sample_bank = str((settings.paths.raw_dir / SAMPLE_BANK_FOLDER).resolve())
    if source == sample_bank and not manifest.get("preset"):
        return
    preset = f" (preset {manifest['preset']})" if manifest.get("preset") else ""
    raise LoyalError(
        f"{settings.paths.contract_dir} holds data ingested from {source}{preset}; "
        "`loyal run` would replace it with a generated sample bank: run it in another folder "
        "(LOYAL_HOME=...) or pass --force"
    )


def write_outputs(settings: Settings) -> None:
    """Marketing's call list and management's report under `reports/`, from the new scores."""
    from pipelines.commands.lists import churn_list
    from pipelines.commands.report import report

    calls = churn_list(settings, settings.home / "reports" / "churn-list.csv")
    console.print(calls.summary(), highlight=False, soft_wrap=True)
    console.print(f"Management report: {report(settings)}", highlight=False, soft_wrap=True)


def _stage(title: str, step: Callable[[], T]) -> T | None:
    """Run one stage under a rule; a `StepSkippedError` is printed as one line and gives None."""
    console.rule(f"[bold]{title}")
    started = time.perf_counter()
    try:
        result = step()
    except StepSkippedError as skipped:
        console.print(f"[bold yellow]skipped:[/] {skipped}", highlight=False, soft_wrap=True)
        return None
    log.info("%s: %.1f s", title, time.perf_counter() - started)
    return result
