"""The warehouse lock: exclusive across processes, says whom a waiter waits for, and is freed
when its holder is killed."""

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from fvc_dagster.lib.locking import exclusive, holder_of, lock_path


def test_a_waiter_is_told_who_holds_the_lock_and_gets_it_on_release(tmp_path: Path):
    database = tmp_path / "warehouse.duckdb"
    messages: list[str] = []
    released = threading.Event()

    def waiter():
        with exclusive(database, "second", messages.append) as wait:
            assert released.is_set()  # only after the first holder let go
            assert wait.seconds >= 0.2

    with exclusive(database, "first step", messages.append) as first:
        assert first.seconds < 0.1 and messages == []
        thread = threading.Thread(target=waiter)
        thread.start()
        time.sleep(0.3)
        released.set()
    thread.join(timeout=10)
    assert messages[0].startswith("waiting 0 s for warehouse.duckdb.lock, held by first step (pid")
    assert messages[1].startswith("acquired warehouse.duckdb.lock after waiting")
    assert holder_of(lock_path(database)).startswith("second (pid")


def test_a_holder_killed_with_sigkill_frees_the_lock(tmp_path: Path):
    database = tmp_path / "warehouse.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\n"
         "from fvc_dagster.lib.locking import exclusive\n"
         f"with exclusive({str(database)!r}, 'doomed'):\n"
         "    print('held', flush=True)\n"
         "    time.sleep(600)\n"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "held"
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    messages: list[str] = []
    with exclusive(database, "after", messages.append) as wait:
        assert wait.seconds < 5
    assert all("doomed" in m or "acquired" in m for m in messages)
