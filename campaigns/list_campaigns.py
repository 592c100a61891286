"""A list's control group and its campaign record: who is held out, and what was decided.

`hold_out` marks a random, reproducible share of a list's customers (stratified by tier) as
the control group: they stay on the list, marked "do not contact", so the campaign's lift can
be measured against them (`loyal campaign report`). `record_campaign` writes the campaign (its
list, seed, window, model versions, treated and control members and their actions) to the
campaigns store, where the NBA service reads the running control groups.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from features.catalog import ENTITY_KEY
from loyal.campaigns import (
    CONTROL,
    DO_NOT_CONTACT,
    TREATED,
    Campaign,
    CampaignStore,
    assign_control,
    check_control_share,
    store_path,
)
from loyal.settings import Settings

DEFAULT_CONTROL_SHARE = 0.10
GROUP_COLUMNS = ["group", "contact"]
"""Columns a list with a control group gains, after the others."""


@dataclass(frozen=True)
class ControlOptions:
    """How a list holds out its control group.

    Attributes:
        share: share of each tier held out, in (0, 0.5].
        seed: the draw's seed (None: derived from the snapshot, so a rerun gives the same group).
        record: record the list as a campaign in the campaigns store.
    """

    share: float = DEFAULT_CONTROL_SHARE
    seed: int | None = None
    record: bool = True

    def checked(self) -> ControlOptions:
        """The options, once the share is known to lie in (0, 0.5].

        Raises:
            CampaignError: the share is outside (0, 0.5].
        """
        check_control_share(self.share)
        return self


def seed_for(options: ControlOptions, snapshot: pd.Timestamp) -> int:
    """The seed in force: the given one, else one fixed by the snapshot's date."""
    if options.seed is not None:
        return int(options.seed)
    digest = hashlib.sha256(f"control:{pd.Timestamp(snapshot).isoformat()}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def hold_out(frame: pd.DataFrame, share: float, seed: int) -> pd.DataFrame:
    """The list with `group` (treated/control) and `contact` columns; control: do not contact."""
    out = frame.copy()
    control = assign_control(
        out[ENTITY_KEY].astype(str).tolist(), out["tier"].astype(str).tolist(), share, seed
    )
    out["group"] = [CONTROL if c else TREATED for c in control]
    out["contact"] = [DO_NOT_CONTACT if c else "contact" for c in control]
    return out


def campaign_id(kind: str, snapshot: pd.Timestamp, frame: pd.DataFrame, seed: int) -> str:
    """An id fixed by the list's kind, snapshot, members, groups and seed."""
    members = ",".join(f"{c}:{g}" for c, g in zip(frame[ENTITY_KEY], frame["group"], strict=True))
    digest = hashlib.sha256(f"{seed}|{members}".encode()).hexdigest()[:8]
    return f"{kind}-{pd.Timestamp(snapshot):%Y-%m-%d}-{digest}"


def campaign_meta(
    frame: pd.DataFrame, kind: str, snapshot: pd.Timestamp, share: float, seed: int, days: int
) -> dict[str, Any]:
    """The sidecar's `campaign` section: id, seed, window and the control group's ids."""
    control = frame.loc[frame["group"] == CONTROL, ENTITY_KEY].astype(str).tolist()
    return {
        "campaign_id": campaign_id(kind, snapshot, frame, seed),
        "kind": kind,
        "seed": seed,
        "control_share": share,
        "stratified_by": "tier",
        "window_days": days,
        "window_end": (pd.Timestamp(snapshot) + pd.Timedelta(days=days)).isoformat(),
        "treated": int((frame["group"] == TREATED).sum()),
        "control": len(control),
        "control_ids": control,
        "do_not_contact": DO_NOT_CONTACT,
    }


def record_campaign(
    settings: Settings,
    frame: pd.DataFrame,
    meta: dict[str, Any],
    path: Path,
    snapshot: pd.Timestamp,
) -> str:
    """Record a written list as a campaign (once: the same list again is left as recorded).

    Returns:
        What happened, in words, for the summary.

    Raises:
        CampaignError: the store cannot be written.
    """
    section = meta["campaign"]
    store = CampaignStore(store_path(settings.paths.runtime_dir))
    if section["campaign_id"] in store.campaign_ids():
        return f"campaign {section['campaign_id']} already recorded"
    members = pd.DataFrame(
        {
            "customer_id": frame[ENTITY_KEY].astype(str),
            "grp": frame["group"],
            "tier": frame["tier"],
            "segment_name": frame["segment_name"],
            "action_id": frame["action_id"],
            "action_cost": frame["action_cost"].astype(float),
            "churn_probability": frame["churn_probability"].astype(float),
            "clv": frame["clv"].astype(float),
        }
    )
    campaign = Campaign(
        campaign_id=section["campaign_id"],
        kind=section["kind"],
        created_at=datetime.now(UTC),
        snapshot=pd.Timestamp(snapshot).tz_localize(None).to_pydatetime().replace(tzinfo=UTC),
        window_days=int(section["window_days"]),
        seed=int(section["seed"]),
        control_share=float(section["control_share"]),
        list_file=str(path.resolve()),
        list_sha256=str(meta["output"]["sha256"]),
        details={
            "models": meta.get("models", {}),
            "actions": meta.get("actions", {}),
            "ranking": meta.get("ranking"),
            "filters": meta.get("filters", {}),
            "git_commit": meta.get("git_commit"),
        },
    )
    store.record(campaign, members)
    return f"campaign {campaign.campaign_id} recorded ({section['control']} held out)"
