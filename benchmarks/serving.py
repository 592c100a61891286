"""Benchmark the next-best-action service over HTTP at fixed request rates; print one JSON line.

Open-loop load (requests leave on a fixed schedule whatever the server does, so a slow answer
cannot hide the queue behind it): latency runs from the moment the client sets off to send a
request, so waiting for a free connection counts; how late the client's own timer fired
(uvloop timers have millisecond resolution) is reported apart as `client_late_p99_ms`.
The client is a minimal asyncio HTTP/1.1 keep-alive client (no httpx), light enough to share
two cores with the server.

Phases: `/next_best_action` at 200 requests/s for `--duration` seconds (p50, p95, p99,
errors); the same rate on `/status`, a trivial endpoint of the same service (floor); then
rates stepped up until p99 reaches 50 ms, an error occurs or the server falls behind
(`max_rps` = the highest rate that held).

    .venv/bin/python benchmarks/serving.py [--home PATH | --url URL] [--workers 2] [--port N]
        [--duration 10] [--step-duration 5] [--api-key KEY] [--no-stages | --stages-only]

Without `--url` it starts `bentoml serve` for the trained project at `--home` (default: the
configured home) and stops it at the end. Before the HTTP phases (unless `--no-stages`), one
in-process runtime answers the same requests and `stages_us` gives the mean microseconds per
request of each stage of `/next_best_action` (parse, context check, online read, churn and
scores, cross-sell, contact history, policy, answer, encode; `total` includes what lies between;
`extra_scores`, inside `scores`: the models without a path of their own, the uplift champion by
default).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)  # run as a script, this file would shadow the `serving` package

CHANNELS = ("atm", "web", "mobile", "call_center", "branch", "email")
P99_LIMIT_MS = 50.0
IDLE_SECONDS = 2.0
"""Connections idle longer are dropped (uvicorn closes keep-alive connections after 5 s)."""
STEP_RATES = (300, 400, 500, 600, 700, 800, 900, 1000, 1100, 1200, 1400, 1600, 1800, 2000)


@dataclass
class Result:
    """Latencies (seconds, from setting off to send) and failures of one phase."""

    rate: float
    duration: float
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    late: list[float] = field(default_factory=list)

    def fail(self, kind: str) -> None:
        """Count one failed request and what failed."""
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1

    def quantile_ms(self, q: float) -> float | None:
        """A latency quantile in milliseconds (nearest rank)."""
        return _quantile_ms(self.latencies, q)

    @property
    def achieved_rps(self) -> float:
        """Answers per second actually completed."""
        return (len(self.latencies) + self.errors) / self.duration

    def summary(self) -> dict[str, Any]:
        """The phase in numbers."""
        return {
            "rate": self.rate,
            "achieved_rps": round(self.achieved_rps, 1),
            "p50_ms": self.quantile_ms(0.50),
            "p95_ms": self.quantile_ms(0.95),
            "p99_ms": self.quantile_ms(0.99),
            "errors": self.errors,
            "error_kinds": self.error_kinds,
            "client_late_p99_ms": _quantile_ms(self.late, 0.99),
            "requests": len(self.latencies) + self.errors,
        }


def _quantile_ms(values: list[float], q: float) -> float | None:
    """A quantile of seconds, in milliseconds (nearest rank)."""
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))
    return round(ordered[index] * 1000.0, 3)


class Connection:
    """One keep-alive HTTP/1.1 connection sending pre-built POST requests."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.last_used = time.monotonic()

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        """Connect to the server."""
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def post(self, request: bytes) -> int:
        """Send one request, read the whole answer, return the status code."""
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
                break
        if length:
            await self.reader.readexactly(length)
        self.last_used = time.monotonic()
        return status

    def close(self) -> None:
        """Close the socket."""
        self.writer.close()


class Client:
    """Fires pre-built requests on a fixed schedule over a pool of keep-alive connections."""

    def __init__(self, url: str, max_connections: int = 64) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.max_connections = max_connections
        self._idle: list[Connection] = []
        self._open = 0
        self._freed = asyncio.Condition()

    def build(self, path: str, body: dict[str, Any], headers: dict[str, str]) -> bytes:
        """One raw HTTP request."""
        payload = json.dumps(body).encode()
        lines = [
            f"POST {path} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            "Content-Type: application/json",
            f"Content-Length: {len(payload)}",
            *(f"{k}: {v}" for k, v in headers.items()),
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload

    async def _acquire(self) -> Connection:
        while True:
            while self._idle:
                connection = self._idle.pop()
                if time.monotonic() - connection.last_used < IDLE_SECONDS:
                    return connection
                connection.close()
                self._open -= 1
            if self._open < self.max_connections:
                self._open += 1
                try:
                    return await Connection.open(self.host, self.port)
                except OSError:
                    self._open -= 1
                    raise
            async with self._freed:
                await self._freed.wait()

    async def _release(self, connection: Connection | None) -> None:
        if connection is None:
            self._open -= 1
        else:
            self._idle.append(connection)
        async with self._freed:
            self._freed.notify()

    async def _one(self, request: bytes, scheduled: float, result: Result) -> None:
        started = time.perf_counter()
        result.late.append(max(0.0, started - scheduled))
        connection: Connection | None = None
        try:
            connection = await self._acquire()
            status = await connection.post(request)
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
            if connection is not None:
                connection.close()
            await self._release(None)
            result.fail(type(exc).__name__)
            return
        await self._release(connection)
        if status == 200:
            result.latencies.append(time.perf_counter() - started)
        else:
            result.fail(f"http_{status}")

    async def run(self, requests: list[bytes], rate: float, duration: float) -> Result:
        """Send `rate` requests a second for `duration` seconds, cycling through `requests`."""
        result = Result(rate, duration)
        interval = 1.0 / rate
        total = int(rate * duration)
        tasks: set[asyncio.Task[None]] = set()
        start = time.perf_counter() + 0.01
        for i in range(total):
            scheduled = start + i * interval
            delay = scheduled - time.perf_counter()
            if delay > 0.0005:
                await asyncio.sleep(delay)
            task = asyncio.create_task(self._one(requests[i % len(requests)], scheduled, result))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks, timeout=30)
        result.duration = max(duration, time.perf_counter() - start)
        return result

    def close(self) -> None:
        """Close every idle connection."""
        for connection in self._idle:
            connection.close()
        self._idle.clear()


def nba_bodies(customer_ids: list[str]) -> list[dict[str, Any]]:
    """Next-best-action request bodies over the customers and channels, shuffled (seeded)."""
    rng = random.Random(7)
    bodies: list[dict[str, Any]] = [
        {"customer_id": cid, "channel": rng.choice(CHANNELS), "k": rng.choice((1, 3))}
        for cid in customer_ids
    ]
    rng.shuffle(bodies)
    return bodies


def nba_requests(client: Client, customer_ids: list[str], headers: dict[str, str]) -> list[bytes]:
    """Next-best-action requests over the customers and channels, shuffled (seeded)."""
    return [client.build("/next_best_action", body, headers) for body in nba_bodies(customer_ids)]


def sample_customers(home: Path | None, n: int = 1000) -> list[str]:
    """Customer ids from the loaded contract tables (plus 2% unknown ids for cold starts)."""
    ids: list[str] = []
    if home is not None:
        with contextlib.suppress(Exception):
            import pandas as pd

            from loyal.settings import load_settings

            settings = load_settings(home=home)
            table = pd.read_parquet(settings.paths.contract_dir / "customers.parquet")
            ids = (
                table["customer_id"].astype(str).sample(min(n, len(table)), random_state=0).tolist()
            )
    if not ids:
        ids = [f"C{i:07d}" for i in range(1, n + 1)]
    return ids + [f"UNKNOWN-{i}" for i in range(max(1, len(ids) // 50))]


STAGES = {
    "context": "_checked_context",
    "features": "_customers",
    "scores": "_scores",
    "cross_sell": "_recommendations",
    "history": "_history",
}
"""Stage -> the runtime method timed for it."""
STAGE_FUNCTIONS = {"policy": "decide", "answer": "_nba_answer"}
"""Stage -> the `serving.runtime` function timed for it."""
INNER_STAGES = {"extra_scores": "_extra_scores"}
"""Stages timed inside another (`scores`): the models without a path of their own (uplift by
default); left out of `other`."""


def stage_times(home: Path, bodies: list[bytes], rounds: int = 3) -> dict[str, Any]:
    """Mean microseconds per request of each stage, answered by one in-process runtime.

    The runtime's own methods and functions are wrapped with timers (a fraction of a microsecond
    each); parsing and encoding are the service's own steps; `other` is the rest of `total`.
    `first`: each request's first answer (nothing kept yet, as for a customer not seen since
    start-up); `kept`: the later rounds (what the runtime keeps per customer and row reused).
    """
    import serving.runtime as runtime_module
    from loyal.settings import load_settings
    from serving.runtime import Runtime
    from serving.schemas import NextBestActionRequest
    from serving.wire import encode_answer

    spent: dict[str, float] = {}

    def timed(stage: str, function: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[stage] = spent.get(stage, 0.0) + time.perf_counter() - started

        return wrapper

    runtime = Runtime.start(load_settings(home=home))
    for stage, method in {**STAGES, **INNER_STAGES}.items():
        setattr(runtime, method, timed(stage, getattr(runtime, method)))
    originals = {name: getattr(runtime_module, name) for name in STAGE_FUNCTIONS.values()}
    for stage, name in STAGE_FUNCTIONS.items():
        setattr(runtime_module, name, timed(stage, originals[name]))
    figures: dict[str, Any] = {"model_versions": runtime.model_versions}
    kept: dict[str, float] = {}
    try:
        for round_ in range(rounds):
            spent.clear()
            for body in bodies:
                started = time.perf_counter()
                request = NextBestActionRequest.model_validate_json(body)
                parsed = time.perf_counter()
                answer = runtime.next_best_action(request)
                answered = time.perf_counter()
                encode_answer(answer)
                done = time.perf_counter()
                spent["parse"] = spent.get("parse", 0.0) + parsed - started
                spent["encode"] = spent.get("encode", 0.0) + done - answered
                spent["total"] = spent.get("total", 0.0) + done - started
            inner = sum(spent.get(stage, 0.0) for stage in INNER_STAGES)
            spent["other"] = 2 * spent["total"] - sum(spent.values()) + inner
            if round_ == 0:
                figures["first"] = _per_request_us(spent, len(bodies))
            else:
                kept = {stage: kept.get(stage, 0.0) + seconds for stage, seconds in spent.items()}
    finally:
        for name, function in originals.items():
            setattr(runtime_module, name, function)
    figures["kept"] = _per_request_us(kept, len(bodies) * max(1, rounds - 1))
    return figures


def _per_request_us(spent: dict[str, float], requests: int) -> dict[str, float]:
    return {stage: round(seconds * 1e6 / requests, 1) for stage, seconds in spent.items()}


def holds(result: Result) -> bool:
    """Whether a step held its rate: p99 under the limit, no errors, nothing fell behind."""
    p99 = result.quantile_ms(0.99)
    return (
        result.errors == 0
        and p99 is not None
        and p99 < P99_LIMIT_MS
        and result.achieved_rps >= 0.97 * result.rate
    )


class CpuMeter:
    """CPU seconds used by a process tree (the server and its workers) and by this client."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid

    def read(self) -> tuple[float, float]:
        """(server CPU seconds, client CPU seconds) so far."""
        client = time.process_time()
        if self.pid is None:
            return math.nan, client
        import psutil

        server = 0.0
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(self.pid)
            for process in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    times = process.cpu_times()
                    server += times.user + times.system
        return server, client


async def metered(
    client: Client, meter: CpuMeter, requests: list[bytes], rate: float, duration: float
) -> tuple[Result, dict[str, float | None]]:
    """A phase and the CPU milliseconds each request cost the server and the client."""
    server_before, client_before = meter.read()
    result = await client.run(requests, rate, duration)
    server_after, client_after = meter.read()
    done = max(1, len(result.latencies) + result.errors)
    server_ms = (server_after - server_before) * 1000 / done
    return result, {
        "server_cpu_ms": None if math.isnan(server_ms) else round(server_ms, 3),
        "client_cpu_ms": round((client_after - client_before) * 1000 / done, 3),
    }


async def measure(
    args: argparse.Namespace, url: str, home: Path | None, server_pid: int | None = None
) -> dict[str, Any]:
    """All phases against a ready server at `url`."""
    headers = {"X-API-Key": args.api_key} if args.api_key else {}
    client = Client(url)
    meter = CpuMeter(server_pid)
    requests = nba_requests(client, sample_customers(home), headers)
    trivial = [client.build("/status", {}, headers)]
    # warm-up: every request once (connections, key and page caches, first allocations)
    await client.run(requests, args.rate, min(10.0, len(requests) / args.rate))
    await client.run(trivial, args.rate, 1.0)
    fixed, fixed_cpu = await metered(client, meter, requests, args.rate, args.duration)
    floor, floor_cpu = await metered(client, meter, trivial, args.rate, args.duration)
    steps: list[dict[str, Any]] = []
    max_rps = args.rate if holds(fixed) else 0
    for rate in (r for r in STEP_RATES if r > args.rate):
        result = await client.run(requests, rate, args.step_duration)
        steps.append(result.summary())
        if not holds(result):
            break
        max_rps = rate
        await asyncio.sleep(1.0)
    client.close()
    return {
        "endpoint": "/next_best_action",
        "rate": args.rate,
        "duration_s": args.duration,
        "p50_ms": fixed.quantile_ms(0.50),
        "p95_ms": fixed.quantile_ms(0.95),
        "p99_ms": fixed.quantile_ms(0.99),
        "errors": fixed.errors,
        "max_rps": max_rps,
        "floor_endpoint": "/status",
        "floor_p50_ms": floor.quantile_ms(0.50),
        "floor_p99_ms": floor.quantile_ms(0.99),
        "gap_p50_ms": _gap(fixed.quantile_ms(0.50), floor.quantile_ms(0.50)),
        "client_late_p99_ms": _quantile_ms(fixed.late, 0.99),
        "server_cpu_ms_per_request": fixed_cpu["server_cpu_ms"],
        "floor_server_cpu_ms_per_request": floor_cpu["server_cpu_ms"],
        "client_cpu_ms_per_request": fixed_cpu["client_cpu_ms"],
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "steps": steps,
    }


def _gap(nba: float | None, floor: float | None) -> float | None:
    """NBA p50 minus the /status floor p50 (ms): what the NBA work adds at the median."""
    return None if nba is None or floor is None else round(nba - floor, 3)


def decision_log_cost(repeats: int = 3000) -> dict[str, Any]:
    """Milliseconds the decision hook adds per answer: exploration plus the committed write.

    The same greedy decision (the bank catalog, a customer with 80 features) is settled
    `repeats` times with the embedded log (SQLite WAL, synchronous=NORMAL, one commit each) and
    with no log, in-process; the p50 difference is the logging's share of a request.
    """
    import tempfile
    from datetime import UTC, datetime

    from decisions.explore import Exploration
    from decisions.log import DecisionLog
    from decisions.record import DecisionRecorder
    from models.nba import CustomerScores, decide
    from models.offers import load_catalog
    from serving.runtime import new_decision_id

    features: dict[str, Any] = {f"feature_{i}": float(i) for i in range(60)}
    features.update(
        consent_marketing=True,
        tenure_days=900,
        holds_checking=True,
        balance_checking=6000.0,
        idle_cash=5000.0,
        total_deposits=6000.0,
        complaints_90d=2,
        logins_30d=4,
        monetary_365d=3000.0,
        tier="gold",
        segment_id=2,
        segment_name="affluent savers",
        clv=2400.0,
        churn_probability=0.4,
    )
    scores = CustomerScores(churn_probability=0.4, tier="gold", segment_id=2, clv=2400.0)
    now = datetime.now(UTC)
    decision = decide(features, scores, "web", load_catalog(), [], now, k=2)
    timings: dict[str, list[float]] = {"logged": [], "unlogged": []}
    with tempfile.TemporaryDirectory() as folder:
        recorders = {
            "logged": DecisionRecorder(DecisionLog(Path(folder) / "d.db"), Exploration()),
            "unlogged": DecisionRecorder(None, Exploration()),
        }
        for i in range(repeats):
            for name, recorder in recorders.items():
                started = time.perf_counter()
                recorder.settle(decision, new_decision_id(now), f"C{i}", features, {}, 2)
                timings[name].append(time.perf_counter() - started)
    logged, unlogged = (_quantile_ms(timings[n], 0.5) or 0.0 for n in ("logged", "unlogged"))
    return {
        "decision_log_p50_ms": round(logged, 4),
        "decision_log_p99_ms": round(_quantile_ms(timings["logged"], 0.99) or 0.0, 4),
        "decision_hook_unlogged_p50_ms": round(unlogged, 4),
        "decision_log_added_p50_ms": round(logged - unlogged, 4),
        "decision_log_eligible": len(decision.eligible),
    }


def main() -> None:
    """Parse arguments, start the server unless given one, run the phases, print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="benchmark this running server instead of starting one")
    parser.add_argument("--home", type=Path, help="Loyal home with trained champions")
    parser.add_argument("--workers", type=int, default=2, help="server workers (started server)")
    parser.add_argument("--port", type=int, help="port of the started server (default: a free one)")
    parser.add_argument("--rate", type=float, default=200.0, help="fixed rate, requests/s")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds at the fixed rate")
    parser.add_argument("--step-duration", type=float, default=5.0, help="seconds per step")
    parser.add_argument("--api-key", default=os.environ.get("LOYAL_SERVING__API_KEY"))
    parser.add_argument(
        "--no-stages", action="store_true", help="skip the in-process time of each stage"
    )
    parser.add_argument(
        "--decision-log-only", action="store_true", help="only the in-process decision log cost"
    )
    parser.add_argument(
        "--stages-only", action="store_true", help="only the in-process time of each stage"
    )
    args = parser.parse_args()
    if args.decision_log_only:
        print(json.dumps(decision_log_cost()))
        return
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    home = args.home
    if args.url:
        report = asyncio.run(measure(args, args.url.rstrip("/"), home))
    else:
        from loyal.settings import load_settings
        from serving.process import running_server

        home = (home or load_settings().home).resolve()
        stages = None
        if not args.no_stages:
            bodies = nba_bodies(sample_customers(home))
            stages = stage_times(home, [json.dumps(body).encode() for body in bodies])
        if args.stages_only:
            print(json.dumps({"benchmark": "serving_stages", "stages_us": stages}))
            return
        env = {"LOYAL_SERVING__WORKERS": str(args.workers)}
        log_path = home / ".loyal" / "serving" / "benchmark-server.log"
        with running_server(home, env=env, log_path=log_path, port=args.port) as server:
            report = asyncio.run(measure(args, server.url, home, server.process.pid))
        report["workers"] = args.workers
        report["stages_us"] = stages
    report.update(decision_log_cost())
    report["cpus"] = os.cpu_count()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
