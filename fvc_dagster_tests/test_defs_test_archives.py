"""Test archives through Dagster: videos declared test by a metadata `split` column or by an
archive pattern go through the per-video assets, get no fold and only `test` rows, and a test
video planted in the folds fails the blocking check before any model runs."""

import shutil

import dagster as dg
import duckdb
import pytest

from conftest import fvc_metadata, labelled_video, query, write_labelled_inbox, write_zip
from fvc_dagster.definitions import build_defs
from fvc_dagster.defs.folds.checks import no_test_video_in_training
from fvc_dagster.defs.partitions import N_FOLDS, partition_range_tags, videos_partitions
from fvc_dagster.local.demo import execute_run_request, run_video_batches, scan_inbox

TRAIN = [f"trainvid{n:03d}" for n in range(10)]  # a real and a fake cascade a fold
SHIFTED = ["shiftvid001", "shiftvid002"]  # in Shifted1.zip: test by FVC_TEST_ARCHIVES
DECLARED = "declvid0001"  # in FVC2.zip, declared test by the metadata's split column
TEST_ARCHIVES = "Shifted*.zip,Test*.zip"
FOLD_ASSETS = [dg.AssetKey("cv_folds"), dg.AssetKey("training_clips")]


def ingest_and_fold(
    defs: dg.Definitions, instance: dg.DagsterInstance
) -> dg.ExecuteInProcessResult:
    """A sensor tick, its video runs, then `cv_folds` and `training_clips` with their checks."""
    run_video_batches(defs, scan_inbox(defs, instance), instance)
    every_fold = dg.RunRequest(tags=partition_range_tags("0", str(N_FOLDS - 1)))
    return execute_run_request(defs, "training", every_fold, instance, FOLD_ASSETS)


@pytest.fixture(scope="module")
def test_archives(tmp_path_factory, video_bytes_factory):
    """The train videos ingested and folded; then two archives of test videos arrive and are
    ingested and folded in turn. Yields the data root, the folds before the test videos came,
    and the second fold run."""
    root = tmp_path_factory.mktemp("test_archives")
    inbox = write_labelled_inbox(root / "inbox", TRAIN, video_bytes_factory)
    with dg.instance_for_test() as instance:
        defs = build_defs(root, test_archives=TEST_ARCHIVES)
        assert ingest_and_fold(defs, instance).success
        before = query(root, "select * from fvc.cv_folds")

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
        yield root, defs, instance, before, after


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
    root, _, _, before, after = test_archives
    assert after.success
    pd_after = query(root, "select * from fvc.cv_folds")
    assert pd_after.equals(before) and set(pd_after["video_id"]) == set(TRAIN)


def test_test_videos_original_clips_are_test_rows_of_every_fold(test_archives):
    root, _, _, _, after = test_archives
    rows = query(root, "select * from fvc.training_clips")
    tests = rows[rows["video_id"].isin([*SHIFTED, DECLARED])]
    assert set(tests["role"]) == {"test"} and set(tests["aug_index"]) == {-1}
    assert sorted(tests.groupby("video_id")["fold"].agg(sorted).items()) == [
        (v, list(range(N_FOLDS))) for v in sorted([DECLARED, *SHIFTED])
    ]
    checks = {e.check_name: e.passed for e in after.get_asset_check_evaluations()}
    assert checks["no_test_video_in_folds"] and checks["no_test_video_in_training"]


def test_a_planted_test_video_fails_the_blocking_check_and_no_model_runs(test_archives, tmp_path):
    template, _, _, _, _ = test_archives
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
        (check,) = [
            e
            for e in result.get_asset_check_evaluations()
            if e.check_name == "no_test_video_in_folds"
        ]
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
    root, defs, _, _, _ = test_archives
    rows = query(root, "select * from fvc.training_clips")
    planted = rows.assign(role=rows["role"].where(rows["video_id"] != SHIFTED[0], "train"))
    result = no_test_video_in_training(
        training_clips=planted, warehouse=defs.resources["warehouse"], inbox=defs.resources["inbox"]
    )
    assert not result.passed and result.metadata["test_videos_used"].value == [SHIFTED[0]]
