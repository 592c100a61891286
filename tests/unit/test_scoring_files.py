"""The scores table's files: staged writes, the previous table kept, interruptions harmless."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pandas as pd
import pytest

from features.catalog import ENTITY_KEY, SCORES, TIMESTAMP_FIELD
from pipelines.scores import (
    PREVIOUS_SCORES_FILE,
    _signals_held,
    read_scores,
    staged_scores,
    write_scores,
)

pytestmark = pytest.mark.unit


def _scores(churn: float, ids: tuple[str, ...] = ("C2", "C1")) -> pd.DataFrame:
    rows = len(ids)
    frame = pd.DataFrame(
        {
            ENTITY_KEY: list(ids),
            TIMESTAMP_FIELD: pd.Timestamp("2024-02-01", tz="UTC"),
            "clv": 1.5,
            "p_alive": 0.5,
            "expected_purchases_12m": 2.0,
            "tier": "lead",
            "segment_id": 1,
            "segment_name": "savers",
            "churn_probability": churn,
            **{f"recommendation_{r}": "" for r in (1, 2, 3)},
        },
        index=range(rows),
    )
    frame[TIMESTAMP_FIELD] = frame[TIMESTAMP_FIELD].astype("datetime64[ns, UTC]")
    return frame[[ENTITY_KEY, TIMESTAMP_FIELD, *SCORES.feature_names]]


def test_a_new_table_keeps_the_old_one_as_the_previous(tmp_path: Path) -> None:
    path = tmp_path / "scores.parquet"
    write_scores(_scores(0.1), path)
    assert not (tmp_path / PREVIOUS_SCORES_FILE).exists()
    first = path.read_bytes()
    write_scores(_scores(0.2), path)
    assert (tmp_path / PREVIOUS_SCORES_FILE).read_bytes() == first
    assert read_scores(path)["churn_probability"].tolist() == [0.2, 0.2]
    assert read_scores(path)[ENTITY_KEY].tolist() == ["C1", "C2"]  # sorted on reading
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.parquet", PREVIOUS_SCORES_FILE]


@pytest.mark.parametrize("failure", [RuntimeError("model exploded"), KeyboardInterrupt()])
def test_a_run_that_stops_half_way_leaves_both_tables_as_they_were(
    tmp_path: Path, failure: BaseException
) -> None:
    path = tmp_path / "scores.parquet"
    write_scores(_scores(0.1), path)
    write_scores(_scores(0.2), path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    import pyarrow as pa

    from pipelines.scores import SCORES_SCHEMA

    with pytest.raises(type(failure)), staged_scores(path) as writer:
        writer.write_table(pa.Table.from_pandas(_scores(0.9), schema=SCORES_SCHEMA))
        assert any(p.name.startswith(".scores.parquet.tmp-") for p in tmp_path.iterdir())
        raise failure
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_staging_files_of_killed_runs_are_cleared(tmp_path: Path) -> None:
    dead = tmp_path / ".scores.parquet.tmp-999999999"
    dead.write_bytes(b"half a table")
    mine = tmp_path / f".scores.parquet.tmp-{os.getppid()}"  # a live process: not touched
    mine.write_bytes(b"someone else's run")
    write_scores(_scores(0.1), tmp_path / "scores.parquet")
    assert not dead.exists() and mine.exists()


def test_signals_wait_for_the_swap_to_finish() -> None:
    steps: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        with _signals_held():
            os.kill(os.getpid(), signal.SIGINT)
            steps.append("renamed")
        steps.append("not reached")
    assert steps == ["renamed"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
