"""The Parquet warehouse: file layout, atomic per-partition writes, reads, views."""

import multiprocessing
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from fvc_dagster.lib.parquet_warehouse import (
    ViewConnection,
    create_views,
    file_stem,
    list_tables,
    partition_of,
    partition_path,
    read_table,
    retrying,
    split_by_partition,
    view_ddl,
    write_table,
    write_view_database,
)


def frame(videos: list[str], rows_each: int = 2) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "video_id": [v for v in videos for _ in range(rows_each)],
            "clip": [i for _ in videos for i in range(rows_each)],
            "score": np.linspace(0, 1, len(videos) * rows_each),
        }
    )


@pytest.mark.parametrize(
    "key", ["abc-DEF_09", "_leading", ".hidden", "a/b", "100%", "sp ace", "~x", "é"]
)
def test_partition_file_names_round_trip_and_stay_one_plain_file(key):
    stem = file_stem(key)
    assert "/" not in stem and not stem.startswith(("_", ".", "~"))
    assert partition_of(stem + ".parquet") == key


def test_the_unpartitioned_file_cannot_be_a_partition_file():
    assert file_stem(None) == "_table" and partition_of("_table.parquet") is None
    assert file_stem("_table") != "_table"
    with pytest.raises(ValueError):
        file_stem("")


def test_paths(tmp_path):
    assert partition_path(str(tmp_path), "t", "v1") == str(tmp_path / "t" / "v1.parquet")
    for url in ("s3://bucket/wh", "gs://bucket/wh"):  # a folder only
        with pytest.raises(ValueError, match=f"'{url}'.*object store URLs are not supported"):
            partition_path(url, "t", None)
    with pytest.raises(ValueError):
        partition_path(str(tmp_path), "../etc", "x")


def test_split_by_partition_refuses_rows_of_other_partitions():
    rows = frame(["a", "b"])
    parts = split_by_partition(rows, "video_id", ["a", "b", "c"])
    assert [len(parts[k]) for k in "abc"] == [2, 2, 0]
    with pytest.raises(ValueError, match="not among the partitions"):
        split_by_partition(rows, "video_id", ["a"])
    with pytest.raises(ValueError, match="no column"):
        split_by_partition(rows, "fold", ["a"])


def test_a_partition_rewrite_replaces_only_its_file(tmp_path):
    root = str(tmp_path)
    write_table(root, "clips", frame(["a", "b"]), "video_id", ["a", "b"])
    write_table(root, "clips", frame(["c"]), "video_id", ["c"])
    assert sorted(p.name for p in (tmp_path / "clips").iterdir()) == [
        "a.parquet",
        "b.parquet",
        "c.parquet",
    ]
    write_table(root, "clips", frame(["b"], rows_each=5), "video_id", ["b"])
    table = read_table(root, "clips")
    assert table.groupby("video_id").size().to_dict() == {"a": 2, "b": 5, "c": 2}
    assert len(read_table(root, "clips", ["a", "c", "never"])) == 4
    # a partition written without rows loses its file
    write_table(root, "clips", frame(["a"]), "video_id", ["a", "b"])
    assert set(read_table(root, "clips")["video_id"]) == {"a", "c"}
    # partitions with no file: no rows, the table's columns
    empty = read_table(root, "clips", ["never"])
    assert empty.empty and list(empty.columns) == ["video_id", "clip", "score"]
    assert not list(tmp_path.rglob("*.tmp"))


def test_unpartitioned_tables_and_missing_tables(tmp_path):
    root = str(tmp_path)
    with pytest.raises(FileNotFoundError, match="materialize it first"):
        read_table(root, "folds")
    write_table(root, "folds", pd.DataFrame({"video_id": ["a"], "fold": [0]}))
    write_table(root, "folds", pd.DataFrame({"video_id": ["a", "b"], "fold": [0, 1]}))
    assert read_table(root, "folds")["fold"].tolist() == [0, 1]
    assert list_tables(root) == ["folds"]


def test_new_columns_in_later_partitions_read_by_name(tmp_path):
    root = str(tmp_path)
    write_table(root, "t", pd.DataFrame({"video_id": ["a"], "x": [1]}), "video_id", ["a"])
    write_table(root, "t", pd.DataFrame({"y": [2.5], "video_id": ["b"]}), "video_id", ["b"])
    table = read_table(root, "t").sort_values("video_id")
    assert list(table.columns) == ["video_id", "x", "y"]
    assert table["y"].isna().tolist() == [True, False]


def test_views_answer_sql_like_the_duckdb_warehouse(tmp_path):
    root = str(tmp_path / "wh")
    write_table(root, "clips", frame(["a", "b"]), "video_id", ["a", "b"])
    write_table(root, "folds", pd.DataFrame({"video_id": ["a", "b"], "fold": [0, 1]}))
    (tmp_path / "wh" / "empty").mkdir()  # a folder without files is no table
    assert view_ddl(root, "fvc", ["t'x"])[1].endswith("/t''x/*.parquet', union_by_name = true)")
    database = tmp_path / "views.duckdb"
    assert write_view_database(root, database, "fvc") == ["clips", "folds"]
    write_table(root, "clips", frame(["c"]), "video_id", ["c"])  # the views see new files
    with duckdb.connect(str(database), read_only=True) as con:
        tables = con.execute(
            "select table_name from information_schema.tables where table_schema = 'fvc' order by 1"
        ).fetchall()
        assert tables == [("clips",), ("folds",)]
        assert con.execute("select count(*) from fvc.clips").fetchone() == (6,)
        joined = con.execute(
            "select fold, count(*) from fvc.clips join fvc.folds using (video_id) group by 1"
        ).fetchall()
        assert sorted(joined) == [(0, 2), (1, 2)]


def _write_many(root: str, worker: int, rounds: int) -> None:
    for i in range(rounds):
        videos = [f"w{worker}v{j}" for j in range(4)]
        write_table(root, "clips", frame(videos, rows_each=50 + i), "video_id", videos)


def test_concurrent_writers_and_readers_never_see_a_torn_table(tmp_path):
    """Three processes re-write their partitions over and over while this one reads the
    table, as a load does and through the views: every read sees each partition whole."""
    root = str(tmp_path)
    context = multiprocessing.get_context("fork")
    writers = [context.Process(target=_write_many, args=(root, w, 10)) for w in range(3)]
    for process in writers:
        process.start()
    loads = queries = 0
    while any(p.is_alive() for p in writers):
        if not list_tables(root):
            continue
        table = read_table(root, "clips")
        assert table.groupby("video_id").size().between(50, 59).all()
        loads += 1
        with duckdb.connect() as con:
            create_views(con, root, "fvc")
            sizes = (
                ViewConnection(con)
                .execute(  # reads the data, not only the footers
                    "select count(*), max(clip) + 1 from fvc.clips group by video_id"
                )
                .fetchall()
            )
            assert all(n == clips and 50 <= n <= 59 for n, clips in sizes)
            queries += 1
    for process in writers:
        process.join()
        assert process.exitcode == 0
    assert loads and queries
    final = read_table(root, "clips")
    assert final.groupby("video_id").size().to_dict() == {
        f"w{w}v{j}": 59 for w in range(3) for j in range(4)
    }
    assert not list(Path(root).rglob("*.tmp"))


def test_retrying_gives_up_after_its_attempts():
    calls = []

    def failing():
        calls.append(1)
        raise duckdb.IOException("gone")

    with pytest.raises(duckdb.IOException):
        retrying(failing, attempts=3, wait=0)()
    assert len(calls) == 3
