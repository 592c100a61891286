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
) -> ChurnListResult:
    """Plain function behind `loyal churn-list` (see `campaigns.churn_list.build_churn_list`)."""
    from campaigns.churn_list import ChurnListFilters, build_churn_list

    filters = ChurnListFilters(
        top=top,
        min_tier=min_tier,
        segments=tuple(segment or ()),
        regions=tuple(region or ()),
        min_probability=min_prob,
    )
    return build_churn_list(settings, out, filters, catalog_path=catalog)


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
) -> None:
    """Rank consenting customers by expected loss (churn probability x CLV): who to call."""
    result = churn_list(get_settings(), out, top, min_tier, segment, region, min_prob, catalog)
    typer.echo(result.summary())
