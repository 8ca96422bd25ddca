"""Throughput of a 64-video backfill of the per-video pipeline: one worker against two.

`python -m bench.throughput` generates a 64-video corpus (the demo's generator), registers its
videos with the archive sensor, and runs the `video_pipeline` backfill (batches of 32, as the
backfill policy cuts it) on a fresh data root per setting:

- embedded default (SQLite instance, in-process executor, DuckDB under its lock): each worker is
  a `dagster job execute` process per batch, pinned to one core (`taskset`), one worker running
  the batches one after another, two running them side by side;

Reported: wall time, the summed per-video work (each per-video step's own per-video seconds,
from its materialization metadata), the speed-up of two workers (goal at least 1.7) and the
orchestration overhead, wall time x workers over summed work, minus one (goal at most 10%).
Both settings must produce the same feature rows and clip checksums before any time is
reported.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd

from bench.run import RESULTS, write_atomic
from fvc_dagster.defs.partitions import VIDEO_BATCH_SIZE, partition_range_tags

REPO = Path(__file__).resolve().parents[1]
VIDEOS = 64
PER_VIDEO_ASSETS = ("source_videos", "augmented_clips", "handcrafted_features", "scaled_clips",
                    "scaled_features")  # fmt: skip
SPEEDUP_GOAL, OVERHEAD_GOAL = 1.7, 0.10
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def prepare_root(root: Path, inbox: Path) -> list[str]:
    """A fresh data root holding a copy of `inbox`, its videos registered by the archive
    sensor on its instance; the video partition keys in order."""
    from fvc_dagster.definitions import build_defs

    shutil.copytree(inbox, root / "inbox")
    home = root / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)
    defs = build_defs(root)
    with dg.DagsterInstance.get() as instance:
        sensor = defs.resolve_sensor_def("archive_sensor")
        with dg.build_sensor_context(
            instance=instance, definitions=defs, resources=dict(defs.resources)
        ) as context:
            (request,) = sensor(context).dynamic_partitions_requests
        keys = list(request.partition_keys)
        instance.add_dynamic_partitions(request.partitions_def_name, keys)
    return keys


def execute_batch(batch: list[str]) -> str:
    """The shell command running `video_pipeline` on a batch of videos (a partition range)."""
    tags = json.dumps(partition_range_tags(batch[0], batch[-1]))
    return (f"{sys.executable} -m dagster job execute -m fvc_dagster.definitions "
            f"-j video_pipeline --tags '{tags}'")  # fmt: skip


def run_embedded(root: Path, batches: Sequence[list[str]], workers: int) -> float:
    """Wall seconds of the batches on `workers` single-core workers, each running its share
    of the batches one after another as `dagster job execute` processes."""
    env = {**os.environ, **ONE_THREAD, "FVC_DATA_DIR": str(root),
           "DAGSTER_HOME": str(root / "dagster_home")}  # fmt: skip
    shares = [batches[w::workers] for w in range(workers)]
    start = time.perf_counter()
    processes = [
        subprocess.Popen(
            [
                "taskset",
                "-c",
                str(w % (os.cpu_count() or 1)),
                "bash",
                "-ec",
                "; ".join(execute_batch(batch) for batch in share),
            ],
            env=env,
            cwd=root,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for w, share in enumerate(shares)
    ]
    for process in processes:
        _, errors = process.communicate()
        if process.returncode:
            raise RuntimeError(f"a worker failed:\n{errors[-3000:]}")
    return time.perf_counter() - start


def per_video_work(root: Path) -> float:
    """Seconds of per-video work the steps measured (mean per video x videos, per run)."""
    os.environ["DAGSTER_HOME"] = str(root / "dagster_home")
    total = 0.0
    with dg.DagsterInstance.get() as instance:
        for asset in PER_VIDEO_ASSETS:
            runs = {}
            for record in instance.fetch_materializations(dg.AssetKey(asset), limit=10_000).records:
                meta = record.asset_materialization.metadata
                runs[record.run_id] = meta["seconds_per_video"].value * meta["videos"].value
            total += sum(runs.values())
    return total


def results_of(root: Path) -> dict[str, pd.DataFrame]:
    """The feature tables and clip checksums a setting produced, canonically ordered."""
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as con:
        tables = {
            "handcrafted_features": "select * from fvc.handcrafted_features order by clip_id",
            "scaled_features": "select * from fvc.scaled_features order by clip_id",
            "clips": "select clip_id, sha256 from fvc.augmented_clips order by clip_id",
            "scaled": "select clip_id, sha256 from fvc.scaled_clips order by clip_id",
        }
        return {name: con.execute(sql).df() for name, sql in tables.items()}


def main() -> None:
    from fvc_dagster.lib.corpus import CorpusSpec, generate_corpus

    work_dir = Path(tempfile.mkdtemp(prefix="fvc_throughput_"))
    inbox = work_dir / "inbox"
    print(f"generating {VIDEOS} videos into {inbox}")
    generate_corpus(inbox, CorpusSpec(n_videos=VIDEOS, n_archives=2, seed=7), True)
    rows, outputs = [], {}
    for workers in (1, 2):
        root = work_dir / f"embedded_{workers}"
        keys = prepare_root(root, inbox)
        batches = [keys[i : i + VIDEO_BATCH_SIZE] for i in range(0, len(keys), VIDEO_BATCH_SIZE)]
        wall = run_embedded(root, batches, workers)
        work = per_video_work(root)
        outputs[workers] = results_of(root)
        rows.append({"profile": "embedded", "workers": workers, "videos": len(keys),
                     "wall_s": wall, "per_video_work_s": work})  # fmt: skip
        print(f"embedded, {workers} worker(s): {wall:.1f} s wall, {work:.1f} s of per-video work")
    for name, frame in outputs[1].items():
        pd.testing.assert_frame_equal(outputs[2][name], frame, obj=name)
    table = pd.DataFrame(rows)
    table["overhead"] = table["wall_s"] * table["workers"] / table["per_video_work_s"] - 1
    one = table.set_index("workers")["wall_s"]
    speedup = one[1] / one[2]
    report = (
        f"# Throughput: a {VIDEOS}-video backfill, 1 vs 2 single-core workers\n\n"
        f"{table.round(3).to_markdown(index=False)}\n\n"
        f"Speed-up of two workers (embedded): {speedup:.2f}x (goal >= {SPEEDUP_GOAL}); "
        f"overhead is wall x workers / summed per-video work - 1 (goal <= {OVERHEAD_GOAL:.0%}). "
        "Feature rows and clip checksums of both settings were checked equal first.\n"
    )
    write_atomic(RESULTS / "throughput.md", lambda p: p.write_text(report))
    print(report)
    shutil.rmtree(work_dir)


if __name__ == "__main__":
    main()
