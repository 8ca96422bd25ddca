"""What a Celery worker of the scale-out profile loads when it starts
(`dagster-celery worker start ... -i fvc_dagster.worker_preload`): the code location and
the libraries its steps import on first use (scikit-learn, XGBoost, MLflow, skops, matplotlib).

Celery imports it in the worker's main process before forking the pool, so the pool's
processes share it and no step pays for it (measured here: the first baseline step of each
worker took about 20 s more without it). A module that cannot be imported is reported, not
fatal: the step that needs it imports it then (and fails there if it must).
"""

import importlib
import logging

import fvc_dagster.definitions  # noqa: F401  (the code location the steps run)

# The step code's lazily imported modules (the library modules themselves import the heavy
# packages): model fitting and tracking, figures, training data.
PRELOAD = (
    "fvc_dagster.lib.models.baselines",
    "fvc_dagster.lib.training.fold_data",
    "fvc_dagster.lib.training.tracking",
    "fvc_dagster.lib.evaluation.figures",
    "fvc_dagster.lib.evaluation.metrics",
    "mlflow.sklearn",
    "mlflow.xgboost",
    "xgboost",
)


def preload(names: tuple[str, ...] = PRELOAD) -> list[str]:
    """Import `names`; returns those that failed (each logged)."""
    failed = []
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:  # a preload only saves time: never stop the worker
            logging.getLogger(__name__).warning("worker preload: %s: %s", name, exc)
            failed.append(name)
    return failed


preload()
