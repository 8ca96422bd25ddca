"""Which clips train and validate each fold, and baseline training on their features.

A fold validates on the original clips of its held-out videos only; it trains on every clip
(original and augmented, with their scaled versions' features) of the other folds' videos.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from fvc_dagster.lib.clips import ORIGINAL
from fvc_dagster.lib.metrics import fold_scores
from fvc_dagster.lib.models import baseline_pipeline, kept_features

POSITIVE = "fake"
TRAIN, VALIDATION = "train", "validation"


def assign_clips(clips: pd.DataFrame, folds: pd.DataFrame, n_folds: int) -> pd.DataFrame:
    """Rows `fold, role, clip_id, video_id, aug_index, label` for every fold.

    `clips` has `video_id, clip_id, aug_index`; `folds` has `video_id, fold, label`. Videos without
    a fold (unlabelled) are in no fold's rows.
    """
    labelled = clips[["video_id", "clip_id", "aug_index"]].merge(
        folds[["video_id", "fold", "label"]].rename(columns={"fold": "video_fold"}), on="video_id"
    )
    parts = []
    for fold in range(n_folds):
        held_out = labelled["video_fold"] == fold
        parts.append(labelled[~held_out].assign(fold=fold, role=TRAIN))
        original = labelled["aug_index"] == ORIGINAL
        parts.append(labelled[held_out & original].assign(fold=fold, role=VALIDATION))
    columns = ["fold", "role", "clip_id", "video_id", "aug_index", "label"]
    return pd.concat(parts, ignore_index=True)[columns].sort_values(["fold", "role", "clip_id"])


def leaked_training_clips(
    assignments: pd.DataFrame, folds: pd.DataFrame, clip_videos: pd.DataFrame
) -> pd.DataFrame:
    """Training rows whose clip belongs to a video held out by that fold.

    The clip's video comes from `clip_videos` (`clip_id, video_id`: every original, augmented and
    scaled clip and its source video), not from the row itself, so a mislabelled row is caught.
    """
    owners = (
        clip_videos[["clip_id", "video_id"]]
        .drop_duplicates()
        .rename(columns={"video_id": "source_video"})
    )
    held_out = folds[["video_id", "fold"]].rename(columns={"video_id": "source_video"})
    training = assignments[assignments["role"] == TRAIN].merge(owners, on="clip_id", how="left")
    training["source_video"] = training["source_video"].fillna(training["video_id"])
    return training.merge(held_out, on=["source_video", "fold"])


@dataclass
class FoldData:
    train: pd.DataFrame  # feature rows of the training clips, with `label`
    validation: pd.DataFrame  # feature rows of the held-out original clips
    feature_names: list[str]

    def xy(self, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        return rows[self.feature_names].to_numpy(float), (rows["label"] == POSITIVE).to_numpy(int)


def fold_data(
    assignments: pd.DataFrame, features: pd.DataFrame, fold: int, feature_names
) -> FoldData:
    """The training and validation feature rows of one fold (features joined per clip)."""
    rows = assignments[assignments["fold"] == fold].merge(
        features.drop(columns=["video_id", "aug_index"], errors="ignore"), on="clip_id"
    )
    return FoldData(
        train=rows[rows["role"] == TRAIN].reset_index(drop=True),
        validation=rows[rows["role"] == VALIDATION].reset_index(drop=True),
        feature_names=list(feature_names),
    )


@dataclass
class FoldResult:
    pipeline: Pipeline
    scores: dict[str, float]
    kept_features: list[str]
    n_train: int
    n_validation: int


def train_fold(model: str, data: FoldData, seed: int = 0) -> FoldResult:
    """Fit a baseline on the training clips and score the held-out original clips."""
    overlap = set(data.train["video_id"]) & set(data.validation["video_id"])
    if overlap:
        raise ValueError(f"held-out videos in the training set: {sorted(overlap)[:5]}")
    x_train, y_train = data.xy(data.train)
    x_val, y_val = data.xy(data.validation)
    if len(np.unique(y_train)) < 2:
        raise ValueError("the training folds hold a single class")
    pipeline = baseline_pipeline(model, seed).fit(x_train, y_train)
    scores = fold_scores(y_val, pipeline.predict_proba(x_val)[:, 1])
    return FoldResult(
        pipeline, scores, kept_features(pipeline, data.feature_names), len(x_train), len(x_val)
    )
