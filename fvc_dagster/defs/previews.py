"""Clip previews for materialization metadata: one row of thumbnails per video."""

import dagster as dg
import numpy as np

from fvc_dagster.lib.clipstore import contact_sheet, png_markdown

PREVIEW_VIDEOS = 6  # a batch's preview shows its first few videos; each event stores it


def clip_preview(first_frames: dict[str, list[np.ndarray]], height: int = 40) -> dg.MetadataValue:
    """A markdown image: for each video (up to PREVIEW_VIDEOS), the first frame of every clip."""
    lines = []
    for video_id, frames in list(first_frames.items())[:PREVIEW_VIDEOS]:
        lines.append(f"**{video_id}**\n\n{png_markdown(contact_sheet(frames, height), video_id)}")
    if len(first_frames) > PREVIEW_VIDEOS:
        lines.append(f"... and {len(first_frames) - PREVIEW_VIDEOS} more videos in this batch")
    return dg.MetadataValue.md("\n\n".join(lines))
