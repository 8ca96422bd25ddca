"""The k8s profile and deploy/k8s/values.yaml checked offline: the values parse and name the
launcher, the code location and the profile; `FVC_PROFILE=k8s` picks `k8s_job_executor` with the
GPU config on the torch steps only; dagster_k8s's own job construction renders the run pod from
the values and a GPU step pod from the executor's config. No cluster, no network."""

import base64
import json
import zlib
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.code_pointer import ModuleCodePointer
from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
from dagster._grpc.types import ExecuteRunArgs, ExecuteStepArgs
from dagster._serdes import deserialize_value
from dagster_k8s.job import (
    USER_DEFINED_K8S_CONFIG_KEY,
    DagsterK8sJobConfig,
    construct_dagster_k8s_job,
    get_job_name_from_run_id,
    get_k8s_job_name,
    get_user_defined_k8s_config,
)

VALUES = Path(__file__).resolve().parents[1] / "deploy" / "k8s" / "values.yaml"
MODULE = "fvc_dagster.definitions"
RUN_ID = "0123abcd-4567-89ef-0123-456789abcdef"
GPU_STEP = "r2plus1d"  # a network asset: its op is the step


@pytest.fixture(scope="module")
def k8s_defs(tmp_path_factory) -> dg.Definitions:
    from fvc_dagster.definitions import build_defs
    from fvc_dagster.defs.scaleout import K8S

    return build_defs(tmp_path_factory.mktemp("data"), profile=K8S)


def executor_config(defs: dg.Definitions, job: str) -> dict:
    """The k8s executor's config as a run of `job` resolves it."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MLFLOW_TRACKING_URI", "http://mlflow.fvc.svc.cluster.local:5000")
        return dg.validate_run_config(defs.resolve_job_def(job))["execution"]["k8s"]


@pytest.fixture(scope="module")
def values() -> dict:
    return yaml.safe_load(VALUES.read_text())


@pytest.fixture(scope="module")
def code(values):
    """The user-code deployment, its image and the run launcher's settings."""
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    image = f"{deployment['image']['repository']}:{deployment['image']['tag']}"
    return deployment, image, values["runLauncher"]["config"]["k8sRunLauncher"]


def job_config(image: str, launcher: dict) -> DagsterK8sJobConfig:
    """What the K8sRunLauncher builds from the chart's rendered instance config."""
    return DagsterK8sJobConfig(
        job_image=image,
        dagster_home="/opt/dagster/dagster_home",
        instance_config_map="fvc-dagster-instance",
        postgres_password_secret="fvc-postgresql-secret",
        image_pull_policy=launcher["imagePullPolicy"],
        env_vars=launcher["envVars"],
        env_secrets=[secret["name"] for secret in launcher["envSecrets"]],
        volume_mounts=launcher["volumeMounts"],
        volumes=launcher["volumes"],
        resources=launcher["resources"],
        labels=launcher["labels"],
    )


def job_origin(image: str, job_name: str) -> JobPythonOrigin:
    """The origin the gRPC server started with `--module-name` reports for a job."""
    pointer = ModuleCodePointer(MODULE, "defs", working_directory=None)
    repository = RepositoryPythonOrigin(
        "/usr/local/bin/python", pointer, container_image=image, entry_point=["dagster"]
    )
    return JobPythonOrigin(job_name, repository)


def container_env(container) -> dict[str, str | None]:
    return {var.name: var.value for var in container.env}


def assert_pod_basics(job, image: str, launcher: dict) -> None:
    """Image, environment, secrets and the shared volume from values.yaml."""
    pod = job.spec.template.spec
    (container,) = pod.containers
    assert container.image == image == "registry.example.com/fvc-dagster:<tag>"
    env = container_env(container)
    for pair in launcher["envVars"]:
        name, value = pair.split("=", 1)
        assert env[name] == value
    assert env["FVC_PROFILE"] == "k8s"
    assert env["DAGSTER_HOME"] == "/opt/dagster/dagster_home"
    assert [source.secret_ref.name for source in container.env_from] == ["fvc-secrets"]
    (mount,) = container.volume_mounts
    assert (mount.name, mount.mount_path) == ("fvc-data", "/mnt/fvc")
    (volume,) = pod.volumes
    assert volume.persistent_volume_claim.claim_name == "fvc-data"


def test_values_name_launcher_code_location_and_profile(values, code):
    deployment, image, launcher = code
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert deployment["dagsterApiGrpcArgs"] == ["--module-name", MODULE]
    assert image.startswith("registry.example.com/fvc-dagster:")
    # The code location and the run launcher give pods the same environment and volume.
    assert [f"{var['name']}={var['value']}" for var in deployment["env"]] == launcher["envVars"]
    assert deployment["envSecrets"] == launcher["envSecrets"]
    assert deployment["volumes"] == launcher["volumes"]
    assert deployment["volumeMounts"] == launcher["volumeMounts"]
    assert "FVC_PROFILE=k8s" in launcher["envVars"]
    # The warehouse is a folder on the volume every pod mounts (object store URLs are refused).
    env = dict(var.split("=", 1) for var in launcher["envVars"])
    (mount,) = launcher["volumeMounts"]
    assert Path(env["FVC_WAREHOUSE_URL"]).is_relative_to(mount["mountPath"])
    daemon = values["dagsterDaemon"]
    assert daemon["runCoordinator"]["type"] == "QueuedRunCoordinator"
    assert daemon["runMonitoring"]["enabled"]
    assert daemon["runMonitoring"]["freeSlotsAfterRunEndSeconds"] > 0
    assert values["concurrency"]["pools"]["defaultLimit"] == 1


def test_run_pod_renders_what_the_launcher_runs(code):
    _, image, launcher = code
    origin = job_origin(image, "training")
    args = ExecuteRunArgs(job_origin=origin, run_id=RUN_ID, instance_ref=None)
    job = construct_dagster_k8s_job(
        job_config=job_config(image, launcher),
        args=args.get_command_args(),
        job_name=get_job_name_from_run_id(RUN_ID),
        component="run_worker",
        labels={"dagster/job": "training", "dagster/run-id": RUN_ID},
        env_vars=[{"name": "DAGSTER_RUN_JOB_NAME", "value": "training"}],
    )
    assert_pod_basics(job, image, launcher)
    (container,) = job.spec.template.spec.containers
    assert container.args[:3] == ["dagster", "api", "execute_run"]
    sent = deserialize_value(container.args[3], ExecuteRunArgs)
    assert sent.run_id == RUN_ID
    assert sent.job_origin.repository_origin.code_pointer.module == MODULE
    assert container.resources.requests == launcher["resources"]["requests"]
    assert container.resources.limits == launcher["resources"]["limits"]
    assert job.spec.template.metadata.labels["app.kubernetes.io/component"] == "run_worker"


def test_gpu_step_pod_renders_the_executor_s_step_config(k8s_defs, code):
    _, image, launcher = code
    step_config = executor_config(k8s_defs, "networks")["per_step_k8s_config"][GPU_STEP]
    tags = {USER_DEFINED_K8S_CONFIG_KEY: json.dumps(step_config)}
    args = ExecuteStepArgs(job_origin(image, "networks"), RUN_ID, [GPU_STEP])
    job = construct_dagster_k8s_job(
        job_config=job_config(image, launcher),
        args=args.get_command_args(skip_serialized_namedtuple=True),
        job_name=f"dagster-step-{get_k8s_job_name(RUN_ID, GPU_STEP)}",
        user_defined_k8s_config=get_user_defined_k8s_config(tags),
        component="step_worker",
        labels={"dagster/op": GPU_STEP, "dagster/run-id": RUN_ID},
        env_vars=[*args.get_command_env(), {"name": "DAGSTER_RUN_STEP_KEY", "value": GPU_STEP}],
    )
    assert_pod_basics(job, image, launcher)
    pod = job.spec.template.spec
    (container,) = pod.containers
    assert container.args == ["dagster", "api", "execute_step"]
    compressed = container_env(container)["DAGSTER_COMPRESSED_EXECUTE_STEP_ARGS"]
    sent = deserialize_value(
        zlib.decompress(base64.b64decode(compressed)).decode(), ExecuteStepArgs
    )
    assert sent.step_keys_to_execute == [GPU_STEP]
    assert sent.job_origin.repository_origin.code_pointer.module == MODULE
    resources = step_config["container_config"]["resources"]
    assert container.resources.requests == resources["requests"]
    assert container.resources.requests["nvidia.com/gpu"] == "1"
    assert container.resources.limits == resources["limits"]
    assert pod.node_selector == {"nvidia.com/gpu.present": "true"}
    assert pod.tolerations[0].key == "nvidia.com/gpu"


def test_the_k8s_profile_runs_steps_as_jobs_with_gpus_for_torch_steps_only(k8s_defs):
    from fvc_dagster.defs.scaleout import GPU_STEP_K8S_CONFIG, ParquetWarehouseIOManager
    from fvc_dagster.lib.models import models_of

    for job in ("video_pipeline", "training", "networks", "embeddings", "scoring"):
        assert k8s_defs.resolve_job_def(job).executor_def.name == "k8s", job
    on_gpu = executor_config(k8s_defs, "networks")["per_step_k8s_config"]
    assert GPU_STEP in on_gpu and "clip_embeddings" in on_gpu
    assert set(on_gpu) - {"clip_embeddings"} == set(models_of("network"))
    assert not {"augmented_clips", "scaled_clips", "svm", "cv_folds"} & set(on_gpu)
    assert on_gpu[GPU_STEP]["container_config"] == GPU_STEP_K8S_CONFIG["container_config"]
    assert isinstance(k8s_defs.resources["io_manager"], ParquetWarehouseIOManager)


def test_the_gpu_step_config_comes_from_the_environment(tmp_path, monkeypatch):
    from fvc_dagster.definitions import build_defs
    from fvc_dagster.defs.scaleout import GPU_STEP_K8S_CONFIG_ENV, K8S

    small = {"container_config": {"resources": {"limits": {"nvidia.com/gpu": "2"}}}}
    monkeypatch.setenv(GPU_STEP_K8S_CONFIG_ENV, json.dumps(small))
    defs = build_defs(tmp_path, profile=K8S)
    resolved = executor_config(defs, "embeddings")["per_step_k8s_config"]["clip_embeddings"]
    assert resolved["container_config"] == small["container_config"]
    assert resolved["pod_spec_config"] == {}  # the default's node selector is not merged in
    monkeypatch.setenv(GPU_STEP_K8S_CONFIG_ENV, "{cpu: 4")
    with pytest.raises(ValueError, match=f"{GPU_STEP_K8S_CONFIG_ENV} is not JSON"):
        build_defs(tmp_path, profile=K8S)
