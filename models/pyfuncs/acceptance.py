"""MLflow models-from-code entry point of the acceptance pyfunc (no pickle)."""

import json
from pathlib import Path
from typing import Any

import mlflow.models
import pandas as pd
from mlflow.pyfunc import PythonModel

from models.acceptance import AcceptanceModel, predict_rows


class AcceptancePyfunc(PythonModel):
    """Rows of offer_id, channel, segment and prior in; p_accept out."""

    def load_context(self, context: Any) -> None:
        """Read the counts from the JSON artifact."""
        payload = json.loads(Path(context.artifacts["acceptance_model"]).read_text())
        self.model = AcceptanceModel.from_dict(payload)

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """P(accept) of each row."""
        frame = pd.DataFrame(model_input).reset_index(drop=True)
        columns = (frame[c] for c in ("offer_id", "channel", "segment", "prior"))
        return pd.DataFrame({"p_accept": predict_rows(self.model, *columns)})


mlflow.models.set_model(AcceptancePyfunc())
