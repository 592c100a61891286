"""`loyal churn evaluate` on public extracts nobody tuned on, and on tables it must refuse."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from loyal.settings import get_settings
from pipelines.commands.churn import app

pytestmark = pytest.mark.pipeline

DATA = Path(__file__).resolve().parents[3] / "shared/data"
TELCO_CSV = DATA / "telco_customer_churn/WA_Fn-UseC_-Telco-Customer-Churn.csv"
BANK_CSV = DATA / "bank_marketing/bank-full.csv"
KEYS = ("roc_auc", "pr_auc", "brier", "ece", "lift_at_10", "capture_at_10")
BASELINE_KEYS = tuple(
    f"baseline_{name}_{metric}"
    for name in ("xgboost", "logistic")
    for metric in ("roc_auc", "pr_auc", "brier")
)


@pytest.fixture
def cli_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty home for the CLI's settings, so MLflow runs land in tmp_path."""
    monkeypatch.setenv("LOYAL_HOME", str(tmp_path))
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


@pytest.mark.skipif(not TELCO_CSV.is_file(), reason="Telco file not present")
def test_evaluate_telco_prints_one_json_line_and_beats_the_baselines(cli_home: Path) -> None:
    args = ["evaluate", "--table", str(TELCO_CSV), "--id", "customerID", "--label", "Churn"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    metrics = json.loads(lines[0])
    expected = {*KEYS, *(f"{k}_std" for k in KEYS), *BASELINE_KEYS, "chosen", "seconds", "run_id"}
    assert set(metrics) == expected
    # Telco is additive: every stump model tried sits at 0.8497-0.8504 under this protocol (the
    # budgeted search draws a few more or fewer trials with the machine's load); the plain
    # baselines reach 0.844 and 0.845.
    assert metrics["roc_auc"] >= 0.8495  # 0.850 at the three decimals the README reports
    assert metrics["roc_auc"] >= metrics["baseline_xgboost_roc_auc"]
    assert metrics["roc_auc"] >= metrics["baseline_logistic_roc_auc"]
    assert metrics["roc_auc_std"] < 0.03
    assert 0.12 < metrics["brier"] < 0.15 and metrics["ece"] < 0.05
    assert metrics["lift_at_10"] == pytest.approx(metrics["capture_at_10"] / 0.10, rel=0.01)
    assert len(metrics["chosen"]) == 5
    assert all(
        {"max_depth", "learning_rate", "rounds", "trials"} <= set(c) for c in metrics["chosen"]
    )

    import mlflow

    run = mlflow.MlflowClient(get_settings().mlflow.tracking_uri).get_run(metrics["run_id"])
    logged = run.data.metrics
    assert logged["baseline_xgboost_roc_auc"] == pytest.approx(metrics["baseline_xgboost_roc_auc"])
    assert run.data.params["fold1_max_depth"] == str(metrics["chosen"][0]["max_depth"])


@pytest.mark.skipif(not BANK_CSV.is_file(), reason="Bank Marketing file not present")
def test_evaluate_reads_a_semicolon_table_without_an_id(tmp_path: Path) -> None:
    """A 3,000-row slice of bank-full.csv as it comes: quoted headers, ';', label y, no id."""
    lines = BANK_CSV.read_text().splitlines()
    rng = np.random.default_rng(0)
    kept = rng.choice(np.arange(1, len(lines)), 3000, replace=False)
    table = tmp_path / "bank.csv"
    table.write_text("\n".join([lines[0], *(lines[i] for i in sorted(kept))]) + "\n")
    args = ["evaluate", "--table", str(table), "--label", "y", "--budget-seconds", "20"]
    result = CliRunner().invoke(app, [*args, "--no-mlflow", "--folds", "3"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert metrics["roc_auc"] > 0.88
    assert metrics["baseline_xgboost_roc_auc"] > 0.85


def _bad_tables() -> dict[str, tuple[pd.DataFrame, str]]:
    rng = np.random.default_rng(1)
    x = rng.normal(size=300)
    churn = np.where(np.arange(300) % 4 == 0, "Yes", "No")
    return {
        "no label column": (
            pd.DataFrame({"x": x, "Churned": churn}),
            "column 'Churn': the label column is missing",
        ),
        "one class": (
            pd.DataFrame({"x": x, "Churn": "No"}),
            "column 'Churn': the label is constant",
        ),
        "too few churners": (
            pd.DataFrame({"x": x, "Churn": np.where(np.arange(300) < 20, "yes", "no")}),
            "column 'Churn': only 20 row(s) have the label 'yes'",
        ),
        "not binary": (
            pd.DataFrame({"x": x, "Churn": rng.choice(["low", "mid", "high"], 300)}),
            "column 'Churn': the label must be binary",
        ),
    }


@pytest.mark.parametrize("case", list(_bad_tables()))
def test_bad_tables_stop_with_one_line_and_no_traceback(tmp_path: Path, case: str) -> None:
    frame, message = _bad_tables()[case]
    table = tmp_path / "extract.csv"
    frame.to_csv(table, index=False)
    loyal = [sys.executable, "-c", "from pipelines.cli import main; main()"]
    args = ["churn", "evaluate", "--table", str(table), "--label", "Churn", "--no-mlflow"]
    done = subprocess.run(
        [*loyal, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={"LOYAL_HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "COLUMNS": "400"},
        cwd=Path(__file__).resolve().parents[2],
    )
    output = (done.stdout + done.stderr).strip()
    assert done.returncode == 2, output
    assert "Traceback" not in output
    assert len(output.splitlines()) == 1, output
    assert message in output and "extract.csv" in output
