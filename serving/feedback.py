"""Durable feedback store: how customers answered actions, read back by the contact policy.

One SQLite file in WAL mode with `synchronous=FULL`: a recorded answer survives a crash, and
every worker process reads what the others wrote (readers never block the writer).
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from loyal.errors import LoyalError
from models.nba import ContactEvent

_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id TEXT NOT NULL,
    action_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    outcome TEXT NOT NULL,
    ts REAL NOT NULL,
    recorded_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_customer_ts ON feedback (customer_id, ts);
"""
_KEYED = """
CREATE UNIQUE INDEX IF NOT EXISTS feedback_idempotency_key ON feedback (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
"""


class FeedbackStoreError(LoyalError):
    """The feedback store cannot be read or written."""


class IdempotencyConflictError(LoyalError):
    """An idempotency key already recorded a different answer."""


@dataclass(frozen=True)
class Recorded:
    """One stored answer: its id, its time, and whether this call stored it (False: a retry)."""

    feedback_id: int
    ts: datetime
    new: bool


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class FeedbackStore:
    """Feedback events by customer, in one SQLite file.

    Args:
        path: the database file (created with its folder when missing).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = self._connection()
        with conn:
            conn.executescript(_SCHEMA)
            columns = {row[1] for row in conn.execute("PRAGMA table_info(feedback)")}
            if "idempotency_key" not in columns:  # a store made before retries were keyed
                conn.execute("ALTER TABLE feedback ADD COLUMN idempotency_key TEXT")
            conn.executescript(_KEYED)

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, timeout=5.0, isolation_level=None)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
                conn.execute("PRAGMA busy_timeout=5000")
            except sqlite3.Error as exc:
                raise FeedbackStoreError(f"cannot open feedback store {self.path}: {exc}") from None
            self._local.conn = conn
        return conn

    def record(
        self,
        customer_id: str,
        action_id: str,
        channel: str,
        outcome: str,
        ts: datetime,
        idempotency_key: str | None = None,
    ) -> Recorded:
        """Store one answer durably, once per idempotency key.

        A repeat of a key with the same customer, action, channel and outcome stores nothing
        and returns the first record (`new` False), whatever its `ts`.

        Raises:
            IdempotencyConflictError: the key already recorded a different answer.
            FeedbackStoreError: the store cannot be written.
        """
        now = datetime.now(UTC).timestamp()
        stamp = _utc(ts).timestamp()
        conn = self._connection()
        try:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO feedback "
                "(customer_id, action_id, channel, outcome, ts, recorded_at, idempotency_key) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (customer_id, action_id, channel, outcome, stamp, now, idempotency_key),
            )
            if cursor.rowcount == 1 or idempotency_key is None:
                return Recorded(int(cursor.lastrowid or 0), _utc(ts), True)
            first = conn.execute(
                "SELECT id, customer_id, action_id, channel, outcome, ts FROM feedback "
                "WHERE idempotency_key = ?",
                (idempotency_key,),
            ).fetchone()
        except sqlite3.Error as exc:
            raise FeedbackStoreError(f"cannot record feedback: {exc}") from None
        if first is None or tuple(first[1:5]) != (customer_id, action_id, channel, outcome):
            raise IdempotencyConflictError(
                "idempotency_key: already used for a different answer "
                f"(feedback {first[0] if first else '?'})"
            )
        return Recorded(int(first[0]), datetime.fromtimestamp(first[5], tz=UTC), False)

    def history(self, customer_id: str, since: datetime) -> list[ContactEvent]:
        """The customer's answers since `since`, oldest first, as contact events."""
        try:
            rows = (
                self._connection()
                .execute(
                    "SELECT action_id, ts, outcome FROM feedback "
                    "WHERE customer_id = ? AND ts >= ? ORDER BY ts",
                    (customer_id, _utc(since).timestamp()),
                )
                .fetchall()
            )
        except sqlite3.Error as exc:
            raise FeedbackStoreError(f"cannot read feedback: {exc}") from None
        return [
            ContactEvent(
                offer_id=action_id,
                timestamp=datetime.fromtimestamp(ts, tz=UTC),
                outcome=outcome,
            )
            for action_id, ts, outcome in rows
        ]

    def close(self) -> None:
        """Close this thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
