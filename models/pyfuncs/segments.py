"""MLflow models-from-code entry point of the need-segments pyfunc (no pickle)."""

import json
from pathlib import Path
from typing import Any

import mlflow.models
import pandas as pd
from mlflow.pyfunc import PythonModel

from models.segments import NeedSegmenter


class SegmentsPyfunc(PythonModel):
    """Behaviour columns in (missing ones count as missing values); segment_id and name out."""

    def load_context(self, context: Any) -> None:
        """Read the fitted segmenter from the JSON artifact."""
        payload = json.loads(Path(context.artifacts["segments_model"]).read_text())
        self.model = NeedSegmenter.from_dict(payload["model"])

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """Segment id and name of each row."""
        frame = pd.DataFrame(model_input).reset_index(drop=True)
        values = frame.reindex(columns=list(self.model.columns_)).astype(float)
        ids = self.model.predict(values).astype("int64")
        names = [self.model.segment_names_.get(int(i), f"segment {i}") for i in ids]
        return pd.DataFrame({"segment_id": ids, "segment_name": names})


mlflow.models.set_model(SegmentsPyfunc())
