"""What the served detector reads of a request: video bytes, or files under the serving root.

A request is a DataFrame, one video a row: column `video` holds a video file's bytes in base64
(with an optional `name` that names it in the answer), or column `path` a file under the
directory `$FVC_SERVING_ROOT`. Any other path is refused with one message whether or not the
file exists, so a client learns nothing of the server's files; without `FVC_SERVING_ROOT` every
path is refused.
"""

from __future__ import annotations

import base64
import binascii
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from fvc_dagster.lib.atomic import replacing
from fvc_dagster.lib.serving.detector import SCORE_COLUMNS, Detector, failed_row

SERVING_ROOT = "FVC_SERVING_ROOT"
REFUSED = (
    f"refused: the server scores video bytes (column `video`, base64) or files under "
    f"${SERVING_ROOT}"
)


def serving_root() -> Path | None:
    """The directory `$FVC_SERVING_ROOT` names (resolved), or None when it is unset."""
    root = os.environ.get(SERVING_ROOT)
    return Path(root).resolve() if root else None


def servable_path(path: str, root: Path | None) -> Path | None:
    """`path` resolved (links followed) when it lies under `root`, else None."""
    if root is None:
        return None
    resolved = Path(root, path).resolve()
    return resolved if resolved.is_relative_to(root) else None


def score_request(detector: Detector, request: pd.DataFrame, root: Path | None) -> pd.DataFrame:
    """One `SCORE_COLUMNS` row per request row: its video bytes scored from a temporary file,
    or its path scored when it is under `root`; every other row gets its error."""
    if "video" not in request and "path" not in request:
        raise ValueError(
            "a request needs a `video` column (a video file's bytes in base64, with an "
            f"optional `name`) or a `path` column (files under ${SERVING_ROOT})"
        )
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for i, row in enumerate(request.to_dict("records")):
            if _given(row.get("video")):
                name = str(row["name"]) if _given(row.get("name")) else f"video {i}"
                rows.append(_score_bytes(detector, str(row["video"]), name, Path(scratch) / str(i)))
            elif _given(row.get("path")):
                path = str(row["path"])
                allowed = servable_path(path, root)
                rows.append(
                    failed_row(path, REFUSED)
                    if allowed is None
                    else detector.score_file(allowed, path)
                )
            else:
                rows.append(failed_row(f"row {i}", "neither `video` nor `path` is given"))
    return pd.DataFrame(rows, columns=SCORE_COLUMNS)


def _score_bytes(detector: Detector, encoded: str, name: str, file: Path) -> dict[str, Any]:
    try:
        data = base64.b64decode(encoded, validate=True)
    except binascii.Error as exc:
        return failed_row(name, f"`video` is not base64: {exc}")
    with replacing(file) as partial:
        partial.write_bytes(data)
    try:
        return detector.score_file(file, name)
    finally:
        file.unlink()


def _given(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and pd.isna(value)) and value != ""
