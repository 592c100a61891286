"""The monitoring report on disk: `report.json` and an offline `report.html` with PNG plots."""

from __future__ import annotations

import html
import json
import logging
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

from matplotlib.figure import Figure

from features.tables_io import staged_folder

logging.getLogger("matplotlib.category").setLevel(logging.WARNING)  # its notes on text x-labels
LEVEL_COLOURS = {"ok": "#2e7d32", "warn": "#ef6c00", "alert": "#c62828"}


def write_report(report: dict[str, Any], folder: Path) -> Path:
    """Write the JSON, the plots and the HTML page into `folder`, replaced atomically."""
    with staged_folder(folder) as staging:
        (staging / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
        plots = staging / "plots"
        plots.mkdir()
        images: dict[str, list[str]] = {}
        for name, section in report["models"].items():
            images[name] = _plots(name, section, plots)
        (staging / "report.html").write_text(_page(report, images), encoding="utf-8")
    return folder


def _plots(name: str, section: dict[str, Any], folder: Path) -> list[str]:
    files = []
    features = section["batch"].get("features", [])[:12]
    if features:
        files.append(_save(_psi_bars(name, features), folder, f"{name}_psi.png"))
    labelled = section.get("labelled", {})
    if labelled.get("months"):
        files.append(_save(_auc_by_month(labelled["months"]), folder, f"{name}_auc.png"))
    if labelled.get("deciles_latest_labelled"):
        figure = _deciles(labelled["deciles_latest_labelled"])
        files.append(_save(figure, folder, f"{name}_deciles.png"))
    return files


def _save(figure: Figure, folder: Path, file: str) -> str:
    figure.savefig(folder / file, dpi=90, bbox_inches="tight")
    return f"plots/{file}"


def _psi_bars(name: str, features: list[dict[str, Any]]) -> Figure:
    figure = Figure(figsize=(7, 0.35 * len(features) + 1.2))
    axes = figure.subplots()
    labels = [f["column"] for f in features][::-1]
    values = [f["corrected"] for f in features][::-1]
    colours = [LEVEL_COLOURS[f["level"]] for f in features][::-1]
    axes.barh(labels, values, color=colours)
    for x, style in ((0.1, ":"), (0.25, "--")):
        axes.axvline(x, color="grey", linestyle=style, linewidth=1)
    axes.set_xlabel("PSI corrected for sample size (0.1 warn, 0.25 alert)")
    axes.set_title(f"{name}: features that moved most (batch)")
    return figure


def _auc_by_month(months: list[dict[str, Any]]) -> Figure:
    figure = Figure(figsize=(7, 3.2))
    axes = figure.subplots()
    x = [m["snapshot"] for m in months]
    axes.plot(x, [m["roc_auc"] for m in months], marker="o", label="measured (labels)")
    axes.plot(
        x,
        [m["roc_auc_estimated"] for m in months],
        marker="s",
        linestyle="--",
        label="estimated without labels (CBPE)",
    )
    axes.set_ylabel("churn ROC-AUC")
    axes.tick_params(axis="x", rotation=30)
    axes.legend(loc="best")
    axes.set_title("Churn ROC-AUC per labelled month")
    return figure


def _deciles(deciles: list[dict[str, Any]]) -> Figure:
    figure = Figure(figsize=(6, 3.2))
    axes = figure.subplots()
    x = [d["decile"] for d in deciles]
    axes.bar([v - 0.2 for v in x], [d["predicted"] for d in deciles], 0.4, label="predicted")
    axes.bar([v + 0.2 for v in x], [d["realised"] for d in deciles], 0.4, label="realised")
    axes.set_xlabel("decile of churn probability (10 = highest risk)")
    axes.set_ylabel("churn rate")
    axes.legend()
    axes.set_title("Realised vs predicted churn, latest labelled month")
    return figure


def _page(report: dict[str, Any], images: dict[str, list[str]]) -> str:
    level = report["level"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Loyal model monitoring</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px}"
        ".ok{color:#2e7d32}.warn{color:#ef6c00}.alert{color:#c62828;font-weight:bold}</style>",
        "</head><body><h1>Model monitoring</h1>",
        f"<p>Snapshot {html.escape(report['snapshot'])}, generated "
        f"{html.escape(report['generated_at'])}. Overall: <span class='{level}'>{level}</span></p>",
        f"<p><small>{html.escape(report['method'])}</small></p>",
    ]
    for name, section in report["models"].items():
        parts.append(f"<h2>{html.escape(name)} v{html.escape(section['version'])}</h2>")
        parts.append(_levels(section))
        parts.append(_label_free(section))
        parts.append(_drift_table(section["batch"].get("scores", []), "Scores (batch)"))
        parts.append(_drift_table(section["batch"].get("features", [])[:15], "Features (batch)"))
        served = section["served"]
        if served.get("features"):
            parts.append(_drift_table(served["scores"] + served["features"][:10], "Served sample"))
        parts += [
            f"<p><img src='{html.escape(src)}' alt='{html.escape(src)}'></p>"
            for src in images.get(name, [])
        ]
        parts.append(_months(section.get("labelled", {})))
    parts.append(_outcomes(report.get("clv_outcomes", {})))
    if report.get("skipped"):
        items = "".join(
            f"<li>{html.escape(k)}: {html.escape(v)}</li>" for k, v in report["skipped"].items()
        )
        parts.append(f"<h2>Not monitored</h2><ul>{items}</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _levels(section: dict[str, Any]) -> str:
    batch, served = section["batch"], section["served"]
    moved = ", ".join(batch.get("top_moved", [])) or "none"
    return (
        f"<p>Batch ({batch['rows']} rows): <span class='{batch['level']}'>{batch['level']}"
        f"</span>; served sample ({served['rows']} rows): <span class='{served['level']}'>"
        f"{served['level']}</span>. Moved most: {html.escape(moved)}</p>"
    )


def _label_free(section: dict[str, Any]) -> str:
    free = section.get("label_free")
    if not free:
        return ""
    calibration = free.get("calibration") or {}
    return (
        f"<p>Churn without labels: ROC-AUC estimated {free['roc_auc_estimated']} "
        f"(holdout at training: {section.get('roc_auc_holdout')}); predicted churn rate "
        f"{calibration.get('predicted_rate')} vs {calibration.get('estimated_rate')} expected from "
        f"the reference calibration.<br><small>{html.escape(free['assumption'])}</small></p>"
    )


def _drift_table(rows: list[dict[str, Any]], title: str) -> str:
    if not rows:
        return ""
    head = "<tr><th>column</th><th>PSI</th><th>noise</th><th>corrected</th><th>level</th></tr>"
    body = "".join(
        f"<tr><td>{html.escape(r['column'])}</td><td>{r['psi']:.4f}</td>"
        f"<td>{r['expected_noise']:.4f}</td><td>{r['corrected']:.4f}</td>"
        f"<td class='{r['level']}'>{r['level']}</td></tr>"
        for r in rows
    )
    return f"<h3>{html.escape(title)}</h3><table>{head}{body}</table>"


def _months(labelled: dict[str, Any]) -> str:
    months = labelled.get("months") or []
    if not months:
        return ""
    head = (
        "<tr><th>snapshot</th><th>customers</th><th>churn rate</th><th>predicted</th>"
        "<th>ROC-AUC</th><th>estimated</th></tr>"
    )
    body = "".join(
        f"<tr><td>{m['snapshot']}</td><td>{m['customers']}</td><td>{m['churn_rate']}</td>"
        f"<td>{m['predicted_rate']}</td><td>{m['roc_auc']}</td><td>{m['roc_auc_estimated']}</td></tr>"
        for m in months
    )
    return f"<h3>Churn once labels exist</h3><table>{head}{body}</table>"


def _outcomes(outcomes: dict[str, Any]) -> str:
    if not outcomes:
        return ""
    note = f"<p><small>{html.escape(outcomes.get('note', ''))}</small></p>"
    if "tiers" not in outcomes:
        return f"<h3>CLV once outcomes exist</h3>{note}"
    window = outcomes["window"]
    head = (
        "<tr><th>tier</th><th>customers</th><th>mean predicted</th><th>mean realised</th>"
        "<th>realised / predicted</th><th>MAE</th></tr>"
    )
    body = "".join(
        f"<tr><td>{r['tier']}</td><td>{r['customers']}</td><td>{r['mean_predicted']}</td>"
        f"<td>{r['mean_realised']}</td><td>{r['ratio']}</td><td>{r['mae']}</td></tr>"
        for r in [*outcomes["tiers"], outcomes["total"]]
    )
    return (
        f"<h3>CLV once outcomes exist: {window['start']} to {window['end']} "
        f"({window['days']} days)</h3><table>{head}{body}</table>{note}"
    )
