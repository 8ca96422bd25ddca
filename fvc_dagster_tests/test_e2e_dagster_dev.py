"""End to end as a user runs it: `dagster dev` (webserver + daemon) on a fresh data root, driven
through the GraphQL API as a client would. The daemon's sensor registers an archive's videos and
runs them in a batch; the run-failure sensor isolates the corrupt one; a partition backfill is
launched through GraphQL and completes."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from conftest import write_zip

REPO = Path(__file__).resolve().parents[1]
GOOD = ["e2egood0001", "e2egood0002", "e2egood0003"]
BAD = "e2ecorrupt1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class GraphQL:
    def __init__(self, port: int):
        self.url = f"http://127.0.0.1:{port}/graphql"

    def __call__(self, query: str, **variables) -> dict:
        response = requests.post(
            self.url, json={"query": query, "variables": variables}, timeout=60
        )
        response.raise_for_status()
        body = response.json()
        assert "errors" not in body, body["errors"]
        return body["data"]

    def wait_for(self, what: str, probe, timeout: float, interval: float = 3.0):
        """Poll `probe` until it returns a truthy value; fail naming `what` after `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if value := probe():
                    return value
            except requests.RequestException:
                pass
            time.sleep(interval)
        pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture
def dagster_dev(tmp_path: Path, video_bytes):
    """`dagster dev` on a data root whose inbox holds one archive with a corrupt member."""
    (tmp_path / "inbox").mkdir()
    members = {f"{v}.mp4": video_bytes(frames=6, seed=i) for i, v in enumerate(GOOD)}
    members[f"{BAD}.mp4"] = b"\x00\x00\x00\x18ftypmp42" + b"not a video" * 50
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    port = free_port()
    env = {**os.environ, "FVC_DATA_DIR": str(tmp_path), "DAGSTER_HOME": str(home)}
    log = (tmp_path / "dagster_dev.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml", "-p", str(port)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    graphql = GraphQL(port)
    try:
        graphql.wait_for("the webserver", lambda: graphql("{ version }")["version"], 180)
        write_zip(tmp_path / "inbox" / "FVC1.zip", members)  # dropped while the platform runs
        yield graphql
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()


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


def test_sensor_daemon_batches_isolate_bad_videos_and_backfills_run(dagster_dev):
    graphql = dagster_dev
    sensors = graphql(
        """{ repositoriesOrError { ... on RepositoryConnection { nodes {
             sensors { name sensorState { status } } } } } }"""
    )["repositoriesOrError"]["nodes"][0]["sensors"]
    states = {s["name"]: s["sensorState"]["status"] for s in sensors}
    assert states["archive_sensor"] == "RUNNING"
    assert states["split_failed_video_batches"] == "RUNNING"

    def settled():
        status = partition_status(graphql, "scaled_features")["assetPartitionStatuses"]
        done = set(status["materializedPartitions"]) == set(GOOD)
        failed = (
            BAD
            in partition_status(graphql, "source_videos")["assetPartitionStatuses"][
                "failedPartitions"
            ]
        )
        return done and failed

    graphql.wait_for("the good videos materialized and the bad one failed alone", settled, 480)
    node = partition_status(graphql, "source_videos")
    assert node["partitionDefinition"] == {"type": "DYNAMIC", "name": "videos"}
    assert node["assetPartitionStatuses"]["failedPartitions"] == [BAD]

    launched = graphql(
        """mutation ($params: LaunchBackfillParams!) {
             launchPartitionBackfill(backfillParams: $params) {
               __typename ... on LaunchBackfillSuccess { backfillId }
               ... on PythonError { message } } }""",
        params={"assetSelection": [{"path": ["handcrafted_features"]}], "partitionNames": GOOD},
    )["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched

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
