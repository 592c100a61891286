"""The churn list on hand-built frames: ranking, consent, ties, filters, actions, writing."""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from campaigns import churn_list
from campaigns.churn_list import (
    COLUMNS,
    ChurnListFilters,
    build_churn_list,
    churn_list_frame,
    customer_scores,
    retention_catalog,
    select_customers,
    sidecar_path,
    suggest_action,
    suggest_actions,
    write_list,
)
from loyal.errors import LoyalError, NotReadyError
from loyal.settings import Settings
from models.nba import CustomerScores, decide
from models.offers import Catalog, catalog_from_yaml

pytestmark = pytest.mark.unit

NOW = datetime(2026, 10, 1, tzinfo=UTC)

# id: churn probability, CLV, tier, segment id, segment name, region, consent, closed
ROWS: dict[str, tuple[float, float, str, int, str, str | None, Any, bool]] = {
    "A": (0.9, 100.0, "lead", 0, "young digital", "north", True, False),  # loss 90
    "B": (0.3, 1000.0, "gold", 1, "affluent savers", "south", True, False),  # loss 300
    "C": (0.6, 250.0, "iron", 1, "affluent savers", "north", True, False),  # loss 150
    "D": (0.5, 300.0, "iron", 0, "young digital", "south", True, False),  # loss 150, tie
    "E": (0.8, 2000.0, "platinum", 1, "affluent savers", "north", False, False),  # no consent
    "F": (0.21, 100.0, "lead", 0, "young digital", "east", True, False),  # 21.0
    "G": (0.07, 300.0, "lead", 0, "young digital", "east", True, False),  # 21.000000000000004
    "H": (math.nan, 500.0, "iron", 0, "young digital", "north", True, False),  # no probability
    "I": (0.5, -50.0, "lead", 1, "affluent savers", None, True, False),  # negative CLV: loss 0
    "J": (0.7, 900.0, "gold", 1, "affluent savers", "north", True, True),  # closed
    "K": (0.7, 800.0, "gold", 0, "young digital", "south", None, False),  # consent unknown
}
RANKED = ["B", "C", "D", "A", "F", "G", "I"]


def scores_frame(order: list[str] | None = None) -> pd.DataFrame:
    ids = order or list(ROWS)
    return pd.DataFrame(
        {
            "customer_id": ids,
            "event_timestamp": pd.Timestamp(NOW),
            "clv": [ROWS[i][1] for i in ids],
            "tier": [ROWS[i][2] for i in ids],
            "segment_id": np.array([ROWS[i][3] for i in ids], dtype=np.int64),
            "segment_name": [ROWS[i][4] for i in ids],
            "churn_probability": [ROWS[i][0] for i in ids],
        }
    )


def customers_frame() -> pd.DataFrame:
    ids = list(ROWS)
    return pd.DataFrame(
        {
            "customer_id": ids,
            "signup_date": pd.Timestamp("2020-01-01"),
            "region": [ROWS[i][5] for i in ids],
            "consent_marketing": pd.array([ROWS[i][6] for i in ids], dtype="boolean"),
            "closed_at": [pd.Timestamp("2026-09-01") if ROWS[i][7] else pd.NaT for i in ids],
        }
    )


def selected_ids(**filters: Any) -> list[str]:
    selection = select_customers(scores_frame(), customers_frame(), ChurnListFilters(**filters))
    return selection.frame["customer_id"].tolist()


# --- ranking, consent, ties -----------------------------------------------------------------------


def test_ranks_by_expected_loss_not_by_probability() -> None:
    selection = select_customers(scores_frame(), customers_frame(), ChurnListFilters())
    frame = selection.frame

    assert frame["customer_id"].tolist() == RANKED
    assert frame["rank"].tolist() == list(range(1, len(RANKED) + 1))
    assert frame["expected_loss"].tolist() == [300.0, 150.0, 150.0, 90.0, 21.0, 21.0, 0.0]
    by_probability = frame.sort_values("churn_probability", ascending=False)["customer_id"]
    assert by_probability.iloc[0] == "A"  # the riskiest customer is worth less than B, C and D


def test_only_open_consenting_scored_customers_are_listed() -> None:
    counts = select_customers(scores_frame(), customers_frame(), ChurnListFilters()).counts

    listed = set(selected_ids())
    assert not listed & {"E", "K"}  # consent false, consent not recorded
    assert "J" not in listed  # closed
    assert "H" not in listed  # no churn probability
    assert counts == {
        "scored": 11,
        "closed": 1,
        "no_consent": 2,
        "no_churn_probability_or_clv": 1,
        "eligible": 7,
        "listed": 7,
    }


def test_customer_missing_from_the_customers_table_is_not_called() -> None:
    scores = pd.concat([scores_frame(), scores_frame(["B"]).assign(customer_id="Z")])
    frame = select_customers(scores, customers_frame(), ChurnListFilters()).frame
    assert "Z" not in frame["customer_id"].tolist()


def test_ties_break_by_customer_id_whatever_the_input_order() -> None:
    shuffled = list(reversed(ROWS))
    frame = select_customers(scores_frame(shuffled), customers_frame(), ChurnListFilters()).frame

    assert frame["customer_id"].tolist() == RANKED
    # C and D both lose 150; G (0.07 x 300) exceeds F (0.21 x 100) only by float noise
    assert frame["customer_id"].tolist().index("C") < frame["customer_id"].tolist().index("D")
    assert frame["customer_id"].tolist().index("F") < frame["customer_id"].tolist().index("G")


def test_top_cuts_after_ranking() -> None:
    selection = select_customers(scores_frame(), customers_frame(), ChurnListFilters(top=2))
    assert selection.frame["customer_id"].tolist() == ["B", "C"]
    assert selection.counts["eligible"] == 7
    assert selection.counts["listed"] == 2


# --- filters --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"min_tier": "platinum"}, []),
        ({"min_tier": "gold"}, ["B"]),
        ({"min_tier": "iron"}, ["B", "C", "D"]),
        ({"min_tier": "lead"}, RANKED),
        ({"segments": ("AFFLUENT savers",)}, ["B", "C", "I"]),
        ({"segments": ("0",)}, ["D", "A", "F", "G"]),
        ({"segments": ("0", "affluent savers")}, RANKED),
        ({"regions": ("North",)}, ["C", "A"]),
        ({"regions": ("north", "east")}, ["C", "A", "F", "G"]),
        ({"min_probability": 0.5}, ["C", "D", "A", "I"]),
        ({"min_probability": 0.0}, RANKED),
        ({"min_tier": "iron", "regions": ("south",), "min_probability": 0.4}, ["D"]),
    ],
)
def test_filters(filters: dict[str, Any], expected: list[str]) -> None:
    assert selected_ids(**filters) == expected


def test_counts_name_the_filter_that_dropped_rows() -> None:
    filters = ChurnListFilters(min_tier="iron", regions=("south",))
    counts = select_customers(scores_frame(), customers_frame(), filters).counts
    assert counts["below_min_tier"] == 4  # A, F, G, I
    assert counts["other_region"] == 1  # C
    assert counts["listed"] == 2


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"min_tier": "silver"}, r"--min-tier: unknown tier 'silver' \(allowed: platinum, gold"),
        ({"segments": ("spenders",)}, r"--segment: unknown segment 'spenders' \(known: affluent"),
        ({"segments": ("7",)}, "--segment: unknown segment '7'"),
        ({"regions": ("west",)}, r"--region: unknown region 'west' \(known: east, north, south"),
        ({"min_probability": -0.1}, "--min-prob: must be a probability between 0 and 1"),
        ({"min_probability": 1.5}, "--min-prob: must be a probability between 0 and 1"),
        ({"min_probability": math.nan}, "--min-prob"),
        ({"top": 0}, "--top: must be at least 1"),
    ],
)
def test_bad_filter_values_name_the_option(filters: dict[str, Any], message: str) -> None:
    with pytest.raises(LoyalError, match=message):
        select_customers(scores_frame(), customers_frame(), ChurnListFilters(**filters))


def test_region_filter_without_a_region_column() -> None:
    customers = customers_frame().drop(columns=["region"])
    with pytest.raises(LoyalError, match="--region: the customers table has no region column"):
        select_customers(scores_frame(), customers, ChurnListFilters(regions=("north",)))
    assert "region" in select_customers(scores_frame(), customers, ChurnListFilters()).frame


@pytest.mark.parametrize("how", ["dropped", "blank"])
def test_unknown_consent_lists_everyone_open_and_says_so(how: str) -> None:
    customers = customers_frame()
    if how == "dropped":
        customers = customers.drop(columns=["consent_marketing"])
    else:
        customers["consent_marketing"] = pd.array([pd.NA] * len(customers), dtype="boolean")
    known = select_customers(scores_frame(), customers_frame(), ChurnListFilters())
    unknown = select_customers(scores_frame(), customers, ChurnListFilters())
    assert known.consent_known and not unknown.consent_known
    assert "no_consent" not in unknown.counts
    assert unknown.counts["eligible"] == known.counts["eligible"] + known.counts["no_consent"]
    assert unknown.frame["consent_marketing"].isna().all()
    assumed = select_customers(scores_frame(), customers, ChurnListFilters(), assume_consent=True)
    assert assumed.consent_assumed and not assumed.consent_known
    assert assumed.counts["eligible"] == unknown.counts["eligible"]
    assert assumed.frame["consent_marketing"].eq(True).all()
    # A recorded consent column always rules: the setting never overrides a refusal.
    recorded = select_customers(
        scores_frame(), customers_frame(), ChurnListFilters(), assume_consent=True
    )
    assert not recorded.consent_assumed and recorded.counts == known.counts


@pytest.mark.parametrize("name", ["calls.json", "calls", "calls.csv.gz"])
def test_unsupported_output_is_refused_before_any_work(settings: Settings, name: str) -> None:
    with pytest.raises(LoyalError, match="--out: unsupported file type"):
        build_churn_list(settings, settings.home / name)


def test_missing_scores_say_to_run_loyal_score(settings: Settings) -> None:
    with pytest.raises(NotReadyError, match="run `loyal score` first"):
        build_churn_list(settings, settings.home / "calls.csv")


# --- actions --------------------------------------------------------------------------------------


# The sample bank's retention offers with fixed thresholds (the shipped catalog gets tuned), a
# retention offer that is never made by phone, and a service action the full policy would pick.
CATALOG = """
version: 1
spend: {caps: {platinum: 500, gold: 200, iron: 75, lead: 25}, unknown_tier: 25}
offers:
  - id: retention_rate_bonus
    title: Rate bonus on deposits for a key customer at risk
    kind: retention
    channels: [call_center, branch]
    cost: 350
    value: {model: retention, save_rate: 0.6}
    p_accept: 0.55
    min_tier: gold
    eligibility: [{field: churn_probability, op: ">=", value: 0.25}]
    message: "High churn risk ({top_churn_reason}), {tier} tier: offer a 0.5% rate bonus."
  - id: retention_fee_waiver
    title: Waive account fees for a valuable customer at risk
    kind: retention
    channels: [call_center, branch]
    cost: 120
    value: {model: retention, save_rate: 0.5}
    p_accept: 0.4
    max_clv_share: 0.25
    eligibility: [{field: churn_probability, op: ">=", value: 0.20}]
    message: "High churn risk ({top_churn_reason}), {tier} tier: offer the fee waiver."
  - id: retention_check_in
    title: Thank-you call for a customer at risk
    kind: retention
    channels: [call_center, branch, email]
    cost: 8
    value: {model: retention, save_rate: 0.15}
    p_accept: 0.3
    eligibility: [{field: churn_probability, op: ">=", value: 0.15}]
    message: "Churn risk ({top_churn_reason}): thank the customer for staying with us."
  - id: retention_win_back_email
    title: Win-back e-mail
    kind: retention
    channels: [email]
    cost: 1
    value: {model: retention, save_rate: 0.1}
    p_accept: 0.5
    message: "We would hate to see you go."
  - id: service_app_help
    title: Help with the app after complaints
    kind: service
    channels: [call_center, branch]
    cost: 3
    value: {model: fixed, amount: 40}
    p_accept: 0.5
    eligibility: [{field: complaints_90d, op: ">=", value: 1}]
    message: "{complaints_90d:n} complaint(s) in the last 90 days: offer help with the app."
"""


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return catalog_from_yaml(CATALOG)


def features(**overrides: Any) -> dict[str, Any]:
    """A known customer's features: no mortgage, a few complaints, consent given."""
    values: dict[str, Any] = {
        "consent_marketing": True,
        "tenure_days": 900,
        "holds_checking": True,
        "holds_mortgage": False,
        "balance_mortgage": math.nan,
        "rate_mortgage": math.nan,
        "complaints_90d": 2,
        "idle_cash": 500.0,
    }
    values.update(overrides)
    return values


REASONS = ("3 complaints in the last 90 days", "spending fell 40% on the quarter")


def test_retention_catalog_keeps_only_retention_offers(catalog: Catalog) -> None:
    restricted = retention_catalog(catalog)
    assert restricted is not None
    assert {o.kind for o in restricted.offers} == {"retention"}
    assert [o.id for o in restricted.offers] == [
        o.id for o in catalog.offers if o.kind == "retention"
    ]
    assert restricted.spend == catalog.spend
    assert restricted.offer("service_app_help") is None


def test_key_customer_gets_the_policy_s_best_retention_offer(catalog: Catalog) -> None:
    scores = CustomerScores(
        churn_probability=0.5, clv=10_000.0, tier="platinum", churn_reasons=REASONS
    )
    suggestion = suggest_action(features(), scores, retention_catalog(catalog), NOW)

    # the win-back e-mail would be worth more, but marketing calls: call-center offers only
    assert suggestion.action_id == "retention_rate_bonus"
    assert suggestion.cost == 350.0
    assert suggestion.expected_value == pytest.approx(0.55 * 0.5 * 10_000 * 0.6 - 350)
    assert REASONS[0] in suggestion.message and "platinum tier" in suggestion.message
    assert suggestion.note == ""


def test_spend_cap_of_the_tier_picks_a_cheaper_offer(catalog: Catalog) -> None:
    # gold: the rate bonus ($350) exceeds the $200 cap; the fee waiver does not pay off
    scores = CustomerScores(churn_probability=0.3, clv=1000.0, tier="gold", churn_reasons=REASONS)
    suggestion = suggest_action(features(), scores, retention_catalog(catalog), NOW)
    assert suggestion.action_id == "retention_check_in"
    assert suggestion.cost == 8.0
    assert suggestion.expected_value == pytest.approx(0.3 * 0.3 * 1000 * 0.15 - 8, abs=0.005)


def test_no_retention_offer_is_said_not_dropped(catalog: Catalog) -> None:
    # the full policy would suggest the app help (a service action) for the complaints
    scores = CustomerScores(churn_probability=0.1, clv=400.0, tier="lead")
    full = decide(features(), scores, "call_center", catalog, None, NOW)
    assert full.actions[0].action_id == "service_app_help"

    suggestion = suggest_action(features(), scores, retention_catalog(catalog), NOW)
    assert (suggestion.action_id, suggestion.cost, suggestion.message) == ("", 0.0, "")
    assert suggestion.note.startswith("no retention offer allowed (")
    assert "retention_check_in: condition 1 not met" in suggestion.note
    assert "retention_win_back_email: not offered on call_center" in suggestion.note


def test_customer_unknown_to_the_feature_store_gets_a_note(catalog: Catalog) -> None:
    scores = CustomerScores(churn_probability=0.5, clv=10_000.0, tier="platinum")
    suggestion = suggest_action(None, scores, retention_catalog(catalog), NOW)
    assert suggestion.action_id == ""
    assert "unknown customer" in suggestion.note


def test_catalog_without_retention_offers(catalog: Catalog) -> None:
    only_service = Catalog(offers=tuple(o for o in catalog.offers if o.kind == "service"))
    assert retention_catalog(only_service) is None
    suggestion = suggest_action(features(), CustomerScores(), None, NOW)
    assert suggestion.note == "the offer catalog has no retention offer"


def test_scores_row_markers_read_as_unknown() -> None:
    scores = customer_scores(
        {"churn_probability": 0.4, "clv": math.nan, "tier": "", "segment_id": -1,
         "segment_name": ""},
        ["r"],
    )  # fmt: skip
    assert scores == CustomerScores(churn_probability=0.4, churn_reasons=("r",))


def test_actions_follow_the_list_consent_and_order(catalog: Catalog) -> None:
    selected = select_customers(scores_frame(), customers_frame(), ChurnListFilters()).frame
    rows = pd.DataFrame(
        [features(consent_marketing=False) for _ in RANKED],
        index=pd.Index(RANKED, name="customer_id"),
    ).drop(index=["A"])
    actions = suggest_actions(selected, rows, {"B": REASONS}, retention_catalog(catalog), NOW)

    assert actions.index.tolist() == selected.index.tolist()
    by_id = dict(zip(selected["customer_id"], actions["action_id"], strict=True))
    # B (gold, p 0.3, CLV 1000): consent comes from the contract table, not the stale feature
    assert by_id["B"] == "retention_check_in"
    assert by_id["A"] == ""  # no features: unknown to the store
    assert by_id["I"] == ""  # CLV negative: retention is worth nothing


# --- the frame and the files ----------------------------------------------------------------------


def list_frame(catalog: Catalog) -> pd.DataFrame:
    selected = select_customers(scores_frame(), customers_frame(), ChurnListFilters()).frame
    rows = pd.DataFrame([features() for _ in RANKED], index=pd.Index(RANKED, name="customer_id"))
    reasons = {"B": [*REASONS, "third", "fourth"], "C": [REASONS[0]]}
    actions = suggest_actions(selected, rows, reasons, retention_catalog(catalog), NOW)
    return churn_list_frame(selected, reasons, actions)


def test_list_frame_columns_reasons_and_blanks(catalog: Catalog) -> None:
    frame = list_frame(catalog)

    assert list(frame.columns) == COLUMNS
    b, c, i = (frame[frame["customer_id"] == cid].iloc[0] for cid in ("B", "C", "I"))
    assert [b["reason_1"], b["reason_2"], b["reason_3"]] == [*REASONS, "third"]
    assert [c["reason_1"], c["reason_2"], c["reason_3"]] == [REASONS[0], "", ""]
    assert i["region"] == ""
    assert (b["action_id"], b["action_cost"]) == ("retention_check_in", 8.0)
    assert b["action_title"] == "Thank-you call for a customer at risk"
    assert (i["action_id"], i["action_cost"], i["action_expected_value"]) == ("", 0.0, 0.0)
    assert frame.notna().all().all()


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".xlsx"])
def test_write_list_round_trip_and_sidecar(catalog: Catalog, tmp_path: Path, suffix: str) -> None:
    frame = list_frame(catalog)
    out = tmp_path / "lists" / f"calls{suffix}"
    written = write_list(frame, {"snapshot": NOW.isoformat()}, out)

    sidecar = json.loads(sidecar_path(out).read_text())
    assert sidecar_path(out).name == f"calls{suffix}.meta.json"
    assert sidecar == written
    assert sidecar["snapshot"] == NOW.isoformat()
    assert sidecar["output"]["rows"] == len(frame)
    assert sidecar["output"]["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    if suffix == ".parquet":
        back = pd.read_parquet(out)
    elif suffix == ".csv":
        back = pd.read_csv(out, dtype=str, keep_default_na=False)
    else:
        back = pd.read_excel(out, dtype=str, keep_default_na=False)
    assert back["customer_id"].tolist() == RANKED
    assert back["action_id"].tolist() == frame["action_id"].tolist()
    assert sorted(p.name for p in out.parent.iterdir()) == sorted(
        [out.name, f"{out.name}.meta.json"]
    )


def test_failed_write_keeps_the_previous_list(
    catalog: Catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "calls.csv"
    write_list(list_frame(catalog), {"run": 1}, out)
    before = out.read_bytes(), sidecar_path(out).read_text()

    def broken(frame: pd.DataFrame, path: Path, kind: str) -> None:
        path.write_text("half a list")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(churn_list, "_write_frame", broken)
    with pytest.raises(LoyalError, match=r"--out: could not write .*No space left on device"):
        write_list(list_frame(catalog), {"run": 2}, out)

    assert (out.read_bytes(), sidecar_path(out).read_text()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calls.csv", "calls.csv.meta.json"]
