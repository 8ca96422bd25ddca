"""The Definitions a user loads: assets, checks, sensors and jobs, resolved from the environment."""

import subprocess
import sys

import dagster as dg
import pytest

from fvc_dagster import definitions
from fvc_dagster.lib.models import REGISTRY


def test_definitions_load_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("FVC_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FVC_ZIP_PASSWORD", "secret")
    monkeypatch.setenv("FVC_TEST_ARCHIVES", "Shifted*.zip,Test*.zip")
    defs = definitions.defs()
    assert isinstance(defs, dg.Definitions)
    keys = {k.to_user_string() for k in defs.resolve_all_asset_keys()}
    assert {
        "source_videos",
        "handcrafted_features",
        "cv_folds",
        "fold_metrics",
        "model_comparison",
        "generalisation",
    } <= keys
    assert set(REGISTRY) <= keys  # every registry model is an asset named as the model
    assert defs.resolve_sensor_def("archive_sensor") and defs.resolve_sensor_def(
        "split_failed_video_batches"
    )
    assert defs.resolve_job_def("video_pipeline") and defs.resolve_job_def("training")
    assert defs.resolve_job_def("networks")
    checks = {k.name for k in defs.resolve_asset_graph().asset_check_keys}
    assert checks >= {
        "no_cascade_in_two_folds",
        "every_fold_has_both_classes",
        "no_test_video_in_folds",
        "no_test_video_in_training",
    }
    inbox = defs.resources["inbox"]
    assert inbox.storage.root == tmp_path.resolve()
    assert isinstance(inbox.password, dg.EnvVar)  # resolved per run, never stored in config
    assert isinstance(inbox.test_archives, dg.EnvVar)
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


def test_every_model_has_one_asset_named_as_it_with_its_kinds_group_and_checks(tmp_path):
    from fvc_dagster.defs.models.assets import KIND_ASSETS

    graph = definitions.build_defs(tmp_path).resolve_asset_graph()
    for check in ("fit_blind_to_its_fold", "predictions_match_the_folds"):
        checked = {k.asset_key.to_user_string() for k in graph.asset_check_keys
                   if k.name == check}  # fmt: skip
        assert checked == set(REGISTRY), check
    for name, spec in REGISTRY.items():
        node = graph.get(dg.AssetKey(name))
        assert node.group_name == KIND_ASSETS[spec.kind].group
        assert node.partitions_def is not None  # by fold


def test_a_registry_row_is_all_a_new_model_needs(monkeypatch):
    """The worked example of docs/models.md: MC3-18 from its row alone builds, trains from its
    config and gets its asset from the one factory."""
    import torch

    from fvc_dagster.defs.models.assets import model_asset
    from fvc_dagster.lib.models import build_model, get_spec
    from fvc_dagster.lib.models.registry import TORCHVISION_CLIP, Recipe, _network
    from fvc_dagster.lib.models.weights import torchvision_checkpoint

    row = _network(
        "mc3", "mc3", "video_resnet:build_video_resnet", **TORCHVISION_CLIP, recipe=Recipe(),
        checkpoint=torchvision_checkpoint("mc3_18-a90a0ba3.pth"), options={"arch": "mc3_18"},
    )  # fmt: skip
    monkeypatch.setitem(REGISTRY, "mc3", row)
    assert get_spec("mc3").normalisation == get_spec("r2plus1d").normalisation  # Kinetics-400
    with torch.no_grad():
        assert build_model("mc3")(torch.zeros(1, 3, 4, 32, 32)).shape == (1, 1)
    asset = model_asset(row)
    assert asset.key == dg.AssetKey("mc3") and asset.group_names_by_key[asset.key] == "networks"
    assert "epochs" in asset.op.config_schema.as_field().config_type.fields


def test_the_sensor_interval_comes_from_the_environment_and_is_checked():
    from fvc_dagster.defs.automation import sensor_interval

    assert (sensor_interval(None), sensor_interval(""), sensor_interval("5")) == (30, 30, 5)
    for wrong in ("0", "-3", "2.5", "soon"):
        with pytest.raises(ValueError, match="FVC_SENSOR_INTERVAL_S must be a whole number"):
            sensor_interval(wrong)
