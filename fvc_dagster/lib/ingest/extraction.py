"""One video from the inbox into the video store: extracted, checksummed, probed."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from fvc_dagster.lib.ingest.archives import ArchiveLimits, InboxIndex, extract_member
from fvc_dagster.lib.ingest.splits import video_split
from fvc_dagster.lib.ingest.video import VideoError, packet_index_path, probe_video

SOURCE_VIDEO_COLUMNS = (
    "video_id", "archive", "member", "path", "sha256", "label", "raw_label", "platform",
    "dup_group", "split", "declared_split", "split_reason", "duration", "fps", "frame_count",
    "width", "height", "codec", "bitrate", "gop", "rotation", "has_audio",
)  # fmt: skip


@dataclass(frozen=True)
class RegisteredSource:
    """Where a video was extracted from before: it keeps that source on every re-run."""

    archive: str
    member: str
    sha256: str


def ingest_video(
    index: InboxIndex,
    video_id: str,
    inbox: Path,
    video_store: Path,
    quarantine: Path,
    password: str | None,
    limits: ArchiveLimits,
    label_map: Mapping[str, str],
    registered: RegisteredSource | None = None,
    test_archives: Sequence[str] = (),
) -> dict:
    """Extract a video from its archive into the store and return its `source_videos` row.

    A video already ingested keeps its source (see `InboxIndex.source_of`), and its bytes must
    be the ones it had: different bytes under its id are an ArchiveError naming both archives.
    Its packet index is kept beside it, so sampling does not demux it again. Its `split` is test
    when its metadata says so or its archive matches a `test_archives` pattern (`video_split`).
    A video that does not probe is moved to the quarantine folder while that stays within
    `limits.max_quarantine_bytes` (`quarantine_file`; it is still in its archive either way) and
    a VideoError naming the video, archive and member, and where the file went, is raised.
    """
    entry = index.source_of(video_id, registered and (registered.archive, registered.member))
    suffix = PurePosixPath(entry.member).suffix.lower()
    destination = video_store / f"{video_id}{suffix}"
    expected = registered and (
        registered.sha256,
        f"of video {video_id!r} ingested from '{registered.archive}' member '{registered.member}'",
    )
    sha256 = extract_member(
        inbox / entry.archive, entry.member, destination, password, limits, expected=expected
    )
    try:
        probe = probe_video(destination, name=video_id)
    except VideoError as exc:
        kept = quarantine_file(destination, quarantine, limits.max_quarantine_bytes)
        where = f"archive {entry.archive!r}, member {entry.member!r}"
        raise VideoError(f"{exc} [{where}; {kept}]") from None
    probe.index.save(packet_index_path(destination))
    meta = index.metadata.get(video_id, {})
    declared_in = meta.get("source") or "metadata"
    split = video_split(entry.archive, meta.get("split"), test_archives, declared_in)
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
        "split": split.split,
        "declared_split": meta.get("split") or "",  # empty: none declared
        "split_reason": split.reason,
        **probe.as_row(),
    }


def quarantine_file(path: Path, quarantine: Path, max_bytes: int) -> str:
    """Move a file that failed into the quarantine folder if the folder stays within
    `max_bytes`, else delete it; returns which, for the error message."""
    quarantine.mkdir(parents=True, exist_ok=True)
    target = quarantine / path.name
    held = sum(f.stat().st_size for f in quarantine.iterdir() if f.is_file() and f != target)
    if held + path.stat().st_size > max_bytes:
        path.unlink()
        return (
            f"not kept: quarantine/ holds {held} B, and this file would pass its limit of "
            f"{max_bytes} B"
        )
    os.replace(path, target)
    return f"moved to {target}"
