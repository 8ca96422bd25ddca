"""The comparison as figures (matplotlib, no display): every model's pooled ROC-AUC with its
cascade bootstrap interval and chance band, ROC curves and confusion matrices from the
held-out predictions, one figure per model fold, and cross-validated vs test ROC-AUC. Each is
a `Figure` for MLflow's `log_figure` and an RGB array for the UI."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from sklearn.metrics import confusion_matrix, roc_auc_score, roc_curve  # noqa: E402

from fvc_dagster.lib.evaluation.metrics import base_model_name  # noqa: E402


def _labelled(table: pd.DataFrame) -> pd.Series:
    return pd.Series(
        [base_model_name(m, w) for m, w in zip(table["model"], table["weights"], strict=True)],
        index=table.index,
    )


def _truth(predictions: pd.DataFrame) -> np.ndarray:
    return (predictions["label"] == "fake").to_numpy(int)


def metric_bars(comparison: pd.DataFrame) -> Figure:
    """Every model's pooled held-out ROC-AUC, in the comparison's order (best on top), with
    its 95% cascade bootstrap interval as the error bar and its chance band as a black tick;
    models whose interval does not clear the band are grey and hatched."""
    table = comparison.iloc[::-1].reset_index(drop=True)
    names = _labelled(table)
    pooled = table["roc_auc_pooled"].to_numpy(float)
    errors = np.nan_to_num(
        [pooled - table["roc_auc_low"].to_numpy(float), table["roc_auc_high"] - pooled]
    )
    above = table["above_chance"].to_numpy(bool)
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(table) + 1.6), layout="constrained")
    bars = ax.barh(names, np.nan_to_num(pooled), xerr=errors, capsize=3,
                   color=np.where(above, "#4c72b0", "#c8c8c8"))  # fmt: skip
    for bar, clear in zip(bars, above, strict=True):
        bar.set_hatch("" if clear else "//")
    ax.vlines(table["chance_band"], np.arange(len(table)) - 0.4, np.arange(len(table)) + 0.4,
              color="black", lw=2)  # fmt: skip
    ax.set_xlim(0, 1.05)
    ax.axvline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("pooled held-out ROC-AUC, 95% cascade bootstrap interval")
    ax.legend(
        handles=[
            Patch(color="#4c72b0", label="above chance"),
            Patch(facecolor="#c8c8c8", hatch="//", label="inside chance band"),
            Line2D([], [], color="black", lw=2, label="chance band (95th pct.)"),
        ],
        fontsize=7, loc="lower right",
    )  # fmt: skip
    return fig


def generalisation_bars(generalisation: pd.DataFrame) -> Figure:
    """Per model (the comparison's order, best on top) two bars: its cross-validated pooled
    ROC-AUC with its 95% interval and chance band (black tick), and its test ROC-AUC with its
    95% cascade bootstrap interval (none drawn for a model without one)."""
    table = generalisation.iloc[::-1].reset_index(drop=True)
    rows = np.arange(len(table))
    fig, ax = plt.subplots(figsize=(7, 0.6 * len(table) + 1.6), layout="constrained")
    for offset, prefix, colour, label in (
        (0.2, "roc_auc_pooled", "#4c72b0", "cross-validated (pooled held-out)"),
        (-0.2, "test_roc_auc", "#dd8452", "test videos (mean of the fold models)"),
    ):
        stem = prefix.removesuffix("_pooled")
        score = table[prefix].to_numpy(float)
        errors = np.nan_to_num([score - table[f"{stem}_low"].to_numpy(float),
                                table[f"{stem}_high"].to_numpy(float) - score])  # fmt: skip
        ax.barh(rows + offset, np.nan_to_num(score), height=0.4, xerr=errors, capsize=3,
                color=colour, label=label)  # fmt: skip
    ax.vlines(table["chance_band"], rows + 0.02, rows + 0.38, color="black", lw=2,
              label="chance band (95th pct.)")  # fmt: skip
    ax.set_yticks(rows, _labelled(table))
    ax.set_xlim(0, 1.05)
    ax.axvline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("ROC-AUC, 95% cascade bootstrap interval")
    ax.legend(fontsize=7, loc="lower right")
    return fig


def roc_curves(predictions: pd.DataFrame) -> Figure:
    """One ROC curve per model from its held-out predictions of all folds pooled."""
    fig, ax = plt.subplots(figsize=(6, 5), layout="constrained")
    named = predictions.assign(name=_labelled(predictions))
    for name, part in named.groupby("name"):
        y = _truth(part)
        if len(np.unique(y)) < 2:
            continue
        fpr, tpr, _ = roc_curve(y, part["probability"])
        ax.plot(fpr, tpr, lw=1.2, label=f"{name} ({roc_auc_score(y, part['probability']):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax.set(xlabel="false positive rate", ylabel="true positive rate",
           title="ROC, held-out predictions of all folds")  # fmt: skip
    ax.legend(fontsize=7, loc="lower right")
    return fig


def _confusion(ax, y: np.ndarray, probability: np.ndarray, title: str) -> None:
    matrix = confusion_matrix(y, probability >= 0.5, labels=[0, 1])
    ax.imshow(matrix, cmap="Blues")
    for (i, j), n in np.ndenumerate(matrix):
        ax.text(j, i, str(n), ha="center", va="center",
                color="white" if n > matrix.max() / 2 else "black")  # fmt: skip
    ax.set_xticks([0, 1], ["real", "fake"])
    ax.set_yticks([0, 1], ["real", "fake"])
    ax.set(title=title, xlabel="predicted", ylabel="true")


def confusion_matrices(predictions: pd.DataFrame) -> Figure:
    """Each model's confusion matrix at P(fake) >= 0.5 over all folds' held-out clips."""
    named = predictions.assign(name=_labelled(predictions))
    groups = list(named.groupby("name"))
    columns = min(4, len(groups))
    rows = -(-len(groups) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3 * columns, 2.8 * rows),
                             layout="constrained", squeeze=False)  # fmt: skip
    for ax, (name, part) in zip(axes.flat, groups, strict=False):
        _confusion(ax, _truth(part), part["probability"].to_numpy(), name)
    for ax in axes.flat[len(groups) :]:
        ax.axis("off")
    return fig


def fold_figure(predictions: pd.DataFrame, title: str) -> Figure:
    """One model fold: its ROC curve and confusion matrix on the fold's validation clips."""
    y, p = _truth(predictions), predictions["probability"].to_numpy()
    fig, (roc, matrix) = plt.subplots(1, 2, figsize=(8, 3.6), layout="constrained")
    if len(np.unique(y)) == 2:
        fpr, tpr, _ = roc_curve(y, p)
        roc.plot(fpr, tpr, label=f"ROC-AUC {roc_auc_score(y, p):.3f}")
        roc.legend(loc="lower right")
    roc.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    roc.set(xlabel="false positive rate", ylabel="true positive rate", title=title)
    _confusion(matrix, y, p, "confusion at 0.5")
    return fig


def rgb(fig: Figure, close: bool = True) -> np.ndarray:
    """The figure rendered as an RGB uint8 array (closed afterwards unless told not to)."""
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    if close:
        plt.close(fig)
    return image
