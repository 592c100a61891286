"""The decision log: every next-best-action answer, its candidates, propensities and answers.

One row per decision (time, customer, channel, policy, the shown primary action and the exact
probability with which the policy chose it) plus a JSON payload (every eligible candidate with
its score and propensity, the actions shown, model versions, the features the policy read).
Answers from `/feedback` are kept beside it, matched to their decision. A decision is written and
committed before its answer leaves the service, so an acknowledged decision is never lost:
SQLite in WAL mode with `synchronous=NORMAL` (durable against a killed process) by default,
PostgreSQL (autocommit) in the production profile.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from loyal.errors import LoyalError

ACCEPTED, DECLINED, IGNORED, PENDING = "accepted", "declined", "ignored", "pending"
"""What became of a decision's primary action (pending: no answer yet, window still open)."""

_SQLITE_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS decisions (
        decision_id TEXT PRIMARY KEY,
        ts REAL NOT NULL,
        customer_id TEXT NOT NULL,
        channel TEXT NOT NULL,
        policy TEXT NOT NULL,
        explored INTEGER NOT NULL,
        action_id TEXT,
        propensity REAL,
        shown TEXT NOT NULL,
        payload TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS decisions_customer_ts ON decisions (customer_id, ts)",
    """CREATE TABLE IF NOT EXISTS answers (
        decision_id TEXT NOT NULL,
        action_id TEXT NOT NULL,
        outcome TEXT NOT NULL,
        ts REAL NOT NULL,
        PRIMARY KEY (decision_id, action_id, outcome)
    )""",
)
_POSTGRES_SCHEMA = tuple(
    s.replace("REAL", "DOUBLE PRECISION").replace("INTEGER", "SMALLINT") for s in _SQLITE_SCHEMA
)


class DecisionLogError(LoyalError):
    """The decision log cannot be opened, written or read."""


@dataclass(frozen=True)
class Candidate:
    """One eligible action of a decision (after eligibility, consent, spend and contact rules).

    Attributes:
        action_id: the offer id.
        score: the policy's ranking key (expected value).
        p_accept: the acceptance probability the policy used.
        value: value to the business if accepted.
        cost: cost of making the offer.
        propensity: probability that the policy puts this action first (the primary slot).
        shown: whether the answer showed it.
        shown_propensity: probability that the answer shows it at all (any slot).
        evidence: where `p_accept` came from (catalog prior, learned evidence).
    """

    action_id: str
    score: float
    p_accept: float
    value: float
    cost: float
    propensity: float
    shown: bool = False
    shown_propensity: float = 0.0
    evidence: str | None = None

    @property
    def uplift_valued(self) -> bool:
        """Valued by the uplift model (P(accept) 1, value uplift x CLV): the serving policy
        keeps that price whatever an acceptance model says, so a re-ranking must keep it too."""
        return (self.evidence or "").startswith("uplift model")


@dataclass(frozen=True)
class Decision:
    """One logged decision."""

    decision_id: str
    ts: datetime
    customer_id: str
    channel: str
    policy: str
    explored: bool
    action_id: str | None
    propensity: float | None
    candidates: tuple[Candidate, ...] = ()
    shown: tuple[str, ...] = ()
    model_versions: Mapping[str, str | None] = field(default_factory=dict)
    features: Mapping[str, Any] | None = None
    cold_start: bool = False


@dataclass(frozen=True)
class Shown:
    """Whom a logged decision answered, where, and which actions it showed."""

    customer_id: str
    channel: str
    actions: tuple[str, ...]


@dataclass(frozen=True)
class Outcome:
    """A logged decision with what became of its primary action."""

    decision: Decision
    outcome: str
    answered_at: datetime | None

    @property
    def reward(self) -> float:
        """1 for accepted, else 0."""
        return 1.0 if self.outcome == ACCEPTED else 0.0


def _json_default(value: Any) -> Any:
    item = getattr(value, "item", None)
    if callable(item):
        return item()
    return str(value)


def _dumps(value: Any) -> str:
    return json.dumps(value, default=_json_default, separators=(",", ":"))


def _shown_actions(shown: str | None) -> tuple[str, ...]:
    """The `shown` column (action ids separated by spaces) as a tuple."""
    return tuple(shown.split()) if shown else ()


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class DecisionLog:
    """Decisions and their answers in SQLite (a file) or PostgreSQL (a URL).

    Args:
        target: a SQLite file path, or a `postgresql://` URL (`postgresql+psycopg://` accepted).
    """

    def __init__(self, target: Path | str) -> None:
        text = str(target)
        self.postgres = text.startswith("postgresql")
        self.target = (
            text.replace("postgresql+psycopg://", "postgresql://") if self.postgres else text
        )
        self._mark = "%s" if self.postgres else "?"
        self._local = threading.local()
        if self.postgres:
            self._ensure_database()
        else:
            Path(text).parent.mkdir(parents=True, exist_ok=True)
        conn = self._connection()
        try:
            for statement in _POSTGRES_SCHEMA if self.postgres else _SQLITE_SCHEMA:
                conn.execute(statement)
        except Exception as exc:  # sqlite3.Error or psycopg.Error
            raise DecisionLogError(
                f"cannot create the decision log in {self.where}: {exc}"
            ) from None

    @property
    def where(self) -> str:
        """The log's location without credentials."""
        return self.target.split("@")[-1] if self.postgres else self.target

    def _ensure_database(self) -> None:
        """Create the PostgreSQL database named in the URL when it does not exist yet."""
        import psycopg
        from psycopg import sql

        base, _, name = self.target.rpartition("/")
        name = name.split("?")[0]
        try:
            with psycopg.connect(f"{base}/postgres", autocommit=True, connect_timeout=5) as admin:
                found = admin.execute(
                    "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
                ).fetchone()
                if found is None:
                    admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.errors.DuplicateDatabase:
            return
        except psycopg.Error as exc:
            raise DecisionLogError(f"cannot reach PostgreSQL for {self.where}: {exc}") from None

    def _connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        try:
            if self.postgres:
                import psycopg

                conn = psycopg.connect(self.target, autocommit=True, connect_timeout=5)
            else:
                conn = sqlite3.connect(self.target, timeout=5.0, isolation_level=None)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA busy_timeout=5000")
        except Exception as exc:
            raise DecisionLogError(f"cannot open the decision log {self.where}: {exc}") from None
        self._local.conn = conn
        return conn

    def _sql(self, statement: str) -> str:
        return statement.replace("?", self._mark)

    def record(self, decision: Decision) -> None:
        """Write one decision and commit it (before the answer leaves the service).

        Raises:
            DecisionLogError: the log cannot be written.
        """
        payload = {
            "candidates": [asdict(c) for c in decision.candidates],
            "model_versions": dict(decision.model_versions),
            "features": decision.features,
            "cold_start": decision.cold_start,
        }
        row = (
            decision.decision_id,
            _utc(decision.ts).timestamp(),
            decision.customer_id,
            decision.channel,
            decision.policy,
            int(decision.explored),
            decision.action_id,
            decision.propensity,
            " ".join(decision.shown),
            _dumps(payload),
        )
        try:
            self._connection().execute(
                self._sql(
                    "INSERT INTO decisions (decision_id, ts, customer_id, channel, policy, "
                    "explored, action_id, propensity, shown, payload) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                ),
                row,
            )
        except Exception as exc:
            raise DecisionLogError(f"cannot log decision {decision.decision_id}: {exc}") from None

    def answer(
        self,
        customer_id: str,
        action_id: str,
        outcome: str,
        ts: datetime,
        decision_id: str | None = None,
    ) -> str | None:
        """Record an answer against its decision; returns the decision id it was matched to.

        Without a `decision_id` the answer goes to the customer's latest decision (at or before
        `ts`) that showed `action_id`; None when there is no such decision (nothing recorded).
        """
        stamp = _utc(ts).timestamp()
        try:
            conn = self._connection()
            if decision_id is None:
                found = conn.execute(
                    self._sql(
                        "SELECT decision_id FROM decisions WHERE customer_id = ? AND ts <= ? "
                        "AND (' ' || shown || ' ') LIKE ? ORDER BY ts DESC LIMIT 1"
                    ),
                    (customer_id, stamp + 1.0, f"% {action_id} %"),
                ).fetchone()
                if found is None:
                    return None
                decision_id = str(found[0])
            conflict = "ON CONFLICT DO NOTHING" if self.postgres else ""
            verb = "INSERT" if self.postgres else "INSERT OR IGNORE"
            conn.execute(
                self._sql(
                    f"{verb} INTO answers (decision_id, action_id, outcome, ts) "
                    f"VALUES (?, ?, ?, ?) {conflict}"
                ),
                (decision_id, action_id, outcome, stamp),
            )
        except Exception as exc:
            raise DecisionLogError(f"cannot record the answer to {decision_id}: {exc}") from None
        return decision_id

    def shown(self, decision_id: str) -> Shown | None:
        """The customer, channel and shown actions of one decision; None when it is not logged."""
        rows = self._query(
            "SELECT customer_id, channel, shown FROM decisions WHERE decision_id = ?",
            (decision_id,),
        )
        if not rows:
            return None
        customer_id, channel, shown = rows[0]
        return Shown(str(customer_id), str(channel), _shown_actions(shown))

    def ids(self) -> set[str]:
        """Every logged decision id."""
        rows = self._query("SELECT decision_id FROM decisions", ())
        return {str(r[0]) for r in rows}

    def answered(self) -> set[tuple[str, str, str]]:
        """Every recorded answer as (decision_id, action_id, outcome)."""
        rows = self._query("SELECT decision_id, action_id, outcome FROM answers", ())
        return {(str(a), str(b), str(c)) for a, b, c in rows}

    def _query(self, statement: str, params: Sequence[Any]) -> list[Any]:
        try:
            return list(self._connection().execute(self._sql(statement), params).fetchall())
        except Exception as exc:
            raise DecisionLogError(f"cannot read the decision log {self.where}: {exc}") from None

    def decisions(self, since: datetime | None = None) -> Iterator[Decision]:
        """Logged decisions, oldest first."""
        stamp = -1.0 if since is None else _utc(since).timestamp()
        rows = self._query(
            "SELECT decision_id, ts, customer_id, channel, policy, explored, action_id, "
            "propensity, shown, payload FROM decisions WHERE ts >= ? ORDER BY ts",
            (stamp,),
        )
        for did, ts, cid, channel, policy, explored, action, prop, shown, payload in rows:
            body = json.loads(payload)
            yield Decision(
                decision_id=did,
                ts=datetime.fromtimestamp(ts, tz=UTC),
                customer_id=cid,
                channel=channel,
                policy=policy,
                explored=bool(explored),
                action_id=action,
                propensity=prop,
                candidates=tuple(Candidate(**c) for c in body.get("candidates", ())),
                shown=_shown_actions(shown),
                model_versions=body.get("model_versions", {}),
                features=body.get("features"),
                cold_start=bool(body.get("cold_start", False)),
            )

    def outcomes(
        self, now: datetime, ignore_after: timedelta, since: datetime | None = None
    ) -> list[Outcome]:
        """Each decision with a primary action and what became of it by `now`.

        Accepted wins over declined; with no answer, a decision older than `ignore_after` counts
        as ignored and a younger one as pending.
        """
        answers: dict[tuple[str, str], tuple[str, float]] = {}
        rank = {ACCEPTED: 3, DECLINED: 2, IGNORED: 1}
        for did, action, outcome, ts in self._query(
            "SELECT decision_id, action_id, outcome, ts FROM answers", ()
        ):
            key = (str(did), str(action))
            if rank.get(outcome, 0) > rank.get(answers.get(key, ("", 0.0))[0], 0):
                answers[key] = (outcome, ts)
        result = []
        now = _utc(now)
        for decision in self.decisions(since):
            if decision.action_id is None:
                continue
            found = answers.get((decision.decision_id, decision.action_id))
            if found is not None:
                outcome, at = found[0], datetime.fromtimestamp(found[1], tz=UTC)
            else:
                outcome = IGNORED if now - decision.ts >= ignore_after else PENDING
                at = None
            result.append(Outcome(decision, outcome, at))
        return result

    def close(self) -> None:
        """Close this thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
