"""The management report: one self-contained HTML page over the published scores.

`build_report` reads the scores table (`loyal score`), the previous scores kept beside it,
the contract transactions (for each customer's trailing 12-month margin) and the champion
versions in MLflow, then writes one HTML page, atomically, with:

- a header that makes the page reproducible: snapshot date, when the scores were written,
  the champion version of churn, clv, segments and cross_sell;
- customer composition by value tier and need segment;
- value contribution: the Pareto curve of trailing 12-month margin and the share the top
  1%, 5% and 20% of customers bring;
- churn risk and expected loss (churn probability x CLV) by tier and by segment;
- the early-warning list: the customers whose churn probability rose most since the
  previous scoring.

Every section is computed by a small function over DataFrames (`composition`,
`pareto_shares`, `risk_by`, `early_warning`, ...), testable without MLflow;
`render_html` assembles the page from a `ReportInputs`. Plots are matplotlib figures
(Agg canvas, no pyplot state) embedded as base64 PNG data URIs: no script, stylesheet or
image is fetched from anywhere, so the page reads offline and can be mailed as one file.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from string import Template

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from features.catalog import ENTITY_KEY, TIMESTAMP_FIELD
from features.store import PREVIOUS_SCORES_FILE, scores_table_path
from features.tables_io import staged_file
from loyal.errors import LoyalError, NotReadyError
from loyal.settings import Settings
from models.tiers import TIERS
from training.clv import TOP_SHARES
from training.models_admin import MODELS, champion_versions

log = logging.getLogger(__name__)

REPORTS_DIR = "reports"
"""Folder under the home where reports go by default."""
DEFAULT_TOP = 20
"""Rows of the early-warning list."""
TRAILING_DAYS = 365
"""Days of margin behind the value-contribution section."""
NO_SEGMENT = "no segment"
RISE_DECIMALS = 9
"""Rises are compared at this precision: 0.4 - 0.1 and 0.5 - 0.2 are the same rise."""
RISKIEST_SHARE = 0.10
"""Share of all scored customers, by churn probability, that counts as the riskiest."""

Formatter = Callable[[object], str]


@dataclass(frozen=True)
class ReportInputs:
    """Everything the page shows, already read from disk and MLflow.

    Attributes:
        scores: the current scores table (columns of `pipelines.scores.assemble`).
        previous: the previous scores table, or None when there is none.
        margin: trailing 12-month margin per customer id, or None when unknown.
        margin_basis: one sentence saying what `margin` is.
        model_versions: champion version per registered model (None: no champion).
        scored_at: when the scores table was written (UTC), if known.
        generated_at: when this page was built (UTC).
        campaigns: the measured campaigns section (HTML; empty: no campaign has ended).
    """

    scores: pd.DataFrame
    previous: pd.DataFrame | None = None
    margin: pd.Series | None = None
    margin_basis: str = ""
    model_versions: Mapping[str, str | None] = field(default_factory=dict)
    scored_at: pd.Timestamp | None = None
    generated_at: pd.Timestamp = field(default_factory=lambda: pd.Timestamp.now(tz=UTC))
    campaigns: str = ""


# ------------------------------------------------------------------------ section tables
def snapshot_of(scores: pd.DataFrame) -> pd.Timestamp | None:
    """The snapshot a scores table describes (its latest `event_timestamp`), or None if empty."""
    if scores.empty or TIMESTAMP_FIELD not in scores.columns:
        return None
    return pd.Timestamp(scores[TIMESTAMP_FIELD].max())


def tier_order(tiers: pd.Series) -> list[str]:
    """The pyramid's tiers from the top, then any other value found, sorted."""
    present = set(tiers.astype(str))
    return [t for t in TIERS if t in present] + sorted(present - set(TIERS))


def has_segments(scores: pd.DataFrame) -> bool:
    """Whether any customer has a need segment (a `segments` model scored them)."""
    return bool((scores["segment_id"].astype(int) >= 0).any())


def segment_labels(scores: pd.DataFrame) -> pd.Series:
    """``"3: affluent investors"`` per customer; "no segment" where the id is negative."""
    ids = scores["segment_id"].astype(int)
    names = scores["segment_name"].fillna("").astype(str)
    labels = ids.astype(str) + ": " + names
    return labels.where(ids >= 0, NO_SEGMENT).rename("segment")


def _segment_order(scores: pd.DataFrame) -> list[str]:
    """Segment labels by segment id, "no segment" last."""
    pairs = pd.DataFrame({"id": scores["segment_id"].astype(int), "label": segment_labels(scores)})
    pairs = pairs.drop_duplicates().sort_values(["id", "label"], kind="stable")
    ordered = pairs.loc[pairs["id"] >= 0, "label"].tolist()
    return ordered + ([NO_SEGMENT] if (pairs["id"] < 0).any() else [])


def composition(scores: pd.DataFrame) -> pd.DataFrame:
    """Customers per need segment (rows) and tier (columns), with an "all" row and column.

    Args:
        scores: the scores table (`tier`, `segment_id`, `segment_name`).

    Returns:
        Integer counts; tiers from platinum down, segments by id, "no segment" last.
    """
    table = pd.crosstab(segment_labels(scores), scores["tier"].astype(str).rename("tier"))
    table = table.reindex(
        index=_segment_order(scores), columns=tier_order(scores["tier"]), fill_value=0
    )
    table["all"] = table.sum(axis=1)
    table.loc["all"] = table.sum(axis=0)
    return table.astype(int)


def group_summary(
    scores: pd.DataFrame, group: pd.Series, order: list[str], margin: pd.Series | None
) -> pd.DataFrame:
    """Customers, share of customers and (with a margin) share of margin per group.

    Args:
        scores: the scores table.
        group: the group of each row of `scores` (same index).
        order: the groups, in display order.
        margin: trailing margin per customer id, or None.

    Returns:
        One row per group: `customers`, `customer_share` and, with a margin, `margin` and
        `margin_share` (NaN when the total margin is not positive).
    """
    keys = pd.Series(group.to_numpy(), index=scores.index).astype(str)
    table = pd.DataFrame({"customers": keys.value_counts().reindex(order, fill_value=0)})
    table["customer_share"] = table["customers"] / max(len(scores), 1)
    if margin is not None:
        money = _aligned_margin(scores, margin)
        table["margin"] = money.groupby(keys).sum().reindex(order, fill_value=0.0)
        total = float(money.sum())
        table["margin_share"] = table["margin"] / total if total > 0 else np.nan
    return table


def _aligned_margin(scores: pd.DataFrame, margin: pd.Series) -> pd.Series:
    """The margin of each row of `scores` (0 for customers without one), on its index."""
    ids = scores[ENTITY_KEY].astype(str)
    looked_up = margin.rename(index=str).reindex(ids).fillna(0.0).astype(float)
    return pd.Series(looked_up.to_numpy(), index=scores.index)


def pareto_curve(margin: pd.Series) -> pd.DataFrame:
    """Cumulative share of the total margin against the share of customers, best first.

    Returns:
        `customer_share` (0 to 1) and `margin_share` columns, starting at (0, 0); empty when
        the total margin is not positive.
    """
    values = np.sort(margin.to_numpy(dtype=float))[::-1]
    total = values.sum()
    if len(values) == 0 or total <= 0:
        return pd.DataFrame(columns=["customer_share", "margin_share"], dtype=float)
    return pd.DataFrame(
        {
            "customer_share": np.arange(len(values) + 1) / len(values),
            "margin_share": np.concatenate([[0.0], np.cumsum(values) / total]),
        }
    )


def pareto_shares(
    margin: pd.Series, shares: Sequence[float] = TOP_SHARES
) -> dict[float, tuple[int, float]]:
    """How many customers the top of each share is, and the share of margin they bring.

    Customers are ranked by their own margin; the top group of `share` has
    `round(n * share)` customers, at least one (the rule of `training.clv.top_share`).

    Returns:
        ``{share: (customers, margin share)}``; the margin share is NaN when the total is not
        positive.
    """
    from training.clv import top_share

    values = margin.to_numpy(dtype=float)
    return {
        share: (
            max(1, int(np.floor(len(values) * share + 0.5))) if len(values) else 0,
            top_share(values, values, share),
        )
        for share in shares
    }


def expected_loss(scores: pd.DataFrame) -> pd.Series:
    """Churn probability x CLV per row; a negative CLV counts as no loss, a missing one as NaN."""
    clv = scores["clv"].astype(float).clip(lower=0.0)
    return (scores["churn_probability"].astype(float) * clv).rename("expected_loss")


def risk_by(scores: pd.DataFrame, group: pd.Series, order: list[str]) -> pd.DataFrame:
    """Churn risk and expected loss per group.

    Customers without a churn probability are left out of every figure; customers without
    a CLV count in the churn figures but not in the expected loss.

    Args:
        scores: the scores table (`churn_probability`, `clv`).
        group: the group of each row (same index as `scores`).
        order: the groups, in display order.

    Returns:
        One row per group: `customers` (with a churn probability), `mean_churn_probability`,
        `riskiest` (customers in the riskiest `RISKIEST_SHARE` of all scored customers,
        ties included), `expected_loss` (sum), `expected_loss_share` (of the total) and
        `expected_loss_per_customer`.
    """
    keys = pd.Series(group.to_numpy(), index=scores.index).astype(str)
    probability = scores["churn_probability"].astype(float)
    scored = probability.notna()
    frame = pd.DataFrame(
        {"key": keys[scored], "p": probability[scored], "loss": expected_loss(scores)[scored]}
    )
    threshold = frame["p"].quantile(1.0 - RISKIEST_SHARE) if len(frame) else np.inf
    frame["riskiest"] = (frame["p"] >= threshold).astype(int)
    grouped = frame.groupby("key")
    table = pd.DataFrame(
        {
            "customers": grouped.size(),
            "mean_churn_probability": grouped["p"].mean(),
            "riskiest": grouped["riskiest"].sum(),
            "expected_loss": grouped["loss"].sum(min_count=1),
        }
    ).reindex(order)
    table["customers"] = table["customers"].fillna(0).astype(int)
    table["riskiest"] = table["riskiest"].fillna(0).astype(int)
    total = float(frame["loss"].sum())
    table["expected_loss_share"] = table["expected_loss"] / total if total > 0 else np.nan
    table["expected_loss_per_customer"] = table["expected_loss"] / table["customers"].where(
        table["customers"] > 0
    )
    return table


def early_warning(
    current: pd.DataFrame, previous: pd.DataFrame, top: int = DEFAULT_TOP
) -> pd.DataFrame:
    """The customers whose churn probability rose most since the previous scoring.

    Only customers present in both tables with a probability in both are compared; only
    rises above zero are listed. Rises equal to `RISE_DECIMALS` decimals tie, and ties are
    ordered by customer id.

    Args:
        current: the current scores (`customer_id`, `churn_probability`, `tier`, segment).
        previous: the previous scores (`customer_id`, `churn_probability`).
        top: rows kept.

    Returns:
        `customer_id`, `tier`, `segment`, `previous`, `current` and `rise` (current minus
        previous), largest rise first, at most `top` rows.
    """
    now = pd.DataFrame(
        {
            ENTITY_KEY: current[ENTITY_KEY].astype(str).to_numpy(),
            "tier": current["tier"].astype(str).to_numpy(),
            "segment": segment_labels(current).to_numpy(),
            "current": current["churn_probability"].astype(float).to_numpy(),
        }
    )
    before = pd.DataFrame(
        {
            ENTITY_KEY: previous[ENTITY_KEY].astype(str).to_numpy(),
            "previous": previous["churn_probability"].astype(float).to_numpy(),
        }
    ).drop_duplicates(ENTITY_KEY, keep="last")
    both = now.merge(before, on=ENTITY_KEY, how="inner").dropna(subset=["current", "previous"])
    both["rise"] = both["current"] - both["previous"]
    # rounded for ranking, so rises equal but for float noise tie (then: by customer id)
    both["rank_key"] = both["rise"].round(RISE_DECIMALS)
    rising = both[both["rank_key"] > 0].sort_values(
        ["rank_key", ENTITY_KEY], ascending=[False, True], kind="stable"
    )
    columns = [ENTITY_KEY, "tier", "segment", "previous", "current", "rise"]
    return rising[columns].head(max(top, 0)).reset_index(drop=True)


def compared_customers(current: pd.DataFrame, previous: pd.DataFrame) -> int:
    """Customers with a churn probability in both scorings (those `early_warning` ranks)."""
    now = current.loc[current["churn_probability"].notna(), ENTITY_KEY].astype(str)
    before = previous.loc[previous["churn_probability"].notna(), ENTITY_KEY].astype(str)
    return int(now.isin(set(before)).sum())


# ------------------------------------------------------------------------------- plots
def figure_png(figure: Figure, dpi: int = 100) -> bytes:
    """A figure as PNG bytes (Agg canvas)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def _plain(text: str) -> str:
    """Text matplotlib draws literally (a `$` would otherwise start math mode)."""
    return text.replace("$", r"\$")


TIER_COLOURS = {"platinum": "#6a3d9a", "gold": "#e6a817", "iron": "#8c8c8c", "lead": "#4c72b0"}
EXTRA_COLOURS = ("#55a868", "#c44e52", "#8172b3", "#937860")


def composition_figure(table: pd.DataFrame) -> Figure:
    """Customers by tier (left) and by segment, stacked by tier (right), from `composition`."""
    tiers = [c for c in table.columns if c != "all"]
    segments = [s for s in table.index if s != "all"]
    figure = Figure(
        figsize=(11, 0.5 + 0.45 * max(len(segments), len(tiers), 4)), layout="constrained"
    )
    left, right = figure.subplots(1, 2, width_ratios=[1, 2])
    counts = table.loc["all", tiers]
    left.barh([_plain(t) for t in tiers][::-1], counts.to_numpy()[::-1], color="#4c72b0")
    left.set_title("Customers by value tier")
    left.set_xlabel("customers")
    start = np.zeros(len(segments))
    for i, tier in enumerate(tiers):
        widths = table.loc[segments, tier].to_numpy(dtype=float)
        labels = [_plain(s) for s in segments]
        colour = TIER_COLOURS.get(tier, EXTRA_COLOURS[i % len(EXTRA_COLOURS)])
        right.barh(labels, widths, left=start, label=_plain(tier), color=colour)
        start += widths
    right.invert_yaxis()
    right.set_title("Customers by need segment and tier")
    right.set_xlabel("customers")
    right.legend(loc="lower right", fontsize=8)
    return figure


def pareto_figure(curve: pd.DataFrame, shares: Mapping[float, tuple[int, float]]) -> Figure:
    """The Pareto curve of margin, with the top-share points marked."""
    figure = Figure(figsize=(7, 4.2), layout="constrained")
    axes = figure.add_subplot()
    axes.plot(curve["customer_share"] * 100, curve["margin_share"] * 100, color="#4c72b0")
    axes.plot([0, 100], [0, 100], linestyle=":", color="grey", label="every customer equal")
    for share, (_, margin_share) in shares.items():
        if math.isfinite(margin_share):
            axes.scatter([share * 100], [margin_share * 100], color="#c44e52", zorder=3)
            axes.annotate(
                f"top {share:.0%}: {margin_share:.0%}",
                (share * 100, margin_share * 100),
                textcoords="offset points",
                xytext=(8, -12),
                fontsize=9,
            )
    axes.set_xlabel("customers, ranked by margin (%)")
    axes.set_ylabel("cumulative share of margin (%)")
    axes.set_title("Value contribution (Pareto curve of trailing 12-month margin)")
    axes.legend(loc="lower right", fontsize=8)
    axes.grid(alpha=0.3)
    return figure


def risk_figure(by_tier: pd.DataFrame, by_segment: pd.DataFrame | None, with_loss: bool) -> Figure:
    """Mean churn probability (top row) and expected loss (bottom row) by tier and segment.

    Args:
        by_tier: `risk_by` over tiers.
        by_segment: `risk_by` over segments, or None when there are no segments.
        with_loss: draw the expected-loss row (a CLV is known).
    """
    groups = [("tier", by_tier)] + ([("segment", by_segment)] if by_segment is not None else [])
    panels = [("mean_churn_probability", "mean churn probability", "#c44e52")]
    if with_loss:
        panels.append(("expected_loss", "expected loss (churn probability x CLV)", "#dd8452"))
    figure = Figure(figsize=(11 if len(groups) > 1 else 6, 3.6 * len(panels)), layout="constrained")
    widths = [1, 2][: len(groups)]
    grid = figure.subplots(len(panels), len(groups), width_ratios=widths, squeeze=False)
    for row, (column, label, colour) in enumerate(panels):
        for col, (name, table) in enumerate(groups):
            axes = grid[row, col]
            values = table[column].fillna(0.0)
            axes.barh([_plain(str(i)) for i in table.index], values.to_numpy(), color=colour)
            axes.invert_yaxis()
            axes.set_title(f"{label[0].upper()}{label[1:]} by {name}", fontsize=10)
            axes.set_xlabel(label)
            axes.xaxis.set_major_locator(MaxNLocator(nbins=4))
            axes.xaxis.set_major_formatter(FuncFormatter(_tick))
    return figure


def _tick(value: float, _position: object) -> str:
    """Axis ticks: ``0.05`` below 1, ``12,000`` above."""
    return f"{value:,.0f}" if abs(value) >= 1 else f"{value:.2g}"


# -------------------------------------------------------------------------------- HTML
def _escape(value: object) -> str:
    return html.escape(str(value), quote=True)


def percent(value: object, digits: int = 1) -> str:
    """``12.3%``; a dash for a missing value."""
    number = float(value)  # type: ignore[arg-type]
    return f"{number:.{digits}%}" if math.isfinite(number) else "–"


def amount(value: object) -> str:
    """``12,345``; a dash for a missing value."""
    number = float(value)  # type: ignore[arg-type]
    return f"{number:,.0f}" if math.isfinite(number) else "–"


def count(value: object) -> str:
    """``1,234``."""
    return f"{int(value):,}"  # type: ignore[call-overload]


def probability(value: object) -> str:
    """``0.123``; a dash for a missing value."""
    number = float(value)  # type: ignore[arg-type]
    return f"{number:.3f}" if math.isfinite(number) else "–"


def signed_probability(value: object) -> str:
    """``+0.123``."""
    number = float(value)  # type: ignore[arg-type]
    return f"{number:+.3f}" if math.isfinite(number) else "–"


def html_table(
    frame: pd.DataFrame,
    formats: Mapping[str, Formatter] | None = None,
    headers: Mapping[str, str] | None = None,
    index: str | None = None,
) -> str:
    """An HTML table of a frame; every cell and header is escaped.

    Args:
        frame: the rows to show.
        formats: per column, how to write a value (default `str`).
        headers: per column, the header text (default the column name).
        index: header of a first column holding the frame's index (omitted when None).
    """
    formats = formats or {}
    headers = headers or {}
    columns = [str(c) for c in frame.columns]
    head = ([f"<th>{_escape(index)}</th>"] if index is not None else []) + [
        f"<th>{_escape(headers.get(c, c))}</th>" for c in columns
    ]
    rows = []
    for key, row in zip(frame.index, frame.itertuples(index=False), strict=True):
        cells = [f"<th>{_escape(key)}</th>"] if index is not None else []
        for column, value in zip(columns, row, strict=True):
            text = formats.get(column, str)(value)
            cells.append(f"<td>{_escape(text)}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{''.join(head)}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def image_tag(png: bytes, alt: str) -> str:
    """An ``<img>`` holding the PNG itself as a base64 data URI."""
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{_escape(alt)}">'


def paragraph(text: str, kind: str = "") -> str:
    """An escaped paragraph; `kind` "missing" marks a section that cannot be drawn."""
    css = f' class="{kind}"' if kind else ""
    return f"<p{css}>{_escape(text)}</p>"


def _stamp(moment: pd.Timestamp | None, with_time: bool = True) -> str:
    if moment is None or pd.isna(moment):
        return "unknown"
    moment = pd.Timestamp(moment)
    if moment.tzinfo is not None:
        moment = moment.tz_convert("UTC")
    return moment.strftime("%Y-%m-%d %H:%M UTC" if with_time else "%Y-%m-%d")


def header_section(inputs: ReportInputs) -> str:
    """Title and what makes the page reproducible: snapshot, scoring time, model versions."""
    snapshot = snapshot_of(inputs.scores)
    versions = [
        (name, f"v{version}" if version else "no champion")
        for name, version in ((n, inputs.model_versions.get(n)) for n in MODELS)
    ]
    facts = [
        ("snapshot", _stamp(snapshot, with_time=False)),
        ("scored at", _stamp(inputs.scored_at)),
        ("customers scored", f"{len(inputs.scores):,}"),
        *((f"{name} model", text) for name, text in versions),
        ("page generated", _stamp(inputs.generated_at)),
    ]
    rows = "".join(f"<tr><th>{_escape(k)}</th><td>{_escape(v)}</td></tr>" for k, v in facts)
    return (
        f"<h1>Loyal customer report, snapshot {_escape(_stamp(snapshot, with_time=False))}</h1>"
        f'<table class="facts">{rows}</table>'
        + paragraph(
            "Model versions are the champions in the model registry when this page was "
            "generated; scored at is when the scores table was written."
        )
    )


def composition_section(scores: pd.DataFrame, margin: pd.Series | None) -> str:
    """Customer counts by value tier and need segment, with a plot."""
    parts = ["<h2>Customer composition</h2>"]
    table = composition(scores)
    tiers = tier_order(scores["tier"])
    summary_formats = {
        "customers": count,
        "customer_share": percent,
        "margin": amount,
        "margin_share": percent,
    }
    summary_headers = {
        "customer_share": "share of customers",
        "margin": "12-month margin",
        "margin_share": "share of margin",
    }
    tier_table = group_summary(scores, scores["tier"].astype(str), tiers, margin)
    parts.append("<h3>By value tier</h3>")
    parts.append(html_table(tier_table, summary_formats, summary_headers, index="tier"))
    parts.append("<h3>By need segment</h3>")
    if has_segments(scores):
        labels = segment_labels(scores)
        segment_table = group_summary(scores, labels, _segment_order(scores), margin)
        parts.append(html_table(segment_table, summary_formats, summary_headers, index="segment"))
        parts.append("<h3>Segments x tiers (customers)</h3>")
        parts.append(html_table(table, index="segment \\ tier"))
    else:
        parts.append(
            paragraph(
                "The segments model is missing: no customer has a need segment. "
                "Run `loyal train segments`, `loyal promote segments`, then `loyal score`.",
                "missing",
            )
        )
    parts.append(image_tag(figure_png(composition_figure(table)), "customers by tier and segment"))
    return "".join(parts)


def value_section(margin: pd.Series | None, basis: str) -> str:
    """The Pareto curve of margin and the top 1/5/20% shares, in figures and words."""
    parts = ["<h2>Value contribution</h2>"]
    if margin is None:
        parts.append(
            paragraph("No margin could be computed: the contract tables are missing.", "missing")
        )
        return "".join(parts)
    curve = pareto_curve(margin)
    if curve.empty:
        parts.append(
            paragraph(
                "The customers' total trailing margin is not positive: no Pareto curve.", "missing"
            )
        )
        return "".join(parts)
    shares = pareto_shares(margin)
    sentences = [
        f"The top {share:.0%} of customers ({count:,} of {len(margin):,}) bring "
        f"{percent(value)} of the trailing 12-month margin."
        for share, (count, value) in shares.items()
    ]
    parts.append("<ul>" + "".join(f"<li>{_escape(s)}</li>" for s in sentences) + "</ul>")
    parts.append(
        paragraph(f"Total trailing 12-month margin: {amount(float(margin.sum()))}. {basis}")
    )
    parts.append(image_tag(figure_png(pareto_figure(curve, shares)), "Pareto curve of margin"))
    return "".join(parts)


def risk_section(scores: pd.DataFrame) -> str:
    """Churn risk and expected loss by tier and segment."""
    parts = ["<h2>Churn risk and expected loss</h2>"]
    if scores["churn_probability"].isna().all():
        parts.append(
            paragraph(
                "The churn model is missing: no customer has a churn probability. "
                "Run `loyal train churn`, `loyal promote churn`, then `loyal score`.",
                "missing",
            )
        )
        return "".join(parts)
    with_loss = bool(scores["clv"].notna().any())
    if with_loss:
        no_clv = int((scores["churn_probability"].notna() & scores["clv"].isna()).sum())
        total = float(expected_loss(scores).sum())
        parts.append(
            paragraph(
                "Expected loss = churn probability x CLV (a negative CLV counts as no loss). "
                f"Total expected loss: {amount(total)}"
                + (f" ({no_clv:,} customers without a CLV left out)." if no_clv else ".")
                + f" The riskiest {RISKIEST_SHARE:.0%} are the customers with the highest "
                "churn probabilities of all scored customers."
            )
        )
    else:
        parts.append(
            paragraph(
                "The CLV model is missing: no customer has a CLV, so no expected loss is shown. "
                "Run `loyal train clv`, `loyal promote clv`, then `loyal score`.",
                "missing",
            )
        )
    formats = {
        "customers": count,
        "mean_churn_probability": probability,
        "riskiest": count,
        "expected_loss": amount,
        "expected_loss_share": percent,
        "expected_loss_per_customer": amount,
    }
    headers = {
        "mean_churn_probability": "mean churn probability",
        "riskiest": f"in the riskiest {RISKIEST_SHARE:.0%}",
        "expected_loss": "expected loss",
        "expected_loss_share": "share of expected loss",
        "expected_loss_per_customer": "expected loss per customer",
    }
    by_tier = risk_by(scores, scores["tier"].astype(str), tier_order(scores["tier"]))
    segmented = has_segments(scores)
    by_segment = risk_by(scores, segment_labels(scores), _segment_order(scores))
    if not with_loss:
        keep = ["customers", "mean_churn_probability", "riskiest"]
        by_tier, by_segment = by_tier[keep], by_segment[keep]
    parts.append("<h3>By value tier</h3>")
    parts.append(html_table(by_tier, formats, headers, index="tier"))
    parts.append("<h3>By need segment</h3>")
    if segmented:
        parts.append(html_table(by_segment, formats, headers, index="segment"))
    else:
        parts.append(
            paragraph("The segments model is missing: no split by need segment.", "missing")
        )
    figure = risk_figure(by_tier, by_segment if segmented else None, with_loss)
    parts.append(image_tag(figure_png(figure), "churn risk and expected loss"))
    return "".join(parts)


def early_warning_section(
    scores: pd.DataFrame, previous: pd.DataFrame | None, top: int = DEFAULT_TOP
) -> str:
    """The customers whose churn probability rose most since the previous scoring."""
    parts = ["<h2>Early warning: churn risk rising</h2>"]
    if previous is None:
        parts.append(
            paragraph(
                "No previous scoring to compare with: the early-warning list needs two "
                "scorings. It appears after the next `loyal score`.",
                "missing",
            )
        )
        return "".join(parts)
    if scores["churn_probability"].isna().all() or previous["churn_probability"].isna().all():
        parts.append(
            paragraph(
                "The churn model is missing from the current or the previous scoring: "
                "no rise can be computed.",
                "missing",
            )
        )
        return "".join(parts)
    compared = compared_customers(scores, previous)
    rising = early_warning(scores, previous, top)
    parts.append(
        paragraph(
            f"Previous scoring: snapshot {_stamp(snapshot_of(previous), with_time=False)}; "
            f"{compared:,} customers scored both times are compared (customers in only one "
            f"scoring are left out). Rise = current minus previous churn probability."
        )
    )
    if rising.empty:
        parts.append(paragraph("No customer's churn probability rose since the previous scoring."))
        return "".join(parts)
    parts.append(
        html_table(
            rising,
            {"previous": probability, "current": probability, "rise": signed_probability},
            {
                ENTITY_KEY: "customer",
                "previous": "previous probability",
                "current": "current probability",
            },
        )
    )
    return "".join(parts)


STYLE = """
body { font-family: Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1100px;
       color: #222; line-height: 1.4; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; }
th:first-child, thead th { text-align: left; background: #f4f4f4; }
table.facts th { text-align: left; }
p.missing { background: #fff3cd; border-left: 4px solid #e0a800; padding: 0.5em 0.8em; }
img { max-width: 100%; display: block; margin: 1em 0; }
"""

PAGE = Template(
    """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>$title</title>
<style>$style</style>
</head>
<body>
$body
</body>
</html>
"""
)


def render_html(inputs: ReportInputs, top: int = DEFAULT_TOP) -> str:
    """The whole page: header, composition, value, churn risk and early warning.

    Args:
        inputs: what the page shows.
        top: rows of the early-warning list.

    Returns:
        A self-contained HTML document (inline style, images as data URIs, no script).
    """
    scores = inputs.scores
    body = [
        header_section(inputs),
        composition_section(scores, inputs.margin),
        value_section(inputs.margin, inputs.margin_basis),
        risk_section(scores),
        early_warning_section(scores, inputs.previous, top),
        inputs.campaigns,
    ]
    title = f"Loyal report {_stamp(snapshot_of(scores), with_time=False)}"
    return PAGE.substitute(title=_escape(title), style=STYLE, body="\n".join(body))


# ------------------------------------------------------------------------------ inputs
def previous_scores_path(settings: Settings) -> Path:
    """Where scoring keeps the previous scores table (beside the current one)."""
    return scores_table_path(settings).with_name(PREVIOUS_SCORES_FILE)


def read_scores(path: Path) -> pd.DataFrame:
    """The scores table at `path`.

    Raises:
        NotReadyError: no scores yet (or an empty table): run `loyal score`.
    """
    if not path.is_file():
        raise NotReadyError(f"no scores at {path}: run `loyal score` first")
    scores = pd.read_parquet(path)
    if scores.empty:
        raise NotReadyError(f"the scores table {path} is empty: run `loyal score` again")
    return scores


def read_previous(path: Path) -> pd.DataFrame | None:
    """The previous scores table, or None when there is none (first scoring) or it is unreadable."""
    if not path.is_file():
        return None
    try:
        return pd.read_parquet(path, columns=[ENTITY_KEY, TIMESTAMP_FIELD, "churn_probability"])
    except Exception as exc:  # an old or broken file must not cost management the whole page
        log.warning("previous scores at %s are unreadable (%s): no early-warning list", path, exc)
        return None


def file_time(path: Path) -> pd.Timestamp:
    """A file's modification time, in UTC."""
    return pd.Timestamp(datetime.fromtimestamp(path.stat().st_mtime, tz=UTC))


def trailing_margin(settings: Settings, scores: pd.DataFrame) -> tuple[pd.Series | None, str]:
    """Each scored customer's net margin over the 365 days before the snapshot, and its basis.

    The rule of CLV training and of tiers without a CLV (`features.clv_inputs.with_margins` and
    `trailing_margins`): a transaction's own margin, else amount x its product's margin
    rate, refunds netted; the window ends the day before the snapshot, like the scores'
    observation end.

    Returns:
        Margin per scored customer id (0 without a transaction in the window) and one
        sentence naming the basis; None and "" when the contract tables are not loaded.
    """
    from features.tables_io import read_contract
    from features.clv_inputs import MARGIN_COLUMN, trailing_margins, with_margins

    try:
        tables = read_contract(settings, only=["transactions", "products"])
    except LoyalError as exc:
        log.warning("no contract tables (%s): no value-contribution section", exc)
        return None, ""
    transactions, basis = with_margins(tables["transactions"], tables.get("products"))
    snapshot = pd.Timestamp(scores[TIMESTAMP_FIELD].max())
    end = snapshot.tz_convert("UTC").tz_localize(None).normalize() - pd.Timedelta(days=1)
    ids = pd.Index(scores[ENTITY_KEY].astype(str), name=ENTITY_KEY)
    margin = pd.Series(trailing_margins(transactions, end, TRAILING_DAYS, ids), index=ids)
    what = "margin" if basis == MARGIN_COLUMN else "revenue (the data has no margin)"
    sentence = (
        f"Margin here is each scored customer's net {what} over the {TRAILING_DAYS} days up to "
        f"{end:%Y-%m-%d} (the day before the snapshot) from the loaded transactions: a "
        "transaction's own margin, else its amount x the product's margin rate, refunds "
        "netted. Customers are ranked by that margin."
    )
    return margin.rename("margin"), sentence


def default_report_path(settings: Settings, snapshot: pd.Timestamp | None) -> Path:
    """``<home>/reports/loyal-report-<snapshot date>.html``."""
    return settings.home / REPORTS_DIR / f"loyal-report-{_stamp(snapshot, with_time=False)}.html"


def write_text_atomically(text: str, path: Path) -> Path:
    """Write a text file through a temporary file and a rename: readers never see half a page."""
    with staged_file(path) as staging:
        staging.write_text(text, encoding="utf-8")
    return path


def report_inputs(settings: Settings) -> ReportInputs:
    """Read the scores, the previous scores, the margins and the champion versions."""
    path = scores_table_path(settings)
    scores = read_scores(path)
    snapshot = snapshot_of(scores)
    if snapshot is None:
        raise NotReadyError(f"the scores table {path} has no snapshot: run `loyal score` again")
    margin, basis = trailing_margin(settings, scores)
    from campaigns.campaign_report import campaigns_section

    return ReportInputs(
        scores=scores,
        previous=read_previous(previous_scores_path(settings)),
        margin=margin,
        margin_basis=basis,
        model_versions=champion_versions(settings),
        scored_at=file_time(path),
        campaigns=campaigns_section(settings),
    )


def build_report(settings: Settings, out: Path | None = None, top: int = DEFAULT_TOP) -> Path:
    """Write the management report for the published scores.

    Args:
        settings: where the scores, contract tables and MLflow live.
        out: the HTML file to write (default `reports/loyal-report-<snapshot date>.html`
            under the home).
        top: rows of the early-warning list.

    Returns:
        The path written.

    Raises:
        NotReadyError: no scores yet: run `loyal score`.
    """
    if top < 1:
        raise LoyalError(f"--top must be at least 1, got {top}")
    inputs = report_inputs(settings)
    target = out if out is not None else default_report_path(settings, snapshot_of(inputs.scores))
    path = write_text_atomically(render_html(inputs, top), Path(target))
    log.info("Report for %d customers written to %s", len(inputs.scores), path)
    return path
