"""The management report's sections on hand-built score tables, and the page's self-containment."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.store import scores_table_path
from loyal.errors import NotReadyError
from loyal.settings import Settings
from reports.management import (
    NO_SEGMENT,
    ReportInputs,
    build_report,
    composition,
    default_report_path,
    early_warning,
    expected_loss,
    pareto_curve,
    pareto_shares,
    previous_scores_path,
    render_html,
    risk_by,
    write_text_atomically,
)

pytestmark = pytest.mark.unit

SNAPSHOT = pd.Timestamp("2026-10-01", tz="UTC")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def scores_frame(rows: list[tuple[str, str, int, str, float, float]]) -> pd.DataFrame:
    """A scores table from (customer_id, tier, segment_id, segment_name, clv, churn) rows."""
    ids, tiers, segment_ids, names, clv, churn = zip(*rows, strict=True)
    return pd.DataFrame(
        {
            "customer_id": list(ids),
            "event_timestamp": SNAPSHOT,
            "clv": np.array(clv, dtype=float),
            "p_alive": 0.9,
            "expected_purchases_12m": 3.0,
            "tier": list(tiers),
            "segment_id": np.array(segment_ids, dtype=np.int64),
            "segment_name": list(names),
            "churn_probability": np.array(churn, dtype=float),
            "recommendation_1": "",
            "recommendation_2": "",
            "recommendation_3": "",
        }
    )


@pytest.fixture
def scores() -> pd.DataFrame:
    return scores_frame(
        [
            ("c1", "platinum", 0, "savers", 1000.0, 0.10),
            ("c2", "gold", 0, "savers", 400.0, 0.50),
            ("c3", "gold", 1, "borrowers", 300.0, 0.20),
            ("c4", "lead", 1, "borrowers", -50.0, 0.90),
            ("c5", "lead", 1, "borrowers", np.nan, 0.40),
            ("c6", "lead", -1, "", 20.0, np.nan),
        ]
    )


# --- value contribution -----------------------------------------------------------------------
def test_pareto_shares_match_a_hand_computed_case() -> None:
    # 100 customers: 1 brings 100, 4 bring 25 each, 15 bring 10 each, 80 bring 0.5 each = 390
    margin = pd.Series([100.0] + [25.0] * 4 + [10.0] * 15 + [0.5] * 80)
    shuffled = margin.sample(frac=1.0, random_state=3).reset_index(drop=True)
    shares = pareto_shares(shuffled)
    assert shares[0.01] == (1, pytest.approx(100 / 390))
    assert shares[0.05] == (5, pytest.approx(200 / 390))
    assert shares[0.20] == (20, pytest.approx(350 / 390))


def test_pareto_curve_runs_from_nothing_to_everything_best_first() -> None:
    curve = pareto_curve(pd.Series([1.0, 6.0, 3.0]))
    assert curve["customer_share"].tolist() == pytest.approx([0, 1 / 3, 2 / 3, 1])
    assert curve["margin_share"].tolist() == pytest.approx([0, 0.6, 0.9, 1.0])


def test_pareto_curve_is_empty_without_positive_margin() -> None:
    assert pareto_curve(pd.Series([0.0, -5.0])).empty


# --- composition ------------------------------------------------------------------------------
def test_composition_counts_customers_by_segment_and_tier(scores: pd.DataFrame) -> None:
    table = composition(scores)
    assert table.columns.tolist() == ["platinum", "gold", "lead", "all"]
    assert table.index.tolist() == ["0: savers", "1: borrowers", NO_SEGMENT, "all"]
    rows = {key: list(values) for key, values in zip(table.index, table.to_numpy(), strict=True)}
    assert rows == {
        "0: savers": [1, 1, 0, 2],
        "1: borrowers": [0, 1, 2, 3],
        NO_SEGMENT: [0, 0, 1, 1],
        "all": [1, 2, 3, 6],
    }


# --- churn risk and expected loss -------------------------------------------------------------
def test_expected_loss_counts_a_negative_clv_as_no_loss(scores: pd.DataFrame) -> None:
    loss = expected_loss(scores)
    assert loss.iloc[:4].tolist() == pytest.approx([100.0, 200.0, 60.0, 0.0])
    assert loss.iloc[4:].isna().all()


def test_expected_loss_by_tier(scores: pd.DataFrame) -> None:
    table = risk_by(scores, scores["tier"], ["platinum", "gold", "iron", "lead"])
    assert table["customers"].tolist() == [1, 2, 0, 2]  # c6 has no churn probability
    assert table.loc["gold", "mean_churn_probability"] == pytest.approx(0.35)
    assert table.loc["lead", "mean_churn_probability"] == pytest.approx(0.65)
    assert table["riskiest"].tolist() == [0, 0, 0, 1]  # c4 (0.9) alone is in the top 10%
    assert table.loc["platinum", "expected_loss"] == pytest.approx(100.0)
    assert table.loc["gold", "expected_loss"] == pytest.approx(260.0)
    assert table.loc["lead", "expected_loss"] == pytest.approx(0.0)  # -50 clipped, NaN CLV
    assert table["expected_loss"].isna().tolist() == [False, False, True, False]
    assert table.loc["gold", "expected_loss_share"] == pytest.approx(260.0 / 360.0)
    assert table.loc["gold", "expected_loss_per_customer"] == pytest.approx(130.0)


# --- early warning ----------------------------------------------------------------------------
def test_early_warning_ranks_rises_and_breaks_ties_by_customer_id(scores: pd.DataFrame) -> None:
    previous = pd.DataFrame(
        {
            "customer_id": ["c5", "c4", "c3", "c2", "c1", "c6", "gone"],
            "churn_probability": [0.1, 0.6, 0.2, 0.2, 0.2, 0.1, 0.0],
        }
    )
    current = pd.concat(
        [scores, scores_frame([("new", "lead", 0, "savers", 5.0, 0.99)])], ignore_index=True
    )
    table = early_warning(current, previous, top=10)
    # c5 +0.3, c2 +0.3 (tie: c2 first), c4 +0.3 too; c3 flat, c1 fell; c6 has no current
    # probability; "gone" is only in the previous scores and "new" only in the current ones
    assert table["customer_id"].tolist() == ["c2", "c4", "c5"]
    assert table["rise"].tolist() == pytest.approx([0.3, 0.3, 0.3])
    row = table.iloc[0]
    assert (row["tier"], row["segment"]) == ("gold", "0: savers")
    assert (row["previous"], row["current"]) == (pytest.approx(0.2), pytest.approx(0.5))


def test_early_warning_puts_the_largest_rise_first_and_keeps_top_rows(
    scores: pd.DataFrame,
) -> None:
    previous = scores[["customer_id", "churn_probability"]].copy()
    previous["churn_probability"] = [0.05, 0.45, 0.0, 0.85, 0.39, 0.0]
    table = early_warning(scores, previous, top=2)
    assert table["customer_id"].tolist() == ["c3", "c1"]
    assert table["rise"].tolist() == pytest.approx([0.2, 0.05])


# --- the page ---------------------------------------------------------------------------------
def _images(page: str) -> list[str]:
    return re.findall(r'<img [^>]*src="([^"]*)"', page)


def test_page_is_self_contained_and_escapes_customer_text(scores: pd.DataFrame) -> None:
    scores.loc[scores["segment_id"] == 1, "segment_name"] = "<script>alert('x')</script> & $5"
    previous = scores[["customer_id", "event_timestamp", "churn_probability"]].copy()
    previous["churn_probability"] = previous["churn_probability"] - 0.05
    inputs = ReportInputs(
        scores=scores,
        previous=previous,
        margin=pd.Series([500.0, 200.0, 100.0, 10.0, 0.0, 5.0], index=scores["customer_id"]),
        margin_basis="Margin <b>test</b>.",
        model_versions={"churn": "3", "clv": "1", "segments": "2", "cross_sell": None},
        scored_at=pd.Timestamp("2026-10-02 06:30", tz="UTC"),
    )
    page = render_html(inputs)
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; $5" in page
    assert "Margin &lt;b&gt;test&lt;/b&gt;." in page
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.IGNORECASE)
    assert "<link" not in page.lower()
    images = _images(page)
    assert len(images) == 3  # composition, Pareto curve, churn risk
    for source in images:
        assert source.startswith("data:image/png;base64,")
        assert base64.b64decode(source.split(",", 1)[1]).startswith(PNG_MAGIC)
    for text in ("2026-10-01", "2026-10-02 06:30 UTC", "v3", "no champion", "Early warning"):
        assert text in page
    assert "The top 1% of customers (1 of 6) bring 61.3%" in page  # 500 / 815


def test_page_says_which_models_are_missing(scores: pd.DataFrame) -> None:
    no_churn = scores.assign(churn_probability=np.nan)
    page = render_html(ReportInputs(scores=no_churn))
    assert "The churn model is missing" in page
    assert "No previous scoring to compare with" in page
    assert "No margin could be computed" in page
    no_clv = scores.assign(clv=np.nan, segment_id=-1, segment_name="")
    previous = no_clv.assign(churn_probability=no_clv["churn_probability"] / 2)
    page = render_html(ReportInputs(scores=no_clv, previous=previous))
    assert "The CLV model is missing" in page
    assert "The segments model is missing" in page
    assert "The churn model is missing" not in page
    assert "<table><thead><tr><th>customer</th>" in page  # the early-warning table


def test_page_says_when_no_risk_rose(scores: pd.DataFrame) -> None:
    page = render_html(ReportInputs(scores=scores, previous=scores))
    assert "No customer&#x27;s churn probability rose since the previous scoring." in page


# --- files ------------------------------------------------------------------------------------
def test_previous_scores_sit_beside_the_scores(settings: Settings) -> None:
    path = previous_scores_path(settings)
    assert path.parent == scores_table_path(settings).parent
    assert path.name == "scores.previous.parquet"


def test_default_report_path_names_the_snapshot(settings: Settings) -> None:
    path = default_report_path(settings, SNAPSHOT)
    assert path == settings.home / "reports" / "loyal-report-2026-10-01.html"


def test_report_without_scores_asks_for_loyal_score(settings: Settings) -> None:
    with pytest.raises(NotReadyError, match="loyal score"):
        build_report(settings)


def test_atomic_write_leaves_only_the_page(tmp_path: Path) -> None:
    target = tmp_path / "reports" / "page.html"
    write_text_atomically("<p>old</p>", target)
    write_text_atomically("<p>new</p>", target)
    assert target.read_text() == "<p>new</p>"
    assert [p.name for p in target.parent.iterdir()] == ["page.html"]
