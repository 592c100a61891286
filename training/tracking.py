"""Shared MLflow helpers: store set-up, runs tagged with git commit and data snapshot, models."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import logging
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from loyal.settings import Settings

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.tracking import MlflowClient

    from mlflow import ActiveRun

log = logging.getLogger(__name__)

TAG_GIT_COMMIT = "git_commit"
TAG_SNAPSHOT = "data_snapshot_id"
TAG_MODEL = "loyal.model"
TAG_REFUSED = "promotion.refused"
"""Version tag a training run sets when its model must not become champion (the reason);
`training.registry.decide` then refuses it unless forced."""
HOLDOUT_DIR = "holdout"
HOLDOUT_FILE = "holdout.parquet"
HOLDOUT_META = "holdout.json"
PROFILE_DIR = "monitoring"
PROFILE_FILE = "profile.json"
"""Every run that logs a holdout also logs `monitoring/profile.json`, its reference profile."""
_REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class RegisteredRun:
    """What a training run returns first: its MLflow run and the model version it registered.

    Attributes:
        run_id: the MLflow run that logged the model.
        model_version: the registered version (None: not registered).
    """

    run_id: str
    model_version: str | None


def configure(settings: Settings) -> str:
    """Point MLflow (tracking and registry) at the configured store; return the experiment id.

    Creates the SQLite folder and the experiment (with its artifact root) when missing.
    Nothing happens at import: entry points call this explicitly.
    """
    import mlflow

    uri = settings.mlflow.tracking_uri
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    experiment = mlflow.get_experiment_by_name(settings.mlflow.experiment)
    if experiment is not None:
        return str(experiment.experiment_id)
    settings.mlflow.artifact_root.mkdir(parents=True, exist_ok=True)
    return str(
        mlflow.create_experiment(
            settings.mlflow.experiment, artifact_location=settings.mlflow.artifact_root.as_uri()
        )
    )


def client(settings: Settings) -> MlflowClient:
    """An MLflow client on the configured tracking and registry store."""
    from mlflow.tracking import MlflowClient

    configure(settings)
    uri = settings.mlflow.tracking_uri
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def git_commit(repo: Path = _REPO) -> str:
    """The repository's HEAD commit, suffixed `-dirty` with uncommitted changes; or "unknown"."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, cwd=repo
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            cwd=repo,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}-dirty" if status else head


def frame_snapshot_id(frame: pd.DataFrame) -> str:
    """A short content hash of a frame (values, columns and order), as a data snapshot id."""
    digest = hashlib.sha256()
    digest.update("\x1f".join(map(str, frame.columns)).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


def file_snapshot_id(path: Path) -> str:
    """A short content hash of a file's bytes, as a data snapshot id."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


@contextlib.contextmanager
def start_run(
    settings: Settings,
    model_name: str,
    snapshot_id: str,
    run_name: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> Iterator[ActiveRun]:
    """Start a run in the configured experiment, tagged with git commit and data snapshot id."""
    import mlflow

    experiment_id = configure(settings)
    all_tags = {
        TAG_MODEL: model_name,
        TAG_GIT_COMMIT: git_commit(),
        TAG_SNAPSHOT: snapshot_id,
        **(tags or {}),
    }
    with mlflow.start_run(
        experiment_id=experiment_id, run_name=run_name or model_name, tags=all_tags
    ) as run:
        yield run


def log_figure(figure: Figure, name: str, folder: str = "plots") -> None:
    """Log a matplotlib figure as `<folder>/<name>.png` in the active run.

    A figure made through pyplot is closed afterwards; a bare `Figure` needs no closing.
    """
    import mlflow

    try:
        mlflow.log_figure(figure, f"{folder}/{name}.png")
    finally:
        if getattr(figure.canvas, "manager", None) is not None:
            import matplotlib.pyplot as plt

            plt.close(figure)


def log_holdout(
    frame: pd.DataFrame,
    label: str,
    prediction: str,
    exclude: Iterable[str] = (),
    extra: Mapping[str, Any] | None = None,
    scores: Mapping[str, Any] | None = None,
) -> None:
    """Log the evaluation holdout of the active run for promotion to re-score on.

    Also logs `monitoring/profile.json`: the reference profile of the holdout's columns and
    of `scores` (the model's outputs on it), each score's bins remembering the label's mean,
    which `loyal monitor` compares later data with.

    Args:
        frame: holdout rows with features, the label and any bookkeeping columns.
        label: the label column.
        prediction: the column of the pyfunc output the metric is computed on.
        exclude: columns that are not model inputs (ids, timestamps, ground truth).
        extra: more facts kept in the metadata (rows, positives, snapshot id, ...).
        scores: the model's outputs on the holdout rows (e.g. churn_probability), profiled.
    """
    import json

    import mlflow
    from monitoring.reference import holdout_profile

    meta = {"label": label, "prediction": prediction, "exclude": list(exclude), **(extra or {})}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / HOLDOUT_DIR
        folder.mkdir()
        frame.to_parquet(folder / HOLDOUT_FILE, index=False)
        (folder / HOLDOUT_META).write_text(json.dumps(meta, default=str), encoding="utf-8")
        mlflow.log_artifacts(str(folder), HOLDOUT_DIR)
        profiled = Path(tmp) / PROFILE_DIR
        profiled.mkdir()
        profile = holdout_profile(frame, label, exclude, scores or {})
        profile.save(profiled / PROFILE_FILE)
        mlflow.log_artifacts(str(profiled), PROFILE_DIR)


def load_holdout(run_id: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The holdout frame and its metadata logged by `log_holdout` in a run."""
    import json

    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = Path(
                mlflow.artifacts.download_artifacts(
                    run_id=run_id, artifact_path=HOLDOUT_DIR, dst_path=tmp
                )
            )
        except Exception as exc:  # MLflow raises several types for a missing artifact
            from loyal.errors import NotReadyError

            raise NotReadyError(
                f"run {run_id} has no '{HOLDOUT_DIR}/' artifact to compare models on; "
                "retrain the challenger with the current code"
            ) from exc
        frame = pd.read_parquet(local / HOLDOUT_FILE)
        meta = json.loads((local / HOLDOUT_META).read_text(encoding="utf-8"))
    return frame, meta


def requirements(names: Iterable[str]) -> list[str]:
    """Pinned pip requirements for installed distributions (skips the ones not installed)."""
    pins = []
    for name in names:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            pins.append(f"{name}=={importlib.metadata.version(name)}")
    return pins


def entry_file(module: str) -> Path:
    """The source file of an entry-point module, found without importing (running) it.

    Raises:
        LoyalError: no such module.
    """
    import importlib.util

    from loyal.errors import LoyalError

    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise LoyalError(f"no pyfunc entry module '{module}'")
    return Path(spec.origin)


def log_pyfunc(
    entry: str,
    artifacts: Mapping[str, Path],
    signature: Any,
    input_example: pd.DataFrame,
    pip_requirements: list[str],
    name: str = "model",
    registered_model_name: str | None = None,
) -> Any:
    """Log a models-from-code pyfunc (no pickle) in the active run; return MLflow's model info.

    Args:
        entry: the entry-point module (`models.pyfuncs.<model>`), which must call
            `mlflow.models.set_model(...)`; it is logged as `<name>_entry.py`.
        artifacts: artifact name -> local file or folder handed to `load_context`.
        signature: the model signature.
        input_example: a few input rows.
        pip_requirements: pinned requirements (skips MLflow's slow inference).
        name: the logged model's name within the run.
        registered_model_name: register it too, under this name.
    """
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        code = Path(tmp) / f"{name}_entry.py"
        code.write_text(entry_file(entry).read_text(encoding="utf-8"), encoding="utf-8")
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=str(code),
            artifacts={k: str(v) for k, v in artifacts.items()},
            signature=signature,
            input_example=input_example,
            pip_requirements=pip_requirements,
            registered_model_name=registered_model_name,
        )


def register(
    settings: Settings,
    model_uri: str,
    model_name: str,
    run_id: str,
    tags: Mapping[str, str] | None = None,
) -> ModelVersion:
    """Register a logged model as a new version of `model_name`, tagged with its lineage.

    The run id and the git commit are always tagged; `tags` adds the caller's own (data
    snapshot, headline metric).
    """
    import mlflow

    configure(settings)
    version = mlflow.register_model(model_uri, model_name)
    registry = client(settings)
    lineage = {"run_id": run_id, TAG_GIT_COMMIT: git_commit(), **(tags or {})}
    for key, value in lineage.items():
        registry.set_model_version_tag(model_name, version.version, key, str(value))
    log.info("registered %s version %s (run %s)", model_name, version.version, run_id)
    return registry.get_model_version(model_name, version.version)


def lineage(snapshot_id: str, **facts: Any) -> dict[str, str]:
    """Version tags: the data snapshot plus headline facts (floats to 4 decimals)."""
    tags = {TAG_SNAPSHOT: snapshot_id}
    for key, value in facts.items():
        tags[key] = f"{value:.4f}" if isinstance(value, float) else str(value)
    return tags


def register_if(
    wanted: bool,
    settings: Settings,
    model_uri: str,
    model_name: str,
    run_id: str,
    tags: Mapping[str, str] | None = None,
) -> str | None:
    """`register` when `wanted`; the new version number as text, else None."""
    if not wanted:
        return None
    return str(register(settings, model_uri, model_name, run_id, tags).version)


def version_run_id(version: ModelVersion) -> str:
    """The run that produced a model version (its own field, else the `run_id` tag)."""
    run_id = version.run_id or (version.tags or {}).get("run_id")
    if not run_id:
        from loyal.errors import NotReadyError

        raise NotReadyError(
            f"model '{version.name}' version {version.version} has no source run to read from"
        )
    return str(run_id)
