"""MLflow models-from-code entry point of the CLV pyfunc (no pickle)."""

import json
from pathlib import Path
from typing import Any

import mlflow.models
import pandas as pd
from mlflow.pyfunc import PythonModel

from models.clv import ClvModel


class ClvPyfunc(PythonModel):
    """RFM summary rows in; p_alive, expected_purchases, expected_avg_spend and clv out.

    Params: `model` ("full": fitted on the whole history, for scoring; "holdout": fitted on
    the calibration window only, for re-scoring the holdout) and `forecast_units` (time units
    over which `expected_purchases` is forecast; 0 means the CLV horizon).
    """

    def load_context(self, context: Any) -> None:
        """Read the fitted models and their economics from the JSON artifact."""
        payload = json.loads(Path(context.artifacts["clv_model"]).read_text())
        self.models = {k: ClvModel.from_dict(v) for k, v in payload["models"].items()}
        self.economics = payload["economics"]
        self.settings = payload.get("settings", {})

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """Scores of the summary rows with the fit `params["model"]` names."""
        params = params or {}
        model = self.models[str(params.get("model", "full"))]
        frame = pd.DataFrame(model_input).reset_index(drop=True)
        scores = model.predict(frame, **self.economics)
        units = float(params.get("forecast_units", 0.0))
        if units > 0:
            scores["expected_purchases"] = model.expected_purchases(frame, units)
        return scores


mlflow.models.set_model(ClvPyfunc())
