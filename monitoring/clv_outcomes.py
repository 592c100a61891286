"""CLV once outcomes have arrived: realised vs predicted value by tier (`loyal monitor`).

The CLV champion carries two fits: one on the whole history (scoring) and one on the
calibration window only. The calibration end is the data's last day minus the CLV holdout
length (`features.history.clv_holdout`, as `loyal train clv` sizes it); the calibration fit
predicts each customer's margin over the following window (undiscounted, before contact
costs, so that it compares with the money that came in), the customers are tiered on that
prediction with the product's tier rule (`models.tiers`), and the realised margin of the window
is summed from the transactions. Only customers with a purchase by the calibration end are
scored (newcomers in the window have no prediction).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from loyal.errors import LoyalError
from loyal.settings import Settings

log = logging.getLogger(__name__)

NOTE = (
    "Predicted: the CLV champion's calibration-window fit, over the window, undiscounted and "
    "before contact costs; realised: the customers' net margin (revenue without margins) in "
    "the window. Customers: those with a purchase by the calibration end; tiers from the "
    "predicted value with the product's tier rule."
)


def load_clv_fit(settings: Settings) -> tuple[Any, str] | None:
    """The CLV champion's calibration-window fit and its version (None without a champion)."""
    from inference.champions import MlflowChampions, load_pyfunc
    from models.clv import HOLDOUT_FIT

    with tempfile.TemporaryDirectory(prefix="loyal-monitor-") as cache:
        artifact = MlflowChampions(settings.mlflow.tracking_uri, Path(cache)).locate("clv")
        if artifact is None:
            return None
        wrapper = load_pyfunc(artifact).unwrap_python_model()
        return wrapper.models[HOLDOUT_FIT], str(artifact.version)


def clv_outcomes(settings: Settings) -> dict[str, Any]:
    """Realised vs predicted CLV by tier over the holdout window (or why there is none)."""
    from features.log_aggregates import margins_of, observation_end, transaction_log
    from models.clv import DAYS_PER_MONTH
    from models.tiers import assign_tiers
    from training.clv import _split, clv_settings, sized_holdout

    loaded = load_clv_fit(settings)
    if loaded is None:
        return {"note": "no CLV champion"}
    model, version = loaded
    try:
        transactions = transaction_log(settings)
        value_column = transactions.value_column
        end = observation_end(settings, transactions)
        config, _ = sized_holdout(clv_settings(settings), transactions, end)
        calibration_end = end - pd.Timedelta(weeks=config.holdout_weeks)
        split = _split(transactions, calibration_end, end, config)[0]
    except LoyalError as error:
        return {"version": version, "note": f"no outcome window yet: {error}"}
    months = max(1, round(config.holdout_weeks * 7 / DAYS_PER_MONTH))
    predicted = pd.Series(
        model.clv(split, horizon_months=months, monthly_discount=0.0, margin_rate=1.0),
        index=split.index,
    )
    holdout_totals = transactions.window_totals(calibration_end, end)
    realised = margins_of(holdout_totals, split.index).to_numpy()
    cuts = (settings.tiers.platinum, settings.tiers.gold, settings.tiers.iron)
    tiers = assign_tiers(predicted, cuts)
    window = {
        "calibration_end": str(calibration_end.date()),
        "start": str((calibration_end + pd.Timedelta(days=1)).date()),
        "end": str(end.date()),
        "days": int((end - calibration_end).days),
        "months_predicted": months,
    }
    log.info(
        "CLV outcomes %s..%s: %d customers, predicted %.0f vs realised %.0f",
        window["start"], window["end"], len(split), predicted.sum(), realised.sum(),
    )  # fmt: skip
    return {
        "version": version,
        "value_basis": value_column,
        "window": window,
        "tiers": tier_rows(predicted.to_numpy(dtype=float), realised, tiers),
        "total": outcome_row("all", predicted.to_numpy(dtype=float), realised),
        "note": NOTE,
    }


def tier_rows(
    predicted: np.ndarray, realised: np.ndarray, tiers: pd.Series
) -> list[dict[str, Any]]:
    """One row per tier, platinum first."""
    from models.tiers import TIERS

    codes = tiers.astype(str).to_numpy()
    return [outcome_row(tier, predicted[codes == tier], realised[codes == tier]) for tier in TIERS]


def outcome_row(name: str, predicted: np.ndarray, realised: np.ndarray) -> dict[str, Any]:
    """Customers, totals, means, realised/predicted ratio and MAE of one group."""
    n = len(predicted)
    total_predicted, total_realised = float(predicted.sum()), float(realised.sum())
    return {
        "tier": name,
        "customers": n,
        "predicted_total": round(total_predicted, 2),
        "realised_total": round(total_realised, 2),
        "mean_predicted": round(total_predicted / n, 2) if n else None,
        "mean_realised": round(total_realised / n, 2) if n else None,
        "ratio": round(total_realised / total_predicted, 3) if total_predicted > 0 else None,
        "mae": round(float(np.mean(np.abs(predicted - realised))), 2) if n else None,
    }
