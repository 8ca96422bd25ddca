"""How each model does on videos no model ever saw: beside its cross-validated pooled ROC-AUC,
the ROC-AUC of its test predictions, a test video's P(fake) being the mean of its fold models'
P(fake) for its original clips, with a 95% cascade bootstrap interval."""

from __future__ import annotations

import pandas as pd

from fvc_dagster.lib.evaluation.metrics import (
    aligned_markdown,
    base_model_name,
    interval_text,
    number_text,
)
from fvc_dagster.lib.evaluation.uncertainty import cascade_bootstrap_interval, pooled_roc_auc

KEYS = ["model", "weights"]
CV_COLUMNS = ["roc_auc_pooled", "roc_auc_low", "roc_auc_high", "chance_band"]
TEST_COLUMNS = [
    "test_folds", "test_videos", "test_cascades", "test_roc_auc", "test_roc_auc_low",
    "test_roc_auc_high", "test_note",
]  # fmt: skip


def test_video_probabilities(test_rows: pd.DataFrame) -> pd.DataFrame:
    """One row per model, weights and test video: its `label` and `probability`, the mean of
    the fold models' P(fake) for its clips (`test_rows`: `PREDICTION_COLUMNS`, role test), and
    the number of `folds` that scored it."""
    grouped = test_rows.groupby([*KEYS, "video_id"])
    return pd.DataFrame(
        {
            "label": grouped["label"].first(),
            "probability": grouped["probability"].mean(),
            "folds": grouped["fold"].nunique(),
        }
    ).reset_index()


def _test_score(videos: pd.DataFrame, cascades: pd.Series, n_resamples: int) -> dict:
    """The ROC-AUC of one model's test videos (`test_video_probabilities` rows), its interval
    and counts; "n/a" with the reason when there is no ROC-AUC."""
    if videos.empty:
        note = "no test predictions: not trained since the test videos came"
        return {"test_folds": 0, "test_videos": 0, "test_cascades": 0, "test_note": note}
    groups = videos["video_id"].map(cascades).fillna(videos["video_id"]).astype(str)
    y = (videos["label"] == "fake").to_numpy(int)
    counts = {"test_folds": int(videos["folds"].max()), "test_videos": len(videos),
              "test_cascades": groups.nunique()}  # fmt: skip
    if len(set(y)) < 2:
        classes = videos["label"].value_counts().to_dict()
        return {**counts, "test_note": f"n/a: the test videos hold one class {classes}"}
    p = videos["probability"].to_numpy(float)
    low, high = cascade_bootstrap_interval(y, p, groups.to_numpy(), n_resamples)
    note = "" if pd.notna(low) else "n/a interval: no resample holds both classes"
    return {**counts, "test_roc_auc": pooled_roc_auc(y, p), "test_roc_auc_low": low,
            "test_roc_auc_high": high, "test_note": note}  # fmt: skip


def generalisation_of(
    comparison: pd.DataFrame,
    test_rows: pd.DataFrame,
    cascades: pd.Series,
    n_resamples: int = 1000,
) -> pd.DataFrame:
    """One row per model of `comparison` (in its order): its cross-validated pooled ROC-AUC,
    interval and chance band, and beside them its test ROC-AUC (`test_video_probabilities`)
    with its 95% cascade bootstrap interval (`cascades`: each video's cascade, by video id; a
    video without one is its own), the test folds, videos and cascades, and `test_note`: why a
    score is missing ("no test videos" when no model scored any)."""
    videos = test_video_probabilities(test_rows)
    rows = []
    for model, weights in comparison[KEYS].itertuples(index=False):
        mine = videos[(videos["model"] == model) & (videos["weights"] == weights)]
        rows.append({"model": model, "weights": weights,
                     **_test_score(mine, cascades, n_resamples)})  # fmt: skip
    table = comparison[[*KEYS, *CV_COLUMNS]].merge(
        pd.DataFrame(rows, columns=[*KEYS, *TEST_COLUMNS]), on=KEYS, how="left"
    )
    if test_rows.empty:
        table = table.assign(test_note="no test videos")
    return table.astype({c: "Int64" for c in TEST_COLUMNS[:3]}).round(4)


def generalisation_markdown(table: pd.DataFrame) -> str:
    """The table as aligned markdown: per model its cross-validated pooled ROC-AUC [95% CI]
    and chance band, its test ROC-AUC [95% CI], test folds / videos / cascades, and a note."""
    header = ["model", "cv pooled roc_auc [95% CI]", "chance band", "test roc_auc [95% CI]",
              "test folds / videos / cascades", "note"]  # fmt: skip
    rows = [
        [base_model_name(r.model, r.weights),
         interval_text(r.roc_auc_pooled, r.roc_auc_low, r.roc_auc_high),
         number_text(r.chance_band),
         interval_text(r.test_roc_auc, r.test_roc_auc_low, r.test_roc_auc_high),
         f"{r.test_folds} / {r.test_videos} / {r.test_cascades}", str(r.test_note or "")]
        for r in table.itertuples()
    ]  # fmt: skip
    return aligned_markdown(header, rows)
