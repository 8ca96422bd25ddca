import numpy as np
import pandas as pd
import pytest

from fvc_dagster.lib.metrics import compare_models, comparison_markdown, fold_scores
from fvc_dagster.lib.models import BASELINES, CorrelationPruner, baseline_pipeline, kept_features
from fvc_dagster.lib.training import assign_clips, fold_data, leaked_training_clips, train_fold

FEATURES = ["signal", "copy_of_signal", "constant", "noise"]


def clip_table(n_videos: int = 40, augmented: int = 2, seed: int = 0):
    rng = np.random.default_rng(seed)
    rows, folds = [], []
    for v in range(n_videos):
        label = "fake" if v % 2 else "real"
        folds.append({"video_id": f"v{v}", "fold": v % 5, "label": label, "dup_group": f"v{v}"})
        for aug in range(-1, augmented):
            signal = (1.0 if label == "fake" else 0.0) + rng.normal(0, 0.5)
            rows.append(
                {"video_id": f"v{v}", "clip_id": f"v{v}_{aug}", "aug_index": aug,
                 "signal": signal, "copy_of_signal": 2 * signal + 1, "constant": 3.0,
                 "noise": rng.normal()}
            )  # fmt: skip
    return pd.DataFrame(rows), pd.DataFrame(folds)


def test_held_out_fold_validates_on_original_clips_only():
    clips, folds = clip_table()
    assignments = assign_clips(clips, folds, 5)
    data = fold_data(assignments, clips, 2, FEATURES)
    assert set(data.validation["aug_index"]) == {-1}
    assert set(folds.loc[folds["fold"] == 2, "video_id"]) == set(data.validation["video_id"])
    assert not set(data.train["video_id"]) & set(data.validation["video_id"])
    assert len(data.train) == 32 * 3  # every clip of the 32 training videos


def test_leakage_check_passes_on_assignments_and_catches_a_planted_clip():
    clips, folds = clip_table()
    assignments = assign_clips(clips, folds, 5)
    assert leaked_training_clips(assignments, folds, clips).empty
    held_out_clip = clips[clips["video_id"] == "v0"].iloc[1]  # v0 is in fold 0
    planted = {"fold": 0, "role": "train", "clip_id": held_out_clip["clip_id"], "aug_index": 0}
    # even a row that lies about its video is caught: the clip's owner comes from the clip table
    lying = pd.concat([assignments, pd.DataFrame([{**planted, "video_id": "v1", "label": "real"}])])
    leaked = leaked_training_clips(lying, folds, clips)
    assert leaked["clip_id"].tolist() == [held_out_clip["clip_id"]]


def test_training_refuses_a_fold_whose_training_set_holds_a_validation_video():
    clips, folds = clip_table()
    data = fold_data(assign_clips(clips, folds, 5), clips, 0, FEATURES)
    data.train = pd.concat([data.train, data.validation.head(1)])
    with pytest.raises(ValueError, match="held-out videos"):
        train_fold("logistic_regression", data)


def test_pruning_drops_constant_and_collinear_features():
    assert CorrelationPruner(0.95).fit(
        np.c_[np.arange(10), 2 * np.arange(10) + 1, np.sin(np.arange(10))]
    ).keep_.tolist() == [0, 2]
    clips, folds = clip_table()
    pipeline = baseline_pipeline("logistic_regression").fit(
        clips[FEATURES], clips["aug_index"] >= 0
    )
    assert kept_features(pipeline, FEATURES) == ["signal", "noise"]


@pytest.mark.parametrize("model", list(BASELINES))
def test_each_baseline_learns_a_separable_signal(model):
    clips, folds = clip_table()
    result = train_fold(model, fold_data(assign_clips(clips, folds, 5), clips, 1, FEATURES))
    assert result.scores["roc_auc"] > 0.8
    assert result.n_validation == 8


def test_fold_scores_count_the_confusion_matrix():
    scores = fold_scores(np.array([0, 0, 1, 1]), np.array([0.1, 0.7, 0.8, 0.3]))
    assert (scores["tn"], scores["fp"], scores["fn"], scores["tp"]) == (1, 1, 1, 1)
    assert scores["accuracy"] == 0.5 and scores["roc_auc"] == 0.75


def test_comparison_ranks_models_by_mean_roc_auc():
    scores = {"good": [0.1, 0.9, 0.2, 0.8], "bad": [0.9, 0.1, 0.6, 0.7]}
    rows = [
        {"model": m, "fold": f, **fold_scores(np.array([0, 1, 0, 1]), np.array(s))}
        for m, s in scores.items()
        for f in range(3)
    ]
    table = compare_models(pd.DataFrame(rows))
    assert table["model"].tolist() == ["good", "bad"] and table.loc[0, "roc_auc_mean"] == 1.0
    assert table.loc[0, "folds"] == 3 and "good | 3 | 1.000 ± 0.000" in comparison_markdown(table)
