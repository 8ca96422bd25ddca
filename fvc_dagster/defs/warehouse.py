"""The DuckDB warehouse: its schema, and a table's current rows read inside a pooled step."""

from collections.abc import Sequence

import pandas as pd
from dagster_duckdb import DuckDBResource

WAREHOUSE_SCHEMA = "fvc"


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
