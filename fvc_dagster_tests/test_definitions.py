"""The Definitions a user loads: assets, checks, sensors and jobs, resolved from the environment."""

import subprocess
import sys

import dagster as dg

from fvc_dagster import definitions
from fvc_dagster.lib.models import list_models


def test_definitions_load_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("FVC_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FVC_ZIP_PASSWORD", "secret")
    defs = definitions.defs()
    assert isinstance(defs, dg.Definitions)
    keys = {k.to_user_string() for k in defs.resolve_all_asset_keys()}
    assert {
        "source_videos",
        "handcrafted_features",
        "cv_folds",
        "fold_metrics",
        "model_comparison",
    } <= keys
    assert {"baseline_logistic_regression", "baseline_svm", "baseline_xgboost"} <= keys
    assert {f"network_{m}" for m in list_models(networks_only=True)} <= keys
    assert defs.resolve_sensor_def("archive_sensor") and defs.resolve_sensor_def(
        "split_failed_video_batches"
    )
    assert defs.resolve_job_def("video_pipeline") and defs.resolve_job_def("training")
    assert defs.resolve_job_def("networks")
    checks = {k.name for k in defs.resolve_asset_graph().asset_check_keys}
    assert checks >= {"no_cascade_in_two_folds", "every_fold_has_both_classes"}
    inbox = defs.resources["inbox"]
    assert inbox.storage.root == tmp_path.resolve()
    assert isinstance(inbox.password, dg.EnvVar)  # resolved per run, never stored in config
    defs.resolve_all_job_defs()  # every job resolves against the bound resources


HEAVY = ("torch", "torchvision", "transformers", "sklearn", "mlflow", "skops", "matplotlib",
         "xgboost")  # fmt: skip


def test_loading_the_code_location_imports_no_heavy_library():
    """Every run process and code server loads the definitions: the assets import torch,
    scikit-learn, MLflow and matplotlib when they run, not then (a fresh interpreter, since this
    one has them loaded already)."""
    code = f"import sys, fvc_dagster.definitions; print([m for m in {HEAVY!r} if m in sys.modules])"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    assert out.stdout.strip().splitlines()[-1] == "[]"
