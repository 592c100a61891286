"""`loyal score`: a thin shell over `pipelines.scores` (heavy imports happen when it runs)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from loyal.settings import Settings, get_settings

if TYPE_CHECKING:
    import pandas as pd


def score(settings: Settings, publish: bool = True) -> pd.DataFrame:
    """Plain function behind `loyal score`: write the scores table, then put it online."""
    from pipelines.scores import publish_scores, score_customers

    return publish_scores(settings) if publish else score_customers(settings)


def score_command(
    publish: Annotated[
        bool, typer.Option(help="Register the scores view in Feast and put it online.")
    ] = True,
) -> None:
    """Score every customer (CLV, P(alive), tier, need segment, churn) into the scores view."""
    scores = score(get_settings(), publish)
    summary = {
        "customers": len(scores),
        "snapshot": str(scores["event_timestamp"].max()) if len(scores) else None,
        "tiers": scores["tier"].value_counts().to_dict(),
        "segments": scores["segment_name"].value_counts().to_dict(),
        "with_clv": int(scores["clv"].notna().sum()),
        "with_churn_probability": int(scores["churn_probability"].notna().sum()),
    }
    typer.echo(json.dumps(summary))
