"""The DuckDB warehouse: its schema, and a table's current rows read inside a pooled step."""

import pandas as pd
from dagster_duckdb import DuckDBResource

WAREHOUSE_SCHEMA = "fvc"


def existing_table(warehouse: DuckDBResource, table: str) -> pd.DataFrame | None:
    """Every row of `fvc.<table>` as it is now; None before its first materialization."""
    with warehouse.get_connection() as con:
        exists = con.execute(
            "select count(*) from information_schema.tables "
            "where table_schema = ? and table_name = ?",
            [WAREHOUSE_SCHEMA, table],
        ).fetchone()[0]
        return con.execute(f"select * from {WAREHOUSE_SCHEMA}.{table}").df() if exists else None
