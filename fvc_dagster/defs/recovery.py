"""Runs that died: what the daemon's run monitoring does under `dagster dev`, done by a process
that executes runs itself (the demo) for the runs it started.

A run executed in-process is tagged with its process id; if that process is gone while the run
is still in progress (SIGKILL, out of memory), the run is marked failed and its pool slots are
freed, so that later runs never wait on a slot nobody will give back.
"""

from __future__ import annotations

import os
import socket

import dagster as dg
from dagster._core.storage.dagster_run import FINISHED_STATUSES, IN_PROGRESS_RUN_STATUSES

PROCESS_TAG = "fvc/process"


def process_tags() -> dict[str, str]:
    """Tags naming this process (host:pid) for the runs it executes in-process."""
    return {PROCESS_TAG: f"{socket.gethostname()}:{os.getpid()}"}


def process_alive(tag: str) -> bool:
    """Whether the process a run's `PROCESS_TAG` names still runs (another host's counts as
    alive: only the local process table is known)."""
    host, _, pid = tag.rpartition(":")
    if host != socket.gethostname():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):  # someone else's process, or not a pid: assume alive
        pass
    return True


def fail_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed the in-progress runs whose executing process died, and free the pool slots
    of every run that ended; a line per run dealt with."""
    found = []
    records = instance.get_run_records(dg.RunsFilter(statuses=list(IN_PROGRESS_RUN_STATUSES)))
    for record in records:
        run = record.dagster_run
        tag = run.tags.get(PROCESS_TAG)
        if not tag or process_alive(tag):
            continue
        instance.report_run_failed(
            run, f"its process ({tag}) is gone (killed?) while the run was {run.status.value}"
        )
        found.append(f"run {run.run_id} ({run.job_name}) died with its process {tag}: failed")
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
