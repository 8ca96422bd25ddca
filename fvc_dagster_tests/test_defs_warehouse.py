"""The warehouse's tables follow their assets' columns: written by name, a changed column set
replaces a whole table and extends a partitioned one, through real materializations."""

import dagster as dg
import duckdb
import pandas as pd

from fvc_dagster.defs.warehouse import WAREHOUSE_SCHEMA, WarehouseIOManager

PARTS = dg.StaticPartitionsDefinition(["0", "1"])


def materialize(tmp_path, frame: pd.DataFrame, partition: str | None = None) -> None:
    """Materialize `frame` as the asset `table` (partitioned by `fold` when `partition`)."""

    @dg.asset(
        name="table",
        partitions_def=PARTS if partition else None,
        metadata={"partition_expr": "fold"} if partition else None,
    )
    def table() -> pd.DataFrame:
        return frame

    database = str(tmp_path / "warehouse.duckdb")
    io_manager = WarehouseIOManager(database=database, schema=WAREHOUSE_SCHEMA)
    result = dg.materialize([table], resources={"io_manager": io_manager}, partition_key=partition)
    assert result.success


def stored(tmp_path) -> pd.DataFrame:
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        return con.execute(f"select * from {WAREHOUSE_SCHEMA}.table order by all").df()


def test_a_partition_is_written_by_column_name_and_new_columns_extend_the_table(tmp_path):
    materialize(tmp_path, pd.DataFrame({"fold": ["0"], "a": [1], "b": [2]}), partition="0")
    # Same columns in another order: by position, b's value would land in a.
    materialize(tmp_path, pd.DataFrame({"b": [20], "fold": ["1"], "a": [10]}), partition="1")
    assert stored(tmp_path).to_dict("list") == {"fold": ["0", "1"], "a": [1, 10], "b": [2, 20]}

    # A new column: the table gains it, the other partition's rows hold NULL there.
    materialize(tmp_path, pd.DataFrame({"fold": ["1"], "role": ["test"], "a": [11], "b": [21]}),
                partition="1")  # fmt: skip
    table = stored(tmp_path)
    assert list(table.columns) == ["fold", "a", "b", "role"]
    assert table.fillna("").to_dict("list") == {
        "fold": ["0", "1"], "a": [1, 11], "b": [2, 21], "role": ["", "test"]
    }  # fmt: skip


def test_a_whole_table_with_other_columns_is_replaced(tmp_path):
    materialize(tmp_path, pd.DataFrame({"a": [1, 2], "b": [3, 4]}))
    materialize(tmp_path, pd.DataFrame({"c": ["x"], "a": [5]}))
    assert stored(tmp_path).to_dict("list") == {"c": ["x"], "a": [5]}
