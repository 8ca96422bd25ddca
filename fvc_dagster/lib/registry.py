"""What an inbox scan should register: new videos, relabelled videos, and the new scan state.

The state (the sensor's cursor) remembers each archive's stat and content fingerprint, so an
unchanged archive is not reopened, a copy under another name adds nothing, and a grown archive
adds only its new videos; and a hash of each registered video's metadata, so a fixed metadata
archive re-labels exactly the videos whose metadata changed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyzipper

from fvc_dagster.lib.archives import (
    ArchiveError,
    ArchiveLimits,
    ArchiveListing,
    archive_paths,
    index_listings,
    list_archive,
)

NO_METADATA = "-"


@dataclass
class ScanState:
    """The sensor cursor: archive stats and fingerprints, and per-video metadata hashes."""

    archives: dict[str, list] = field(default_factory=dict)  # name -> [size, mtime_ns, fingerprint]
    metadata: dict[str, str] = field(default_factory=dict)  # video id -> metadata hash

    @classmethod
    def from_cursor(cls, cursor: str | None) -> ScanState:
        return cls(**json.loads(cursor)) if cursor else cls()

    def to_cursor(self) -> str:
        return json.dumps({"archives": self.archives, "metadata": self.metadata}, sort_keys=True)

    @property
    def fingerprints(self) -> set[str]:
        return {entry[2] for entry in self.archives.values()}


@dataclass
class ScanPlan:
    new_videos: list[str]  # in archive then member order
    relabelled: list[str]  # registered videos whose metadata changed
    read: list[str]  # archives whose listing was read
    copies: list[str]  # archives identical to one already read
    errors: list[ArchiveError]  # archives refused whole (retried on the next scan)
    refused: list[ArchiveError]  # members refused one by one
    skipped: list[tuple[str, str]]  # non-video members
    state: ScanState


def archive_fingerprint(path: Path) -> str:
    """A digest of the central directory (names, sizes, CRCs): equal for byte-identical content."""
    with pyzipper.AESZipFile(path) as zf:
        entries = sorted((i.filename, i.file_size, i.CRC) for i in zf.infolist())
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()[:32]


def _metadata_hash(row: dict | None) -> str:
    if not row:
        return NO_METADATA
    payload = json.dumps([row.get("raw_label"), row.get("dup_group"), row.get("platform")])
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def plan_scan(
    inbox: Path,
    state: ScanState,
    registered: Iterable[str],
    password: str | None = None,
    limits: ArchiveLimits = ArchiveLimits(),
) -> ScanPlan:
    """Read the archives that changed since `state` and decide what to register and re-run."""
    registered = set(registered)
    new_state = ScanState(dict(state.archives), dict(state.metadata))
    known_fingerprints = state.fingerprints
    listings: list[ArchiveListing] = []
    read, copies, errors = [], [], []
    for path in archive_paths(inbox):
        stat = path.stat()
        previous = state.archives.get(path.name)
        if previous and previous[:2] == [stat.st_size, stat.st_mtime_ns]:
            continue
        try:
            fingerprint = archive_fingerprint(path)
            if fingerprint in known_fingerprints:
                copies.append(path.name)
            else:
                listings.append(list_archive(path, password, limits))
                read.append(path.name)
        except (ArchiveError, pyzipper.BadZipFile, OSError) as exc:
            errors.append(
                exc
                if isinstance(exc, ArchiveError)
                else ArchiveError(path.name, f"unreadable ({exc})")
            )
            continue
        new_state.archives[path.name] = [stat.st_size, stat.st_mtime_ns, fingerprint]
        known_fingerprints.add(fingerprint)
    index = index_listings(listings)
    new_videos = [v for v in index.videos if v not in registered]
    relabelled = []
    for video_id in new_videos:
        new_state.metadata[video_id] = _metadata_hash(index.metadata.get(video_id))
    for video_id, row in index.metadata.items():
        if video_id not in registered:
            continue
        digest = _metadata_hash(row)
        if video_id in state.metadata and digest != state.metadata[video_id]:
            relabelled.append(video_id)
        new_state.metadata[video_id] = digest  # without an earlier hash this is the baseline
    return ScanPlan(
        new_videos=new_videos,
        relabelled=sorted(relabelled),
        read=read,
        copies=copies,
        errors=errors,
        refused=index.refused,
        skipped=index.skipped,
        state=new_state,
    )


def contiguous_batches(
    ordered_keys: Sequence[str], selected: Iterable[str], batch_size: int
) -> list[tuple[str, str]]:
    """(first, last) key ranges covering `selected`, contiguous in `ordered_keys`, at most
    `batch_size` keys each: the shape of a partition-range run."""
    wanted = set(selected)
    ranges: list[tuple[str, str]] = []
    run: list[str] = []
    for key in ordered_keys:
        if key in wanted and len(run) < batch_size:
            run.append(key)
            continue
        if run:
            ranges.append((run[0], run[-1]))
        run = [key] if key in wanted else []
    if run:
        ranges.append((run[0], run[-1]))
    return ranges
