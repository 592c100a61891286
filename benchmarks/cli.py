"""Wall seconds of CLI commands users wait on before any work; print one JSON line.

Each command runs in a fresh process, as a user types it, `--repeat` times (the best is
reported: start-up is a floor, load only adds to it). This machine sets
PYTHONDONTWRITEBYTECODE=1, so every process compiles the project's modules from source; the
figures include that.

    .venv/bin/python benchmarks/cli.py [--home PATH] [--repeat 3]

`loyal models` reads the registry of `--home` (default: the configured home).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = {
    "help_seconds": ["--help"],
    "models_seconds": ["models"],
    "promote_help_seconds": ["promote", "churn", "--help"],
}
"""JSON key -> the `loyal` arguments it times."""


def loyal_executable() -> str:
    """The `loyal` console script next to this interpreter."""
    return str(Path(sys.executable).with_name("loyal"))


def wall_seconds(args: list[str], env: dict[str, str]) -> float:
    """Seconds from spawning `loyal ARGS` to its exit (it must succeed)."""
    started = time.perf_counter()
    subprocess.run([loyal_executable(), *args], env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    """Time each command `--repeat` times and print the best of each as one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=None, help="LOYAL_HOME for `loyal models`")
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args()
    env = dict(os.environ)
    if options.home is not None:
        env["LOYAL_HOME"] = str(options.home.resolve())
    result: dict[str, object] = {}
    for key, args in COMMANDS.items():
        times = [wall_seconds(args, env) for _ in range(options.repeat)]
        result[key] = round(min(times), 2)
        result[key.replace("_seconds", "_max_seconds")] = round(max(times), 2)
    result["bytecode_cache"] = os.environ.get("PYTHONDONTWRITEBYTECODE") != "1"
    print(json.dumps(result))


if __name__ == "__main__":
    main()
