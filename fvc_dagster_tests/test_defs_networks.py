"""A video network asset through Dagster on a tiny corpus: its rows beside the baselines', its
MLflow runs, its checkpoints and a resumed re-materialization; metrics without any network."""

import contextlib
import io
from pathlib import Path

import dagster as dg
import duckdb
import mlflow
import pandas as pd
import pytest
import torch

from conftest import write_labelled_inbox
from fvc_dagster.definitions import build_defs
from fvc_dagster.defs.partitions import N_FOLDS
from fvc_dagster.demo import run_demo, train_networks
from fvc_dagster.lib.models import BASELINES

VIDEOS = [f"tinyvid{n:04d}" for n in range(10)]  # five real and five fake cascades: two per fold
NETWORK = "naive_cnn"
TINY_TRAINING = {"weights": "random", "frames": 2, "pixels": 16, "epochs": 2, "batch_size": 32}


def query(root: Path, sql: str) -> pd.DataFrame:
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as con:
        return con.execute(sql).df()


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
            assert run_demo(root, networks=(), embedding_models=()) == 0
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
    assert set(metrics_before["model"]) == {*BASELINES, "ensemble"}
    assert len(metrics_before) == (len(BASELINES) + 1) * N_FOLDS
    assert set(metrics_before["weights"]) == {"-"}


def test_a_network_trains_every_fold_and_joins_the_comparison(platform):
    root, _, _, run, _ = platform
    assert run.status == dg.DagsterRunStatus.SUCCESS
    table = query(root, f"select * from fvc.network_{NETWORK} order by fold")
    assert sorted(table["fold"].unique()) == [str(f) for f in range(N_FOLDS)]
    assert set(table["weights"]) == {"random"} and table["probability"].between(0, 1).all()
    assert (table["n_train"] > 0).all()
    # Every held-out original clip of every labelled video, once per fold it is held out in.
    validation = query(root, "select * from fvc.training_clips where role = 'validation'")
    assert sorted(table["clip_id"]) == sorted(validation["clip_id"])
    predictions = query(root, "select * from fvc.fold_predictions")
    assert len(predictions) == (len(BASELINES) + 2) * len(validation)  # and the ensemble
    metrics = query(root, "select * from fvc.fold_metrics")
    assert metrics["roc_auc"].notna().all() and (metrics["n_validation"] > 0).all()
    # networks never trained are absent; the ensemble stacks the network too
    assert set(metrics["model"]) == {*BASELINES, NETWORK, "ensemble"}
    assert len(metrics) == (len(BASELINES) + 2) * N_FOLDS
    instance = platform[2]
    (record,) = instance.fetch_materializations(dg.AssetKey("ensemble"), limit=1).records
    assert NETWORK + "[random]" in record.asset_materialization.metadata["base_models"].value
    comparison = query(root, "select * from fvc.model_comparison")
    assert dict(zip(comparison["model"], comparison["weights"], strict=True)) == {
        **dict.fromkeys([*BASELINES, "ensemble"], "-"),
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
    table = query(root, f"select * from fvc.network_{NETWORK}")
    assert set(table["mlflow_run_id"]) == set(runs["run_id"])
    metrics = query(root, f"select * from fvc.fold_metrics where model = '{NETWORK}'")
    logged = runs.set_index("run_id")["metrics.roc_auc"]
    assert metrics["roc_auc"].tolist() == logged[metrics["mlflow_run_id"]].tolist()
    client = mlflow.MlflowClient()
    run_id = runs.iloc[0]["run_id"]
    for metric in ("train_loss", "val_loss", "val_roc_auc", "data_wait_share", "seconds"):
        assert [m.step for m in client.get_metric_history(run_id, metric)] == [1, 2], metric
    assert runs["metrics.roc_auc"].notna().all()
    model = mlflow.pytorch.load_model(f"runs:/{run_id}/model").eval()
    assert model(torch.zeros(1, 3, 2, 16, 16)).shape == (1, 1)


def test_a_rematerialized_fold_resumes_from_its_checkpoint_and_gives_the_same_rows(platform):
    root, defs, instance, _, _ = platform
    (checkpoint,) = (root / "checkpoints" / NETWORK / "fold0").iterdir()
    assert {p.name for p in checkpoint.iterdir()} >= {"last.pt", "best.pt"}
    before = query(root, f"select * from fvc.network_{NETWORK} where fold = '0'")

    again = defs.resolve_job_def("networks").execute_in_process(
        instance=instance,
        partition_key="0",
        asset_selection=[dg.AssetKey(f"network_{NETWORK}")],
        run_config={"ops": {f"network_{NETWORK}": {"config": TINY_TRAINING}}},
    )

    (materialization,) = again.asset_materializations_for_node(f"network_{NETWORK}")
    assert materialization.metadata["resumed_from_epoch"].value == {"0": 2}
    after = query(root, f"select * from fvc.network_{NETWORK} where fold = '0'")
    assert after.drop(columns="mlflow_run_id").equals(before.drop(columns="mlflow_run_id"))
    assert len(list((root / "checkpoints" / NETWORK / "fold0").iterdir())) == 1
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    run = mlflow.get_run(after["mlflow_run_id"].iloc[0])
    assert run.info.status == "FINISHED" and run.data.params["resumed_from_epoch"] == "2"
    client = mlflow.MlflowClient()
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == [1, 2]
