"""Runs whose process died: failed, their pool slots freed, and who holds a slot said."""

import socket
import subprocess
import sys

import dagster as dg
from dagster._core.events import DagsterEvent, DagsterEventType

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
