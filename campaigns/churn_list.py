"""Marketing's weekly churn list: consenting customers ranked by expected loss, with what to do.

`build_churn_list` reads the published scores (`loyal score`), keeps the open customers who
consented to marketing (every open customer when the business records no consent at all,
stated in the sidecar and the summary), applies the filters, ranks by expected loss and keeps
the top N. Only for those it then asks the churn champion for the top three reasons
(features of the scores' snapshot, through Feast's point-in-time join) and the NBA policy for
the best retention offer on the call-center channel. The list and a `<file>.meta.json` sidecar
(snapshot, model versions, catalog, filters, counts, the list's own hash) are written
atomically.

Ranking: expected loss = churn probability x max(CLV, 0) (a customer whose CLV is negative
costs nothing to lose, as in the policy's retention value), rounded to cents, descending; ties
by customer id ascending, so the same inputs always give the same list.

The selection and the actions are pure functions on DataFrames (`select_customers`,
`suggest_actions`, `churn_list_frame`), testable without MLflow or Feast.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from campaigns.list_campaigns import (
    ControlOptions,
    campaign_meta,
    hold_out,
    record_campaign,
    seed_for,
)
from campaigns.saved_value import RANKING as SAVED_VALUE_RANKING
from campaigns.saved_value import check_rank_by, uplift_champion, with_saved_value
from features.catalog import ENTITY_KEY, TIMESTAMP_FIELD
from features.contract import has_values
from features.tables_io import read_contract, recorded_catalog, staged_file
from loyal.errors import LoyalError, NotReadyError
from loyal.settings import Settings
from models.nba import (
    LAPSED_STATES,
    LIFECYCLE_FIELD,
    ContactEvent,
    CustomerScores,
    Decision,
    decide,
)
from models.offers import TIERS, Catalog, choose_catalog, load_catalog
from training.models_admin import champion_versions

log = logging.getLogger(__name__)

FORMAT = "loyal.churn_list/1"
"""Version of the list's layout, recorded in the sidecar."""
CHANNEL = "call_center"
"""The channel the suggested actions are chosen for: marketing calls the customers."""
ACTION_KIND = "retention"
"""The campaign's kind: the list suggests retention offers (and win-back, `ACTION_KINDS`)."""
ACTION_KINDS = (ACTION_KIND, "win_back")
"""Offer kinds the list suggests: retention for customers still here, win-back for the lapsed."""
NO_WIN_BACK = "no win-back effort: lapsed or lost at tier lead"
"""The note of a lapsed or lost lead customer: listed, measured, but not fought for."""
SUFFIXES = (".csv", ".parquet", ".xlsx")
"""Output formats, by file suffix."""
SIDECAR_SUFFIX = ".meta.json"
"""The sidecar is the list's file name plus this suffix: `calls.csv.meta.json`."""
N_REASONS = 3
REASON_COLUMNS = [f"reason_{rank}" for rank in range(1, N_REASONS + 1)]
COLUMNS = [
    "rank",
    ENTITY_KEY,
    "expected_loss",
    "churn_probability",
    "clv",
    "tier",
    "segment_id",
    "segment_name",
    "region",
    *REASON_COLUMNS,
    "action_id",
    "action_title",
    "action_message",
    "action_cost",
    "action_expected_value",
    "action_note",
]
"""Columns of the list, in order (documented in the README's "Churn list" section)."""
RANKING = (
    "expected_loss = churn_probability x max(clv, 0), rounded to cents; descending, "
    "ties by customer_id ascending"
)
"""The ranking rule in words, recorded in the sidecar."""

Rule = tuple[str, Callable[[pd.DataFrame], pd.Series]]
"""A selection rule: its count name and which rows it keeps."""


@dataclass(frozen=True)
class ChurnListFilters:
    """Who may be on the list, beyond consent and being open.

    Attributes:
        top: at most this many customers.
        min_tier: lowest value tier kept (platinum > gold > iron > lead; None: all).
        segments: need segments kept, by id or name (empty: all).
        regions: regions kept (empty: all).
        min_probability: lowest churn probability kept, in [0, 1].
    """

    top: int = 500
    min_tier: str | None = None
    segments: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    min_probability: float = 0.0


@dataclass(frozen=True)
class Selection:
    """The ranked customers and how many each rule left out.

    Attributes:
        frame: one row per listed customer, best first, with `rank` and `expected_loss`.
        counts: scored customers, those dropped per rule (in the order applied), eligible
            after every rule, and listed after the top-N cut.
        filters: the filters as applied (segments and regions spelled as stored).
    """

    frame: pd.DataFrame
    counts: dict[str, int]
    filters: ChurnListFilters
    consent_known: bool = True
    consent_assumed: bool = False


CONSENT_ASSUMED = (
    "not recorded: the customers table records no consent_marketing and "
    "serving.consent_when_unrecorded is allow, so every open customer is treated as consenting "
    "(the business's statement)"
)
"""The sidecar's consent filter when consent is not recorded and the business allows it."""

CONSENT_UNKNOWN = (
    "unknown: the customers table records no consent_marketing, so every open customer is "
    "listed and no marketing offer is suggested (the policy needs recorded consent); check "
    "consent before contacting anyone"
)
"""The sidecar's consent filter when the business records no consent at all."""


@dataclass(frozen=True)
class Suggestion:
    """The retention action the policy chose for one customer, or why there is none."""

    action_id: str = ""
    title: str = ""
    message: str = ""
    cost: float = 0.0
    expected_value: float = 0.0
    note: str = ""


@dataclass(frozen=True)
class ChurnListResult:
    """What `build_churn_list` wrote."""

    path: Path
    sidecar: Path
    frame: pd.DataFrame
    meta: dict[str, Any] = field(repr=False)

    def summary(self) -> str:
        """One readable line: rows, path, top expected loss."""
        rows = len(self.frame)
        if rows == 0:
            return f"No customer matches: wrote an empty list to {self.path} (see {self.sidecar})"
        top = float(self.frame["expected_loss"].iloc[0])
        actions = int((self.frame["action_id"] != "").sum())
        campaign = self.meta.get("campaign", {})
        held = (
            f"; {campaign['control']} held out as control (do not contact), "
            f"{campaign.get('recorded', 'campaign ' + str(campaign['campaign_id']))}"
            if campaign
            else ""
        )
        consent = self.meta.get("filters", {}).get("consent_marketing", True)
        if consent is True:
            unknown = ""
        elif consent == CONSENT_ASSUMED:
            unknown = "; consent not recorded, treated as given (serving.consent_when_unrecorded)"
        else:
            unknown = "; marketing consent unknown: check before calling"
        return (
            f"Wrote {rows} customer{'s' if rows != 1 else ''} to {self.path} "
            f"(snapshot {self.meta['snapshot'][:10]}; top expected loss ${top:,.2f}; "
            f"{actions} with a retention action{unknown}{held}); sidecar {self.sidecar}"
        )


# ------------------------------------------------------------------------ option checks
def check_output(path: Path) -> str:
    """The output format of a path (`csv`, `parquet` or `xlsx`).

    Raises:
        LoyalError: the suffix is not one of `SUFFIXES`.
    """
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise LoyalError(
            f"--out: unsupported file type {path.suffix or '(none)'!r} for {path} "
            f"(use {', '.join(SUFFIXES)})"
        )
    return suffix.removeprefix(".")


def check_filters(filters: ChurnListFilters) -> None:
    """Reject option values that are wrong whatever the data: top, tier, probability.

    Raises:
        LoyalError: naming the option.
    """
    if filters.top < 1:
        raise LoyalError(f"--top: must be at least 1, got {filters.top}")
    if filters.min_tier is not None and filters.min_tier not in TIERS:
        raise LoyalError(
            f"--min-tier: unknown tier {filters.min_tier!r} (allowed: {', '.join(TIERS)})"
        )
    p = filters.min_probability
    if not (np.isfinite(p) and 0.0 <= p <= 1.0):
        raise LoyalError(f"--min-prob: must be a probability between 0 and 1, got {p}")


def resolve_filters(
    filters: ChurnListFilters, scores: pd.DataFrame, customers: pd.DataFrame
) -> ChurnListFilters:
    """The filters with segments and regions checked against the data and spelled as stored.

    Segments match an id or a name, regions a region, both case-insensitively.

    Raises:
        LoyalError: a segment or region the data does not know, or a bad static value.
    """
    check_filters(filters)
    segments = tuple(_segment_value(s, scores) for s in filters.segments)
    regions: tuple[str, ...] = ()
    if filters.regions:
        if "region" not in customers.columns:
            raise LoyalError("--region: the customers table has no region column")
        known = customers["region"].dropna().astype(str)
        regions = tuple(_known_value("--region", "region", r, known) for r in filters.regions)
    return ChurnListFilters(
        filters.top, filters.min_tier, segments, regions, filters.min_probability
    )


def _segment_value(wanted: str, scores: pd.DataFrame) -> str:
    """The stored segment name a `--segment` value means (an id or a name)."""
    known = scores[["segment_id", "segment_name"]].drop_duplicates()
    known = known[known["segment_id"] >= 0]
    by_id = dict(zip(known["segment_id"].astype(str), known["segment_name"], strict=True))
    if wanted.strip() in by_id:
        return str(by_id[wanted.strip()])
    return _known_value("--segment", "segment", wanted, known["segment_name"].astype(str))


def _known_value(option: str, what: str, wanted: str, known: pd.Series) -> str:
    """`wanted` as spelled in `known` (case-insensitive), else a LoyalError listing them."""
    spelled = {str(v).casefold(): str(v) for v in sorted(set(known))}
    match = spelled.get(wanted.strip().casefold())
    if match is None:
        allowed = ", ".join(spelled.values()) or "none"
        raise LoyalError(f"{option}: unknown {what} {wanted!r} (known: {allowed})")
    return match


# ---------------------------------------------------------------------------- selection
def customer_attributes(customers: pd.DataFrame) -> pd.DataFrame:
    """Region, consent and closure per customer (index `customer_id`) from the contract table.

    Consent counts only when recorded as true: missing reads as not given, as in the policy.
    When the business records no consent for anyone (no column, or all blank), consent is
    unknown: `consent_marketing` is missing (None) on every row, never False.
    """
    absent = pd.Series(pd.NA, index=customers.index, dtype=object)
    if has_values(customers, "consent_marketing"):
        consent = customers["consent_marketing"].astype("boolean").fillna(False).astype(bool)
        consent_values = consent.to_numpy(dtype=object)
    else:
        consent_values = np.full(len(customers), None, dtype=object)
    return pd.DataFrame(
        {
            "region": customers.get("region", absent).astype(object).to_numpy(),
            "consent_marketing": consent_values,
            "closed": customers.get("closed_at", absent).notna().to_numpy(),
        },
        index=pd.Index(customers[ENTITY_KEY].astype(str), name=ENTITY_KEY),
    )


def expected_loss(churn_probability: pd.Series, clv: pd.Series) -> pd.Series:
    """Churn probability x max(CLV, 0), rounded to cents (the ranking key)."""
    loss = churn_probability.astype(float) * clv.astype(float).clip(lower=0.0)
    return loss.round(2)


def select_customers(
    scores: pd.DataFrame,
    customers: pd.DataFrame,
    filters: ChurnListFilters,
    assume_consent: bool = False,
    rank_key: str = "expected_loss",
) -> Selection:
    """Who to call: open, consenting, scored customers within the filters, ranked, top N.

    Args:
        scores: the scores table (`customer_id`, churn_probability, clv, tier, segment_id,
            segment_name, ...).
        customers: the contract's customers table (`customer_id`, consent_marketing, region,
            closed_at).
        filters: the list's options (checked here against the data).
        assume_consent: when the table records no consent at all, treat every customer as
            consenting (`serving.consent_when_unrecorded: allow`).
        rank_key: the column ranked by, descending: `expected_loss`, or `saved_value` when
            the scores carry it (`campaigns.saved_value`).

    Returns:
        The ranked rows (`rank` from 1) and the counts of every rule.

    Without any recorded consent (see `customer_attributes`) the consent rule keeps everyone
    and `Selection.consent_known` is False; consent is then unknown (None) on every row, or true
    with `assume_consent` (`Selection.consent_assumed`).

    Raises:
        LoyalError: an option value the data does not know, or one out of range.
    """
    filters = resolve_filters(filters, scores, customers)
    consent_known = has_values(customers, "consent_marketing")
    frame = scores.copy()
    frame[ENTITY_KEY] = frame[ENTITY_KEY].astype(str)
    attributes = customer_attributes(customers).reindex(frame[ENTITY_KEY])
    frame["region"] = attributes["region"].to_numpy()
    # Customers missing from the customers table read as not consenting (NaN is not True).
    if consent_known:
        frame["consent_marketing"] = attributes["consent_marketing"].eq(True).to_numpy()
    else:
        frame["consent_marketing"] = np.full(len(frame), True if assume_consent else None)
    frame["closed"] = attributes["closed"].eq(True).to_numpy()
    frame["expected_loss"] = expected_loss(frame["churn_probability"], frame["clv"])
    counts = {"scored": len(frame)}
    rules = _rules(filters, consent_known)
    if rank_key != "expected_loss":
        rules.append((f"no_{rank_key}", lambda f: f[rank_key].notna()))
    for rule, keep in rules:
        mask = keep(frame).fillna(False).astype(bool)
        counts[rule] = int((~mask).sum())
        frame = frame[mask]
    counts["eligible"] = len(frame)
    ranked = rank_by_expected_loss(frame, rank_key).head(filters.top)
    counts["listed"] = len(ranked)
    assumed = assume_consent and not consent_known
    return Selection(ranked.drop(columns=["closed"]), counts, filters, consent_known, assumed)


def _rules(filters: ChurnListFilters, consent_known: bool = True) -> list[Rule]:
    """The rules in the order applied: (count name, which rows to keep)."""
    rules: list[Rule] = [("closed", lambda f: ~f["closed"])]
    if consent_known:
        rules.append(("no_consent", lambda f: f["consent_marketing"].astype(bool)))
    rules.append(("no_churn_probability_or_clv", lambda f: f["expected_loss"].notna()))
    if filters.min_probability > 0:
        rules.append(
            ("below_min_probability", lambda f: f["churn_probability"] >= filters.min_probability)
        )
    if filters.min_tier is not None:
        allowed = set(TIERS[: TIERS.index(filters.min_tier) + 1])
        rules.append(("below_min_tier", lambda f: f["tier"].isin(allowed)))
    if filters.segments:
        rules.append(("other_segment", lambda f: f["segment_name"].isin(filters.segments)))
    if filters.regions:
        rules.append(("other_region", lambda f: f["region"].astype(str).isin(filters.regions)))
    return rules


def rank_by_expected_loss(frame: pd.DataFrame, key: str = "expected_loss") -> pd.DataFrame:
    """Rows sorted by `key` (expected loss) descending, ties by customer id; `rank` from 1."""
    ranked = frame.sort_values(
        [key, ENTITY_KEY], ascending=[False, True], kind="stable"
    ).reset_index(drop=True)
    ranked.insert(0, "rank", np.arange(1, len(ranked) + 1, dtype=np.int64))
    return ranked


# ------------------------------------------------------------------------------ actions
def retention_catalog(catalog: Catalog) -> Catalog | None:
    """The catalog restricted to retention and win-back offers (None when it has none).

    Constants, tier spend caps and contact caps stay as they are, so `models.nba.decide` on
    this catalog chooses exactly as the service would if only retention offers existed.
    """
    offers = tuple(offer for offer in catalog.offers if offer.kind in ACTION_KINDS)
    if not offers:
        return None
    kept = {name: getattr(catalog, name) for name in type(catalog).model_fields}
    return Catalog(**{**kept, "offers": offers})  # validated again: its offer index is rebuilt


def customer_scores(row: Mapping[str, Any], reasons: Sequence[str]) -> CustomerScores:
    """A scores-table row as the policy's scores (its "no model" markers read as unknown)."""
    p, clv = row.get("churn_probability"), row.get("clv")
    segment_id, segment_name = row.get("segment_id"), row.get("segment_name")
    return CustomerScores(
        churn_probability=None if pd.isna(p) else float(p),
        churn_reasons=tuple(reasons),
        tier=str(row["tier"]) if row.get("tier") in TIERS else None,
        segment_id=None if pd.isna(segment_id) or int(segment_id) < 0 else int(segment_id),
        segment_name=str(segment_name) if isinstance(segment_name, str) and segment_name else None,
        clv=None if pd.isna(clv) else float(clv),
    )


def suggest_action(
    features: Mapping[str, Any] | None,
    scores: CustomerScores,
    catalog: Catalog | None,
    now: datetime,
    history: Sequence[ContactEvent] = (),
) -> Suggestion:
    """The best retention offer for one customer on the call-center channel, or why none.

    Args:
        features: the customer's features at the snapshot (None: unknown to the store).
        scores: the customer's scores and churn reasons.
        catalog: the retention-only catalog (`retention_catalog`; None: it has no offer).
        now: the decision time (only the contact history depends on it).
        history: the customer's past contacts, for cooldowns and caps.
    """
    if catalog is None:
        return Suggestion(note="the offer catalog has no retention offer")
    if CHANNEL not in catalog.channels:
        return Suggestion(note=f"the offer catalog declares no {CHANNEL} channel")
    decision = decide(features, scores, CHANNEL, catalog, history, now, k=1)
    if not decision.actions:
        lapsed = (features or {}).get(LIFECYCLE_FIELD) in LAPSED_STATES
        if lapsed and scores.tier == "lead":
            return Suggestion(note=NO_WIN_BACK)
        return Suggestion(note=no_action_note(decision))
    action = decision.actions[0]
    offer = catalog.offer(action.action_id)
    return Suggestion(
        action_id=action.action_id,
        title=offer.title if offer is not None else "",
        message=action.message,
        cost=float(action.cost),
        expected_value=round(float(action.expected_value), 2),
    )


def no_action_note(decision: Decision) -> str:
    """Why the policy allowed no retention offer: each offer and the rule that stopped it."""
    why = "; ".join(f"{r.action_id}: {r.reason}" for r in decision.filtered)
    return f"no retention offer allowed ({why})" if why else "no retention offer allowed"


def suggest_actions(
    selected: pd.DataFrame,
    features: pd.DataFrame,
    reasons: Mapping[str, Sequence[str]],
    catalog: Catalog | None,
    now: datetime,
    histories: Mapping[str, Sequence[ContactEvent]] | None = None,
) -> pd.DataFrame:
    """The suggested action of every selected customer, one row each, in the same order.

    Args:
        selected: `select_customers(...).frame`.
        features: features at the snapshot, index `customer_id` (missing rows: unknown).
        reasons: churn reasons per customer id, strongest first.
        catalog: the retention-only catalog.
        now: the decision time.
        histories: past contacts per customer id (None: no contact recorded).

    Returns:
        Columns action_id, action_title, action_message, action_cost, action_expected_value,
        action_note.
    """
    rows: dict[str, dict[str, Any]] = {
        str(cid): {str(k): v for k, v in values.items()}
        for cid, values in features.to_dict("index").items()
    }
    suggestions = []
    for record in selected.to_dict("records"):
        row = {str(k): v for k, v in record.items()}
        customer_id = str(row[ENTITY_KEY])
        facts = rows.get(customer_id)
        if facts is not None:
            # The list's consent and region come from the contract table: the policy must
            # judge the same customer the filters did.
            facts = {**facts, "consent_marketing": row["consent_marketing"]}
            if not pd.isna(row.get("region")):
                facts["region"] = row["region"]
        scores = customer_scores(row, reasons.get(customer_id, ()))
        history = (histories or {}).get(customer_id, ())
        suggestions.append(suggest_action(facts, scores, catalog, now, history))
    return pd.DataFrame(
        {
            "action_id": [s.action_id for s in suggestions],
            "action_title": [s.title for s in suggestions],
            "action_message": [s.message for s in suggestions],
            "action_cost": np.array([s.cost for s in suggestions], dtype=float),
            "action_expected_value": np.array([s.expected_value for s in suggestions], dtype=float),
            "action_note": [s.note for s in suggestions],
        },
        index=selected.index,
    )


def churn_list_frame(
    selected: pd.DataFrame, reasons: Mapping[str, Sequence[str]], actions: pd.DataFrame
) -> pd.DataFrame:
    """The list as written: `COLUMNS`, plain types, money in cents, blanks instead of NaN."""
    ids = selected[ENTITY_KEY].astype(str)
    padded = [_pad(reasons.get(cid, ())) for cid in ids]
    frame = pd.DataFrame(
        {
            "rank": selected["rank"].astype("int64").to_numpy(),
            ENTITY_KEY: ids.to_numpy(),
            "expected_loss": selected["expected_loss"].astype(float).round(2).to_numpy(),
            "churn_probability": selected["churn_probability"].astype(float).round(4).to_numpy(),
            "clv": selected["clv"].astype(float).round(2).to_numpy(),
            "tier": selected["tier"].fillna("").astype(str).to_numpy(),
            "segment_id": selected["segment_id"].astype("int64").to_numpy(),
            "segment_name": selected["segment_name"].fillna("").astype(str).to_numpy(),
            "region": selected["region"].astype(object).fillna("").astype(str).to_numpy(),
            **{
                column: [reasons_[i] for reasons_ in padded]
                for i, column in enumerate(REASON_COLUMNS)
            },
        }
    )
    for column in actions.columns:
        frame[column] = actions[column].to_numpy()
    return frame[COLUMNS]


def _pad(reasons: Sequence[str]) -> list[str]:
    """Exactly `N_REASONS` reasons: the strongest first, blanks after the last one."""
    kept = [str(r) for r in list(reasons)[:N_REASONS]]
    return kept + [""] * (N_REASONS - len(kept))


# ------------------------------------------------------------------------------ writing
def sidecar_path(path: Path) -> Path:
    """The sidecar of a list file: `calls.csv` -> `calls.csv.meta.json`."""
    return path.with_name(path.name + SIDECAR_SUFFIX)


def write_list(frame: pd.DataFrame, meta: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """Write the list and its sidecar, each to a temporary file renamed into place.

    A reader never sees a half-written file. The sidecar holds the list's SHA-256, so a list
    and a sidecar from different runs (a crash between the two renames) are told apart.

    Returns:
        The sidecar's contents.

    Raises:
        LoyalError: the folder cannot be written.
    """
    kind = check_output(path)
    sidecar = sidecar_path(path)
    try:
        # The list is renamed into place first (inner block), then its sidecar.
        with staged_file(sidecar) as sidecar_staging, staged_file(path) as staging:
            _write_frame(frame, staging, kind)
            written = {
                **meta,
                "output": {
                    "file": path.name,
                    "format": kind,
                    "rows": len(frame),
                    "sha256": _sha256(staging),
                },
            }
            sidecar_staging.write_text(json.dumps(written, indent=2, default=str) + "\n")
    except OSError as exc:
        raise LoyalError(f"--out: could not write {path}: {exc.strerror or exc}") from exc
    return written


def _write_frame(frame: pd.DataFrame, path: Path, kind: str) -> None:
    if kind == "csv":
        frame.to_csv(path, index=False)
    elif kind == "parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_excel(path, index=False, sheet_name="churn list", engine="openpyxl")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ------------------------------------------------------------------------------ loading
def read_scores(settings: Settings) -> pd.DataFrame:
    """The published scores of the latest snapshot.

    Raises:
        NotReadyError: no scores table, or scores without churn probability or CLV.
    """
    from features.store import scores_table_path

    path = scores_table_path(settings)
    if not path.is_file():
        raise NotReadyError(f"no scores at {path}: run `loyal score` first")
    scores = pd.read_parquet(path)
    if len(scores):
        scores = scores[scores[TIMESTAMP_FIELD] == scores[TIMESTAMP_FIELD].max()]
    for column, how in (
        ("churn_probability", "`loyal train churn` and `loyal promote churn`"),
        ("clv", "`loyal train clv` and `loyal promote clv`"),
    ):
        if column not in scores.columns or scores[column].isna().all():
            raise NotReadyError(
                f"the scores at {path} have no {column}: run {how}, then `loyal score`"
            )
    return scores.reset_index(drop=True)


def explain(
    settings: Settings, pyfunc: Any, customer_ids: Sequence[str], snapshot: pd.Timestamp
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Features at the snapshot and the churn champion's answer for the listed customers.

    Features come through Feast's point-in-time join at the scores' snapshot, so a rerun on
    the same snapshot gives the same reasons and actions whatever was pushed online since.

    Returns:
        (features, output), both indexed by customer id; output has `churn_probability` and
        `reasons` (a list of sentences each).
    """
    from features.frames import training_frame
    from inference.reference import schema_inputs

    entities = pd.DataFrame({ENTITY_KEY: list(customer_ids), TIMESTAMP_FIELD: snapshot})
    frame = training_frame(settings, "churn_v1", entities, with_labels=False)
    ids = pd.Index(frame[ENTITY_KEY].astype(str), name=ENTITY_KEY)
    features = frame.drop(columns=[ENTITY_KEY, TIMESTAMP_FIELD]).set_axis(ids)
    inputs = schema_inputs(pyfunc, features.reset_index(drop=True))
    output = pd.DataFrame(pyfunc.predict(inputs, params={"top": N_REASONS}))
    return features, output.set_axis(ids)


def build_churn_list(
    settings: Settings,
    out: Path,
    filters: ChurnListFilters | None = None,
    catalog_path: Path | None = None,
    control: ControlOptions | None = None,
    rank_by: str | None = None,
) -> ChurnListResult:
    """Write marketing's churn list and its sidecar (plain function behind `loyal churn-list`).

    Args:
        settings: where the scores, contract tables, feature store and MLflow live.
        out: the list file: `.csv`, `.parquet` or `.xlsx`; the sidecar goes beside it.
        filters: top N, minimum tier, segments, regions, minimum churn probability.
        catalog_path: the offer catalog (default: the service's: `serving.catalog_path`, else
            `serving.catalog`, else the one the loaded data calls for).
        control: the control group held out and the campaign recorded
            (`campaigns.list_campaigns`; default: 10% of each tier, recorded).
        rank_by: `expected-loss` or `saved-value` (`campaigns.saved_value`); default:
            saved value when an uplift champion exists, else expected loss.

    Returns:
        The paths, the list and the sidecar's contents.

    Raises:
        LoyalError: a bad option (named in the message).
        NotReadyError: no scores, no churn or CLV in them, or no churn champion.
    """
    from inference.reference import registered_model

    filters = filters or ChurnListFilters()
    control = (control or ControlOptions()).checked()
    check_rank_by(rank_by)
    check_output(out)
    check_filters(filters)
    serving = settings.serving
    catalog_file = (
        catalog_path
        or choose_catalog(serving.catalog_path, serving.catalog, recorded_catalog(settings))[0]
    )
    scores = read_scores(settings)
    customers = read_contract(settings, only=["customers"])["customers"]
    catalog = load_catalog(catalog_file)
    assume_consent = serving.consent_when_unrecorded == "allow"
    snapshot = pd.Timestamp(scores[TIMESTAMP_FIELD].max())
    uplift_model = uplift_champion(settings) if rank_by != "expected-loss" else None
    if rank_by is None:
        rank_by = "saved-value" if uplift_model is not None else "expected-loss"
    uplift_meta: dict[str, Any] = {}
    if rank_by == "saved-value":
        scores, uplift_meta = with_saved_value(settings, scores, catalog, snapshot, uplift_model)
    rank_key = rank_by.replace("-", "_")
    selection = select_customers(scores, customers, filters, assume_consent, rank_key)
    selected = selection.frame
    loaded = registered_model(settings, "churn", champion_only=True)
    if loaded is None:
        raise NotReadyError(
            "no churn champion to explain the list: run `loyal train churn` and "
            "`loyal promote churn`"
        )
    ids = selected[ENTITY_KEY].astype(str).tolist()
    if ids:
        features, output = explain(settings, loaded.obj, ids, snapshot)
    else:
        features, output = pd.DataFrame(), pd.DataFrame(columns=["churn_probability", "reasons"])
    reasons = {str(cid): list(r) for cid, r in output["reasons"].items()}
    actions = suggest_actions(
        selected, features, reasons, retention_catalog(catalog), snapshot.to_pydatetime()
    )
    seed = seed_for(control, snapshot)
    frame = hold_out(churn_list_frame(selected, reasons, actions), control.share, seed)
    if rank_key == "saved_value":
        frame["uplift"] = selected["uplift"].astype(float).round(4).to_numpy()
        frame["saved_value"] = selected["saved_value"].astype(float).round(2).to_numpy()
    models = {
        "churn_reasons": {"version": loaded.version, "alias": loaded.alias},
        "champions": champion_versions(settings),
        "scores_match_churn_champion": _scores_match(selected, output, loaded.label),
    }
    actions_meta = {
        "channel": CHANNEL,
        "kind": ACTION_KIND,
        "catalog": str(catalog_file),
        "catalog_snapshot_id": _sha256(catalog_file)[:16],
        "offers": [o.id for o in catalog.offers if o.kind in ACTION_KINDS],
        "contact_history": "not applied",
    }
    meta = list_meta(settings, selection, scores, customers, snapshot, models, actions_meta)
    meta["columns"] = [str(c) for c in frame.columns]
    if rank_key == "saved_value":
        meta["ranking"] = SAVED_VALUE_RANKING
        meta["models"]["uplift"] = uplift_meta
    days = settings.snapshots.horizon_days
    meta["campaign"] = campaign_meta(frame, ACTION_KIND, snapshot, control.share, seed, days)
    written = write_list(frame, meta, out)
    if control.record:
        written["campaign"]["recorded"] = record_campaign(settings, frame, written, out, snapshot)
    return ChurnListResult(out, sidecar_path(out), frame, written)


def list_meta(
    settings: Settings,
    selection: Selection,
    scores: pd.DataFrame,
    customers: pd.DataFrame,
    snapshot: pd.Timestamp,
    models: Mapping[str, Any],
    actions: Mapping[str, Any],
) -> dict[str, Any]:
    """The sidecar (before `write_list` adds the output's hash): how to reproduce the list."""
    from features.store import scores_table_path
    from training.tracking import file_snapshot_id, frame_snapshot_id, git_commit

    return {
        "format": FORMAT,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "snapshot": snapshot.isoformat(),
        "scores": {
            "path": str(scores_table_path(settings)),
            "snapshot_id": file_snapshot_id(scores_table_path(settings)),
            "customers": len(scores),
        },
        "customers_snapshot_id": frame_snapshot_id(customers),
        "models": dict(models),
        "actions": dict(actions),
        "ranking": RANKING,
        "filters": {
            **asdict(selection.filters),
            "consent_marketing": _consent_filter(selection),
            "open": True,
        },
        "counts": selection.counts,
        "columns": COLUMNS,
        "git_commit": git_commit(),
    }


def _consent_filter(selection: Selection) -> bool | str:
    """The sidecar's consent filter: True when recorded, else how unrecorded consent was read."""
    if selection.consent_known:
        return True
    return CONSENT_ASSUMED if selection.consent_assumed else CONSENT_UNKNOWN


def _scores_match(selected: pd.DataFrame, output: pd.DataFrame, label: str) -> bool:
    """Whether the champion gives the probabilities the scores hold (else they are stale)."""
    if output.empty:
        return True
    fresh = output["churn_probability"].astype(float)
    stored = selected.set_index(selected[ENTITY_KEY].astype(str))["churn_probability"]
    gap = float((fresh - stored.reindex(fresh.index).astype(float)).abs().max())
    if not gap <= 1e-6:
        log.warning(
            "the scores' churn probabilities differ from %s (up to %.4f): the list ranks by the "
            "published scores; run `loyal score` to refresh them",
            label, gap,
        )  # fmt: skip
        return False
    return True
