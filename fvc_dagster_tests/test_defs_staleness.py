"""A model trained on request goes stale when the folds change under it, and blocks nothing:
ten tiny videos through the archive sensor, the baselines and an embedding model; then a
metadata archive that relabels one video 'uncertain' (it leaves the folds) and a new archive of
two more, picked up by the sensor; the folds and the automatic models rematerialize, and the
ensemble, predictions, metrics, comparison and champion materialize with the embedding model
marked stale and left out; retrained, it is back."""

import contextlib
import io
import os

import dagster as dg
import pandas as pd
import pytest

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
from fvc_dagster.local.demo import (
    _all_folds,
    execute_run_request,
    run_video_batches,
    train_networks,
)

TABULAR = models_of("tabular")
VIDEOS = [f"stalevid{n:03d}" for n in range(10)]  # five real and five fake cascades
NEW = ["stalevid010", "stalevid011"]  # a real and a fake cascade, in a second archive
RELABELLED = VIDEOS[0]  # real, then uncertain: in no fold
EMBEDDING = "xgboost_pretrained_inception"
CHECK = "predictions_match_the_folds"


def latest_metadata(instance: dg.DagsterInstance, asset: str) -> dict:
    (record,) = instance.fetch_materializations(dg.AssetKey(asset), limit=1).records
    return {k: v.value for k, v in record.asset_materialization.metadata.items()}


def latest_check(instance: dg.DagsterInstance, asset: str) -> dg.AssetCheckEvaluation:
    key = dg.AssetCheckKey(dg.AssetKey(asset), CHECK)
    record = instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key]
    return record.event.dagster_event.event_specific_data


def run_check(defs: dg.Definitions, instance: dg.DagsterInstance, asset: str) -> None:
    """The staleness check of `asset` alone, as the asset's Checks tab executes it."""
    key = dg.AssetCheckKey(dg.AssetKey(asset), CHECK)
    job = defs.resolve_implicit_job_def_def_for_assets([key.asset_key])
    assert (
        job.get_subset(asset_selection=set(), asset_check_selection={key})
        .execute_in_process(instance=instance)
        .success
    )


def comparison_of(root) -> pd.DataFrame:
    return query(root, "select * from fvc.model_comparison").set_index("model")


@pytest.fixture(scope="module")
def platform(tmp_path_factory, video_bytes_factory):
    """Ten tiny videos through the sensor's runs, the `training` job, the embedding model on
    every fold; then one video relabelled and two new ones, and the `training` and `champion`
    jobs (the embedding model is not retrained): the data root, the Definitions, the instance,
    the comparison before the change and the two runs after it."""
    root = tmp_path_factory.mktemp("staleness")
    inbox = write_labelled_inbox(root / "inbox", VIDEOS, video_bytes_factory)
    (root / "dagster_home").mkdir()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(io.StringIO()):
        patch.setenv("DAGSTER_HOME", str(root / "dagster_home"))
        defs = build_defs(root)
        instance = dg.DagsterInstance.get()
        requests, cursor = archive_sensor_tick(defs, instance, None)
        run_video_batches(defs, requests, instance)
        assert execute_run_request(defs, "training", _all_folds(), instance).success
        assert train_networks(defs, [], instance, embedding_models=[EMBEDDING])
        before = comparison_of(root)
        write_labelled_inbox(inbox, NEW, video_bytes_factory, first_seed=len(VIDEOS),
                             archive="FVC2.zip")  # fmt: skip
        labels = ["uncertain" if v == RELABELLED else "fake" if i % 2 else "real"
                  for i, v in enumerate([*VIDEOS, *NEW])]  # fmt: skip
        metadata = inbox / "Metadata.zip"
        write_zip(metadata, {"FVC.csv": labelled_metadata([*VIDEOS, *NEW], labels=labels)})
        os.utime(metadata, (metadata.stat().st_atime, metadata.stat().st_mtime + 60))
        requests, _ = archive_sensor_tick(defs, instance, cursor)
        run_video_batches(defs, requests, instance)
        trained = execute_run_request(defs, "training", _all_folds(), instance)
        champion = execute_run_request(defs, "champion", dg.RunRequest(), instance)
        yield root, defs, instance, before, trained, champion


def test_a_stale_model_is_marked_and_left_out_and_everything_downstream_materializes(platform):
    root, defs, instance, before, trained, champion = platform
    assert before.loc[EMBEDDING, "rank"] > 0 and not before["stale"].any()
    folds = query(root, "select * from fvc.cv_folds").set_index("video_id")
    assert set(folds.index) == {*VIDEOS[1:], *NEW}
    assert trained.success and champion.success
    events = trained.get_asset_materialization_events()
    materialized = {e.asset_key.to_user_string() for e in events}
    assert {"ensemble", "fold_predictions", "fold_metrics", "model_comparison"} <= materialized
    assert EMBEDDING not in materialized

    reason = (
        f"2 videos of its folds not scored ({', '.join(NEW)}); "
        f"1 scored video no longer in the folds ({RELABELLED})"
    )
    comparison = comparison_of(root)
    assert comparison.loc[EMBEDDING, ["stale", "stale_reason"]].tolist() == [True, reason]
    assert pd.isna(comparison.loc[EMBEDDING, "rank"]) and comparison.index[-1] == EMBEDDING
    current = comparison[~comparison["stale"]]
    assert set(current.index) == {*TABULAR, "ensemble"} and (current["folds"] == N_FOLDS).all()
    assert sorted(current["rank"]) == [1, 2, 3, 4] and (current["stale_reason"] == "").all()
    assert latest_metadata(instance, "model_comparison")["stale_models"] == {EMBEDDING: reason}

    predictions = query(root, "select * from fvc.fold_predictions")
    assert set(predictions["model"]) == {*TABULAR, "ensemble"}
    assert set(predictions["video_id"]) == {*VIDEOS[1:], *NEW}
    assert latest_metadata(instance, "fold_predictions")["stale_models"] == {EMBEDDING: reason}
    assert set(query(root, "select model from fvc.fold_metrics")["model"]) == {*TABULAR, "ensemble"}
    ensemble = latest_metadata(instance, "ensemble")
    assert ensemble["base_models"] == list(TABULAR)
    assert ensemble["stale_models_left_out"] == {EMBEDDING: reason}

    (registered,) = query(root, "select * from fvc.champion_model").to_dict("records")
    assert registered["model"] in TABULAR and registered["cv_folds"] == str(N_FOLDS)

    run_check(defs, instance, EMBEDDING)
    check = latest_check(instance, EMBEDDING)
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["stale_reason"].value == reason
    assert check.metadata["unscored_videos"].value == 2
    assert check.metadata["dropped_videos"].value == 1
    assert latest_check(instance, "logistic_regression").passed


def test_retrained_the_stale_model_is_back_everywhere(platform):
    root, defs, instance, *_ = platform
    with contextlib.redirect_stdout(io.StringIO()):
        assert train_networks(defs, [], instance, embedding_models=[EMBEDDING])

    assert latest_check(instance, EMBEDDING).passed
    comparison = comparison_of(root)
    assert not comparison["stale"].any() and sorted(comparison["rank"]) == [1, 2, 3, 4, 5]
    assert comparison.loc[EMBEDDING, "folds"] == N_FOLDS
    predictions = query(root, "select * from fvc.fold_predictions")
    scored = predictions.loc[predictions["model"] == EMBEDDING, "video_id"]
    assert set(scored) == {*VIDEOS[1:], *NEW}
    assert latest_metadata(instance, "fold_predictions")["stale_models"] == {}
    ensemble = latest_metadata(instance, "ensemble")
    assert ensemble["base_models"] == [*TABULAR, EMBEDDING]
    assert ensemble["stale_models_left_out"] == {}
