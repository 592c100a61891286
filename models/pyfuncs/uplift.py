"""MLflow models-from-code entry point of the uplift pyfunc (no pickle), and its loader."""

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import mlflow.models
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from models.encoding import category_codes, encode_row
from models.uplift import FittedUplift

ARTIFACT = "uplift_model"


@dataclass(frozen=True)
class UpliftScorer:
    """A fitted uplift model with the feature columns and text vocabularies it was trained on."""

    model: FittedUplift
    columns: list[str]
    vocabulary: dict[str, list[str]]

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> "UpliftScorer":
        """Read the JSON payload written by `training.uplift`."""
        return cls(
            FittedUplift.from_state(payload["model"]),
            list(payload["columns"]),
            {k: list(v) for k, v in payload["vocabulary"].items()},
        )

    def matrix(self, frame: pd.DataFrame) -> np.ndarray:
        """The model's input matrix: its columns in order, text as codes (NaN: unknown)."""
        out = np.full((len(frame), len(self.columns)), np.nan)
        for j, column in enumerate(self.columns):
            if column not in frame.columns:
                continue
            if column in self.vocabulary:
                values = frame[column].astype("string")
                codes = pd.Categorical(values, categories=self.vocabulary[column]).codes
                out[:, j] = np.where(codes < 0, np.nan, codes)
            else:
                out[:, j] = pd.to_numeric(frame[column], errors="coerce").astype(float)
        return out

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """How much a retention contact raises each customer's chance of staying."""
        return self.model.predict(self.matrix(pd.DataFrame(frame).reset_index(drop=True)))

    def row(self, features: Mapping[str, Any]) -> np.ndarray:
        """One customer's input row from a feature mapping, as `matrix` reads a frame's row."""
        return encode_row(features, self.columns, self._codes)

    @cached_property
    def _codes(self) -> dict[str, dict[str, float]]:
        return category_codes(self.vocabulary)

    def scores(self, customer_id: str, features: Mapping[str, Any]) -> dict[str, float]:
        """The serving path (`serving.runtime`): `{"uplift": estimate}` for one customer."""
        estimate = float(self.model.predict(self.row(features))[0])
        return {"uplift": estimate} if np.isfinite(estimate) else {}


def load(artifact: Any) -> UpliftScorer:
    """The champion loader: the JSON artifact as an `UpliftScorer`."""
    path = Path(artifact.artifact(ARTIFACT))
    return UpliftScorer.from_payload(json.loads(path.read_text(encoding="utf-8")))


class UpliftPyfunc(PythonModel):
    """Features in (the churn feature service's columns); `uplift` out."""

    def load_context(self, context: Any) -> None:
        """Read the fitted model from the JSON artifact."""
        payload = json.loads(Path(context.artifacts[ARTIFACT]).read_text(encoding="utf-8"))
        self.scorer = UpliftScorer.from_payload(payload)

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """Predicted uplift of each row."""
        return pd.DataFrame({"uplift": self.scorer.predict(pd.DataFrame(model_input))})


mlflow.models.set_model(UpliftPyfunc())
