"""Runs that died: the process executing a run, whether it is gone, and who fails such runs.

Under `dagster dev` the daemon's run monitoring asks the run launcher whether each started run's
process still runs (`MonitoredRunLauncher`, named in `dagster.yaml`) and fails the run when it
is gone; its code server notices only the runs it started itself, and only while it lives. A
process that executes runs itself (the demo, which has no daemon) calls `fail_dead_runs` when it
starts. Either way the pool slots of ended runs are freed, so later runs never wait on a slot
nobody will give back.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass

import dagster as dg
from dagster._core.events import DagsterEventType
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus
from dagster._core.storage.dagster_run import ACTIVE_RUN_STATUSES, FINISHED_STATUSES
from dagster._core.storage.tags import GRPC_INFO_TAG

from fvc_dagster.lib.processes import process_running

PROCESS_TAG = "fvc/process"
LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}
# The run worker logs its pid ("Started process for run (pid: N)") among a run's first engine
# events; an in-process executor logs it too ("Executing steps in process").
ENGINE_EVENTS_SEARCHED = 20


@dataclass(frozen=True)
class RunProcess:
    """The process executing a run: its host, its pid and a time by which it had started
    (None when not known) to tell it from a later process reusing the pid."""

    host: str
    pid: int
    started_by: float | None = None

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}"

    def gone(self) -> bool:
        """Whether it no longer runs (another host's is never known to be gone)."""
        local = self.host == socket.gethostname()
        return local and not process_running(self.pid, started_by=self.started_by)


def process_tags() -> dict[str, str]:
    """Tags naming this process (host:pid) for the runs it executes in-process."""
    return {PROCESS_TAG: f"{socket.gethostname()}:{os.getpid()}"}


def run_process(instance: dg.DagsterInstance, run: dg.DagsterRun) -> RunProcess | None:
    """The process executing `run`: the one its `PROCESS_TAG` names, else the pid its run worker
    logged, on the host of the code server that launched it; None while that is not known."""
    if tag := run.tags.get(PROCESS_TAG):
        host, _, pid = tag.rpartition(":")
        return RunProcess(host, int(pid)) if pid.isdigit() else None
    records = instance.event_log_storage.get_records_for_run(
        run.run_id, of_type=DagsterEventType.ENGINE_EVENT, limit=ENGINE_EVENTS_SEARCHED
    ).records
    for record in records:
        entry = record.event_log_entry
        pid = entry.dagster_event.engine_event_data.metadata.get("pid")
        if pid is not None:
            return RunProcess(launching_host(run), int(pid.value), started_by=entry.timestamp)
    return None


def launching_host(run: dg.DagsterRun) -> str:
    """The host of the code server that launched `run` (this host's name for a local one; empty
    when no code server launched it)."""
    info = json.loads(run.tags.get(GRPC_INFO_TAG, "{}"))
    if "socket" in info or info.get("host") in LOOPBACK_HOSTS:
        return socket.gethostname()
    return info.get("host", "")


class MonitoredRunLauncher(dg.DefaultRunLauncher):
    """Dagster's default launcher (each run in a process of its code server) that tells the
    daemon's run monitoring whether a run's process still runs, so that a run whose process was
    killed is failed even when its code server is gone too."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        process = run_process(self._instance, run)
        if process is None:
            return CheckRunHealthResult(WorkerStatus.RUNNING, "its process is not known yet")
        if process.gone():
            return CheckRunHealthResult(
                WorkerStatus.NOT_FOUND, f"its process ({process}) is gone (killed?)"
            )
        return CheckRunHealthResult(WorkerStatus.RUNNING, f"its process ({process}) runs")


def fail_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed the runs holding a worker whose process died, and free the pool slots of
    every run that ended; a line per run dealt with."""
    found = []
    for record in instance.get_run_records(dg.RunsFilter(statuses=ACTIVE_RUN_STATUSES)):
        run = record.dagster_run
        process = run_process(instance, run)
        if process is None or not process.gone():
            continue
        instance.report_run_failed(
            run, f"its process ({process}) is gone (killed?) while the run was {run.status.value}"
        )
        found.append(f"run {run.run_id} ({run.job_name}) died with its process {process}: failed")
    storage = instance.event_log_storage
    holders = storage.supports_global_concurrency_limits and storage.get_concurrency_run_ids()
    if holders:
        ended = instance.get_runs(dg.RunsFilter(run_ids=list(holders), statuses=FINISHED_STATUSES))
        for run in ended:
            if freed := storage.free_concurrency_slots_for_run(run.run_id):
                found.append(f"freed {freed} pool slot(s) held by ended run {run.run_id}")
    return found


def slots_held(instance: dg.DagsterInstance) -> list[str]:
    """Who holds a pool slot now: a line per claimed slot (pool, run, step, run status)."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return []
    lines = []
    for pool in sorted(storage.get_concurrency_keys()):
        info = storage.get_concurrency_info(pool)
        for slot in info.claimed_slots:
            run = instance.get_run_by_id(slot.run_id)
            status = run.status.value if run else "unknown"
            lines.append(
                f"pool '{pool}' ({info.slot_count} slot(s)): held by run {slot.run_id} "
                f"step {slot.step_key} ({status})"
            )
    return lines
