"""The feature build's work folder (`compute.work_dir`): made fresh, removed after, and a store
that cannot be written stops the build in one line naming the setting."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from features.partitions import work_folder
from loyal.errors import ConfigError

pytestmark = pytest.mark.unit


@pytest.fixture
def no_aws_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """An environment where botocore finds no credentials and nothing leaves this machine."""
    import s3fs

    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:3451")  # nothing listens there
    s3fs.S3FileSystem.clear_instance_cache()  # an instance holds the credentials it found
    yield
    s3fs.S3FileSystem.clear_instance_cache()


def test_a_local_work_folder_is_fresh_and_removed_after_the_build(tmp_path: Path) -> None:
    base = tmp_path / "work"
    with work_folder(str(base)) as first, work_folder(str(base)) as second:
        assert first.root != second.root
        assert Path(first.root).is_dir() and Path(second.root).is_dir()
    assert list(base.iterdir()) == []


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("s4://bucket/work", r"Protocol not known: s4"),
        ("oci://bucket@space/work", r"needs a package that is not installed \(.*ocifs"),
    ],
)
def test_an_unusable_work_dir_is_one_line_naming_the_setting(url: str, reason: str) -> None:
    with (
        pytest.raises(ConfigError, match=rf"^compute\.work_dir: .*{reason}") as caught,
        work_folder(url),
    ):
        pytest.fail("the build must not start")
    assert "\n" not in str(caught.value)


def test_s3_without_credentials_is_one_line_naming_the_setting(no_aws_credentials: None) -> None:
    with (
        pytest.raises(ConfigError, match=r"^compute\.work_dir: cannot write to s3://") as caught,
        work_folder("s3://loyal-work/builds"),
    ):
        pytest.fail("the build must not start")
    assert "NoCredentialsError" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_s3_without_s3fs_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    imported = sys.modules["fsspec.registry"]._registry  # fsspec keeps the classes it imported
    monkeypatch.setitem(sys.modules, "s3fs", None)  # as if the s3 extra were not installed
    monkeypatch.delitem(imported, "s3", raising=False)
    with (
        pytest.raises(
            ConfigError,
            match=r"^compute\.work_dir: s3://loyal-work/builds needs a package that is not "
            r"installed \(Install s3fs .*\); install Loyal's s3 extra \(`uv sync --extra s3`\)$",
        ),
        work_folder("s3://loyal-work/builds"),
    ):
        pytest.fail("the build must not start")
