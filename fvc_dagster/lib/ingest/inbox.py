"""What an inbox scan should register: new videos, relabelled videos, and the new scan state.

The state (the sensor's cursor) remembers each archive's stat and content fingerprint, so an
unchanged archive is not reopened, a copy under another name adds nothing, and a grown archive
adds only its new videos; where each registered video comes from, so a video keeps its source
and a different file under its id is reported, never swapped in; and a hash of each registered
video's metadata, so a fixed metadata archive re-labels exactly the videos whose metadata changed
(a `split` moving a video between train and test included); and the test-archive patterns, so a
changed pattern re-runs the videos whose archive it moves between train and test.
Members under one id are compared by `same_content`: only ids found in more than one place are
ever read, and only where sizes and CRC-32s cannot tell them apart.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyzipper

from fvc_dagster.lib.ingest.archives import (
    ArchiveError,
    ArchiveLimits,
    ArchiveListing,
    MemberDigests,
    VideoEntry,
    archive_failure,
    archive_paths,
    conflicting_sources,
    index_listings,
    list_archive,
    same_content,
)
from fvc_dagster.lib.ingest.splits import TEST, matching_pattern

NO_METADATA = "-"


@dataclass
class ScanState:
    """The sensor cursor: archive stats and fingerprints, where each registered video comes from,
    per-video metadata hashes, how many relabelling changes were seen, and the test-archive
    patterns of the last scan."""

    archives: dict[str, list] = field(default_factory=dict)  # name -> [size, mtime_ns, fingerprint]
    metadata: dict[str, str] = field(default_factory=dict)  # video id -> metadata hash
    # id -> [archive, member, size, crc, seal]: `VideoEntry`'s fields (crc None where unknown)
    sources: dict[str, list] = field(default_factory=dict)
    relabels: int = 0
    test_archives: list[str] = field(default_factory=list)

    @classmethod
    def from_cursor(cls, cursor: str | None) -> ScanState:
        return cls(**json.loads(cursor)) if cursor else cls()

    def to_cursor(self) -> str:
        return json.dumps(
            {
                "archives": self.archives,
                "metadata": self.metadata,
                "sources": self.sources,
                "relabels": self.relabels,
                "test_archives": self.test_archives,
            },
            sort_keys=True,
        )

    @property
    def fingerprints(self) -> set[str]:
        return {entry[2] for entry in self.archives.values()}


@dataclass
class ScanPlan:
    new_videos: list[str]  # in archive then member order
    relabelled: list[str]  # registered videos whose metadata or test-archive match changed
    read: list[str]  # archives whose listing was read
    copies: list[str]  # archives identical to one already read
    errors: list[ArchiveError]  # archives refused whole (retried on the next scan)
    refused: list[ArchiveError]  # members refused one by one
    conflicts: list[ArchiveError]  # different files under one video id: none is taken silently
    duplicates: list[str]  # the same file under the same id in another archive (nothing to do)
    merges: list[str]  # what merging metadata rows decided
    skipped: list[tuple[str, str]]  # non-video members
    state: ScanState


def _metadata_hash(row: dict | None) -> str:
    """A digest of a row's label, cascade, platform and whether it declares the test split
    (train and no split are one: rows without a test split keep the digest they had before
    splits were read)."""
    if not row:
        return NO_METADATA
    fields = [row.get("raw_label"), row.get("dup_group"), row.get("platform")]
    payload = json.dumps(fields + ([TEST] if row.get("split") == TEST else []))
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def _source(entry: VideoEntry) -> list:
    return [entry.archive, entry.member, entry.size, entry.crc, entry.sealed]


def _recorded_source(video_id: str, recorded: list) -> VideoEntry:
    archive, member, size, crc, *sealed = recorded  # cursors written before seals hold four
    return VideoEntry(video_id, archive, member, size, crc, *sealed)


def _judge_registered(
    source: VideoEntry, entries: list[VideoEntry], digests: MemberDigests
) -> tuple[list[str], list[ArchiveError]]:
    """Members carrying an already registered video: its source read again (a grown archive),
    copies of it (the same bytes), or conflicts (other bytes, or bytes that cannot be read to
    compare)."""
    video_id, registered = source.video_id, f"'{source.archive}' member '{source.member}'"
    duplicates, conflicts = [], []
    for entry in entries:
        try:
            same, differs = same_content(entry, source, digests), "differs"
        except ArchiveError as exc:
            same, differs = False, f"cannot be compared with it ({exc})"
        if same and (entry.archive, entry.member) == (source.archive, source.member):
            continue
        if same:
            duplicates.append(
                f"video {video_id!r} in archive '{entry.archive}': a copy of its source "
                + registered
            )
        else:
            conflicts.append(
                ArchiveError(
                    entry.archive,
                    f"video {video_id!r} is registered from {registered}, and this file under "
                    f"the same id {differs}; it is ignored (remove or rename it)",
                    entry.member,
                )
            )
    return duplicates, conflicts


def plan_scan(
    inbox: Path,
    state: ScanState,
    registered: Iterable[str],
    password: str | None = None,
    limits: ArchiveLimits = ArchiveLimits(),
    test_archives: Sequence[str] = (),
) -> ScanPlan:
    """Read the archives that changed since `state` and decide what to register and re-run.

    A registered video keeps its source: the same file under its id in another archive is a
    copy, a different file is a conflict naming both archives. A new id carried by different
    files is registered from none of them, and their archives are read again on the next scan.
    A registered video is re-run when its metadata changed, or when the `test_archives`
    patterns changed so that its archive matches them where it did not, or the reverse.
    """
    registered = set(registered)
    new_state = ScanState(
        dict(state.archives),
        dict(state.metadata),
        dict(state.sources),
        state.relabels,
        list(test_archives),
    )
    known_fingerprints = state.fingerprints
    digests = MemberDigests(inbox, password, limits)
    listings: list[ArchiveListing] = []
    read, copies, errors = [], [], []
    for path in archive_paths(inbox):
        stat = path.stat()
        previous = state.archives.get(path.name)
        if previous and previous[:2] == [stat.st_size, stat.st_mtime_ns]:
            continue
        try:
            listing = list_archive(path, password, limits, known_fingerprints)
        except (ArchiveError, pyzipper.BadZipFile, OSError) as exc:
            errors.append(archive_failure(path, exc))
            continue
        (copies if listing.copy else read).append(path.name)
        if not listing.copy:
            listings.append(listing)
        new_state.archives[path.name] = [stat.st_size, stat.st_mtime_ns, listing.fingerprint]
        known_fingerprints.add(listing.fingerprint)
    index = index_listings(listings, digests)
    new_videos, duplicates, conflicts = [], [], []
    for video_id, entries in index.videos.items():
        if video_id in state.sources:
            source = _recorded_source(video_id, state.sources[video_id])
            found, refused = _judge_registered(source, entries, digests)
            duplicates += found
            conflicts += refused
        elif video_id in registered:  # registered before sources were recorded: the baseline
            new_state.sources[video_id] = _source(entries[0])
        elif conflict := conflicting_sources(video_id, entries, digests):
            conflicts.append(conflict)
            for entry in entries:
                new_state.archives.pop(entry.archive, None)
        else:
            new_videos.append(video_id)
            new_state.sources[video_id] = _source(entries[0])
            duplicates += _judge_registered(entries[0], entries[1:], digests)[0]
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
    relabelled += [
        video_id
        for video_id, (archive, *_) in state.sources.items()
        if video_id in registered
        and video_id not in relabelled
        and bool(matching_pattern(archive, state.test_archives))
        != bool(matching_pattern(archive, test_archives))
    ]
    if relabelled:
        new_state.relabels += 1
    return ScanPlan(
        new_videos=new_videos,
        relabelled=sorted(relabelled),
        read=read,
        copies=copies,
        errors=errors,
        refused=index.refused,
        conflicts=conflicts,
        duplicates=duplicates,
        merges=index.merges,
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
