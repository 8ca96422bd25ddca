"""The file MLflow logs as the detector's python model (models from code: nothing pickled)."""

import mlflow.pyfunc
import pandas as pd
from mlflow.models import set_model

from fvc_dagster.lib.serving.detector import Detector
from fvc_dagster.lib.serving.requests import score_request, serving_root


class DetectorModel(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper of a saved `Detector` (artifact `detector`): it scores the video bytes
    or the files under `$FVC_SERVING_ROOT` a request names (`lib.serving.requests`)."""

    def load_context(self, context) -> None:
        self.detector = Detector.load(context.artifacts["detector"])
        self.root = serving_root()

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return score_request(self.detector, model_input, self.root)


set_model(DetectorModel())
