"""Which videos are test-only: declared by a metadata `split` column or by archive name patterns.

A test video goes through every per-video stage and is scored, but never enters a fold or a fit.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pandas as pd

TRAIN, TEST = "train", "test"
SPLITS = (TRAIN, TEST)


@dataclass(frozen=True)
class VideoSplit:
    """A video's split and the rule that decided it."""

    split: str
    reason: str


def parse_split(value: str | None, where: str) -> str | None:
    """A metadata `split` value, lower-cased (None when empty); any other value than train or
    test is a ValueError naming `where` (the CSV and its line)."""
    split = (value or "").strip().lower()
    if split and split not in SPLITS:
        raise ValueError(f"{where}: split {value!r} is neither {TRAIN} nor {TEST}")
    return split or None


def archive_patterns(text: str | None) -> tuple[str, ...]:
    """The fnmatch patterns of a comma-separated list (`Shifted*.zip,Test*.zip`)."""
    return tuple(p.strip() for p in (text or "").split(",") if p.strip())


def matching_pattern(archive: str, patterns: Iterable[str]) -> str | None:
    """The first pattern that the archive's name matches (case-sensitive), None if none."""
    return next((p for p in patterns if fnmatch.fnmatchcase(archive, p)), None)


def video_split(
    archive: str, declared: str | None, patterns: Sequence[str], declared_in: str = "metadata"
) -> VideoSplit:
    """Test when the metadata row (of `declared_in`) declares `test` or the video's archive
    matches one of the test-archive `patterns`; train otherwise."""
    if declared == TEST:
        return VideoSplit(TEST, f"split column of {declared_in} says test")
    if pattern := matching_pattern(archive, patterns):
        return VideoSplit(TEST, f"archive {archive!r} matches test-archive pattern {pattern!r}")
    if declared == TRAIN:
        return VideoSplit(TRAIN, f"split column of {declared_in} says train")
    return VideoSplit(TRAIN, "no split declared and the archive matches no test-archive pattern")


def videos_in_test_split(source_videos: pd.DataFrame, patterns: Sequence[str]) -> pd.DataFrame:
    """`video_id, reason` of every test video of `source_videos` (`video_id, archive,
    declared_split, split`), decided again from its archive, its declared split and `patterns`;
    a row whose stored `split` says test is one too."""
    rows = []
    for row in source_videos.itertuples():
        decided = video_split(row.archive, row.declared_split, patterns)
        if decided.split == TEST:
            rows.append((row.video_id, decided.reason))
        elif row.split == TEST:
            rows.append((row.video_id, "source_videos says test"))
    return pd.DataFrame(rows, columns=["video_id", "reason"])
