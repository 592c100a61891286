"""`loyal score`: a thin shell over `pipelines.scores` (heavy imports happen when it runs)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from loyal.settings import Settings, get_settings

if TYPE_CHECKING:
    import pandas as pd

CHUNK_ROWS = 100_000
"""Default customers per chunk (`pipelines.scores.CHUNK_ROWS`, repeated to keep imports light)."""


def score(settings: Settings, publish: bool = True) -> pd.DataFrame:
    """Write the scores table, then put it online; the scores as a DataFrame.

    For callers that want the scores in memory; `loyal score` itself runs `score_batch`,
    which never holds them all.
    """
    from pipelines.scores import publish_scores, score_customers

    return publish_scores(settings) if publish else score_customers(settings)


def score_batch(
    settings: Settings, publish: bool = True, chunk_rows: int = CHUNK_ROWS
) -> dict[str, Any]:
    """Plain function behind `loyal score`: score in chunks, write, put online; the summary.

    Args:
        settings: the active settings.
        publish: register the scores view in Feast and materialize it.
        chunk_rows: customers per chunk (memory grows with it).

    Returns:
        Customers, snapshot, customers per tier and segment, how many got a CLV and a churn
        probability, the models used and the seconds per stage.
    """
    from pipelines.scores import publish_batch_scores, write_batch_scores

    run = (publish_batch_scores if publish else write_batch_scores)(settings, chunk_rows)
    return run.summary()


def score_past(settings: Settings, as_of: str, chunk_rows: int = CHUNK_ROWS) -> dict[str, Any]:
    """Plain function behind `loyal score --as-of DATE`: the customers as they were at the
    latest snapshot by DATE, into `data/scores/history/` (nothing online changes); the summary.

    Raises:
        LoyalError: a date that cannot be read; NotReadyError: no snapshot by then.
    """
    import pandas as pd

    from loyal.errors import LoyalError
    from pipelines.scores import write_past_scores

    try:
        moment = pd.Timestamp(as_of)
    except ValueError:
        raise LoyalError(f"--as-of: not a date: {as_of!r} (use YYYY-MM-DD)") from None
    moment = moment.tz_localize("UTC") if moment.tz is None else moment.tz_convert("UTC")
    return write_past_scores(settings, moment, chunk_rows).summary()


def score_command(
    publish: Annotated[
        bool, typer.Option(help="Register the scores view in Feast and put it online.")
    ] = True,
    chunk_rows: Annotated[
        int, typer.Option(min=1, help="Customers per chunk (memory grows with it).")
    ] = CHUNK_ROWS,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="Score the customers as they were at the latest snapshot by this date (UTC), "
            "into data/scores/history/ (for past campaigns' tiers); nothing goes online.",
        ),
    ] = None,
) -> None:
    """Score every customer (CLV, P(alive), tier, need segment, churn) into the scores view."""
    settings = get_settings()
    if as_of is not None:
        typer.echo(json.dumps(score_past(settings, as_of, chunk_rows)))
        return
    typer.echo(json.dumps(score_batch(settings, publish, chunk_rows)))
