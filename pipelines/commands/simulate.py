"""`loyal simulate --days 60`: the learning loop replayed on the sample bank against its truth."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from loyal.settings import get_settings


def simulate_command(
    days: Annotated[int, typer.Option(min=1, max=366, help="Simulated days.")] = 60,
    per_day: Annotated[int, typer.Option(min=10, help="Requests per simulated day.")] = 200,
    seed: Annotated[int, typer.Option(help="Seed of the simulated traffic.")] = 7,
) -> None:
    """Replay days of traffic (in-process) for the static, learned and oracle policies.

    Needs a trained, scored sample-bank home (`loyal run`). Prints one JSON line: the
    accepted value of each policy over the same requests and the OPE check.
    """
    from simulation.run import simulate

    report = simulate(get_settings(), days=days, per_day=per_day, seed=seed)
    typer.echo(json.dumps(report.summary()))
