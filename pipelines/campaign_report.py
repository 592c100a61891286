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

import pandas as pd

from features.catalog import ENTITY_KEY
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
            lines.append(f"  by {title}:")
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
    campaign = store.campaign(campaign_id)
    now = now or datetime.now(UTC)
    check_window(campaign, None, now)
    tables = read_contract(settings)
    check_window(campaign, observed_until(tables), now)
    outcomes, unlabelled = member_outcomes(settings, campaign, store.members(campaign_id), tables)
    return CampaignReport(
        campaign=campaign,
        total=measure(outcomes),
        by_tier=measure_by(outcomes, "tier"),
        by_segment=measure_by(outcomes, "segment"),
        unlabelled=unlabelled,
    )


def finished_reports(settings: Settings, now: datetime | None = None) -> list[CampaignReport]:
    """Reports of every recorded campaign whose window has ended in the loaded data."""
    store = CampaignStore(store_path(settings.paths.runtime_dir))
    reports = []
    for campaign_id in store.campaign_ids():
        try:
            reports.append(campaign_report(settings, campaign_id, now))
        except CampaignError:
            continue
    return reports
