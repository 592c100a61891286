"""`loyal campaign`: recorded retention campaigns and their measured lift (thin shells).

Only typer and the settings are imported at module level, so the CLI starts fast.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer

from loyal.settings import Settings, get_settings

if TYPE_CHECKING:
    from campaigns.campaign_report import CampaignReport

app = typer.Typer(
    help="Recorded campaigns (from `loyal churn-list`) and their lift against the control group.",
    no_args_is_help=True,
)


def report(settings: Settings, campaign_id: str, now: datetime | None = None) -> CampaignReport:
    """Plain function behind `loyal campaign report` (`campaigns.campaign_report`)."""
    from campaigns.campaign_report import campaign_report

    return campaign_report(settings, campaign_id, now)


def recorded(settings: Settings) -> list[str]:
    """Plain function behind `loyal campaign list`: every recorded campaign with its window."""
    from loyal.campaigns import CampaignStore, store_path

    store = CampaignStore(store_path(settings.paths.runtime_dir))
    lines = []
    for campaign_id in store.campaign_ids():
        c = store.campaign(campaign_id)
        lines.append(
            f"{c.campaign_id}  {c.kind}  snapshot {c.snapshot:%Y-%m-%d}  "
            f"window ends {c.window_end:%Y-%m-%d}  control share {c.control_share:.0%}"
        )
    from campaigns.campaign_report import contract_campaign_ids

    lines += [f"{cid}  from the data's campaigns table" for cid in contract_campaign_ids(settings)]
    return lines


@app.command("report")
def report_command(
    campaign: Annotated[str, typer.Argument(help="The campaign id (see `loyal campaign list`).")],
) -> None:
    """Churn and retained value in treated vs control, the lift with its 95% interval, cost per
    customer saved and return on spend, in total, by tier and by segment."""
    typer.echo(report(get_settings(), campaign).text())


@app.command("list")
def list_command() -> None:
    """Every recorded campaign, oldest first."""
    lines = recorded(get_settings())
    typer.echo("\n".join(lines) if lines else "No campaign recorded yet.")
