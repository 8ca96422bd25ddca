"""What one fold's training run records in MLflow: a baseline's, a network's, or an
XGBoost's on clip embeddings."""

from __future__ import annotations

import math
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
import mlflow.sklearn
import pandas as pd
from mlflow.models import infer_signature

from fvc_dagster.lib.models.baselines import SKOPS_TRUSTED_TYPES
from fvc_dagster.lib.training.ensemble import StackedFold
from fvc_dagster.lib.training.fold_data import FoldData
from fvc_dagster.lib.training.tabular import FoldResult

if TYPE_CHECKING:
    from torch import nn

    from fvc_dagster.lib.training.embeddings import EmbeddingFit, EmbeddingFold
    from fvc_dagster.lib.training.networks import FoldClips, NetworkPlan
    from fvc_dagster.lib.training.trainer import TrainResult


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
    log_fit_videos(result.record)
    x_val, _ = data.xy(data.validation.head(5))
    mlflow.sklearn.log_model(
        result.pipeline,
        name="model",
        serialization_format="skops",  # MLflow's local default, not pickle on any tracking URI
        signature=infer_signature(x_val, result.pipeline.predict_proba(x_val)[:, 1]),
        pip_requirements=["scikit-learn", "xgboost"],
        # skops refuses types it does not know: trust the baselines' own, fixed in code.
        skops_trusted_types=list(SKOPS_TRUSTED_TYPES),
    )


def log_stacking_run(stacked: StackedFold) -> None:
    """The active run's record of one fold's stacking: the base learners, their out-of-fold
    ROC-AUC inside the training folds, the weights of those stacked, the videos its fits used,
    and its scores on the fold."""
    from fvc_dagster.lib.evaluation.metrics import fold_scores

    mlflow.log_params(
        {"model": "ensemble", "fold": stacked.fold, "base_models": ",".join(stacked.inner_roc_auc),
         "stacked_models": ",".join(stacked.weights),
         "n_train_videos": len(stacked.record["train"])}
    )  # fmt: skip
    mlflow.log_metrics(
        {**{f"inner_roc_auc_{m}": v for m, v in stacked.inner_roc_auc.items() if math.isfinite(v)},
         **{f"weight_{m}": w for m, w in stacked.weights.items()}}
    )  # fmt: skip
    y = (stacked.predictions["label"] == "fake").to_numpy(int)
    scores = fold_scores(y, stacked.predictions["probability"].to_numpy())
    mlflow.log_metrics({k: float(v) for k, v in scores.items() if math.isfinite(float(v))})
    log_fit_videos(stacked.record)


FIT_VIDEOS = "fit_videos.json"


def log_fit_videos(record: dict[str, list[str]]) -> None:
    """The active run's record of the videos its fit used, by role
    (`lib.training.fold_data.fit_record`), as the artifact `fit_videos.json`: what the blindness
    checks read."""
    mlflow.log_dict(record, FIT_VIDEOS)


def log_figure(fig, name: str) -> None:
    """A matplotlib figure into the active run as `<name>.png` (the figure stays open)."""
    mlflow.log_figure(fig, f"{name}.png")


def log_fold_figure(rows: pd.DataFrame) -> None:
    """The active run's figure of one model fold (ROC curve and confusion matrix) from its
    prediction rows, as `fold_figure.png`."""
    import matplotlib.pyplot as plt

    from fvc_dagster.lib.evaluation.figures import fold_figure

    first = rows.iloc[0]
    fig = fold_figure(rows, f"{first['model']} fold {first['fold']}")
    log_figure(fig, "fold_figure")
    plt.close(fig)


def _loggable(value) -> bool:
    return isinstance(value, (int, float, str, bool)) and len(str(value)) < 250


# What each epoch of a network's fold run records, with step=epoch.
EPOCH_METRICS = (
    "train_loss",
    "val_loss",
    "val_roc_auc",
    "data_wait_share",
    "seconds",
    "skipped_steps",
)


def log_network_params(plan: NetworkPlan, fold: str, checkpoint: Path, clips: FoldClips) -> None:
    """The active run's params: the plan (model, weights, clip size, epoch choice, source,
    training windows, augmentations (comma-separated), trainer config), fold, clip counts and
    the checkpoint directory."""
    mlflow.log_params(
        {
            "model": plan.model,
            "fold": fold,
            "weights": plan.weights,
            "weights_file": plan.weights_file,
            "frames": plan.frames,
            "pixels": plan.pixels,
            "epoch_choice": plan.epoch_choice,
            "source": plan.source,
            "train_windows": plan.train_windows,
            "augmentations": ",".join(plan.augmentations),
            **asdict(plan.train),
            "n_train_clips": len(clips.train),
            "n_selection_clips": len(clips.selection_rows),
            "n_validation_clips": len(clips.held_out),
            "checkpoint_dir": str(checkpoint),
        }
    )
    log_fit_videos(clips.record)


def log_epoch(epoch: int, metrics: dict[str, float]) -> None:
    """One epoch's metrics of the active run, at step `epoch`."""
    logged = {k: float(metrics[k]) for k in EPOCH_METRICS}
    mlflow.log_metrics({k: v for k, v in logged.items() if math.isfinite(v)}, step=epoch)


# The artifact folder of a fold run's network (`lib.models.network_files`).
NETWORK_ARTIFACT = "model"


def log_network_result(
    result: TrainResult, model: nn.Module, plan: NetworkPlan, scores: dict[str, float]
) -> None:
    """The epochs this run resumed past, the validation scores of the best epoch, and the best
    model as the artifact folder `model`: the registry name, its build options and the weights
    as safetensors, no pickle."""
    from fvc_dagster.lib.models import get_spec
    from fvc_dagster.lib.models.network_files import save_network
    from fvc_dagster.lib.training.clip_data import model_options

    for metrics in result.history[: result.resumed_from_epoch]:
        log_epoch(metrics["epoch"], metrics)
    mlflow.log_params({"resumed_from_epoch": result.resumed_from_epoch})
    finite = {k: float(v) for k, v in scores.items() if math.isfinite(float(v))}
    mlflow.log_metrics({**finite, "best_epoch": result.best_epoch})
    options = model_options(get_spec(plan.model).input, plan.pixels)
    with tempfile.TemporaryDirectory() as tmp:
        folder = save_network(model.cpu().eval(), plan.model, options, Path(tmp) / "model")
        mlflow.log_artifacts(str(folder), NETWORK_ARTIFACT)


def load_logged_network(run_id: str) -> nn.Module:
    """The network a fold run logged (`log_network_result`), rebuilt from its registry row and
    weights, in eval mode on the CPU."""
    from fvc_dagster.lib.models.network_files import load_network

    with tempfile.TemporaryDirectory() as tmp:
        folder = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=NETWORK_ARTIFACT, dst_path=tmp
        )
        return load_network(Path(folder))


def log_embedding_fold(
    fit: EmbeddingFit, fold: EmbeddingFold, params: dict[str, str | int]
) -> None:
    """The active run's params (`params`: model, fold, backbone and how its embeddings were
    made; with the clip counts, the embedding width and the classifier's) and the fold's
    scores."""
    mlflow.log_params(
        {
            **params,
            "n_train_clips": len(fold.train),
            "n_validation_clips": len(fold.validation),
            "embedding_dim": fit.classifier.n_features_in_,
            **{f"clf_{k}": v for k, v in fit.classifier.get_params().items() if _loggable(v)},
        }
    )
    mlflow.log_metrics({k: float(v) for k, v in fit.scores.items() if math.isfinite(float(v))})
    log_fit_videos(fit.record)
