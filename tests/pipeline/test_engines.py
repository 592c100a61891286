"""The same feature build and batch scoring on the local engine and on a 2-worker Dask cluster.

On a private copy of the scored bank (2,000 customers): the single-partition build is today's
build; the partitioned build (4 partitions, local) and the Dask build (3 partitions, a
LocalCluster the test starts through `dask_client`) must give the same feature tables and
labels value for value, with the partition files on this machine's disk and on S3
(`compute.work_dir: s3://...`, an S3 emulator on loopback that the workers reach through the
standard AWS variables); batch scores of the Dask engine (a task per partition) must equal the
local loop's within 1e-6, with identical tiers and segments.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.catalog import ENTITY_KEY, TIMESTAMP_FIELD
from loyal.compute import dask_client
from loyal.settings import ComputeSettings, Settings, load_settings

pytestmark = pytest.mark.pipeline

BUCKET = "loyal-work"


@pytest.fixture
def s3_endpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An S3 emulator (moto) on 127.0.0.1, reached as a real store is: the AWS variables.

    Set before the test starts its cluster, so the worker processes inherit them too.
    """
    import s3fs
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a log line per request
    host, port = server.get_host_and_port()
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "loyal-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "loyal-test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        yield f"s3://{BUCKET}/builds"
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
        server.stop()


def _home(source: Settings, target: Path) -> Settings:
    shutil.copytree(source.home, target)
    return load_settings(home=target)


def _with_compute(settings: Settings, **compute: object) -> Settings:
    return settings.model_copy(
        update={"compute": settings.compute.model_copy(update=compute)}, deep=True
    )


def _tables(settings: Settings) -> dict[str, pd.DataFrame]:
    """Every feature table and the labels, in a canonical row order."""
    keys = [TIMESTAMP_FIELD, ENTITY_KEY]
    return {
        path.name: pd.read_parquet(path).sort_values(keys, kind="stable").reset_index(drop=True)
        for path in sorted(settings.paths.features_dir.glob("*.parquet"))
    }


def _assert_same_tables(left: dict[str, pd.DataFrame], right: dict[str, pd.DataFrame]) -> None:
    assert sorted(left) == sorted(right)
    assert len(left) >= 7  # six views and the labels
    for name, frame in left.items():
        pd.testing.assert_frame_equal(frame, right[name], check_exact=True, obj=name)


def test_partitioned_and_dask_builds_and_scores_equal_the_local_ones(
    scored_bank_home: Settings, tmp_path: Path, s3_endpoint: str
) -> None:
    from fsspec.core import url_to_fs

    from pipelines.features import build_features
    from pipelines.scores import score_customers

    home = _home(scored_bank_home, tmp_path / "home")
    single = _with_compute(home, partitions=1)
    build_features(single)
    whole = _tables(single)
    local_scores = score_customers(single, write=False, chunk_rows=700)

    build_features(_with_compute(home, partitions=4))
    _assert_same_tables(whole, _tables(home))

    on_dask = _with_compute(home, engine="dask", partitions=3, workers=2, memory_limit="1GiB")
    with dask_client(on_dask.compute) as client:
        assert client is not None and len(client.scheduler_info()["workers"]) == 2
        build_features(on_dask)
        _assert_same_tables(whole, _tables(home))
        for table in home.paths.features_dir.glob("*.parquet"):
            table.unlink()  # so the tables compared next are the S3 build's own
        build_features(_with_compute(on_dask, work_dir=s3_endpoint))
        _assert_same_tables(whole, _tables(home))
        dask_scores = score_customers(on_dask, write=False, chunk_rows=700)

    store, _ = url_to_fs(s3_endpoint)
    assert store.exists(BUCKET) and store.find(BUCKET) == []  # used, then cleaned up

    assert dask_scores[ENTITY_KEY].tolist() == local_scores[ENTITY_KEY].tolist()
    assert len(dask_scores) > 1_000
    for column in local_scores.columns:
        if pd.api.types.is_float_dtype(local_scores[column]):
            np.testing.assert_allclose(
                dask_scores[column], local_scores[column], rtol=0, atol=1e-6, err_msg=column
            )
        else:
            assert dask_scores[column].tolist() == local_scores[column].tolist(), column


def test_partitions_follow_a_stable_hash_of_the_customer_id() -> None:
    import pyarrow as pa

    from features.partitions import partition_count, partition_of

    ids = pa.array([f"C{i:07d}" for i in range(20_000)])
    parts = partition_of(ids, 5)
    assert np.bincount(parts, minlength=5).min() > 3_500  # about 4,000 each
    # The same id gets the same partition from another table's (dictionary-encoded) column.
    repeated = pa.array(["C0000042", "C0000007", "C0000042"]).dictionary_encode()
    assert partition_of(repeated, 5).tolist() == [parts[42], parts[7], parts[42]]
    assert partition_count(1_000_000, 200_000) == 5
    assert partition_count(10, 200_000) == 1
    assert partition_count(10, 200_000, fixed=3) == 3
    assert partition_count(2, 200_000, fixed=3) == 2
    assert ComputeSettings().partitions == 0
