"""Clip embeddings of frozen backbones (on request): what the embedding models are fit on."""

from typing import Literal

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource
from pydantic import Field

from fvc_dagster.defs.batching import (
    add_video_metadata,
    for_each_video,
    per_video_asset,
    row_counts,
    rows_by_video,
)
from fvc_dagster.defs.warehouse import existing_table
from fvc_dagster.lib.models import embedding_backbones


class ClipEmbedding(dg.Config):
    """Which backbones embed the clips, from which weights, at which clip size."""

    backbones: list[str] = Field(
        default_factory=embedding_backbones,
        description="registry networks whose frozen trunks embed the clips; the rows of other "
        "backbones are kept for clips whose scaled file is unchanged",
    )
    weights: Literal["random", "pretrained"] = Field(
        default="pretrained",
        description="pretrained: each backbone's registry checkpoint from "
        "$TORCH_HOME/hub/checkpoints/; random: seeded random weights",
    )
    frames: int | None = Field(
        default=None, ge=1, description="frames per clip (T); empty: each backbone's registered"
    )
    pixels: int | None = Field(
        default=None, ge=8, description="frame side (P x P); empty: each backbone's registered"
    )
    batch_size: int = Field(default=8, ge=1, description="clips per forward pass")


def kept_rows(
    warehouse: DuckDBResource, videos: list[str], backbones: list[str], scaled: pd.DataFrame
) -> pd.DataFrame | None:
    """The stored rows of these videos by other backbones whose scaled clip is unchanged."""
    stored = existing_table(
        warehouse,
        "clip_embeddings",
        "list_contains(?, video_id) and not list_contains(?, backbone)",
        [videos, backbones],
    )
    return None if stored is None else stored.merge(scaled[["clip_id", "sha256"]])


@per_video_asset(group_name="embeddings", kinds={"duckdb", "pytorch"})
def clip_embeddings(
    context: dg.AssetExecutionContext,
    config: ClipEmbedding,
    scaled_clips: pd.DataFrame,
    warehouse: DuckDBResource,
) -> pd.DataFrame:
    """One row per clip and backbone: the scaled clip's embedding (FLOAT[]) by the backbone's
    frozen trunk, with the weights and clip size it was computed with."""
    from fvc_dagster.lib.training.embeddings import clip_embedders

    embedders = clip_embedders(
        config.backbones, config.weights, config.frames, config.pixels, config.batch_size
    )
    clips_of = rows_by_video(scaled_clips, "scaled_clips")

    def embed(video_id: str) -> pd.DataFrame:
        clips = clips_of(video_id)
        return pd.concat([embedder.rows(clips) for embedder in embedders])

    tables, seconds = for_each_video(context, context.partition_keys, embed)
    videos = list(context.partition_keys)
    kept = kept_rows(warehouse, videos, config.backbones, scaled_clips)
    table = pd.concat([*tables, kept], ignore_index=True)
    clips = int(scaled_clips["video_id"].isin(videos).sum())
    add_video_metadata(
        context,
        seconds,
        row_counts(seconds, tables),
        {
            "clips": clips,
            "seconds_per_clip": round(sum(seconds.values()) / clips, 4),
            "dimensions": dg.MetadataValue.json(
                {b: len(e) for b, e in table.groupby("backbone")["embedding"].first().items()}
            ),
            "kept_rows": 0 if kept is None else len(kept),
        },
    )
    return table
