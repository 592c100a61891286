"""`loyal report` on the scored sample bank: every section, and an early-warning list that names
the customers whose churn risk was raised since a (hand-made) previous scoring.

The session's scored bank is read-only: each test copies its contract and scores tables into
a fresh home and points that home at the bank's MLflow store (read only: champion aliases).
"""

from __future__ import annotations

import base64
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from features.store import scores_table_path
from loyal.settings import Settings, get_settings, load_settings
from reports.management import build_report, previous_scores_path
from training.models_admin import MODELS

pytestmark = pytest.mark.pipeline

RAISED = 5


class PageParser(HTMLParser):
    """Section titles, image sources and the rows of every table of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.titles: list[str] = []
        self.images: list[str] = []
        self.tables: list[list[list[str]]] = []
        self._tag: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.images.append(dict(attrs).get("src") or "")
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in {"td", "th"}:
            self._cell = []
        self._tag = tag

    def handle_endtag(self, tag: str) -> None:
        if tag in {"td", "th"} and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell))
            self._cell = None
        self._tag = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        elif self._tag == "h2":
            self.titles.append(data)


def parse(page: str) -> PageParser:
    parser = PageParser()
    parser.feed(page)
    return parser


@pytest.fixture
def report_home(scored_bank_home: Settings, tmp_path: Path) -> Settings:
    """A fresh home with the bank's contract and scores tables, reading the bank's MLflow."""
    source = scored_bank_home.paths.data_dir
    for folder in ("contract", "scores"):
        shutil.copytree(source / folder, tmp_path / "data" / folder)
    return load_settings(
        home=tmp_path, mlflow={"tracking_uri": scored_bank_home.mlflow.tracking_uri}
    )


def champions(settings: Settings) -> dict[str, str | None]:
    from training import tracking
    from training.registry import champion_version

    registry = tracking.client(settings)
    found = {name: champion_version(registry, name) for name in MODELS}
    return {name: None if v is None else str(v.version) for name, v in found.items()}


def test_report_without_previous_scores_has_every_section(report_home: Settings) -> None:
    scores = pd.read_parquet(scores_table_path(report_home))
    assert not previous_scores_path(report_home).exists()
    path = build_report(report_home)
    snapshot = f"{pd.Timestamp(scores['event_timestamp'].max()):%Y-%m-%d}"
    assert path == report_home.home / "reports" / f"loyal-report-{snapshot}.html"
    page = path.read_text(encoding="utf-8")
    parsed = parse(page)
    assert parsed.titles == [
        "Customer composition",
        "Value contribution",
        "Churn risk and expected loss",
        "Early warning: churn risk rising",
        "Retention campaigns: measured lift",  # the bank's past campaigns, windows ended
    ]
    campaigns = parsed.tables[-1]
    assert campaigns[0][:3] == ["campaign", "treated", "control"]
    assert [row[0] for row in campaigns[1:]] == [
        "retention-2025-11",
        "retention-2026-02",
        "retention-2026-05",
    ]
    assert "No previous scoring to compare with" in page
    assert "model is missing" not in page
    facts = dict(parsed.tables[0])
    assert facts["snapshot"] == snapshot
    assert facts["customers scored"] == f"{len(scores):,}"
    for name, version in champions(report_home).items():
        if name in ("uplift", "acceptance"):  # not trained on this home: the page says so
            assert version is None and facts[f"{name} model"] == "no champion"
            continue
        assert version is not None
        assert facts[f"{name} model"] == f"v{version}"
    tiers = {row[0]: int(row[1].replace(",", "")) for row in parsed.tables[1][1:]}
    assert tiers == scores["tier"].value_counts().to_dict()
    top = f"({round(len(scores) * 0.2):,} of {len(scores):,})"
    assert re.search(rf"The top 20% of customers {re.escape(top)} bring \d+\.\d%", page)
    assert len(parsed.images) == 3
    for source in parsed.images:
        assert source.startswith("data:image/png;base64,")
        assert base64.b64decode(source.split(",", 1)[1])[:4] == b"\x89PNG"
    assert not re.search(r"(src|href)=\"?(https?:)?//", page)


def test_cli_report_lists_the_customers_whose_risk_rose(
    report_home: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import typer

    from pipelines.commands.report import report_command

    scores = pd.read_parquet(scores_table_path(report_home))
    riskiest = scores.sort_values(["churn_probability", "customer_id"], ascending=[False, True])
    dropped = riskiest["customer_id"].iloc[0]  # absent from the previous scoring: left out
    raised = riskiest["customer_id"].iloc[1 : 1 + RAISED].tolist()
    # each was at 10%, 20%, ... of its current probability: rises strictly decreasing
    factors = dict(zip(raised, [0.1 * (i + 1) for i in range(RAISED)], strict=True))
    current = scores.set_index("customer_id")["churn_probability"]
    rises = [current[c] * (1 - factors[c]) for c in raised]
    previous = scores[scores["customer_id"] != dropped].copy()
    lowered = previous["customer_id"].map(factors).fillna(1.0)
    previous["churn_probability"] = previous["churn_probability"] * lowered
    ghost = previous.iloc[[0]].assign(customer_id="only-in-previous", churn_probability=0.0)
    pd.concat([previous, ghost]).to_parquet(previous_scores_path(report_home), index=False)

    app = typer.Typer()
    app.command()(report_command)
    out = tmp_path / "out" / "page.html"
    monkeypatch.setenv("LOYAL_HOME", str(report_home.home))
    monkeypatch.setenv("LOYAL_MLFLOW__TRACKING_URI", report_home.mlflow.tracking_uri)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["--out", str(out), "--top", str(RAISED + 3)])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert str(out) in result.output
    assert [p.name for p in out.parent.iterdir()] == ["page.html"]

    parsed = parse(out.read_text(encoding="utf-8"))
    warning = parsed.tables[-2]  # the last table measures the bank's past campaigns
    assert warning[0] == [
        "customer",
        "tier",
        "segment",
        "previous probability",
        "current probability",
        "rise",
    ]
    rows = warning[1:]
    assert [row[0] for row in rows] == raised  # only they rose, largest rise first
    assert [float(row[5]) for row in rows] == pytest.approx(rises, abs=1e-3)
    by_id = scores.set_index("customer_id")
    for row in rows:
        assert row[1] == by_id.loc[row[0], "tier"]
        assert float(row[4]) == pytest.approx(by_id.loc[row[0], "churn_probability"], abs=1e-3)


def test_a_past_campaign_is_broken_down_by_the_tiers_its_members_had_at_its_start(
    report_home: Settings, scored_bank_home: Settings
) -> None:
    from campaigns.campaign_report import campaign_report
    from pipelines.commands.scoring import score_past

    campaign_id = "retention-2026-05"
    # Only today's scores: a member who left since has none, so today's tiers would put every
    # churner in "none"; the report says the breakdown is unknown and how to get it instead.
    report = campaign_report(report_home, campaign_id)
    start = f"{report.campaign.snapshot:%Y-%m-%d}"
    assert report.by_tier.empty and report.by_segment.empty
    assert "by tier: unknown at the campaign's start" in report.text()
    assert f"`loyal score --as-of {start}`" in report.text()

    # Scoring the customers as they were at the campaign's start gives every member a tier.
    shutil.copytree(scored_bank_home.paths.features_dir, report_home.paths.features_dir)
    today = scores_table_path(report_home).read_bytes()
    summary = score_past(report_home, start)
    assert summary["snapshot"].startswith(start) and Path(summary["path"]).is_file()
    assert scores_table_path(report_home).read_bytes() == today  # today's scores untouched

    report = campaign_report(report_home, campaign_id)
    by_tier = report.by_tier
    assert "none" not in by_tier.index and set(by_tier.index) <= {
        "platinum",
        "gold",
        "iron",
        "lead",
    }
    assert by_tier[["treated", "control"]].to_numpy().sum() == (
        report.total.treated + report.total.control
    )
    churned = (by_tier["churn_control"] * by_tier["control"]).sum()
    assert churned == pytest.approx(report.total.churn_control * report.total.control)
    assert churned > 0  # the churners are in their tiers
    assert f"by tier (the scores of {start}):" in report.text()
    assert "none" not in report.by_segment.index
