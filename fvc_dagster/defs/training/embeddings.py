"""Clip embeddings of frozen backbones (on request), and one fold-partitioned XGBoost asset per
"embedding" row of the registry, fit on its backbone's stored embeddings."""

from typing import Literal

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource
from pydantic import Field

from fvc_dagster.defs.batching import (
    add_video_metadata,
    for_each_video,
    per_fold_asset,
    per_video_asset,
    row_counts,
    rows_by_video,
)
from fvc_dagster.defs.partitions import ALL_VIDEOS
from fvc_dagster.defs.resources import MlflowTracking
from fvc_dagster.defs.warehouse import existing_table
from fvc_dagster.lib.evaluation.metrics import prediction_rows, scores_markdown
from fvc_dagster.lib.models import REGISTRY
from fvc_dagster.lib.models.registry import EMBEDDING_BACKBONES

EMBEDDING_MODELS = [name for name, spec in REGISTRY.items() if spec.family == "embedding"]


def embedding_asset_name(model: str) -> str:
    """The asset of an XGBoost model on embeddings is named as the model."""
    return model


class ClipEmbedding(dg.Config):
    """Which backbones embed the clips, from which weights, at which clip size."""

    backbones: list[str] = Field(
        default_factory=lambda: list(EMBEDDING_BACKBONES),
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


def build_embedding_model_asset(model: str) -> dg.AssetsDefinition:
    """A fold-partitioned asset that fits XGBoost on each fold's training clips' embeddings by
    `model`'s backbone and scores the fold's validation clips."""
    backbone = REGISTRY[model].options["backbone"]

    @per_fold_asset(
        name=embedding_asset_name(model),
        group_name="embeddings",
        kinds={"duckdb", "mlflow", "xgboost"},
        ins={"training_clips": dg.AssetIn(), "clip_embeddings": ALL_VIDEOS},
    )
    def _model(
        context: dg.AssetExecutionContext,
        training_clips: pd.DataFrame,
        clip_embeddings: pd.DataFrame,
        mlflow: MlflowTracking,
    ) -> pd.DataFrame:
        from fvc_dagster.lib.training.embeddings import (
            backbone_embeddings,
            embedding_fold,
            fit_xgboost,
        )
        from fvc_dagster.lib.training.tracking import log_embedding_fold, log_fold_figure

        embeddings, setting = backbone_embeddings(clip_embeddings, backbone)
        rows = []
        for fold_key in context.partition_keys:
            fold = embedding_fold(training_clips, embeddings, int(fold_key))
            with mlflow.start_run(
                run_name=f"{model}-fold{fold_key}",
                tags={"dagster_run_id": context.run_id, "model": model, "fold": fold_key},
                experiment=mlflow.embedding_experiment,
            ) as run:
                fit = fit_xgboost(fold)
                params = {"model": model, "fold": fold_key, "backbone": backbone, **setting}
                log_embedding_fold(fit, fold, params)
                rows.append(
                    prediction_rows(
                        model, fold_key, fold.validation, fit.probabilities, len(fold.train),
                        run.info.run_id, setting["weights"],
                    )
                )  # fmt: skip
                log_fold_figure(rows[-1])
            context.log.info(f"{model} fold {fold_key}: roc_auc={fit.scores['roc_auc']:.3f}")
        table = pd.concat(rows, ignore_index=True)
        context.add_output_metadata(
            {
                "scores": dg.MetadataValue.md(scores_markdown(table)),
                "embeddings": dg.MetadataValue.json({"backbone": backbone, **setting}),
            }
        )
        return table

    _model.__doc__ = (
        f"One row per validation clip of each fold: the held-out P(fake) of XGBoost fit on the "
        f"fold's training clips' {backbone} embeddings (clip_embeddings)."
    )
    return _model


embedding_model_assets = [build_embedding_model_asset(model) for model in EMBEDDING_MODELS]
