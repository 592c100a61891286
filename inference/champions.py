"""Champions, wherever they are needed: find their artifacts (MLflow or a Bento) and load them.

A champion is the registered version holding the `champion` alias. Its MLflow model folder is
found either in the MLflow registry (`loyal serve`, batch scoring) or in the BentoML model
store, where `loyal bento build` imported it under a pinned tag (a built Bento). Each model's
spec (`loyal.specs`) names the loader that turns the artifacts into its in-process object; the
service and batch scoring both load champions here.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml

from loyal.errors import LoyalError

log = logging.getLogger(__name__)

CHAMPION = "champion"
"""The registry alias serving loads (set by promotion)."""
MLMODEL_FILE = "MLmodel"


class ModelLoadError(LoyalError):
    """A champion's artifacts cannot be found or read."""


@dataclass(frozen=True)
class ModelArtifact:
    """Where a champion's MLflow model folder is.

    Attributes:
        name: registered model name (churn, cross_sell, ...).
        version: the registered version.
        path: local folder holding `MLmodel` and the artifacts.
        source: where it came from, e.g. "mlflow:models:/churn/3" or "bento:loyal-churn:v3-...".
        alias: "champion", or "latest" when a source falling back to the latest version found
            no champion.
    """

    name: str
    version: str
    path: Path
    source: str
    alias: str = CHAMPION

    def artifact(self, key: str) -> Path:
        """The local path of one pyfunc artifact, by its name in `MLmodel`."""
        mlmodel = self.path / MLMODEL_FILE
        try:
            spec = yaml.safe_load(mlmodel.read_text(encoding="utf-8"))
            relative = spec["flavors"]["python_function"]["artifacts"][key]["path"]
        except (OSError, KeyError, TypeError, yaml.YAMLError) as exc:
            raise ModelLoadError(
                f"{self.source}: no '{key}' artifact in {mlmodel} ({exc})"
            ) from None
        return self.path / relative


class ChampionSource(Protocol):
    """Finds the artifacts of a registered model's champion."""

    def locate(self, name: str) -> ModelArtifact | None:
        """The champion's artifacts, or None when there is no champion."""
        ...


class MlflowChampions:
    """Champions from the MLflow registry (`models:/<name>@champion`).

    Args:
        tracking_uri: the tracking and registry store.
        cache_dir: where remote artifacts are downloaded (local stores are read in place).
        fallback_to_latest: without a champion, use the highest-numbered version (with a
            warning), as batch scoring does for CLV and segments.
    """

    def __init__(
        self, tracking_uri: str, cache_dir: Path | None = None, fallback_to_latest: bool = False
    ) -> None:
        self.tracking_uri = tracking_uri
        self.cache_dir = cache_dir
        self.fallback_to_latest = fallback_to_latest

    def _client(self) -> Any:
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def locate(self, name: str) -> ModelArtifact | None:
        """The champion's artifacts, or None when there is no champion (or no registry)."""
        from mlflow.exceptions import MlflowException

        import mlflow

        alias = CHAMPION
        try:
            version = self._client().get_model_version_by_alias(name, CHAMPION)
        except MlflowException as exc:
            version = self._latest(name) if self.fallback_to_latest else None
            if version is None:
                log.warning("no %s@%s in %s: %s", name, CHAMPION, self.tracking_uri, exc)
                return None
            alias = "latest"
        uri = f"models:/{name}/{version.version}"
        try:
            mlflow.set_registry_uri(self.tracking_uri)
            mlflow.set_tracking_uri(self.tracking_uri)
            if self.cache_dir is None:
                local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
            else:
                local = download_once(uri, self.cache_dir / name / _version_folder(version))
        except MlflowException as exc:
            raise ModelLoadError(f"cannot download {uri}: {exc}") from exc
        return ModelArtifact(name, str(version.version), local, f"mlflow:{uri}", alias)

    def _latest(self, name: str) -> Any | None:
        """The highest-numbered version of `name` (warned about), or None when none exists."""
        from mlflow.exceptions import MlflowException

        try:
            versions = self._client().search_model_versions(f"name = '{name}'")
        except MlflowException:
            return None
        if not versions:
            return None
        latest = max(versions, key=lambda v: int(v.version))
        log.warning(
            "'%s' has no champion: scoring with its latest version v%s; promote one with "
            "`loyal promote %s`",
            name, latest.version, name,
        )  # fmt: skip
        return latest


def _version_folder(version: Any) -> str:
    """A cache folder name no other model version can have, even in a re-created registry."""
    identity = f"{version.source}|{version.run_id}|{version.creation_timestamp}"
    return f"v{version.version}-{hashlib.sha256(identity.encode()).hexdigest()[:12]}"


def download_once(uri: str, folder: Path) -> Path:
    """The artifacts of `uri` in `folder`, downloaded once and published whole.

    Processes that score or serve side by side (Dask workers, service workers) share the cache:
    each downloads into a private folder beside `folder` and renames it into place, an atomic
    step, so none ever reads a half-written copy; a process that loses the race drops its own
    copy and reads the winner's.
    """
    import mlflow

    if folder.is_dir():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    private = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(private)))
        with contextlib.suppress(OSError):  # another process published it first
            local.rename(folder)
    finally:
        shutil.rmtree(private, ignore_errors=True)
    if not folder.is_dir():
        raise ModelLoadError(f"cannot publish the artifacts of {uri} to {folder}")
    return folder


class ChainedChampions:
    """The first source that knows a champion wins (e.g. the Bento's pinned models, then MLflow)."""

    def __init__(self, sources: Sequence[ChampionSource]) -> None:
        self.sources = list(sources)

    def locate(self, name: str) -> ModelArtifact | None:
        """The champion's artifacts from the first source that has them."""
        for source in self.sources:
            found = source.locate(name)
            if found is not None:
                return found
        return None


@dataclass(frozen=True)
class LoadedModel:
    """A champion loaded (by the service's fast loader, or as an MLflow pyfunc), or why it is not.

    Attributes:
        name: registered model name.
        obj: the loaded object (None when not loaded).
        version: the registered version loaded.
        source: where its artifacts came from.
        problem: why it is not loaded.
        alias: "champion", or "latest" when no champion existed and the source fell back.
    """

    name: str
    obj: Any  # None when not loaded
    version: str | None
    source: str | None
    problem: str | None = None
    alias: str = CHAMPION

    @property
    def label(self) -> str:
        """E.g. ``clv v3 (champion)``."""
        return f"{self.name} v{self.version} ({self.alias})"


def load_champions(
    source: ChampionSource,
    names: Sequence[str],
    loaders: Mapping[str, Callable[[ModelArtifact], Any]] | None = None,
) -> dict[str, LoadedModel]:
    """Load each named champion; a missing or unreadable one is recorded, never raised.

    Args:
        source: where champions are found.
        names: registered model names to load.
        loaders: name -> loader (default: each spec's `champion_loader`).
    """
    loaders = spec_loaders(names) if loaders is None else loaders
    loaded: dict[str, LoadedModel] = {}
    for name in names:
        loader = loaders.get(name)
        if loader is None:
            loaded[name] = LoadedModel(name, None, None, None, f"no serving loader for '{name}'")
            continue
        try:
            artifact = source.locate(name)
            if artifact is None:
                loaded[name] = LoadedModel(name, None, None, None, f"no {name}@{CHAMPION}")
                continue
            loaded[name] = LoadedModel(
                name, loader(artifact), artifact.version, artifact.source, alias=artifact.alias
            )
            log.info("loaded %s v%s from %s", name, artifact.version, artifact.source)
        except Exception as exc:  # one bad model degrades answers, never the service
            log.warning("cannot load %s: %s", name, exc)
            loaded[name] = LoadedModel(name, None, None, None, f"{name} not loaded: {exc}")
    return loaded


def spec_loaders(names: Sequence[str]) -> dict[str, Callable[[ModelArtifact], Any]]:
    """The champion loader each registered model's spec names (models without one left out)."""
    from loyal.specs import MODELS, resolve

    loaders: dict[str, Callable[[ModelArtifact], Any]] = {}
    for name in names:
        loader = MODELS[name].champion_loader if name in MODELS else None
        if loader is not None:
            loaders[name] = resolve(loader)
    return loaders


def load_pyfunc(artifact: ModelArtifact) -> Any:
    """A champion as its MLflow pyfunc (the reference path and batch scoring)."""
    import mlflow.pyfunc

    return mlflow.pyfunc.load_model(str(artifact.path))
