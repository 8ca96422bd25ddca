"""A demo killed with SIGKILL in the middle of a video batch: the next demo finds the dead run,
fails it, and finishes with the same tables and byte-identical clip files as a demo that was
never interrupted."""

import contextlib
import hashlib
import io
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from conftest import REPO, write_labelled_inbox
from fvc_dagster.lib.clips.store import CLIP_SUFFIX
from fvc_dagster.local.demo import run_demo

VIDEOS = [f"killvid{n:04d}" for n in range(10)]  # five real and five fake cascades
# What differs between two runs by design: ids of runs, and where the data root is.
RUN_SPECIFIC = {"mlflow_run_id", "dagster_run_id", "path"}
FILE_FOLDERS = ("videos", "clips", "scaled")
pytestmark = pytest.mark.long


def fill_inbox(root: Path, video_bytes) -> None:
    write_labelled_inbox(root / "inbox", VIDEOS, video_bytes)
    (root / "dagster_home").mkdir()
    shutil.copy(REPO / "dagster.yaml", root / "dagster_home" / "dagster.yaml")


def demo_process(root: Path, **popen) -> subprocess.Popen:
    """`fvc demo` (baselines only) on `root`, as `make demo` runs it."""
    env = {**os.environ, "FVC_DATA_DIR": str(root), "DAGSTER_HOME": str(root / "dagster_home")}
    command = [sys.executable, "-m", "fvc_dagster.cli", "demo"]
    return subprocess.Popen(
        [*command, "--models", "none", "--embedding-models", "none", "--test-videos", "0"],
        env=env, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen,
    )  # fmt: skip


def tables(root: Path) -> dict[str, pd.DataFrame]:
    """Every warehouse table, run-specific columns dropped, rows in a canonical order."""
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as con:
        names = [n for (n,) in con.execute("select table_name from information_schema.tables "
                                           "where table_schema = 'fvc'").fetchall()]  # fmt: skip
        frames = {n: con.execute(f"select * from fvc.{n}").df() for n in names}
    canonical = {}
    for name, frame in frames.items():
        frame = frame.drop(columns=[c for c in frame.columns if c in RUN_SPECIFIC])
        frame = frame.astype(str)  # lists and floats compared by value, sortable
        canonical[name] = frame.sort_values(list(frame.columns)).reset_index(drop=True)
    return canonical


def checksums(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for folder in FILE_FOLDERS
        for path in sorted((root / folder).rglob("*"))
        if path.is_file()
    }


def test_a_demo_killed_mid_batch_is_recovered_by_the_next_one_with_identical_results(
    tmp_path: Path, video_bytes, monkeypatch
):
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    for root in (clean, killed):
        fill_inbox(root, video_bytes)

    first = demo_process(killed, start_new_session=True)
    deadline = time.monotonic() + 300
    while not any((killed / "clips").rglob(f"*{CLIP_SUFFIX}")):  # augmenting the batch
        assert first.poll() is None and time.monotonic() < deadline, first.stdout.read()
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    monkeypatch.setenv("DAGSTER_HOME", str(killed / "dagster_home"))
    (dead,) = dg.DagsterInstance.get().get_runs(dg.RunsFilter(job_name="video_pipeline"))
    assert dead.status == dg.DagsterRunStatus.STARTED  # nobody knows it died yet

    second = demo_process(killed)
    printed = second.communicate(timeout=600)[0]
    assert second.returncode == 0, printed
    assert f"recovered: run {dead.run_id} (video_pipeline) died with its process" in printed
    assert dg.DagsterInstance.get().get_run_by_id(dead.run_id).status == (
        dg.DagsterRunStatus.FAILURE
    )

    monkeypatch.setenv("DAGSTER_HOME", str(clean / "dagster_home"))
    with contextlib.redirect_stdout(io.StringIO()):
        assert run_demo(clean, networks=(), embedding_models=(), test_videos=0) == 0

    assert checksums(killed) == checksums(clean) and len(checksums(clean)) > len(VIDEOS)
    expected, got = tables(clean), tables(killed)
    assert sorted(got) == sorted(expected)
    for name, frame in expected.items():
        pd.testing.assert_frame_equal(got[name], frame, obj=name)
