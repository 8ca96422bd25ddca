"""What one fold's training run records in MLflow."""

from __future__ import annotations

import math

import mlflow
import mlflow.sklearn
import skops.io
from mlflow.models import infer_signature

from fvc_dagster.lib.training import FoldData, FoldResult


def log_fold_run(result: FoldResult, model: str, fold: str, data: FoldData) -> None:
    """Params, metrics and the fitted pipeline (as an MLflow sklearn model) of the active run."""
    classifier = result.pipeline.named_steps["classify"]
    mlflow.log_params(
        {
            "model": model,
            "fold": fold,
            "n_train_clips": result.n_train,
            "n_validation_clips": result.n_validation,
            "features_in": len(data.feature_names),
            "features_kept": ",".join(result.kept_features),
            **{f"clf_{k}": v for k, v in classifier.get_params().items() if _loggable(v)},
        }
    )
    mlflow.log_metrics({k: float(v) for k, v in result.scores.items() if not math.isnan(float(v))})
    x_val, _ = data.xy(data.validation.head(5))
    mlflow.sklearn.log_model(
        result.pipeline,
        name="model",
        signature=infer_signature(x_val, result.pipeline.predict_proba(x_val)[:, 1]),
        pip_requirements=["scikit-learn", "xgboost"],
        # skops refuses types it does not know; these are the ones this pipeline was built from.
        skops_trusted_types=skops.io.get_untrusted_types(data=skops.io.dumps(result.pipeline)),
    )


def _loggable(value) -> bool:
    return isinstance(value, (int, float, str, bool)) and len(str(value)) < 250
