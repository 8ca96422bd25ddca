"""Test archives through Dagster: videos declared test by a metadata `split` column or by an
archive pattern go through the per-video assets, get no fold and only `test` rows, and a test
video planted in the folds fails the blocking check before any model runs."""

import shutil
from types import SimpleNamespace

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from sklearn.metrics import roc_auc_score

from conftest import (
    check_named,
    fvc_metadata,
    labelled_video,
    query,
    write_labelled_inbox,
    write_zip,
)
from fvc_dagster.definitions import build_defs
from fvc_dagster.defs.folds.checks import no_test_video_in_training
from fvc_dagster.defs.partitions import N_FOLDS, partition_range_tags, videos_partitions
from fvc_dagster.lib.features.rows import CLIP_FEATURES, clip_features
from fvc_dagster.lib.models import models_of
from fvc_dagster.lib.serving.mlflow_registry import ALIAS, REGISTERED_MODEL, local_tracking_uri
from fvc_dagster.lib.training.ensemble import stack_fold, tabular_learner
from fvc_dagster.lib.training.fold_data import fold_data
from fvc_dagster.lib.training.tabular import train_fold
from fvc_dagster.local.demo import execute_run_request, run_video_batches, scan_inbox

TRAIN = [f"trainvid{n:03d}" for n in range(10)]  # a real and a fake cascade a fold
SHIFTED = ["shiftvid001", "shiftvid002"]  # in Shifted1.zip: test by FVC_TEST_ARCHIVES
DECLARED = "declvid0001"  # in FVC2.zip, declared test by the metadata's split column
TEST_ARCHIVES = "Shifted*.zip,Test*.zip"
FOLD_ASSETS = [dg.AssetKey("cv_folds"), dg.AssetKey("training_clips")]


MODELS = [*models_of("tabular"), *models_of("ensemble")]
EVERY_FOLD = dg.RunRequest(tags=partition_range_tags("0", str(N_FOLDS - 1)))


def ingest_and_fold(
    defs: dg.Definitions, instance: dg.DagsterInstance
) -> dg.ExecuteInProcessResult:
    """A sensor tick, its video runs, then `cv_folds` and `training_clips` with their checks."""
    run_video_batches(defs, scan_inbox(defs, instance), instance)
    return execute_run_request(defs, "training", EVERY_FOLD, instance, FOLD_ASSETS)


@pytest.fixture(scope="module")
def test_archives(tmp_path_factory, video_bytes_factory):
    """The train videos ingested and folded; then two archives of test videos arrive and are
    ingested and folded in turn; the models, evaluation and champion run before and after.
    Yields the data root, the definitions and instance, the folds before the test videos came,
    the second fold run, and `trained`: `fold_predictions` and the champion's tags before the
    test videos came, the training run and the champion run after."""
    root = tmp_path_factory.mktemp("test_archives")
    inbox = write_labelled_inbox(root / "inbox", TRAIN, video_bytes_factory)
    with dg.instance_for_test() as instance:
        defs = build_defs(root, test_archives=TEST_ARCHIVES)
        assert ingest_and_fold(defs, instance).success
        before = query(root, "select * from fvc.cv_folds")
        assert execute_run_request(defs, "training", EVERY_FOLD, instance).success
        assert execute_run_request(defs, "champion", dg.RunRequest(), instance).success
        predictions_before = query(root, "select * from fvc.fold_predictions")
        registry = MlflowClient(local_tracking_uri(root))
        tags_before = registry.get_model_version_by_alias(REGISTERED_MODEL, ALIAS).tags
        automated = dg.AssetSelection.assets(
            *MODELS, "fold_predictions", "fold_metrics", "model_comparison", "generalisation",
            "champion_model",
        )  # fmt: skip
        settled = dg.evaluate_automation_conditions(defs, instance, asset_selection=automated)

        tests = [*SHIFTED, DECLARED]
        members = {
            f"{v}.mp4": labelled_video(video_bytes_factory, 20 + i, i % 2)
            for i, v in enumerate(tests)
        }
        write_zip(inbox / "Shifted1.zip", {k: members[k] for k in list(members)[:2]})
        write_zip(inbox / "FVC2.zip", {f"{DECLARED}.mp4": members[f"{DECLARED}.mp4"]})
        rows = [(f"c{i}", v, "fake" if i % 2 else "real") for i, v in enumerate([*TRAIN, *tests])]
        splits = [""] * len(TRAIN) + ["", "train", "test"]  # the pattern beats a declared train
        write_zip(inbox / "Metadata.zip", {"FVC.csv": fvc_metadata(rows, splits)})
        after = ingest_and_fold(defs, instance)
        requested = dg.evaluate_automation_conditions(
            defs, instance, asset_selection=automated, cursor=settled.cursor
        )
        automation = {
            key for key in ["generalisation", "champion_model"]
            if requested.get_num_requested(dg.AssetKey(key))
        }  # fmt: skip
        evaluated = execute_run_request(defs, "training", EVERY_FOLD, instance)
        assert evaluated.success
        champion = execute_run_request(defs, "champion", dg.RunRequest(), instance)
        trained = SimpleNamespace(predictions_before=predictions_before, tags_before=tags_before,
                                  automation=automation, evaluated=evaluated,
                                  champion=champion)  # fmt: skip
        yield root, defs, instance, before, after, trained


def test_each_test_video_says_which_rule_made_it_test(test_archives):
    root = test_archives[0]
    table = query(root, "select video_id, split, split_reason from fvc.source_videos")
    decided = {row.video_id: (row.split, row.split_reason) for row in table.itertuples()}
    assert (
        decided[SHIFTED[0]]
        == decided[SHIFTED[1]]
        == (
            "test",
            "archive 'Shifted1.zip' matches test-archive pattern 'Shifted*.zip'",
        )
    )
    assert decided[DECLARED] == ("test", "split column of Metadata.zip:FVC.csv says test")
    assert {decided[v][0] for v in TRAIN} == {"train"}
    # every per-video asset holds the test videos too
    clips = query(root, "select distinct video_id from fvc.scaled_features")
    assert set(clips["video_id"]) == {*TRAIN, *SHIFTED, DECLARED}


def test_test_videos_get_no_fold_and_the_train_videos_keep_theirs(test_archives):
    root, _, _, before, after, *_ = test_archives
    assert after.success
    pd_after = query(root, "select * from fvc.cv_folds")
    assert pd_after.equals(before) and set(pd_after["video_id"]) == set(TRAIN)


def test_test_videos_original_clips_are_test_rows_of_every_fold(test_archives):
    root, _, _, _, after, *_ = test_archives
    rows = query(root, "select * from fvc.training_clips")
    tests = rows[rows["video_id"].isin([*SHIFTED, DECLARED])]
    assert set(tests["role"]) == {"test"} and set(tests["aug_index"]) == {-1}
    assert sorted(tests.groupby("video_id")["fold"].agg(sorted).items()) == [
        (v, list(range(N_FOLDS))) for v in sorted([DECLARED, *SHIFTED])
    ]
    checks = {e.check_name: e.passed for e in after.get_asset_check_evaluations()}
    assert checks["no_test_video_in_folds"] and checks["no_test_video_in_training"]


def test_a_planted_test_video_fails_the_blocking_check_and_no_model_runs(test_archives, tmp_path):
    template, *_ = test_archives
    root = tmp_path / "root"
    shutil.copytree(template, root)
    # source_videos' split column wrongly says train: the folds take the video, while the check
    # decides again from its archive and declared split
    with duckdb.connect(str(root / "warehouse.duckdb")) as con:
        con.execute("update fvc.source_videos set split = 'train' where video_id = ?", [DECLARED])
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(videos_partitions.name, [*TRAIN, *SHIFTED, DECLARED])
        defs = build_defs(root, test_archives=TEST_ARCHIVES)
        every_fold = dg.RunRequest(tags=partition_range_tags("0", str(N_FOLDS - 1)))
        result = execute_run_request(defs, "training", every_fold, instance)

        assert not result.success
        check = check_named(result, "no_test_video_in_folds")
        assert not check.passed
        assert check.metadata["test_videos_used"].value == [DECLARED]
        assert check.metadata["examples"].value[0]["reason"] == "split column of metadata says test"
        materialized = {e.asset_key for e in result.get_asset_materialization_events()}
        assert materialized == {dg.AssetKey("cv_folds")}
        started = {
            r.dagster_event.step_key
            for r in instance.all_logs(result.run_id, of_type=dg.DagsterEventType.STEP_START)
        }
        assert started and all(step.startswith("cv_folds") for step in started)  # and its checks


def test_a_test_video_training_a_fold_fails_the_training_clips_check(test_archives):
    root, defs, *_ = test_archives
    rows = query(root, "select * from fvc.training_clips")
    planted = rows.assign(role=rows["role"].where(rows["video_id"] != SHIFTED[0], "train"))
    result = no_test_video_in_training(
        training_clips=planted, warehouse=defs.resources["warehouse"], inbox=defs.resources["inbox"]
    )
    assert not result.passed and result.metadata["test_videos_used"].value == [SHIFTED[0]]


def test_every_fold_of_every_model_scores_the_test_videos(test_archives):
    root = test_archives[0]
    for model in MODELS:
        rows = query(root, f"select * from fvc.{model} where role = 'test'")
        assert sorted(rows.groupby("video_id")["fold"].agg(sorted).items()) == [
            (v, [str(f) for f in range(N_FOLDS)]) for v in sorted([DECLARED, *SHIFTED])
        ], model


def test_test_rows_change_nothing_cross_validated(test_archives):
    root, *_, trained = test_archives
    after = query(root, "select * from fvc.fold_predictions")
    assert set(after["role"]) == {"validation"} and set(after["model"]) == set(MODELS)
    assert after.drop(columns="mlflow_run_id").equals(
        trained.predictions_before.drop(columns="mlflow_run_id")
    )


def test_the_test_roc_auc_is_that_of_the_mean_fold_probability_per_video(test_archives):
    root, *_, trained = test_archives
    table = query(root, "select * from fvc.generalisation")
    assert list(table["model"]) == list(
        query(root, "select model from fvc.model_comparison")["model"]
    )
    for model in MODELS:
        rows = query(root, f"select * from fvc.{model} where role = 'test'")
        videos = rows.groupby("video_id").agg(label=("label", "first"), p=("probability", "mean"))
        row = table.set_index("model").loc[model]
        expected = roc_auc_score(videos["label"] == "fake", videos["p"])
        assert row["test_roc_auc"] == pytest.approx(expected, abs=1e-4)
        assert row["test_videos"] == 3 and row["test_folds"] == N_FOLDS
        assert row["test_roc_auc_low"] <= row["test_roc_auc_high"]
    shown = trained.evaluated.asset_materializations_for_node("generalisation")[0].metadata
    assert "test roc_auc [95% CI]" in shown["generalisation"].value
    assert "data:image/png;base64," in shown["cv_vs_test_roc_auc"].value


def test_no_prediction_reads_a_test_videos_label(test_archives):
    root = test_archives[0]
    clips = query(root, "select * from fvc.training_clips")
    features = clip_features(
        query(root, "select * from fvc.handcrafted_features"),
        query(root, "select * from fvc.scaled_features"),
    )
    test = clips["role"] == "test"
    flipped = clips.assign(label=clips["label"].where(~test, clips["label"].map(
        {"real": "fake", "fake": "real"})))  # fmt: skip
    stored = query(root, "select * from fvc.logistic_regression where role = 'test'")
    learners = [tabular_learner(m, features, CLIP_FEATURES) for m in models_of("tabular")]
    ensemble = query(root, "select * from fvc.ensemble where role = 'test'")
    for fold in range(N_FOLDS):
        data = fold_data(flipped, features, fold, CLIP_FEATURES)
        mine = stored[stored["fold"] == str(fold)].set_index("clip_id")["probability"]
        scored = pd.Series(train_fold("logistic_regression", data).test_probabilities,
                           index=data.test["clip_id"])  # fmt: skip
        assert np.allclose(scored.sort_index(), mine.sort_index())
        stacked = stack_fold(flipped, learners, fold).test_predictions.set_index("clip_id")
        theirs = ensemble[ensemble["fold"] == str(fold)].set_index("clip_id")["probability"]
        assert np.allclose(stacked["probability"].sort_index(), theirs.sort_index())


def test_new_test_videos_update_generalisation_and_the_champion_by_automation(test_archives):
    # once the test archives' videos are folded, the automation asks for both again
    assert test_archives[-1].automation == {"generalisation", "champion_model"}


def test_the_champion_carries_its_test_score(test_archives):
    root, *_, trained = test_archives
    assert trained.tags_before["test_roc_auc"] == "no test videos"
    assert trained.tags_before["test_roc_auc_interval"] == "no test videos"
    # the same train videos, the same champion: its version's test tags are updated in place
    assert trained.champion.success
    assert not trained.champion.output_for_node("champion_model")["newly_registered"][0]
    version = MlflowClient(local_tracking_uri(root)).get_model_version_by_alias(
        REGISTERED_MODEL, ALIAS
    )
    row = (
        query(root, "select * from fvc.generalisation")
        .set_index("model")
        .loc[version.tags["model"]]
    )
    assert version.tags["test_roc_auc"] == f"{row['test_roc_auc']:.4f}"
    assert version.tags["test_roc_auc_interval"] == (
        f"[{row['test_roc_auc_low']:.4f}, {row['test_roc_auc_high']:.4f}]"
    )
    assert version.tags["test_videos"] == "3"
    assert version.tags["training_data"] == trained.tags_before["training_data"]
