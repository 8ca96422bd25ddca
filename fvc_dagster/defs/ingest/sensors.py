"""The archive sensor registers new videos in batches; the splitter isolates bad videos."""

import hashlib
import json

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from fvc_dagster.defs.automation import SENSOR_INTERVAL_S
from fvc_dagster.defs.batching import FAILED_VIDEOS_KEY
from fvc_dagster.defs.jobs import video_pipeline_job
from fvc_dagster.defs.partitions import (
    VIDEO_BATCH_SIZE,
    partition_range_tags,
    videos_partitions,
)
from fvc_dagster.defs.resources import VideoInbox
from fvc_dagster.lib.ingest.inbox import ScanState, contiguous_batches, plan_scan


def batch_run_requests(
    ordered_keys: list[str], selected: list[str], run_key_prefix: str
) -> list[dg.RunRequest]:
    """One run per contiguous batch of partitions, never one run per video."""
    requests = []
    for first, last in contiguous_batches(ordered_keys, selected, VIDEO_BATCH_SIZE):
        run_key = f"{run_key_prefix}:{first}..{last}"
        if first == last:
            requests.append(dg.RunRequest(run_key=run_key, partition_key=first))
        else:
            requests.append(dg.RunRequest(run_key=run_key, tags=partition_range_tags(first, last)))
    return requests


@dg.sensor(
    job=video_pipeline_job,
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Registers the videos of new or grown inbox archives and runs them in batches.",
)
def archive_sensor(context: dg.SensorEvaluationContext, inbox: VideoInbox):
    registered = context.instance.get_dynamic_partitions(videos_partitions.name)
    state = ScanState.from_cursor(context.cursor)
    plan = plan_scan(
        inbox.storage.inbox,
        state,
        registered,
        inbox.password,
        inbox.limits,
        inbox.test_archive_patterns,
    )
    for error in plan.errors + plan.refused + plan.conflicts:
        context.log.error(str(error))
    for archive, member in plan.skipped:
        context.log.info(f"archive {archive!r}: skipped non-video member {member!r}")
    for archive in plan.copies:
        context.log.info(f"archive {archive!r}: same content as an archive already read")
    for line in plan.duplicates + plan.merges:
        context.log.info(line)
    if not plan.new_videos and not plan.relabelled:
        return dg.SensorResult(
            skip_reason=dg.SkipReason(
                f"No new videos (read {len(plan.read)} archives, {len(plan.errors)} refused)."
            ),
            cursor=plan.state.to_cursor(),
        )
    ordered = [*registered, *plan.new_videos]
    # Unique per change (a label flipping back to an earlier value is a new change): Dagster
    # de-duplicates run keys, so a repeated key would drop the re-run.
    relabel_key = (
        f"relabel:{plan.state.relabels}-"
        + hashlib.sha256(
            json.dumps([(v, plan.state.metadata[v]) for v in plan.relabelled]).encode()
        ).hexdigest()[:12]
    )
    context.log.info(
        f"registering {len(plan.new_videos)} new videos from {plan.read}; "
        f"re-running {len(plan.relabelled)} videos whose metadata or test-archive match changed"
    )
    return dg.SensorResult(
        run_requests=batch_run_requests(ordered, plan.new_videos, "new")
        + batch_run_requests(ordered, plan.relabelled, relabel_key),
        dynamic_partitions_requests=[videos_partitions.build_add_request(plan.new_videos)]
        if plan.new_videos
        else [],
        cursor=plan.state.to_cursor(),
    )


def failed_videos_of_run(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """The videos that the run's steps reported as bad input."""
    failed: set[str] = set()
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        data = record.dagster_event.step_failure_data
        user_data = data.user_failure_data if data else None
        if user_data and FAILED_VIDEOS_KEY in user_data.metadata:
            failed.update(user_data.metadata[FAILED_VIDEOS_KEY].value)
    return sorted(failed)


@dg.run_failure_sensor(
    monitored_jobs=[video_pipeline_job],
    request_job=video_pipeline_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Re-runs a failed video batch as smaller batches without its bad videos, and each "
    "bad video alone, so that only the bad videos' partitions end failed.",
)
def split_failed_video_batches(context: dg.RunFailureSensorContext):
    run = context.dagster_run
    first = run.tags.get(ASSET_PARTITION_RANGE_START_TAG)
    last = run.tags.get(ASSET_PARTITION_RANGE_END_TAG)
    failed = failed_videos_of_run(context.instance, run.run_id)
    if not (first and last and first != last and failed):
        return dg.SkipReason(f"run {run.run_id} is not a multi-video batch with bad videos")
    keys = context.instance.get_dynamic_partitions(videos_partitions.name)
    batch = keys[keys.index(first) : keys.index(last) + 1]
    good = [k for k in batch if k not in failed]
    context.log.info(f"splitting run {run.run_id}: {len(good)} good videos, bad: {failed}")
    return [
        *batch_run_requests(keys, good, f"retry:{run.run_id}"),
        *(dg.RunRequest(run_key=f"isolate:{run.run_id}:{v}", partition_key=v) for v in failed),
    ]
