"""A sample of served requests, kept off the request path, and its drift for `/metrics`.

The service hands each live churn answer (the customer's feature row and the probability) to
`RequestSampler.offer`, which only appends a reference to a bounded deque: no copy, no lock,
no I/O on the request path. A daemon thread wakes every `flush_seconds` and, from the last
`window` answers, (1) sets Prometheus gauges of the PSI of the served churn scores and of a few
key features against the champion's reference profile, and (2) writes the window as Parquet
(``<data_dir>/monitoring/served/sample-<pid>.parquet``, atomically) for `loyal monitor`.

The decision log of the closed loop (issue 20) records every decision with its features and
scores; once it exists, `served_counts` can read it instead of these samples (same columns:
feature names plus ``churn_probability``), and the sampler can be switched off.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from monitoring.drift import column_drift
from monitoring.profile import Profile, count_parquet
from monitoring.reference import SCORE_PREFIX

log = logging.getLogger(__name__)

SERVED_FOLDER = "served"
SCORE_COLUMN = "churn_probability"
KEY_FEATURES = ("tenure_days", "complaints_90d", "activity_trend", "total_deposits", "logins_30d")
"""Features whose served PSI `/metrics` exports beside the churn score's."""

MAX_SAMPLE_AGE_SECONDS = 86_400.0
"""`loyal monitor` reads the served samples written in the last day."""

Gauge = Callable[[str, float], None]
"""Sets the PSI gauge of one column: (column, corrected PSI)."""


class NullSampler:
    """Samples nothing (tests, scripts, a service without monitoring)."""

    def offer(self, features: Mapping[str, Any] | None, probability: float | None) -> None:
        """Ignore."""


class RequestSampler:
    """The last `window` served churn answers, summarised and written by a background thread.

    Args:
        folder: the monitoring folder (`<data_dir>/monitoring`).
        reference: loads the churn champion's reference profile (None: none yet); called in
            the background thread, never on the request path.
        gauge: sets one column's PSI gauge.
        window: answers kept (the sliding window).
        flush_seconds: seconds between summaries.
        columns: the feature columns written to the sample.
    """

    def __init__(
        self,
        folder: Path,
        reference: Callable[[], Profile | None],
        gauge: Gauge,
        window: int = 2000,
        flush_seconds: float = 30.0,
        columns: Sequence[str] | None = None,
    ) -> None:
        self.folder = folder
        self.reference = reference
        self.gauge = gauge
        self.flush_seconds = flush_seconds
        self.columns = list(columns) if columns is not None else None
        self.recent: deque[tuple[Mapping[str, Any], float]] = deque(maxlen=window)
        self._profile: Profile | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def offer(self, features: Mapping[str, Any] | None, probability: float | None) -> None:
        """Keep one served answer (a reference to its row; O(1), thread-safe)."""
        if features is not None and probability is not None:
            self.recent.append((features, probability))

    def start(self) -> RequestSampler:
        """Start the background thread (a daemon: it never holds the worker up)."""
        self._thread = threading.Thread(target=self._loop, name="loyal-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the background thread after its current pass."""
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            try:
                self.flush()
            except Exception as exc:  # monitoring must never take the service down
                log.warning("request sample not summarised: %s", exc)

    def flush(self) -> dict[str, float]:
        """Summarise the window now: gauges set, sample written; the PSI per column."""
        if self._profile is None:
            self._profile = self.reference()
        table = self.window_table()
        if table is None:
            return {}
        self._write(table)
        return self._gauges(table) if self._profile is not None else {}

    def window_table(self) -> pa.Table | None:
        """The window as a table: feature columns plus `churn_probability`."""
        rows = list(self.recent)
        if not rows:
            return None
        names = self.columns or self._profile_features() or sorted(rows[0][0])
        columns: dict[str, Any] = {}
        for name in names:
            values = [row.get(name) for row, _ in rows]
            try:
                columns[name] = pa.array(values)
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                columns[name] = pa.array([None if v is None else str(v) for v in values])
        columns[SCORE_COLUMN] = pa.array([p for _, p in rows], type=pa.float64())
        return pa.table(columns)

    def _profile_features(self) -> list[str]:
        if self._profile is None:
            return []
        return [name for name in self._profile.columns if ":" not in name]

    def _write(self, table: pa.Table) -> Path:
        target = self.folder / SERVED_FOLDER / f"sample-{os.getpid()}.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = target.with_name(f".{target.name}.tmp")
        pq.write_table(table, staging)
        staging.replace(target)
        return target

    def _gauges(self, table: pa.Table) -> dict[str, float]:
        assert self._profile is not None
        found = {}
        for column in (SCORE_COLUMN, *KEY_FEATURES):
            key = SCORE_PREFIX + column if column == SCORE_COLUMN else column
            reference = self._profile.columns.get(key)
            if reference is None or column not in table.column_names:
                continue
            drift = column_drift(reference, reference.counts_of(table[column]))
            found[column] = drift.corrected
            self.gauge(column, drift.corrected)
        return found


def served_counts(
    folder: Path, profile: Profile, max_age_seconds: float = MAX_SAMPLE_AGE_SECONDS
) -> dict[str, np.ndarray]:
    """Counts of the recent served samples (one per worker) in a reference profile's bins.

    Samples not rewritten for `max_age_seconds` (a worker gone, a server stopped) are left out.
    """
    import time

    files = [
        file
        for file in sorted((folder / SERVED_FOLDER).glob("sample-*.parquet"))
        if time.time() - file.stat().st_mtime <= max_age_seconds
    ]
    renamed = _served_profile(profile)
    total: dict[str, np.ndarray] = {}
    for file in files:
        for name, counts in count_parquet(file, renamed).items():
            key = SCORE_PREFIX + name if name == SCORE_COLUMN else name
            total[key] = total[key] + counts if key in total else counts
    return total


def _served_profile(profile: Profile) -> Profile:
    """The profile with the churn score under its served column name."""
    columns = {name: column for name, column in profile.columns.items() if ":" not in name}
    score = profile.columns.get(SCORE_PREFIX + SCORE_COLUMN)
    if score is not None:
        columns[SCORE_COLUMN] = score
    return Profile(columns, profile.rows, profile.source)
