"""A video network trained on CV folds: its settings, the folds' clip data, and the checkpoint
directory that a rerun with the same settings and clips resumes from.

Held-out blind: fold k's network never sees fold k's labels. With `epoch_choice="inner_fold"`
(the default) it trains on the clips of all folds but k and `selection_fold(k)`, chooses its
epoch (and stops early) on the original clips of `selection_fold(k)`, and then scores fold k's
original clips once; with `"fixed"` it trains on every other fold for `epochs` and keeps the
last epoch.

What a network sees (`NetworkPlan.source`): ``"native"`` (the default) reads P-pixel windows
of the lossless clips of `augmented_clips` on their own 8x8 grid, never resampled (the centre
one to choose the epoch and to score; to train, the centre one too or, with
`train_windows="random"`, one drawn anew on every read), so the forensic traces a few native
pixels wide reach it; ``"scaled"`` reads the 256-pixel letterboxed clips of `scaled_clips`
resized to P. It trains on the original clips and the augmentations named in
`NetworkPlan.augmentations` (by default `augment.NETWORK_AUGMENTATIONS`, those that resample
or smooth no pixel, chosen by measurement in bench/results/network_input.md).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from torch import nn
from torch.utils.data import Dataset

from fvc_dagster.lib.clips.augment import NETWORK_AUGMENTATIONS
from fvc_dagster.lib.clips.video_clips import ORIGINAL
from fvc_dagster.lib.models import build_model, get_spec
from fvc_dagster.lib.training.clip_data import (
    INPUT_KEYS,
    ClipDataset,
    Crops,
    Source,
    model_options,
    network_aug_indices,
    normaliser,
)
from fvc_dagster.lib.training.fold_data import (
    TEST,
    TRAIN,
    VALIDATION,
    fit_record,
    own_folds,
    selection_fold,
)
from fvc_dagster.lib.training.trainer import TrainConfig, TrainResult, fit, predict, seed_everything

EpochChoice = Literal["inner_fold", "fixed"]

# What a network reads of each clip, by source: its file and checksum (and for a scaled clip
# its content box in the canvas), and the asset that holds them.
CLIP_FILE_COLUMNS: dict[str, list[str]] = {
    "native": ["clip_id", "path", "sha256"],
    "scaled": ["clip_id", "path", "sha256", "content_x", "content_y", "scaled_width",
               "scaled_height"],
}  # fmt: skip
CLIP_FILE_ASSETS = {"native": "augmented_clips", "scaled": "scaled_clips"}


@dataclass(frozen=True)
class NetworkPlan:
    """How `model` trains on one fold: its weights, clip size, how its epoch is chosen, what it
    sees (source and augmentations) and its trainer config."""

    model: str
    weights: Literal["random", "pretrained"]
    weights_file: str | None
    frames: int
    pixels: int
    epoch_choice: EpochChoice
    source: Source
    train_windows: Crops
    augmentations: tuple[str, ...]
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
    epoch_choice: EpochChoice = "inner_fold",
    source: Source = "native",
    train_windows: Crops = "centre",
    augmentations: Iterable[str] = NETWORK_AUGMENTATIONS,
) -> NetworkPlan:
    """The plan of `model` on `fold` (seeded by the fold); None takes the registry row's value
    (the trainer's for `patience`), an empty `device` CUDA when present. With a `"fixed"`
    epoch choice nothing stops early."""
    spec = get_spec(model)
    if spec.input not in INPUT_KEYS:
        raise ValueError(f"{model!r} is not a video network")
    if epoch_choice not in ("inner_fold", "fixed"):
        raise ValueError(f"epoch_choice must be 'inner_fold' or 'fixed', got {epoch_choice!r}")
    if source not in CLIP_FILE_ASSETS:
        raise ValueError(f"source must be 'native' or 'scaled', got {source!r}")
    if train_windows not in ("centre", "random"):
        raise ValueError(f"train_windows must be 'centre' or 'random', got {train_windows!r}")
    augmentations = tuple(sorted(set(augmentations)))
    network_aug_indices(augmentations)  # names them all or raises
    given = dict(epochs=epochs, batch_size=batch_size, lr=lr)
    if epoch_choice == "fixed":
        given["patience"] = None
    elif patience is not None:
        given["patience"] = patience
    train = TrainConfig.from_recipe(
        spec.recipe,
        input_keys=INPUT_KEYS[spec.input],
        device=device or default_device(),
        seed=fold,
        grad_accumulation=grad_accumulation,
        **{k: v for k, v in given.items() if v is not None or k == "patience"},
    )
    return NetworkPlan(
        model, weights, weights_file, frames or spec.frames, pixels or spec.pixels,
        epoch_choice, source, train_windows, augmentations, train,
    )  # fmt: skip


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
    """A fold's clips, as rows (training_clips joined to their files) and datasets: those it
    trains on (the originals and the plan's augmentations), those that choose its epoch (the
    original clips of its selection fold; none with a fixed epoch count) and the held-out
    originals it is scored on."""

    fold: int
    train_rows: pd.DataFrame
    selection_rows: pd.DataFrame
    held_out_rows: pd.DataFrame
    train: ClipSubset
    selection: ClipSubset | None
    held_out: ClipSubset
    test_rows: pd.DataFrame  # the test videos' original clips, scored like the held-out ones
    test: ClipSubset

    @property
    def record(self) -> dict[str, list[str]]:
        """The videos the fold's network is fit on, selected on and scores (`fit_record`)."""
        return fit_record(
            train=self.train_rows["video_id"],
            selection=self.selection_rows["video_id"],
            scored=self.held_out_rows["video_id"],
        )


def fold_clips(
    training_clips: pd.DataFrame,
    clip_files: pd.DataFrame,
    folds: Iterable[int],
    plan: NetworkPlan,
    flow_cache_dir: Path,
) -> dict[int, FoldClips]:
    """Each fold's clips for `plan`'s network (see the module docstring), their files from
    `clip_files` (the rows of `CLIP_FILE_ASSETS[plan.source]`); the folds share one dataset, so
    a clip is decoded once for all of them. A training video's own fold is the fold whose
    validation rows hold it."""
    folds = list(folds)
    rows = training_clips[training_clips["fold"].isin(folds)].merge(
        clip_files[CLIP_FILE_COLUMNS[plan.source]], on="clip_id", how="left",
        validate="many_to_one",
    )  # fmt: skip
    missing = rows.loc[rows["path"].isna(), "clip_id"].unique()
    if len(missing):
        asset = CLIP_FILE_ASSETS[plan.source]
        raise ValueError(
            f"{len(missing)} training clips have no file in {asset} (e.g. "
            f"{', '.join(missing[:5])}): materialize {asset} for their videos"
        )
    clips = rows.drop_duplicates("clip_id").reset_index(drop=True)
    index_of = pd.Series(clips.index, index=clips["clip_id"])
    spec = get_spec(plan.model)
    scoring = ClipDataset.for_input(
        clips, spec.input, plan.frames, plan.pixels, source=plan.source,
        flow_cache_dir=flow_cache_dir,
    )  # fmt: skip
    training = scoring.with_crops(plan.train_windows) if plan.source == "native" else scoring

    def subset(part: pd.DataFrame, dataset: ClipDataset) -> tuple[pd.DataFrame, ClipSubset]:
        part = part.reset_index(drop=True)
        return part, ClipSubset(dataset, index_of[part["clip_id"]])

    all_folds = sorted(training_clips["fold"].unique())
    own_fold = own_folds(training_clips)
    trains_on = network_aug_indices(plan.augmentations)
    out = {}
    for fold in folds:
        train = rows[(rows["fold"] == fold) & (rows["role"] == TRAIN)]
        held_out = rows[(rows["fold"] == fold) & (rows["role"] == VALIDATION)]
        test = rows[(rows["fold"] == fold) & (rows["role"] == TEST)]
        selects = pd.Series(False, index=train.index)
        if plan.epoch_choice == "inner_fold":
            selects = train["video_id"].map(own_fold) == selection_fold(fold, all_folds)
        train_rows, train_set = subset(train[~selects & train["aug_index"].isin(trains_on)],
                                       training)  # fmt: skip
        held_out_rows, held_out_set = subset(held_out, scoring)
        test_rows, test_set = subset(test, scoring)
        selection_rows, selection_set = subset(
            train[selects & (train["aug_index"] == ORIGINAL)], scoring
        )
        if plan.epoch_choice == "fixed":
            selection_set = None
        out[fold] = FoldClips(fold, train_rows, selection_rows, held_out_rows, train_set,
                              selection_set, held_out_set, test_rows, test_set)  # fmt: skip
    return out


def checkpoint_dir(root: Path, plan: NetworkPlan, clips: FoldClips) -> Path:
    """`<root>/checkpoints/<model>/fold<k>/<digest>`: the digest covers the plan (the device
    aside) and the checksum and label of every clip it trains on or chooses its epoch on, so
    other settings or data start afresh (the held-out clips take no part in training)."""
    train = {k: v for k, v in dataclasses.asdict(plan.train).items() if k != "device"}
    key = {
        **dataclasses.asdict(plan),
        "train": train,
        "clips": [
            rows[["clip_id", "sha256", "label"]].values.tolist()
            for rows in (clips.train_rows, clips.selection_rows)
        ],
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return root / "checkpoints" / plan.model / f"fold{clips.fold}" / digest


def train_network(
    plan: NetworkPlan,
    clips: FoldClips,
    checkpoint: Path,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
) -> tuple[TrainResult, nn.Module, np.ndarray]:
    """Build the network (initial weights seeded by the fold), fit it, resuming from
    `checkpoint` when a run there was cut short, then score the held-out clips once: the
    result, the kept epoch's model and its P(fake) of each held-out clip (in row order)."""
    spec = get_spec(plan.model)
    seed_everything(plan.train.seed)
    model = build_model(
        plan.model,
        weights=plan.weights,
        weights_file=plan.weights_file,
        **model_options(spec.input, plan.pixels),
    )
    prepare = normaliser(spec.normalisation)
    result = fit(
        model,
        clips.train,
        clips.selection,
        plan.train,
        checkpoint,
        prepare=prepare,
        on_epoch_end=on_epoch_end,
    )
    return result, model, score_clips(plan, model, clips.held_out)


def score_clips(plan: NetworkPlan, model: nn.Module, clips: ClipSubset) -> np.ndarray:
    """P(fake) of each clip of `clips` (in order) by `plan`'s trained network `model`: how
    held-out clips and test clips are scored."""
    if not len(clips):
        return np.empty(0)
    prepare = normaliser(get_spec(plan.model).normalisation)
    return predict(model, clips, plan.train, prepare=prepare)
