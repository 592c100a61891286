"""`loyal churn-list` end to end on the scored sample bank: csv, parquet and xlsx.

The expected list is recomputed here from the scores table and the contract's customers, on
its own, and compared with what the command wrote.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from campaigns.churn_list import COLUMNS, NO_WIN_BACK, REASON_COLUMNS, sidecar_path
from campaigns.list_campaigns import GROUP_COLUMNS
from features.store import scores_table_path
from loyal.campaigns import CampaignStore, assign_control, store_path
from loyal.errors import LoyalError
from loyal.settings import Settings, get_settings
from models.offers import load_catalog
from pipelines.cli import app

pytestmark = pytest.mark.pipeline

TOP = 40
TEXT_COLUMNS = [
    "customer_id",
    "tier",
    "segment_name",
    "region",
    *REASON_COLUMNS,
    "action_id",
    "action_title",
    "action_message",
    "action_note",
    *GROUP_COLUMNS,
]


@pytest.fixture
def cli_home(scored_bank_home: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """The scored bank as the CLI's home (LOYAL_HOME), settings cache cleared around the test."""
    monkeypatch.setenv("LOYAL_HOME", str(scored_bank_home.home))
    monkeypatch.chdir(scored_bank_home.home)
    get_settings.cache_clear()
    yield scored_bank_home
    get_settings.cache_clear()


def run_cli(*args: str) -> str:
    result = CliRunner().invoke(app, ["churn-list", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.output


def read_list(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    read = pd.read_csv if path.suffix == ".csv" else pd.read_excel
    frame = read(path, dtype={c: str for c in TEXT_COLUMNS})
    frame[TEXT_COLUMNS] = frame[TEXT_COLUMNS].fillna("")
    return frame


def expected_ids(settings: Settings, top: int, tiers: set[str] | None = None) -> list[str]:
    """The list recomputed by hand: open, consenting, ranked by expected loss then id."""
    scores = pd.read_parquet(scores_table_path(settings))
    customers = pd.read_parquet(settings.paths.contract_dir / "customers.parquet")
    consenting = customers[
        customers["consent_marketing"].fillna(False).astype(bool) & customers["closed_at"].isna()
    ]["customer_id"].astype(str)
    rows = scores[scores["customer_id"].astype(str).isin(set(consenting))].copy()
    if tiers is not None:
        rows = rows[rows["tier"].isin(tiers)]
    rows["loss"] = (rows["churn_probability"] * rows["clv"].clip(lower=0)).round(2)
    rows = rows.dropna(subset=["loss"])
    rows = rows.sort_values(["loss", "customer_id"], ascending=[False, True])
    return rows["customer_id"].astype(str).head(top).tolist()


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".xlsx"])
def test_churn_list_file_and_sidecar(cli_home: Settings, tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"calls{suffix}"
    printed = run_cli("--out", str(out), "--top", str(TOP))
    listed = read_list(out)

    assert f"Wrote {TOP} customers to {out}" in printed
    assert list(listed.columns) == [*COLUMNS, *GROUP_COLUMNS]
    assert listed["customer_id"].tolist() == expected_ids(cli_home, TOP)
    assert listed["rank"].tolist() == list(range(1, TOP + 1))
    assert listed["expected_loss"].is_monotonic_decreasing
    assert (listed["reason_1"] != "").any()

    sidecar = json.loads(sidecar_path(out).read_text())
    scores = pd.read_parquet(scores_table_path(cli_home))
    assert pd.Timestamp(sidecar["snapshot"]) == scores["event_timestamp"].max()
    assert sidecar["output"]["rows"] == TOP
    assert sidecar["output"]["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    models = sidecar["models"]
    assert models["churn_reasons"]["alias"] == "champion"
    assert models["churn_reasons"]["version"] == models["champions"]["churn"]
    assert {"clv", "segments", "cross_sell"} <= set(models["champions"])
    assert models["champions"]["clv"] is not None
    assert sidecar["counts"]["listed"] == TOP
    assert sidecar["counts"]["no_consent"] > 0
    assert sidecar["filters"]["top"] == TOP
    assert not list(tmp_path.glob(".*tmp*")), "temporary files left behind"
    control = listed.loc[listed["group"] == "control", "customer_id"].tolist()
    assert sidecar["campaign"]["control_ids"] == control and control
    assert set(listed.loc[listed["group"] == "control", "contact"]) == {
        "do not contact (control group)"
    }


def test_the_control_group_is_recorded_and_reproducible_from_its_seed(
    cli_home: Settings, tmp_path: Path
) -> None:
    out = tmp_path / "calls.csv"
    run_cli("--out", str(out), "--top", "100", "--control-share", "0.2", "--seed", "5")
    listed = read_list(out)
    campaign_id = json.loads(sidecar_path(out).read_text())["campaign"]["campaign_id"]
    store = CampaignStore(store_path(cli_home.paths.runtime_dir))
    campaign = store.campaign(campaign_id)
    members = store.members(campaign_id).set_index("customer_id")
    assert campaign.seed == 5 and campaign.control_share == 0.2
    assert len(members) == 100 and (members["grp"] == "control").sum() == 20
    again = assign_control(listed["customer_id"].tolist(), listed["tier"].tolist(), 0.2, 5)
    assert (members.loc[listed["customer_id"], "grp"].eq("control").to_numpy() == again).all()
    assert members.loc[listed["customer_id"], "grp"].tolist() == listed["group"].tolist()


@pytest.mark.parametrize("share", ["0", "0.6", "-1"])
def test_a_control_share_outside_the_range_is_one_line(
    cli_home: Settings, tmp_path: Path, share: str
) -> None:
    result = CliRunner().invoke(
        app, ["churn-list", "--out", str(tmp_path / "c.csv"), "--control-share", share]
    )
    assert isinstance(result.exception, LoyalError)
    assert "--control-share: must be in (0, 0.5]" in str(result.exception)
    assert not (tmp_path / "c.csv").exists()


def test_actions_are_retention_offers_within_the_tier_cap(
    cli_home: Settings, tmp_path: Path
) -> None:
    out = tmp_path / "calls.parquet"
    run_cli("--out", str(out), "--top", "200")
    listed = pd.read_parquet(out)
    catalog = load_catalog()
    with_action = listed[listed["action_id"] != ""]
    without = listed[listed["action_id"] == ""]

    assert len(with_action) > 0
    for row in with_action.to_dict("records"):
        offer = catalog.offer(str(row["action_id"]))
        assert offer is not None and offer.kind in ("retention", "win_back")
        assert "call_center" in offer.channels
        assert float(row["action_cost"]) == offer.cost <= catalog.spend.cap(str(row["tier"]))
        assert row["action_message"] and float(row["action_expected_value"]) > 0
    assert (without["action_cost"] == 0).all()
    notes = without["action_note"]
    assert (notes.str.startswith("no retention offer allowed") | (notes == NO_WIN_BACK)).all()


def test_min_tier_and_probability_filters(cli_home: Settings, tmp_path: Path) -> None:
    out = tmp_path / "gold.csv"
    run_cli("--out", str(out), "--top", "500", "--min-tier", "gold", "--min-prob", "0.01")
    listed = read_list(out)
    expected = [
        cid
        for cid in expected_ids(cli_home, 10_000, tiers={"platinum", "gold"})
        if cid in set(listed["customer_id"])
    ]

    assert len(listed) > 0
    assert set(listed["tier"]) <= {"platinum", "gold"}
    assert (listed["churn_probability"] >= 0.01 - 5e-5).all()
    assert listed["customer_id"].tolist() == expected


def test_unknown_segment_is_named(cli_home: Settings, tmp_path: Path) -> None:
    with pytest.raises(LoyalError, match="--segment: unknown segment 'nobody'"):
        run_cli("--out", str(tmp_path / "calls.csv"), "--segment", "nobody")
    assert not (tmp_path / "calls.csv").exists()
