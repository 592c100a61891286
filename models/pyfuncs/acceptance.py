"""MLflow models-from-code entry point of the acceptance pyfunc (no pickle)."""

import json
from pathlib import Path
from typing import Any

import mlflow.models
import pandas as pd
from mlflow.pyfunc import PythonModel

from models.acceptance import AcceptanceModel, predict_rows


class AcceptancePyfunc(PythonModel):
    """Rows of offer_id, channel, segment, prior and features (the customer's row as JSON, or
    empty) in; p_accept out."""

    def load_context(self, context: Any) -> None:
        """Read the counts from the JSON artifact."""
        payload = json.loads(Path(context.artifacts["acceptance_model"]).read_text())
        self.model = AcceptanceModel.from_dict(payload)

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """P(accept) of each row."""
        frame = pd.DataFrame(model_input).reset_index(drop=True)
        offers, channels, segments, priors = (
            frame[c] for c in ("offer_id", "channel", "segment", "prior")
        )
        texts = frame["features"] if "features" in frame else [""] * len(frame)
        features = [json.loads(t) if isinstance(t, str) and t else None for t in texts]
        return pd.DataFrame(
            {"p_accept": predict_rows(self.model, offers, channels, segments, priors, features)}
        )


mlflow.models.set_model(AcceptancePyfunc())
