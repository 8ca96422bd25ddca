"""End to end as a user runs it: `make demo`, then `dagster dev` (webserver + daemon) on its data
root, driven through the GraphQL API as a client would. An archive dropped into the inbox of the
running platform: the daemon's sensor registers its videos and runs them in a batch, the
run-failure sensor isolates the corrupt one, and the automation sensor re-trains the baselines
and the comparison with the new videos in their folds, without any other action; meanwhile a
partition backfill launched through GraphQL completes."""

import contextlib
import io
import shutil
from pathlib import Path

import duckdb
import pytest

from conftest import REPO, GraphQL, running_dagster_dev, write_labelled_inbox
from fvc_dagster.defs.partitions import N_FOLDS
from fvc_dagster.lib.locking import exclusive
from fvc_dagster.local.demo import run_demo

DEMO = [f"e2edemo{n:04d}" for n in range(10)]  # what `make demo` trained on: two a fold
LATER = ["e2elate0001", "e2elate0002"]  # the archive dropped into the running platform
BAD = "e2ecorrupt1"
pytestmark = pytest.mark.long


def labelled_archive(inbox: Path, archive: str, videos: list[str], video_bytes, **variant):
    """An archive of the videos (real and fake in turn, a cascade each) and their FVC.csv."""
    cascades = [f"cascade_{v}" for v in videos]
    write_labelled_inbox(inbox, videos, video_bytes, cascades=cascades, frames=6,
                         archive=archive, metadata=archive, **variant)  # fmt: skip


@pytest.fixture
def dagster_dev(tmp_path: Path, video_bytes):
    """`make demo` (baselines only) on ten labelled videos, then `dagster dev` on its data root
    and instance: the GraphQL client, the data root, and a function dropping an archive of two
    new labelled videos and a corrupt member into the inbox."""
    labelled_archive(tmp_path / "inbox", "FVC1.zip", DEMO, video_bytes)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(io.StringIO()):
        patch.setenv("DAGSTER_HOME", str(home))
        assert run_demo(tmp_path, networks=(), embedding_models=(), test_videos=0) == 0
    # The sensors look every 5 s instead of 30: the same ticks, less waiting.
    env = {"FVC_DATA_DIR": str(tmp_path), "DAGSTER_HOME": str(home), "FVC_SENSOR_INTERVAL_S": "5"}

    def drop_archive():
        corrupt = {f"{BAD}.mp4": b"\x00\x00\x00\x18ftypmp42" + b"not a video" * 50}
        labelled_archive(tmp_path / "inbox", "FVC2.zip", LATER, video_bytes,
                         first_seed=len(DEMO), extra=corrupt)  # fmt: skip

    with running_dagster_dev(REPO / "workspace.yaml", env, tmp_path / "dagster_dev.log") as graphql:
        yield graphql, tmp_path, drop_archive


PARTITION_STATUS = """
query ($path: [String!]!) {
  assetNodes(assetKeys: [{path: $path}]) {
    partitionDefinition { type name }
    assetPartitionStatuses {
      ... on DefaultPartitionStatuses { materializedPartitions failedPartitions }
    }
  }
}"""


def partition_status(graphql: GraphQL, asset: str) -> dict:
    (node,) = graphql(PARTITION_STATUS, path=[asset])["assetNodes"]
    return node


MATERIALIZATIONS = """
query ($path: [String!]!) {
  assetNodes(assetKeys: [{path: $path}]) {
    assetMaterializations(limit: 100) {
      runId timestamp partition
      metadataEntries { label ... on IntMetadataEntry { intValue } }
    }
  }
}"""


def materializations(graphql: GraphQL, asset: str) -> list[dict]:
    """The asset's materializations, newest first, with their integer metadata."""
    (node,) = graphql(MATERIALIZATIONS, path=[asset])["assetNodes"]
    return [
        {**m, "metadata": {e["label"]: e.get("intValue") for e in m["metadataEntries"]}}
        for m in node["assetMaterializations"]
    ]


def retrained(graphql: GraphQL, root: Path, videos: set[str]):
    """Once `cv_folds` holds `videos`, the baselines' fold table (every fold) holds them and
    `model_comparison` was materialized after the baselines: the runs that wrote the latest of
    each; else None."""
    folds = materializations(graphql, "cv_folds")
    if not folds or folds[0]["metadata"].get("videos") != len(videos):
        return None
    baselines = {}  # the latest materialization of each fold
    for m in reversed(materializations(graphql, "logistic_regression")):
        baselines[m["partition"]] = m
    if len(baselines) < N_FOLDS or fold_videos(root, "logistic_regression") != videos:
        return None
    trained_at = max(float(m["timestamp"]) for m in baselines.values())
    comparison = materializations(graphql, "model_comparison")
    if not comparison or float(comparison[0]["timestamp"]) <= trained_at:
        return None
    return {m["runId"] for m in [folds[0], *baselines.values(), comparison[0]]}


def fold_videos(root: Path, table: str) -> set[str]:
    """The videos of a fold table in the warehouse, read under its lock as steps write it."""
    database = root / "warehouse.duckdb"
    with exclusive(database, "the test"), duckdb.connect(str(database), read_only=True) as con:
        return {v for (v,) in con.execute(f"select distinct video_id from fvc.{table}").fetchall()}


def test_a_dropped_archive_is_batched_its_bad_video_isolated_and_the_models_retrained(
    dagster_dev,
):
    graphql, root, drop_archive = dagster_dev
    sensors = graphql(
        """{ repositoriesOrError { ... on RepositoryConnection { nodes {
             sensors { name sensorState { status } } } } } }"""
    )["repositoriesOrError"]["nodes"][0]["sensors"]
    states = {s["name"]: s["sensorState"]["status"] for s in sensors}
    assert states == dict.fromkeys(
        ["archive_sensor", "split_failed_video_batches", "default_automation_condition_sensor"],
        "RUNNING",
    )
    drop_archive()
    # Meanwhile a user backfills a stage for two videos the demo processed.
    launched = graphql(
        """mutation ($params: LaunchBackfillParams!) {
             launchPartitionBackfill(backfillParams: $params) {
               __typename ... on LaunchBackfillSuccess { backfillId }
               ... on PythonError { message } } }""",
        params={"assetSelection": [{"path": ["handcrafted_features"]}], "partitionNames": DEMO[:2]},
    )["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched

    def settled():
        status = partition_status(graphql, "scaled_features")["assetPartitionStatuses"]
        done = set(status["materializedPartitions"]) == {*DEMO, *LATER}
        failed = (
            BAD
            in partition_status(graphql, "source_videos")["assetPartitionStatuses"][
                "failedPartitions"
            ]
        )
        return done and failed

    graphql.wait_for("the new videos materialized and the bad one failed alone", settled, 480)
    node = partition_status(graphql, "source_videos")
    assert node["partitionDefinition"] == {"type": "DYNAMIC", "name": "videos"}
    assert node["assetPartitionStatuses"]["failedPartitions"] == [BAD]

    # The automation sensor re-trains the baselines and the comparison with the new videos.
    retraining_runs = graphql.wait_for(
        "the baselines and comparison re-trained with the new videos",
        lambda: retrained(graphql, root, {*DEMO, *LATER}),
        600,
    )
    runs = graphql(
        """query ($ids: [String!]) { runsOrError(filter: {runIds: $ids}) {
             ... on Runs { results { runId tags { key value } } } } }""",
        ids=sorted(retraining_runs),
    )["runsOrError"]["results"]
    assert len(runs) == len(retraining_runs)
    for run in runs:
        tags = {t["key"]: t["value"] for t in run["tags"]}
        assert tags.get("dagster/from_automation_condition") == "true", tags

    def backfill_finished():
        status = graphql(
            """query ($id: String!) { partitionBackfillOrError(backfillId: $id) {
                 ... on PartitionBackfill { status } } }""",
            id=launched["backfillId"],
        )["partitionBackfillOrError"]["status"]
        return status if status not in {"REQUESTED", "CANCELING", "FAILING"} else None

    assert graphql.wait_for("the backfill", backfill_finished, 300) in {
        "COMPLETED",
        "COMPLETED_SUCCESS",
    }
