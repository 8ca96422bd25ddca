"""The detector as an MLflow pyfunc model in the Model Registry: `fvc-detector@champion`.

Its input is a DataFrame, one video a row: its bytes in base64 (`video`, with an optional
`name`) or a `path` under `$FVC_SERVING_ROOT` (`lib/serving/requests.py`); its output one row
per video with `path` (or name), `probability_fake`, `label`, `novelty` (the distance of its
features from the training videos'), `out_of_distribution` (beyond the calibrated threshold) and
`error` (the one-line reason it could not be scored). It carries this package's code
(`code_paths`), so `mlflow.pyfunc.load_model` and `mlflow models predict/serve --env-manager
local` run the pipeline's library in any process that has the requirements installed; nothing
there imports Dagster. The pyfunc class (`DetectorModel`) is in `lib/serving/pyfunc_model.py`,
the file logged as the model; MLflow is imported where used here, so loading the code location
does not import it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from fvc_dagster.lib.serving.detector import Detector

if TYPE_CHECKING:
    from mlflow import MlflowClient

REGISTERED_MODEL = "fvc-detector"
ALIAS = "champion"
# What scoring imports, pinned to the versions the detector was built with.
REQUIREMENTS = (
    "numpy", "pandas", "scipy", "scikit-learn", "xgboost", "skops", "safetensors", "av",
    "opencv-python-headless", "threadpoolctl", "torch", "torchvision", "pytorchvideo",
)  # fmt: skip
PACKAGE_DIR = Path(__file__).resolve().parents[2]


def requirements() -> list[str]:
    return [f"{name}=={metadata.version(name)}" for name in REQUIREMENTS]


class RegistryUnavailable(RuntimeError):
    """The MLflow model registry could not be asked (unreachable, failing): not "no champion"."""


# What the registry answers for a model that does not exist and for an alias no version holds.
NOT_REGISTERED = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")


def champion_version(client: MlflowClient, name: str = REGISTERED_MODEL):
    """The model version holding the alias `champion`, or None when the registry says there is
    none; `RegistryUnavailable` when it cannot say (so nothing is registered a second time)."""
    import mlflow

    try:
        return client.get_model_version_by_alias(name, ALIAS)
    except mlflow.exceptions.MlflowException as exc:
        if exc.error_code in NOT_REGISTERED:
            return None
        raise RegistryUnavailable(
            f"the MLflow registry at {client._registry_uri} did not answer whether {name!r} "
            f"has a {ALIAS!r} ({exc.error_code}): {exc.message}"
        ) from exc


def same_lineage(version, tags: dict[str, str], keys: Iterable[str]) -> bool:
    """Whether a registered model version carries the same `keys` of `tags`."""
    return version is not None and all(version.tags.get(k) == tags[k] for k in keys)


def register_detector(
    detector: Detector, tags: dict[str, str], name: str = REGISTERED_MODEL
) -> str:
    """Log `detector` as a pyfunc model in the active MLflow run, register it as a new version
    of `name` carrying `tags`, move the alias `champion` to it, and return the version."""
    import mlflow.pyfunc
    from mlflow import MlflowClient
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    # One video a row: its bytes (`video`, base64, and a `name`) or a `path` under the
    # serving root (`lib.serving.requests`).
    inputs = Schema([ColSpec("string", column, required=False)
                     for column in ("video", "name", "path")])  # fmt: skip
    outputs = Schema([ColSpec("string", "path"), ColSpec("double", "probability_fake"),
                      ColSpec("string", "label"), ColSpec("double", "novelty"),
                      ColSpec("boolean", "out_of_distribution"),
                      ColSpec("string", "error")])  # fmt: skip
    example = pd.DataFrame({"path": ["video.mp4"]})
    with tempfile.TemporaryDirectory() as tmp:
        folder = detector.save(Path(tmp) / "detector")
        mlflow.log_params(_loggable(detector.description()))
        info = mlflow.pyfunc.log_model(
            name="detector",
            python_model=str(PACKAGE_DIR / "lib" / "serving" / "pyfunc_model.py"),
            artifacts={"detector": str(folder)},
            code_paths=[str(PACKAGE_DIR)],
            pip_requirements=requirements(),
            signature=ModelSignature(inputs, outputs),
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
    """The registered champion of the registry at `tracking_uri` as a pyfunc model, and its
    version (MLflow's tracking URI is set for the load only)."""
    import mlflow.pyfunc
    from mlflow import MlflowClient

    version = champion_version(MlflowClient(tracking_uri), name)
    if version is None:
        raise LookupError(
            f"no model version of {name!r} has the alias {ALIAS!r} at {tracking_uri}: "
            "materialize champion_model (make demo does)"
        )
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(tracking_uri)
    try:
        return mlflow.pyfunc.load_model(f"models:/{name}@{ALIAS}"), version
    finally:
        mlflow.set_tracking_uri(previous)
