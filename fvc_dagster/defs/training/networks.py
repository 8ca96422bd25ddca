"""One fold-partitioned asset per video network of the registry, materialized on request only."""

from typing import Literal

import dagster as dg
import pandas as pd
from pydantic import Field

from fvc_dagster.defs.batching import per_fold_asset
from fvc_dagster.defs.partitions import ALL_VIDEOS
from fvc_dagster.defs.resources import FvcStorage, MlflowTracking
from fvc_dagster.lib.clips.augment import NETWORK_AUGMENTATIONS
from fvc_dagster.lib.evaluation.metrics import fold_scores, prediction_rows, scores_markdown
from fvc_dagster.lib.models import list_models

NETWORKS = list_models(networks_only=True)


class NetworkTraining(dg.Config):
    """Hyperparameters of a network's fold runs; empty fields take the registry row's values."""

    epochs: int | None = Field(default=None, ge=1)
    batch_size: int | None = Field(default=None, ge=1)
    lr: float | None = Field(default=None, gt=0)
    frames: int | None = Field(default=None, ge=1, description="frames per clip (T)")
    pixels: int | None = Field(default=None, ge=8, description="frame side (P x P)")
    device: str = Field(default="", description='"cpu", "cuda" or empty: CUDA when present')
    weights: Literal["random", "pretrained"] = Field(
        default="pretrained",
        description="pretrained: the registry checkpoint from $TORCH_HOME/hub/checkpoints/ "
        "(or weights_file); random: trained from scratch",
    )
    weights_file: str | None = Field(default=None, description="pretrained weights to read")
    grad_accumulation: int = Field(default=1, ge=1)
    patience: int | None = Field(
        default=None, ge=1, description="epochs without a better selection-fold ROC-AUC before "
        "stopping; empty: the trainer's default (5)"
    )  # fmt: skip
    epoch_choice: Literal["inner_fold", "fixed"] = Field(
        default="inner_fold",
        description="inner_fold: fold k trains on the folds but k and the next one, and the next "
        "one chooses its epoch and stops it early; fixed: it trains on every other fold for "
        "`epochs` and keeps the last. Fold k itself is scored once, after training, either way.",
    )
    source: Literal["native", "scaled"] = Field(
        default="native",
        description="native: `pixels`-pixel windows of the lossless clips on their own 8x8 grid, "
        "never resampled (the centre one selects and scores); scaled: the 256-pixel "
        "letterboxed clips resized to `pixels`",
    )
    train_windows: Literal["centre", "random"] = Field(
        default="centre",
        description="native source: the window that trains, the clip's centre one (as scored) "
        "or one drawn anew on every read (one that misses a manipulated region labels "
        "untouched pixels fake)",
    )
    augmentations: list[str] = Field(
        default=list(NETWORK_AUGMENTATIONS),
        description="augmented clips that train the network besides the originals (names of "
        "the augmentations); none by default (measured); rotation, blur, affine, elastic and "
        "combined resample or filter every pixel",
    )


def network_asset_name(model: str) -> str:
    return f"network_{model}"


def build_network_asset(model: str) -> dg.AssetsDefinition:
    """A fold-partitioned asset that trains `model` on a fold's clips and records its
    evaluation row; a fold's checkpoints make a rerun resume where the last one stopped."""

    @per_fold_asset(
        name=network_asset_name(model),
        group_name="networks",
        kinds={"duckdb", "mlflow", "pytorch"},
        ins={
            "training_clips": dg.AssetIn(),
            "augmented_clips": ALL_VIDEOS,
            "scaled_clips": ALL_VIDEOS,
        },
    )
    def _network(
        context: dg.AssetExecutionContext,
        config: NetworkTraining,
        training_clips: pd.DataFrame,
        augmented_clips: pd.DataFrame,
        scaled_clips: pd.DataFrame,
        storage: FvcStorage,
        mlflow: MlflowTracking,
    ) -> pd.DataFrame:
        from fvc_dagster.lib.training.networks import (
            checkpoint_dir,
            fold_clips,
            plan_network,
            train_network,
        )
        from fvc_dagster.lib.training.tracking import (
            log_epoch,
            log_fold_figure,
            log_network_params,
            log_network_result,
        )

        folds = [int(key) for key in context.partition_keys]
        plans = {fold: plan_network(model, fold, **config.model_dump()) for fold in folds}
        plan = plans[folds[0]]
        clip_files = augmented_clips if plan.source == "native" else scaled_clips
        clips = fold_clips(training_clips, clip_files, folds, plan, storage.root / "flow")
        rows, resumed = [], {}
        for fold_key in context.partition_keys:
            plan, data = plans[int(fold_key)], clips[int(fold_key)]
            checkpoint = checkpoint_dir(storage.root, plan, data)

            def on_epoch_end(epoch: int, metrics: dict[str, float], fold_key=fold_key) -> None:
                log_epoch(epoch, metrics)
                context.log.info(
                    f"{model} fold {fold_key} epoch {epoch}: train_loss="
                    f"{metrics['train_loss']:.4f} selection_roc_auc={metrics['val_roc_auc']:.3f}"
                )

            with mlflow.start_run(
                run_name=f"{model}-fold{fold_key}",
                tags={"dagster_run_id": context.run_id, "model": model, "fold": fold_key},
                experiment=mlflow.network_experiment,
            ) as run:
                log_network_params(plan, fold_key, checkpoint, data)
                result, network, held_out = train_network(plan, data, checkpoint, on_epoch_end)
                scores = fold_scores(data.held_out.labels, held_out)
                log_network_result(result, network, scores)
                rows.append(
                    prediction_rows(
                        model, fold_key, data.held_out_rows, held_out, len(data.train),
                        run.info.run_id, plan.weights,
                    )
                )  # fmt: skip
                log_fold_figure(rows[-1])
            resumed[fold_key] = result.resumed_from_epoch
        table = pd.concat(rows, ignore_index=True)
        context.add_output_metadata(
            {
                "scores": dg.MetadataValue.md(scores_markdown(table)),
                "resumed_from_epoch": dg.MetadataValue.json(resumed),
            }
        )
        return table

    _network.__doc__ = (
        f"One row per validation clip of each fold: the held-out P(fake) of the {model} network "
        "trained on the fold's training clips (the originals and the augmentations configured; "
        "native windows by default), its epoch chosen on an inner fold or fixed, scored once."
    )
    return _network


network_assets = [build_network_asset(model) for model in NETWORKS]
