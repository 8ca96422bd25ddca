import numpy as np
import pandas as pd
import pytest

from conftest import with_test_rows
from fvc_dagster.lib.evaluation.metrics import (
    NO_WEIGHTS,
    compare_models,
    comparison_markdown,
    fold_metrics_of,
    fold_scores,
    prediction_rows,
)
from fvc_dagster.lib.models import CorrelationPruner, baseline_pipeline, kept_features, models_of
from fvc_dagster.lib.models.baselines import SignificantFeatures, selected_features
from fvc_dagster.lib.training.fold_data import (
    assign_clips,
    clip_owners,
    fold_data,
    leak_report,
    rows_using_test_videos,
)
from fvc_dagster.lib.training.tabular import baseline_training_rows, train_fold

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


def test_test_videos_original_clips_are_test_rows_of_every_fold_and_train_none():
    clips, folds = clip_table(n_videos=43)
    test = folds[folds["video_id"].isin(["v40", "v41", "v42"])]
    train = folds[~folds.index.isin(test.index)]
    assignments = assign_clips(clips, train, 5, test)
    rows = assignments[assignments["role"] == "test"]
    assert set(rows["aug_index"]) == {-1}
    assert sorted(rows[["fold", "video_id", "label"]].itertuples(index=False)) == [
        (f, v, label)
        for f in range(5)
        for v, label in zip(test["video_id"], test["label"], strict=True)
    ]
    pd.testing.assert_frame_equal(
        assignments[assignments["role"] != "test"].reset_index(drop=True),
        assign_clips(clips, train, 5).reset_index(drop=True),
    )


def test_the_tabular_baselines_ignore_test_rows():
    clips, folds = clip_table()
    assignments = assign_clips(clips, folds, 5)
    for fold in range(5):
        plain, with_test = (
            fold_data(a, clips, fold, FEATURES) for a in (assignments, with_test_rows(assignments))
        )
        pd.testing.assert_frame_equal(plain.train, with_test.train)
        pd.testing.assert_frame_equal(plain.validation, with_test.validation)
        assert plain.test.empty and set(with_test.test["role"]) == {"test"}


def test_rows_using_test_videos_are_folds_and_train_or_validation_roles():
    clips, folds = clip_table(n_videos=10)
    test = pd.DataFrame({"video_id": ["v3"], "reason": ["split column of FVC.csv says test"]})
    assert rows_using_test_videos(folds, test)[["video_id", "fold", "reason"]].to_dict(
        "records"
    ) == [{"video_id": "v3", "fold": 3, "reason": "split column of FVC.csv says test"}]
    assignments = assign_clips(clips, folds, 5)
    used = rows_using_test_videos(assignments, test)
    assert set(used["role"]) == {"train", "validation"} and set(used["video_id"]) == {"v3"}
    proper = assign_clips(
        clips, folds[folds["video_id"] != "v3"], 5, folds[folds["video_id"] == "v3"]
    )
    assert rows_using_test_videos(proper, test).empty


def owners(clips: pd.DataFrame) -> pd.DataFrame:
    return clips[["clip_id", "video_id"]].rename(columns={"video_id": "owner"})


def stores(clips: pd.DataFrame, scaled: pd.DataFrame | None = None) -> dict[str, pd.DataFrame]:
    return {"clips": owners(clips), "scaled": owners(clips if scaled is None else scaled)}


def test_leak_report_passes_on_the_assigned_clips():
    clips, folds = clip_table()
    report = leak_report(assign_clips(clips, folds, 5), folds, stores(clips))
    assert report.passed
    assert report.leaked.empty and report.unknown.empty and report.conflicting.empty


def test_a_training_row_lying_about_its_video_is_caught_by_its_files_owner():
    clips, folds = clip_table()
    held_out_clip = clips[clips["video_id"] == "v0"].iloc[1]["clip_id"]  # v0 is in fold 0
    lying = {"fold": 0, "role": "train", "clip_id": held_out_clip, "video_id": "v1",
             "aug_index": 0, "label": "fake"}  # fmt: skip
    assignments = pd.concat([assign_clips(clips, folds, 5), pd.DataFrame([lying])])
    report = leak_report(assignments, folds, stores(clips))
    assert not report.passed
    assert report.leaked[["fold", "clip_id", "video_id", "owner"]].to_dict("records") == [
        {"fold": 0, "clip_id": held_out_clip, "video_id": "v1", "owner": "v0"}
    ]
    assert report.unknown.empty and report.conflicting.empty


def test_unknown_training_clip_fails_the_leak_check():
    clips, folds = clip_table()
    ghost = {"fold": 0, "role": "train", "clip_id": "ghost", "video_id": "v1", "aug_index": 0,
             "label": "fake"}  # fmt: skip
    assignments = pd.concat([assign_clips(clips, folds, 5), pd.DataFrame([ghost])])
    report = leak_report(assignments, folds, stores(clips))
    assert not report.passed and report.leaked.empty
    assert report.unknown[["fold", "clip_id", "missing_from"]].to_dict("records") == [
        {"fold": 0, "clip_id": "ghost", "missing_from": "clips, scaled"}
    ]


def test_a_clip_without_its_scaled_file_is_unknown_in_every_fold_it_trains():
    clips, folds = clip_table()
    report = leak_report(
        assign_clips(clips, folds, 5), folds, stores(clips, clips[clips["clip_id"] != "v1_0"])
    )
    assert not report.passed
    assert report.unknown["clip_id"].unique().tolist() == ["v1_0"]
    assert report.unknown["fold"].tolist() == [0, 2, 3, 4]  # v1 is held out by fold 1
    assert set(report.unknown["missing_from"]) == {"scaled"}


def test_files_under_two_videos_conflict_and_each_owner_is_checked_for_leaks():
    clips, folds = clip_table()
    scaled = clips.assign(video_id=clips["video_id"].mask(clips["clip_id"] == "v1_0", "v2"))
    report = leak_report(assign_clips(clips, folds, 5), folds, stores(clips, scaled))
    assert report.conflicting.to_dict("records") == [{"clip_id": "v1_0", "owners": ["v1", "v2"]}]
    # v1_0 trains folds 0, 2, 3 and 4; fold 2 holds out v2, which its scaled file names
    assert report.leaked[["fold", "clip_id", "owner"]].to_dict("records") == [
        {"fold": 2, "clip_id": "v1_0", "owner": "v2"}
    ]
    assert report.unknown.empty and not report.passed


def test_clip_owners_are_the_folders_the_files_live_in(tmp_path):
    for relative in ("va/va__orig.avi", "vb/vb__aug00.avi", "va/.va__aug01.tmp1.avi", "va/x.txt"):
        (tmp_path / relative).parent.mkdir(exist_ok=True)
        (tmp_path / relative).write_bytes(b"")
    found = clip_owners(tmp_path).sort_values("clip_id").to_dict("records")
    assert found == [
        {"clip_id": "va__orig", "owner": "va"},
        {"clip_id": "vb__aug00", "owner": "vb"},
    ]
    assert list(clip_owners(tmp_path / "absent").columns) == ["clip_id", "owner"]


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


@pytest.mark.parametrize("model", models_of("tabular"))
def test_each_baseline_learns_a_separable_signal(model):
    clips, folds = clip_table()
    result = train_fold(model, fold_data(assign_clips(clips, folds, 5), clips, 1, FEATURES))
    assert result.scores["roc_auc"] > 0.8
    assert result.n_validation == 8


def test_fold_scores_count_the_confusion_matrix():
    scores = fold_scores(np.array([0, 0, 1, 1]), np.array([0.1, 0.7, 0.8, 0.3]))
    assert (scores["tn"], scores["fp"], scores["fn"], scores["tp"]) == (1, 1, 1, 1)
    assert scores["accuracy"] == 0.5 and scores["roc_auc"] == 0.75


def test_fold_metrics_come_from_held_out_predictions_and_rank_models_by_mean_roc_auc():
    scores = {"good": [0.1, 0.9, 0.2, 0.8], "bad": [0.9, 0.1, 0.6, 0.7]}
    clips = pd.DataFrame(
        {"video_id": list("abcd"), "clip_id": list("ABCD"), "label": ["real", "fake"] * 2}
    )
    predictions = pd.concat(
        [prediction_rows(m, f, clips, np.array(s), 12, f"run-{m}-{f}")
         for m, s in scores.items() for f in range(3)]
    )  # fmt: skip
    metrics = fold_metrics_of(predictions)
    assert len(metrics) == 6 and (metrics["n_validation"] == 4).all()
    good = metrics[metrics["model"] == "good"].iloc[0]
    assert good["roc_auc"] == 1.0 and good["mlflow_run_id"] == "run-good-0"
    table = compare_models(metrics, predictions.assign(dup_group=predictions["video_id"]))
    assert table["model"].tolist() == ["good", "bad"] and table.loc[0, "roc_auc_mean"] == 1.0
    good_line = comparison_markdown(table).splitlines()[2]
    assert table.loc[0, "folds"] == 3 and good_line.startswith("| good  | 3     | 4 / 4 ")
    assert "1.000 ± 0.000" in good_line and "no: inside chance band" in good_line  # 4 cascades
    assert set(table["weights"]) == {NO_WEIGHTS}
    with pytest.raises(ValueError, match="good fold 0: 3 scores for 4 clips"):
        prediction_rows("good", 0, clips, np.zeros(3), 12, "run")


def test_baselines_fit_on_the_original_clips_of_the_training_videos():
    clips, folds = clip_table(augmented=3)
    data = fold_data(assign_clips(clips, folds, 5), clips, 0, FEATURES)
    assert len(data.train) == 32 * 4  # the fold data still lists every training clip
    rows = baseline_training_rows(data.train)
    assert set(rows["aug_index"]) == {-1} and len(rows) == 32
    assert set(rows["video_id"]) == set(data.train["video_id"])
    result = train_fold("logistic_regression", data)
    assert result.n_train == 32 and result.n_validation == 8
    with pytest.raises(ValueError, match="aug_index"):
        baseline_training_rows(data.train.drop(columns="aug_index"))


def test_augmented_clips_that_erase_the_signal_do_not_train_the_baselines():
    # The augmented clips of fakes look real (as a resampling augmentation erases block
    # artefacts): fitted on them, the model would learn the signal half as well; it is fitted on
    # the originals, so it separates the held-out originals perfectly.
    clips, folds = clip_table(augmented=6)
    fake = clips["video_id"].map(folds.set_index("video_id")["label"]) == "fake"
    rng = np.random.default_rng(1)
    clips["signal"] = np.where(fake & (clips["aug_index"] == -1), 3.0, 0.0) + rng.normal(
        0, 0.3, len(clips)
    )
    clips["copy_of_signal"] = 2 * clips["signal"] + 1
    for model in models_of("tabular"):
        result = train_fold(model, fold_data(assign_clips(clips, folds, 5), clips, 3, FEATURES))
        assert result.scores["roc_auc"] == 1.0, model
        assert result.kept_features == ["signal"], model


def test_significant_features_keeps_what_separates_the_classes_on_the_training_rows():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 30)
    x = np.c_[rng.normal(size=(60, 5)), y * 2.0 + rng.normal(0, 0.5, 60)]
    selector = SignificantFeatures(0.05).fit(x, y)
    assert selector.keep_.tolist() == [5] and selector.transform(x).shape == (60, 1)
    # nothing significant: the strongest feature is kept, so the classifier has an input
    noise = rng.normal(size=(60, 3))
    weakest_p = SignificantFeatures(0.05).fit(noise, y)
    assert weakest_p.keep_.tolist() == [int(np.argmax(weakest_p.f_))]
    assert (weakest_p.p_ >= 0.05 / 3).all()


def test_selected_features_names_what_the_classifier_sees():
    clips, folds = clip_table()
    y = clips["video_id"].map(folds.set_index("video_id")["label"]) == "fake"
    pipeline = baseline_pipeline("logistic_regression").fit(clips[FEATURES], y)
    assert kept_features(pipeline, FEATURES) == ["signal", "noise"]
    assert selected_features(pipeline, FEATURES) == ["signal"]


def test_svm_calibrates_with_as_many_folds_as_the_smaller_class_allows():
    clips, folds = clip_table(n_videos=10)  # 8 training videos per fold, 4 of each class
    result = train_fold("svm", fold_data(assign_clips(clips, folds, 5), clips, 0, FEATURES))
    assert result.pipeline.named_steps["classify"].cv == 4 and result.n_train == 8
    assert 0.0 <= result.scores["roc_auc"] <= 1.0


def test_svm_with_one_row_of_a_class_calibrates_on_its_training_rows():
    # An inner fold of a small corpus can hold a single video of a class: no split keeps it
    # on both sides, so the sigmoid is fit on the rows the SVC was fit on, and still ranks.
    x = np.array([[0.0, 0.1], [0.2, 0.0], [0.1, 0.3], [3.0, 3.1]])
    y = np.array([0, 0, 0, 1])
    svm = baseline_pipeline("svm").fit(x, y)
    p = svm.predict_proba(x)[:, 1]
    assert p[3] > p[:3].max() and np.allclose(svm.predict_proba(x).sum(axis=1), 1.0)


def test_fit_leaks_name_a_held_out_video_used_to_fit_and_a_stray_scored_one():
    from fvc_dagster.lib.training.fold_data import fit_leaks, fit_record, selection_fold

    folds = pd.DataFrame({"video_id": ["a", "b", "c", "d"], "fold": [0, 0, 1, 2]})
    blind = fit_record(train=["c"], selection=["d"], scored=["a", "b"])
    assert fit_leaks(0, blind, folds).empty
    leaky = fit_record(train=["c", "a"], selection=["b"], scored=["a", "d"])
    found = fit_leaks(0, leaky, folds)
    assert found[["role", "video_id"]].values.tolist() == [
        ["train", "a"], ["selection", "b"], ["scored", "d"]
    ]  # fmt: skip
    assert selection_fold(4, [0, 1, 2, 3, 4]) == 0 and selection_fold(1, [0, 1, 2]) == 2
    with pytest.raises(ValueError, match="3 or more folds"):
        selection_fold(0, [0, 1])
