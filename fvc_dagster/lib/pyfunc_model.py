"""The file MLflow logs as the detector's python model (models from code: nothing pickled)."""

from mlflow.models import set_model

from fvc_dagster.lib.serving import DetectorModel

set_model(DetectorModel())
