"""Durable feedback store: how customers answered actions, read back by the contact policy.

One SQLite file in WAL mode with `synchronous=FULL`: a recorded answer survives a crash, and
every worker process reads what the others wrote (readers never block the writer).
"""

from __future__ import annotations

import sqlite3
import threading
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


class FeedbackStoreError(LoyalError):
    """The feedback store cannot be read or written."""


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
        self, customer_id: str, action_id: str, channel: str, outcome: str, ts: datetime
    ) -> int:
        """Store one answer durably; return its id."""
        now = datetime.now(UTC).timestamp()
        try:
            cursor = self._connection().execute(
                "INSERT INTO feedback (customer_id, action_id, channel, outcome, ts, recorded_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (customer_id, action_id, channel, outcome, _utc(ts).timestamp(), now),
            )
        except sqlite3.Error as exc:
            raise FeedbackStoreError(f"cannot record feedback: {exc}") from None
        return int(cursor.lastrowid or 0)

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
