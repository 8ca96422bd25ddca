"""`source_videos`: each video extracted from its archive, checksummed and probed."""

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from fvc_dagster.defs.batching import add_video_metadata, for_each_video, per_video_asset
from fvc_dagster.defs.resources import VideoInbox
from fvc_dagster.defs.warehouse import existing_table
from fvc_dagster.lib.ingest.extraction import SOURCE_VIDEO_COLUMNS, RegisteredSource, ingest_video


def _registered_sources(warehouse: DuckDBResource) -> dict[str, RegisteredSource]:
    """Where each video already ingested came from: it keeps that source on a re-run."""
    table = existing_table(warehouse, "source_videos")
    if table is None:
        return {}
    return {
        row.video_id: RegisteredSource(row.archive, row.member, row.sha256)
        for row in table.itertuples()
    }


@per_video_asset(group_name="ingest", kinds={"duckdb", "video"})
def source_videos(
    context: dg.AssetExecutionContext, inbox: VideoInbox, warehouse: DuckDBResource
) -> pd.DataFrame:
    """One row per video: its archive and member, sha256, label and cascade, split (train or
    test, and the rule that decided it), and PyAV probe."""
    index = inbox.index()
    for line in index.merges:
        context.log.info(line)
    registered = _registered_sources(warehouse)
    storage = inbox.storage
    rows, seconds = for_each_video(
        context,
        context.partition_keys,
        lambda video_id: ingest_video(
            index,
            video_id,
            storage.inbox,
            storage.video_store,
            storage.quarantine,
            inbox.password,
            inbox.limits,
            inbox.label_map,
            registered.get(video_id),
            inbox.test_archive_patterns,
        ),
    )
    table = pd.DataFrame(rows, columns=list(SOURCE_VIDEO_COLUMNS))
    probe = ["label", "split", "width", "height", "fps", "frame_count", "codec"]
    own = table.set_index("video_id")[probe].to_dict("index")
    counts = {
        "labels": dg.MetadataValue.json(table["label"].fillna("none").value_counts().to_dict()),
        "splits": dg.MetadataValue.json(table["split"].value_counts().to_dict()),
    }
    add_video_metadata(context, seconds, own, counts)
    return table
