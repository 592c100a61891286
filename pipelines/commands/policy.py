"""`loyal policy evaluate --candidate CONFIG`: a candidate policy's value, from the log."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from loyal.settings import Settings, get_settings

if TYPE_CHECKING:
    from decisions.policy import PolicyReport

policy_app = typer.Typer(help="Evaluate policies on the decision log.", no_args_is_help=True)


@policy_app.callback()
def _group() -> None:
    """Policies: off-policy evaluation on the decision log."""


def evaluate_policy(
    settings: Settings, candidate: Path, now: datetime | None = None, clip: float | None = 100.0
) -> PolicyReport:
    """Plain function behind `loyal policy evaluate`: the candidate's report from the log.

    Raises:
        PolicyConfigError: the candidate file cannot be read.
        LoyalError: the log holds no answered decision yet.
    """
    from decisions.log import DecisionLog
    from decisions.policy import evaluate_candidate, read_candidate
    from decisions.record import log_target

    policy = read_candidate(candidate)
    log = DecisionLog(log_target(settings))
    ignore = timedelta(hours=settings.decisions.ignore_after_hours)
    return evaluate_candidate(log, policy, now or datetime.now(UTC), ignore, clip=clip)


def evaluate_command(
    candidate: Annotated[
        Path, typer.Option(help="The candidate policy (YAML: name, p_accept, weights, ...).")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    clip: Annotated[float, typer.Option(min=1.0, help="Largest importance weight.")] = 100.0,
) -> None:
    """Estimate a candidate policy's acceptance rate and value per decision from the log."""
    report = evaluate_policy(get_settings(), candidate, clip=clip)
    if as_json:
        typer.echo(json.dumps(report.as_dict()))
        return
    typer.echo(f"candidate {report.name}: {report.decisions} answered decisions")
    for title, part in (
        ("acceptance rate", report.acceptance),
        ("value per decision", report.value),
    ):
        dr = part.best
        typer.echo(
            f"  {title}: logged {part.logged.value:.4f}; IPS {part.ips.value:.4f} "
            f"[{part.ips.low:.4f}, {part.ips.high:.4f}]; SNIPS {part.snips.value:.4f}; "
            f"DR {dr.value:.4f} [{dr.low:.4f}, {dr.high:.4f}]; ESS {part.ess:.0f}"
        )
    typer.echo(f"verdict: {report.verdict}")
    for note in report.notes:
        typer.echo(f"  note: {note}")


policy_app.command("evaluate")(evaluate_command)
