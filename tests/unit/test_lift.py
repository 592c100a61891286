"""Measured lift on hand-made campaigns, and `loyal campaign report`'s refusals in one line."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from loyal.campaigns import Campaign, CampaignStore, store_path
from models.lift import measure, measure_by

pytestmark = pytest.mark.unit

LOYAL = Path(sys.executable).with_name("loyal")


def members(n_t: int, churn_t: int, n_c: int, churn_c: int, tier: str = "gold") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "group": ["treated"] * n_t + ["control"] * n_c,
            "churned": [1] * churn_t
            + [0] * (n_t - churn_t)
            + [1] * churn_c
            + [0] * (n_c - churn_c),
            "clv": 1000.0,
            "cost": [50.0] * n_t + [0.0] * n_c,
            "tier": tier,
        }
    )


def test_lift_and_its_interval_by_hand() -> None:
    # Treated 200 (20 churned, 10%), control 100 (20 churned, 20%).
    result = measure(members(200, 20, 100, 20))
    se = math.sqrt(0.2 * 0.8 / 100 + 0.1 * 0.9 / 200)  # 0.045277
    assert result.lift == pytest.approx(0.10)
    assert result.low == pytest.approx(0.10 - 1.959964 * se, abs=1e-6)  # 0.01126
    assert result.high == pytest.approx(0.10 + 1.959964 * se, abs=1e-6)  # 0.18874
    assert result.customers_saved == pytest.approx(20.0)  # 0.10 x 200
    assert result.retained_value_treated == pytest.approx(900.0)
    assert result.retained_value_control == pytest.approx(800.0)
    assert result.value_saved == pytest.approx(20_000.0)  # (900 - 800) x 200
    assert result.cost == 10_000.0
    assert result.cost_per_customer_saved == pytest.approx(500.0)
    assert result.return_on_spend == pytest.approx(1.0)  # (20,000 - 10,000) / 10,000
    assert result.verdict.startswith("the contact kept customers")


def test_no_difference_and_tiny_groups_say_they_cannot_tell() -> None:
    same = measure(members(200, 20, 100, 10))
    assert same.lift == pytest.approx(0.0) and same.low < 0 < same.high
    assert same.verdict.startswith("too small to tell: the interval holds 0")
    assert same.cost_per_customer_saved is None
    tiny = measure(members(20, 2, 5, 1))
    assert tiny.verdict.startswith("too small to tell: 20 treated and 5 control")


def test_lift_by_tier_measures_each_tier_alone() -> None:
    frame = pd.concat([members(200, 20, 100, 20, "gold"), members(100, 10, 50, 5, "lead")])
    table = measure_by(frame, "tier")
    assert table.loc["gold", "lift"] == pytest.approx(0.10)
    assert table.loc["lead", "lift"] == pytest.approx(0.0)
    assert np.isclose(table.loc["lead", "treated"], 100)


def loyal(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOYAL_")}
    env |= {"LOYAL_HOME": str(home), "COLUMNS": "300"}
    return subprocess.run(
        [str(LOYAL), *args], cwd=home, env=env, capture_output=True, text=True, timeout=120
    )


def test_campaign_report_refuses_bad_input_in_one_line(tmp_path: Path) -> None:
    start = datetime.now(UTC) - timedelta(days=10)
    running = Campaign("retention-running", "retention", start, start, 90, 1, 0.1, "l.csv", "x")
    frame = pd.DataFrame(
        {"customer_id": ["C1"], "grp": ["control"], "tier": ["gold"], "segment_name": ["s"],
         "action_id": [""], "action_cost": [0.0], "churn_probability": [0.2], "clv": [100.0]}
    )  # fmt: skip
    store = CampaignStore(store_path(tmp_path / ".loyal"))
    store.record(running, frame)
    for args, message in (
        (("retention-running",), "campaign retention-running: its outcome window ends on"),
        (("nope",), "unknown campaign 'nope' (recorded: retention-running)"),
    ):
        done = loyal(tmp_path, "campaign", "report", *args)
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr
        lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
        assert len(lines) == 1 and message in lines[0], lines
