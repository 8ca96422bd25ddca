"""Training data per fold and baseline training: held-out videos contribute original clips only."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from fvc_dagster.lib.clips import ORIGINAL
from fvc_dagster.lib.metrics import fold_scores
from fvc_dagster.lib.models import baseline_pipeline, kept_features

POSITIVE = "fake"


@dataclass
class FoldData:
    train: pd.DataFrame  # clip rows with `label`, training videos only, every clip
    validation: pd.DataFrame  # original clips of the held-out fold's videos
    feature_names: list[str]

    def xy(self, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        return rows[self.feature_names].to_numpy(float), (rows["label"] == POSITIVE).to_numpy(int)


def fold_data(
    clip_features: pd.DataFrame, folds: pd.DataFrame, fold: int, feature_names
) -> FoldData:
    """Split clip feature rows by the video's fold: train on every clip of the other folds'
    videos, validate on the original clips of this fold's videos. Unlabelled videos are left out."""
    rows = clip_features.merge(folds[["video_id", "fold", "label"]], on="video_id", how="inner")
    held_out = rows["fold"] == fold
    return FoldData(
        train=rows[~held_out].reset_index(drop=True),
        validation=rows[held_out & (rows["aug_index"] == ORIGINAL)].reset_index(drop=True),
        feature_names=list(feature_names),
    )


def leaked_clips(data: FoldData) -> list[str]:
    """Clips in the training rows whose video belongs to the validation videos."""
    held_out_videos = set(data.validation["video_id"])
    return sorted(data.train.loc[data.train["video_id"].isin(held_out_videos), "clip_id"])


@dataclass
class FoldResult:
    pipeline: Pipeline
    scores: dict[str, float]
    kept_features: list[str]
    n_train: int
    n_validation: int


def train_fold(model: str, data: FoldData, seed: int = 0) -> FoldResult:
    """Fit a baseline on the training clips and score the held-out original clips."""
    if leaked := leaked_clips(data):
        raise ValueError(f"held-out clips in the training set: {leaked[:5]}")
    x_train, y_train = data.xy(data.train)
    x_val, y_val = data.xy(data.validation)
    if len(np.unique(y_train)) < 2:
        raise ValueError("the training folds hold a single class")
    pipeline = baseline_pipeline(model, seed).fit(x_train, y_train)
    scores = fold_scores(y_val, pipeline.predict_proba(x_val)[:, 1])
    return FoldResult(
        pipeline, scores, kept_features(pipeline, data.feature_names), len(x_train), len(x_val)
    )
