"""Bento packaging: champions pinned in the BentoML model store, and the build.

`import_champions` copies each champion's MLflow model folder into the BentoML model store as
`loyal-<name>:v<version>-<run>` (never `latest`), with the MLflow name, version and run in its
metadata. `build_bento` adds those tags to the build spec of `bentofile.yaml` with the model
name as alias, pins the Python packages to the installed versions, and builds. Inside the Bento
the service finds each champion by its alias (`BentoChampions`); without one it asks MLflow.
"""

from __future__ import annotations

import importlib.metadata
import logging
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from loyal.errors import NotReadyError
from loyal.settings import DEFAULT_MODELS, Settings
from loyal.specs import serving_fallback
from serving.champions import ChampionSource, MlflowChampions, ModelArtifact

if TYPE_CHECKING:
    from bentoml import Bento

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
BENTOFILE = REPO_ROOT / "bentofile.yaml"
MODEL_PREFIX = "loyal-"
PROJECT = "loyal"


def bento_model_tag(artifact: ModelArtifact) -> str:
    """The pinned BentoML tag of a champion: `loyal-<name>:v<version>-<run id prefix>`."""
    run = _run_id(artifact.path)[:8] or "local"
    name = re.sub(r"[^a-z0-9._-]", "-", artifact.name.lower())
    return f"{MODEL_PREFIX}{name}:v{artifact.version}-{run}"


def _run_id(model_dir: Path) -> str:
    try:
        spec = yaml.safe_load((model_dir / "MLmodel").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return ""
    return str((spec or {}).get("run_id") or "")


def import_champions(
    settings: Settings, names: Sequence[str] = DEFAULT_MODELS, source: ChampionSource | None = None
) -> dict[str, str]:
    """Import each champion into the BentoML model store (once per version); return name -> tag.

    Raises:
        NotReadyError: a named model has no champion (one with a serving fallback, uplift,
            is left out instead).
    """
    import bentoml
    from bentoml.exceptions import NotFound

    source = source or MlflowChampions(settings.mlflow.tracking_uri)
    tags: dict[str, str] = {}
    for name in names:
        artifact = source.locate(name)
        if artifact is None and serving_fallback(name) is not None:
            log.info("%s: not packed (%s)", name, serving_fallback(name))
            continue
        if artifact is None:
            raise NotReadyError(
                f"'{name}' has no champion to pack: train and promote it first "
                f"(or build without it: --models)"
            )
        tag = bento_model_tag(artifact)
        try:
            bentoml.models.get(tag)
            log.info("%s already in the BentoML model store", tag)
        except NotFound:
            metadata = {
                "mlflow_name": artifact.name,
                "mlflow_version": artifact.version,
                "mlflow_source": artifact.source,
                "mlflow_run_id": _run_id(artifact.path),
            }
            with bentoml.models.create(
                tag, labels={"project": PROJECT, "model": name}, metadata=metadata
            ) as model:
                shutil.copytree(artifact.path, model.path, dirs_exist_ok=True)
            log.info("imported %s as %s", artifact.source, tag)
        tags[name] = tag
    return tags


def pinned_requirements(packages: Sequence[str]) -> list[str]:
    """Requirements pinned to the installed (uv.lock) versions; ones not installed stay as given."""
    from packaging.requirements import Requirement

    pins: list[str] = []
    for text in packages:
        requirement = Requirement(text)
        try:
            version = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            pins.append(text)
            continue
        extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
        pins.append(f"{requirement.name}{extras}=={version}")
    return pins


def build_spec(
    tags: Mapping[str, str], bentofile: Path = BENTOFILE, pin: bool = True
) -> dict[str, Any]:
    """The build spec: `bentofile.yaml` plus the pinned models (aliased) and packages."""
    spec: dict[str, Any] = yaml.safe_load(bentofile.read_text(encoding="utf-8"))
    spec["models"] = [{"tag": tag, "alias": name} for name, tag in tags.items()]
    if pin:
        python = dict(spec.get("python") or {})
        python["packages"] = pinned_requirements(python.get("packages") or [])
        python["lock_packages"] = False
        spec["python"] = python
    return spec


def build_bento(
    settings: Settings,
    names: Sequence[str] = DEFAULT_MODELS,
    bentofile: Path = BENTOFILE,
    version: str | None = None,
) -> Bento:
    """Import the champions and build the Bento with them pinned.

    Args:
        settings: where MLflow lives.
        names: registered models to pack (each must have a champion).
        bentofile: the build spec to start from.
        version: the Bento version (default: generated by BentoML).

    Returns:
        The built Bento (in the BentoML store; `bentoml serve loyal:<version>` runs it).
    """
    import bentoml

    tags = import_champions(settings, names)
    spec = build_spec(tags, bentofile)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bentofile.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
        bento = bentoml.bentos.build_bentofile(
            str(path), build_ctx=str(bentofile.parent), version=version
        )
    log.info("built %s with models %s", bento.tag, list(tags.values()))
    return bento


class BentoChampions:
    """Champions pinned in a built Bento, found by alias (the registered model name)."""

    def __init__(self, aliases: Mapping[str, str] | None = None) -> None:
        self.aliases = dict(model_aliases() if aliases is None else aliases)

    def locate(self, name: str) -> ModelArtifact | None:
        """The pinned champion's folder in the BentoML model store, or None without an alias."""
        tag = self.aliases.get(name)
        if tag is None:
            return None
        import bentoml

        model = bentoml.models.get(tag)
        metadata = model.info.metadata
        version = str(metadata.get("mlflow_version") or model.tag.version)
        return ModelArtifact(name, version, Path(model.path), f"bento:{model.tag}")


def model_aliases() -> dict[str, str]:
    """Alias -> tag of the models a Bento (or the build) declares; empty when serving from code."""
    try:
        from bentoml._internal.configuration.containers import BentoMLContainer

        return dict(BentoMLContainer.model_aliases.get())
    except Exception:  # an internal API: without it, champions come from MLflow
        return {}
