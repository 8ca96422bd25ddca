"""The detector as an MLflow pyfunc model in the Model Registry: `fvc-detector@champion`.

Its input is a DataFrame with a `path` column of video files; its output one row per path with
`probability_fake`, `label` and `error` (the one-line reason a file could not be scored). It
carries this package's code (`code_paths`), so `mlflow.pyfunc.load_model` and
`mlflow models predict/serve --env-manager local` run the pipeline's library in any process
that has the requirements installed; nothing there imports Dagster.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import pandas as pd
from mlflow import MlflowClient
from mlflow.models import infer_signature

from fvc_dagster.lib.scoring import Detector

REGISTERED_MODEL = "fvc-detector"
ALIAS = "champion"
# What scoring imports, pinned to the versions the detector was built with.
REQUIREMENTS = (
    "numpy", "pandas", "scipy", "scikit-learn", "xgboost", "skops", "av",
    "opencv-python-headless", "threadpoolctl", "torch", "torchvision", "pytorchvideo",
)  # fmt: skip
PACKAGE_DIR = Path(__file__).resolve().parents[1]


class DetectorModel(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper of a saved `Detector` (artifact `detector`)."""

    def load_context(self, context) -> None:
        self.detector = Detector.load(context.artifacts["detector"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        if "path" not in model_input:
            raise ValueError("the input needs a `path` column of video files")
        return self.detector.score_paths(model_input["path"].astype(str))


def requirements() -> list[str]:
    return [f"{name}=={metadata.version(name)}" for name in REQUIREMENTS]


def champion_version(client: MlflowClient, name: str = REGISTERED_MODEL):
    """The model version holding the alias `champion`, or None."""
    try:
        return client.get_model_version_by_alias(name, ALIAS)
    except mlflow.exceptions.MlflowException:
        return None


def same_lineage(version, tags: dict[str, str], keys: Iterable[str]) -> bool:
    """Whether a registered model version carries the same `keys` of `tags`."""
    return version is not None and all(version.tags.get(k) == tags[k] for k in keys)


def register_detector(
    detector: Detector, tags: dict[str, str], name: str = REGISTERED_MODEL
) -> str:
    """Log `detector` as a pyfunc model in the active MLflow run, register it as a new version
    of `name` carrying `tags`, move the alias `champion` to it, and return the version."""
    example = pd.DataFrame({"path": ["video.mp4"]})
    output = pd.DataFrame(
        {"path": ["video.mp4"], "probability_fake": [0.5], "label": ["fake"], "error": [""]}
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = detector.save(Path(tmp) / "detector")
        mlflow.log_params(_loggable(detector.description()))
        info = mlflow.pyfunc.log_model(
            name="detector",
            python_model=str(PACKAGE_DIR / "lib" / "pyfunc_model.py"),
            artifacts={"detector": str(folder)},
            code_paths=[str(PACKAGE_DIR)],
            pip_requirements=requirements(),
            signature=infer_signature(example, output),
            input_example=example,
            registered_model_name=name,
        )
    client = MlflowClient()
    version = str(info.registered_model_version)
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    client.set_registered_model_alias(name, ALIAS, version)
    return version


def _loggable(description: dict[str, Any]) -> dict[str, str]:
    return {k: str(v)[:250] for k, v in description.items()}


def local_tracking_uri(root: Path) -> str:
    """The MLflow tracking (and registry) URI of a data root: its SQLite file."""
    return f"sqlite:///{Path(root).resolve() / 'mlflow.db'}"


def load_champion(tracking_uri: str, name: str = REGISTERED_MODEL):
    """The registered champion as a pyfunc model and its version."""
    mlflow.set_tracking_uri(tracking_uri)
    version = champion_version(MlflowClient(), name)
    if version is None:
        raise LookupError(
            f"no model version of {name!r} has the alias {ALIAS!r} at {tracking_uri}: "
            "materialize champion_model (make demo does)"
        )
    return mlflow.pyfunc.load_model(f"models:/{name}@{ALIAS}"), version
