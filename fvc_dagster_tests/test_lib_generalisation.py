"""The generalisation table: test ROC-AUC of the mean fold probability per test video, its
cascade interval, and "n/a" with the reason where there is no score."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from fvc_dagster.lib.evaluation.generalisation import generalisation_markdown, generalisation_of
from fvc_dagster.lib.evaluation.metrics import NO_WEIGHTS, PREDICTION_COLUMNS, TEST, prediction_rows
from fvc_dagster.lib.serving.champion import champion_test_tags

COMPARISON = pd.DataFrame(
    {"model": ["good", "untrained"], "weights": NO_WEIGHTS, "roc_auc_pooled": [0.9, 0.6],
     "roc_auc_low": [0.8, 0.4], "roc_auc_high": [0.95, 0.8], "chance_band": [0.7, 0.7]}
)  # fmt: skip


def scored_test_rows(labels: list[str], seed: int = 0) -> pd.DataFrame:
    """Three folds' test predictions of `good` for one original clip per video."""
    rng = np.random.default_rng(seed)
    ids = range(len(labels))
    clips = pd.DataFrame({"video_id": [f"v{i}" for i in ids], "clip_id": [f"c{i}" for i in ids],
                          "label": labels})  # fmt: skip
    parts = [prediction_rows("good", str(f), clips, rng.random(len(labels)), 10, "run",
                             role=TEST) for f in range(3)]  # fmt: skip
    return pd.concat(parts, ignore_index=True)


def test_the_test_score_is_the_roc_auc_of_the_mean_fold_probability():
    rows = scored_test_rows(["real", "fake"] * 6)
    table = generalisation_of(COMPARISON, rows, pd.Series({"v0": "g", "v2": "g"})).set_index(
        "model"
    )
    videos = rows.groupby("video_id").agg(label=("label", "first"), p=("probability", "mean"))
    good = table.loc["good"]
    assert good["test_roc_auc"] == pytest.approx(
        roc_auc_score(videos["label"] == "fake", videos["p"]), abs=1e-4
    )
    assert (good["test_videos"], good["test_cascades"], good["test_folds"]) == (12, 11, 3)
    assert good["test_roc_auc_low"] <= good["test_roc_auc"] <= good["test_roc_auc_high"]
    assert table.loc["untrained", "test_note"].startswith("no test predictions")
    assert pd.isna(table.loc["untrained", "test_roc_auc"])
    tags = champion_test_tags(table.reset_index(), "good", NO_WEIGHTS)
    assert tags["test_roc_auc"] == f"{good['test_roc_auc']:.4f}" and tags["test_videos"] == "12"


def test_too_few_classes_or_no_test_videos_say_why():
    one_class = generalisation_of(COMPARISON, scored_test_rows(["fake"] * 4), pd.Series(dtype=str))
    assert one_class["test_note"][0] == "n/a: the test videos hold one class {'fake': 4}"
    none = generalisation_of(
        COMPARISON, pd.DataFrame(columns=PREDICTION_COLUMNS), pd.Series(dtype=str)
    )
    assert set(none["test_note"]) == {"no test videos"}
    assert "no test videos" in generalisation_markdown(none)
    tags = champion_test_tags(none, "good", NO_WEIGHTS)
    assert tags["test_roc_auc"] == tags["test_roc_auc_interval"] == "no test videos"
