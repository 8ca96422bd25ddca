"""A video network asset through Dagster on a tiny corpus: its rows beside the baselines', its
MLflow runs, its checkpoints and a resumed re-materialization; metrics without any network."""

import contextlib
import io
import os
import shutil
from pathlib import Path

import dagster as dg
import mlflow
import pandas as pd
import pytest
import torch

from conftest import (
    archive_sensor_tick,
    labelled_metadata,
    query,
    write_labelled_inbox,
    write_zip,
)
from fvc_dagster.definitions import build_defs
from fvc_dagster.defs.partitions import N_FOLDS
from fvc_dagster.lib.models import models_of
from fvc_dagster.lib.training.tracking import load_logged_network
from fvc_dagster.local.demo import run_demo, train_networks

TABULAR = models_of("tabular")

VIDEOS = [f"tinyvid{n:04d}" for n in range(10)]  # five real and five fake cascades: two per fold
NETWORK = "naive_cnn"
TINY_TRAINING = {"weights": "random", "frames": 2, "pixels": 16, "epochs": 2, "batch_size": 32}


@pytest.fixture(scope="module")
def platform(tmp_path_factory, video_bytes_factory):
    """The demo (baselines only) on ten tiny labelled videos, then `naive_cnn` on every fold in
    one run as the demo trains networks: the data root, the Definitions, the instance, the run
    and the fold metrics before any network trained."""
    root = tmp_path_factory.mktemp("networks")
    write_labelled_inbox(root / "inbox", VIDEOS, video_bytes_factory)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DAGSTER_HOME", str(root / "dagster_home"))
        with contextlib.redirect_stdout(io.StringIO()):
            assert run_demo(root, networks=(), embedding_models=(), test_videos=0) == 0
        metrics_before = query(root, "select * from fvc.fold_metrics")
        defs = build_defs(root)
        instance = dg.DagsterInstance.get()
        assert train_networks(defs, [NETWORK], instance, TINY_TRAINING)
        (run,) = instance.get_runs(dg.RunsFilter(job_name="networks"))
        assert train_networks(defs, [NETWORK], instance, TINY_TRAINING)  # up to date: no run
        assert len(instance.get_runs(dg.RunsFilter(job_name="networks"))) == 1
        yield root, defs, instance, run, metrics_before


def test_fold_metrics_hold_the_baselines_when_no_network_was_trained(platform):
    metrics_before = platform[4]
    assert set(metrics_before["model"]) == {*TABULAR, "ensemble"}
    assert len(metrics_before) == (len(TABULAR) + 1) * N_FOLDS
    assert set(metrics_before["weights"]) == {"-"}


def test_a_network_trains_every_fold_and_joins_the_comparison(platform):
    root, _, _, run, _ = platform
    assert run.status == dg.DagsterRunStatus.SUCCESS
    table = query(root, f"select * from fvc.{NETWORK} order by fold")
    assert sorted(table["fold"].unique()) == [str(f) for f in range(N_FOLDS)]
    assert set(table["weights"]) == {"random"} and table["probability"].between(0, 1).all()
    assert (table["n_train"] > 0).all()
    # Every held-out original clip of every labelled video, once per fold it is held out in.
    validation = query(root, "select * from fvc.training_clips where role = 'validation'")
    assert sorted(table["clip_id"]) == sorted(validation["clip_id"])
    predictions = query(root, "select * from fvc.fold_predictions")
    assert len(predictions) == (len(TABULAR) + 2) * len(validation)  # and the ensemble
    metrics = query(root, "select * from fvc.fold_metrics")
    assert metrics["roc_auc"].notna().all() and (metrics["n_validation"] > 0).all()
    # networks never trained are absent; the ensemble stacks what it can refit, not networks
    assert set(metrics["model"]) == {*TABULAR, NETWORK, "ensemble"}
    assert len(metrics) == (len(TABULAR) + 2) * N_FOLDS
    instance = platform[2]
    (record,) = instance.fetch_materializations(dg.AssetKey("ensemble"), limit=1).records
    assert record.asset_materialization.metadata["base_models"].value == list(TABULAR)
    comparison = query(root, "select * from fvc.model_comparison")
    assert dict(zip(comparison["model"], comparison["weights"], strict=True)) == {
        **dict.fromkeys([*TABULAR, "ensemble"], "-"),
        NETWORK: "random",
    }
    assert (comparison["folds"] == N_FOLDS).all()


def test_each_fold_is_a_finished_mlflow_run_with_epochs_and_the_best_model(platform):
    root, _, _, run, _ = platform
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["fvc-networks"], order_by=["tags.fold"])
    assert runs["tags.fold"].tolist() == [str(f) for f in range(N_FOLDS)]
    assert set(runs["status"]) == {"FINISHED"}
    assert set(runs["tags.dagster_run_id"]) == {run.run_id}
    assert set(runs["params.weights"]) == {"random"} and set(runs["params.pixels"]) == {"16"}
    table = query(root, f"select * from fvc.{NETWORK}")
    assert set(table["mlflow_run_id"]) == set(runs["run_id"])
    metrics = query(root, f"select * from fvc.fold_metrics where model = '{NETWORK}'")
    logged = runs.set_index("run_id")["metrics.roc_auc"]
    assert metrics["roc_auc"].tolist() == logged[metrics["mlflow_run_id"]].tolist()
    client = mlflow.MlflowClient()
    run_id = runs.iloc[0]["run_id"]
    for metric in ("train_loss", "val_loss", "val_roc_auc", "data_wait_share", "seconds"):
        assert [m.step for m in client.get_metric_history(run_id, metric)] == [1, 2], metric
    assert runs["metrics.roc_auc"].notna().all()
    model = load_logged_network(run_id)  # weights and registry name: no pickle to load
    assert model(torch.zeros(1, 3, 2, 16, 16)).shape == (1, 1)


def test_a_rematerialized_fold_resumes_from_its_checkpoint_and_gives_the_same_rows(platform):
    root, defs, instance, _, _ = platform
    (checkpoint,) = (root / "checkpoints" / NETWORK / "fold0").iterdir()
    assert {p.name for p in checkpoint.iterdir()} >= {"last.pt", "best.pt"}
    before = query(root, f"select * from fvc.{NETWORK} where fold = '0'")

    again = defs.resolve_job_def("networks").execute_in_process(
        instance=instance,
        partition_key="0",
        asset_selection=[dg.AssetKey(NETWORK)],
        run_config={"ops": {NETWORK: {"config": TINY_TRAINING}}},
    )

    (materialization,) = again.asset_materializations_for_node(NETWORK)
    assert materialization.metadata["resumed_from_epoch"].value == {"0": 2}
    after = query(root, f"select * from fvc.{NETWORK} where fold = '0'")
    assert after.drop(columns="mlflow_run_id").equals(before.drop(columns="mlflow_run_id"))
    assert len(list((root / "checkpoints" / NETWORK / "fold0").iterdir())) == 1
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    run = mlflow.get_run(after["mlflow_run_id"].iloc[0])
    assert run.info.status == "FINISHED" and run.data.params["resumed_from_epoch"] == "2"
    client = mlflow.MlflowClient()
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == [1, 2]


# Runs last: it relabels the corpus the tests above read.
HELD_OUT = 2
EMBEDDING = "xgboost_pretrained_inception"
BLIND_TRAINING = {**TINY_TRAINING, "epochs": 4, "patience": 1}  # early stopping on an inner fold


def retrain_on_demand_models(root: Path, defs, instance) -> pd.DataFrame:
    """The network (from scratch: checkpoints removed) and the embedding model on every fold,
    then the ensemble and the predictions; every model's held-out predictions."""
    from fvc_dagster.defs.jobs import NETWORK_DOWNSTREAM
    from fvc_dagster.local.demo import _all_folds, embed_clips, execute_run_request

    shutil.rmtree(root / "checkpoints", ignore_errors=True)
    assert embed_clips(defs, instance, VIDEOS, [EMBEDDING])
    selection = [dg.AssetKey(k) for k in (NETWORK, EMBEDDING, *NETWORK_DOWNSTREAM)]
    ops = {NETWORK: {"config": BLIND_TRAINING}}
    run = execute_run_request(defs, "networks", _all_folds(), instance, selection, ops)
    assert run.success
    return query(root, "select * from fvc.fold_predictions")


@pytest.fixture(scope="module")
def relabelled(platform):
    """Every model kind's held-out predictions; then every label of fold 2's videos flipped in
    the metadata archive, picked up by the archive sensor, and every model retrained; the
    predictions and folds before and after, the flipped videos and the `training` run between
    the relabel and the retraining of the on-request models."""
    from fvc_dagster.local.demo import _all_folds, execute_run_request, run_video_batches

    root, defs, instance, _, _ = platform
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(io.StringIO()):
        patch.setenv("DAGSTER_HOME", str(root / "dagster_home"))
        before = retrain_on_demand_models(root, defs, instance)
        _, cursor = archive_sensor_tick(defs, instance, None)  # the sensor's state until now
        folds = query(root, "select video_id, fold, label from fvc.cv_folds")
        flip = set(folds.loc[folds["fold"] == HELD_OUT, "video_id"])
        labels = folds.set_index("video_id")["label"]
        swapped = {"real": "fake", "fake": "real"}
        flipped = [swapped[labels[v]] if v in flip else labels[v] for v in VIDEOS]
        metadata = root / "inbox" / "Metadata.zip"
        write_zip(metadata, {"FVC.csv": labelled_metadata(VIDEOS, labels=flipped)})
        os.utime(metadata, (metadata.stat().st_atime, metadata.stat().st_mtime + 60))
        requests, _ = archive_sensor_tick(defs, instance, cursor)
        assert requests and all(r.run_key.startswith("relabel:") for r in requests)
        run_video_batches(defs, requests, instance)
        training = execute_run_request(defs, "training", _all_folds(), instance)
        assert training.success
        after = retrain_on_demand_models(root, defs, instance)
        folds_after = query(root, "select video_id, fold, label from fvc.cv_folds")
    return before, after, folds, folds_after, flip, training


def test_flipping_a_folds_labels_leaves_its_predictions_bit_identical_for_every_model_kind(
    relabelled,
):
    before, after, folds, folds_after, flip, _ = relabelled
    assert folds_after[["video_id", "fold"]].equals(folds[["video_id", "fold"]])  # stable folds
    assert (folds_after.set_index("video_id").loc[sorted(flip), "label"]
            != folds.set_index("video_id").loc[sorted(flip), "label"]).all()  # fmt: skip
    kinds = {*TABULAR, NETWORK, EMBEDDING, "ensemble"}
    assert set(before["model"]) == kinds
    for model in kinds:
        held = [t[(t["model"] == model) & (t["fold"] == HELD_OUT)].sort_values("clip_id")
                for t in (before, after)]  # fmt: skip
        assert set(held[1]["video_id"]) == flip
        assert (held[0]["label"].to_numpy() != held[1]["label"].to_numpy()).all(), model
        assert held[0]["probability"].to_numpy().tobytes() == (
            held[1]["probability"].to_numpy().tobytes()
        ), f"{model}: fold {HELD_OUT}'s predictions moved when its own labels flipped"
    # the flipped labels did reach the other folds' fits
    others = [
        t[(t["model"] == "logistic_regression") & (t["fold"] != HELD_OUT)]
        .sort_values(["fold", "clip_id"])["probability"]
        .to_numpy()
        for t in (before, after)
    ]
    assert not (others[0] == others[1]).all()


def test_until_retrained_the_relabelled_models_are_stale_and_the_ensemble_keeps_its_learner(
    relabelled,
):
    """The `training` run after the relabel left the network and the embedding model out of
    the predictions as stale; the ensemble kept stacking the embedding model, refit on the
    current labels: fold 2's labels decide nothing in fold 2."""
    flip, training = relabelled[4], relabelled[5]
    reason = f"{len(flip)} videos relabelled since scored ({', '.join(sorted(flip))})"
    (predictions,) = training.asset_materializations_for_node("fold_predictions")
    assert predictions.metadata["stale_models"].value == {NETWORK: reason, EMBEDDING: reason}
    ensemble = training.asset_materializations_for_node("ensemble")[0]
    assert ensemble.metadata["base_models"].value == [*TABULAR, EMBEDDING]
    assert ensemble.metadata["stale_models_left_out"].value == {}


def test_every_fit_of_every_model_kind_passes_its_blindness_check(relabelled, platform):
    instance = platform[2]
    for asset in ("logistic_regression", NETWORK, EMBEDDING, "ensemble"):
        key = dg.AssetCheckKey(dg.AssetKey(asset), "fit_blind_to_its_fold")
        record = instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key]
        evaluation = record.event.dagster_event.event_specific_data
        assert evaluation.passed and evaluation.metadata["folds_checked"].value == N_FOLDS, asset


def test_a_network_that_chooses_its_epoch_on_the_held_out_fold_fails_the_blocking_check(
    platform, relabelled, monkeypatch
):
    """A planted variant of the flaw this check exists for: each fold's epoch chosen on the
    very clips it is scored on. The check fails and nothing downstream is materialized."""
    from fvc_dagster.defs.jobs import NETWORK_DOWNSTREAM
    from fvc_dagster.lib.training import networks as network_training
    from fvc_dagster.local.demo import _all_folds, execute_run_request

    honest = network_training.fold_clips

    def selecting_on_the_held_out_fold(*args, **kwargs):
        folds = honest(*args, **kwargs)
        for clips in folds.values():
            clips.selection_rows, clips.selection = clips.held_out_rows, clips.held_out
        return folds

    monkeypatch.setattr(network_training, "fold_clips", selecting_on_the_held_out_fold)
    root, defs, instance, _, _ = platform
    monkeypatch.setenv("DAGSTER_HOME", str(root / "dagster_home"))
    shutil.rmtree(root / "checkpoints", ignore_errors=True)
    selection = [dg.AssetKey(k) for k in (NETWORK, *NETWORK_DOWNSTREAM)]
    ops = {NETWORK: {"config": BLIND_TRAINING}}
    run = execute_run_request(defs, "networks", _all_folds(), instance, selection, ops)
    evaluations = {e.check_name: e for e in run.get_asset_check_evaluations()
                   if e.asset_key == dg.AssetKey(NETWORK)}  # fmt: skip
    evaluation = evaluations["fit_blind_to_its_fold"]
    assert not evaluation.passed
    assert evaluation.metadata["leaked_or_stray_videos"].value == len(VIDEOS)
    assert evaluations["predictions_match_the_folds"].passed  # current, yet leaking
    assert not run.success
    materialized = {e.asset_key.to_user_string() for e in run.get_asset_materialization_events()}
    assert NETWORK in materialized
    assert not materialized & {"fold_predictions", "fold_metrics", "model_comparison"}
