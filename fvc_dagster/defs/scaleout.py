"""The scale-out profiles: `FVC_PROFILE=scaleout` runs steps on Celery workers, `FVC_PROFILE=k8s`
runs each step as a Kubernetes job; both keep tables as Parquet files per partition that every
worker writes at once, and track on an MLflow server.

The instance side (Postgres storage, run queue, run monitoring, pools) is
`deploy/scaleout/dagster.yaml`; how to run it all is `deploy/scaleout/README.md`.

Environment (read when the code location loads, on every worker too):
- `FVC_CELERY_BROKER`, `FVC_CELERY_BACKEND`: the Celery broker and result backend (Redis URLs);
- `FVC_WAREHOUSE_URL`: the warehouse folder every worker sees, on a shared volume (default
  `<FVC_DATA_DIR>/warehouse`; an object store URL is refused);
- `MLFLOW_TRACKING_URI`: the MLflow tracking server (`http://host:port`);
- `FVC_K8S_GPU_STEP_CONFIG` (k8s): the `dagster-k8s/config` of the torch steps, as JSON
  (default `GPU_STEP_K8S_CONFIG`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
from dagster_duckdb import DuckDBResource
from pydantic import Field

from fvc_dagster.defs.resources import MlflowTracking
from fvc_dagster.defs.warehouse import WAREHOUSE_SCHEMA
from fvc_dagster.lib.parquet_warehouse import (
    ViewConnection,
    check_root,
    create_views,
    read_table,
    table_glob,
    write_table,
)

PROFILE_ENV = "FVC_PROFILE"
EMBEDDED, SCALEOUT, K8S = "embedded", "scaleout", "k8s"
PROFILES = (EMBEDDED, SCALEOUT, K8S)
BROKER_ENV, BACKEND_ENV = "FVC_CELERY_BROKER", "FVC_CELERY_BACKEND"
WAREHOUSE_URL_ENV = "FVC_WAREHOUSE_URL"
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"


def profile_from(value: str | None) -> str:
    """The profile named by `FVC_PROFILE` (unset or empty: embedded)."""
    profile = (value or EMBEDDED).strip().lower()
    if profile not in PROFILES:
        raise ValueError(f"{PROFILE_ENV} must be one of {', '.join(PROFILES)}; got {value!r}")
    return profile


def warehouse_root(data_root: Path) -> str:
    """Where the Parquet warehouse lives: `FVC_WAREHOUSE_URL`, else `<data root>/warehouse`; a
    folder (ValueError naming the variable for a URL)."""
    root = os.environ.get(WAREHOUSE_URL_ENV) or str(data_root / "warehouse")
    try:
        return check_root(root)
    except ValueError as error:
        raise ValueError(f"{WAREHOUSE_URL_ENV}: {error}") from None


class ParquetWarehouseIOManager(dg.ConfigurableIOManager):
    """pandas tables as Parquet files, one per (asset, partition), written atomically: any
    number of workers write their partitions at once. Partitioned assets name the column
    holding the partition key in their `partition_expr` metadata, as for the DuckDB IO
    manager; loading reads the requested partitions (those that have rows)."""

    root: str = Field(description="Folder every worker sees (a shared volume).")

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        if not isinstance(obj, pd.DataFrame):
            raise TypeError(f"{context.asset_key.to_user_string()}: expected a pandas DataFrame")
        table = context.asset_key.path[-1]
        column, partitions = None, None
        if context.has_asset_partitions:
            column = (context.definition_metadata or {}).get("partition_expr")
            if not column:
                raise ValueError(f"{table} is partitioned but has no partition_expr metadata")
            partitions = context.asset_partition_keys
        start = time.perf_counter()
        written = write_table(self.root, table, obj, column, partitions)
        metadata = {
            "dagster/table_name": f"{WAREHOUSE_SCHEMA}.{table}",
            "storage_kind": "parquet",
            "path": dg.MetadataValue.path(table_glob(self.root, table)),
            "files_written": len(written),
            "write_seconds": round(time.perf_counter() - start, 3),
        }
        key = "dagster/partition_row_count" if partitions is not None else "dagster/row_count"
        metadata[key] = len(obj)
        context.add_output_metadata(metadata)

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        table = context.asset_key.path[-1]
        if context.has_asset_partitions:
            partitions = context.asset_partition_keys
            if not partitions:
                return pd.DataFrame()
            return read_table(self.root, table, partitions)
        return read_table(self.root, table)


class ParquetWarehouse(DuckDBResource):
    """The warehouse for queries inside a step: an in-memory DuckDB whose `fvc.<table>` views
    read the Parquet files as they are (nothing to lock, any number of readers; `execute`
    retries a query that raced a writer replacing a file)."""

    database: str = Field(default=":memory:", description="Always in memory: views only.")
    root: str = Field(description="The Parquet warehouse root (as the IO manager's).")

    @contextmanager
    def get_connection(self):
        with duckdb.connect(":memory:") as connection:
            create_views(connection, self.root, WAREHOUSE_SCHEMA)
            yield ViewConnection(connection)


# Celery settings of the runs and the workers (deploy/scaleout/celery.yaml says the same): a
# worker takes a step only when it has a free process (no prefetch), so ready steps go to idle
# workers instead of queueing behind a busy one, and acknowledges it as it starts it: Redis
# hands an unacknowledged message out again after its visibility timeout, which would run a
# step longer than that timeout twice. A step whose worker dies is not run again by Celery:
# its run waits (cancel it and re-execute it from failure).
CELERY_SETTINGS = {
    "task_acks_late": False,
    "worker_prefetch_multiplier": 1,
    "worker_disable_prefetch": True,
    "broker_transport_options": {
        "max_retries": 3,
        "interval_start": 0,
        "interval_step": 0.2,
        "interval_max": 0.5,
    },
}


def scaleout_executor() -> dg.ExecutorDefinition:
    """The Celery executor, its broker and result backend from the environment."""
    from dagster_celery import celery_executor as executor

    return executor.configured(
        {
            "broker": {"env": BROKER_ENV},
            "backend": {"env": BACKEND_ENV},
            "config_source": CELERY_SETTINGS,
        },
        name="celery",
    )


GPU_STEP_K8S_CONFIG_ENV = "FVC_K8S_GPU_STEP_CONFIG"
# The pod of a step that trains or embeds with torch: a GPU node (the NVIDIA device plugin's
# resource, GPU feature discovery's label, the usual taint), room for the clips and the model.
GPU_STEP_K8S_CONFIG = {
    "container_config": {
        "resources": {
            "requests": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"},
            "limits": {"memory": "16Gi", "nvidia.com/gpu": "1"},
        }
    },
    "pod_spec_config": {
        "node_selector": {"nvidia.com/gpu.present": "true"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    },
}


def gpu_steps(assets: Iterable[dg.AssetsDefinition]) -> list[str]:
    """The steps (op names) that train networks or embed clips with torch."""
    return sorted(
        asset.op.name
        for asset in assets
        if any(
            "pytorch" in spec.kinds and spec.group_name in ("networks", "embeddings")
            for spec in asset.specs
        )
    )


def k8s_executor(steps_on_gpu: Iterable[str]) -> dg.ExecutorDefinition:
    """`k8s_job_executor`: each step a Kubernetes job, with the run pod's image, env, secrets
    and volumes (the K8sRunLauncher's); `steps_on_gpu` get `FVC_K8S_GPU_STEP_CONFIG` (JSON) or
    `GPU_STEP_K8S_CONFIG`."""
    from dagster_k8s import k8s_job_executor

    raw = os.environ.get(GPU_STEP_K8S_CONFIG_ENV)
    try:
        gpu = json.loads(raw) if raw else GPU_STEP_K8S_CONFIG
    except json.JSONDecodeError as exc:
        raise ValueError(f"{GPU_STEP_K8S_CONFIG_ENV} is not JSON: {exc}") from None
    return k8s_job_executor.configured(
        {"per_step_k8s_config": {step: gpu for step in steps_on_gpu}}, name="k8s"
    )


def scaleout_resources(data_root: Path) -> dict:
    """The resources the scale-out profile replaces: the Parquet warehouse (IO manager and
    query resource over one root) and MLflow on the tracking server."""
    root = warehouse_root(data_root)
    return {
        "io_manager": ParquetWarehouseIOManager(root=root),
        "warehouse": ParquetWarehouse(root=root),
        "mlflow": MlflowTracking(
            tracking_uri=dg.EnvVar(TRACKING_URI_ENV),
            artifact_root=str(data_root / "mlartifacts"),  # unused: the server keeps artifacts
        ),
    }
