"""The DuckDB warehouse: its schema, its IO manager and resource opening the file only under the
warehouse lock (short reads and writes; the compute of concurrent steps overlaps), tables that
follow their asset's columns, and a table's current rows."""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import dagster as dg
import pandas as pd
from dagster._core.storage.db_io_manager import DbIOManager
from dagster_duckdb import DuckDBResource
from dagster_duckdb.io_manager import DuckDbClient
from dagster_duckdb_pandas import DuckDBPandasIOManager, DuckDBPandasTypeHandler

from fvc_dagster.lib.locking import exclusive

WAREHOUSE_SCHEMA = "fvc"


class LockedDuckDbClient(DuckDbClient):
    """The DuckDB IO manager's client, connecting under the warehouse lock; a wait is logged,
    and the seconds waited are in the output's metadata."""

    @staticmethod
    @contextmanager
    def connect(context, table_slice) -> Iterator:
        step = context.step_context
        holder = f"run {step.run_id[:8]} step {step.step.key}"
        database = context.resource_config["database"]
        with exclusive(database, holder, context.log.info) as wait:
            if isinstance(context, dg.OutputContext):
                context.add_output_metadata({"warehouse_wait_s": round(wait.seconds, 3)})
            with DuckDbClient.connect(context, table_slice) as connection:
                yield connection


class ColumnsByNameTypeHandler(DuckDBPandasTypeHandler):
    """Writes a frame into its table by column name, whatever the stored table's column order,
    and follows a change of the asset's columns: a whole table is replaced; a partition's rows
    are written after the table gains the new columns (the other partitions' rows get NULL
    there until they are re-materialized; columns the frame lacks get NULL in its rows).
    Dagster's own handler inserts by position, so a stored table of other columns refuses the
    write, or takes it with values under the wrong columns."""

    def handle_output(self, context, table_slice, obj: pd.DataFrame, connection):
        name = f"{table_slice.schema}.{table_slice.table}"
        stored = _columns(connection, table_slice.schema, table_slice.table)
        if not obj.empty and stored and stored != list(obj.columns):
            if not table_slice.partition_dimensions:
                connection.execute(f"drop table {name}")  # its rows were deleted: all replaced
            else:
                described = "select column_name, column_type from (describe select * from obj)"
                types = dict(connection.execute(described).fetchall())
                for column in [c for c in obj.columns if c not in stored]:
                    connection.execute(f'alter table {name} add column "{column}" {types[column]}')
                    context.log.info(f"{name}: column {column!r} added")
                obj = obj.reindex(columns=_columns(connection, table_slice.schema,
                                                   table_slice.table))  # fmt: skip
        super().handle_output(context, table_slice, obj, connection)


def _columns(connection, schema: str, table: str) -> list[str]:
    """The stored table's columns in order ([] when there is none)."""
    return [
        row[0]
        for row in connection.execute(
            "select column_name from information_schema.columns "
            "where table_schema = ? and table_name = ? order by ordinal_position",
            [schema, table],
        ).fetchall()
    ]


class WarehouseIOManager(DuckDBPandasIOManager):
    """DuckDB tables of pandas frames, written and read under the warehouse lock, by column name."""

    @staticmethod
    def type_handlers():
        return [ColumnsByNameTypeHandler()]

    def create_io_manager(self, context) -> DbIOManager:
        return DbIOManager(
            db_client=LockedDuckDbClient(),
            database=self.database,
            schema=self.schema_,
            type_handlers=self.type_handlers(),
            default_load_type=self.default_load_type(),
            io_manager_name="DuckDBIOManager",
        )


class Warehouse(DuckDBResource):
    """The warehouse for queries inside a step, connected under the warehouse lock."""

    @contextmanager
    def get_connection(self):
        report = dg.get_dagster_logger().info
        with (
            exclusive(self.database, "a warehouse query", report),
            super().get_connection() as connection,
        ):
            yield connection


def existing_table(
    warehouse: DuckDBResource, table: str, where: str = "true", parameters: Sequence = ()
) -> pd.DataFrame | None:
    """Every row of `fvc.<table>` as it is now (those matching the SQL condition `where`, with
    `parameters`); None before its first materialization."""
    with warehouse.get_connection() as con:
        exists = con.execute(
            "select count(*) from information_schema.tables "
            "where table_schema = ? and table_name = ?",
            [WAREHOUSE_SCHEMA, table],
        ).fetchone()[0]
        query = f"select * from {WAREHOUSE_SCHEMA}.{table} where {where}"
        return con.execute(query, list(parameters)).df() if exists else None
