"""Whether a process of this machine still runs, by pid, and is the one that was running at a
given time rather than a later process that reuses its pid.

On Linux the process table in /proc says both: a process that is gone or a zombie (killed, not
yet reaped by its parent) is not running, and one whose start time comes after the time asked
about is another process. Elsewhere only existence is known (`kill(pid, 0)`).
"""

from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")
# /proc gives the boot time in whole seconds: start times are known to within a second.
START_TIME_SLACK_SECONDS = 1.0


def process_running(pid: int, started_by: float | None = None) -> bool:
    """Whether process `pid` runs (a zombie does not) and, if `started_by` (a Unix time) is
    given, had started by then."""
    if pid <= 0:
        return False
    if not PROC.joinpath("self", "stat").exists():
        return _exists(pid)
    try:
        stat = PROC.joinpath(str(pid), "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # The command name (in parentheses) may hold spaces: the fields after it are split.
    state, *fields = stat.rpartition(")")[2].split()
    if state in {"Z", "X"}:
        return False
    if started_by is None:
        return True
    return _start_time(int(fields[18])) <= started_by + START_TIME_SLACK_SECONDS


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _start_time(ticks_after_boot: int) -> float:
    """The Unix time of a start time given in clock ticks after boot."""
    for line in PROC.joinpath("stat").read_text().splitlines():
        if line.startswith("btime "):
            boot = int(line.split()[1])
            return boot + ticks_after_boot / os.sysconf("SC_CLK_TCK")
    raise RuntimeError("/proc/stat gives no boot time (btime)")
