"""The whole platform on a generated corpus, as `make demo` runs it; the demo with a corrupt
video; the fold and leakage checks in real runs; a failing fold's MLflow run."""

import contextlib
import io
import shutil
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
import mlflow
import pandas as pd
import pytest
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_START_TAG, PARTITION_NAME_TAG

from conftest import check_named, query, write_labelled_inbox
from fvc_dagster.definitions import build_defs
from fvc_dagster.defs.folds.checks import every_fold_has_both_classes, no_cascade_in_two_folds
from fvc_dagster.defs.partitions import N_FOLDS, partition_range_tags, videos_partitions
from fvc_dagster.lib.models import models_of
from fvc_dagster.lib.training.folds import groups_in_several_folds
from fvc_dagster.local.demo import DEMO_EMBEDDING_MODELS, execute_run_request, run_demo

TABULAR = models_of("tabular")
TEST = 6  # videos of the demo's held-out test archive (MPEG-4 Part 2, another seed)


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DAGSTER_HOME", str(root / "dagster_home"))
        assert run_demo(root, n_videos=40, n_archives=2, seed=1, networks=(), test_videos=TEST) == 0
    return root


def test_demo_leaves_every_table_and_leak_free_folds(demo_root):
    videos = query(demo_root, "select * from fvc.source_videos")
    assert videos["split"].value_counts().to_dict() == {"train": 40, "test": TEST}
    for table in ("augmented_clips", "handcrafted_features", "scaled_clips", "scaled_features"):
        assert len(query(demo_root, f"select * from fvc.{table}")) == (40 + TEST) * 11, table
    folds = query(demo_root, "select * from fvc.cv_folds")
    assert not set(folds["video_id"]) & set(videos.loc[videos["split"] == "test", "video_id"])
    assert groups_in_several_folds(folds) == [] and sorted(folds["fold"].unique()) == [
        0,
        1,
        2,
        3,
        4,
    ]
    metrics = query(demo_root, "select * from fvc.fold_metrics")
    models = {*TABULAR, *DEMO_EMBEDDING_MODELS, "ensemble"}
    assert len(metrics) == len(models) * N_FOLDS and set(metrics["model"]) == models
    comparison = query(demo_root, "select * from fvc.model_comparison")
    assert len(comparison) == len(models) and comparison["roc_auc_mean"].notna().all()
    # The demo embeds every clip with the cheapest backbone (r3d_18 of pretrained_inception).
    embeddings = query(demo_root, "select * from fvc.clip_embeddings")
    assert set(embeddings["backbone"]) == {"pretrained_inception"}
    assert len(embeddings) == (40 + TEST) * 11
    assert embeddings["embedding"].map(len).eq(512).all()
    # Every model's held-out probability for every validation clip.
    validation = query(demo_root, "select * from fvc.training_clips where role = 'validation'")
    predictions = query(demo_root, "select * from fvc.fold_predictions")
    for model in models:
        rows = predictions[predictions["model"] == model]
        assert sorted(zip(rows["fold"], rows["clip_id"], strict=True)) == sorted(
            zip(validation["fold"], validation["clip_id"], strict=True)
        ), model
    # the corpus carries a real splice: best mean ROC-AUC 0.988 here (LR and XGBoost; SVM 0.89)
    assert comparison["roc_auc_mean"].max() >= 0.9


def test_every_fold_run_is_a_finished_mlflow_run_with_its_dagster_run_id(demo_root):
    mlflow.set_tracking_uri(f"sqlite:///{demo_root / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["fvc-baselines"])
    assert set(runs["status"]) == {"FINISHED"}
    # the ensemble stacks the baselines, then again once the embedding model has joined them
    assert runs["tags.model"].value_counts().to_dict() == {
        **dict.fromkeys(TABULAR, N_FOLDS),
        "ensemble": 2 * N_FOLDS,
    }
    assert runs["tags.dagster_run_id"].notna().all()
    assert runs["metrics.roc_auc"].notna().all()
    client = mlflow.MlflowClient()
    for run_id in runs["run_id"]:  # one figure per model fold, in that fold's run
        assert "fold_figure.png" in {a.path for a in client.list_artifacts(run_id)}
    baseline = runs[runs["tags.model"] == "logistic_regression"].iloc[0]
    model = mlflow.sklearn.load_model(f"runs:/{baseline['run_id']}/model")
    assert hasattr(model, "predict_proba")
    assert runs["artifact_uri"].str.startswith((demo_root / "mlartifacts").as_uri()).all()


FIGURES = ("roc_auc_by_model", "roc_curves", "confusion_matrices")


def test_the_comparison_and_generalisation_show_their_figures_in_the_ui_and_in_mlflow(
    demo_root, monkeypatch
):
    monkeypatch.setenv("DAGSTER_HOME", str(demo_root / "dagster_home"))
    instance = dg.DagsterInstance.get()
    (record,) = instance.fetch_materializations(dg.AssetKey("model_comparison"), limit=1).records
    metadata = record.asset_materialization.metadata
    for name in FIGURES:
        assert metadata[name].value.startswith(f"![{name}](data:image/png;base64,"), name
    (record,) = instance.fetch_materializations(dg.AssetKey("generalisation"), limit=1).records
    shown = record.asset_materialization.metadata
    assert shown["cv_vs_test_roc_auc"].value.startswith("![cv_vs_test_roc_auc](data:image/png")
    # Every model scored the held-out test archive: a test ROC-AUC with its interval each.
    table = query(demo_root, "select * from fvc.generalisation")
    assert set(table["model"]) == {*TABULAR, *DEMO_EMBEDDING_MODELS, "ensemble"}
    labelled = query(demo_root, "select * from fvc.source_videos where split = 'test' "
                                "and label in ('real', 'fake')")  # fmt: skip
    assert 0 < len(labelled) <= TEST
    assert (table["test_videos"] == len(labelled)).all(), table
    assert table["test_roc_auc"].notna().all(), table
    assert (table["test_roc_auc_low"] <= table["test_roc_auc"]).all()
    mlflow.set_tracking_uri(f"sqlite:///{demo_root / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["fvc-comparison"])  # one per materialization
    assert set(runs["status"]) == {"FINISHED"}
    figures_of = {"model-comparison": {f"{name}.png" for name in FIGURES},
                  "generalisation": {"generalisation.png"}}  # fmt: skip
    assert runs["tags.mlflow.runName"].value_counts().to_dict() == dict.fromkeys(figures_of, 2)
    for run_id, name in zip(runs["run_id"], runs["tags.mlflow.runName"], strict=True):
        artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run_id)}
        assert artifacts == figures_of[name]


def test_a_second_demo_run_reuses_everything(demo_root, monkeypatch, capsys):
    monkeypatch.setenv("DAGSTER_HOME", str(demo_root / "dagster_home"))
    instance_runs = len(dg.DagsterInstance.get().get_run_records())
    assert (
        run_demo(demo_root, n_videos=40, n_archives=2, seed=1, networks=(), test_videos=TEST) == 0
    )
    assert len(dg.DagsterInstance.get().get_run_records()) == instance_runs
    out = capsys.readouterr().out
    assert "| model " in out and "above chance" in out


def test_fold_checks_pass_on_good_folds_and_fail_on_leaky_ones():
    good = pd.DataFrame(
        {
            "video_id": list("abcd"),
            "fold": [0, 0, 1, 1],
            "label": ["real", "fake"] * 2,
            "dup_group": list("ghij"),
        }
    )
    assert no_cascade_in_two_folds(good).passed
    leaky = good.assign(dup_group=["g", "g", "g", "j"])
    assert not no_cascade_in_two_folds(leaky).passed
    assert not every_fold_has_both_classes(good).passed  # folds 2-4 are empty


TINY = [f"tinyvid{n:04d}" for n in range(10)]  # five real and five fake cascades: two per fold
CORRUPT = "corruptvid1"


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory, video_bytes_factory) -> tuple[Path, int, str]:
    """`run_demo` on an inbox of ten tiny labelled videos and a corrupt one: the data root it
    leaves, its exit code and what it printed."""
    root = tmp_path_factory.mktemp("tiny_demo")
    corrupt = {f"{CORRUPT}.mp4": b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 200}
    write_labelled_inbox(root / "inbox", TINY, video_bytes_factory, extra=corrupt)
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(printed):
        patch.setenv("DAGSTER_HOME", str(root / "dagster_home"))
        exit_code = run_demo(root, networks=(), embedding_models=(), test_videos=0)
    return root, exit_code, printed.getvalue()


def test_demo_splits_a_failed_batch_trains_on_the_good_videos_and_fails_naming_the_bad_one(
    tiny_demo, monkeypatch
):
    root, exit_code, printed = tiny_demo
    assert exit_code == 1
    last_line = printed.strip().splitlines()[-1]
    assert last_line.startswith(
        f"videos that failed in video_pipeline, not in training (1): {CORRUPT};"
    )
    monkeypatch.setenv("DAGSTER_HOME", str(root / "dagster_home"))
    instance = dg.DagsterInstance.get()
    runs = [
        r.dagster_run
        for r in instance.get_run_records(dg.RunsFilter(job_name="video_pipeline"), ascending=True)
    ]
    # the whole batch fails; split_failed_video_batches re-runs the good videos as a batch and
    # the bad one alone
    assert [
        (r.tags.get(ASSET_PARTITION_RANGE_START_TAG), r.tags.get(PARTITION_NAME_TAG), r.status)
        for r in runs
    ] == [
        (TINY[0], None, dg.DagsterRunStatus.FAILURE),
        (TINY[0], None, dg.DagsterRunStatus.SUCCESS),
        (None, CORRUPT, dg.DagsterRunStatus.FAILURE),
    ]
    assert instance.get_materialized_partitions(dg.AssetKey("scaled_features")) == set(TINY)
    assert set(query(root, "select video_id from fvc.cv_folds")["video_id"]) == set(TINY)
    assert len(query(root, "select * from fvc.fold_metrics")) == (len(TABULAR) + 1) * N_FOLDS


@contextlib.contextmanager
def copy_of(
    template: Path, tmp_path: Path
) -> Iterator[tuple[dg.Definitions, dg.DagsterInstance, Path]]:
    """Definitions over a copy of `template` (tables, clip files, MLflow store) and a fresh
    instance that knows its good videos."""
    root = tmp_path / "root"
    shutil.copytree(template, root)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(videos_partitions.name, TINY)
        yield build_defs(root), instance, root


def execute(root: Path, sql: str, params: list | None = None) -> pd.DataFrame:
    with duckdb.connect(str(root / "warehouse.duckdb")) as con:
        return con.execute(sql, params or []).df()


def test_a_planted_leak_fails_the_blocking_check_and_no_baseline_runs(tiny_demo, tmp_path):
    with copy_of(tiny_demo[0], tmp_path) as (defs, instance, root):
        folds = execute(root, "select video_id, fold from fvc.cv_folds")
        fold_of = dict(zip(folds["video_id"], folds["fold"], strict=True))
        held_out, other = TINY[0], next(v for v in TINY if fold_of[v] != fold_of[TINY[0]])
        planted = f"{held_out}__aug03"
        # both clip tables claim the held-out video's clip for another video: only its files
        # (under clips/<held_out>/ and scaled/<held_out>/) still say whose it is
        for table in ("augmented_clips", "scaled_clips"):
            sql = f"update fvc.{table} set video_id = ? where clip_id = ?"
            execute(root, sql, [other, planted])

        every_fold = dg.RunRequest(tags=partition_range_tags("0", str(N_FOLDS - 1)))
        result = execute_run_request(defs, "training", every_fold, instance)

        assert not result.success
        leak_check = check_named(result, "no_held_out_clip_in_training")
        assert not leak_check.passed
        assert leak_check.metadata["leaked_examples"].value == [
            {"fold": fold_of[held_out], "clip_id": planted, "video_id": other, "owner": held_out}
        ]
        assert leak_check.metadata["unknown_clips"].value == 0
        assert leak_check.metadata["conflicting_clips"].value == 0
        materialized = {e.asset_key for e in result.get_asset_materialization_events()}
        assert materialized == {dg.AssetKey("cv_folds"), dg.AssetKey("training_clips")}
        started = {
            r.dagster_event.step_key
            for r in instance.all_logs(result.run_id, of_type=dg.DagsterEventType.STEP_START)
        }
        downstream = ["ensemble", "fold_predictions", "fold_metrics", "model_comparison"]
        for key in [*TABULAR, *downstream]:
            assert not any(step.startswith(key) for step in started), key
            assert not instance.fetch_materializations(dg.AssetKey(key), limit=1).records, key


def test_a_fold_whose_training_raises_ends_its_mlflow_run_failed(tiny_demo, tmp_path):
    with copy_of(tiny_demo[0], tmp_path) as (defs, instance, root):
        # fold 0 now trains on fake clips only, so fitting its model raises
        execute(root, "delete from fvc.training_clips where fold = 0 and role = 'train' "
                "and label = 'real'")  # fmt: skip
        result = defs.resolve_job_def("training").execute_in_process(
            instance=instance,
            partition_key="0",
            asset_selection=[dg.AssetKey("logistic_regression")],
            raise_on_error=False,
        )

        assert not result.success
        error = result.failure_data_for_node("logistic_regression").error
        assert "single class" in error.cause.message
        mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
        runs = mlflow.search_runs(
            experiment_names=["fvc-baselines"],
            filter_string=f"tags.dagster_run_id = '{result.run_id}'",
        )
        assert runs[["status", "tags.model", "tags.fold"]].to_dict("records") == [
            {"status": "FAILED", "tags.model": "logistic_regression", "tags.fold": "0"}
        ]
