"""One video from the inbox into the video store: extracted, checksummed, probed."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from fvc_dagster.lib.archives import ArchiveError, ArchiveLimits, InboxIndex, extract_member
from fvc_dagster.lib.video import VideoError, probe_video

SOURCE_VIDEO_COLUMNS = (
    "video_id", "archive", "member", "path", "sha256", "label", "raw_label", "platform",
    "dup_group", "duration", "fps", "frame_count", "width", "height", "codec", "bitrate", "gop",
    "rotation", "has_audio",
)  # fmt: skip


def ingest_video(
    index: InboxIndex,
    video_id: str,
    inbox: Path,
    video_store: Path,
    quarantine: Path,
    password: str | None,
    limits: ArchiveLimits,
    label_map: Mapping[str, str],
) -> dict:
    """Extract a video from its archive into the store and return its `source_videos` row.

    A video that does not probe is moved to the quarantine folder (nothing is lost) and a
    VideoError naming the video, archive and member is raised.
    """
    entry = index.videos.get(video_id)
    if entry is None:
        problems = [str(e) for e in index.archive_errors + index.refused]
        raise ArchiveError(
            "inbox", f"video {video_id!r} is in no readable archive" + "; ".join(["", *problems])
        )
    suffix = PurePosixPath(entry.member).suffix.lower()
    destination = video_store / f"{video_id}{suffix}"
    sha256 = extract_member(inbox / entry.archive, entry.member, destination, password, limits)
    try:
        probe = probe_video(destination, name=video_id)
    except VideoError as exc:
        quarantine.mkdir(parents=True, exist_ok=True)
        os.replace(destination, quarantine / destination.name)
        raise VideoError(f"{exc} [archive {entry.archive!r}, member {entry.member!r}]") from None
    meta = index.metadata.get(video_id, {})
    return {
        "video_id": video_id,
        "archive": entry.archive,
        "member": entry.member,
        "path": str(destination),
        "sha256": sha256,
        "label": index.label_of(video_id, label_map),
        "raw_label": meta.get("raw_label"),
        "platform": meta.get("platform"),
        "dup_group": meta.get("dup_group") or video_id,
        **probe.as_row(),
    }
