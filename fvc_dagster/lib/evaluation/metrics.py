"""Binary classification metrics for one fold, their mean and spread across folds, and the
uncertainty of each model's pooled held-out ROC-AUC."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fvc_dagster.lib.evaluation.uncertainty import score_uncertainty

METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc")
# What `compare_models` adds from the pooled held-out predictions (`lib.evaluation.uncertainty`).
UNCERTAINTY_COLUMNS = [
    "roc_auc_pooled",
    "roc_auc_low",
    "roc_auc_high",
    "chance_band",
    "above_chance",
]
# The `weights` of a model that has no pretrained or random initial weights (the baselines).
NO_WEIGHTS = "-"
# A prediction's role, as in `training_clips`: a held-out clip of the fold's own videos, or an
# original clip of a test video, which no fold trains on.
VALIDATION, TEST = "validation", "test"


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


# A model's prediction for one clip of one fold, by the fold's model: a validation clip (what
# `fold_predictions` holds and every fold metric is computed from) or a test clip (`role`).
PREDICTION_COLUMNS = [
    "model", "weights", "fold", "role", "video_id", "clip_id", "label", "probability", "n_train",
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
    role: str = VALIDATION,
) -> pd.DataFrame:
    """A model's P(fake) for each clip of a fold in `role` (`clips`: `video_id, clip_id,
    label` in the order of `probabilities`), with what the fold was trained on."""
    if len(clips) != len(probabilities):
        raise ValueError(f"{model} fold {fold}: {len(probabilities)} scores for {len(clips)} clips")
    table = clips[["video_id", "clip_id", "label"]].reset_index(drop=True)
    return table.assign(
        model=model,
        weights=weights,
        fold=fold,
        role=role,
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


def rows_of_role(predictions: pd.DataFrame, role: str = VALIDATION) -> pd.DataFrame:
    """The prediction rows of `role` (validation: the cross-validated ones); a table written
    before test rows existed has no `role`, and every row of it is a validation row."""
    roles = predictions["role"].fillna(VALIDATION) if "role" in predictions else VALIDATION
    return predictions.assign(role=roles).query("role == @role")


def scores_markdown(predictions: pd.DataFrame) -> str:
    """A model asset's per-fold metrics of its validation rows as markdown (MLflow run ids
    left out)."""
    scores = fold_metrics_of(rows_of_role(predictions))
    return scores.drop(columns="mlflow_run_id").to_markdown(index=False)


def _uncertainty_rows(predictions: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    rows = []
    for (model, weights), part in predictions.groupby(keys):
        cascades = part["dup_group"].fillna(part["video_id"]).astype(str).to_numpy()
        score = score_uncertainty((part["label"] == "fake").to_numpy(int), part["probability"],
                                  cascades)  # fmt: skip
        rows.append(
            {"model": model, "weights": weights, "held_out_videos": part["video_id"].nunique(),
             "held_out_cascades": len(set(cascades)), "roc_auc_pooled": score.roc_auc,
             "roc_auc_low": score.low, "roc_auc_high": score.high, "chance_band": score.band,
             "above_chance": score.above_chance}
        )  # fmt: skip
    return pd.DataFrame(rows).set_index(keys)


def compare_models(
    fold_metrics: pd.DataFrame, predictions: pd.DataFrame, stale: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per model and initial weights (random, pretrained, or `NO_WEIGHTS`): `folds`,
    the held-out videos and cascades, mean and sample std (ddof=1, NaN for one fold) of every
    metric over folds, and from `predictions` (`PREDICTION_COLUMNS` and `dup_group`) the
    pooled held-out ROC-AUC with its 95% cascade bootstrap interval, the 95th percentile of
    its cascade permutation chance band and `above_chance` (the interval's low end above the
    band). Ranked (`rank`, 1 = best): models above chance first, then by mean ROC-AUC, ties
    by model name (then weights). Then the `stale` models (`model, weights, stale_reason`:
    predictions made on other folds or labels, left out of the metrics) by name, unscored and
    unranked; `stale` and `stale_reason` ("" when current) say which."""
    keys = ["model", "weights"]
    grouped = fold_metrics.groupby(keys)[list(METRICS)]
    table = grouped.mean().add_suffix("_mean").join(grouped.std(ddof=1).add_suffix("_std"))
    table["folds"] = fold_metrics.groupby(keys)["fold"].nunique()
    table = table.join(_uncertainty_rows(predictions, keys))
    table["above_chance"] = table["above_chance"].astype("boolean").fillna(False).astype(bool)
    ordered = [f"{m}_{s}" for m in METRICS for s in ("mean", "std")]
    table = (
        table[["folds", "held_out_videos", "held_out_cascades", *ordered, *UNCERTAINTY_COLUMNS]]
        .reset_index()
        .sort_values(
            ["above_chance", "roc_auc_mean", "model", "weights"],
            ascending=[False, False, True, True],
            na_position="last",
        )
        .reset_index(drop=True)
        .round(4)
    )
    table = table.assign(rank=range(1, len(table) + 1), stale=False, stale_reason="")
    if stale is not None and len(stale):
        left_out = stale[["model", "weights", "stale_reason"]].sort_values(["model", "weights"])
        table = pd.concat(
            [table, left_out.assign(stale=True, above_chance=False)], ignore_index=True
        )
    counts = ["folds", "held_out_videos", "held_out_cascades", "rank"]
    return table.astype(dict.fromkeys(counts, "Int64"))


def number_text(value: float) -> str:
    return "n/a" if pd.isna(value) else f"{value:.3f}"


def _count(value) -> str:
    return "-" if pd.isna(value) else str(int(value))


def interval_text(score: float, low: float, high: float) -> str:
    """`score [low, high]` to 3 decimals, "n/a" for a missing number."""
    return f"{number_text(score)} [{number_text(low)}, {number_text(high)}]"


def _verdict(row) -> str:
    if row.stale:
        return f"stale, left out: {row.stale_reason}"
    if pd.isna(row.roc_auc_low) or pd.isna(row.chance_band):
        return "n/a"
    return "yes" if row.above_chance else "no: inside chance band"


def comparison_markdown(comparison: pd.DataFrame) -> str:
    """The comparison in its order as an aligned markdown table: per model its folds,
    held-out videos / cascades, every metric's mean ± std over folds, pooled ROC-AUC with its
    95% cascade bootstrap interval, chance band, whether the interval clears the band, and
    its initial weights; a stale model's row says why it is left out."""
    header = ["model", "folds", "videos / cascades", *METRICS, "pooled roc_auc [95% CI]",
              "chance band", "above chance", "weights"]  # fmt: skip
    rows = [
        [r.model, _count(r.folds), f"{_count(r.held_out_videos)} / {_count(r.held_out_cascades)}",
         *(f"{number_text(getattr(r, m + '_mean'))} ± {number_text(getattr(r, m + '_std'))}"
           for m in METRICS),
         interval_text(r.roc_auc_pooled, r.roc_auc_low, r.roc_auc_high),
         number_text(r.chance_band), _verdict(r), str(r.weights)]
        for r in comparison.itertuples()
    ]  # fmt: skip
    return aligned_markdown(header, rows)


def comparison_summary(comparison: pd.DataFrame) -> str:
    """The comparison's ROC-AUC columns as an aligned markdown table, for a transcript: per
    model its rank, mean ± std over folds, pooled ROC-AUC with its 95% cascade bootstrap
    interval, chance band, whether the interval clears the band (or why a stale model is left
    out), and its initial weights."""
    header = ["rank", "model", "roc_auc (mean ± std)", "pooled roc_auc [95% CI]",
              "chance band", "above chance", "weights"]  # fmt: skip
    rows = [
        [_count(r.rank), r.model, f"{number_text(r.roc_auc_mean)} ± {number_text(r.roc_auc_std)}",
         interval_text(r.roc_auc_pooled, r.roc_auc_low, r.roc_auc_high),
         number_text(r.chance_band), _verdict(r), str(r.weights)]
        for r in comparison.itertuples()
    ]  # fmt: skip
    return aligned_markdown(header, rows)


def aligned_markdown(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = [header, ["-" * w for w in widths], *rows]
    return "\n".join(
        "| " + " | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) + " |"
        for line in lines
    )


def base_model_name(model: str, weights: str) -> str:
    """A model's name in figures: `model`, or `model[weights]` for a network."""
    return model if weights == NO_WEIGHTS else f"{model}[{weights}]"
