"""Any business, not only the sample bank: the whole flow on a retailer, a music store and a
business with four months of history, each in a fresh home.

Every step runs or is skipped with its reason; the churn list is written; CLV on CDNOW matches
`benchmarks/clv.py`; segments and reasons speak the data's words.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from business_flow import BusinessHome, no_loyal_environment, run_business_flow

from loyal.settings import Settings, load_settings

pytestmark = pytest.mark.pipeline

BENCHMARK_CDNOW_MAE = 0.786
"""README: `python benchmarks/clv.py`, CDNOW sample, 39-week holdout, repeat purchases."""


def _run_params(settings: Settings, run_id: str) -> dict[str, str]:
    from training import tracking

    return dict(tracking.client(settings).get_run(run_id).data.params)


def _assert_every_step_ran_or_said_why(home: BusinessHome) -> None:
    for step, status in home.steps.items():
        assert status == "ok" or re.fullmatch(r"skipped: \S.{20,}", status), (step, status)


def _churn_list(home: BusinessHome) -> tuple[pd.DataFrame, dict[str, object]]:
    result = home.results["churn list"]
    meta = json.loads(Path(result.sidecar).read_text())
    return pd.read_csv(result.path, dtype={"customer_id": str}, keep_default_na=False), meta


# ------------------------------------------------------------------------------ retailer
def test_retailer_gets_every_model_a_churn_list_and_a_report(
    scored_retail_home: BusinessHome,
) -> None:
    home = scored_retail_home
    _assert_every_step_ran_or_said_why(home)
    assert all(status == "ok" for status in home.steps.values()), home.steps
    scores = home.results["score"]
    assert scores["churn_probability"].notna().all()
    assert scores["clv"].notna().mean() > 0.5
    calls, meta = _churn_list(home)
    assert len(calls) > 0 and calls["rank"].tolist() == list(range(1, len(calls) + 1))
    assert "unknown" in str(meta["filters"]["consent_marketing"])  # type: ignore[index]
    assert Path(home.results["report"]).is_file()


def test_retail_clv_falls_back_to_revenue_and_says_so(scored_retail_home: BusinessHome) -> None:
    result = scored_retail_home.results["train clv"]
    assert result.value_column == "monetary_value"
    params = _run_params(scored_retail_home.settings, result.run_id)
    assert params["value_basis"].startswith("no margin is known")


def test_retail_segments_and_reasons_speak_in_words(scored_retail_home: BusinessHome) -> None:
    segments = scored_retail_home.results["train segments"]
    names = list(segments.model.segment_names_.values())
    assert not any(re.search(r"\d{5}", name) for name in names), names  # no product codes
    assert segments.refused is None
    calls, _ = _churn_list(scored_retail_home)
    reasons = " ".join(calls[["reason_1", "reason_2", "reason_3"]].to_numpy().ravel())
    assert reasons.strip()
    assert "categor" not in reasons  # the retailer has no product categories
    for absent in ("complaint", "balance", "login", "margin", "holds_", " = "):
        assert absent not in reasons  # nothing the retailer lacks, no raw column names


def test_retail_ids_are_typed_as_numbers(scored_retail_home: BusinessHome) -> None:
    scores = scored_retail_home.results["score"]
    assert scores["customer_id"].astype(str).str.fullmatch(r"[1-9]\d*").all()


# ---------------------------------------------------------------------------- music store
def test_music_store_runs_everything_but_cross_sell(scored_cdnow_home: BusinessHome) -> None:
    home = scored_cdnow_home
    _assert_every_step_ran_or_said_why(home)
    skipped = {step for step, status in home.steps.items() if status != "ok"}
    assert skipped == {"train cross-sell", "promote cross-sell"}
    assert "1 product ('cd')" in home.steps["train cross-sell"]
    calls, _ = _churn_list(home)
    assert len(calls) > 0
    assert calls["customer_id"].str.fullmatch(r"[1-9]\d*").all()  # 00004 is customer 4


def test_cdnow_clv_through_the_flow_matches_the_benchmark(scored_cdnow_home: BusinessHome) -> None:
    result = scored_cdnow_home.results["train clv"]
    assert str(result.calibration_end.date()) == "1997-09-30"
    assert str(result.observation_end.date()) == "1998-06-30"
    assert result.metrics["customers"] == 2_357
    assert result.metrics["mae"] == pytest.approx(BENCHMARK_CDNOW_MAE, rel=0.05)


def test_cdnow_segments_are_named_in_words_or_refused(scored_cdnow_home: BusinessHome) -> None:
    segments = scored_cdnow_home.results["train segments"]
    names = list(segments.model.segment_names_.values())
    assert not any("unknown" in name or "cd" in name.split() for name in names), names
    if segments.refused is None:
        assert segments.metrics["silhouette"] < 0.99
    else:
        promotion = scored_cdnow_home.results["promote segments"]
        assert promotion.outcome == "refused" and not promotion.promoted


def test_cli_skips_cross_sell_on_one_product_with_exit_0(
    scored_cdnow_home: BusinessHome,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from loyal.settings import get_settings
    from pipelines import cli

    config = scored_cdnow_home.settings.home / "loyal.yaml"
    config.write_text("log_level: WARNING\n")
    monkeypatch.setenv("LOYAL_CONFIG", str(config))
    monkeypatch.setattr(sys, "argv", ["loyal", "train", "cross-sell", "--trials", "0"])
    get_settings.cache_clear()
    with pytest.raises(SystemExit) as exited:
        cli.main()
    get_settings.cache_clear()
    assert exited.value.code == 0
    assert "skipped: cross-sell: the transactions hold 1 product" in capsys.readouterr().err


# ----------------------------------------------------------------------- a short history
def four_month_contract(folder: Path, customers: int = 1_200, seed: int = 5) -> Path:
    """A synthetic retailer that kept four months of data (2026-01-01..2026-04-30).

    Customers sign up over the first two months, buy at their own rate from their favourite
    category (three need groups over eight products, two channels) and some stop buying for
    good at a random time: churn is visible to recency and frequency. Contract CSVs.
    """
    rng = np.random.default_rng(seed)
    start, end = pd.Timestamp("2026-01-01"), pd.Timestamp("2026-05-01")
    products = pd.DataFrame(
        {
            "product_id": [f"P{i:02d}" for i in range(1, 9)],
            "name": ["Tea", "Coffee", "Biscuits", "Mug", "Lamp", "Rug", "Seeds", "Trowel"],
            "category": ["pantry"] * 3 + ["home"] * 3 + ["garden"] * 2,
            "margin_rate": [0.3, 0.35, 0.4, 0.5, 0.45, 0.5, 0.6, 0.4],
        }
    )
    by_category = products.groupby("category")["product_id"].apply(list).to_dict()
    ids = [f"S{i:05d}" for i in range(1, customers + 1)]
    signup = start + pd.to_timedelta(rng.integers(0, 59, customers), unit="D")
    rows = []
    for number, customer in enumerate(ids):
        rate = rng.gamma(2.0, 1 / 16)  # purchases per day, mean one every 8 days
        stop = signup[number] + pd.Timedelta(days=float(rng.exponential(90)))
        favourite = ["pantry", "home", "garden"][number % 3]
        channel_bias = 0.8 if number % 2 else 0.2
        moment = signup[number]
        while True:
            moment += pd.Timedelta(days=float(rng.exponential(1 / rate)))
            if moment >= min(stop, end):
                break
            group = favourite if rng.random() < 0.75 else str(rng.choice(list(by_category)))
            rows.append(
                (
                    customer,
                    moment.floor("min"),
                    str(rng.choice(by_category[group])),
                    round(float(rng.lognormal(3.0, 0.5)), 2),
                    "web" if rng.random() < channel_bias else "store",
                )
            )
    transactions = pd.DataFrame(
        rows, columns=["customer_id", "ts", "product_id", "amount", "channel"]
    )
    first = transactions.groupby("customer_id")["ts"].min().dt.normalize()
    table = pd.DataFrame({"customer_id": ids, "signup_date": signup.normalize()})
    table["signup_date"] = table["customer_id"].map(first).fillna(table["signup_date"])
    folder.mkdir(parents=True, exist_ok=True)
    table.to_csv(folder / "customers.csv", index=False)
    transactions.to_csv(folder / "transactions.csv", index=False)
    products.to_csv(folder / "products.csv", index=False)
    return folder


@pytest.fixture(scope="module")
def four_month_home(tmp_path_factory: pytest.TempPathFactory) -> BusinessHome:
    """The four-month business through the whole flow in a fresh home."""
    with no_loyal_environment():
        data = four_month_contract(tmp_path_factory.mktemp("four_months_source"))
        settings = load_settings(home=tmp_path_factory.mktemp("four_months_home"))
        return run_business_flow(settings, data, None)


def test_four_months_of_data_still_get_every_model(four_month_home: BusinessHome) -> None:
    home = four_month_home
    assert all(status == "ok" for status in home.steps.values()), home.steps
    settings = home.settings
    churn = _run_params(settings, home.results["train churn"].run_id)
    assert churn["horizon_days"] == "28" and churn["horizon_days_configured"] == "90"
    assert "too short for the configured 90" in churn["horizon_choice"]
    clv = home.results["train clv"]
    assert (clv.observation_end - clv.calibration_end).days == 8 * 7
    assert "half the" in _run_params(settings, clv.run_id)["holdout_choice"]
    cross_sell = _run_params(settings, home.results["train cross-sell"].run_id)
    assert cross_sell["window_days"] == "28" and "quarter" in cross_sell["window_note"]
    segments = home.results["train segments"]
    assert segments.refused is None
    assert any(c.startswith("category_") for c in segments.model.columns_)
    scores = home.results["score"]
    assert scores[["churn_probability", "segment_id"]].notna().all().all()
    assert scores["clv"].notna().mean() > 0.8  # customers who never bought have no CLV
