"""Per-video work inside a multi-partition run: one bad video must not hide the others."""

from __future__ import annotations

import time
import traceback
import warnings
from collections.abc import Callable, Iterable, Mapping, Sized
from typing import TypeVar

import dagster as dg
import pandas as pd

from fvc_dagster.defs.partitions import folds_partitions, video_backfill_policy, videos_partitions
from fvc_dagster.lib.ingest.archives import ArchiveError
from fvc_dagster.lib.ingest.video import VideoError

T = TypeVar("T")
FAILED_VIDEOS_KEY = "failed_videos"
# Steps that fit models use every core: one at a time (the instance's pool limit, default 1).
TRAINING_POOL = "training"
# Dagster's notice that `@asset(backfill_policy=...)` is beta: batched backfills are deliberate.
BACKFILL_POLICY_BETA = r"Parameter `backfill_policy` of function `asset` is currently in beta"


def _asset(**asset_args):
    """`dg.asset(**asset_args)` without the BetaWarning of its `backfill_policy`."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", BACKFILL_POLICY_BETA, dg.BetaWarning)
        return dg.asset(**asset_args)


def per_video_asset(*, group_name: str, kinds: set[str], **asset_args):
    """`@asset` for a per-video DuckDB table: a partition per video, batched backfills, and
    rows keyed by `video_id` (`asset_args`: more `@asset` arguments). No pool: the warehouse
    is held only while rows are read and written, so batches of concurrent runs overlap."""
    return _asset(
        partitions_def=videos_partitions,
        backfill_policy=video_backfill_policy,
        group_name=group_name,
        kinds=kinds,
        metadata={"partition_expr": "video_id"},
        **asset_args,
    )


def per_fold_asset(*, group_name: str, kinds: set[str], **asset_args):
    """`@asset` for a model's fold-partitioned DuckDB table: a partition per fold, every fold in
    one run, the training pool, and rows keyed by `fold` (`asset_args`: name, ins, ...)."""
    return _asset(
        partitions_def=folds_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=TRAINING_POOL,
        group_name=group_name,
        kinds=kinds,
        metadata={"partition_expr": "fold"},
        **asset_args,
    )


def for_each_video(
    context: dg.AssetExecutionContext, video_ids: Iterable[str], work: Callable[[str], T]
) -> tuple[list[T], dict[str, float]]:
    """Run `work` per video, logging each; return results and seconds per video.

    Every video is attempted, and whatever one raises is that video's failure: bad input
    (VideoError, ArchiveError) with its own message, anything else with its type and
    traceback in the log. If any fails, the step fails with a `Failure` whose metadata lists
    the failed videos, so `split_failed_video_batches` can re-run the good ones together and
    each bad one on its own partition.
    """
    results: list[T] = []
    seconds: dict[str, float] = {}
    failures: dict[str, str] = {}
    for video_id in video_ids:
        start = time.perf_counter()
        try:
            results.append(work(video_id))
        except (VideoError, ArchiveError) as exc:
            failures[video_id] = str(exc)
            context.log.error(f"{video_id}: {exc}")
            continue
        except Exception as exc:
            failures[video_id] = f"video {video_id!r}: {type(exc).__name__}: {exc}"
            context.log.error(f"{failures[video_id]}\n{traceback.format_exc()}")
            continue
        seconds[video_id] = time.perf_counter() - start
        context.log.info(f"{video_id}: done in {seconds[video_id]:.2f} s")
    if failures:
        listing = "\n".join(f"- `{v}`: {msg}" for v, msg in sorted(failures.items()))
        attempted = len(seconds) + len(failures)
        raise dg.Failure(
            description=f"{len(failures)} of {attempted} videos failed:\n{listing}",
            metadata={FAILED_VIDEOS_KEY: dg.MetadataValue.json(sorted(failures))},
        )
    return results, seconds


def add_video_metadata(
    context: dg.AssetExecutionContext,
    seconds: dict[str, float],
    per_video: Mapping[str, Mapping[str, object]] | None = None,
    batch: Mapping[str, object] | None = None,
) -> None:
    """Materialization metadata of a batch: each video's partition gets its own `seconds` and
    `per_video` entries (its preview, its row counts), every partition the run's summary (videos,
    mean and slowest seconds per video) and `batch` entries. Nothing is copied into all of a
    run's events that belongs to one video: each event is written to the instance."""
    values = list(seconds.values()) or [0.0]
    context.add_output_metadata(
        {
            "videos": dg.MetadataValue.int(len(seconds)),
            "seconds_per_video": dg.MetadataValue.float(round(sum(values) / len(values), 4)),
            "slowest_video_seconds": dg.MetadataValue.float(round(max(values), 4)),
            **(batch or {}),
        }
    )
    for video_id, spent in seconds.items():
        own = {
            "seconds": dg.MetadataValue.float(round(spent, 4)),
            **(per_video or {}).get(video_id, {}),
        }
        context.add_asset_metadata(own, partition_key=video_id)


def row_counts(seconds: dict[str, float], results: list[Sized]) -> dict[str, dict[str, int]]:
    """Each video's row count, as `add_video_metadata`'s `per_video` (`seconds` and `results` as
    `for_each_video` returns them: the same videos, in the same order)."""
    return {video_id: {"rows": len(rows)} for video_id, rows in zip(seconds, results, strict=True)}


def rows_by_video(table: pd.DataFrame, asset: str) -> Callable[[str], pd.DataFrame]:
    """A lookup of a video's upstream rows that fails that video, by name, when it has none."""
    groups = dict(tuple(table.groupby("video_id"))) if len(table) else {}

    def lookup(video_id: str) -> pd.DataFrame:
        if video_id not in groups:
            raise VideoError(f"video {video_id!r}: no rows in {asset}; materialize it first")
        return groups[video_id]

    return lookup
