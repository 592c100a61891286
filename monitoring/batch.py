"""`loyal monitor`: every champion's reference profile against today's data, in one report.

For each registered model with a champion whose run logged a reference profile:

1. **Batch drift**: the latest feature snapshot (read column by column, chunk by chunk from
   the offline Parquet tables, as batch scoring does) and the latest batch scores
   (`data/scores/scores.parquet`) are counted into the reference's bins; PSI per feature and
   per score (`monitoring.drift`).
2. **Served drift**: the same against the request sample the service keeps
   (`monitoring.sampler`), when there is one.
3. **Churn without labels**: the CBPE ROC-AUC and the calibration estimated on the latest
   scores.
4. **Churn with labels**: for the latest snapshots whose churn labels are complete, the
   champion re-scores that snapshot's features: realised vs predicted churn by decile and the
   real ROC-AUC per month, beside the label-free estimate of the same month.

The report is one JSON document plus an offline HTML page with PNG plots
(`monitoring.html`), written atomically under `<data_dir>/monitoring/report`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from loyal.errors import NotReadyError
from loyal.settings import Settings
from loyal.specs import MODELS
from monitoring.drift import (
    Drift,
    Level,
    drifts,
    estimated_calibration,
    expected_roc_auc,
    roc_auc,
    worst_level,
)
from monitoring.profile import ColumnProfile, Profile
from monitoring.reference import SCORE_PREFIX, download_profile
from monitoring.service import monitoring_dir

log = logging.getLogger(__name__)

REPORT_FOLDER = "report"
REPORT_JSON = "report.json"
REPORT_HTML = "report.html"
LABELS_FILE = "_labels.parquet"
"""The churn labels `loyal features build` writes beside the feature tables."""
CHUNK_ROWS = 200_000
LABELLED_MONTHS = 6
TOP_MOVED = 5
METHOD = (
    "PSI over the reference's decile bins (categories for text), missing values as a bin of "
    "their own, empty bins floored at 1e-4. Sample-size correction: PSI expected without any "
    "shift, (bins - 1) x (1/n_ref + 1/n_cur), is subtracted (floored at 0) and the levels "
    "(0.1 warn, 0.25 alert) apply to the corrected PSI, which must also be significant "
    "(chi-square p < 0.001 for PSI / (1/n_ref + 1/n_cur) with bins - 1 degrees of freedom)."
)
ASSUMPTION = (
    "Label-free churn performance (CBPE) assumes covariate shift only: the customers' mix "
    "changes but P(churn | features) stays what the model learnt, so the calibrated scores stay "
    "calibrated. Concept shift breaks it; only labels reveal that."
)


@dataclass(frozen=True)
class Champion:
    """A model's champion and its reference profile."""

    name: str
    version: str
    run_id: str
    profile: Profile
    roc_auc_holdout: float | None


def champions(settings: Settings, names: Sequence[str]) -> tuple[list[Champion], dict[str, str]]:
    """The champions with a reference profile, and why the others are left out."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    import mlflow

    uri = settings.mlflow.tracking_uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    found, skipped = [], {}
    for name in names:
        try:
            version = client.get_model_version_by_alias(name, "champion")
        except MlflowException:
            skipped[name] = "no champion"
            continue
        run_id = version.run_id or (version.tags or {}).get("run_id")
        profile = download_profile(str(run_id)) if run_id else None
        if profile is None:
            skipped[name] = f"v{version.version} logged no reference profile (retrain it)"
            continue
        auc = (version.tags or {}).get("test_roc_auc")
        found.append(
            Champion(name, str(version.version), str(run_id), profile, float(auc) if auc else None)
        )
    return found, skipped


# ------------------------------------------------------------------------------ current data


def feature_layout(settings: Settings, wanted: Sequence[str]) -> dict[str, list[str]]:
    """View name -> the wanted feature columns it holds (each column from one view)."""
    from features.store import built_views

    layout: dict[str, list[str]] = {}
    taken: set[str] = set()
    for name, view in built_views(settings).items():
        if name == "scores":
            continue
        columns = [c for c in view.feature_names if c in wanted and c not in taken]
        taken.update(columns)
        if columns:
            layout[name] = columns
    return layout


def snapshot_at(settings: Settings, moment: pd.Timestamp | None = None) -> Any:
    """The feature snapshot at `moment` (default: the latest) of every built view."""
    from features.latest import LatestSnapshot, latest_snapshot, view_snapshot
    from features.store import built_views, table_path

    views = {n: v for n, v in built_views(settings).items() if n != "scores"}
    if "profile" not in views:
        raise NotReadyError("no feature tables found: run `loyal features build` first")
    tables = {name: table_path(settings, view) for name, view in views.items()}
    ttl = {n: v.ttl_days for n, v in views.items()}
    latest = latest_snapshot(tables, ttl, "profile")
    if moment is None:
        return latest
    value = int(moment.value)
    snapped = {n: view_snapshot(n, Path(p), value, ttl.get(n)) for n, p in tables.items()}
    return LatestSnapshot(moment, "profile", snapped)


def feature_chunks(settings: Settings, snapshot: Any, wanted: Sequence[str]) -> Any:
    """The snapshot's wanted feature columns, a chunk of customers at a time (pyarrow)."""
    from features.latest import iter_chunks

    return iter_chunks(snapshot, feature_layout(settings, wanted), CHUNK_ROWS)


def count_table(
    table: pa.Table, profile: Profile, rename: Mapping[str, str] | None = None
) -> dict[str, np.ndarray]:
    """Counts of a table's columns in the profile's bins (`rename`: table column -> key)."""
    names = dict(rename or {})
    counts = {}
    for column in table.column_names:
        key = names.get(column, column)
        if key in profile.columns:
            counts[key] = profile.columns[key].counts_of(table[column])
    return counts


def add_counts(total: dict[str, np.ndarray], more: Mapping[str, np.ndarray]) -> None:
    """Add chunk counts into running totals."""
    for key, value in more.items():
        total[key] = total[key] + value if key in total else value


def score_columns(profile: Profile) -> dict[str, str]:
    """Scores table column -> profile key, for the scores the reference profiled."""
    return {k.removeprefix(SCORE_PREFIX): k for k in profile.columns if k.startswith(SCORE_PREFIX)}


# ------------------------------------------------------------------------------ the report


def drift_section(
    profile: Profile, counts: Mapping[str, np.ndarray], current_reference: bool = True
) -> dict[str, Any]:
    """Drift of features and scores against the reference, with the most moved features."""
    found = drifts(profile.columns, counts)
    features = [d for d in found if not d.column.startswith(SCORE_PREFIX)]
    scores = [d for d in found if d.column.startswith(SCORE_PREFIX)]
    rows = max((d.rows for d in found), default=0)
    return {
        "rows": rows,
        "level": model_level(features, scores, current_reference),
        "top_moved": [d.column for d in features[:TOP_MOVED] if d.corrected > 0],
        "scores": [_drift_dict(d) for d in scores],
        "features": [_drift_dict(d) for d in features],
    }


def model_level(
    features: list[Drift], scores: list[Drift], current_reference: bool = True
) -> Level:
    """A model's level: its scores' level, raised to warn when a feature alone alerts.

    A feature that moves while the model's scores do not is worth a look, not a retraining
    (e.g. a tenure-like feature that grows with calendar time); moving scores move decisions.
    A model without a profiled score (segments, cross-sell) takes its features' level, capped
    at warn when its reference rows come from older snapshots by design (`current_reference`
    False in its spec: uplift learns from past campaigns' members, so calendar-time features
    alone would alert on every unshifted bank).
    """
    if not scores:
        level = worst_level(features)
        return "warn" if level == "alert" and not current_reference else level
    level = worst_level(scores)
    if level == "ok" and worst_level(features) != "ok":
        return "warn"
    return level


def _drift_dict(drift: Drift) -> dict[str, Any]:
    payload = asdict(drift)
    payload["column"] = drift.column.removeprefix(SCORE_PREFIX)
    for key, value in payload.items():
        if isinstance(value, float):
            payload[key] = round(value, 6)
    return payload


def label_free(
    reference: ColumnProfile, counts: np.ndarray, probability: np.ndarray
) -> dict[str, Any]:
    """CBPE ROC-AUC and the label-free calibration of churn scores."""
    calibration = estimated_calibration(reference, counts, probability)
    return {
        "roc_auc_estimated": _round(expected_roc_auc(probability)),
        "calibration": None
        if calibration is None
        else {k: _round(v) for k, v in asdict(calibration).items()},
        "assumption": ASSUMPTION,
    }


def _round(value: float) -> float | None:
    return None if value is None or value != value else round(float(value), 4)


def labelled_performance(
    settings: Settings, churn_model: Any, months: int = LABELLED_MONTHS
) -> dict[str, Any]:
    """Realised vs predicted churn for the latest snapshots whose labels are complete."""
    path = settings.paths.features_dir / LABELS_FILE
    if not path.is_file():
        return {"months": [], "note": "no churn labels yet (`loyal features build` writes them)"}
    labels = pq.read_table(
        path,
        columns=["customer_id", "event_timestamp", "churned"],
        filters=[("label_complete", "==", True)],
    ).to_pandas()
    moments = sorted(pd.to_datetime(labels["event_timestamp"], utc=True).unique())[-months:]
    inputs = [str(c) for c in churn_model.feature_names_in_]
    rows, last = [], None
    for moment in moments:
        scored = _score_snapshot(settings, churn_model, inputs, pd.Timestamp(moment))
        month = labels[pd.to_datetime(labels["event_timestamp"], utc=True) == moment]
        joined = scored.merge(month[["customer_id", "churned"]], on="customer_id", how="inner")
        y = joined["churned"].to_numpy(float)
        p = joined["churn_probability"].to_numpy(float)
        rows.append(
            {
                "snapshot": str(pd.Timestamp(moment).date()),
                "customers": len(joined),
                "churn_rate": _round(float(y.mean())) if len(y) else None,
                "predicted_rate": _round(float(np.nanmean(p))) if len(p) else None,
                "roc_auc": _round(roc_auc(y, p)),
                "roc_auc_estimated": _round(expected_roc_auc(p)),
            }
        )
        last = (y, p)
    deciles = decile_table(*last) if last is not None else []
    return {"months": rows, "deciles_latest_labelled": deciles}


def decile_table(label: np.ndarray, probability: np.ndarray) -> list[dict[str, Any]]:
    """Realised vs predicted churn by decile of the prediction (1 = lowest risk)."""
    keep = ~np.isnan(probability)
    y, p = label[keep], probability[keep]
    if not len(p):
        return []
    order = np.argsort(p, kind="stable")
    decile = np.empty(len(p), dtype=int)
    decile[order] = np.arange(len(p)) * 10 // len(p) + 1
    table = []
    for d in range(1, 11):
        mask = decile == d
        if mask.any():
            table.append(
                {
                    "decile": d,
                    "customers": int(mask.sum()),
                    "predicted": _round(p[mask].mean()),
                    "realised": _round(y[mask].mean()),
                }
            )
    return table


def _score_snapshot(
    settings: Settings, model: Any, inputs: list[str], moment: pd.Timestamp
) -> pd.DataFrame:
    snapshot = snapshot_at(settings, moment)
    parts = []
    for chunk in feature_chunks(settings, snapshot, inputs):
        frame = chunk.to_pandas()
        present = [c for c in inputs if c in frame]
        probability = model.predict_proba(frame.reindex(columns=inputs) if present else frame)
        parts.append(
            pd.DataFrame(
                {
                    "customer_id": frame["customer_id"].astype(str),
                    "churn_probability": probability[:, 1],
                }
            )
        )
    return (
        pd.concat(parts, ignore_index=True)
        if parts
        else pd.DataFrame({"customer_id": [], "churn_probability": []})
    )


def load_churn_model(settings: Settings) -> Any:
    """The churn champion's fitted model (None without one)."""
    import tempfile

    from inference.champions import MlflowChampions
    from serving.champions import load_churn

    with tempfile.TemporaryDirectory(prefix="loyal-monitor-") as cache:
        artifact = MlflowChampions(settings.mlflow.tracking_uri, Path(cache)).locate("churn")
        return None if artifact is None else load_churn(artifact).model


# ------------------------------------------------------------------------------ running it


def monitor_model(settings: Settings, champion: Champion, snapshot: Any) -> dict[str, Any]:
    """One model's section of the report."""
    from monitoring.sampler import served_counts

    profile = champion.profile
    features = [k for k in profile.columns if ":" not in k]
    counts: dict[str, np.ndarray] = {}
    for chunk in feature_chunks(settings, snapshot, features):
        add_counts(counts, count_table(chunk, profile))
    section: dict[str, Any] = {
        "version": champion.version,
        "run_id": champion.run_id,
        "reference_rows": profile.rows,
    }
    scores_file = settings.paths.data_dir / "scores" / "scores.parquet"
    rename = score_columns(profile)
    probability = None
    if scores_file.is_file() and rename:
        present = [c for c in rename if c in pq.read_schema(scores_file).names]
        table = pq.read_table(scores_file, columns=present)
        add_counts(counts, count_table(table, profile, rename))
        if "churn_probability" in present:
            probability = table["churn_probability"].to_numpy(zero_copy_only=False)
    current = MODELS[champion.name].current_reference if champion.name in MODELS else True
    section["batch"] = drift_section(profile, counts, current)
    served = served_counts(monitoring_dir(settings), profile)
    section["served"] = (
        drift_section(profile, served, current)
        if served
        else {"rows": 0, "level": "ok", "note": "no request sample from the service yet"}
    )
    key = SCORE_PREFIX + "churn_probability"
    if probability is not None and key in profile.columns:
        section["label_free"] = label_free(
            profile.columns[key], counts[key], np.asarray(probability, dtype=float)
        )
        section["roc_auc_holdout"] = champion.roc_auc_holdout
    return section


def run_monitor(settings: Settings, out: Path | None = None) -> dict[str, Any]:
    """Compare every champion's reference with today's data; write the JSON and HTML report.

    Returns:
        The report (its `level` is "alert" when any feature or score alerts).
    """
    from monitoring.clv_outcomes import clv_outcomes
    from monitoring.html import write_report

    started = time.perf_counter()
    found, skipped = champions(settings, list(MODELS))
    if not found:
        raise NotReadyError(
            "no champion with a reference profile to monitor: train and promote a model first "
            f"({'; '.join(f'{k}: {v}' for k, v in skipped.items())})"
        )
    snapshot = snapshot_at(settings)
    models: dict[str, Any] = {}
    for champion in found:
        log.info("Monitoring %s v%s", champion.name, champion.version)
        models[champion.name] = monitor_model(settings, champion, snapshot)
    if "churn" in models:
        model = load_churn_model(settings)
        if model is not None:
            models["churn"]["labelled"] = labelled_performance(settings, model)
    levels = [m["batch"]["level"] for m in models.values()]
    levels += [m["served"]["level"] for m in models.values()]
    report = {
        "snapshot": str(snapshot.moment),
        "generated_at": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
        "level": "alert" if "alert" in levels else "warn" if "warn" in levels else "ok",
        "method": METHOD,
        "models": models,
        "skipped": skipped,
        "clv_outcomes": clv_outcomes(settings),
        "seconds": round(time.perf_counter() - started, 2),
    }
    folder = out or monitoring_dir(settings) / REPORT_FOLDER
    write_report(report, folder)
    return report
