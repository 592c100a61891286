"""`loyal monitor`: drift and label-free performance of the champions (a thin shell).

Only typer and the settings are imported at module level; `monitoring.batch` does the work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from loyal.settings import Settings, get_settings

ALERT_EXIT_CODE = 2
"""Exit code of `loyal monitor` when an alert fires, so a scheduler can act on it."""


def monitor(settings: Settings, out: Path | None = None) -> dict[str, Any]:
    """Plain function behind `loyal monitor` (see `monitoring.batch.run_monitor`)."""
    from monitoring.batch import run_monitor

    return run_monitor(settings, out)


def summary_lines(report: dict[str, Any]) -> list[str]:
    """A few lines a person reads first: level per model, what moved, estimated ROC-AUC."""
    lines = [f"monitoring {report['snapshot']}: {report['level'].upper()}"]
    for name, section in report["models"].items():
        batch, served = section["batch"], section["served"]
        scores = ", ".join(
            f"{s['column']} PSI {s['corrected']:.3f} ({s['level']})"
            for s in batch.get("scores", [])
        )
        moved = ", ".join(batch.get("top_moved", [])) or "nothing"
        lines.append(
            f"  {name} v{section['version']}: batch {batch['level']}, served "
            f"{served['level']} ({served['rows']} rows); moved most: {moved}"
        )
        if scores:
            lines.append(f"    scores: {scores}")
        free = section.get("label_free")
        if free:
            lines.append(
                f"    churn ROC-AUC estimated without labels {free['roc_auc_estimated']}"
                f" (holdout {section.get('roc_auc_holdout')})"
            )
    for name, reason in report.get("skipped", {}).items():
        lines.append(f"  {name}: not monitored ({reason})")
    lines += clv_outcome_lines(report.get("clv_outcomes", {}))
    return lines


def clv_outcome_lines(outcomes: dict[str, Any]) -> list[str]:
    """Realised vs predicted CLV per tier, or why there is no outcome window."""
    if "tiers" not in outcomes:
        return [f"  CLV outcomes: {outcomes['note']}"] if outcomes.get("note") else []
    window = outcomes["window"]
    rows = ", ".join(
        f"{r['tier']} {r['mean_realised']} vs {r['mean_predicted']}"
        for r in [*outcomes["tiers"], outcomes["total"]]
    )
    return [
        f"  CLV outcomes {window['start']}..{window['end']} ({window['days']} days), mean "
        f"realised vs predicted: {rows}; MAE {outcomes['total']['mae']}"
    ]


def monitor_command(
    out: Annotated[
        Path | None,
        typer.Option(
            help="Folder for report.json, report.html and plots (default: data/monitoring/report)."
        ),
    ] = None,
) -> None:
    """Compare the champions' training profiles with today's data: drift, estimated ROC-AUC.

    Exits with code 2 when an alert fires (corrected PSI >= 0.25 on a feature or a score).
    """
    settings = get_settings()
    report = monitor(settings, out)
    for line in summary_lines(report):
        typer.echo(line)
    folder = out or settings.paths.data_dir / "monitoring" / "report"
    typer.echo(f"report written to {folder / 'report.html'} and {folder / 'report.json'}")
    if report["level"] == "alert":
        raise typer.Exit(ALERT_EXIT_CODE)
