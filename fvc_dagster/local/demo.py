"""The demo: a generated corpus and a small shifted test archive through the archive sensor,
batched runs (a failed batch split by the run-failure sensor), baselines, an embedding model and
a video network trained, comparison, generalisation to the test archive, the champion registered
in MLflow and scoring every video and a fresh one; it exits non-zero naming videos that failed.

It drives the same Definitions, sensor and jobs as `dagster dev`, on the persistent instance in
`$DAGSTER_HOME`, so its runs, partitions and materializations are in the UI afterwards.
"""

from __future__ import annotations

import base64
import os
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

import dagster as dg
import duckdb
from dagster._core.definitions.repository_definition import SINGLETON_REPOSITORY_NAME
from dagster._core.remote_origin import RemoteInstigatorOrigin, RemoteRepositoryOrigin
from dagster._core.scheduler.instigation import (
    InstigatorState,
    InstigatorStatus,
    InstigatorType,
    SensorInstigatorData,
)
from dagster._core.workspace.load import location_origins_from_yaml_paths
from dagster._utils.interrupts import setup_interrupt_handlers

from fvc_dagster.defs.partitions import folds_partitions, partition_range_tags, videos_partitions
from fvc_dagster.defs.recovery import fail_dead_runs, process_tags, slots_held

WORKSPACE = Path(__file__).resolve().parents[2] / "workspace.yaml"  # what `make dev` loads
# The test archive the demo holds out: videos of another seed, encoded with another codec,
# declared test-only by their metadata's split column; no model trains on them, every model
# scores them (`generalisation`).
TEST_PREFIX = "Test"
DEMO_TEST_VIDEOS = 16
DEMO_TEST_SHIFT = ("codec=mpeg4",)
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
# The video network the demo trains, from scratch on CPU: naive_cnn on the native 112-px centre
# window of one frame per clip, 100 epochs (about 60 s a fold on one core), the count fixed
# (an inner fold of about nine videos chose epochs by noise). bench/results/network_input.md
# has the measurements and the shuffled-label control.
DEMO_NETWORKS = ("naive_cnn",)
# The cheapest embedding model: r3d_18's frozen trunk (0.33 s a 16 x 112 clip; at 4 x 32 px a
# few ms), random weights (nothing to download), then XGBoost on every fold.
DEMO_EMBEDDING_MODELS = ("xgboost_pretrained_inception",)
DEMO_EMBEDDING_CONFIG = {"weights": "random", "frames": 4, "pixels": 32, "batch_size": 32}
# Any other network asked for (`fvc demo --models ...`) at the smallest size that runs, one
# epoch: it shows the architecture trains and scores, not what it can learn.
SMOKE_NETWORK_CONFIG = {"weights": "random", "frames": 4, "pixels": 32, "epochs": 1,
                        "batch_size": 32, "lr": 1e-3}  # fmt: skip
DEMO_NETWORK_CONFIGS = {
    "naive_cnn": {"weights": "random", "frames": 1, "pixels": 112, "epochs": 100,
                  "batch_size": 8, "lr": 1e-3, "epoch_choice": "fixed", "augmentations": []},
}  # fmt: skip


def execute_run_request(
    defs: dg.Definitions,
    job_name: str,
    request: dg.RunRequest,
    instance: dg.DagsterInstance,
    asset_selection: Sequence[dg.AssetKey] | None = None,
    ops_config: dict | None = None,
) -> dg.ExecuteInProcessResult:
    """Run what a sensor requested (of the job's assets, those selected), in this process, on
    the given instance, tagged with this process (see `fail_dead_runs`); first say which pool
    slots other runs hold, since its steps in those pools wait for them."""
    for line in slots_held(instance):
        print(f"  {job_name} may wait: {line} (`dagster instance concurrency get --all`)")
    return defs.resolve_job_def(job_name).execute_in_process(
        instance=instance,
        tags={**request.tags, **process_tags()},
        partition_key=request.partition_key,
        run_config={**QUIET, "ops": ops_config or {}},
        asset_selection=asset_selection,
        raise_on_error=False,
    )


def run_video_batches(
    defs: dg.Definitions, requests: list[dg.RunRequest], instance: dg.DagsterInstance
) -> None:
    """Execute the batched runs; a failed one is handed to `split_failed_video_batches`, as the
    daemon would, and the runs it requests (the good videos again, each bad video alone) are
    executed in turn."""
    splitter = defs.resolve_sensor_def("split_failed_video_batches")
    queue = list(requests)
    while queue:
        request = queue.pop(0)
        outcome = execute_run_request(defs, "video_pipeline", request, instance)
        batch = request.partition_key or "..".join(request.partition_key_range or ())
        print(f"  video_pipeline [{batch}]: {'ok' if outcome.success else 'FAILED'}")
        if outcome.success:
            continue
        context = dg.build_run_status_sensor_context(
            sensor_name=splitter.name,
            dagster_instance=instance,
            dagster_run=outcome.dagster_run,
            dagster_event=outcome.get_run_failure_event(),
        ).for_run_failure()
        retries = splitter(context)
        if not isinstance(retries, dg.SkipReason):
            print(f"  split into {len(retries)} runs by {splitter.name}")
            queue.extend(retries)


def _videos_done(instance: dg.DagsterInstance) -> set[str]:
    """Videos with every per-video table materialized (both feature tables are the last)."""
    handcrafted, scaled = (
        instance.get_materialized_partitions(dg.AssetKey(key))
        for key in ("handcrafted_features", "scaled_features")
    )
    return handcrafted & scaled


def _print_failed_videos(failed: list[str]) -> None:
    if failed:
        print(
            f"\nvideos that failed in video_pipeline, not in training ({len(failed)}): "
            f"{', '.join(failed)}; their runs say why (make dev)"
        )


def _latest_timestamp(instance: dg.DagsterInstance, key: str) -> float:
    records = instance.fetch_materializations(dg.AssetKey(key), limit=1, ascending=False).records
    return records[0].timestamp if records else 0.0


def daemon_sensor_origin(sensor: dg.SensorDefinition) -> RemoteInstigatorOrigin:
    """The origin under which the daemon of `make dev` (`dagster dev -w workspace.yaml`) keeps
    `sensor`'s state: its cursor is stored by the code location's name, as workspace.yaml
    names it."""
    (location,) = location_origins_from_yaml_paths([str(WORKSPACE)])
    return RemoteInstigatorOrigin(
        RemoteRepositoryOrigin(location, SINGLETON_REPOSITORY_NAME), sensor.name
    )


def scan_inbox(defs: dg.Definitions, instance: dg.DagsterInstance) -> list[dg.RunRequest]:
    """One tick of `archive_sensor`, as the daemon runs it: from the cursor stored in the
    instance for the daemon of `make dev`, which it then stores (so that daemon goes on from
    this scan); the videos it registers are added to the instance; the batched runs it requests
    are returned."""
    sensor = defs.resolve_sensor_def("archive_sensor")
    origin = daemon_sensor_origin(sensor)
    state = instance.get_instigator_state(origin.get_id(), origin.get_selector().get_id())
    data = state.instigator_data if state else None
    with dg.build_sensor_context(
        instance=instance,
        definitions=defs,
        resources=dict(defs.resources),
        cursor=data.cursor if data else None,
    ) as context:
        result = sensor(context)
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    if state is None:  # as the daemon adds it on its first tick
        data = SensorInstigatorData(
            min_interval=sensor.minimum_interval_seconds, sensor_type=sensor.sensor_type
        )
        state = InstigatorState(
            origin, InstigatorType.SENSOR, InstigatorStatus.DECLARED_IN_CODE, data
        )
        instance.add_instigator_state(state)
    instance.update_instigator_state(state.with_data(data._replace(cursor=result.cursor)))
    return list(result.run_requests or [])


def _all_folds() -> dg.RunRequest:
    folds = folds_partitions.get_partition_keys()
    return dg.RunRequest(tags=partition_range_tags(folds[0], folds[-1]))


def embed_clips(
    defs: dg.Definitions, instance: dg.DagsterInstance, videos: list[str], models: Sequence[str]
) -> bool:
    """`clip_embeddings` of the videos by the backbones of these XGBoost-on-embeddings models,
    with `DEMO_EMBEDDING_CONFIG`, in batched runs."""
    from fvc_dagster.defs.ingest.sensors import batch_run_requests
    from fvc_dagster.lib.models import REGISTRY

    backbones = [REGISTRY[m].backbone for m in models]
    print(f"embedding every clip with {', '.join(backbones)} ({DEMO_EMBEDDING_CONFIG})")
    config = {"clip_embeddings": {"config": {**DEMO_EMBEDDING_CONFIG, "backbones": backbones}}}
    registered = instance.get_dynamic_partitions(videos_partitions.name)
    return all(
        execute_run_request(defs, "embeddings", request, instance, ops_config=config).success
        for request in batch_run_requests(registered, videos, "embeddings")
    )


def train_networks(
    defs: dg.Definitions,
    networks: Sequence[str],
    instance: dg.DagsterInstance,
    config: dict | None = None,
    embedding_models: Sequence[str] = (),
) -> bool:
    """Train the networks and XGBoost-on-embeddings models whose rows are older than the folds'
    clips (or missing) on every fold (embeddings computed first), networks with `config` (by
    default their `DEMO_NETWORK_CONFIGS` entry, else `SMOKE_NETWORK_CONFIG`), in one run with
    the ensemble, metrics and comparison; whether it succeeded."""
    from fvc_dagster.defs.jobs import NETWORK_DOWNSTREAM

    clips_at = _latest_timestamp(instance, "training_clips")
    stale = [m for m in networks if _latest_timestamp(instance, m) < clips_at]
    stale_xgb = [m for m in embedding_models if _latest_timestamp(instance, m) < clips_at]
    if not (stale or stale_xgb):
        return True
    if stale_xgb and not embed_clips(defs, instance, sorted(_videos_done(instance)), stale_xgb):
        return False
    print(f"training on every fold: {', '.join([*stale, *stale_xgb])}")
    start = time.perf_counter()
    selection = [dg.AssetKey(m) for m in (*stale, *stale_xgb, *NETWORK_DOWNSTREAM)]
    configs = {m: config or DEMO_NETWORK_CONFIGS.get(m, SMOKE_NETWORK_CONFIG) for m in stale}
    ops = {m: {"config": configs[m]} for m in stale}
    outcome = execute_run_request(defs, "networks", _all_folds(), instance, selection, ops)
    seconds = time.perf_counter() - start
    print(f"  networks: {'ok' if outcome.success else 'FAILED'} in {seconds:.0f} s")
    return outcome.success


def register_champion(defs: dg.Definitions, instance: dg.DagsterInstance) -> bool:
    """Materialize `champion_model` when the comparison is newer (it registers a new version
    only when its lineage changed)."""
    if _latest_timestamp(instance, "champion_model") > _latest_timestamp(
        instance, "model_comparison"
    ):
        return True
    outcome = execute_run_request(defs, "champion", dg.RunRequest(), instance)
    print(f"  champion_model: {'ok' if outcome.success else 'FAILED'}")
    return outcome.success


def score_videos(defs: dg.Definitions, instance: dg.DagsterInstance, videos: list[str]) -> bool:
    """`video_scores` for those of the given videos not scored since the champion last
    changed, in batched runs."""
    from fvc_dagster.defs.ingest.sensors import batch_run_requests

    if _latest_timestamp(instance, "video_scores") > _latest_timestamp(instance, "champion_model"):
        scored = instance.get_materialized_partitions(dg.AssetKey("video_scores"))
        videos = [v for v in videos if v not in scored]
    if not videos:
        return True
    registered = instance.get_dynamic_partitions(videos_partitions.name)
    outcomes = [
        execute_run_request(defs, "scoring", request, instance)
        for request in batch_run_requests(registered, videos, "scores")
    ]
    print(f"  video_scores for {len(videos)} videos: "
          f"{'ok' if all(o.success for o in outcomes) else 'FAILED'}")  # fmt: skip
    return all(o.success for o in outcomes)


def _print_scores(data_dir: Path, seed: int) -> None:
    """The champion on two videos it was trained with and one generated now, in no archive."""
    import pandas as pd

    from fvc_dagster.lib.serving.mlflow_registry import load_champion, local_tracking_uri
    from fvc_dagster.local.corpus import CorpusSpec, write_videos

    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as con:
        held_in = con.execute(
            "select path, label from fvc.source_videos where label in ('real', 'fake') "
            "and coalesce(split, 'train') = 'train' order by label, video_id"
        ).df()
    picks = held_in.groupby("label").head(1)
    fresh_path, fresh_label = write_videos(
        data_dir / "fresh", CorpusSpec(n_videos=2, n_archives=1, seed=seed + 1000)
    )[0]
    paths = [*picks["path"], str(fresh_path)]
    truth = [*(f"{label}, held in" for label in picks["label"]), f"{fresh_label}, fresh"]
    model, version = load_champion(local_tracking_uri(data_dir))
    # Sent as a client of the served model sends them: the files' bytes, named by their paths.
    videos = [base64.b64encode(Path(path).read_bytes()).decode() for path in paths]
    scores = model.predict(pd.DataFrame({"video": videos, "name": paths}))
    print(f"fvc-detector@champion (v{version.version}) on three videos:")
    for row, known in zip(scores.itertuples(), truth, strict=True):
        unlike = ", unlike its training videos" if row.out_of_distribution else ""
        print(f"  {Path(row.path).name}: P(fake) = {row.probability_fake:.3f} -> {row.label} "
              f"(truth: {known}; novelty {row.novelty:.1f}{unlike})")  # fmt: skip


WIDTH = 100
RULE = "=" * WIDTH


def _print_table(warehouse: Path, query: str, about: str, render) -> None:
    """A warehouse table rendered by `render`, after `about` wrapped and a blank line."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        table = con.execute(query).df()
    print(textwrap.fill(about, WIDTH), render(table), sep="\n\n")


def _print_comparison(warehouse: Path) -> None:
    from fvc_dagster.lib.evaluation.metrics import comparison_summary

    about = (
        "Model comparison, best first (ROC-AUC mean ± sample std over folds; pooled held-out "
        "ROC-AUC with its 95% cascade-bootstrap interval, and the chance band it must clear; "
        f"every metric: table fvc.model_comparison in {warehouse}):"
    )
    query = "select * from fvc.model_comparison order by rank"
    _print_table(warehouse, query, about, comparison_summary)


def _print_generalisation(warehouse: Path) -> None:
    from fvc_dagster.lib.evaluation.generalisation import generalisation_markdown

    about = (
        "Generalisation: the same models on the test videos, which no fold trained on (a test "
        "video's P(fake) is the mean of the model's fold models'; ROC-AUC with its 95% cascade-"
        f"bootstrap interval; table fvc.generalisation in {warehouse}):"
    )
    print()
    _print_table(warehouse, "select * from fvc.generalisation", about, generalisation_markdown)


def _print_champion(warehouse: Path) -> None:
    """The registered champion, and why `champion_model` chose it."""
    from fvc_dagster.lib.serving.champion import why_champion

    with duckdb.connect(str(warehouse), read_only=True) as con:
        comparison = con.execute("select * from fvc.model_comparison order by rank").df()
        row = con.execute("select * from fvc.champion_model").df().iloc[0]
    print(
        f"\nChampion: {row['model']}, {row['registered_model']} v{row['version']} (@{row['alias']})"
    )
    why = why_champion(comparison, row["model"], row["weights"], row["metric"])
    print(textwrap.fill(f"chosen as {why}", WIDTH, initial_indent="  ", subsequent_indent="  "))


def _print_next_steps(data_dir: Path) -> None:
    from fvc_dagster.lib.serving.mlflow_registry import local_tracking_uri

    env = "" if data_dir == Path("data").resolve() else f"FVC_DATA_DIR={data_dir} "
    root = "" if not env else f"--data-dir {data_dir} "
    print(
        "\nWhere to look next:\n"
        "  Dagster UI (runs, assets, checks, metadata; http://localhost:3000):\n"
        f"    {env}make dev\n"
        "  MLflow UI (fold runs, figures, fvc-detector versions; http://localhost:5000):\n"
        f"    .venv/bin/mlflow ui --backend-store-uri {local_tracking_uri(data_dir)}\n"
        "  Score video files with the champion:\n"
        f"    .venv/bin/fvc {root}score VIDEO..."
    )


def _print_summary(data_dir: Path, seed: int, start: float, served: bool) -> None:
    """The demo's last block, between rules: the comparison, the generalisation table, the
    champion and why, the champion on three videos, where to look next."""
    print(f"\n{RULE}\nSummary\n{RULE}")
    _print_comparison(data_dir / "warehouse.duckdb")
    _print_generalisation(data_dir / "warehouse.duckdb")
    if served:
        _print_champion(data_dir / "warehouse.duckdb")
        print()
        _print_scores(data_dir, seed)
    _print_next_steps(data_dir)
    print(f"\ndemo finished in {time.perf_counter() - start:.1f} s\n{RULE}")


def run_demo(
    data_dir: Path,
    n_videos: int = 60,
    n_archives: int = 3,
    seed: int = 0,
    networks: Sequence[str] = DEMO_NETWORKS,
    embedding_models: Sequence[str] = DEMO_EMBEDDING_MODELS,
    test_videos: int = DEMO_TEST_VIDEOS,
    test_shift: Sequence[str] = DEMO_TEST_SHIFT,
) -> int:
    from fvc_dagster.definitions import build_defs
    from fvc_dagster.lib.ingest.archives import archive_paths
    from fvc_dagster.local.corpus import CorpusSpec, generate_corpus, shift_of, shifted

    start = time.perf_counter()
    setup_interrupt_handlers()  # SIGTERM interrupts a run as Ctrl-C does: it ends, marked failed
    inbox = data_dir / "inbox"
    os.environ.setdefault("DAGSTER_HOME", str(data_dir / "dagster_home"))
    # MLflow draws a bar per artifact it reads: here dozens of local reads of one small file
    # (the fold runs' fit_videos.json, the champion), each done before a bar could show progress.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
    if not archive_paths(inbox):
        print(f"generating {n_videos} videos in {n_archives} archives into {inbox}")
        generate_corpus(
            inbox, CorpusSpec(n_videos=n_videos, n_archives=n_archives, seed=seed), True
        )
        if test_videos:
            test = shifted(
                CorpusSpec(n_videos=test_videos, n_archives=1, seed=seed + 1, split="test",
                           prefix=TEST_PREFIX),
                test_shift,
            )  # fmt: skip
            shift = ", ".join(f"{a}={v}" for a, v in shift_of(test).items()) or "not shifted"
            print(f"generating {test_videos} test videos ({shift}) into {inbox}")
            generate_corpus(inbox, test, True)

    password_env = "FVC_ZIP_PASSWORD" if os.environ.get("FVC_ZIP_PASSWORD") else None
    defs = build_defs(data_dir, password_env)
    instance = dg.DagsterInstance.get()
    for line in fail_dead_runs(instance):
        print(f"recovered: {line}")
    requests = scan_inbox(defs, instance)

    registered = instance.get_dynamic_partitions(videos_partitions.name)
    pending = [k for k in registered if k not in _videos_done(instance)]
    if not requests and pending:  # an earlier demo stopped half-way: finish its videos
        from fvc_dagster.defs.ingest.sensors import batch_run_requests

        requests = batch_run_requests(registered, pending, "demo")
    print(f"{len(registered)} videos registered; {len(requests)} batched runs to launch")
    run_video_batches(defs, requests, instance)
    done = _videos_done(instance)
    failed = [k for k in registered if k not in done]

    if _latest_timestamp(instance, "model_comparison") < _latest_timestamp(
        instance, "handcrafted_features"
    ):
        print("training baselines on every fold")
        outcome = execute_run_request(defs, "training", _all_folds(), instance)
        if not outcome.success:
            print("training failed; see the run in the Dagster UI (make dev)")
            _print_failed_videos(failed)
            return 1
    else:
        print("baselines are up to date with the features; reusing them")
    if not train_networks(defs, networks, instance, embedding_models=embedding_models):
        print("network training failed; see the run in the Dagster UI (make dev)")
        _print_failed_videos(failed)
        return 1
    served = register_champion(defs, instance) and score_videos(defs, instance, sorted(done))
    _print_summary(data_dir, seed, start, served)
    if not served:
        print("champion or scoring failed; see the run in the Dagster UI (make dev)")
    _print_failed_videos(failed)
    return 1 if failed or not served else 0
