"""Clip previews for materialization metadata: a row of thumbnails for one video."""

import dagster as dg
import numpy as np

from fvc_dagster.lib.clips.store import contact_sheet, png_markdown


def clip_preview(
    video_id: str, first_frames: list[np.ndarray], height: int = 40
) -> dg.MetadataValue:
    """A markdown image: the first frame of each of the video's clips."""
    return dg.MetadataValue.md(png_markdown(contact_sheet(first_frames, height), video_id))
