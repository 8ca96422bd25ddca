"""The scale-out warehouse: one Parquet file per table partition, read through DuckDB views.

DuckDB lets one process write a database file at a time, so workers on several machines cannot
share one `.duckdb` file. Here every (table, partition) is its own Parquet file under a root
that every worker sees, a folder on a shared volume (an object store URL is refused: DuckDB's
`httpfs` extension, which its reads and views would need, cannot be tested here):

    <root>/<table>/<quoted partition key>.parquet     a partitioned table, a file per partition
    <root>/<table>/_table.parquet                     an unpartitioned table

A write is DuckDB's built-in `COPY ... (FORMAT parquet)` to a temporary name in the same folder,
then an atomic rename: readers see the old rows or the new ones, never half a file, and
writers of different partitions never wait for each other. A re-run replaces its partition's
file; a partition left without rows loses its file. Loads read each file through one open
handle (a consistent file even when its name is replaced meanwhile); SQL goes through views
(`<schema>.<table>` over `<root>/<table>/*.parquet`, `union_by_name`) whose queries are retried
when a file changed under them.

No Dagster here: the IO manager and the warehouse resource in `fvc_dagster.defs.scaleout`
are thin glue over these functions.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import quote, unquote

import duckdb
import pandas as pd

if TYPE_CHECKING:  # imported where used: loading the definitions needs no pyarrow
    import pyarrow as pa

SUFFIX = ".parquet"
UNPARTITIONED = "_table"  # no partition file starts with "_": quoted keys escape it
TEMP_SUFFIX = ".tmp"
RETRY_ATTEMPTS, RETRY_WAIT = 6, 0.02  # seconds, doubling: 0.6 s in all
T = TypeVar("T")


def check_root(root: str | os.PathLike) -> str:
    """`root` as a folder path; ValueError naming it when it is a URL (`s3://...`)."""
    if "://" in str(root):
        raise ValueError(
            f"warehouse root {root!r}: the Parquet warehouse is a folder every worker sees (a "
            "shared volume); object store URLs are not supported"
        )
    return str(root)


def _join(root: str, *parts: str) -> str:
    return str(Path(check_root(root), *parts))


def file_stem(partition: str | None) -> str:
    """The file name (without `.parquet`) of a partition: the key URL-quoted (no `/`, `%`,
    spaces...), a leading `_`, `.` or `~` escaped too; `_table` for an unpartitioned table."""
    if partition is None:
        return UNPARTITIONED
    if partition == "":
        raise ValueError("a partition key must not be empty")
    stem = quote(partition, safe="")
    if stem[0] in "_.~":
        stem = f"%{ord(stem[0]):02X}{stem[1:]}"
    return stem


def partition_of(file_name: str) -> str | None:
    """The partition key of a file written by `write_table` (None: the unpartitioned file)."""
    stem = file_name.removesuffix(SUFFIX)
    return None if stem == UNPARTITIONED else unquote(stem)


def table_path(root: str, table: str) -> str:
    """The folder of `table`'s files."""
    if not table or "/" in table or table.startswith("."):
        raise ValueError(f"not a table name: {table!r}")
    return _join(root, table)


def partition_path(root: str, table: str, partition: str | None) -> str:
    """The file holding `partition`'s rows of `table` (None: the unpartitioned table)."""
    return _join(table_path(root, table), file_stem(partition) + SUFFIX)


def table_glob(root: str, table: str) -> str:
    """The glob of every file of `table` (what its view reads)."""
    return _join(table_path(root, table), "*" + SUFFIX)


def sql_string(value: str) -> str:
    """`value` as a SQL string literal."""
    return "'" + str(value).replace("'", "''") + "'"


def sql_identifier(value: str) -> str:
    """`value` as a quoted SQL identifier."""
    return '"' + str(value).replace('"', '""') + '"'


def _connect() -> duckdb.DuckDBPyConnection:
    return duckdb.connect(":memory:")


def write_rows(
    frame: pd.DataFrame, path: str, con: duckdb.DuckDBPyConnection | None = None
) -> None:
    """Write `frame` as one Parquet file at `path` (DuckDB `COPY`, on `con` or a new in-memory
    connection), atomically: to a temporary name in the same folder, then renamed over `path`."""
    if con is None:
        with _connect() as own:
            return write_rows(frame, path, own)
    con.register("fvc_rows", frame)
    try:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f".{target.name}.{uuid.uuid4().hex}{TEMP_SUFFIX}")
        try:
            con.execute(f"COPY (select * from fvc_rows) TO {sql_string(temp)} (FORMAT parquet)")
            os.replace(temp, target)
        finally:
            temp.unlink(missing_ok=True)
    finally:
        con.unregister("fvc_rows")


def remove_rows(path: str) -> bool:
    """Delete a partition's file (its rows); False when there was none."""
    try:
        os.remove(path)
    except FileNotFoundError:
        return False
    return True


def list_files(root: str, table: str) -> list[str]:
    """The files of `table` (sorted), none when it has never been written."""
    folder = Path(table_path(root, table))
    if not folder.is_dir():
        return []
    return sorted(str(p) for p in folder.iterdir() if p.name.endswith(SUFFIX))


def list_tables(root: str) -> list[str]:
    """The tables under `root` that have at least one file."""
    base = Path(check_root(root))
    if not base.is_dir():
        return []
    return sorted(
        d.name
        for d in base.iterdir()
        if d.is_dir() and not d.name.startswith(".") and any(d.glob("*" + SUFFIX))
    )


def split_by_partition(
    frame: pd.DataFrame, column: str, partitions: Sequence[str]
) -> dict[str, pd.DataFrame]:
    """The rows of each partition (rows whose `column`, as text, is its key). Raises on rows of
    partitions not in `partitions`: they would be written nowhere."""
    if column not in frame.columns:
        raise ValueError(f"the rows have no column {column!r} to split partitions on")
    keys = frame[column].astype(str)
    stray = sorted(set(keys) - set(partitions))
    if stray:
        raise ValueError(
            f"rows of partitions {stray[:5]} (column {column!r}) are not among the partitions "
            f"being written ({len(partitions)}: {list(partitions)[:5]}...)"
        )
    return {key: frame[keys == key] for key in partitions}


def write_table(
    root: str,
    table: str,
    frame: pd.DataFrame,
    partition_column: str | None = None,
    partitions: Sequence[str] | None = None,
) -> dict[str, int]:
    """Replace `partitions` of `table` with `frame`'s rows (split on `partition_column`), or
    the whole table when `partitions` is None. A partition without rows loses its file.
    Returns the rows written per file stem."""
    written: dict[str, int] = {}
    if partitions is None:
        write_rows(frame, partition_path(root, table, None))
        written[UNPARTITIONED] = len(frame)
        stale = [f for f in list_files(root, table) if partition_of(Path(f).name) is not None]
        for path in stale:  # the table was partitioned before
            remove_rows(path)
        return written
    if partition_column is None:
        raise ValueError(f"{table}: a partitioned write needs the partition column")
    with _connect() as con:
        for key, rows in split_by_partition(frame, partition_column, partitions).items():
            path = partition_path(root, table, key)
            if len(rows):
                write_rows(rows.reset_index(drop=True), path, con)
            else:
                remove_rows(path)
            written[file_stem(key)] = len(rows)
    remove_rows(partition_path(root, table, None))  # the table was unpartitioned before
    return written


def _read_file(path: str) -> pa.Table | None:
    """A file's rows read through one open handle: the file as it was when opened, whatever
    replaces its name meanwhile (DuckDB opens a file twice, for its footer, then its data).
    None when it was removed since it was listed (its partition has no rows now)."""
    import pyarrow.parquet as pq

    try:
        with open(path, "rb") as handle:
            return pq.ParquetFile(handle).read()
    except FileNotFoundError:
        return None


def _frame(tables: list[pa.Table]) -> pd.DataFrame:
    """Tables stacked by column name (a column missing from a file is null there), converted
    to pandas by DuckDB: the same dtypes as the views and the DuckDB IO manager give."""
    import pyarrow as pa

    table = pa.concat_tables(tables, promote_options="permissive")
    with _connect() as con:
        return con.from_arrow(table).df()


def read_table(root: str, table: str, partitions: Sequence[str] | None = None) -> pd.DataFrame:
    """The rows of `table` (of `partitions` only, when given; those never written have none).
    Raises FileNotFoundError when the table has no file at all."""
    files = list_files(root, table)
    if not files:
        raise FileNotFoundError(f"table {table!r} has no rows under {root}: materialize it first")
    chosen = files
    if partitions is not None:
        wanted = {file_stem(key) + SUFFIX for key in partitions}
        chosen = [f for f in files if Path(f).name in wanted]
    tables = [t for t in map(_read_file, chosen) if t is not None]
    if not tables:  # no rows, but the table's columns
        schemas = [t.schema for t in map(_read_file, files) if t is not None]
        if not schemas:
            raise FileNotFoundError(f"table {table!r} has no rows under {root}")
        return _frame([schemas[0].empty_table()])
    return _frame(tables)


def retrying(
    execute: Callable[..., T], attempts: int = RETRY_ATTEMPTS, wait: float = RETRY_WAIT
) -> Callable[..., T]:
    """`execute` retried on DuckDB errors: a query over the views reads a file's footer and
    then its data through two opens, and fails (never returns mixed rows) when a writer
    replaced or removed the file in between; the next attempt sees the new files."""

    def run(*args, **kwargs) -> T:
        for attempt in range(attempts):
            try:
                return execute(*args, **kwargs)
            except duckdb.Error:
                if attempt == attempts - 1:
                    raise
                time.sleep(wait * 2**attempt)
        raise AssertionError("unreachable")

    return run


class ViewConnection:
    """A DuckDB connection over the warehouse views whose `execute` retries (see `retrying`);
    everything else is the connection's own."""

    def __init__(self, connection: duckdb.DuckDBPyConnection) -> None:
        self._connection = connection
        self.execute = retrying(connection.execute)

    def __getattr__(self, name: str):
        return getattr(self._connection, name)


def view_ddl(root: str, schema: str, tables: Iterable[str]) -> list[str]:
    """SQL creating `schema` and a view `<schema>.<table>` over each table's files."""
    statements = [f"create schema if not exists {sql_identifier(schema)}"]
    for table in tables:
        statements.append(
            f"create or replace view {sql_identifier(schema)}.{sql_identifier(table)} as "
            f"select * from read_parquet({sql_string(table_glob(root, table))}, "
            "union_by_name = true)"
        )
    return statements


def create_views(con: duckdb.DuckDBPyConnection, root: str, schema: str) -> list[str]:
    """Create the views of every table under `root` on `con`; returns the tables."""
    tables = list_tables(root)
    for statement in view_ddl(root, schema, tables):
        con.execute(statement)
    return tables


def write_view_database(root: str, database: str | os.PathLike, schema: str) -> list[str]:
    """A DuckDB file of views over the warehouse (for the DuckDB CLI, notebooks, BI tools),
    replaced atomically. Views read the files as they are at query time; a table created
    later needs the file to be written again. Returns the tables."""
    root = str(Path(check_root(root)).resolve())  # views outlive the cwd
    target = Path(database).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.{uuid.uuid4().hex}{TEMP_SUFFIX}")
    try:
        with duckdb.connect(str(temp)) as con:
            tables = create_views(con, root, schema)
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)
    return tables


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m fvc_dagster.lib.parquet_warehouse ROOT DATABASE [SCHEMA]`: write the
    DuckDB file of views over the warehouse at ROOT."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) not in (2, 3):
        print(main.__doc__, file=sys.stderr)
        return 2
    schema = args[2] if len(args) == 3 else "fvc"
    tables = write_view_database(args[0], args[1], schema)
    print(f"{args[1]}: {len(tables)} views in schema {schema}: {', '.join(tables)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
