"""Commands people wait on import only what they use: never Feast, XGBoost or BentoML."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

HEAVY = ("feast", "xgboost", "bentoml")
_PROBE = """
import contextlib, io, json, sys
sys.argv = ["loyal", *json.loads(sys.argv[1])]
from pipelines.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    try:
        main()
    except SystemExit:
        pass
print(json.dumps(sorted(m for m in {heavy} if m in sys.modules)))
"""


@pytest.mark.parametrize(
    "args", [["--help"], ["models", "--help"], ["models"], ["promote", "churn", "--help"]]
)
def test_command_imports_neither_feast_xgboost_nor_bentoml(args: list[str], tmp_path: Path) -> None:
    env = {**os.environ, "LOYAL_HOME": str(tmp_path)}
    probe = _PROBE.format(heavy=repr(HEAVY))
    done = subprocess.run(
        [sys.executable, "-c", probe, json.dumps(args)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
