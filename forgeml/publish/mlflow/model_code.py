"""The file MLflow runs to load a forgeml pyfunc model (MLflow's "models from code"): it names the
wrapper class, so nothing is pickled into the model."""

import mlflow

from forgeml.publish.mlflow.pyfunc import ArtifactModel

mlflow.models.set_model(ArtifactModel())
