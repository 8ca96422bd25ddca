"""Killed runs under `dagster dev`: a run whose process is SIGKILLed while its step holds the
`training` pool's one slot is failed, and the slot freed, by the daemon's run monitoring with
the repository's `dagster.yaml` (its intervals shortened), whether or not the code server that
started the run survives it (when it does, a second run in the pool then starts and succeeds).
Driven through GraphQL, on definitions of two pooled assets executed in-process as the embedded
profile executes its runs."""

import os
import signal
import time
from pathlib import Path

import pytest
import yaml

from conftest import REPO, GraphQL, running_dagster_dev

pytestmark = pytest.mark.long
LOCATION, POOL = "killed_runs", "training"
POLL_SECONDS = 2  # the test's run monitoring: every 2 s, slots freed 2 s after a run ended
# What the daemon may add on 2 busy cores to one poll: a run is failed within POLL_SECONDS plus
# this, its slot freed within 2 POLL_SECONDS more plus this.
DAEMON_LAG_SECONDS = 20

DEFINITIONS = """
import time

import dagster as dg


@dg.asset(pool="training")
def waits():
    time.sleep(600)  # until the test kills its process


@dg.asset(pool="training")
def quick():
    return 1


defs = dg.Definitions(
    assets=[waits, quick],
    jobs=[dg.define_asset_job("waits_job", [waits]), dg.define_asset_job("quick_job", [quick])],
    executor=dg.in_process_executor,
)
"""


@pytest.fixture(scope="module")
def dagster_dev(tmp_path_factory: pytest.TempPathFactory):
    """`dagster dev` on the definitions above, with the repository's instance settings but run
    monitoring polling every `POLL_SECONDS`; one for both tests (the second, last, kills its
    code server)."""
    tmp_path = tmp_path_factory.mktemp("killed_runs")
    (tmp_path / "definitions.py").write_text(DEFINITIONS)
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(
        yaml.safe_dump(
            {
                "load_from": [
                    {"python_file": {"relative_path": "definitions.py", "location_name": LOCATION}}
                ]
            }  # fmt: skip
        )
    )
    settings = yaml.safe_load((REPO / "dagster.yaml").read_text())
    settings["run_monitoring"].update(
        poll_interval_seconds=POLL_SECONDS, free_slots_after_run_end_seconds=POLL_SECONDS
    )
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(settings))
    env = {"DAGSTER_HOME": str(home)}
    with running_dagster_dev(workspace, env, tmp_path / "dagster_dev.log") as graphql:
        yield graphql


LAUNCH = """
mutation ($job: String!) {
  launchRun(executionParams: {selector: {repositoryLocationName: "killed_runs",
                                         repositoryName: "__repository__", jobName: $job}}) {
    __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
  }
}"""

RUN_LOGS = """
query ($runId: ID!) {
  logsForRun(runId: $runId) { ... on EventConnection { events {
    __typename
    ... on ExecutionStepStartEvent { stepKey }
    ... on EngineEvent { metadataEntries { label ... on TextMetadataEntry { text } } }
  } } }
}"""


def launch(graphql: GraphQL, job: str) -> str:
    launched = graphql(LAUNCH, job=job)["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return launched["run"]["runId"]


def run_status(graphql: GraphQL, run_id: str) -> str:
    query = "query ($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"
    return graphql(query, id=run_id)["runOrError"]["status"]


def slot_holders(graphql: GraphQL) -> set[str]:
    """The runs holding a slot of the pool."""
    query = """query ($pool: String!) { instance { concurrencyLimit(concurrencyKey: $pool) {
                 claimedSlots { runId } } } }"""
    limit = graphql(query, pool=POOL)["instance"]["concurrencyLimit"]
    return {slot["runId"] for slot in limit["claimedSlots"]}


def waiting_run_pid(graphql: GraphQL) -> tuple[str, int]:
    """Launch `waits_job`; once its step holds the pool's slot (and two polls of run monitoring
    later, still runs): its run id and the pid its run worker logged."""

    def holding():
        events = graphql(RUN_LOGS, runId=run_id)["logsForRun"]["events"]
        started = any(e.get("stepKey") == "waits" for e in events)
        entries = [m for e in events for m in e.get("metadataEntries", ())]
        pids = [m["text"] for m in entries if m["label"] == "pid"]
        return started and run_id in slot_holders(graphql) and int(pids[0])

    run_id = launch(graphql, "waits_job")
    pid = graphql.wait_for("the step holding the pool's slot", holding, 120, interval=1)
    time.sleep(2 * POLL_SECONDS)
    assert run_status(graphql, run_id) == "STARTED"  # monitoring leaves a live run alone
    return run_id, pid


def parent_pid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])


def assert_failed_and_slot_freed(graphql: GraphQL, run_id: str, killed_at: float) -> None:
    """The run is FAILURE and the pool's slot free within the stated bounds of the kill."""
    graphql.wait_for(
        "the killed run to fail",
        lambda: run_status(graphql, run_id) == "FAILURE",
        POLL_SECONDS + DAEMON_LAG_SECONDS,
        interval=0.5,
    )
    failed_after = time.monotonic() - killed_at
    graphql.wait_for(
        "the killed run's slot to be freed",
        lambda: not slot_holders(graphql),
        3 * POLL_SECONDS + DAEMON_LAG_SECONDS - failed_after,
        interval=0.5,
    )


def test_a_run_whose_process_is_killed_is_failed_and_its_pool_slot_freed(dagster_dev):
    graphql = dagster_dev
    run_id, pid = waiting_run_pid(graphql)
    os.kill(pid, signal.SIGKILL)
    assert_failed_and_slot_freed(graphql, run_id, killed_at=time.monotonic())

    second = launch(graphql, "quick_job")  # in the same pool
    finished = graphql.wait_for(
        "the second run in the pool",
        lambda: (status := run_status(graphql, second)) in {"SUCCESS", "FAILURE"} and status,
        90,
        interval=1,
    )
    assert finished == "SUCCESS"


def test_a_killed_run_is_failed_and_its_slot_freed_with_its_code_server_killed_too(dagster_dev):
    graphql = dagster_dev
    run_id, pid = waiting_run_pid(graphql)
    os.kill(parent_pid(pid), signal.SIGKILL)  # the code server that started the run, first
    os.kill(pid, signal.SIGKILL)
    assert_failed_and_slot_freed(graphql, run_id, killed_at=time.monotonic())
