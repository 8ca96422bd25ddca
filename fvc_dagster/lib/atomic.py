"""Atomic file writes: a temporary file beside the target, moved over it only when complete.

A writer killed mid-write (SIGKILL, out of memory) leaves only its temporary; the next write of
the same target removes it, so a re-run leaves the same files as an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import glob
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

TEMP_SUFFIX = ".partial"


def temporaries_of(path: Path) -> list[Path]:
    """Temporaries of `path` left by writers that never finished."""
    return sorted(path.parent.glob(f"{glob.escape(f'.{path.name}.')}*{TEMP_SUFFIX}"))


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A temporary path to write `path`'s new content to: moved over `path` when the block
    succeeds, removed when it raises. Earlier writers' leftover temporaries are removed first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in temporaries_of(path):
        stale.unlink(missing_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    os.close(fd)
    try:
        yield Path(name)
        os.replace(name, path)
    finally:
        if os.path.exists(name):
            os.unlink(name)
