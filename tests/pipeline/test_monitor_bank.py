"""`loyal monitor` on the scored sample bank: the report, label-free and labelled churn
performance, and the alert (exit code 2) a shifted served population raises.

The session's scored bank is read-only: the test copies its feature and scores tables into a
fresh home that reads the bank's MLflow store (champions and their reference profiles).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from loyal.settings import Settings, get_settings, load_settings

pytestmark = pytest.mark.pipeline


@pytest.fixture
def monitor_home(scored_bank_home: Settings, tmp_path: Path) -> Settings:
    """A fresh home with the bank's feature and scores tables, reading the bank's MLflow."""
    home = load_settings(
        home=tmp_path, mlflow={"tracking_uri": scored_bank_home.mlflow.tracking_uri}
    )
    shutil.copytree(scored_bank_home.paths.features_dir, home.paths.features_dir)
    source = scored_bank_home.paths.data_dir / "scores"
    shutil.copytree(source, home.paths.data_dir / "scores")
    shutil.copytree(scored_bank_home.paths.contract_dir, home.paths.contract_dir)
    return home


def test_monitor_reports_drift_and_churn_performance_then_alerts_on_shifted_requests(
    monitor_home: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from monitoring.batch import run_monitor
    from monitoring.service import champion_reference, monitoring_dir
    from pipelines.commands.monitor import ALERT_EXIT_CODE, monitor_command

    report = run_monitor(monitor_home, tmp_path / "report")
    churn = report["models"]["churn"]
    # same bank, same model: the batch scores have not moved
    assert churn["batch"]["scores"][0]["column"] == "churn_probability"
    assert churn["batch"]["scores"][0]["level"] == "ok"
    assert churn["batch"]["rows"] > 1000
    assert 0.5 < churn["label_free"]["roc_auc_estimated"] < 1.0
    months = churn["labelled"]["months"]
    assert months and all(0.5 < m["roc_auc"] <= 1.0 for m in months)
    assert len(churn["labelled"]["deciles_latest_labelled"]) == 10
    written = json.loads((tmp_path / "report" / "report.json").read_text())
    assert written["level"] == report["level"]
    page = (tmp_path / "report" / "report.html").read_text()
    assert "plots/churn_auc.png" in page and (tmp_path / "report" / "plots").is_dir()
    check_clv_outcomes(report["clv_outcomes"], monitor_home)
    assert "CLV once outcomes exist" in page

    # the service's sample: real feature rows, but served scores far above the reference's
    from monitoring.sampler import RequestSampler

    reference = champion_reference(monitor_home)
    assert reference is not None
    rows = [{name: 100.0 for name in reference.columns if ":" not in name}] * 400
    sampler = RequestSampler(monitoring_dir(monitor_home), lambda: reference, lambda c, v: None)
    for row, p in zip(rows, np.linspace(0.5, 0.95, len(rows)), strict=True):
        sampler.offer(row, float(p))
    sampler.flush()

    app = typer.Typer()
    app.command()(monitor_command)
    monkeypatch.setenv("LOYAL_HOME", str(monitor_home.home))
    monkeypatch.setenv("LOYAL_MLFLOW__TRACKING_URI", monitor_home.mlflow.tracking_uri)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["--out", str(tmp_path / "cli")])
        retrained = retrain_if_drift(monkeypatch)
    finally:
        get_settings.cache_clear()
    assert result.exit_code == ALERT_EXIT_CODE, result.output
    served = json.loads((tmp_path / "cli" / "report.json").read_text())["models"]["churn"]
    assert served["served"]["level"] == "alert"
    assert served["served"]["scores"][0]["level"] == "alert"
    # the same alert makes `loyal pipeline retrain --if-drift` retrain (the retrain is recorded,
    # not run: the full retrain has tests of its own)
    output, calls = retrained
    assert "drift alert: retraining" in output and len(calls) == 1


def retrain_if_drift(monkeypatch: pytest.MonkeyPatch) -> tuple[str, list[tuple]]:
    """`loyal pipeline retrain --if-drift` with the retrain itself recorded instead of run."""
    from pipelines.commands import admin

    calls: list[tuple] = []
    monkeypatch.setattr(admin, "retrain_pipeline", lambda *args: calls.append(args))
    result = CliRunner().invoke(admin.pipeline_app, ["retrain", "--if-drift", "--no-bento"])
    assert result.exit_code == 0, result.output
    return result.output, calls


def check_clv_outcomes(outcomes: dict, home: Settings) -> None:
    """Four tiers; the realised margin is the transactions' own sum over the window."""
    from features.tables_io import read_contract

    assert [row["tier"] for row in outcomes["tiers"]] == ["platinum", "gold", "iron", "lead"]
    total = outcomes["total"]
    assert sum(row["customers"] for row in outcomes["tiers"]) == total["customers"] > 1000
    window = outcomes["window"]
    transactions = read_contract(home, only=["transactions"])["transactions"]
    days = pd.to_datetime(transactions["ts"]).dt.normalize()
    calibration_end = pd.Timestamp(window["calibration_end"])
    bought = transactions[(days <= calibration_end) & (transactions["amount"] > 0)]
    in_window = transactions[(days > calibration_end) & (days <= pd.Timestamp(window["end"]))]
    realised = in_window[in_window["customer_id"].isin(bought["customer_id"])]["margin"].sum()
    assert total["realised_total"] == pytest.approx(realised, rel=1e-6)
    # the prediction is of the same order as what came in, and ranks: platinum earns more
    assert 0.5 < total["ratio"] < 2.0
    platinum, lead = outcomes["tiers"][0], outcomes["tiers"][-1]
    assert platinum["mean_realised"] > 3 * lead["mean_realised"]


def latest_features(customers: int, seed: int, shift: str | None) -> pd.DataFrame:
    """The latest feature snapshot of a small generated bank, every view side by side."""
    from features.engineering import build_feature_tables, latest_snapshot
    from features.validation import validate_tables
    from monitoring.shift import shift_hook
    from samplebank.bank import generate_bank

    hook = None if shift is None else shift_hook(shift, 24, seed)
    tables = validate_tables(generate_bank(customers, seed, shift=hook).tables).tables
    frames = build_feature_tables(tables, latest_snapshot(tables))
    return pd.concat(
        [f.set_index("customer_id").drop(columns="event_timestamp") for f in frames.values()],
        axis=1,
    )


def test_the_churn_score_moves_on_an_outage_bank_and_not_on_another_seed(
    trained_bank_home: Settings,
) -> None:
    from monitoring.batch import load_churn_model
    from monitoring.drift import column_drift
    from monitoring.reference import SCORE_PREFIX
    from monitoring.service import champion_reference

    model = load_churn_model(trained_bank_home)
    reference = champion_reference(trained_bank_home)
    assert model is not None and reference is not None
    score = reference.columns[SCORE_PREFIX + "churn_probability"]
    inputs = [str(c) for c in model.feature_names_in_]
    drift = {}
    for shift in (None, "outage"):
        frame = latest_features(1500, 99, shift)
        probability = model.predict_proba(frame.reindex(columns=inputs))[:, 1]
        drift[shift] = column_drift(score, score.counts_of(probability))
    assert drift[None].level == "ok" and drift[None].p_value > 0.001
    # On this small bank's weak model the outage moves the score clearly (corrected PSI about
    # 0.08, p < 1e-6) but not always past the 0.1 warn level; the larger rehearsal in the README
    # reaches the alert level.
    assert drift["outage"].p_value < 0.001
    assert drift["outage"].corrected > 0.05 > drift[None].corrected
