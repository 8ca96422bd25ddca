"""Clip embeddings and an XGBoost model on them through Dagster on a tiny corpus: a row per clip,
held-out predictions for every validation clip, finished MLflow runs, and a re-materialized
model that reads the stored embeddings instead of computing them."""

import contextlib
import io

import dagster as dg
import mlflow
import numpy as np
import pytest

from conftest import query, write_labelled_inbox
from fvc_dagster.definitions import build_defs
from fvc_dagster.defs.partitions import N_FOLDS, partition_range_tags
from fvc_dagster.lib.training.embeddings import ClipEmbedder
from fvc_dagster.local.demo import execute_run_request

VIDEOS = [f"embedvid{n:03d}" for n in range(10)]  # YouTube-like ids (11 characters): two a fold
BACKBONE, MODEL = "pretrained_inception", "xgboost_pretrained_inception"
TINY = {"backbones": [BACKBONE], "weights": "random", "frames": 2, "pixels": 16}
FOLDS = [str(f) for f in range(N_FOLDS)]


def materialize(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    asset: str,
    keys: list[str],
    config: dict | None = None,
) -> dg.ExecuteInProcessResult:
    """One run of `asset` over the partitions `keys` (a contiguous range), as the UI launches."""
    key = dg.AssetKey(asset)
    return defs.resolve_implicit_job_def_def_for_assets([key]).execute_in_process(
        instance=instance,
        asset_selection=[key],
        tags=partition_range_tags(keys[0], keys[-1]),
        run_config={"ops": {asset: {"config": config}}} if config else None,
        raise_on_error=False,
    )


def materializations(instance: dg.DagsterInstance, asset: str) -> int:
    return len(instance.fetch_materializations(dg.AssetKey(asset), limit=1000).records)


@pytest.fixture(scope="module")
def platform(tmp_path_factory, video_bytes_factory):
    """Ten tiny labelled videos through the video pipeline and the folds (`cv_folds`,
    `training_clips`: all the embedding models need), then `clip_embeddings` of one backbone
    for every video in one run and its XGBoost model on every fold in another: the data root,
    the Definitions, the instance and the two runs."""
    root = tmp_path_factory.mktemp("embeddings")
    write_labelled_inbox(root / "inbox", VIDEOS, video_bytes_factory)
    (root / "dagster_home").mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DAGSTER_HOME", str(root / "dagster_home"))
        defs = build_defs(root)
        instance = dg.DagsterInstance.get()
        instance.add_dynamic_partitions("videos", VIDEOS)
        with contextlib.redirect_stdout(io.StringIO()):
            videos = dg.RunRequest(tags=partition_range_tags(VIDEOS[0], VIDEOS[-1]))
            assert execute_run_request(defs, "video_pipeline", videos, instance).success
            folds = dg.RunRequest(tags=partition_range_tags(FOLDS[0], FOLDS[-1]))
            selection = [dg.AssetKey("cv_folds"), dg.AssetKey("training_clips")]
            assert execute_run_request(defs, "training", folds, instance, selection).success
        embedded = materialize(defs, instance, "clip_embeddings", VIDEOS, TINY)
        assert embedded.success
        fitted = materialize(defs, instance, MODEL, FOLDS)
        assert fitted.success
        yield root, defs, instance, embedded.dagster_run, fitted.dagster_run


def test_clip_embeddings_hold_a_row_per_clip_of_every_video(platform):
    root = platform[0]
    table = query(root, "select * from fvc.clip_embeddings")
    scaled = query(root, "select clip_id, sha256 from fvc.scaled_clips")
    assert sorted(table["clip_id"]) == sorted(scaled["clip_id"])
    assert table.merge(scaled, on=["clip_id", "sha256"]).shape[0] == len(scaled)
    assert set(table["backbone"]) == {BACKBONE} and set(table["weights"]) == {"random"}
    assert set(table["frames"]) == {2} and set(table["pixels"]) == {16}
    types = query(root, "select data_type from information_schema.columns where "
                        "table_name = 'clip_embeddings' and column_name = 'embedding'")  # fmt: skip
    assert types["data_type"].tolist() == ["FLOAT[]"]
    assert np.stack(table["embedding"]).shape == (len(scaled), 512)


def test_the_model_scores_every_validation_clip_of_every_fold(platform):
    root = platform[0]
    table = query(root, f"select * from fvc.{MODEL}")
    validation = query(root, "select * from fvc.training_clips where role = 'validation'")
    assert sorted(table["clip_id"]) == sorted(validation["clip_id"])
    assert sorted(table["fold"].unique()) == FOLDS
    assert set(table["model"]) == {MODEL} and set(table["weights"]) == {"random"}
    assert table["probability"].between(0, 1).all()
    train = query(root, "select fold, count(*) as n from fvc.training_clips where role = 'train' "
                        "group by fold")  # fmt: skip
    n_train = table.groupby("fold")["n_train"].first()
    assert n_train.to_dict() == {str(f): n for f, n in zip(train["fold"], train["n"], strict=True)}


def test_each_fold_is_a_finished_mlflow_run_with_the_dagster_run_id(platform):
    root, _, _, _, run = platform
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["fvc-embeddings"], order_by=["tags.fold"])
    assert runs["tags.fold"].tolist() == FOLDS and set(runs["tags.model"]) == {MODEL}
    assert set(runs["status"]) == {"FINISHED"}
    assert set(runs["tags.dagster_run_id"]) == {run.run_id}
    assert set(runs["params.backbone"]) == {BACKBONE} and set(runs["params.pixels"]) == {"16"}
    assert set(runs["params.embedding_dim"]) == {"512"} and runs["metrics.roc_auc"].notna().all()
    table = query(root, f"select * from fvc.{MODEL}")
    assert set(table["mlflow_run_id"]) == set(runs["run_id"])


def test_a_rematerialized_model_reads_the_stored_embeddings(platform, monkeypatch):
    root, defs, instance, _, _ = platform
    before = query(root, f"select * from fvc.{MODEL} order by fold, clip_id")
    embedded = materializations(instance, "clip_embeddings")

    def never(*_):
        raise AssertionError("embeddings computed again")

    monkeypatch.setattr(ClipEmbedder, "embed", never)
    assert materialize(defs, instance, MODEL, FOLDS).success
    assert materializations(instance, "clip_embeddings") == embedded
    after = query(root, f"select * from fvc.{MODEL} order by fold, clip_id")
    assert after.drop(columns="mlflow_run_id").equals(before.drop(columns="mlflow_run_id"))


def test_a_model_whose_backbone_was_never_embedded_fails_naming_it(platform):
    _, defs, instance, _, _ = platform
    result = materialize(defs, instance, "xgboost_i3d", FOLDS)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    message = failure.step_failure_data.error.cause.message
    assert "no rows for backbone 'i3d'" in message and "materialize clip_embeddings" in message


def test_embedding_another_backbone_keeps_the_first_one_s_rows(platform):
    root, defs, instance, _, _ = platform
    video = VIDEOS[0]
    config = {**TINY, "backbones": ["r2plus1d"]}
    assert materialize(defs, instance, "clip_embeddings", [video], config).success
    table = query(root, "select * from fvc.clip_embeddings")
    both = table[table["video_id"] == video].groupby("backbone")["clip_id"].apply(sorted)
    assert set(both.index) == {BACKBONE, "r2plus1d"} and both[BACKBONE] == both["r2plus1d"]
    assert set(table.loc[table["video_id"] != video, "backbone"]) == {BACKBONE}
