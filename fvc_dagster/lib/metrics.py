"""Binary classification metrics for one fold, and their mean and spread across folds."""

from __future__ import annotations

import numpy as np
import pandas as pd

METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc")
# The `weights` of a model that has no pretrained or random initial weights (the baselines).
NO_WEIGHTS = "-"


def fold_scores(
    y_true: np.ndarray, y_score: np.ndarray, threshold: float = 0.5
) -> dict[str, float]:
    """Metrics of fake (1) vs real (0) from scores in [0, 1]; AUCs are NaN for a one-class fold."""
    from sklearn import metrics as skm

    y_true = np.asarray(y_true).astype(int)
    y_pred = (np.asarray(y_score) >= threshold).astype(int)
    tn, fp, fn, tp = skm.confusion_matrix(y_true, y_pred, labels=[0, 1]).ravel()
    two_classes = len(np.unique(y_true)) == 2
    return {
        "accuracy": skm.accuracy_score(y_true, y_pred),
        "precision": skm.precision_score(y_true, y_pred, zero_division=0),
        "recall": skm.recall_score(y_true, y_pred, zero_division=0),
        "f1": skm.f1_score(y_true, y_pred, zero_division=0),
        "roc_auc": skm.roc_auc_score(y_true, y_score) if two_classes else float("nan"),
        "pr_auc": skm.average_precision_score(y_true, y_score) if two_classes else float("nan"),
        "tn": int(tn),
        "fp": int(fp),
        "fn": int(fn),
        "tp": int(tp),
    }


# A model's held-out prediction for one validation clip of one fold: what `fold_predictions`
# holds and every fold metric is computed from.
PREDICTION_COLUMNS = [
    "model", "weights", "fold", "video_id", "clip_id", "label", "probability", "n_train",
    "mlflow_run_id",
]  # fmt: skip


def prediction_rows(
    model: str,
    fold: str,
    clips: pd.DataFrame,
    probabilities: np.ndarray,
    n_train: int,
    mlflow_run_id: str,
    weights: str = NO_WEIGHTS,
) -> pd.DataFrame:
    """A model's P(fake) for each validation clip of a fold (`clips`: `video_id, clip_id,
    label` in the order of `probabilities`), with what the fold was trained on."""
    if len(clips) != len(probabilities):
        raise ValueError(f"{model} fold {fold}: {len(probabilities)} scores for {len(clips)} clips")
    table = clips[["video_id", "clip_id", "label"]].reset_index(drop=True)
    return table.assign(
        model=model,
        weights=weights,
        fold=fold,
        probability=np.asarray(probabilities, dtype=float),
        n_train=int(n_train),
        mlflow_run_id=mlflow_run_id,
    )[PREDICTION_COLUMNS]


def fold_metrics_of(predictions: pd.DataFrame) -> pd.DataFrame:
    """One row per model, weights and fold: the metrics of its held-out predictions (1 = fake),
    `n_train`, `n_validation` and its MLflow run."""
    rows = []
    for (model, weights, fold), part in predictions.groupby(["model", "weights", "fold"]):
        scores = fold_scores((part["label"] == "fake").to_numpy(int), part["probability"])
        rows.append(
            {"model": model, "fold": fold, **scores, "n_train": int(part["n_train"].iloc[0]),
             "n_validation": len(part), "mlflow_run_id": part["mlflow_run_id"].iloc[0],
             "weights": weights}
        )  # fmt: skip
    return pd.DataFrame(rows)


def scores_markdown(predictions: pd.DataFrame) -> str:
    """A model asset's per-fold metrics as markdown (MLflow run ids left out)."""
    return fold_metrics_of(predictions).drop(columns="mlflow_run_id").to_markdown(index=False)


def compare_models(fold_metrics: pd.DataFrame) -> pd.DataFrame:
    """Mean and std of every metric per model and initial weights (random, pretrained, or
    `NO_WEIGHTS`), best mean ROC-AUC first."""
    keys = ["model", "weights"]
    grouped = fold_metrics.groupby(keys)[list(METRICS)]
    table = grouped.mean().add_suffix("_mean").join(grouped.std(ddof=0).add_suffix("_std"))
    table["folds"] = fold_metrics.groupby(keys)["fold"].nunique()
    ordered = [f"{m}_{s}" for m in METRICS for s in ("mean", "std")]
    return (
        table[["folds", *ordered]]
        .sort_values("roc_auc_mean", ascending=False)
        .reset_index()
        .round(4)
    )


def comparison_markdown(comparison: pd.DataFrame) -> str:
    """A markdown table of mean ± std per model and its initial weights."""
    extra = ["weights"]
    header = "| model | folds | " + " | ".join([*METRICS, *extra]) + " |"
    rule = "|---" * (len(METRICS) + len(extra) + 2) + "|"
    rows = [
        f"| {r.model} | {r.folds} | "
        + " | ".join(
            [
                *(f"{getattr(r, m + '_mean'):.3f} ± {getattr(r, m + '_std'):.3f}" for m in METRICS),
                *(str(getattr(r, c)) for c in extra),
            ]
        )
        + " |"
        for r in comparison.itertuples()
    ]
    return "\n".join([header, rule, *rows])
