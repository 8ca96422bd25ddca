"""Runs whose process died: told to the daemon's run monitoring by the run launcher, failed by
the demo's recovery, their pool slots freed, and who holds a slot said."""

import json
import os
import socket
import subprocess
import sys

import dagster as dg
from dagster._core.events import DagsterEvent, DagsterEventType, EngineEventData
from dagster._core.launcher import WorkerStatus
from dagster._core.storage.tags import GRPC_INFO_TAG

from fvc_dagster.defs.recovery import PROCESS_TAG, fail_dead_runs, process_tags, slots_held


@dg.op
def noop():
    pass


@dg.job
def some_job():
    noop()


def started_run(instance: dg.DagsterInstance, tags: dict[str, str]) -> dg.DagsterRun:
    run = instance.create_run_for_job(some_job, tags=tags)
    instance.handle_run_event(
        run.run_id, DagsterEvent(DagsterEventType.RUN_START.value, job_name=some_job.name)
    )
    return instance.get_run_by_id(run.run_id)


def test_a_run_whose_process_died_is_failed_and_its_slot_freed():
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    with dg.instance_for_test() as instance:
        storage = instance.event_log_storage
        storage.set_concurrency_slots("training", 1)
        orphan = started_run(instance, {PROCESS_TAG: f"{socket.gethostname()}:{dead}"})
        alive = started_run(instance, process_tags())  # this test's own process
        foreign = started_run(instance, {})  # not started by a process of ours: left alone
        storage.claim_concurrency_slot("training", orphan.run_id, "train_step")
        (line,) = slots_held(instance)
        assert line == (f"pool 'training' (1 slot(s)): held by run {orphan.run_id} "
                        "step train_step (STARTED)")  # fmt: skip

        found = fail_dead_runs(instance)

        assert found == [
            f"run {orphan.run_id} (some_job) died with its process "
            f"{socket.gethostname()}:{dead}: failed"
        ]
        status = [instance.get_run_by_id(r.run_id).status for r in (orphan, alive, foreign)]
        assert status == [dg.DagsterRunStatus.FAILURE, *[dg.DagsterRunStatus.STARTED] * 2]
        assert slots_held(instance) == [] and fail_dead_runs(instance) == []


def launched_run(instance: dg.DagsterInstance, pid: int, grpc_info: dict) -> dg.DagsterRun:
    """A started run as a code server at `grpc_info` launches it, its run worker's pid logged as
    Dagster's run worker logs it."""
    run = started_run(instance, {GRPC_INFO_TAG: json.dumps(grpc_info)})
    instance.report_engine_event(
        f"Started process for run (pid: {pid}).", run, EngineEventData.in_process(pid)
    )
    return run


def test_the_launcher_tells_run_monitoring_which_run_workers_are_gone():
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    launcher = {"module": "fvc_dagster.defs.recovery", "class": "MonitoredRunLauncher"}
    with dg.instance_for_test(overrides={"run_launcher": launcher}) as instance:
        where = f"{socket.gethostname()}:{dead}"
        local = {"host": "localhost", "socket": "/tmp/grpc.sock"}
        killed = launched_run(instance, int(dead), local)
        running = launched_run(instance, os.getpid(), local)
        remote = launched_run(instance, int(dead), {"host": "code-server.internal", "port": 4000})
        unknown = started_run(instance, {})  # no pid logged yet

        health = {
            name: instance.run_launcher.check_run_worker_health(run)
            for name, run in [("killed", killed), ("running", running), ("remote", remote),
                              ("unknown", unknown)]
        }  # fmt: skip

        assert instance.run_launcher.supports_check_run_worker_health
        assert {name: h.status for name, h in health.items()} == {
            "killed": WorkerStatus.NOT_FOUND,
            **dict.fromkeys(["running", "remote", "unknown"], WorkerStatus.RUNNING),
        }
        assert health["killed"].msg == f"its process ({where}) is gone (killed?)"
        # The demo's recovery, without a daemon, fails the same run and no other.
        assert fail_dead_runs(instance) == [
            f"run {killed.run_id} (some_job) died with its process {where}: failed"
        ]
