"""Jobs: the per-video pipeline the sensors launch, baseline training over all folds, video
networks on request, the champion and its scores."""

import dagster as dg

from fvc_dagster.lib.models import models_of

PER_VIDEO_GROUPS = ("ingest", "clips", "features")
# What a newly trained network changes: the stacking, the predictions, metrics, comparison
# and generalisation table.
NETWORK_DOWNSTREAM = (
    *models_of("ensemble"),
    "fold_predictions",
    "fold_metrics",
    "model_comparison",
    "generalisation",
)

video_pipeline_job = dg.define_asset_job(
    "video_pipeline",
    selection=dg.AssetSelection.groups(*PER_VIDEO_GROUPS),
    description="Every per-video asset for a batch of videos, in one run.",
)

training_job = dg.define_asset_job(
    "training",
    selection=dg.AssetSelection.groups("folds", "models", "evaluation"),
    description="Folds, baseline models on a range of folds (all of them in one run by default), "
    "their metrics and the comparison.",
)

networks_job = dg.define_asset_job(
    "networks",
    selection=dg.AssetSelection.groups("networks")
    | dg.AssetSelection.assets(*models_of("embedding"), *NETWORK_DOWNSTREAM),
    description="Video networks and XGBoost models on clip embeddings on a range of folds (pick "
    "them with an asset selection; each network's hyperparameters in its config), then the "
    "ensemble, metrics and comparison.",
)

embeddings_job = dg.define_asset_job(
    "embeddings",
    selection=dg.AssetSelection.assets("clip_embeddings"),
    description="Frozen-backbone embeddings of a batch of videos' clips (backbones in its config).",
)

champion_job = dg.define_asset_job(
    "champion",
    selection=dg.AssetSelection.assets("champion_model"),
    description="Pick the best model of the comparison, refit it on every labelled video and "
    "register it as fvc-detector@champion (nothing new when nothing changed).",
)

scoring_job = dg.define_asset_job(
    "scoring",
    selection=dg.AssetSelection.assets("video_scores"),
    description="The champion's score for a batch of videos.",
)
