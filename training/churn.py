"""Churn training: cross-validate a table, train on a point-in-time frame, log and register it.

Two entry points share the model (`models.churn.ChurnModel`) and the metrics:

* `evaluate_table`: stratified k-fold cross-validation of the whole model on a bring-your-own
  table; every fitted piece (search, early stopping, calibration) lives inside each training
  fold, so no row of an outer fold informs its own model's settings. The two baselines of
  `models.baselines` (plain XGBoost, logistic regression) are scored in the same folds.
* `train_from_frame`: one train/test protocol on any frame (the sample bank's point-in-time
  frame from the `churn_v1` feature service, or a table), logged to MLflow with plots and the
  holdout, and registered as `churn`. With a time column the split follows time and keeps a
  gap of one label horizon between train, validation and test so no label window overlaps
  the next period.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import logging
import lzma
import statistics
import tempfile
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from features.catalog import ENTITY_KEY, TIMESTAMP_FIELD
from loyal.errors import DataContractError, LoyalError, NotReadyError, StepSkippedError
from loyal.settings import ChurnSettings, Settings
from models.baselines import BASELINES, baseline
from models.churn import (
    PYFUNC_ARTIFACT,
    BoosterTrainer,
    ChurnModel,
    Sentence,
    default_sentence,
    is_missing,
    pyfunc_payload,
    stratified_rows,
)
from models.metrics import binary_metrics, calibration_curve
from models.tabular import parse_label, prepare_table

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

MODEL_NAME = "churn"
CV_METRICS = ("roc_auc", "pr_auc", "brier", "ece", "lift_at_10", "capture_at_10")
BASELINE_METRICS = ("roc_auc", "pr_auc", "brier")
"""Metrics reported for each baseline, as `baseline_<name>_<metric>`."""
CHURN_SERVICE = "churn_v1"
"""The feature service the churn model trains on (and serving reads)."""
SEPARATORS = ",;\t|"
"""Field separators `read_table` recognises in text tables."""
DEFAULTS = ChurnSettings()
"""The churn section's defaults (`loyal.settings.ChurnSettings`), for callers without settings."""
REQUIREMENTS = ("mlflow", "xgboost-cpu", "xgboost", "scikit-learn", "pandas", "numpy", "pyarrow")


# ----------------------------------------------------------------------------- inputs
def read_table(path: Path) -> pd.DataFrame:
    """Read a CSV, TSV or Parquet table as other tools write them.

    Text tables: the separator (comma, semicolon, tab or pipe) and quoting are sniffed from
    the first lines, a byte-order mark is skipped, files that are not UTF-8 are read as
    Latin-1, and header names are stripped of spaces. No type guessing beyond pandas' own
    (numbers written as text are typed later, by `models.tabular`).

    Raises:
        LoyalError: when the file is missing, not CSV/TSV/Parquet, or unreadable.
    """
    path = Path(path)
    if not path.is_file():
        raise LoyalError(f"table file '{path}' does not exist")
    suffixes = "".join(path.suffixes).lower()
    if suffixes.endswith(".parquet") or suffixes.endswith(".pq"):
        frame = pd.read_parquet(path)
    elif any(kind in suffixes for kind in (".csv", ".tsv", ".txt")):
        frame = _read_text_table(path)
    else:
        raise LoyalError(
            f"table file '{path}' must be .csv, .tsv, .txt (optionally compressed) or .parquet"
        )
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def sniff_separator(sample: str) -> str:
    """The field separator of a text table from its first lines (comma when unsure)."""
    lines = [line for line in sample.splitlines() if line.strip()][:20]
    if not lines:
        return ","
    try:
        return csv.Sniffer().sniff("\n".join(lines), delimiters=SEPARATORS).delimiter
    except csv.Error:
        counts = {sep: lines[0].count(sep) for sep in SEPARATORS}
        best = max(counts, key=lambda sep: counts[sep])
        return best if counts[best] else ","


def _text_sample(path: Path, encoding: str, size: int = 65536) -> str:
    """The first `size` characters of a text table, decompressing .gz, .bz2, .xz or .zip."""
    suffix = path.suffix.lower()
    openers: dict[str, Callable[..., Any]] = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
    if suffix in openers:
        with openers[suffix](path, "rt", encoding=encoding) as handle:
            return str(handle.read(size))
    if suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            first = archive.namelist()[0]
            return archive.read(first)[: 4 * size].decode(encoding, errors="ignore")
    with path.open(encoding=encoding) as handle:
        return handle.read(size)


def _read_text_table(path: Path) -> pd.DataFrame:
    """A delimited text table, separator sniffed; UTF-8 (with or without BOM) or Latin-1."""
    for encoding in ("utf-8-sig", "latin-1"):
        try:
            sample = _text_sample(path, encoding)
            separator = sniff_separator(sample)
            return pd.read_csv(path, sep=separator, encoding=encoding, low_memory=False)
        except UnicodeDecodeError:
            continue
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise LoyalError(f"table file '{path}' cannot be read: {exc}") from exc
    raise LoyalError(f"table file '{path}' is neither UTF-8 nor Latin-1 text")


def catalog_templates(
    columns: Sequence[str], wording: Mapping[str, Mapping[str, str]] | None = None
) -> dict[str, dict[str, str]]:
    """Reason templates of the catalog features among `columns` (unknown ones are skipped).

    Args:
        columns: the model's features.
        wording: per feature, entries that replace the catalog's (`data_wording`).
    """
    from features.catalog import feature

    templates = {}
    for name in columns:
        try:
            entry = feature(name)
        except KeyError:
            continue
        templates[name] = {
            "reason": entry.reason,
            "description": entry.description,
            "missing": entry.missing,
            **dict((wording or {}).get(name, {})),
        }
    return templates


PRODUCT_WORDING: dict[str, dict[str, str]] = {
    "distinct_categories_365d": {
        "reason": "bought {value:.0f} different products in the last year",
        "description": "different products bought in the last 365 days",
    },
}
"""How features read when the products have no categories (each product is its own)."""


PRODUCT_FEATURES = ("distinct_categories_365d", "n_products_held", "months_since_last_new_product")
"""Features about the breadth and newness of a customer's products: meaningless with one."""


def absent_features(frame: pd.DataFrame, products: pd.DataFrame | None) -> list[str]:
    """Features of `frame` this business's data does not really have, left out of the model.

    With fewer than two products, product breadth, newness and holdings only restate activity
    ("last new product 17 months ago" is the first purchase). Holdings of product codes or of a
    large catalog (a retailer's `holds_22423`) cannot be worded for people
    (`features.catalog.products_read_as_words`) and are left out too. Constant features need
    no rule: they never split a tree, so they are never a reason.
    """
    from features.catalog import products_read_as_words

    ids = [] if products is None else products["product_id"].astype(str).tolist()
    holdings = [c for c in frame.columns if c.startswith("holds_")]
    if len(ids) < 2:
        return [c for c in frame.columns if c in PRODUCT_FEATURES] + holdings
    return [] if products_read_as_words(ids) else holdings


def data_wording(products: pd.DataFrame | None) -> dict[str, dict[str, str]]:
    """Reason wording for what this business's data holds: the catalog's, except where the
    data lacks what a sentence names (no product categories: "different products")."""
    from features.contract import has_values

    return {} if has_values(products, "category") else dict(PRODUCT_WORDING)


def catalog_sentence(name: str, value: object) -> str:
    """Reason sentence from the feature catalog, or "<column> = <value>" for other columns."""
    from features.catalog import feature

    try:
        entry = feature(name)
    except KeyError:
        return default_sentence(name, value)
    return f"{entry.description}: missing" if is_missing(value) else entry.sentence(value)


def _quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


# ------------------------------------------------------------------------- evaluation
@dataclass(frozen=True)
class CrossValidation:
    """What a cross-validation of the churn model measured.

    Attributes:
        metrics: Loyal's `CV_METRICS` (means over folds) and the same keys suffixed `_std`
            (population standard deviation), then `baseline_<name>_<metric>` means for each
            baseline and `BASELINE_METRICS`.
        chosen: per fold, the settings the search chose, with `rounds` (median boosting
            rounds of its boosters) and `trials` (search trials run).
        seconds: wall time of the whole cross-validation.
    """

    metrics: dict[str, float]
    chosen: list[dict[str, Any]]
    seconds: float

    def summary(self) -> dict[str, Any]:
        """The JSON line of `loyal churn evaluate`: metrics, chosen settings and seconds."""
        return {
            **{k: round(v, 6) for k, v in self.metrics.items()},
            "chosen": self.chosen,
            "seconds": round(self.seconds, 1),
        }


def _chosen(model: ChurnModel) -> dict[str, Any]:
    """The settings a fitted model ended with, for the report."""
    chosen: dict[str, Any] = {k: _short(v) for k, v in model.best_params_.items()}
    chosen["rounds"] = int(statistics.median(model.n_rounds_))
    chosen["trials"] = model.search_summary_["trials"] if model.search_summary_ else 0
    return chosen


def _short(value: Any) -> Any:
    """Floats to four significant digits, for a readable JSON line."""
    return float(f"{value:.4g}") if isinstance(value, float) else value


def cross_validate(
    X: pd.DataFrame,
    y: pd.Series | np.ndarray,
    model: ChurnModel | None = None,
    folds: int = 5,
    seed: int = 42,
    baselines: Sequence[str] = BASELINES,
) -> CrossValidation:
    """Stratified, shuffled k-fold CV of a churn model and of the baselines, in the same folds.

    The model is cloned and fitted on each training fold only (search, early stopping and
    calibration included), then scored on the fold it never saw; each baseline is fitted on the
    same training fold and scored on the same held-out fold.

    Returns:
        The metrics, the settings chosen in each fold and the wall time.
    """
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold

    _quiet_optuna()
    started = time.perf_counter()
    labels = np.asarray(y).astype(int)
    template = model if model is not None else ChurnModel()
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    scores: list[dict[str, float]] = []
    chosen: list[dict[str, Any]] = []
    for number, (train, test) in enumerate(splitter.split(X, labels), start=1):
        fitted = clone(template).fit(X.iloc[train], labels[train])
        fold = binary_metrics(labels[test], fitted.predict_proba(X.iloc[test])[:, 1])
        for name in baselines:
            plain = baseline(name, X, seed=seed).fit(X.iloc[train], labels[train])
            probability = plain.predict_proba(X.iloc[test])[:, 1]
            base = binary_metrics(labels[test], probability)
            fold.update({f"baseline_{name}_{k}": base[k] for k in BASELINE_METRICS})
        scores.append(fold)
        chosen.append(_chosen(fitted))
        log.info(
            "fold %d/%d: roc_auc %.4f (%s), baselines %s",
            number,
            folds,
            fold["roc_auc"],
            chosen[-1],
            {n: round(fold[f"baseline_{n}_roc_auc"], 4) for n in baselines},
        )
    table = pd.DataFrame(scores)
    metrics = {k: float(table[k].mean()) for k in CV_METRICS}
    metrics.update({f"{k}_std": float(table[k].std(ddof=0)) for k in CV_METRICS})
    metrics.update({k: float(table[k].mean()) for k in table.columns if k.startswith("baseline_")})
    return CrossValidation(metrics, chosen, time.perf_counter() - started)


def evaluate_table(
    path: Path,
    id_col: str | None,
    label_col: str,
    folds: int = 5,
    seed: int = 42,
    budget_seconds: float | None = None,
    max_trials: int | None = None,
    options: ChurnSettings = DEFAULTS,
) -> CrossValidation:
    """Cross-validate the churn model and the baselines on a one-row-per-customer table.

    Args:
        path: CSV, TSV or Parquet file (separator sniffed).
        id_col: customer identifier column (dropped from the features); None when the table
            has none.
        label_col: churn label column (yes/no, true/false, 1/0, churned/stayed).
        folds: number of stratified folds.
        seed: shuffling seed of the folds, and seed of the models.
        budget_seconds: time budget of the search over all folds; each fold's search gets
            an equal share (0: no search, the model's default settings; None:
            `default_budget` for the table's size).
        max_trials: most search trials in each fold (None: the churn section's
            `evaluate_max_trials`).
        options: the churn section (evaluate budget and trials, the model's calibration and
            selection settings).

    Returns:
        The metrics (see `cross_validate`), chosen settings and wall time.
    """
    if not 2 <= folds <= 20:
        raise LoyalError(f"--folds must be between 2 and 20, got {folds}")
    path = Path(path)
    table = prepare_table(read_table(path), id_col, label_col, table=path.name)
    for line in table.roles.warnings():
        log.warning(line)
    log.info(
        "%s: %d rows, %d features (%d numeric, %d categorical), %.1f%% churn",
        path.name,
        len(table.X),
        len(table.roles.features),
        len(table.roles.numeric),
        len(table.roles.categorical),
        100 * table.y.mean(),
    )
    if budget_seconds is None:
        budget_seconds = default_budget(len(table.X), options.evaluate_budget_seconds)
    if budget_seconds < 0:
        raise LoyalError(f"the search budget must be 0 or more seconds, got {budget_seconds}")
    searching = budget_seconds > 0
    trials = options.evaluate_max_trials if max_trials is None else max_trials
    model = ChurnModel(
        **options.model_params(),
        search_trials=trials if searching else 0,
        search_timeout=budget_seconds / folds if searching else None,
        random_state=seed,
    )
    return cross_validate(table.X, table.y, model, folds=folds, seed=seed)


def default_budget(rows: int, per_10k_rows: float = DEFAULTS.evaluate_budget_seconds) -> float:
    """Search budget of `loyal churn evaluate` for a table of `rows` rows: `per_10k_rows`
    seconds (the churn section's `evaluate_budget_seconds`) per 10,000 rows, and never less."""
    return per_10k_rows * max(1.0, rows / 10_000)


def log_evaluation(settings: Settings, path: Path, result: CrossValidation) -> str:
    """Log a `loyal churn evaluate` run to MLflow: metrics, baselines and chosen settings.

    Returns:
        The MLflow run id.
    """
    import mlflow
    from training import tracking

    path = Path(path)
    name = f"churn evaluate {path.name}"
    with tracking.start_run(
        settings, "churn_evaluate", tracking.file_snapshot_id(path), name
    ) as run:
        mlflow.log_params({"table": str(path), "folds": len(result.chosen)})
        for number, chosen in enumerate(result.chosen, start=1):
            mlflow.log_params({f"fold{number}_{k}": v for k, v in chosen.items()})
        mlflow.log_metrics({**result.metrics, "seconds": result.seconds})
        mlflow.log_dict(result.summary(), "evaluation.json")
    return str(run.info.run_id)


# ----------------------------------------------------------------------------- splits
@dataclass(frozen=True)
class Split:
    """Row positions of each part of a train/validation/test protocol.

    Attributes:
        train: rows the boosters learn from.
        valid: later rows for early stopping, search and calibration (time split only; the
            random split cross-fits inside `train` instead).
        test: the holdout, scored once and logged for promotion.
        kind: "time" or "stratified".
        description: what was cut where, for the run parameters.
    """

    train: np.ndarray
    valid: np.ndarray | None
    test: np.ndarray
    kind: str
    description: dict[str, str] = field(default_factory=dict)


def time_split(times: pd.Series, horizon_days: int | None = None) -> Split:
    """Train on earlier snapshots, validate on a later one, test on the last.

    With a horizon, a snapshot is used before another only if its label window (snapshot +
    horizon) has closed by then: no training label looks into the validation or test period.

    Args:
        times: snapshot timestamp of every row.
        horizon_days: label horizon; None for no gap (the previous snapshot validates).

    Raises:
        NotReadyError: when there are not enough snapshots for the three parts.
    """
    stamps = pd.to_datetime(times).reset_index(drop=True)
    snapshots = np.sort(stamps.unique())
    gap = pd.Timedelta(days=horizon_days or 0)
    test_time = snapshots[-1]
    before_test = snapshots[snapshots <= test_time - gap] if gap else snapshots[:-1]
    if len(before_test) == 0:
        raise NotReadyError(_too_few(snapshots, horizon_days))
    valid_time = before_test[-1]
    before_valid = snapshots[snapshots <= valid_time - gap] if gap else snapshots[:-2]
    if len(before_valid) == 0:
        raise NotReadyError(_too_few(snapshots, horizon_days))
    train = np.flatnonzero(stamps.le(before_valid[-1]).to_numpy())
    valid = np.flatnonzero(stamps.eq(valid_time).to_numpy())
    test = np.flatnonzero(stamps.eq(test_time).to_numpy())
    description = {
        "train_first": _day(snapshots[0]),
        "train_last": _day(before_valid[-1]),
        "valid_snapshot": _day(valid_time),
        "test_snapshot": _day(test_time),
        "horizon_days": str(horizon_days or 0),
    }
    return Split(train, valid, test, "time", description)


def _day(stamp: Any) -> str:
    return str(pd.Timestamp(stamp).date())


def _too_few(snapshots: np.ndarray, horizon_days: int | None) -> str:
    return (
        f"a time split needs train, validation and test snapshots at least {horizon_days or 0} "
        f"days apart; the frame has {len(snapshots)} snapshot(s)"
    )


def stratified_split(y: np.ndarray, test_size: float = 0.2, seed: int = 42) -> Split:
    """A stratified random holdout (for one-snapshot tables; never for data across time)."""
    from sklearn.model_selection import train_test_split

    rows = np.arange(len(y))
    train, test = train_test_split(rows, test_size=test_size, stratify=y, random_state=seed)
    description = {"test_size": str(test_size), "seed": str(seed)}
    return Split(np.sort(train), None, np.sort(test), "stratified", description)


# ---------------------------------------------------------------------------- training
@dataclass(frozen=True)
class TrainResult:
    """What a training run produced.

    Attributes:
        run_id: the MLflow run.
        model_version: registered `churn` version (None when not registered).
        metrics: test-split metrics (roc_auc, pr_auc, brier, ece, lift_at_10, capture_at_10,
            plus oracle_* when ground truth was given).
        holdout: the test rows (features, label and bookkeeping columns) as logged.
        model: the fitted model.
        split: the protocol used.
        seconds: wall time of fitting (search included).
        frame_seconds: wall time of fetching the training frame (0 when it was given).
    """

    run_id: str
    model_version: str | None
    metrics: dict[str, float]
    holdout: pd.DataFrame
    model: ChurnModel
    split: Split
    seconds: float
    frame_seconds: float = 0.0


def feature_columns(frame: pd.DataFrame, exclude: Sequence[str]) -> list[str]:
    """Model inputs: every column but the excluded ones and timestamps (logged as skipped)."""
    columns = []
    for column in frame.columns:
        if column in exclude:
            continue
        if pd.api.types.is_datetime64_any_dtype(frame[column]):
            log.warning("column '%s' skipped: timestamps are not model inputs", column)
            continue
        columns.append(column)
    return columns


def test_metrics(
    y: np.ndarray, probability: np.ndarray, oracle: np.ndarray | None = None
) -> dict[str, float]:
    """Test metrics, and the ground-truth ceiling when the true probabilities are known."""
    metrics = binary_metrics(y, probability)
    if oracle is not None:
        best = binary_metrics(y, oracle)
        metrics.update({f"oracle_{k}": v for k, v in best.items()})
        metrics["roc_auc_gap"] = best["roc_auc"] - metrics["roc_auc"]
    return metrics


def baseline_metrics(
    X: pd.DataFrame,
    y: np.ndarray,
    test_X: pd.DataFrame,
    test_y: np.ndarray,
    seed: int = 42,
    n_jobs: int = 1,
    max_rows: int | None = None,
) -> dict[str, float]:
    """`baseline_<name>_<metric>` of each baseline fitted on (X, y) and scored on the test rows.

    Training passes every row the model learned from or was tuned and calibrated on
    (train and validation), since the baselines need no held-out rows of their own; beyond
    `max_rows` they are fitted on a seeded sample of them stratified by label.
    """
    if max_rows is not None and len(y) > max_rows:
        kept = stratified_rows(y, max_rows, seed)
        log.info("baselines: fitted on %d of %d rows (stratified by label)", len(kept), len(y))
        X, y = X.iloc[kept], y[kept]
    result: dict[str, float] = {}
    for name in BASELINES:
        started = time.perf_counter()
        fitted = baseline(name, X, seed=seed, n_jobs=n_jobs).fit(X, y)
        scores = binary_metrics(test_y, fitted.predict_proba(test_X)[:, 1])
        result.update({f"baseline_{name}_{k}": scores[k] for k in BASELINE_METRICS})
        log.info(
            "baseline %s: test roc_auc %.4f (%.1f s)",
            name,
            scores["roc_auc"],
            time.perf_counter() - started,
        )
    return result


def train_from_frame(
    frame: pd.DataFrame,
    label_col: str,
    time_col: str | None = None,
    *,
    settings: Settings,
    id_col: str | None = None,
    oracle_col: str | None = None,
    snapshot_id: str | None = None,
    horizon_days: int | None = None,
    search_trials: int = DEFAULTS.search_trials,
    search_timeout: float | None = DEFAULTS.search_timeout,
    test_size: float = 0.2,
    seed: int = 42,
    n_jobs: int = 1,
    register: bool = True,
    params: Mapping[str, Any] | None = None,
    plots: bool = True,
    exclude: Sequence[str] = (),
    wording: Mapping[str, Mapping[str, str]] | None = None,
    unused: Sequence[str] = (),
    trainer: BoosterTrainer | None = None,
) -> TrainResult:
    """Fit, evaluate, log and register the churn model from a labelled frame.

    Args:
        frame: one row per customer (and snapshot): features, a 0/1 label, optionally an id,
            a snapshot timestamp and ground-truth probabilities.
        label_col: the 0/1 churn label.
        time_col: snapshot timestamp; given, the split follows time (see `time_split`),
            else it is a stratified random holdout.
        settings: where MLflow lives.
        id_col: customer id (kept in the holdout, not a feature).
        oracle_col: true churn probabilities (generated data only): reported, never learned.
        snapshot_id: data snapshot id for the run tags (default: a hash of the frame).
        horizon_days: label horizon, the gap kept between time-split parts.
        search_trials: Optuna trials (the search budget, with `search_timeout` seconds).
        search_timeout: seconds after which the search starts no new trial.
        test_size: holdout share of the stratified split.
        seed: seed of the split, the folds, the boosters and the search.
        n_jobs: XGBoost threads.
        register: register the logged model as `churn`.
        params: fixed `ChurnModel` parameters (the search starts from them).
        plots: log the PNG plots (ROC, gain/lift, calibration, importance).
        exclude: more columns that are not features (e.g. `label_complete`); kept in the
            holdout, never learned from.
        wording: reason templates that replace the catalog's for this business's data
            (see `data_wording`), stored with the model so serving words reasons the same.
        unused: feature columns not learned from (`absent_features`) but kept in the logged
            holdout as inputs, so a champion that used them can still be scored on it.
        trainer: trains the final booster elsewhere (a time split only; the Dask engine's
            `training.churn_dask.dask_trainer`); None trains it here.

    Returns:
        Run id, registered version, test metrics, the holdout, the model and the split.
    """
    from training import tracking

    _quiet_optuna()
    if label_col not in frame.columns:
        raise DataContractError("training frame", "the label column is missing", label_col)
    bookkeeping = [c for c in (label_col, id_col, time_col, oracle_col, *exclude) if c]
    features = feature_columns(frame, [*bookkeeping, *unused])
    y = parse_label(frame[label_col], "training frame").to_numpy().astype(int)
    if not time_col and id_col and frame[id_col].duplicated().any():
        log.warning(
            "'%s' repeats across rows but no time column was given: a random split lets one "
            "customer's snapshots fall on both sides; pass time_col for a time split",
            id_col,
        )
    split = (
        time_split(frame[time_col], horizon_days)
        if time_col
        else stratified_split(y, test_size, seed)
    )
    X = frame[features]
    model = ChurnModel(
        **{**settings.churn.model_params(), **dict(params or {})},
        search_trials=search_trials,
        search_timeout=search_timeout,
        random_state=seed,
        n_jobs=n_jobs,
    )
    started = time.perf_counter()
    eval_set = None if split.valid is None else (X.iloc[split.valid], y[split.valid])
    model.fit(X.iloc[split.train], y[split.train], eval_set=eval_set, trainer=trainer)
    seconds = time.perf_counter() - started
    holdout = frame.iloc[split.test].reset_index(drop=True)
    holdout[label_col] = y[split.test]
    probability = model.predict_proba(holdout[features])[:, 1]
    oracle = holdout[oracle_col].to_numpy(float) if oracle_col else None
    metrics = test_metrics(y[split.test], probability, oracle)
    seen = split.train if split.valid is None else np.concatenate([split.train, split.valid])
    baselines = baseline_metrics(
        X.iloc[seen], y[seen], X.iloc[split.test], y[split.test], seed, n_jobs,
        max_rows=settings.churn.baseline_max_rows,
    )  # fmt: skip
    metrics.update(baselines)
    log.info("churn test metrics: %s", {k: round(v, 4) for k, v in metrics.items()})
    snapshot = snapshot_id or tracking.frame_snapshot_id(frame)
    run_id, version = _log_run(
        settings, model, features, holdout, label_col, bookkeeping, metrics, split, snapshot,
        seconds, probability, register, plots, wording, unused,
    )  # fmt: skip
    return TrainResult(run_id, version, metrics, holdout, model, split, seconds)


def train_from_table(
    settings: Settings,
    path: Path,
    id_col: str | None,
    label_col: str,
    search_trials: int = DEFAULTS.search_trials,
    search_timeout: float | None = DEFAULTS.search_timeout,
    seed: int = 42,
    register: bool = True,
) -> TrainResult:
    """Train, log and register the churn model from a bring-your-own table (`--table`).

    The table is typed as for `evaluate_table` (identifiers and free text dropped, blanks in
    numeric text read as missing, the label parsed to 0/1); the holdout is a stratified 20%.
    """
    from training import tracking

    path = Path(path)
    table = prepare_table(read_table(path), id_col, label_col, table=path.name)
    for line in table.roles.warnings():
        log.warning(line)
    frame = pd.concat([table.ids, table.X, table.y], axis=1)
    return train_from_frame(
        frame,
        label_col,
        settings=settings,
        id_col=str(table.ids.name),
        snapshot_id=tracking.file_snapshot_id(path),
        search_trials=search_trials,
        search_timeout=search_timeout,
        seed=seed,
        register=register,
    )


# ---------------------------------------------------------------- from the feature store
def split_snapshots(
    times: pd.Series,
    horizon_days: int,
    max_train_snapshots: int | None = DEFAULTS.max_train_snapshots,
) -> list[pd.Timestamp]:
    """The snapshots a time split of these rows uses: the latest training ones, validation, test.

    Snapshots that fall in the gaps `time_split` keeps between its parts are never learned from
    nor scored, so they are not fetched at all; older training snapshots beyond
    `max_train_snapshots` are dropped too (the point-in-time join is the slow part).

    Args:
        times: snapshot timestamp of every labelled row.
        horizon_days: the label horizon (the gap between the parts).
        max_train_snapshots: keep at most this many training snapshots (None: all).

    Returns:
        The snapshot timestamps to fetch, oldest first.
    """
    snapshots = pd.Series(np.sort(pd.to_datetime(times).unique()))
    split = time_split(snapshots, horizon_days)
    train = snapshots.iloc[split.train]
    if max_train_snapshots is not None:
        if max_train_snapshots < 1:
            raise LoyalError(f"max_train_snapshots must be at least 1, got {max_train_snapshots}")
        train = train.iloc[-max_train_snapshots:]
    parts = [train, snapshots.iloc[split.valid if split.valid is not None else []]]
    parts.append(snapshots.iloc[split.test])
    return [pd.Timestamp(t) for t in pd.concat(parts).sort_values()]


def sample_training_rows(
    entities: pd.DataFrame,
    train_snapshots: Sequence[pd.Timestamp],
    max_rows: int | None,
    seed: int = 42,
) -> pd.DataFrame:
    """The labelled rows to fetch: every row of the other snapshots (validation and test), and
    at most `max_rows` of the training snapshots.

    The training rows kept are a seeded sample stratified by snapshot and label, so every
    snapshot and the churn rate keep their shares: the boosters learn the same prior and their
    log-odds stay calibrated (the calibrator is fitted on the validation snapshot anyway).
    Sampling before the point-in-time join keeps the frame, and everything after it, bounded
    whatever the number of customers.
    """
    training = entities[TIMESTAMP_FIELD].isin(train_snapshots).to_numpy()
    if max_rows is None or training.sum() <= max_rows:
        return entities
    rows = entities[training]
    snapshot_codes = pd.factorize(rows[TIMESTAMP_FIELD])[0]
    strata = snapshot_codes * 2 + rows["churned"].to_numpy(dtype=np.int64)
    kept = rows.iloc[stratified_rows(strata, max_rows, seed)]
    log.info(
        "churn frame: %d of %d training rows sampled (stratified by snapshot and label, seed %d)",
        len(kept),
        len(rows),
        seed,
    )
    return pd.concat([kept, entities[~training]], ignore_index=True)


def sample_evaluation_rows(
    entities: pd.DataFrame,
    evaluation_snapshots: Sequence[pd.Timestamp],
    max_rows: int | None,
    seed: int = 42,
) -> pd.DataFrame:
    """At most `max_rows` labelled rows of each evaluation snapshot (validation, test), the
    other rows kept whole.

    Each snapshot's sample is seeded and stratified by label, so its churn rate is the
    snapshot's: early stopping, calibration and the test metrics see the same population,
    only fewer of it (a ROC-AUC on 300,000 rows has a standard error of about 0.002).
    """
    if max_rows is None:
        return entities
    parts = []
    for snapshot, rows in entities.groupby(TIMESTAMP_FIELD, sort=False):
        if snapshot in evaluation_snapshots and len(rows) > max_rows:
            labels = rows["churned"].to_numpy(dtype=np.int64)
            log.info(
                "churn frame: %d of %d rows of the %s snapshot sampled (stratified by label)",
                max_rows,
                len(rows),
                _day(snapshot),
            )
            rows = rows.iloc[stratified_rows(labels, max_rows, seed)]
        parts.append(rows)
    return pd.concat(parts, ignore_index=True)


def bank_frame(
    settings: Settings,
    max_train_snapshots: int | None = DEFAULTS.max_train_snapshots,
    max_train_rows: int | None = DEFAULTS.max_train_rows,
    seed: int = 42,
    max_evaluation_rows: int | None = DEFAULTS.max_evaluation_rows,
) -> tuple[pd.DataFrame, str | None]:
    """The point-in-time `churn_v1` frame of the time split's snapshots, with the oracle.

    At most `max_evaluation_rows` complete labels of each of the validation and test
    snapshots (`sample_evaluation_rows`) and `max_train_rows` of the training snapshots
    (`sample_training_rows`) get their features through Feast
    (`features.frames.training_frame`); `label_complete` is dropped (all rows are complete).
    When the data carries generator ground truth (the sample bank), the true probability of
    closing within the horizon is added beside the label for evaluation (`samplebank.truth`).

    Returns:
        The frame and the oracle column (None for data without ground truth).
    """
    from features.frames import read_horizon, read_labels, training_frame
    from samplebank.truth import with_oracle

    choice = read_horizon(settings)
    if choice.chosen is None:
        raise StepSkippedError(f"churn: {choice.reason}")
    horizon = choice.chosen
    labels = read_labels(settings, complete_only=True)
    if labels.empty:
        raise NotReadyError(
            "no complete churn labels: the data must cover at least three label horizons "
            "(train, validation and test snapshots); generate or ingest a longer history"
        )
    keep = split_snapshots(labels[TIMESTAMP_FIELD], horizon, max_train_snapshots)
    entities = labels[labels[TIMESTAMP_FIELD].isin(keep)]
    log.info(
        "churn frame: %d of %d snapshots (%s .. %s), %d rows",
        len(keep),
        labels[TIMESTAMP_FIELD].nunique(),
        keep[0].date(),
        keep[-1].date(),
        len(entities),
    )
    entities = sample_training_rows(entities, keep[:-2], max_train_rows, seed)
    entities = sample_evaluation_rows(entities, keep[-2:], max_evaluation_rows, seed)
    _require_service(settings, CHURN_SERVICE)
    frame = training_frame(settings, CHURN_SERVICE, entities=entities)
    frame = frame.drop(columns=["label_complete"])
    return with_oracle(frame, settings, horizon)


def _require_service(settings: Settings, service: str) -> None:
    """Fail in one line when the feature service is not registered in Feast yet."""
    from features.store import open_store

    try:
        open_store(settings).get_feature_service(service)
    except Exception as exc:  # Feast raises its own types for a missing service or registry
        raise NotReadyError(
            f"feature service '{service}' is not registered ({exc.__class__.__name__}): "
            "run `loyal features apply` first"
        ) from exc


def ceiling_metrics(
    holdout: pd.DataFrame, label_col: str, settings: Settings, horizon_days: int
) -> dict[str, float]:
    """ROC-AUC of the ground-truth ceilings on the holdout rows (empty without ground truth).

    Keys: `oracle_without_frailty_roc_auc` and `snapshot_hazard_without_frailty_roc_auc`
    (see `samplebank.truth.ceilings`); the latter is the best achievable ranking: the generator's
    hazard at the snapshot from the causes observable before it.
    """
    from models.metrics import roc_auc
    from samplebank.truth import SNAPSHOT_HAZARD_COLUMN, WITHOUT_FRAILTY_COLUMN, ceilings

    truth = ceilings(holdout, settings, horizon_days)
    if truth is None:
        return {}
    y = holdout[label_col].to_numpy(int)
    names = {
        WITHOUT_FRAILTY_COLUMN: "oracle_without_frailty_roc_auc",
        SNAPSHOT_HAZARD_COLUMN: "snapshot_hazard_without_frailty_roc_auc",
    }
    result = {}
    for column, name in names.items():
        values = truth[column].to_numpy(float)
        known = np.isfinite(values)
        if known.any() and len(np.unique(y[known])) == 2:
            result[name] = float(roc_auc(y[known], values[known]))
    return result


def train_configured(settings: Settings, **overrides: Any) -> TrainResult:
    """`train_churn_bank` with the `churn` section of `loyal.yaml` (the spec's train).

    Args:
        settings: the feature store, labels, MLflow and the `churn` section.
        overrides: `train_churn_bank` keywords that win over the section.
    """
    config = settings.churn
    options: dict[str, Any] = {
        "search_trials": config.search_trials,
        "search_timeout": config.search_timeout,
        "max_train_snapshots": config.max_train_snapshots,
        "max_train_rows": config.max_train_rows,
        "max_evaluation_rows": config.max_evaluation_rows,
        "n_jobs": config.n_jobs,
        **overrides,
    }
    return train_churn_bank(settings, **options)


def train_churn_bank(
    settings: Settings,
    *,
    search_trials: int = DEFAULTS.search_trials,
    search_timeout: float | None = DEFAULTS.search_timeout,
    max_train_snapshots: int | None = DEFAULTS.max_train_snapshots,
    max_train_rows: int | None = DEFAULTS.max_train_rows,
    max_evaluation_rows: int | None = DEFAULTS.max_evaluation_rows,
    seed: int = 42,
    n_jobs: int = 1,
    register: bool = True,
    params: Mapping[str, Any] | None = None,
    plots: bool = True,
) -> TrainResult:
    """Train, log and register `churn` from the feature store (`loyal train churn`).

    Features come from the `churn_v1` feature service through Feast's point-in-time join for
    the complete churn labels of the snapshots a time split uses (see `split_snapshots`; large
    banks get a stratified sample of each part, see `bank_frame`); the split trains on the
    earlier snapshots, early-stops, searches and calibrates on a later one and tests on the
    last, one label horizon apart. On the sample bank the test metrics include
    the oracle's (`oracle_*`, from the generator's true churn probabilities on the same rows)
    and two tighter ceilings (`ceiling_metrics`), also logged to the run.

    Args:
        settings: the feature store, labels, ground truth (if any) and MLflow.
        search_trials: Optuna trials (the search budget, with `search_timeout` seconds).
        search_timeout: seconds after which the search starts no new trial.
        max_train_snapshots: training snapshots fetched (the latest ones; None: all).
        max_train_rows: training rows fetched (a stratified sample; None: all).
        max_evaluation_rows: rows fetched of the validation and of the test snapshot (a
            stratified sample of each; None: all).
        seed: seed of the boosters, the search and the samples.
        n_jobs: XGBoost threads (0: every core).
        register: register the logged model as `churn`.
        params: fixed `ChurnModel` parameters (the search starts from them).
        plots: log the PNG plots.

    Returns:
        The training result, with the frame's fetch time.
    """
    import dataclasses

    from features.frames import read_horizon
    from features.tables_io import read_contract
    from loyal.compute import dask_client
    from training import tracking
    from training.churn_dask import dask_trainer

    started = time.perf_counter()
    frame, oracle = bank_frame(
        settings, max_train_snapshots, max_train_rows, seed, max_evaluation_rows
    )
    frame_seconds = time.perf_counter() - started
    log.info("churn frame: %d rows x %d columns in %.1f s", *frame.shape, frame_seconds)
    choice = read_horizon(settings)
    horizon = choice.chosen or choice.configured
    log.info("churn: %s", choice.reason)
    products = read_contract(settings, only=["products"]).get("products")
    with dask_client(settings.compute) as client:
        result = train_from_frame(
            frame,
            "churned",
            TIMESTAMP_FIELD,
            settings=settings,
            id_col=ENTITY_KEY,
            oracle_col=oracle,
            horizon_days=horizon,
            search_trials=search_trials,
            search_timeout=search_timeout,
            seed=seed,
            n_jobs=n_jobs,
            register=register,
            params=params,
            plots=plots,
            wording=data_wording(products),
            unused=absent_features(frame, products),
            trainer=None if client is None else dask_trainer(client),
        )
    extra = ceiling_metrics(result.holdout, "churned", settings, horizon) if oracle else {}
    if "snapshot_hazard_without_frailty_roc_auc" in extra:
        # The gap that matters: to the best ranking anything observable at the snapshot allows.
        achievable = extra["snapshot_hazard_without_frailty_roc_auc"]
        extra["achievable_roc_auc_gap"] = achievable - result.metrics["roc_auc"]
    registry = tracking.client(settings)
    logged = {**{f"test_{k}": v for k, v in extra.items()}, "frame_seconds": frame_seconds}
    for key, value in logged.items():
        registry.log_metric(result.run_id, key, value)
    registry.log_param(result.run_id, "horizon_days", horizon)
    registry.log_param(result.run_id, "horizon_days_configured", choice.configured)
    registry.log_param(result.run_id, "horizon_choice", choice.reason[:500])
    registry.log_param(result.run_id, "compute_engine", settings.compute.engine)
    metrics = {**result.metrics, **extra}
    return dataclasses.replace(result, metrics=metrics, frame_seconds=frame_seconds)


# ---------------------------------------------------------------------------- logging
def _plain(frame: pd.DataFrame) -> pd.DataFrame:
    """Categories as text and whole numbers as floats: the types the pyfunc signature states."""
    out = frame.copy()
    for column in out.columns:
        values = out[column]
        if isinstance(values.dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(values):
            out[column] = values.astype(object).where(values.notna(), None)
        elif pd.api.types.is_bool_dtype(values) or pd.api.types.is_integer_dtype(values):
            out[column] = values.astype(float)
    return out


def _run_params(model: ChurnModel, split: Split, features: Sequence[str]) -> dict[str, Any]:
    params: dict[str, Any] = {f"model_{k}": v for k, v in model.get_params().items()}
    params.update({f"best_{k}": v for k, v in model.best_params_.items()})
    params.update({f"split_{k}": v for k, v in split.description.items()})
    params.update(
        split_kind=split.kind,
        train_rows=len(split.train),
        valid_rows=0 if split.valid is None else len(split.valid),
        test_rows=len(split.test),
        features=len(features),
        calibration_method=model.calibrator_.method,
        boosters=len(model.boosters_),
        rounds=",".join(map(str, model.n_rounds_)),
    )
    if model.search_summary_:
        params.update({f"search_{k}": v for k, v in model.search_summary_.items()})
    return params


def _log_run(
    settings: Settings,
    model: ChurnModel,
    features: list[str],
    holdout: pd.DataFrame,
    label_col: str,
    bookkeeping: list[str],
    metrics: dict[str, float],
    split: Split,
    snapshot_id: str,
    seconds: float,
    probability: np.ndarray,
    register: bool,
    plots: bool = True,
    wording: Mapping[str, Mapping[str, str]] | None = None,
    unused: Sequence[str] = (),
) -> tuple[str, str | None]:
    """One MLflow run: params, metrics, plots, holdout and the pyfunc; maybe registered."""
    import mlflow
    from training import tracking

    templates = catalog_templates(features, wording)
    with tracking.start_run(settings, MODEL_NAME, snapshot_id) as run:
        mlflow.log_params(_run_params(model, split, features))
        if unused:
            mlflow.log_param("unused_features", ",".join(unused)[:500])
        mlflow.log_metrics({**{f"test_{k}": v for k, v in metrics.items()}, "fit_seconds": seconds})
        mlflow.log_metric("holdout_logloss", model.holdout_logloss_)
        y = holdout[label_col].to_numpy(int)
        if plots:
            sample = holdout[features].head(5000)
            importance = model.feature_importance(sample)
            for name, figure in _figures(y, probability, importance).items():
                tracking.log_figure(figure, name)
        inputs = [*features, *[c for c in unused if c in holdout]]
        plain = _plain(holdout[[*inputs, *[c for c in bookkeeping if c in holdout]]])
        tracking.log_holdout(
            plain,
            label=label_col,
            prediction="churn_probability",
            exclude=[c for c in bookkeeping if c != label_col],
            extra={"rows": len(plain), "positives": int(y.sum()), "snapshot_id": snapshot_id,
                   "predict_params": {"top": 0}},
            scores={"churn_probability": probability},
        )  # fmt: skip
        model_uri = _log_model(model, templates, _plain(holdout[features].head(5)))
        tags = tracking.lineage(snapshot_id, test_roc_auc=float(metrics["roc_auc"]))
        version = tracking.register_if(
            register, settings, model_uri, MODEL_NAME, run.info.run_id, tags
        )
    return run.info.run_id, version


def _log_model(
    model: ChurnModel, templates: Mapping[str, Mapping[str, str]], example: pd.DataFrame
) -> str:
    """Log the pyfunc (JSON state artifact, models-from-code entry) with its signature."""
    from mlflow.models import infer_signature

    from models.churn import ChurnPyfunc
    from training import tracking

    wrapper = ChurnPyfunc.from_model(model, templates)
    signature = infer_signature(example, wrapper.predict(None, example), params={"top": 3})
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "churn_model.json"
        state.write_text(pyfunc_payload(model, templates), encoding="utf-8")
        info = tracking.log_pyfunc(
            "models.pyfuncs.churn",
            {PYFUNC_ARTIFACT: state},
            signature,
            example,
            tracking.requirements(REQUIREMENTS),
        )
        return str(info.model_uri)


# ------------------------------------------------------------------------------ plots
def _figures(y: np.ndarray, probability: np.ndarray, importance: pd.Series) -> dict[str, Figure]:
    """ROC, cumulative gain and lift, calibration and feature importance figures."""
    return {
        "roc": roc_figure(y, probability),
        "gain_lift": gain_figure(y, probability),
        "calibration": calibration_figure(y, probability),
        "feature_importance": importance_figure(importance),
    }


def _figure(width: float = 6.0, height: float = 4.5) -> Figure:
    """A figure without pyplot: no GUI backend, nothing global to close (Agg canvas)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def roc_figure(y: np.ndarray, probability: np.ndarray) -> Figure:
    """ROC curve with its AUC."""
    from sklearn.metrics import roc_curve

    from models.metrics import roc_auc

    fpr, tpr, _ = roc_curve(y, probability)
    figure = _figure()
    axes = figure.add_subplot()
    axes.plot(fpr, tpr, label=f"model (AUC {roc_auc(y, probability):.3f})")
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="random")
    axes.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (test)")
    axes.legend(loc="lower right")
    return figure


def gain_figure(y: np.ndarray, probability: np.ndarray) -> Figure:
    """Cumulative gain (share of churners reached) and lift by share of customers contacted."""
    order = np.argsort(-probability, kind="stable")
    reached = np.cumsum(y[order]) / max(1, y.sum())
    share = np.arange(1, len(y) + 1) / len(y)
    figure = _figure(10.0, 4.5)
    gain, lift = figure.subplots(1, 2)
    gain.plot(share, reached, label="model")
    gain.plot([0, 1], [0, 1], linestyle="--", color="grey", label="random")
    gain.axvline(0.10, color="tab:red", linewidth=0.8)
    gain.set(xlabel="share of customers contacted", ylabel="share of churners reached")
    gain.set_title("Cumulative gain (test)")
    gain.legend(loc="lower right")
    lift.plot(share, reached / share)
    lift.axhline(1.0, linestyle="--", color="grey")
    lift.axvline(0.10, color="tab:red", linewidth=0.8)
    lift.set(xlabel="share of customers contacted", ylabel="lift", title="Lift (test)")
    return figure


def calibration_figure(y: np.ndarray, probability: np.ndarray) -> Figure:
    """Reliability diagram on equal-frequency bins, with the distribution of probabilities."""
    from models.metrics import expected_calibration_error

    curve = calibration_curve(y, probability, bins=10)
    ece = expected_calibration_error(y, probability)
    figure = _figure(6.0, 6.0)
    top, bottom = figure.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect")
    top.plot(curve.mean_predicted, curve.observed_rate, marker="o", label=f"model (ECE {ece:.3f})")
    top.set(ylabel="observed churn rate", title="Calibration (test, deciles)")
    top.legend(loc="upper left")
    bottom.hist(probability, bins=40, range=(0, 1), color="tab:blue", alpha=0.7)
    bottom.set(xlabel="predicted churn probability", ylabel="customers")
    return figure


def importance_figure(importance: pd.Series, top: int = 20) -> Figure:
    """Mean |tree SHAP contribution| of the most important features."""
    shown = importance.head(top)[::-1]
    figure = _figure(7.0, max(3.0, 0.3 * len(shown) + 1.0))
    axes = figure.add_subplot()
    axes.barh(list(map(str, shown.index)), shown.to_numpy())
    axes.set(xlabel="mean |contribution to log-odds| (test)", title="Feature importance")
    return figure


def reasons_frame(
    model: ChurnModel, X: pd.DataFrame, top: int = 3, sentence: Sentence | None = None
) -> pd.DataFrame:
    """Probability and reason sentences per row, worded through the feature catalog."""
    reasons = model.explain(X, top=top, sentence=sentence or catalog_sentence)
    return pd.DataFrame(
        {
            "churn_probability": model.predict_proba(X)[:, 1],
            "reasons": [[r.sentence for r in row] for row in reasons],
        },
        index=X.index,
    )
