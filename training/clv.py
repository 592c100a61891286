"""CLV training: RFM summaries from the contract log, a time holdout, MLflow runs and promotion.

Protocol of `train_clv`, in order:

1. **Money**: CLV is margin-based. Each transaction's margin is its own `margin`, else amount x
   its product's `margin_rate`, else 0 (the rule of the feature catalog's `margin_365d`); only
   a log with neither (absent or blank on every row) falls back to revenue, said in the output
   and logged as `value_basis`.
2. **Observation end**: the last whole day before the latest feature snapshot (scores are
   published at that snapshot), or the last transaction day when no features are built.
3. **Time holdout**: the last `holdout_weeks` (default 26 weeks, about six months) before the
   observation end, at most half the history (`features.history.clv_holdout`; a history
   under 8 weeks skips CLV with the reason). A model fitted on the calibration window
   forecasts each customer's repeat purchase days in the holdout; MAE, RMSE and totals are
   reported beside the naive baseline (calibration rate x holdout length), calibration by
   decile is plotted, and the share of the holdout margin earned by the top 1/5/20% by CLV
   shows how well value is ranked.
4. **Refit**: the same recipe on the whole history gives the scoring model.

Both fits travel in one registered pyfunc (`clv`, a JSON state, no pickle): `model="full"`
scores customers, `model="holdout"` re-scores the holdout at promotion, so a champion and a
challenger are compared out of sample on the same customers (`promote_clv`, lower MAE wins).

Refunds are netted into the day they happen (see `features.clv_inputs.rfm_summary`); one-time
buyers carry no spend information and get the population mean spend; extreme spenders are
capped at the 99th percentile of mean spend when *fitting* Gamma-Gamma only (their own mean
still drives their prediction, so big accounts keep their rank).
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from features.clv_inputs import MARGIN_COLUMN, REVENUE_COLUMN, REVENUE_NOTE
from features.history import WindowChoice, clv_holdout, history_days
from features.log_aggregates import TransactionLog, margins_of, observation_end, transaction_log
from loyal import settings as settings_module
from loyal.errors import DataContractError, NotReadyError, StepSkippedError
from loyal.settings import Settings, section
from loyal.specs import promotion_for
from models.clv import DAYS_PER_MONTH, FULL_FIT, HOLDOUT_FIT, ClvModel
from training.clv_data import holdout_metrics, naive_forecast

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from training.registry import Scorer

log = logging.getLogger(__name__)

MODEL_NAME = "clv"
PYFUNC_ARTIFACT = "clv_model"
INPUT_COLUMNS = ("frequency", "recency", "T")
LABEL = "frequency_holdout"
INPUT_TABLES = ("transactions", "products")
"""The contract tables CLV reads (not interactions or balances: several times its size at scale)."""
TOP_SHARES = (0.01, 0.05, 0.20)
"""Top customer shares whose margin share CLV logs and the report states."""
REQUIREMENTS = ("mlflow", "scipy", "numpy", "pandas", "threadpoolctl", "pydantic", "pyarrow")


class ClvSettings(settings_module.ClvSettings):
    """CLV settings with the helpers training needs (fields live in `loyal.settings`)."""

    def economics(self) -> dict[str, Any]:
        """Keyword arguments of `ClvModel.clv` (margin is modelled directly: rate 1)."""
        return {
            "horizon_months": self.horizon_months,
            "monthly_discount": self.monthly_discount,
            "margin_rate": 1.0,
            "cost_per_month": self.cost_per_month,
            "cost_per_purchase": self.cost_per_purchase,
        }

    def units(self, months: float) -> float:
        """A number of months in BG/NBD time units."""
        return months * DAYS_PER_MONTH / self.time_unit_days


def clv_settings(settings: Settings) -> ClvSettings:
    """`settings.clv` once the settings carry it (any model with these fields), else defaults."""
    return section(settings, "clv", ClvSettings)


# ---------------------------------------------------------------------------------- inputs
def customer_summary(
    transactions: TransactionLog, end: pd.Timestamp, config: ClvSettings
) -> pd.DataFrame:
    """RFM summary of every customer with a purchase by `end` (inclusive), indexed by id."""
    return transactions.rfm_summary(end, period=config.period, time_unit_days=config.time_unit_days)


def model_inputs(summary: pd.DataFrame, value_column: str) -> pd.DataFrame:
    """The pyfunc's input columns of a summary, as floats, with a fresh index."""
    columns = [*INPUT_COLUMNS, value_column]
    missing = [c for c in columns if c not in summary.columns]
    if missing:
        raise DataContractError("RFM summary", "column missing", missing[0])
    return summary[columns].astype(float).reset_index(drop=True)


def new_model(config: ClvSettings, value_column: str) -> ClvModel:
    """An unfitted CLV model with the configured recipe."""
    return ClvModel(
        penalizer=config.penalizer,
        monetary_cap_quantile=config.monetary_cap_quantile,
        value_column=value_column,
        time_unit_days=config.time_unit_days,
    )


# ------------------------------------------------------------------------------- metrics
def top_share(ranking: np.ndarray, value: np.ndarray, share: float) -> float:
    """Share of the total `value` held by the top `share` of customers by `ranking`.

    Ties are broken by position; the top group has `round(n * share)` customers (at least 1).
    Returns NaN when the total is not positive.
    """
    value = np.asarray(value, dtype=float)
    total = value.sum()
    if len(value) == 0 or total <= 0:
        return float("nan")
    size = max(1, int(np.floor(len(value) * share + 0.5)))
    order = np.argsort(-np.asarray(ranking, dtype=float), kind="stable")
    return float(value[order[:size]].sum() / total)


def decile_table(split: pd.DataFrame, predicted: np.ndarray) -> pd.DataFrame:
    """Mean predicted, naive and actual holdout purchases by decile of the prediction."""
    order = np.argsort(predicted, kind="stable")
    decile = np.empty(len(order), dtype=int)
    decile[order] = np.arange(len(order)) * 10 // max(len(order), 1) + 1
    frame = pd.DataFrame(
        {
            "decile": decile,
            "predicted": predicted,
            "naive": naive_forecast(split),
            "actual": split[LABEL].to_numpy(dtype=float),
        }
    )
    return frame.groupby("decile")[["predicted", "naive", "actual"]].mean()


def value_capture(
    split: pd.DataFrame,
    model: ClvModel,
    config: ClvSettings,
    transactions: TransactionLog,
    calibration_end: pd.Timestamp,
    end: pd.Timestamp,
) -> dict[str, float]:
    """How much of the holdout's margin the top 1/5/20% by calibration CLV earned.

    The CLV of the calibration fit over the holdout's length ranks customers; the naive ranking
    is the margin of the last 365 calibration days (the tiers' fallback basis); the oracle ranks
    by the holdout margin itself (the ceiling).
    """
    months = max(1, round(config.holdout_weeks * 7 / DAYS_PER_MONTH))
    clv = model.clv(split, **{**config.economics(), "horizon_months": months})
    actual = margins_of(transactions.window_totals(calibration_end, end), split.index).to_numpy()
    naive_start = calibration_end - pd.Timedelta(days=365)
    naive = margins_of(
        transactions.window_totals(naive_start, calibration_end), split.index
    ).to_numpy()
    metrics = {}
    for share in TOP_SHARES:
        label = f"top{round(share * 100)}"
        metrics[f"holdout_{label}_margin_share"] = top_share(clv, actual, share)
        metrics[f"naive_{label}_margin_share"] = top_share(naive, actual, share)
        metrics[f"oracle_{label}_margin_share"] = top_share(actual, actual, share)
    return metrics


def holdout_mae(model_uri: str, holdout: pd.DataFrame, meta: Mapping[str, Any]) -> float:
    """Promotion scorer: MAE of a pyfunc's holdout purchase forecast on a logged holdout.

    Reads only the input columns the model's signature names (a champion that models revenue
    still scores on a holdout logged with margins), with the logged predict params.
    """
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model(model_uri)
    schema = model.metadata.get_input_schema()
    names = schema.input_names() if schema is not None else list(INPUT_COLUMNS)
    missing = [c for c in names if c not in holdout.columns]
    if missing:
        raise DataContractError("CLV holdout", "input column missing", missing[0])
    output = pd.DataFrame(
        model.predict(holdout[names].astype(float), params=meta.get("predict_params"))
    )
    predicted = output[meta["prediction"]].to_numpy(dtype=float)
    return float(np.mean(np.abs(predicted - holdout[meta["label"]].to_numpy(dtype=float))))


# ------------------------------------------------------------------------------ training
@dataclass(frozen=True)
class ClvTrainResult:
    """What a CLV training run produced.

    Attributes:
        run_id: the MLflow run.
        model_version: registered `clv` version (None when not registered).
        metrics: holdout metrics (mae, rmse, totals, naive_*, value capture) and fit facts.
        model: the scoring model, fitted on the whole history.
        holdout_model: the model fitted on the calibration window.
        deciles: mean predicted, naive and actual holdout purchases by decile.
        value_column: the money modelled (`monetary_margin` or `monetary_value`).
        calibration_end: last calibration day.
        observation_end: last day observed (end of the holdout; scoring conditions on it).
        seconds: wall time of both fits.
    """

    run_id: str
    model_version: str | None
    metrics: dict[str, float]
    model: ClvModel
    holdout_model: ClvModel
    deciles: pd.DataFrame
    value_column: str
    calibration_end: pd.Timestamp
    observation_end: pd.Timestamp
    seconds: float


def mae_scorer(metric: str = "holdout_mae") -> Scorer:
    """Promotion's scorer: `holdout_mae` (the only metric CLV promotion compares)."""
    return holdout_mae


def train_clv(
    settings: Settings,
    register: bool = True,
    clv: ClvSettings | None = None,
    transactions: TransactionLog | None = None,
) -> ClvTrainResult:
    """Fit, evaluate on the time holdout, refit, log and register the CLV model.

    Args:
        settings: where the contract tables, feature tables and MLflow live.
        register: register the logged model as `clv`.
        clv: CLV settings (default: `clv_settings(settings)`).
        transactions: the transaction log (default: the loaded contract's, aggregated out of
            core by DuckDB: only the per-customer summaries are held in memory).

    Returns:
        Run, version, holdout metrics and both fitted models.

    Raises:
        NotReadyError: no contract tables, or a history too short for the holdout.
        ClvFitError: the models do not converge on these data.
    """
    config = clv or clv_settings(settings)
    transactions = transactions if transactions is not None else transaction_log(settings)
    value_column = transactions.value_column
    end = observation_end(settings, transactions)
    config, choice = sized_holdout(config, transactions, end)
    calibration_end = end - pd.Timedelta(weeks=config.holdout_weeks)
    if value_column == REVENUE_COLUMN:
        log.info("CLV: %s", REVENUE_NOTE)
    started = time.perf_counter()
    split, summary = _split(transactions, calibration_end, end, config)
    holdout_model = new_model(config, value_column).fit(split)
    predicted = holdout_model.expected_purchases(split, split["duration_holdout"].to_numpy())
    metrics = holdout_metrics(split, predicted)
    metrics.update(value_capture(split, holdout_model, config, transactions, calibration_end, end))
    model = new_model(config, value_column).fit(summary)
    del summary
    seconds = time.perf_counter() - started
    metrics.update(_fit_facts(model, holdout_model))
    log.info(
        "CLV holdout (%s..%s): MAE %.3f (naive %.3f), RMSE %.3f (naive %.3f), "
        "predicted %.0f vs actual %.0f repeat purchases",
        (calibration_end + pd.Timedelta(days=1)).date(), end.date(), metrics["mae"],
        metrics["naive_mae"], metrics["rmse"], metrics["naive_rmse"],
        metrics["predicted_total"], metrics["actual_total"],
    )  # fmt: skip
    deciles = decile_table(split, predicted)
    run_id, version = _log_run(
        settings, config, model, holdout_model, split, value_column, metrics, deciles,
        calibration_end, end, seconds, register, choice,
    )  # fmt: skip
    return ClvTrainResult(
        run_id, version, metrics, model, holdout_model, deciles, value_column,
        calibration_end, end, seconds,
    )  # fmt: skip


def sized_holdout(
    config: ClvSettings, transactions: TransactionLog, end: pd.Timestamp
) -> tuple[ClvSettings, WindowChoice]:
    """The settings with the holdout the history supports (`features.history.clv_holdout`).

    Raises:
        StepSkippedError: the history is too short for the shortest holdout.
    """
    first = transactions.bounds()[0]
    choice = clv_holdout(history_days(first, end + pd.Timedelta(days=1)), config.holdout_weeks)
    if choice.chosen is None:
        raise StepSkippedError(f"CLV: {choice.reason}")
    log.info("CLV: %s", choice.reason)
    return config.model_copy(update={"holdout_weeks": choice.chosen}), choice


def _split(
    transactions: TransactionLog,
    calibration_end: pd.Timestamp,
    end: pd.Timestamp,
    config: ClvSettings,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The calibration summary with holdout purchases, and the summary at `end`; refuses a
    history too short for the holdout."""
    first = transactions.bounds()[0].normalize()
    if first > calibration_end:
        raise NotReadyError(
            f"the transactions start on {first.date()}, after the calibration end "
            f"{calibration_end.date()}: a {config.holdout_weeks}-week holdout needs a longer "
            "history (or set a shorter holdout_weeks)"
        )
    return transactions.holdout_and_full(
        calibration_end, end, period=config.period, time_unit_days=config.time_unit_days
    )


def _fit_facts(model: ClvModel, holdout_model: ClvModel) -> dict[str, float]:
    """Fitted parameters and penalizers of both fits, as metrics."""
    facts: dict[str, float] = {}
    for prefix, fitted in (("full", model), ("holdout", holdout_model)):
        facts.update({f"{prefix}_{k}": float(v) for k, v in fitted.params_.items()})
        facts[f"{prefix}_penalizer"] = float(fitted.penalizer_)
        facts[f"{prefix}_spend_frequency_corr"] = fitted.gamma_gamma_.spend_frequency_corr_
    return facts


# ------------------------------------------------------------------------------- logging
def pyfunc_payload(model: ClvModel, holdout_model: ClvModel, config: ClvSettings) -> dict[str, Any]:
    """The JSON state of the pyfunc: both fits and the CLV economics."""
    return {
        "models": {FULL_FIT: model.to_dict(), HOLDOUT_FIT: holdout_model.to_dict()},
        "economics": config.economics(),
        "settings": config.model_dump(),
    }


def _log_run(
    settings: Settings,
    config: ClvSettings,
    model: ClvModel,
    holdout_model: ClvModel,
    split: pd.DataFrame,
    value_column: str,
    metrics: dict[str, float],
    deciles: pd.DataFrame,
    calibration_end: pd.Timestamp,
    end: pd.Timestamp,
    seconds: float,
    register: bool,
    choice: WindowChoice | None = None,
) -> tuple[str, str | None]:
    """One MLflow run: params, metrics, decile plot and table, holdout, pyfunc; maybe registered."""
    import mlflow
    from training import tracking

    holdout = _holdout_frame(split, value_column)
    snapshot = tracking.frame_snapshot_id(holdout)
    with tracking.start_run(settings, MODEL_NAME, snapshot) as run:
        mlflow.log_params(
            {
                **{f"clv_{k}": v for k, v in config.model_dump().items()},
                "value_column": value_column,
                "value_basis": "margin" if value_column == MARGIN_COLUMN else REVENUE_NOTE,
                "holdout_weeks_configured": choice.configured if choice else config.holdout_weeks,
                "holdout_choice": choice.reason if choice else "configured",
                "calibration_end": str(calibration_end.date()),
                "holdout_start": str((calibration_end + pd.Timedelta(days=1)).date()),
                "observation_end": str(end.date()),
                "holdout_customers": len(split),
            }
        )
        mlflow.log_metrics({**metrics, "fit_seconds": seconds})
        tracking.log_figure(calibration_figure(deciles, config.holdout_weeks), "clv_calibration")
        mlflow.log_text(deciles.round(4).to_csv(), "tables/clv_deciles.csv")
        tracking.log_holdout(
            holdout,
            label=LABEL,
            prediction="expected_purchases",
            exclude=["customer_id", "duration_holdout"],
            extra={
                "rows": len(holdout),
                "snapshot_id": snapshot,
                "calibration_end": str(calibration_end.date()),
                "observation_end": str(end.date()),
                "predict_params": {
                    "model": HOLDOUT_FIT,
                    "forecast_units": float(split["duration_holdout"].iloc[0]),
                },
            },
        )
        example = model_inputs(split.head(5), value_column)
        model_uri = _log_model(model, holdout_model, config, example)
        tags = tracking.lineage(snapshot, holdout_mae=float(metrics["mae"]))
        version = tracking.register_if(
            register, settings, model_uri, MODEL_NAME, run.info.run_id, tags
        )
    return run.info.run_id, version


def _holdout_frame(split: pd.DataFrame, value_column: str) -> pd.DataFrame:
    """The logged holdout: id, inputs (margin and revenue), actual purchases and duration."""
    money = [c for c in (MARGIN_COLUMN, REVENUE_COLUMN) if c in split.columns]
    columns = [*INPUT_COLUMNS, *dict.fromkeys([value_column, *money]), LABEL, "duration_holdout"]
    frame = split[columns].astype(float).reset_index()
    frame["customer_id"] = frame["customer_id"].astype(str)
    return frame


def _log_model(
    model: ClvModel, holdout_model: ClvModel, config: ClvSettings, example: pd.DataFrame
) -> str:
    """Log the pyfunc (JSON state artifact, models-from-code entry) with its signature."""
    import json

    from mlflow.models import infer_signature

    from training import tracking

    output = model.predict(example, **config.economics()).reset_index(drop=True)
    signature = infer_signature(example, output, params={"model": FULL_FIT, "forecast_units": 0.0})
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / f"{PYFUNC_ARTIFACT}.json"
        state.write_text(json.dumps(pyfunc_payload(model, holdout_model, config)), "utf-8")
        info = tracking.log_pyfunc(
            "models.pyfuncs.clv",
            {PYFUNC_ARTIFACT: state},
            signature,
            example,
            tracking.requirements(REQUIREMENTS),
        )
        return str(info.model_uri)


def calibration_figure(deciles: pd.DataFrame, holdout_weeks: int) -> Figure:
    """Mean predicted (model and naive) vs actual holdout purchases by decile of the model."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.0, 4.5), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    x = deciles.index.to_numpy()
    axes.bar(x - 0.2, deciles["actual"], width=0.4, color="tab:grey", label="actual")
    axes.bar(x + 0.2, deciles["predicted"], width=0.4, color="tab:blue", label="BG/NBD")
    axes.plot(x, deciles["naive"], color="tab:orange", marker="o", label="naive rate")
    axes.set_xticks(x)
    axes.set(
        xlabel="decile of predicted purchases (1 = lowest)",
        ylabel=f"repeat purchase days in the {holdout_weeks}-week holdout (mean)",
        title="CLV calibration by decile (time holdout)",
    )
    axes.legend(loc="upper left")
    return figure


promote_clv = promotion_for("clv")
"""Make a `clv` version the champion if it wins on its holdout (the one promotion path)."""
