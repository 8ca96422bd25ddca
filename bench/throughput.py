"""Throughput of a 64-video backfill of the per-video pipeline: one worker against two, for the
embedded default and the scale-out profile.

`python -m bench.throughput` generates a 64-video corpus (the demo's generator), registers its
videos with the archive sensor, and runs the `video_pipeline` backfill as the backfill policy
cuts it (batches of 32), once per setting, each on a fresh data root and instance:

- embedded (SQLite instance, in-process executor, DuckDB under its lock): a worker is a
  `dagster job execute` process per batch pinned to one core (`taskset`), one worker running
  the batches one after another, two side by side; this is what a run launcher does with a
  run queue of one or two;
- scaleout (Postgres instance, Celery executor, Redis, Parquet warehouse; the services of
  `fvc_dagster.local.loopback`):
  a worker is a `dagster-celery worker` pinned to one core running one
  step at a time; both batches' runs start at once (`dagster job execute`, as the queued
  coordinator launches them) and send their steps to the workers.

Every setting must produce the same feature rows and clip checksums as the first before any
time is reported. Reported per setting: wall time (the first run process started to the last
one ended), the summed per-video work (each video's `seconds` in its partition's metadata, per
per-video step), the time inside runs (the union of the runs' start-to-end intervals), how far
apart the runs ended, and:

- speed-up of two workers over one (goal at least 1.7x);
- overhead, wall x workers / summed work - 1 (goal at most 10%), and the same over the time
  inside runs (what is left once every run process has loaded the code);
- where the overhead went, in worker-seconds: inside steps (inputs, rows, Dagster's events per
  partition), between steps (dispatch, waiting), outside runs (run processes starting).
"""

from __future__ import annotations

import json
import os
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd

from bench.run import RESULTS, write_atomic
from fvc_dagster.defs.partitions import VIDEO_BATCH_SIZE, partition_range_tags, videos_partitions

REPO = Path(__file__).resolve().parents[1]
VIDEOS = 64
PER_VIDEO_ASSETS = ("source_videos", "augmented_clips", "handcrafted_features", "scaled_clips",
                    "scaled_features")  # fmt: skip
SPEEDUP_GOAL, OVERHEAD_GOAL = 1.7, 0.10
PROFILES = ("embedded", "scaleout")
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# What each setting's results are compared on: rows keyed by clip, paths (which name the data
# root) left out.
COMPARED = {
    "handcrafted_features": None,
    "scaled_features": None,
    "augmented_clips": ["clip_id", "sha256"],
    "scaled_clips": ["clip_id", "sha256"],
}


def register_videos(instance: dg.DagsterInstance, data_dir: Path) -> list[str]:
    """The videos of `data_dir`'s inbox registered by the archive sensor on `instance`; the
    video partition keys in order."""
    from fvc_dagster.definitions import build_defs
    from fvc_dagster.local.demo import scan_inbox

    scan_inbox(build_defs(data_dir), instance)
    return instance.get_dynamic_partitions(videos_partitions.name)


def batched(keys: Sequence[str]) -> list[Sequence[str]]:
    """The video keys cut as the backfill policy cuts them."""
    return [keys[i : i + VIDEO_BATCH_SIZE] for i in range(0, len(keys), VIDEO_BATCH_SIZE)]


def batch_command(batch: Sequence[str]) -> list[str]:
    """`dagster job execute` of `video_pipeline` on a batch of videos (a partition range)."""
    tags = json.dumps(partition_range_tags(batch[0], batch[-1]))
    return [sys.executable, "-m", "dagster", "job", "execute", "-m", "fvc_dagster.definitions",
            "-j", "video_pipeline", "--tags", tags]  # fmt: skip


def run_all(
    commands: Sequence[Sequence[list[str]]], env: Mapping[str, str], cwd: Path
) -> dict[str, float]:
    """Run each sequence of commands one after another, the sequences side by side: the wall
    seconds, how far apart the sequences ended (summed over each sequence's end to the last
    one's: time a worker had no run left) and the CPU seconds of those processes; RuntimeError
    with the end of its output if one fails."""
    cpu_before = _children_cpu()
    start = time.perf_counter()

    def run(sequence: Sequence[list[str]]) -> tuple[float, int, str]:
        process = subprocess.run(
            ["bash", "-ec", "; ".join(shlex.join(command) for command in sequence)],
            env=dict(env),
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        return time.perf_counter() - start, process.returncode, process.stderr

    with ThreadPoolExecutor(len(commands)) as pool:
        ended = list(pool.map(run, commands))
    for _, returncode, errors in ended:
        if returncode:
            raise RuntimeError(f"a run failed:\n{errors[-3000:]}")
    wall = max(end for end, _, _ in ended)
    return {
        "wall_s": wall,
        "ended_apart_s": sum(wall - end for end, _, _ in ended),
        "run_processes_cpu_s": _children_cpu() - cpu_before,
    }


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measured(instance: dg.DagsterInstance) -> dict[str, float]:
    """From the instance: the per-video work the steps measured, the time inside steps (their
    start-to-end, summed) and inside runs (the union of the runs' start-to-end intervals)."""
    work = sum(
        record.asset_materialization.metadata["seconds"].value
        for asset in PER_VIDEO_ASSETS
        for record in instance.fetch_materializations(dg.AssetKey(asset), limit=10_000).records
    )
    runs = instance.get_run_records()
    in_steps = 0.0
    for run in runs:
        starts = {}
        for record in instance.get_records_for_run(run.dagster_run.run_id, limit=100_000).records:
            event = record.event_log_entry
            kind = event.dagster_event_type
            if kind == dg.DagsterEventType.STEP_START:
                starts[event.step_key] = event.timestamp
            elif kind == dg.DagsterEventType.STEP_SUCCESS:
                in_steps += event.timestamp - starts[event.step_key]
    inside, reach = 0.0, float("-inf")
    for start, end in sorted((r.start_time, r.end_time) for r in runs if r.start_time):
        inside += max(0.0, end - max(start, reach))  # the length of the intervals' union
        reach = max(reach, end)
    return {"per_video_work_s": work, "in_steps_s": in_steps, "inside_runs_s": inside,
            "runs": len(runs)}  # fmt: skip


def embedded_setting(base: Path, inbox: Path, workers: int) -> tuple[dict, Path]:
    """The backfill on the embedded default: measurements, and the DuckDB file of its rows."""
    root = base / f"embedded_{workers}"
    shutil.copytree(inbox, root / "inbox")
    home = root / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, **ONE_THREAD, "FVC_DATA_DIR": str(root), "DAGSTER_HOME": str(home)}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        keys = register_videos(instance, root)
        batches = batched(keys)
        pinned = [
            [["taskset", "-c", str(w % (os.cpu_count() or 1)), *batch_command(b)]
             for b in batches[w::workers]]
            for w in range(workers)
        ]  # fmt: skip
        timed = run_all(pinned, env, root)
        return {**timed, **measured(instance)}, root / "warehouse.duckdb"


def scaleout_setting(base: Path, inbox: Path, workers: int) -> tuple[dict, Path]:
    """The backfill on the scale-out profile over loopback services: measurements, and a DuckDB
    file of views over its Parquet warehouse."""
    from fvc_dagster.lib.parquet_warehouse import write_view_database
    from fvc_dagster.local.loopback import deployment, wait_for

    root = base / f"scaleout_{workers}"
    names = [f"fvcbench{w + 1}" for w in range(workers)]
    cpus = [w % (os.cpu_count() or 1) for w in range(workers)]
    with deployment(root, names, cpus, **ONE_THREAD) as services:
        data_dir = Path(services.env["FVC_DATA_DIR"])
        shutil.copytree(inbox, data_dir / "inbox")
        keys = register_videos(services.instance, data_dir)
        wait_for("the Celery workers", lambda: services.workers_ready() == workers, 300, 0.5)
        batches = batched(keys)
        try:
            timed = run_all([[batch_command(b)] for b in batches], services.env, REPO)
        except RuntimeError as error:
            raise RuntimeError(f"{error}\n{services.log_tails()}") from None
        views = root / "views.duckdb"
        write_view_database(services.env["FVC_WAREHOUSE_URL"], views, "fvc")
        return {**timed, **measured(services.instance)}, views


def results_of(database: Path) -> dict[str, pd.DataFrame]:
    """The compared tables of a setting's warehouse, ordered by clip, paths left out."""
    with duckdb.connect(str(database), read_only=True) as con:
        found = {}
        for table, columns in COMPARED.items():
            frame = con.execute(f"select * from fvc.{table} order by clip_id").df()
            frame = frame[columns] if columns else frame.drop(columns="path", errors="ignore")
            found[table] = frame.reset_index(drop=True)
        return found


@contextmanager
def work_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="fvc_throughput_"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def report(rows: pd.DataFrame, corpus: str) -> str:
    """The results as markdown: the goals, then where the overhead went, in worker-seconds."""
    workers, work = rows["workers"], rows["per_video_work_s"]
    goals = pd.DataFrame(
        {
            "profile": rows["profile"],
            "workers": workers,
            "wall_s": rows["wall_s"],
            "per_video_work_s": work,
            "overhead": rows["wall_s"] * workers / work - 1,
            "overhead_inside_runs": rows["inside_runs_s"] * workers / work - 1,
        }
    )
    where = pd.DataFrame(
        {
            "profile": rows["profile"],
            "workers": workers,
            "in_steps_s": rows["in_steps_s"] - work,
            "between_steps_s": rows["inside_runs_s"] * workers - rows["in_steps_s"],
            "ended_apart_s": rows["ended_apart_s"],
            "outside_runs_s": (rows["wall_s"] - rows["inside_runs_s"]) * workers,
            "runs": rows["runs"],
            "run_processes_cpu_s": rows["run_processes_cpu_s"],
        }
    )
    lines = [f"# Throughput: a {VIDEOS}-video backfill ({corpus} sizes), 1 vs 2 single-core "
             "workers", "",
             goals.round(3).to_markdown(index=False), ""]  # fmt: skip
    for profile, group in rows.groupby("profile", sort=False):
        wall = group.set_index("workers")["wall_s"]
        if {1, 2} <= set(wall.index):
            lines.append(
                f"- {profile}: speed-up of two workers {wall[1] / wall[2]:.2f}x "
                f"(goal >= {SPEEDUP_GOAL}x)"
            )
    lines += [
        "",
        f"Overhead: wall x workers / summed per-video work - 1 (goal <= {OVERHEAD_GOAL:.0%}); "
        "`overhead_inside_runs` counts the time inside runs (the union of the runs' "
        "start-to-end intervals) instead of the wall time, leaving out each run process's "
        "start. Feature rows and clip checksums of every setting were checked equal to the "
        "first's.",
        "",
        "Where the overhead went, in worker-seconds (they add up to wall x workers - work): "
        "inside steps but outside the per-video work (loading inputs, writing rows, Dagster's "
        "events per partition), between steps inside runs (dispatch, waiting, idle workers), "
        "and outside runs (each run process loading the code and creating its run). "
        "`ended_apart_s` (already counted in the columns before it): how far apart the "
        "workers' last runs ended (embedded), or the two runs (scaleout), summed over each to "
        "the last one's end: time a worker had no run left (scaleout: at most; the run left "
        "can use both workers where two of its steps are ready at once). "
        "`run_processes_cpu_s`: CPU seconds of the `dagster job execute` processes (for the "
        "scale-out profile the orchestration alone, the steps running on the workers).",
        "",
        where.round(1).to_markdown(index=False),
    ]
    return "\n".join(lines) + "\n"


def main(profiles: Sequence[str], resolution: tuple[int, int] | None = None) -> None:
    from fvc_dagster.local.corpus import CorpusSpec, generate_corpus
    from fvc_dagster.local.loopback import missing_requirements

    settings = dict(zip(PROFILES, (embedded_setting, scaleout_setting), strict=True))
    if "scaleout" in profiles and (reason := missing_requirements()):
        print(f"scaleout skipped: {reason}")
        profiles = [p for p in profiles if p != "scaleout"]
    corpus = "{}x{}".format(*resolution) if resolution else "native"
    rows, reference = [], None
    with work_dir() as base:
        inbox = base / "inbox"
        print(f"generating {VIDEOS} videos ({corpus} sizes) into {inbox}")
        spec = CorpusSpec(n_videos=VIDEOS, n_archives=2, seed=7, resolution=resolution)
        generate_corpus(inbox, spec, True)
        for profile in profiles:
            for workers in (1, 2):
                found, database = settings[profile](base, inbox, workers)
                results = results_of(database)
                if reference is None:
                    reference = results
                for name, frame in reference.items():
                    pd.testing.assert_frame_equal(
                        results[name], frame, check_dtype=False, obj=f"{profile} {name}"
                    )
                rows.append({"profile": profile, "workers": workers, "videos": VIDEOS, **found})
                print(f"{profile}, {workers} worker(s): {found['wall_s']:.1f} s wall, "
                      f"{found['per_video_work_s']:.1f} s of per-video work, "
                      f"{found['in_steps_s']:.1f} s in steps, "
                      f"{found['inside_runs_s']:.1f} s inside runs")  # fmt: skip
    text = report(pd.DataFrame(rows), corpus)
    name = "throughput.md" if resolution is None else f"throughput_{corpus}.md"
    write_atomic(RESULTS / name, lambda p: p.write_text(text))
    print(text)


if __name__ == "__main__":
    import argparse

    from fvc_dagster.cli import resolution

    parser = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__)
    parser.add_argument("profiles", nargs="*", help="embedded, scaleout (default: both)")
    parser.add_argument("--resolution", type=resolution,
                        help="every original video at WIDTHxHEIGHT (default: the corpus's mix "
                        "of small native sizes, up to 640x360)")  # fmt: skip
    args = parser.parse_args()
    if unknown := set(args.profiles) - set(PROFILES):
        parser.error(f"unknown profiles {sorted(unknown)}; choose from {', '.join(PROFILES)}")
    main(args.profiles or PROFILES, args.resolution)
