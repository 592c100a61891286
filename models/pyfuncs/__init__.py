"""MLflow models-from-code entry points, one real module per model (no pickle, no code strings).

Each module defines or imports its model's `PythonModel` and calls `mlflow.models.set_model`;
MLflow runs it when it loads the model. Training logs a module by name
(`training.tracking.log_pyfunc`); nothing else imports these modules.
"""
