"""`loyal serve` and `loyal run` refuse, in one line, what would mislead or destroy (issue 16)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

LOYAL = Path(sys.executable).with_name("loyal")


def loyal(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOYAL_")}
    env |= {"LOYAL_HOME": str(home), "COLUMNS": "300"}
    return subprocess.run(
        [str(LOYAL), *args],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]


def test_serve_on_a_busy_port_exits_non_zero_in_one_line(tmp_path: Path) -> None:
    """The attack: `loyal serve` printed "(ready)" against whatever held the port, exit 0."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        done = loyal(tmp_path, "serve", "--port", str(port))
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    (line,) = lines(done)
    assert f"127.0.0.1:{port}: already in use" in line and "--port" in line
    assert "serving" not in line


def ingested(home: Path, source: str, preset: str | None) -> Path:
    contract = home / "data" / "contract"
    contract.mkdir(parents=True)
    manifest = {"source": source, "preset": preset, "snapshot_id": "abc"}
    (contract / "_manifest.json").write_text(json.dumps(manifest))
    (contract / "customers.parquet").write_bytes(b"real data")
    return contract


def test_run_refuses_to_replace_ingested_data_without_force(tmp_path: Path) -> None:
    """The attack: `loyal run` silently replaced ingested real data with a new sample bank."""
    contract = ingested(tmp_path, "/data/online_retail", "online-retail")
    done = loyal(tmp_path, "run", "--customers", "300", "--no-serve")
    assert done.returncode != 0
    (line,) = lines(done)
    assert "/data/online_retail (preset online-retail)" in line and "--force" in line
    assert (contract / "customers.parquet").read_bytes() == b"real data"


def test_run_may_replace_its_own_sample_bank(tmp_path: Path) -> None:
    from loyal.errors import LoyalError
    from loyal.settings import load_settings
    from pipelines.run import check_no_ingested_data

    settings = load_settings(home=tmp_path)
    check_no_ingested_data(settings)  # nothing loaded yet
    sample_bank = (settings.paths.raw_dir / "sample_bank").resolve()
    contract = ingested(tmp_path, str(sample_bank), None)
    check_no_ingested_data(settings)
    manifest = json.loads((contract / "_manifest.json").read_text())
    (contract / "_manifest.json").write_text(json.dumps({**manifest, "source": "/elsewhere"}))
    with pytest.raises(LoyalError, match="/elsewhere"):
        check_no_ingested_data(settings)
