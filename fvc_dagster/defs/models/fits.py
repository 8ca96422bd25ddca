"""How each kind of model is fit on a fold, inside the fold's MLflow run: a tabular baseline on
the clip features, a video network on its clips, an embedding model on its backbone's stored
embeddings, the ensemble by nested stacking. `lib/training` does the work; a fitter prepares
what every fold shares once, then fits fold by fold and says what the asset's metadata adds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

from fvc_dagster.defs.warehouse import existing_table
from fvc_dagster.lib.clips.augment import NETWORK_AUGMENTATIONS
from fvc_dagster.lib.evaluation.metrics import NO_WEIGHTS, fold_scores
from fvc_dagster.lib.features.rows import CLIP_FEATURES, clip_features
from fvc_dagster.lib.models import ModelSpec, get_spec, models_of


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


@dataclass
class FoldFit:
    """One fold's predictions: the held-out rows (video_id, clip_id, label) and their P(fake),
    the test rows and theirs by the same model, how many clips trained it, the weights a
    network started from, what to log."""

    scored: pd.DataFrame
    probabilities: np.ndarray
    test_scored: pd.DataFrame
    test_probabilities: np.ndarray
    n_train: int
    summary: str
    weights: str = NO_WEIGHTS


class Fitter:
    """Fits one model fold by fold: `fit(fold)` runs inside the fold's MLflow run and logs to
    it; `metadata()` is what the asset adds to its scores."""

    def __init__(self, spec: ModelSpec, context: dg.AssetExecutionContext, inputs: dict):
        self.spec, self.context, self.inputs = spec, context, inputs

    def fit(self, fold: int) -> FoldFit:
        raise NotImplementedError

    def metadata(self) -> dict[str, dg.MetadataValue]:
        return {}


class TabularFitter(Fitter):
    """The row's estimator in the baseline pipeline, on the original clips' features of the
    training videos (`lib.training.tabular`)."""

    def __init__(self, spec, context, inputs):
        super().__init__(spec, context, inputs)
        self.features = clip_features(inputs["handcrafted_features"], inputs["scaled_features"])

    def fit(self, fold: int) -> FoldFit:
        from fvc_dagster.lib.training.fold_data import fold_data
        from fvc_dagster.lib.training.tabular import train_fold
        from fvc_dagster.lib.training.tracking import log_fold_run

        data = fold_data(self.inputs["training_clips"], self.features, fold, CLIP_FEATURES)
        result = train_fold(self.spec.name, data)
        log_fold_run(result, self.spec.name, str(fold), data)
        return FoldFit(
            data.validation, result.val_probabilities, data.test, result.test_probabilities,
            result.n_train,
            f"roc_auc={result.scores['roc_auc']:.3f}",
        )  # fmt: skip


class NetworkFitter(Fitter):
    """The network trained on the fold's clips, its epoch chosen on an inner fold or fixed,
    scored once (`lib.training.networks`); a fold's checkpoints resume a rerun."""

    def __init__(self, spec, context, inputs):
        from fvc_dagster.lib.training.networks import fold_clips, plan_network

        super().__init__(spec, context, inputs)
        config = NetworkTraining(**context.op_execution_context.op_config)
        folds = [int(key) for key in context.partition_keys]
        self.plans = {fold: plan_network(spec.name, fold, **config.model_dump()) for fold in folds}
        plan = self.plans[folds[0]]
        files = inputs["augmented_clips"] if plan.source == "native" else inputs["scaled_clips"]
        self.root = context.resources.storage.root
        self.clips = fold_clips(inputs["training_clips"], files, folds, plan, self.root / "flow")
        self.resumed: dict[str, int | None] = {}

    def fit(self, fold: int) -> FoldFit:
        from fvc_dagster.lib.training.networks import checkpoint_dir, score_clips, train_network
        from fvc_dagster.lib.training.tracking import (
            log_epoch,
            log_network_params,
            log_network_result,
        )

        plan, data = self.plans[fold], self.clips[fold]
        checkpoint = checkpoint_dir(self.root, plan, data)

        def on_epoch_end(epoch: int, metrics: dict[str, float]) -> None:
            log_epoch(epoch, metrics)
            self.context.log.info(
                f"{self.spec.name} fold {fold} epoch {epoch}: train_loss="
                f"{metrics['train_loss']:.4f} selection_roc_auc={metrics['val_roc_auc']:.3f}"
            )

        log_network_params(plan, str(fold), checkpoint, data)
        result, network, held_out = train_network(plan, data, checkpoint, on_epoch_end)
        scores = fold_scores(data.held_out.labels, held_out)
        log_network_result(result, network, plan, scores)
        self.resumed[str(fold)] = result.resumed_from_epoch
        return FoldFit(
            data.held_out_rows, held_out, data.test_rows, score_clips(plan, network, data.test),
            len(data.train), f"roc_auc={scores['roc_auc']:.3f}", plan.weights,
        )  # fmt: skip

    def metadata(self):
        return {"resumed_from_epoch": dg.MetadataValue.json(self.resumed)}


class EmbeddingFitter(Fitter):
    """The row's estimator on its backbone's stored clip embeddings (`clip_embeddings`)."""

    def __init__(self, spec, context, inputs):
        from fvc_dagster.lib.training.embeddings import backbone_embeddings

        super().__init__(spec, context, inputs)
        self.embeddings, self.setting = backbone_embeddings(
            inputs["clip_embeddings"], spec.backbone
        )

    def fit(self, fold: int) -> FoldFit:
        from fvc_dagster.lib.training.embeddings import embedding_fold, fit_embedding_model
        from fvc_dagster.lib.training.tracking import log_embedding_fold

        data = embedding_fold(self.inputs["training_clips"], self.embeddings, fold)
        fit = fit_embedding_model(self.spec.name, data)
        params = {"model": self.spec.name, "fold": str(fold), "backbone": self.spec.backbone}
        log_embedding_fold(fit, data, {**params, **self.setting})
        return FoldFit(
            data.validation, fit.probabilities, data.test, fit.test_probabilities, len(data.train),
            f"roc_auc={fit.scores['roc_auc']:.3f}", self.setting["weights"],
        )  # fmt: skip

    def metadata(self):
        embeddings = {"backbone": self.spec.backbone, **self.setting}
        return {"embeddings": dg.MetadataValue.json(embeddings)}


class EnsembleFitter(Fitter):
    """The stacked P(fake) of the tabular models and the embedding models trained on the
    current folds' videos, every learner and the meta-learner fit inside the fold's training
    folds (`lib.training.ensemble`)."""

    def __init__(self, spec, context, inputs):
        super().__init__(spec, context, inputs)
        features = clip_features(inputs["handcrafted_features"], inputs["scaled_features"])
        self.learners, self.left_out = ensemble_learners(
            context.resources.warehouse, features, inputs["cv_folds"]
        )
        if self.left_out:
            context.log.warning(f"left out until retrained, stale: {self.left_out}")
        self.weights: dict[str, dict[str, float]] = {}

    def fit(self, fold: int) -> FoldFit:
        from fvc_dagster.lib.training.ensemble import stack_fold
        from fvc_dagster.lib.training.tracking import log_stacking_run

        stacked = stack_fold(self.inputs["training_clips"], self.learners, fold)
        log_stacking_run(stacked)
        self.weights[str(fold)] = {m: round(w, 3) for m, w in stacked.weights.items()}
        scored, test = stacked.predictions, stacked.test_predictions
        return FoldFit(
            scored, scored["probability"].to_numpy(), test, test["probability"].to_numpy(),
            len(stacked.record["train"]),
            f"stacked {self.weights[str(fold)]}",
        )  # fmt: skip

    def metadata(self):
        weights = pd.DataFrame(self.weights).T.rename_axis("fold")
        return {
            "base_models": dg.MetadataValue.json([learner.name for learner in self.learners]),
            "stale_models_left_out": dg.MetadataValue.json(self.left_out),
            "stacked_weights": dg.MetadataValue.md(weights.to_markdown()),
        }


def ensemble_learners(
    warehouse, features: pd.DataFrame, cv_folds: pd.DataFrame
) -> tuple[list, dict[str, str]]:
    """The base learners the ensemble refits inside each fold's training folds: every tabular
    model, and each embedding model trained on the current folds' videos, on its backbone's
    embeddings; and the embedding models left out as stale, with why. A model stale only in
    labels stays: the ensemble refits it on the current labels, and a held-out fold's labels
    must not decide what stacks in that fold."""
    from fvc_dagster.lib.training.ensemble import embedding_learner, tabular_learner
    from fvc_dagster.lib.training.staleness import prediction_staleness

    learners = [tabular_learner(m, features, CLIP_FEATURES) for m in models_of("tabular")]
    trained, left_out = [], {}
    for model in models_of("embedding"):
        table = existing_table(warehouse, model)
        if table is None:
            continue
        staleness = prediction_staleness(table, cv_folds)
        if staleness.other_videos_or_folds:
            left_out[model] = staleness.reason
        else:
            trained.append(model)
    if trained:
        from fvc_dagster.lib.training.embeddings import backbone_embeddings

        stored = existing_table(warehouse, "clip_embeddings")
        for model in trained:
            embeddings, _ = backbone_embeddings(stored, get_spec(model).backbone)
            learners.append(embedding_learner(model, embeddings))
    return learners, left_out
