"""Champions downloaded into a shared cache side by side (Dask workers, service workers): every
loader gets a whole model, and the cache keeps one complete copy of each version."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from inference.champions import MlflowChampions

pytestmark = pytest.mark.unit

LOADERS = 4
ROUNDS = 5


def _register(tracking_uri: str, artifacts: Path, answer: int = 0) -> None:
    from mlflow.pyfunc import PythonModel

    import mlflow

    class Answer(PythonModel):
        def predict(
            self, context: Any, model_input: Any, params: dict[str, Any] | None = None
        ) -> Any:
            return [answer]

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    experiment = mlflow.create_experiment("cache", artifact_location=artifacts.as_uri())
    with mlflow.start_run(experiment_id=experiment):
        mlflow.pyfunc.log_model(
            name="model", python_model=Answer(), pip_requirements=[], registered_model_name="echo"
        )
    mlflow.MlflowClient().set_registered_model_alias("echo", "champion", "1")


def test_loaders_side_by_side_each_get_a_whole_model(tmp_path: Path) -> None:
    import mlflow

    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _register(tracking_uri, tmp_path / "artifacts")
    cache = tmp_path / "cache"
    start_together = threading.Barrier(LOADERS)

    def load_repeatedly() -> int:
        for _ in range(ROUNDS):
            start_together.wait(timeout=60)
            artifact = MlflowChampions(tracking_uri, cache).locate("echo")
            assert artifact is not None
            mlflow.pyfunc.load_model(str(artifact.path))
        return ROUNDS

    with ThreadPoolExecutor(LOADERS) as pool:
        loads = [pool.submit(load_repeatedly) for _ in range(LOADERS)]
        assert sum(load.result(timeout=300) for load in loads) == LOADERS * ROUNDS

    copies = list((cache / "echo").iterdir())
    assert len(copies) == 1 and copies[0].name.startswith("v1-")
    assert (copies[0] / "MLmodel").is_file()


def test_a_recreated_registry_never_reads_the_old_copy_of_the_same_version(
    tmp_path: Path,
) -> None:
    import mlflow

    cache = tmp_path / "cache"
    first = f"sqlite:///{tmp_path / 'first.db'}"
    _register(first, tmp_path / "first", answer=1)
    second = f"sqlite:///{tmp_path / 'second.db'}"
    _register(second, tmp_path / "second", answer=2)

    answers = []
    for tracking_uri in (first, second):
        artifact = MlflowChampions(tracking_uri, cache).locate("echo")
        assert artifact is not None and artifact.version == "1"
        answers.append(mlflow.pyfunc.load_model(str(artifact.path)).predict([0]))

    assert answers == [[1], [2]]
