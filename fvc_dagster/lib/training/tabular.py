"""The tabular baselines trained on one fold: fit on the original clips' features of the
training videos, scored on the held-out original clips."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from fvc_dagster.lib.clips.video_clips import ORIGINAL
from fvc_dagster.lib.evaluation.metrics import fold_scores
from fvc_dagster.lib.training.fold_data import FoldData, fit_record

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline


@dataclass
class FoldResult:
    pipeline: Pipeline
    scores: dict[str, float]
    kept_features: list[str]  # the features the classifier sees (pruned, then selected)
    n_train: int  # clips it was fitted on: the original clips of the training videos
    n_validation: int
    val_probabilities: np.ndarray  # P(fake) of each validation clip, in `validation` row order
    test_probabilities: np.ndarray  # P(fake) of each test clip, in `test` row order
    record: dict[str, list[str]]  # the videos it was fit on and scored (`fit_record`)


def baseline_training_rows(train: pd.DataFrame) -> pd.DataFrame:
    """The training rows a tabular baseline is fitted on: the original clip of each video.

    The features measure the compression grid (8x8 DCT, block boundaries, noise residual); seven
    of the ten augmentations resample, filter or overwrite pixels and erase it while keeping the
    label (`boundary_inconsistency` separates the classes with ROC-AUC 0.94 on original clips of
    the seed-0 demo corpus, 0.49-0.59 on affine, rotated and combined ones), and the other three
    are near-copies that would count each video several times. Validation scores original clips
    too. Augmented clips stay in `training_clips` for the video networks (docs/models.md,
    Tabular baselines).
    """
    if "aug_index" not in train.columns:
        raise ValueError("training rows need `aug_index` to pick the original clips")
    return train[train["aug_index"] == ORIGINAL].reset_index(drop=True)


def train_fold(model: str, data: FoldData, seed: int = 0) -> FoldResult:
    """Fit a baseline on the original clips of the training videos (`baseline_training_rows`)
    and score the held-out original clips and the test clips (their labels unread)."""
    from fvc_dagster.lib.models.baselines import baseline_pipeline, selected_features

    overlap = set(data.train["video_id"]) & set(data.validation["video_id"])
    if overlap:
        raise ValueError(f"held-out videos in the training set: {sorted(overlap)[:5]}")
    train = baseline_training_rows(data.train)
    x_train, y_train = data.xy(train)
    x_val, y_val = data.xy(data.validation)
    if len(np.unique(y_train)) < 2:
        raise ValueError("the training folds hold a single class")
    pipeline = baseline_pipeline(model, seed).fit(x_train, y_train)
    probabilities = pipeline.predict_proba(x_val)[:, 1]
    test = pipeline.predict_proba(data.xy(data.test)[0])[:, 1] if len(data.test) else np.empty(0)
    return FoldResult(
        pipeline,
        fold_scores(y_val, probabilities),
        selected_features(pipeline, data.feature_names),
        len(x_train),
        len(x_val),
        probabilities,
        test,
        fit_record(train=train["video_id"], scored=data.validation["video_id"]),
    )
