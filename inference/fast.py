"""Batch scoring with the champions, fast: exact model answers on chunks of plain columns.

`inference.reference` scores through the pyfuncs on frames built by Feast and pandas (the
reference path, and what segments training uses). Here the same champions score what
`features.latest` and `inference.transactions` read straight from Parquet: the churn model's
boosters and calibrator (`ChurnModel.predict_proba`, what the churn pyfunc returns), the
segmenter and the CLV model behind their pyfuncs' `predict`, called without MLflow's
per-call schema handling. Inputs are typed exactly as the pyfuncs' signatures state
(`inference.reference.schema_inputs`), so the numbers equal the reference path's.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from features.catalog import View
from inference.champions import LoadedModel
from inference.reference import registered_model, schema_inputs
from inference.transactions import CHANNEL_PREFIX, CHANNEL_SUFFIX, TransactionAggregates
from loyal.settings import Settings

log = logging.getLogger(__name__)

CHURN_SERVICE = "churn_v1"
SEGMENTS_SERVICE = "segments_v1"
CLV_CHUNK_ROWS = 100_000
"""Customers per CLV call: its monthly forecast holds a (rows x horizon) matrix."""


def input_names(loaded: LoadedModel | None, own: Iterable[str] = ()) -> list[str]:
    """The columns a pyfunc reads: its signature's inputs, plus the model's own list."""
    if loaded is None:
        return []
    schema = loaded.obj.metadata.get_input_schema()
    names = list(schema.input_names()) if schema is not None else []
    return list(dict.fromkeys([*names, *(str(c) for c in own)]))


def service_columns(
    views: Mapping[str, View], service_views: Iterable[str], wanted: Iterable[str]
) -> dict[str, list[str]]:
    """view -> the wanted columns it holds, among a feature service's views (as Feast joins)."""
    wanted = set(wanted)
    out: dict[str, list[str]] = {}
    for name in service_views:
        if name in views:
            hits = [f for f in views[name].feature_names if f in wanted]
            if hits:
                out[name] = hits
    return out


def merge_columns(*parts: Mapping[str, list[str]]) -> dict[str, list[str]]:
    """Union of view -> columns mappings, each view's columns in first-seen order."""
    merged: dict[str, list[str]] = {}
    for part in parts:
        for view, columns in part.items():
            merged[view] = list(dict.fromkeys([*merged.get(view, []), *columns]))
    return merged


# ---------------------------------------------------------------------------------- models
@dataclass
class BatchModels:
    """The models batch scoring uses (None where nothing suitable is registered).

    Attributes:
        clv: the `clv` champion, else its latest version.
        segments: the `segments` champion, else its latest version.
        churn: the `churn` champion only (no fallback: an unpromoted churn model is not used).
    """

    clv: LoadedModel | None
    segments: LoadedModel | None
    churn: LoadedModel | None

    @classmethod
    def load(cls, settings: Settings) -> BatchModels:
        """Load the registered models from MLflow."""
        models = cls(
            clv=registered_model(settings, "clv"),
            segments=registered_model(settings, "segments"),
            churn=registered_model(settings, "churn", champion_only=True),
        )
        if models.clv is None:
            log.warning("no 'clv' model registered: tiers rank by trailing 12-month margin")
        if models.segments is None:
            log.warning("no 'segments' model registered: segment_id -1 for everyone")
        if models.churn is None:
            log.warning("no churn champion: churn_probability left empty in the scores")
        return models

    @property
    def labels(self) -> dict[str, str]:
        """Model name -> e.g. ``clv v3 (champion)``, for the models loaded."""
        return {m.name: m.label for m in (self.clv, self.segments, self.churn) if m is not None}

    @property
    def empty(self) -> bool:
        """No model at all: nothing to score with."""
        return self.clv is None and self.segments is None and self.churn is None

    def churn_inputs(self) -> list[str]:
        """Feature columns the churn champion reads."""
        model = self._churn_model()
        own = [str(c) for c in model.feature_names_in_] if model is not None else []
        return input_names(self.churn, own)

    def segment_inputs(self) -> list[str]:
        """Behaviour columns the segmenter reads (features and channel shares)."""
        if self.segments is None:
            return []
        wrapper = self.segments.obj.unwrap_python_model()
        return input_names(self.segments, [str(c) for c in wrapper.model.columns_])

    def feature_columns(self, views: Mapping[str, View]) -> dict[str, list[str]]:
        """view -> the columns churn and segments read, each through its feature service."""
        from features.feature_repo.services import SERVICE_VIEWS

        churn = service_columns(views, SERVICE_VIEWS[CHURN_SERVICE], self.churn_inputs())
        segments = service_columns(views, SERVICE_VIEWS[SEGMENTS_SERVICE], self.segment_inputs())
        return merge_columns(churn, segments)

    def _churn_model(self) -> Any:
        if self.churn is None:
            return None
        return getattr(self.churn.obj.unwrap_python_model(), "model", None)


# ------------------------------------------------------------------------------------ value
@dataclass(frozen=True)
class ValueScores:
    """Value scores of the whole population, aligned with it (NaN where unknown).

    Attributes:
        clv: lifetime value.
        p_alive: P(alive).
        expected_purchases_12m: expected purchase periods in 12 months.
        tier_value: CLV, else the trailing 365-day margin: what ranks tiers.
    """

    clv: NDArray[np.float64]
    p_alive: NDArray[np.float64]
    expected_purchases_12m: NDArray[np.float64]
    tier_value: NDArray[np.float64]


def clv_config(loaded: LoadedModel) -> tuple[str, float]:
    """(purchase period, days per time unit) the CLV champion was fitted with."""
    from models.clv import FULL_FIT

    wrapper = loaded.obj.unwrap_python_model()
    model = wrapper.models[FULL_FIT]
    return getattr(wrapper, "settings", {}).get("period", "D"), float(model.time_unit_days)


def value_scores(
    models: BatchModels,
    aggregates: TransactionAggregates,
    end: pd.Timestamp,
    chunk_rows: int = CLV_CHUNK_ROWS,
) -> ValueScores:
    """CLV, P(alive) and 12-month purchases of every customer with a purchase by `end`.

    The same numbers as `inference.reference.value_scores`: the RFM summary of the whole log up
    to `end` (here from the streaming pass) through the CLV champion's full-history fit.
    """
    n = len(aggregates.periods.purchases)
    clv, p_alive, expected = (np.full(n, np.nan) for _ in range(3))
    if models.clv is not None:
        from models.clv import DAYS_PER_MONTH, FULL_FIT

        _, unit = clv_config(models.clv)
        summary = aggregates.summary(end, unit)
        wrapper = models.clv.obj.unwrap_python_model()
        params = {"model": FULL_FIT, "forecast_units": 12 * DAYS_PER_MONTH / unit}
        for start in range(0, len(summary), chunk_rows):
            part = summary.iloc[start : start + chunk_rows]
            output = wrapper.predict(None, schema_inputs(models.clv.obj, part), params)
            where = part.index.to_numpy()
            clv[where] = np.asarray(output["clv"], dtype=float)
            p_alive[where] = np.asarray(output["p_alive"], dtype=float)
            expected[where] = np.asarray(output["expected_purchases"], dtype=float)
    tier_value = np.where(np.isnan(clv), aggregates.trailing, clv)
    log.info(
        "value: CLV for %d of %d customers (%s), trailing margin for the rest",
        int((~np.isnan(clv)).sum()), n,
        "no model" if models.clv is None else models.clv.label,
    )  # fmt: skip
    return ValueScores(clv, p_alive, expected, tier_value)


# --------------------------------------------------------------------------------- per chunk
def with_channel_mix(
    frame: pd.DataFrame, shares: Mapping[str, NDArray[np.float64]]
) -> pd.DataFrame:
    """A chunk's frame with its channel-share columns added (NaN without a transaction)."""
    extra = pd.DataFrame(dict(shares), index=frame.index)
    return pd.concat([frame, extra], axis=1) if len(extra.columns) else frame


def segment_chunk(
    models: BatchModels, frame: pd.DataFrame
) -> tuple[NDArray[np.int64], dict[int, str]]:
    """Segment id of each row of a behaviour chunk, and the name of every id present.

    The segmenter's own `predict` on the columns the pyfunc would pass it (its signature's
    inputs, reindexed to the model's columns), with the pyfunc's names; -1 and "" without a
    model.
    """
    if models.segments is None:
        return np.full(len(frame), -1, dtype=np.int64), {-1: ""}
    wanted = set(models.segment_inputs())
    behaviour = frame[[c for c in frame.columns if c in wanted]].copy()
    for column in behaviour.columns:
        if pd.api.types.is_bool_dtype(behaviour[column]):
            behaviour[column] = behaviour[column].astype(float)
    inputs = schema_inputs(models.segments.obj, behaviour)
    wrapper = models.segments.obj.unwrap_python_model()
    model = getattr(wrapper, "model", None)
    if model is None or not hasattr(model, "segment_names_"):
        output = wrapper.predict(None, inputs)
        ids = np.asarray(output["segment_id"], dtype=np.int64)
        return ids, dict(zip(ids.tolist(), output["segment_name"].astype(str), strict=True))
    ids = np.asarray(
        model.predict(inputs.reindex(columns=list(model.columns_)).astype(float)), dtype=np.int64
    )
    names = {int(i): str(model.segment_names_.get(int(i), f"segment {i}")) for i in np.unique(ids)}
    return ids, names


class ChurnScorer:
    """Calibrated churn probabilities of feature chunks from the churn champion's boosters.

    A champion that cannot score these columns (trained on other inputs) leaves churn empty
    with one warning instead of blocking the scores, as the reference path does.
    """

    def __init__(self, models: BatchModels) -> None:
        self.loaded = models.churn
        self.model = models._churn_model()
        self.failed = self.model is None

    def __call__(self, frame: pd.DataFrame) -> NDArray[np.float64]:
        empty = np.full(len(frame), np.nan)
        if self.failed or self.loaded is None:
            return empty
        try:
            inputs = schema_inputs(self.loaded.obj, frame)
            return np.asarray(self.model.predict_proba(inputs)[:, 1], dtype=float)
        except Exception as exc:  # a champion trained on other inputs must not block the scores
            log.warning("%s could not score the feature rows (%s): churn left empty",
                        self.loaded.label, exc)  # fmt: skip
            self.failed = True
            return empty


def channel_columns(names: Iterable[str]) -> list[str]:
    """The channel-share columns among input names."""
    return [c for c in names if c.startswith(CHANNEL_PREFIX) and c.endswith(CHANNEL_SUFFIX)]
