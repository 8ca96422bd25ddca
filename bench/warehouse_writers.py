"""Concurrent writers of a per-video table: the scale-out Parquet warehouse (a file per
partition, `fvc_dagster.lib.parquet_warehouse`) against one DuckDB file opened under a lock
(the embedded warehouse's way, `fvc_dagster.lib.locking`).

`python -m bench.warehouse_writers`: W processes each write P partitions (11 rows of 17
columns per video, like the clip feature tables), one or eight partitions per write; the
table is read back whole and the row counts checked. Everything under a temporary folder.
"""

from __future__ import annotations

import multiprocessing
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from fvc_dagster.lib.locking import exclusive
from fvc_dagster.lib.parquet_warehouse import read_table, write_table

ROWS_PER_VIDEO, FEATURES = 11, 15


def frame(videos: list[str]) -> pd.DataFrame:
    n = len(videos) * ROWS_PER_VIDEO
    rng = np.random.default_rng(len(videos))
    return pd.DataFrame(
        {
            "video_id": np.repeat(videos, ROWS_PER_VIDEO),
            "clip_id": [f"c{i}" for i in range(n)],
            **{f"f{k}": rng.random(n) for k in range(FEATURES)},
        }
    )


def batches(writer: int, partitions: int, per_write: int):
    for i in range(0, partitions, per_write):
        yield [f"w{writer}v{j}" for j in range(i, i + per_write)]


def parquet_writer(root: str, writer: int, partitions: int, per_write: int) -> None:
    for videos in batches(writer, partitions, per_write):
        write_table(root, "features", frame(videos), "video_id", videos)


def duckdb_writer(database: str, writer: int, partitions: int, per_write: int) -> None:
    for videos in batches(writer, partitions, per_write):
        rows = frame(videos)
        with exclusive(database, f"writer {writer}"), duckdb.connect(database) as con:
            con.register("fvc_rows", rows)
            con.execute("create schema if not exists fvc")
            con.execute("create table if not exists fvc.features as from fvc_rows limit 0")
            con.execute(
                "delete from fvc.features where video_id in (from fvc_rows select video_id)"
            )
            con.execute("insert into fvc.features from fvc_rows")


def timed(target, destination: str, writers: int, partitions: int, per_write: int) -> float:
    context = multiprocessing.get_context("fork")
    processes = [
        context.Process(target=target, args=(destination, w, partitions, per_write))
        for w in range(writers)
    ]
    start = time.perf_counter()
    for process in processes:
        process.start()
    for process in processes:
        process.join()
        assert process.exitcode == 0, target.__name__
    return time.perf_counter() - start


def main(partitions: int = 24) -> None:
    print("| writers x partitions per write | Parquet per partition | read back | DuckDB + lock |")
    print("|---|---|---|---|")
    for writers in (1, 4):
        for per_write in (1, 8):
            with tempfile.TemporaryDirectory() as folder:
                root, database = str(Path(folder, "warehouse")), str(Path(folder, "wh.duckdb"))
                parquet = timed(parquet_writer, root, writers, partitions, per_write)
                start = time.perf_counter()
                rows = len(read_table(root, "features"))
                read = time.perf_counter() - start
                locked = timed(duckdb_writer, database, writers, partitions, per_write)
                with duckdb.connect(database, read_only=True) as con:
                    (locked_rows,) = con.execute("select count(*) from fvc.features").fetchone()
                assert rows == locked_rows == writers * partitions * ROWS_PER_VIDEO
                print(
                    f"| {writers} x {per_write} | {parquet:.2f} s | {read * 1000:.0f} ms "
                    f"| {locked:.2f} s |"
                )


if __name__ == "__main__":
    main()
