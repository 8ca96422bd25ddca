"""The file MLflow logs as the detector's python model (models from code: nothing pickled)."""

import mlflow.pyfunc
import pandas as pd
from mlflow.models import set_model

from fvc_dagster.lib.serving.detector import Detector


class DetectorModel(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper of a saved `Detector` (artifact `detector`)."""

    def load_context(self, context) -> None:
        self.detector = Detector.load(context.artifacts["detector"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        if "path" not in model_input:
            raise ValueError("the input needs a `path` column of video files")
        return self.detector.score_paths(model_input["path"].astype(str))


set_model(DetectorModel())
