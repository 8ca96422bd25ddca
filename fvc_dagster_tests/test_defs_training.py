"""The whole platform on a generated corpus, as `make demo` runs it, and the fold checks."""

from pathlib import Path

import dagster as dg
import duckdb
import mlflow
import pandas as pd
import pytest

from fvc_dagster.defs.training.checks import every_fold_has_both_classes, no_cascade_in_two_folds
from fvc_dagster.demo import run_demo
from fvc_dagster.lib.splits import groups_in_several_folds


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DAGSTER_HOME", str(root / "dagster_home"))
        assert run_demo(root, n_videos=40, n_archives=2, seed=1) == 0
    return root


def query(root: Path, sql: str) -> pd.DataFrame:
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as con:
        return con.execute(sql).df()


def test_demo_leaves_every_table_and_leak_free_folds(demo_root):
    assert len(query(demo_root, "select * from fvc.source_videos")) == 40
    for table in ("augmented_clips", "handcrafted_features", "scaled_clips", "scaled_features"):
        assert len(query(demo_root, f"select * from fvc.{table}")) == 40 * 11, table
    folds = query(demo_root, "select * from fvc.cv_folds")
    assert groups_in_several_folds(folds) == [] and sorted(folds["fold"].unique()) == [
        0,
        1,
        2,
        3,
        4,
    ]
    metrics = query(demo_root, "select * from fvc.fold_metrics")
    assert len(metrics) == 15 and set(metrics["model"]) == {"logistic_regression", "svm", "xgboost"}
    comparison = query(demo_root, "select * from fvc.model_comparison")
    assert len(comparison) == 3 and comparison["roc_auc_mean"].notna().all()


def test_every_fold_run_is_a_finished_mlflow_run_with_its_dagster_run_id(demo_root):
    mlflow.set_tracking_uri(f"sqlite:///{demo_root / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["fvc-baselines"])
    assert len(runs) == 15 and set(runs["status"]) == {"FINISHED"}
    assert runs["tags.dagster_run_id"].notna().all()
    assert runs["metrics.roc_auc"].notna().all()
    model = mlflow.sklearn.load_model(f"runs:/{runs.iloc[0]['run_id']}/model")
    assert hasattr(model, "predict_proba")
    assert runs["artifact_uri"].str.startswith((demo_root / "mlartifacts").as_uri()).all()


def test_a_second_demo_run_reuses_everything(demo_root, monkeypatch, capsys):
    monkeypatch.setenv("DAGSTER_HOME", str(demo_root / "dagster_home"))
    instance_runs = len(dg.DagsterInstance.get().get_run_records())
    assert run_demo(demo_root, n_videos=40, n_archives=2, seed=1) == 0
    assert len(dg.DagsterInstance.get().get_run_records()) == instance_runs
    assert "| model | folds |" in capsys.readouterr().out


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
