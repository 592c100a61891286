"""MLflow models-from-code entry point of the cross_sell pyfunc (no pickle)."""

import mlflow.models

from models.recommender import CrossSellPyfunc

mlflow.models.set_model(CrossSellPyfunc())
