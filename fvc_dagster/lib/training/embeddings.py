"""Clip embeddings of frozen backbones, and the embedding models (XGBoost) fit on them per fold.

A backbone is a registry network with a `trunk` (`BACKBONES`; `lib.models.backbones`) that embeds a
scaled clip as that network would see it: T frames sampled, the content box cropped and resized
to P x P (`ClipDataset`, "clip" input), normalised with its checkpoint's mean and std, one vector
(float32) out: r3d_18 512-d, I3D R50 2048-d, r2plus1d_18 512-d, ViT-B/16 768-d per frame
averaged over the frames (`vit_gru` and `vit_transformer` share that trunk, so their embeddings
are the same and are computed once).

Inference runs in fp32: bf16 autocast was slower on this CPU (AVX-512 BF16, 2 threads, batch 8:
r3d_18 at 16 x 112 px 0.29 s a clip in fp32, 0.43 s in bf16; ViT-B/16 at 16 x 224 px 2.6 s and
3.2 s). An embedding costs its trunk's forward pass: decoding and normalising add under 2 %.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import nn

from fvc_dagster.lib.evaluation.metrics import fold_scores
from fvc_dagster.lib.models import embedding_backbones, estimator, get_spec, models_of
from fvc_dagster.lib.models.registry import build_frozen
from fvc_dagster.lib.training.clip_data import ClipDataset, make_loader, normaliser
from fvc_dagster.lib.training.fold_data import POSITIVE, TEST, TRAIN, VALIDATION, fit_record

BACKBONES = embedding_backbones()
RANDOM_SEED = 0  # random weights are drawn from this seed, so they are the same every time
# A row of `clip_embeddings`: the clip and its scaled file's checksum, how it was embedded.
CLIP_KEYS = ["video_id", "clip_id", "aug_index", "sha256"]
SETTING = ["weights", "frames", "pixels"]
EMBEDDING_COLUMNS = [*CLIP_KEYS, "backbone", *SETTING, "embedding"]


def embedding_model(backbone: str) -> str:
    """The registry row (and asset) of XGBoost on `backbone`'s embeddings."""
    models = {get_spec(model).backbone: model for model in models_of("embedding")}
    if backbone not in models:
        raise KeyError(f"unknown backbone {backbone!r}; choose from {', '.join(models)}")
    return models[backbone]


def embedding_network(
    backbone: str,
    weights: Literal["random", "pretrained"],
    weights_file: str | None = None,
) -> nn.Module:
    """The frozen pooled trunk of `backbone`: with the weights of its registry checkpoint
    (`weights_file`, or the official file in `$TORCH_HOME/hub/checkpoints`; `WeightsMissing`
    says where to put it), or random ones drawn from `RANDOM_SEED`."""
    model = embedding_model(backbone)
    with torch.random.fork_rng():
        torch.manual_seed(RANDOM_SEED)
        return build_frozen(model, weights, weights_file)


@dataclass
class ClipEmbedder:
    """A frozen embedding network at one clip size, and the backbones it stands for (several
    when they share a trunk)."""

    backbones: tuple[str, ...]
    weights: str
    frames: int
    pixels: int
    batch_size: int
    network: nn.Module

    def embed(self, clips: pd.DataFrame) -> np.ndarray:
        """float32 (N, D) embeddings of clip rows (`path` of a scaled clip, its content box
        columns), in row order, `batch_size` clips a forward pass: the same rows give the same
        bits (a clip batched with other clips may differ in the last bits, about 1e-6)."""
        unlabelled = clips.assign(label=0.0)  # a dataset row's label, unused here
        dataset = ClipDataset.for_input(
            unlabelled, "clip", self.frames, self.pixels, cache_clips=False
        )
        prepare = normaliser(get_spec(self.backbones[0]).normalisation)
        with torch.inference_mode():
            batches = [
                self.network(prepare(batch)["clip"])
                for batch in make_loader(dataset, self.batch_size)
            ]
        return torch.cat(batches).float().numpy()

    def rows(self, clips: pd.DataFrame) -> pd.DataFrame:
        """`EMBEDDING_COLUMNS` rows of scaled clip rows (`video_id`, `clip_id`, `aug_index`,
        `sha256`, `path` and content box): one per clip and backbone."""
        embedded = (
            clips[CLIP_KEYS]
            .reset_index(drop=True)
            .assign(
                weights=self.weights,
                frames=self.frames,
                pixels=self.pixels,
                embedding=list(self.embed(clips)),
            )
        )
        return pd.concat([embedded.assign(backbone=b) for b in self.backbones])[EMBEDDING_COLUMNS]


def clip_embedders(
    backbones: Sequence[str],
    weights: Literal["random", "pretrained"],
    frames: int | None = None,
    pixels: int | None = None,
    batch_size: int = 8,
) -> list[ClipEmbedder]:
    """One embedder per distinct trunk and clip size of `backbones`; None: a backbone's
    registered frames or pixels."""
    groups: dict[tuple[str, int, int], list[str]] = {}
    for backbone in dict.fromkeys(backbones):
        spec = get_spec(embedding_model(backbone))
        size = (get_spec(backbone).trunk.arch, frames or spec.frames, pixels or spec.pixels)
        groups.setdefault(size, []).append(backbone)
    return [
        ClipEmbedder(tuple(group), weights, t, p, batch_size, embedding_network(group[0], weights))
        for (_, t, p), group in groups.items()
    ]


def backbone_embeddings(
    table: pd.DataFrame, backbone: str
) -> tuple[pd.DataFrame, dict[str, str | int]]:
    """The rows of `backbone` in a `clip_embeddings` table, and their setting (weights, frames,
    pixels), which must be one."""
    rows = table[table["backbone"] == backbone]
    if rows.empty:
        raise ValueError(
            f"clip_embeddings has no rows for backbone {backbone!r}: materialize clip_embeddings "
            f"with {backbone!r} in its backbones first"
        )
    settings = rows[SETTING].drop_duplicates()
    if len(settings) > 1:
        raise ValueError(
            f"clip_embeddings holds {backbone!r} rows of {len(settings)} settings "
            f"({settings.to_dict('records')}): materialize clip_embeddings for every video with "
            "one setting"
        )
    weights, frames, pixels = settings.iloc[0]
    setting = {"weights": str(weights), "frames": int(frames), "pixels": int(pixels)}
    return rows.reset_index(drop=True), setting


@dataclass
class EmbeddingFold:
    """A fold's training clips (original and augmented) and validation clips (held-out
    originals): their `training_clips` rows with `embedding`."""

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame = field(default_factory=pd.DataFrame)  # the test videos' clips

    @staticmethod
    def xy(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        return np.stack(rows["embedding"].to_numpy()), (rows["label"] == POSITIVE).to_numpy(int)


def embedding_fold(
    training_clips: pd.DataFrame, embeddings: pd.DataFrame, fold: int
) -> EmbeddingFold:
    """The clips of `fold` in `training_clips` with their embeddings (one backbone's rows)."""
    rows = training_clips[training_clips["fold"] == fold].merge(
        embeddings[["clip_id", "embedding"]], on="clip_id", how="left", validate="many_to_one"
    )
    missing = rows.loc[rows["embedding"].isna(), "clip_id"].unique()
    if len(missing):
        raise ValueError(
            f"{len(missing)} clips of fold {fold} have no embedding (e.g. "
            f"{', '.join(missing[:5])}): materialize clip_embeddings for their videos"
        )
    train = rows[rows["role"] == TRAIN].reset_index(drop=True)
    validation = rows[rows["role"] == VALIDATION].reset_index(drop=True)
    test = rows[rows["role"] == TEST].reset_index(drop=True)
    overlap = set(train["video_id"]) & set(validation["video_id"])
    if overlap:
        raise ValueError(f"held-out videos in the training set: {sorted(overlap)[:5]}")
    return EmbeddingFold(train, validation, test)


@dataclass
class EmbeddingFit:
    classifier: Any  # the fitted estimator of the embedding row
    probabilities: np.ndarray  # P(fake) of each validation clip, in row order
    test_probabilities: np.ndarray  # P(fake) of each test clip, in row order
    scores: dict[str, float]
    record: dict[str, list[str]]  # the videos it was fit on and scored (`fit_record`)


def fit_embedding_model(model: str, fold: EmbeddingFold, seed: int = 0) -> EmbeddingFit:
    """The embedding row `model`'s estimator fit on the embeddings of the fold's training clips
    only, scored on its validation clips and its test clips (their labels unread)."""
    x_train, y_train = fold.xy(fold.train)
    if len(np.unique(y_train)) < 2:
        raise ValueError("the training folds hold a single class")
    x_val, y_val = fold.xy(fold.validation)
    classifier = estimator(model, seed).fit(x_train, y_train)
    probabilities = classifier.predict_proba(x_val)[:, 1]
    test = classifier.predict_proba(fold.xy(fold.test)[0])[:, 1] if len(fold.test) else np.empty(0)
    record = fit_record(train=fold.train["video_id"], scored=fold.validation["video_id"])
    scores = fold_scores(y_val, probabilities)
    return EmbeddingFit(classifier, probabilities, test, scores, record)
