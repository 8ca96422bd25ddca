"""The one Definitions of fvc-dagster, with resources bound from the environment at load time."""

import os
from collections.abc import Mapping
from pathlib import Path

import dagster as dg

from fvc_dagster.defs.automation import SENSOR_INTERVAL_S
from fvc_dagster.defs.clips import assets as clip_assets
from fvc_dagster.defs.evaluation import assets as evaluation_assets
from fvc_dagster.defs.evaluation import generalisation as generalisation_assets
from fvc_dagster.defs.features import assets as feature_assets
from fvc_dagster.defs.folds import assets as fold_assets
from fvc_dagster.defs.folds import checks as fold_checks
from fvc_dagster.defs.ingest import assets as ingest_assets
from fvc_dagster.defs.ingest.sensors import archive_sensor, split_failed_video_batches
from fvc_dagster.defs.jobs import (
    champion_job,
    embeddings_job,
    networks_job,
    scoring_job,
    training_job,
    video_pipeline_job,
)
from fvc_dagster.defs.models import assets as model_assets
from fvc_dagster.defs.models import checks as model_checks
from fvc_dagster.defs.models import embeddings as embedding_assets
from fvc_dagster.defs.resources import (
    ClipSampling,
    ClipScaling,
    FvcStorage,
    MlflowTracking,
    VideoInbox,
    inbox_limits_from,
)
from fvc_dagster.defs.scaleout import (
    EMBEDDED,
    K8S,
    PROFILE_ENV,
    SCALEOUT,
    gpu_steps,
    k8s_executor,
    profile_from,
    scaleout_executor,
    scaleout_resources,
)
from fvc_dagster.defs.serving import assets as serving_assets
from fvc_dagster.defs.warehouse import WAREHOUSE_SCHEMA, Warehouse, WarehouseIOManager
from fvc_dagster.lib.serving.mlflow_registry import local_tracking_uri

# On when `dagster dev` starts (Dagster's own default sensor is off): new videos re-train the
# baselines, the comparison, the champion and the scores; networks stay on request.
automation_sensor = dg.AutomationConditionSensorDefinition(
    "default_automation_condition_sensor",
    target=dg.AssetSelection.all(),
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Materializes the assets whose automation condition asks for it (training, "
    "comparison, champion, scores) when their upstream data changes.",
)

DOMAINS = [
    ingest_assets,
    clip_assets,
    feature_assets,
    fold_assets,
    embedding_assets,
    model_assets,
    evaluation_assets,
    generalisation_assets,
    serving_assets,
]


def build_defs(
    data_dir: str | os.PathLike = "data",
    password_env: str | None = None,
    profile: str = EMBEDDED,
    inbox_limits: Mapping[str, int | dg.EnvVar] | None = None,
    test_archives: str | dg.EnvVar = "",
) -> dg.Definitions:
    """Definitions over one data root; the archive password comes from `password_env` if named.
    `profile` "scaleout" runs steps on Celery workers, "k8s" each step as a Kubernetes job; both
    keep tables as Parquet files and track on an MLflow server (fvc_dagster/defs/scaleout.py,
    deploy/scaleout/, deploy/k8s/). `inbox_limits` sets `VideoInbox` limits (max_members...);
    `test_archives` its test-archive patterns (`Shifted*.zip,Test*.zip`)."""
    root = Path(data_dir).resolve()
    storage = FvcStorage(data_dir=str(root))
    warehouse = str(root / "warehouse.duckdb")
    assets = dg.load_assets_from_modules(DOMAINS)
    executors = {
        EMBEDDED: lambda: dg.in_process_executor,
        SCALEOUT: scaleout_executor,
        K8S: lambda: k8s_executor(gpu_steps(assets)),
    }
    return dg.Definitions(
        assets=assets,
        asset_checks=dg.load_asset_checks_from_modules([fold_checks, model_checks]),
        sensors=[archive_sensor, split_failed_video_batches, automation_sensor],
        jobs=[
            video_pipeline_job,
            training_job,
            networks_job,
            embeddings_job,
            champion_job,
            scoring_job,
        ],
        executor=executors[profile](),
        resources={
            "io_manager": WarehouseIOManager(database=warehouse, schema=WAREHOUSE_SCHEMA),
            "warehouse": Warehouse(database=warehouse),
            "inbox": VideoInbox(
                storage=storage,
                password=dg.EnvVar(password_env) if password_env else None,
                test_archives=test_archives,
                **(inbox_limits or {}),
            ),
            "storage": storage,
            "sampling": ClipSampling(),
            "scaling": ClipScaling(),
            "mlflow": MlflowTracking(
                tracking_uri=local_tracking_uri(root),
                artifact_root=str(root / "mlartifacts"),
            ),
            **(scaleout_resources(root) if profile != EMBEDDED else {}),
        },
    )


@dg.definitions
def defs() -> dg.Definitions:
    """Resolved when the code location loads: `FVC_DATA_DIR` (default `./data`) and, when set,
    `FVC_ZIP_PASSWORD` through an `EnvVar` (never stored in run config or metadata),
    `FVC_PROFILE` (embedded, the default, scaleout or k8s), the inbox limits set by
    `FVC_MAX_*` variables (`INBOX_LIMIT_ENV`) and the test-archive patterns of
    `FVC_TEST_ARCHIVES`, each through an `EnvVar`."""
    return build_defs(
        os.environ.get("FVC_DATA_DIR", "data"),
        "FVC_ZIP_PASSWORD" if os.environ.get("FVC_ZIP_PASSWORD") else None,
        profile_from(os.environ.get(PROFILE_ENV)),
        inbox_limits_from(os.environ),
        dg.EnvVar("FVC_TEST_ARCHIVES") if os.environ.get("FVC_TEST_ARCHIVES") else "",
    )
