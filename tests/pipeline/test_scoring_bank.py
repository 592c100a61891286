"""Batch scoring on the trained bank: the fast path equals Feast and the pyfuncs; interruptions.

The fast path (`pipelines.scores.score_batches`) reads Parquet straight and calls the models'
own predict; the reference path (`pipelines.scores.reference_scores`) goes through Feast's
point-in-time join, pandas over the whole log and the MLflow pyfuncs. They must agree.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest

from features.catalog import ENTITY_KEY, PROFILE, SCORES, TIMESTAMP_FIELD
from loyal.settings import Settings, load_settings

if TYPE_CHECKING:
    from features.latest import LatestSnapshot

pytestmark = pytest.mark.pipeline

REPO = Path(__file__).resolve().parents[2]


def _copy(settings: Settings, target: Path) -> Settings:
    """A private copy of a shared home (its Feast registry re-pointed at the copy's tables)."""
    from features.store import apply_definitions

    shutil.copytree(settings.home, target)
    copy = load_settings(home=target)
    apply_definitions(copy)
    return copy


def test_fast_scores_equal_the_reference_path(scored_bank_home: Settings) -> None:
    from pipelines.scores import reference_scores, score_customers

    fast = score_customers(scored_bank_home, write=False, chunk_rows=300)
    reference = reference_scores(scored_bank_home)
    assert list(fast.columns) == [ENTITY_KEY, TIMESTAMP_FIELD, *SCORES.feature_names]
    pd.testing.assert_series_equal(fast.dtypes, reference.dtypes)
    assert fast[ENTITY_KEY].tolist() == reference[ENTITY_KEY].tolist()
    assert fast["clv"].notna().mean() > 0.9
    assert fast["churn_probability"].notna().all()
    assert (fast["segment_id"] >= 0).all()
    for column in fast.columns:
        if pd.api.types.is_float_dtype(fast[column]):
            np.testing.assert_allclose(
                fast[column], reference[column], rtol=1e-9, atol=1e-12, err_msg=column
            )
        else:
            assert fast[column].tolist() == reference[column].tolist(), column


def test_latest_snapshot_features_equal_feasts_point_in_time_join(
    scored_bank_home: Settings,
) -> None:
    from features.feature_repo.services import SERVICE_VIEWS
    from features.frames import training_frame
    from features.latest import iter_chunks
    from features.store import built_views
    from training.segments import population

    views = built_views(scored_bank_home)
    snapshot = _snapshot(scored_bank_home)
    columns = {n: views[n].feature_names for n in SERVICE_VIEWS["churn_v1"] if n in views}
    fast = pd.concat(c.to_pandas() for c in iter_chunks(snapshot, columns, chunk_rows=250))
    fast = fast.set_index(ENTITY_KEY).sort_index()
    entities = population(scored_bank_home)
    assert snapshot.moment == entities[TIMESTAMP_FIELD].max()
    feast = training_frame(scored_bank_home, "churn_v1", entities, with_labels=False)
    feast = feast.drop(columns=[TIMESTAMP_FIELD]).set_index(ENTITY_KEY).sort_index()
    assert sorted(fast.columns) == sorted(feast.columns)
    assert fast.index.tolist() == feast.index.tolist()
    pd.testing.assert_frame_equal(fast[feast.columns], feast, check_dtype=False)


def test_churn_from_the_boosters_equals_the_pyfunc(scored_bank_home: Settings) -> None:
    from features.latest import iter_chunks
    from features.store import built_views
    from inference.fast import BatchModels, ChurnScorer
    from inference.reference import schema_inputs

    models = BatchModels.load(scored_bank_home)
    assert models.churn is not None
    snapshot = _snapshot(scored_bank_home)
    columns = models.feature_columns(built_views(scored_bank_home))
    frame = next(iter_chunks(snapshot, columns, chunk_rows=400)).to_pandas()
    fast = ChurnScorer(models)(frame)
    output = models.churn.obj.predict(schema_inputs(models.churn.obj, frame), params={"top": 0})
    served = pd.DataFrame(output)["churn_probability"].to_numpy(float)
    assert len(fast) == 400 and np.isfinite(fast).all()
    np.testing.assert_allclose(fast, served, rtol=0, atol=1e-12)
    assert fast.std() > 0


def _snapshot(settings: Settings) -> LatestSnapshot:
    from features.latest import latest_snapshot
    from features.store import built_views, table_path

    views = {n: v for n, v in built_views(settings).items() if n != SCORES.name}
    return latest_snapshot(
        {n: table_path(settings, v) for n, v in views.items()},
        {n: v.ttl_days for n, v in views.items()},
        PROFILE.name,
    )


# ---------------------------------------------------------------------------- interruptions
def _online(settings: Settings, ids: list[str]) -> pd.DataFrame:
    from features.store import open_store

    response = open_store(settings).get_online_features(
        features=[f"{SCORES.name}:{f}" for f in SCORES.feature_names],
        entity_rows=[{ENTITY_KEY: i} for i in ids],
    )
    return response.to_df()


def _distinct_published_scores(settings: Settings) -> pd.DataFrame:
    """Publish scores no run would compute, so a finished run would visibly change them."""
    from features.store import apply_definitions, scores_table_path
    from pipelines.scores import materialize_scores, read_scores, write_scores

    path = scores_table_path(settings)
    marked = read_scores(path)
    marked["churn_probability"] = 0.123
    marked["tier"] = "lead"
    write_scores(marked, path)
    apply_definitions(settings)
    materialize_scores(settings, marked[TIMESTAMP_FIELD].max())
    return marked


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGINT], ids=["kill", "ctrl-c"])
def test_loyal_score_stopped_half_way_leaves_the_previous_results(
    scored_bank_home: Settings, tmp_path: Path, stop: signal.Signals
) -> None:
    from features.store import scores_table_path

    settings = _copy(scored_bank_home, tmp_path / "home")
    marked = _distinct_published_scores(settings)
    folder = scores_table_path(settings).parent
    before = _files(folder)
    ids = marked[ENTITY_KEY].tolist()
    online_before = _online(settings, ids)
    assert (online_before["churn_probability"] == 0.123).all()

    env = {k: v for k, v in os.environ.items() if not k.startswith("LOYAL_")}
    env["LOYAL_HOME"] = str(settings.home)
    process = subprocess.Popen(
        [sys.executable, "-m", "pipelines", "score", "--chunk-rows", "10"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    staged = _wait_for_staging(folder, process)
    process.send_signal(stop)
    _, errors = process.communicate(timeout=120)
    assert staged is not None, f"`loyal score` ended before writing: {errors.decode()[-2000:]}"
    assert process.returncode != 0

    after = _files(folder)
    leftovers = [n for n in after if n.startswith(".")]
    assert {n: b for n, b in after.items() if n not in leftovers} == before
    if stop == signal.SIGINT:
        assert leftovers == []  # an interrupted run cleans up after itself
    pd.testing.assert_frame_equal(_online(settings, ids), online_before)

    from pipelines.commands.scoring import score_batch

    summary = score_batch(settings, publish=True)  # the next run finishes and clears leftovers
    assert summary["customers"] == len(ids)
    assert sorted(_files(folder)) == sorted(n for n in before)
    assert (folder / "scores.previous.parquet").read_bytes() == before["scores.parquet"]
    online_now = _online(settings, ids)
    assert not (online_now["churn_probability"] == 0.123).any()
    assert set(online_now["tier"]) == {"platinum", "gold", "iron", "lead"}


def _wait_for_staging(folder: Path, process: subprocess.Popen[bytes]) -> Path | None:
    """The run's staging file, once its first chunk is written (None if the run ended)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        staged = [p for p in folder.glob(".scores.parquet.tmp-*") if p.stat().st_size > 0]
        if staged:
            return staged[0]
        time.sleep(0.01)
    return None
