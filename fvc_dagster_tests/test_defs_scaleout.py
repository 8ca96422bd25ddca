"""The scale-out profile's Dagster glue, in process: the Parquet IO manager and the warehouse
resource with real (small) assets, the profile switch, and the deploy files' settings."""

import dagster as dg
import pandas as pd
import pytest
import yaml

from conftest import REPO
from fvc_dagster.defs.scaleout import (
    CELERY_SETTINGS,
    EMBEDDED,
    K8S,
    SCALEOUT,
    ParquetWarehouse,
    ParquetWarehouseIOManager,
    profile_from,
)
from fvc_dagster.defs.warehouse import existing_table

DEPLOY = REPO / "deploy" / "scaleout"
videos = dg.DynamicPartitionsDefinition(name="test_videos")


@dg.asset(partitions_def=videos, metadata={"partition_expr": "video_id"})
def clips(context: dg.AssetExecutionContext, warehouse: ParquetWarehouse) -> pd.DataFrame:
    before = existing_table(warehouse, "clips")
    context.add_output_metadata({"rows_before": 0 if before is None else len(before)})
    rows = [(v, clip) for v in context.partition_keys for clip in range(3)]
    return pd.DataFrame(rows, columns=["video_id", "clip"])


@dg.asset
def clip_counts(clips: pd.DataFrame) -> pd.DataFrame:
    return clips.groupby("video_id", as_index=False).size()


def test_profile_from_the_environment():
    assert profile_from(None) == profile_from("") == EMBEDDED
    assert profile_from(" ScaleOut ") == SCALEOUT
    assert profile_from("k8s") == K8S
    with pytest.raises(ValueError, match="FVC_PROFILE"):
        profile_from("cluster")


def test_the_parquet_warehouse_writes_partitions_and_serves_sql(tmp_path):
    root = str(tmp_path / "warehouse")
    resources = {
        "io_manager": ParquetWarehouseIOManager(root=root),
        "warehouse": ParquetWarehouse(root=root),
    }
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(videos.name, ["a", "b", "c"])
        result = dg.materialize(
            [clips],
            instance=instance,
            resources=resources,
            tags={
                "dagster/asset_partition_range_start": "a",
                "dagster/asset_partition_range_end": "b",
            },
        )
        assert result.success
        (written,) = result.asset_materializations_for_node("clips")[:1]
        assert written.metadata["dagster/table_name"].value == "fvc.clips"
        assert written.metadata["dagster/partition_row_count"].value == 6
        assert sorted(p.name for p in (tmp_path / "warehouse" / "clips").iterdir()) == [
            "a.parquet",
            "b.parquet",
        ]
        again = dg.materialize([clips], instance=instance, resources=resources, partition_key="c")
        (materialization,) = again.asset_materializations_for_node("clips")
        assert materialization.metadata["rows_before"].value == 6  # read through the views
        counts = dg.materialize(
            [clips.to_source_asset(), clip_counts], instance=instance, resources=resources
        )
        table = counts.output_for_node("clip_counts")
        assert table.set_index("video_id")["size"].to_dict() == {"a": 3, "b": 3, "c": 3}
    assert existing_table(ParquetWarehouse(root=root), "clip_counts")["size"].sum() == 9
    assert existing_table(ParquetWarehouse(root=root), "never_written") is None


def test_build_defs_scaleout_swaps_executor_and_warehouse(tmp_path):
    from fvc_dagster.definitions import build_defs

    embedded = build_defs(tmp_path)
    scaleout = build_defs(tmp_path, profile=SCALEOUT)
    assert embedded.resolve_job_def("video_pipeline").executor_def.name == "in_process"
    assert scaleout.resolve_job_def("video_pipeline").executor_def.name == "celery"
    resources = scaleout.resources
    assert isinstance(resources["io_manager"], ParquetWarehouseIOManager)
    assert isinstance(resources["warehouse"], ParquetWarehouse)
    assert resources["io_manager"].root == str(tmp_path.resolve() / "warehouse")
    assert type(embedded.resources["io_manager"]).__name__ == "WarehouseIOManager"


def test_an_object_store_warehouse_is_refused_naming_the_variable(tmp_path, monkeypatch):
    from fvc_dagster.definitions import build_defs

    monkeypatch.setenv("FVC_WAREHOUSE_URL", "s3://fvc-warehouse/warehouse")
    with pytest.raises(ValueError, match="FVC_WAREHOUSE_URL: .*'s3://fvc-warehouse/warehouse'"):
        build_defs(tmp_path, profile=SCALEOUT)
    monkeypatch.setenv("FVC_WAREHOUSE_URL", str(tmp_path / "shared"))
    assert build_defs(tmp_path, profile=SCALEOUT).resources["warehouse"].root == str(
        tmp_path / "shared"
    )


def test_the_workers_config_matches_the_runs_executor_config():
    config = yaml.safe_load((DEPLOY / "celery.yaml").read_text())["execution"]["config"]
    assert config["config_source"] == CELERY_SETTINGS
    assert config["broker"] == {"env": "FVC_CELERY_BROKER"}
    assert config["backend"] == {"env": "FVC_CELERY_BACKEND"}


def test_the_instance_config_is_valid_and_reads_postgres_from_the_environment(
    tmp_path, monkeypatch
):
    from dagster._core.instance.config import dagster_instance_config

    for key, value in {
        "FVC_PG_HOST": "db.internal",
        "FVC_PG_PORT": "6543",
        "FVC_PG_USER": "dagster",
        "FVC_PG_PASSWORD": "p@ss:word",
        "FVC_PG_DAGSTER_DB": "dagster",
    }.items():
        monkeypatch.setenv(key, value)
    (tmp_path / "dagster.yaml").write_text((DEPLOY / "dagster.yaml").read_text())
    config, _ = dagster_instance_config(str(tmp_path))
    postgres = config["storage"]["postgres"]["postgres_db"]
    assert postgres["scheme"] == "postgresql+psycopg2"
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert config["run_monitoring"]["enabled"] is True
    assert config["concurrency"]["pools"]["default_limit"] == 1
    from dagster._config import process_config, resolve_to_config_type
    from dagster_postgres.utils import pg_config, pg_url_from_config

    processed = process_config(resolve_to_config_type(pg_config()), config["storage"]["postgres"])
    assert processed.success, processed.errors
    url = pg_url_from_config(processed.value)
    assert url == "postgresql+psycopg2://dagster:p%40ss%3Aword@db.internal:6543/dagster"
