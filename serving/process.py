"""Run the service as a `bentoml serve` subprocess: start, wait until ready, stop (by its id).

Used by `loyal serve`, the service tests and the serving benchmark, so all three run the real
server the same way: the project home as working folder (its `loyal.yaml` applies), BentoML's
usage tracking off, MLflow's progress bars off.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from loyal.errors import LoyalError

SERVICE = "serving.service:Loyal"
QUIET_ENV = {
    "BENTOML_DO_NOT_TRACK": "True",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "PYTHONUNBUFFERED": "1",
    "PYTHONWARNINGS": "ignore::DeprecationWarning",
}


PR_SET_PDEATHSIG = 1
"""Linux prctl option: the signal a process gets when its parent dies."""


class ServerError(LoyalError):
    """The service did not start or stopped early; the message quotes its log."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def check_port_free(port: int, host: str = "127.0.0.1") -> None:
    """Fail early, in one line, when something already listens on `host:port`.

    Raises:
        ServerError: the port is taken (or the interface cannot be bound).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            reason = "already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise ServerError(
                f"cannot serve on {host}:{port}: {reason}; stop what holds it or pick "
                "another port with --port"
            ) from None


def die_with_parent() -> None:
    """Ask Linux to SIGTERM this process when its parent dies (no orphan keeps serving).

    Called in the `bentoml serve` child before it starts and in each service worker, so
    killing `loyal serve` (even with SIGKILL) stops the server, and a killed server stops its
    workers. Elsewhere than Linux this does nothing.
    """
    prctl = _prctl()
    if prctl is not None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@functools.cache
def _prctl() -> Callable[..., int] | None:
    """libc's prctl, looked up once (in the parent: a forked child only calls it)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    return prctl


def serve_command(port: int, host: str = "127.0.0.1", target: str = SERVICE) -> list[str]:
    """The `bentoml serve` command line for the service (or a built Bento tag)."""
    return [sys.executable, "-m", "bentoml", "serve", target, "--host", host, "--port", str(port)]


def _get(url: str, timeout: float = 2.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


@dataclass
class ServerProcess:
    """A running `bentoml serve` and where it listens.

    Attributes:
        process: the subprocess (leader of its own process group).
        url: base URL, e.g. http://127.0.0.1:3000.
        log_path: its combined stdout and stderr (None when they go to the console).
    """

    process: subprocess.Popen[bytes]
    url: str
    log_path: Path | None = None

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server's log."""
        if self.log_path is None or not self.log_path.is_file():
            return ""
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def wait(self, path: str = "/readyz", timeout: float = 120.0) -> float:
        """Poll `path` until it answers 200; return the seconds waited.

        Raises:
            ServerError: the process exited, or `timeout` passed.
        """
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                raise ServerError(
                    f"the service exited with code {self.process.returncode}:\n{self.log_tail()}"
                )
            with contextlib.suppress(OSError):
                if _get(self.url + path) == 200:
                    return time.monotonic() - started
            time.sleep(0.25)
        raise ServerError(f"{self.url}{path} not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the server and its workers (its own process group), killing it if it lingers."""
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)


def start_server(
    home: Path,
    port: int | None = None,
    host: str = "127.0.0.1",
    env: Mapping[str, str] | None = None,
    log_path: Path | None = None,
    target: str = SERVICE,
) -> ServerProcess:
    """Start `bentoml serve` for the project at `home` (not waiting for it).

    Args:
        home: the Loyal home (working folder; `LOYAL_HOME`).
        port: where to listen (default: a free port).
        host: the interface.
        env: more environment variables (e.g. `LOYAL_SERVING__API_KEY`).
        log_path: file for the server's output (default: inherit the console).
        target: the service import path, or a built Bento tag.
    """
    port = port or free_port(host)
    _prctl()  # resolved before the fork: the child only calls it
    full_env = {**os.environ, **QUIET_ENV, "LOYAL_HOME": str(home), **(env or {})}
    full_env.update(_own_metrics_home(full_env, port, target))
    output: IO[bytes] | int | None = None
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        output = log_path.open("wb")
    try:
        process = subprocess.Popen(
            serve_command(port, host, target),
            cwd=home,
            env=full_env,
            stdout=output,
            stderr=subprocess.STDOUT if output is not None else None,
            start_new_session=True,
            preexec_fn=die_with_parent,  # only prctl, before exec
        )
    finally:
        if output is not None and not isinstance(output, int):
            output.close()
    return ServerProcess(process, f"http://{host}:{port}", log_path)


def _own_metrics_home(env: Mapping[str, str], port: int, target: str) -> dict[str, str]:
    """A BentoML home of this server's own when it serves the source (not a built Bento).

    BentoML keeps Prometheus' multiprocess files in `$BENTOML_HOME/prometheus_multiproc_dir` and
    empties that folder when a server starts, so two servers sharing a home wipe each other's
    metrics. A source-served Loyal reads its champions from MLflow, not from BentoML's model store,
    so it needs nothing else from that home. A home the caller set, or a Bento, is left alone.
    """
    if target != SERVICE or "BENTOML_HOME" in env:
        return {}
    own = Path(tempfile.gettempdir()) / f"loyal-bentoml-{os.getuid()}-{port}"
    return {"BENTOML_HOME": str(own)}


@contextlib.contextmanager
def running_server(
    home: Path,
    env: Mapping[str, str] | None = None,
    log_path: Path | None = None,
    ready_path: str = "/readyz",
    timeout: float = 120.0,
    port: int | None = None,
) -> Iterator[ServerProcess]:
    """A started and ready server (on `port`, default a free one), stopped on exit."""
    server = start_server(home, port=port, env=env, log_path=log_path)
    try:
        server.wait(ready_path, timeout)
        yield server
    finally:
        server.stop()
