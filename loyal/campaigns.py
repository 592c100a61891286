"""Recorded retention campaigns: who was contacted, who was held out, in one embedded SQLite file.

A campaign is written once, when its list is made (`loyal churn-list`): its id, snapshot,
outcome window, seed, control share, the list's file and hash, the model versions, and one row
per member (treated or control, tier, segment, the suggested action and its cost, the scores it
was ranked by). `loyal campaign report` measures it once its window has passed; the serving
runtime reads which customers are in a running campaign's control group (`ControlGroups`) so
the NBA service never contacts them while the campaign runs.

Only the standard library and pandas are used, so serving may import it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from loyal.errors import LoyalError

LOGGER = logging.getLogger(__name__)

STORE_FILE = "campaigns.db"
"""The store's file name under `<runtime_dir>/campaigns/`."""
TREATED = "treated"
CONTROL = "control"
DO_NOT_CONTACT = "do not contact (control group)"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS campaigns (
    campaign_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    created_at TEXT NOT NULL,
    snapshot TEXT NOT NULL,
    window_days INTEGER NOT NULL,
    window_end TEXT NOT NULL,
    seed INTEGER NOT NULL,
    control_share REAL NOT NULL,
    list_file TEXT NOT NULL,
    list_sha256 TEXT NOT NULL,
    details TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS campaign_members (
    campaign_id TEXT NOT NULL REFERENCES campaigns(campaign_id),
    customer_id TEXT NOT NULL,
    grp TEXT NOT NULL CHECK (grp IN ('treated', 'control')),
    tier TEXT,
    segment_name TEXT,
    action_id TEXT,
    action_cost REAL,
    churn_probability REAL,
    clv REAL,
    PRIMARY KEY (campaign_id, customer_id)
);
CREATE INDEX IF NOT EXISTS members_by_customer ON campaign_members(customer_id);
"""
MEMBER_COLUMNS = (
    "customer_id",
    "grp",
    "tier",
    "segment_name",
    "action_id",
    "action_cost",
    "churn_probability",
    "clv",
)


class CampaignError(LoyalError):
    """A campaign cannot be recorded, found or read (the message says which and why)."""


def store_path(runtime_dir: Path) -> Path:
    """Where the campaigns store lives under the runtime folder."""
    return Path(runtime_dir) / "campaigns" / STORE_FILE


def check_control_share(share: float) -> float:
    """The control share, if it lies in (0, 0.5].

    Raises:
        CampaignError: naming the option and the allowed range.
    """
    if not (np.isfinite(share) and 0.0 < share <= 0.5):
        raise CampaignError(f"--control-share: must be in (0, 0.5], got {share}")
    return float(share)


def _unit_draw(seed: int, customer_id: str) -> float:
    """A uniform number in [0, 1) fixed by the seed and the customer id (order-free)."""
    digest = hashlib.sha256(f"{seed}:{customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_control(
    customer_ids: Sequence[str], strata: Sequence[Any], share: float, seed: int
) -> np.ndarray:
    """Which customers form the control group: a random `share` of each stratum (e.g. tier).

    Each customer gets a draw fixed by the seed and their id; within each stratum the
    `round(share x size)` lowest draws are held out (at least one when the stratum has two or
    more customers), so the same seed and list always give the same group, whatever the order.

    Returns:
        A boolean array, True for control.
    """
    check_control_share(share)
    draws = np.array([_unit_draw(seed, str(c)) for c in customer_ids])
    keys = pd.Series([str(s) for s in strata], dtype=object)
    control = np.zeros(len(customer_ids), dtype=bool)
    for _, positions in keys.groupby(keys).indices.items():
        size = len(positions)
        count = round(share * size)
        if count == 0 and size >= 2:
            count = 1
        chosen = positions[np.argsort(draws[positions], kind="stable")[:count]]
        control[chosen] = True
    return control


@dataclass(frozen=True)
class Campaign:
    """One recorded campaign (without its members)."""

    campaign_id: str
    kind: str
    created_at: datetime
    snapshot: datetime
    window_days: int
    seed: int
    control_share: float
    list_file: str
    list_sha256: str
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def window_end(self) -> datetime:
        """When the outcome window closes: the snapshot plus the window."""
        return self.snapshot + timedelta(days=self.window_days)


def _iso(moment: datetime) -> str:
    aware = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return aware.isoformat()


def _parse(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


class CampaignStore:
    """Campaigns and their members in one SQLite file (created on first write).

    Args:
        path: the database file.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _connect(self, create: bool = False) -> sqlite3.Connection:
        if not create and not self.path.is_file():
            raise CampaignError(f"no campaign recorded yet (no store at {self.path})")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=5.0)
            conn.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise CampaignError(f"cannot open the campaigns store {self.path}: {exc}") from None
        return conn

    def record(self, campaign: Campaign, members: pd.DataFrame) -> None:
        """Write a campaign and its members in one transaction (all or nothing).

        Raises:
            CampaignError: the id exists already, or the store cannot be written.
        """
        rows = [
            (campaign.campaign_id, *(_plain(v) for v in values))
            for values in members[list(MEMBER_COLUMNS)].itertuples(index=False, name=None)
        ]
        conn = self._connect(create=True)
        try:
            with conn:
                conn.execute(
                    "INSERT INTO campaigns VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        campaign.campaign_id,
                        campaign.kind,
                        _iso(campaign.created_at),
                        _iso(campaign.snapshot),
                        campaign.window_days,
                        _iso(campaign.window_end),
                        campaign.seed,
                        campaign.control_share,
                        campaign.list_file,
                        campaign.list_sha256,
                        json.dumps(dict(campaign.details), default=str),
                    ),
                )
                conn.executemany(
                    "INSERT INTO campaign_members VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
                )
        except sqlite3.IntegrityError:
            raise CampaignError(f"campaign {campaign.campaign_id} is already recorded") from None
        except sqlite3.Error as exc:
            raise CampaignError(f"cannot record campaign {campaign.campaign_id}: {exc}") from None
        finally:
            conn.close()

    def campaign(self, campaign_id: str) -> Campaign:
        """One recorded campaign.

        Raises:
            CampaignError: unknown campaign (naming the known ones), or no store.
        """
        conn = self._connect()
        try:
            row = conn.execute(
                "SELECT campaign_id, kind, created_at, snapshot, window_days, seed, "
                "control_share, list_file, list_sha256, details FROM campaigns "
                "WHERE campaign_id = ?",
                (campaign_id,),
            ).fetchone()
            known = [r[0] for r in conn.execute("SELECT campaign_id FROM campaigns")]
        finally:
            conn.close()
        if row is None:
            listed = ", ".join(known[-5:]) or "none"
            raise CampaignError(f"unknown campaign {campaign_id!r} (recorded: {listed})")
        return Campaign(
            campaign_id=row[0],
            kind=row[1],
            created_at=_parse(row[2]),
            snapshot=_parse(row[3]),
            window_days=int(row[4]),
            seed=int(row[5]),
            control_share=float(row[6]),
            list_file=row[7],
            list_sha256=row[8],
            details=json.loads(row[9]),
        )

    def campaign_ids(self) -> list[str]:
        """Every recorded campaign id, oldest first (empty without a store)."""
        if not self.path.is_file():
            return []
        conn = self._connect()
        try:
            return [r[0] for r in conn.execute("SELECT campaign_id FROM campaigns ORDER BY rowid")]
        finally:
            conn.close()

    def members(self, campaign_id: str) -> pd.DataFrame:
        """The members of a campaign, one row each (`MEMBER_COLUMNS`, `grp` treated/control)."""
        conn = self._connect()
        try:
            frame = pd.read_sql_query(
                f"SELECT {', '.join(MEMBER_COLUMNS)} FROM campaign_members "
                "WHERE campaign_id = ? ORDER BY customer_id",
                conn,
                params=(campaign_id,),
            )
        finally:
            conn.close()
        return frame

    def running_controls(self, now: datetime) -> dict[str, tuple[str, datetime]]:
        """Customers in the control group of a campaign whose window is open at `now`.

        Returns:
            customer id -> (campaign id, window end); the latest-ending campaign wins.
        """
        if not self.path.is_file():
            return {}
        conn = self._connect()
        try:
            rows = conn.execute(
                "SELECT m.customer_id, c.campaign_id, c.window_end FROM campaign_members m "
                "JOIN campaigns c USING (campaign_id) "
                "WHERE m.grp = 'control' AND c.snapshot <= ? AND c.window_end > ? "
                "ORDER BY c.window_end",
                (_iso(now), _iso(now)),
            ).fetchall()
        finally:
            conn.close()
        return {customer: (campaign, _parse(end)) for customer, campaign, end in rows}


def _plain(value: Any) -> Any:
    """A value SQLite stores: numpy scalars to Python, NaN/NA to NULL."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


class ControlGroups:
    """The running control groups, for the NBA service: re-read when the store file changes.

    A store that cannot be read holds every customer out (marketing stays off, flagged), so a
    control group is never contacted because of an outage.
    """

    def __init__(self, path: Path, refresh_seconds: float = 5.0) -> None:
        self.store = CampaignStore(path)
        self.refresh_seconds = refresh_seconds
        self._lock = threading.Lock()
        self._controls: dict[str, tuple[str, datetime]] = {}
        self._stamp: tuple[float, float] | None = None
        self._checked = -1e18
        self.error: str | None = None

    def _load(self, now: datetime) -> None:
        try:
            stat = self.store.path.stat()
        except FileNotFoundError:
            self._controls, self._stamp, self.error = {}, None, None
            return
        stamp = (stat.st_mtime, now.timestamp() // self.refresh_seconds)
        if stamp == self._stamp:
            return
        try:
            self._controls = self.store.running_controls(now)
            self._stamp, self.error = stamp, None
        except CampaignError as exc:
            if self.error is None:
                LOGGER.warning("campaigns store unreadable, every customer held out: %s", exc)
            self.error = str(exc)

    def holdout(self, customer_id: str, now: datetime) -> str | None:
        """Why this customer may not get a marketing contact now (None: they may)."""
        with self._lock:
            self._load(now)
            if self.error is not None:
                return "campaigns store unreadable, every customer held out"  # details: the log
            found = self._controls.get(customer_id)
        if found is None or found[1] <= now:
            return None
        campaign, end = found
        return f"control group of campaign {campaign} until {end:%Y-%m-%d}: do not contact"

    def known(self) -> Iterable[str]:
        """Customers currently held out (for tests and status)."""
        return tuple(self._controls)
