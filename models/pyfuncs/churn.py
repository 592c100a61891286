"""MLflow models-from-code entry point of the churn pyfunc (no pickle)."""

import mlflow.models

from models.churn import ChurnPyfunc

mlflow.models.set_model(ChurnPyfunc())
