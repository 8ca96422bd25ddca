"""A video network trained on CV folds: its settings, the folds' clip data, and the checkpoint
directory that a rerun with the same settings and clips resumes from."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd
from torch import nn
from torch.utils.data import Dataset

from fvc_dagster.lib.clip_data import (
    INPUT_KEYS,
    ClipDataset,
    model_options,
    normaliser,
)
from fvc_dagster.lib.models import build_model, get_spec
from fvc_dagster.lib.trainer import TrainConfig, TrainResult, fit, seed_everything
from fvc_dagster.lib.training import TRAIN, VALIDATION

# What a network reads of each scaled clip: its file, checksum and content box in the canvas.
SCALED_CLIP_COLUMNS = [
    "clip_id",
    "path",
    "sha256",
    "content_x",
    "content_y",
    "scaled_width",
    "scaled_height",
]


@dataclass(frozen=True)
class NetworkPlan:
    """How `model` trains on one fold: its weights, clip size and trainer config."""

    model: str
    weights: Literal["random", "pretrained"]
    weights_file: str | None
    frames: int
    pixels: int
    train: TrainConfig


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def plan_network(
    model: str,
    fold: int,
    *,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    frames: int | None = None,
    pixels: int | None = None,
    device: str | None = None,
    weights: Literal["random", "pretrained"] = "pretrained",
    weights_file: str | None = None,
    grad_accumulation: int = 1,
    patience: int | None = None,
) -> NetworkPlan:
    """The plan of `model` on `fold` (seeded by the fold); None takes the registry row's value
    (the trainer's for `patience`), an empty `device` CUDA when present."""
    spec = get_spec(model)
    if spec.input not in INPUT_KEYS:
        raise ValueError(f"{model!r} is not a video network")
    given = dict(epochs=epochs, batch_size=batch_size, lr=lr, patience=patience)
    train = TrainConfig.from_recipe(
        spec.recipe,
        input_keys=INPUT_KEYS[spec.input],
        device=device or default_device(),
        seed=fold,
        grad_accumulation=grad_accumulation,
        **{k: v for k, v in given.items() if v is not None},
    )
    return NetworkPlan(
        model, weights, weights_file, frames or spec.frames, pixels or spec.pixels, train
    )


class ClipSubset(Dataset):
    """Some items of a `ClipDataset` (sharing its cache of decoded clips), with their labels."""

    def __init__(self, clips: ClipDataset, indices: Iterable[int]):
        self.clips, self.indices = clips, list(indices)
        self.labels = clips.labels[self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        return self.clips[self.indices[index]]


@dataclass
class FoldClips:
    """A fold's training clips (original and augmented) and validation clips (held-out
    originals): their rows (training_clips joined to their scaled files) and datasets."""

    fold: int
    train_rows: pd.DataFrame
    validation_rows: pd.DataFrame
    train: ClipSubset
    validation: ClipSubset


def fold_clips(
    training_clips: pd.DataFrame,
    scaled_clips: pd.DataFrame,
    folds: Iterable[int],
    plan: NetworkPlan,
    flow_cache_dir: Path,
) -> dict[int, FoldClips]:
    """Each fold's clips for `plan`'s network; the folds share one dataset, so a clip is decoded
    once for all of them."""
    folds = list(folds)
    rows = training_clips[training_clips["fold"].isin(folds)].merge(
        scaled_clips[SCALED_CLIP_COLUMNS], on="clip_id", how="left", validate="many_to_one"
    )
    missing = rows.loc[rows["path"].isna(), "clip_id"].unique()
    if len(missing):
        raise ValueError(
            f"{len(missing)} training clips have no scaled clip (e.g. {', '.join(missing[:5])}):"
            " materialize scaled_clips for their videos"
        )
    clips = rows.drop_duplicates("clip_id").reset_index(drop=True)
    index_of = pd.Series(clips.index, index=clips["clip_id"])
    spec = get_spec(plan.model)
    dataset = ClipDataset.for_input(
        clips, spec.input, plan.frames, plan.pixels, flow_cache_dir=flow_cache_dir
    )

    def subset(fold: int, role: str) -> tuple[pd.DataFrame, ClipSubset]:
        part = rows[(rows["fold"] == fold) & (rows["role"] == role)].reset_index(drop=True)
        return part, ClipSubset(dataset, index_of[part["clip_id"]])

    out = {}
    for fold in folds:
        (train_rows, train), (validation_rows, validation) = (
            subset(fold, TRAIN),
            subset(fold, VALIDATION),
        )
        out[fold] = FoldClips(fold, train_rows, validation_rows, train, validation)
    return out


def checkpoint_dir(root: Path, plan: NetworkPlan, clips: FoldClips) -> Path:
    """`<root>/checkpoints/<model>/fold<k>/<digest>`: the digest covers the plan (the device
    aside) and every clip's checksum and label, so other settings or data start afresh."""
    train = {k: v for k, v in dataclasses.asdict(plan.train).items() if k != "device"}
    key = {
        **dataclasses.asdict(plan),
        "train": train,
        "clips": [
            rows[["clip_id", "sha256", "label"]].values.tolist()
            for rows in (clips.train_rows, clips.validation_rows)
        ],
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return root / "checkpoints" / plan.model / f"fold{clips.fold}" / digest


def train_network(
    plan: NetworkPlan,
    clips: FoldClips,
    checkpoint: Path,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
) -> tuple[TrainResult, nn.Module]:
    """Build the network (initial weights seeded by the fold) and fit it, resuming from
    `checkpoint` when a run there was cut short; the result and the best epoch's model."""
    spec = get_spec(plan.model)
    seed_everything(plan.train.seed)
    model = build_model(
        plan.model,
        weights=plan.weights,
        weights_file=plan.weights_file,
        **model_options(spec.input, plan.pixels),
    )
    result = fit(
        model,
        clips.train,
        clips.validation,
        plan.train,
        checkpoint,
        prepare=normaliser(spec.family),
        on_epoch_end=on_epoch_end,
    )
    return result, model
