"""`loyal campaign report`: a recorded campaign's measured lift, once its outcome window passed.

Each member's outcome is the churn label at the campaign's snapshot over its window, computed
from the loaded contract tables exactly as the churn model's labels are (`features.labels`):
closure within the window for a contractual business, no purchase within it otherwise. The
figures (`models.lift`) compare the treated with the held-out control group, in total, by
tier and by need segment.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from features.catalog import ENTITY_KEY, TIMESTAMP_FIELD
from features.engineering import observed_until
from features.labels import churn_labels
from features.tables_io import read_contract
from loyal.campaigns import Campaign, CampaignError, CampaignStore, store_path
from loyal.settings import Settings
from models.lift import Lift, measure, measure_by


@dataclass(frozen=True)
class CampaignReport:
    """The measured campaign: total, by tier and by segment, and who had no outcome."""

    campaign: Campaign
    total: Lift
    by_tier: pd.DataFrame
    by_segment: pd.DataFrame
    unlabelled: int
    groups_from: str = "as recorded with the campaign"
    """Where the members' tiers and segments come from (a past campaign's: the scores used)."""

    def text(self) -> str:
        """The report as plain text for the terminal."""
        c, t = self.campaign, self.total
        lines = [
            f"Campaign {c.campaign_id} ({c.kind}): snapshot {c.snapshot:%Y-%m-%d}, "
            f"window {c.window_days} days to {c.window_end:%Y-%m-%d}, seed {c.seed}, "
            f"control share {c.control_share:.0%}",
            f"  treated {t.treated}, control {t.control}"
            + (
                f" ({self.unlabelled} members without an outcome left out)"
                if self.unlabelled
                else ""
            ),
            f"  churn: treated {_pct(t.churn_treated)}, control {_pct(t.churn_control)}; "
            f"lift {_pts(t.lift)} (95% CI {_pts(t.low)} to {_pts(t.high)})",
            f"  retained value per customer: treated {_money(t.retained_value_treated)}, "
            f"control {_money(t.retained_value_control)}",
            f"  customers saved {_num(t.customers_saved)}, value saved {_money(t.value_saved)}, "
            f"cost {_money(t.cost)}, cost per customer saved "
            f"{_money(t.cost_per_customer_saved)}, return on spend {_ratio(t.return_on_spend)}",
            f"  verdict: {t.verdict}",
        ]
        for title, table in (("tier", self.by_tier), ("segment", self.by_segment)):
            if table.empty:
                lines.append(
                    f"  by {title}: unknown at the campaign's start (not recorded with the "
                    "campaign, and no scores were published by then: `loyal score --as-of "
                    f"{c.snapshot:%Y-%m-%d}` scores its members as they were)"
                )
                continue
            lines.append(f"  by {title} ({self.groups_from}):")
            for key, row in table.iterrows():
                lines.append(
                    f"    {key}: treated {row['treated']}, control {row['control']}, lift "
                    f"{_pts(row['lift'])} ({_pts(row['low'])} to {_pts(row['high'])}); "
                    f"{row['verdict']}"
                )
        return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.1%}"


def _pts(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:+.1f} pts"


def _money(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"${value:,.2f}"


def _num(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.1f}"


def _ratio(value: float | None) -> str:
    return "n/a (nothing spent)" if value is None or math.isnan(value) else f"{value:+.0%}"


def member_outcomes(
    settings: Settings, campaign: Campaign, members: pd.DataFrame, tables: dict | None = None
) -> tuple[pd.DataFrame, int]:
    """The members with `group`, `churned`, `clv`, `cost`, tier and segment; and how many had
    no outcome (not in the label population: e.g. closed before the snapshot)."""
    tables = tables if tables is not None else read_contract(settings)
    snapshot = pd.Timestamp(campaign.snapshot).tz_convert("UTC").tz_localize(None)
    labels = churn_labels(
        tables,
        [snapshot],
        horizon_days=campaign.window_days,
        definition=settings.snapshots.churn_definition,
    )
    churned = labels.set_index(labels[ENTITY_KEY].astype(str))["churned"]
    frame = pd.DataFrame(
        {
            ENTITY_KEY: members["customer_id"].astype(str),
            "group": members["grp"],
            "tier": members["tier"],
            "segment": members["segment_name"],
            "clv": members["clv"].astype(float),
            "cost": members["action_cost"].astype(float).where(members["grp"] == "treated", 0.0),
            "churned": churned.reindex(members["customer_id"].astype(str)).to_numpy(),
        }
    )
    known = frame["churned"].notna()
    return frame[known].reset_index(drop=True), int((~known).sum())


def check_window(campaign: Campaign, data_end: pd.Timestamp | None, now: datetime) -> None:
    """Refuse a campaign whose window has not ended, by the clock or in the loaded data.

    Raises:
        CampaignError: naming the campaign and the date its window ends.
    """
    end = campaign.window_end
    if now < end:
        days = (end - now).days + 1
        raise CampaignError(
            f"campaign {campaign.campaign_id}: its outcome window ends on {end:%Y-%m-%d} "
            f"({days} days from now); report on it after that"
        )
    if data_end is not None and data_end.tz_localize("UTC") < end:
        raise CampaignError(
            f"campaign {campaign.campaign_id}: the loaded data ends on {data_end:%Y-%m-%d}, "
            f"before its outcome window ends on {end:%Y-%m-%d}: ingest newer data first"
        )


def campaign_report(
    settings: Settings, campaign_id: str, now: datetime | None = None
) -> CampaignReport:
    """Measure a recorded campaign (plain function behind `loyal campaign report`).

    Raises:
        CampaignError: unknown campaign, no store, or a window that has not ended.
    """
    store = CampaignStore(store_path(settings.paths.runtime_dir))
    now = now or datetime.now(UTC)
    if campaign_id in store.campaign_ids() or not contract_campaign_ids(settings):
        campaign, members = store.campaign(campaign_id), store.members(campaign_id)
        groups_from = CampaignReport.groups_from
    else:
        campaign, members, scored_at = contract_campaign(
            settings, campaign_id, store.campaign_ids()
        )
        groups_from = "unknown" if scored_at is None else f"the scores of {scored_at:%Y-%m-%d}"
    check_window(campaign, None, now)
    tables = read_contract(settings)
    check_window(campaign, observed_until(tables), now)
    outcomes, unlabelled = member_outcomes(settings, campaign, members, tables)
    return CampaignReport(
        campaign=campaign,
        total=measure(outcomes),
        by_tier=_measure_known(outcomes, "tier"),
        by_segment=_measure_known(outcomes, "segment"),
        unlabelled=unlabelled,
        groups_from=groups_from,
    )


def _measure_known(outcomes: pd.DataFrame, column: str) -> pd.DataFrame:
    """`measure_by` the column; empty when no member's value is known."""
    if outcomes[column].isna().all():
        return pd.DataFrame()
    return measure_by(outcomes, column)


def contract_campaign_ids(settings: Settings) -> list[str]:
    """Campaign ids of the loaded data's own `campaigns` table (empty when it has none)."""
    path = settings.paths.contract_dir / "campaigns.parquet"
    if not path.is_file():
        return []
    ids = pd.read_parquet(path, columns=["campaign_id"])["campaign_id"].astype(str)
    return sorted(set(ids))


def contract_campaign(
    settings: Settings, campaign_id: str, recorded: list[str]
) -> tuple[Campaign, pd.DataFrame, pd.Timestamp | None]:
    """A past campaign from the data's `campaigns` table, as the store would hold it, and the
    snapshot of the scores its members' tiers and segments come from (None: unknown).

    The data does not record its members' tier, segment or value at the time. Tier and segment
    come from the latest published scores at or before the campaign's start; without such
    scores they are left unknown, not taken from today's scores: a member who left since has
    no score today, so every churner would fall into "none" and every tier would show no
    churn in either group. Value at stake is the scores' CLV at the start when published, else
    today's (a member who left since counts nothing, in both groups alike).

    Raises:
        CampaignError: the id is neither recorded nor in the data.
    """
    table = read_contract(settings, only=["campaigns"]).get("campaigns")
    rows = table[table["campaign_id"].astype(str) == campaign_id] if table is not None else None
    if rows is None or rows.empty:
        known = ", ".join([*recorded, *contract_campaign_ids(settings)][-8:]) or "none"
        raise CampaignError(f"unknown campaign {campaign_id!r} (known: {known})")
    treated = rows["treated"].astype(bool)
    start = pd.Timestamp(rows["ts"].min())
    start = start.tz_localize("UTC") if start.tz is None else start.tz_convert("UTC")
    campaign = Campaign(
        campaign_id=campaign_id,
        kind="from data",
        created_at=start.to_pydatetime(),
        snapshot=start.to_pydatetime(),
        window_days=settings.snapshots.horizon_days,
        seed=0,
        control_share=float(1 - treated.mean()),
        list_file="contract table campaigns",
        list_sha256="",
    )
    ids = rows["customer_id"].astype(str)
    published = _published_scores(settings)
    at_start = _scores_at(published, start)
    scored_at = None if at_start is None else at_start[0]
    scores = (_latest_scores(published) if at_start is None else at_start[1]).reindex(ids)
    unknown = pd.Series(np.nan, index=scores.index, dtype=object)
    groups = scores if at_start else pd.DataFrame({"tier": unknown, "segment_name": unknown})
    cost = rows["cost"] if "cost" in rows.columns else pd.Series(0.0, index=rows.index)
    members = pd.DataFrame(
        {
            "customer_id": ids.to_numpy(),
            "grp": np.where(treated, "treated", "control"),
            "tier": groups["tier"].to_numpy(),
            "segment_name": groups["segment_name"].to_numpy(),
            "action_id": rows.get("action_id", pd.Series("", index=rows.index)).to_numpy(),
            "action_cost": cost.fillna(0.0).astype(float).to_numpy(),
            "churn_probability": scores["churn_probability"].to_numpy(),
            "clv": scores["clv"].to_numpy(),
        }
    )
    return campaign, members, scored_at


SCORE_COLUMNS = ["tier", "segment_name", "churn_probability", "clv"]


def _latest_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """The newest snapshot of `_published_scores`, per customer id (empty without scores)."""
    if scores.empty:
        return _by_customer(scores)
    return _by_customer(scores[scores[TIMESTAMP_FIELD] == scores[TIMESTAMP_FIELD].max()])


def _scores_at(
    scores: pd.DataFrame, moment: pd.Timestamp
) -> tuple[pd.Timestamp, pd.DataFrame] | None:
    """The newest snapshot of `_published_scores` at or before `moment` (UTC): its time and
    the scores per customer id; None when no scoring was published by then."""
    if scores.empty:
        return None
    stamps = pd.to_datetime(scores[TIMESTAMP_FIELD], utc=True)
    earlier = stamps[stamps <= moment]
    if earlier.empty:
        return None
    latest = earlier.max()
    return latest, _by_customer(scores[stamps == latest])


def _published_scores(settings: Settings) -> pd.DataFrame:
    """The scores table and the past snapshots' (`loyal score --as-of`), as one frame."""
    from features.store import scores_table_path
    from pipelines.scores import PAST_SCORES_DIR

    path = scores_table_path(settings)
    paths = sorted((path.parent / PAST_SCORES_DIR).glob("scores-*.parquet"))
    paths += [path] if path.is_file() else []
    columns = [ENTITY_KEY, TIMESTAMP_FIELD, *SCORE_COLUMNS]
    frames = [_read_columns(p, columns) for p in paths]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def _read_columns(path: Path, columns: list[str]) -> pd.DataFrame:
    """`columns` of a scores table (only those it has are read; the others are missing)."""
    import pyarrow.parquet as pq

    present = set(pq.read_schema(path).names)
    return pd.read_parquet(path, columns=[c for c in columns if c in present]).reindex(
        columns=columns
    )


def _by_customer(scores: pd.DataFrame) -> pd.DataFrame:
    return scores.set_index(scores[ENTITY_KEY].astype(str))[SCORE_COLUMNS]


def finished_reports(settings: Settings, now: datetime | None = None) -> list[CampaignReport]:
    """Reports of every recorded campaign (and the data's own) whose window has ended."""
    store = CampaignStore(store_path(settings.paths.runtime_dir))
    reports = []
    for campaign_id in dict.fromkeys([*contract_campaign_ids(settings), *store.campaign_ids()]):
        try:
            reports.append(campaign_report(settings, campaign_id, now))
        except CampaignError:
            continue
    return reports


SUMMARY_COLUMNS = {
    "treated": "treated",
    "control": "control",
    "churn_treated": "churn treated",
    "churn_control": "churn control",
    "lift": "lift",
    "low": "95% CI low",
    "high": "95% CI high",
    "cost_per_customer_saved": "cost per saved",
    "return_on_spend": "return on spend",
    "verdict": "verdict",
}


def campaigns_section(settings: Settings, now: datetime | None = None) -> str:
    """The report's "Retention campaigns" section (HTML): every campaign whose window ended."""
    from reports.management import html_table, paragraph, percent

    reports = finished_reports(settings, now)
    if not reports:
        return ""
    rows = {r.campaign.campaign_id: r.total.as_row() for r in reports}
    table = pd.DataFrame.from_dict(rows, orient="index")[list(SUMMARY_COLUMNS)]
    formats = {
        "churn_treated": percent,
        "churn_control": percent,
        "lift": lambda v: _pts(float(v)),
        "low": lambda v: _pts(float(v)),
        "high": lambda v: _pts(float(v)),
        "cost_per_customer_saved": lambda v: _money(None if pd.isna(v) else float(v)),
        "return_on_spend": lambda v: _ratio(None if pd.isna(v) else float(v)),
    }
    parts = [
        "<h2>Retention campaigns: measured lift</h2>",
        paragraph(
            "Churn over each campaign's outcome window in the contacted (treated) group against "
            "its random control group; lift = control churn - treated churn, with a 95% "
            "interval. `loyal campaign report CAMPAIGN` gives tiers and segments."
        ),
        html_table(table, formats, SUMMARY_COLUMNS, index="campaign"),
    ]
    return "\n".join(parts)
