"""`loyal churn-list`: who marketing should call this week (a thin shell over `churn_list`).

Only typer and the settings are imported at module level, so the CLI starts fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from loyal.settings import Settings, get_settings

if TYPE_CHECKING:
    from campaigns.churn_list import ChurnListResult


def churn_list(
    settings: Settings,
    out: Path,
    top: int = 500,
    min_tier: str | None = None,
    segment: list[str] | None = None,
    region: list[str] | None = None,
    min_prob: float = 0.0,
    catalog: Path | None = None,
    control_share: float = 0.10,
    seed: int | None = None,
    record: bool = True,
    rank_by: str | None = None,
) -> ChurnListResult:
    """Plain function behind `loyal churn-list` (see `campaigns.churn_list.build_churn_list`)."""
    from campaigns.churn_list import ChurnListFilters, build_churn_list
    from campaigns.list_campaigns import ControlOptions

    filters = ChurnListFilters(
        top=top,
        min_tier=min_tier,
        segments=tuple(segment or ()),
        regions=tuple(region or ()),
        min_probability=min_prob,
    )
    control = ControlOptions(share=control_share, seed=seed, record=record)
    return build_churn_list(
        settings, out, filters, catalog_path=catalog, control=control, rank_by=rank_by
    )


def churn_list_command(
    out: Annotated[
        Path,
        typer.Option(
            help="The list to write: .csv, .parquet or .xlsx; a sidecar FILE.meta.json "
            "records the snapshot, model versions, filters and counts."
        ),
    ],
    top: Annotated[int, typer.Option(help="At most this many customers.")] = 500,
    min_tier: Annotated[
        str | None,
        typer.Option(help="Lowest value tier kept: platinum > gold > iron > lead (default: all)."),
    ] = None,
    segment: Annotated[
        list[str] | None,
        typer.Option(help="Keep this need segment (id or name); repeat for several."),
    ] = None,
    region: Annotated[
        list[str] | None, typer.Option(help="Keep this region; repeat for several.")
    ] = None,
    min_prob: Annotated[
        float, typer.Option(help="Lowest churn probability kept, between 0 and 1.")
    ] = 0.0,
    catalog: Annotated[
        Path | None,
        typer.Option(help="Offer catalog for the actions (default: the service's catalog)."),
    ] = None,
    control_share: Annotated[
        float,
        typer.Option(
            help="Share of each tier held out as a random control group (do not contact), "
            "in (0, 0.5]; the lift is measured against it."
        ),
    ] = 0.10,
    seed: Annotated[
        int | None,
        typer.Option(help="Seed of the control group's draw (default: fixed by the snapshot)."),
    ] = None,
    record: Annotated[
        bool,
        typer.Option(help="Record the list as a campaign (`loyal campaign report` measures it)."),
    ] = True,
    rank_by: Annotated[
        str | None,
        typer.Option(
            help="expected-loss (churn probability x CLV) or saved-value (uplift x CLV - "
            "contact cost); default: saved-value once an uplift champion exists."
        ),
    ] = None,
) -> None:
    """Rank consenting customers by expected loss (churn probability x CLV): who to call.

    A random share of each tier is held out as the control group, marked "do not contact" in
    the list and the sidecar, and the list is recorded as a campaign; the NBA service does not
    contact the control group until the outcome window ends.
    """
    result = churn_list(
        get_settings(), out, top, min_tier, segment, region, min_prob, catalog,
        control_share, seed, record, rank_by,
    )  # fmt: skip
    typer.echo(result.summary())
