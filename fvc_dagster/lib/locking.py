"""A cross-process exclusive lock on a file that says who holds it and never waits silently.

DuckDB lets one process open a database file for writing; the warehouse is opened only under
this lock, for the short read or write of a step's rows, so steps of concurrent runs compute
side by side and queue for the file instead of failing to open it. The lock is `flock` on a
sibling `.lock` file: the kernel releases it when its holder dies, even by SIGKILL.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

POLL_SECONDS = 0.02
REPORT_EVERY_SECONDS = 30.0


@dataclass
class LockWait:
    """How long acquiring the lock waited (0.0 when it was free)."""

    path: Path
    seconds: float = 0.0


def lock_path(path: str | os.PathLike) -> Path:
    """The lock file guarding `path`."""
    return Path(f"{Path(path).resolve()}.lock")


def holder_of(lock: Path) -> str:
    """Who holds (or last held) `lock`, as its holder wrote it."""
    with contextlib.suppress(OSError):
        return lock.read_text().strip() or "unknown"
    return "unknown"


@contextlib.contextmanager
def exclusive(
    path: str | os.PathLike, holder: str, report: Callable[[str], None] | None = None
) -> Iterator[LockWait]:
    """Hold the exclusive lock of `path` as `holder` (who the waiters are told holds it). When
    it is taken, `report` is told whom this waits for, every `REPORT_EVERY_SECONDS` while it
    waits, and how long it waited once it has the lock."""
    lock = lock_path(path)
    lock.parent.mkdir(parents=True, exist_ok=True)
    wait = LockWait(lock)
    with open(lock, "a+") as handle:
        start = time.monotonic()
        reported = None
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - start
                if report and (reported is None or waited - reported >= REPORT_EVERY_SECONDS):
                    report(f"waiting {waited:.0f} s for {lock.name}, held by {holder_of(lock)}")
                    reported = waited
                time.sleep(POLL_SECONDS)
        wait.seconds = time.monotonic() - start
        if reported is not None and report:
            report(f"acquired {lock.name} after waiting {wait.seconds:.2f} s")
        handle.seek(0)
        handle.truncate()
        handle.write(f"{holder} (pid {os.getpid()} on {socket.gethostname()})\n")
        handle.flush()
        try:
            yield wait
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
