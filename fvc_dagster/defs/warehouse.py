"""The DuckDB warehouse: its schema, its IO manager and resource opening the file only under the
warehouse lock (short reads and writes; the compute of concurrent steps overlaps), and a
table's current rows."""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import dagster as dg
import pandas as pd
from dagster._core.storage.db_io_manager import DbIOManager
from dagster_duckdb import DuckDBResource
from dagster_duckdb.io_manager import DuckDbClient
from dagster_duckdb_pandas import DuckDBPandasIOManager

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


class WarehouseIOManager(DuckDBPandasIOManager):
    """DuckDB tables of pandas frames, written and read under the warehouse lock."""

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
