"""Whether a process runs, by pid: a live one does, a reaped or zombie one does not, and one that
started after the time asked about is another process reusing the pid."""

import subprocess
import sys
import time
from pathlib import Path

from fvc_dagster.lib.processes import process_running


def sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_a_live_process_runs_and_is_told_from_a_later_one_with_its_pid():
    before = time.time() - 5  # as a pid logged 5 s before this process started
    child = sleeper()
    try:
        assert process_running(child.pid)
        assert process_running(child.pid, started_by=time.time())
        assert not process_running(child.pid, started_by=before)
    finally:
        child.kill()
        child.wait()


def test_a_killed_process_does_not_run_reaped_or_not():
    child = sleeper()
    child.kill()
    state = Path(f"/proc/{child.pid}/stat")
    while state.read_text().rpartition(")")[2].split()[0] != "Z":  # killed, not yet reaped
        time.sleep(0.01)
    assert not process_running(child.pid)
    child.wait()
    assert not process_running(child.pid)
    assert not process_running(0) and not process_running(-1)
