"""Stacking blind to the fold it scores: the outer folds as its inner cross-validation, and
non-negative weights.

For outer fold k, each base learner is fit on every fold but k and j and predicts the original
clips of fold j, for each training fold j: out-of-fold predictions of every training video,
made by models that never saw fold k. The base learners whose pooled out-of-fold ROC-AUC is
above 0.5 are stacked (chosen there, never on fold k), and a logistic regression with
non-negative weights on their logits is fit on those predictions, so it cannot turn a model
that anti-learns into a strong one by flipping its sign. Then each stacked learner is fit on
every fold but k, predicts fold k, and the meta-learner combines them. The same fits score the
fold's test clips (`test` rows of `training_clips`, their labels unread). Every fit records the
videos it was handed (`fit_record`), which the blindness check reads.

Base learners are what can be refit inside the training folds from stored inputs: the tabular
baselines (clip features) and XGBoost on clip embeddings. Video networks are not stacked: each
outer fold would need a network trained for each of its inner folds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import logit

from fvc_dagster.lib.clips.video_clips import ORIGINAL
from fvc_dagster.lib.evaluation.uncertainty import pooled_roc_auc
from fvc_dagster.lib.models.registry import estimator
from fvc_dagster.lib.training.fold_data import (
    POSITIVE,
    TEST,
    TRAIN,
    VALIDATION,
    FoldData,
    fit_record,
    own_folds,
)
from fvc_dagster.lib.training.tabular import train_fold

CLIP_KEYS = ["fold", "video_id", "clip_id", "label"]
# P(fake) is clipped this far from 0 and 1 before its logit is taken.
EPSILON = 1e-6


@dataclass(frozen=True)
class BaseLearner:
    """A model the ensemble can refit: `fit_predict(train, scored)` fits on `training_clips`
    rows `train` (video_id, clip_id, aug_index, label) and returns P(fake) of the rows
    `scored`, in order, without reading their labels."""

    name: str
    fit_predict: Callable[[pd.DataFrame, pd.DataFrame], np.ndarray]


def tabular_learner(
    model: str, features: pd.DataFrame, feature_names: list[str], seed: int = 0
) -> BaseLearner:
    """A baseline on clip features (`train_fold`: fit on the original clips it is handed)."""
    columns = features.drop(columns=["video_id", "aug_index"], errors="ignore")

    def fit_predict(train: pd.DataFrame, scored: pd.DataFrame) -> np.ndarray:
        data = FoldData(train.merge(columns, on="clip_id"), scored.merge(columns, on="clip_id"),
                        list(feature_names))  # fmt: skip
        if len(data.validation) != len(scored):
            raise ValueError(f"{model}: {len(scored) - len(data.validation)} scored clips have no "
                             "features")  # fmt: skip
        return train_fold(model, data, seed).val_probabilities

    return BaseLearner(model, fit_predict)


def embedding_learner(model: str, embeddings: pd.DataFrame, seed: int = 0) -> BaseLearner:
    """XGBoost on one backbone's clip embeddings (`embeddings`: clip_id, embedding)."""
    from fvc_dagster.lib.training.embeddings import EmbeddingFold, fit_embedding_model

    columns = embeddings[["clip_id", "embedding"]]

    def fit_predict(train: pd.DataFrame, scored: pd.DataFrame) -> np.ndarray:
        fold = EmbeddingFold(
            train.merge(columns, on="clip_id"), scored.merge(columns, on="clip_id")
        )
        if len(fold.validation) != len(scored):
            raise ValueError(f"{model}: scored clips without an embedding")
        return fit_embedding_model(model, fold, seed).probabilities

    return BaseLearner(model, fit_predict)


def _logits(probabilities: pd.DataFrame) -> np.ndarray:
    return logit(np.clip(probabilities.to_numpy(float), EPSILON, 1 - EPSILON))


@dataclass
class StackedFold:
    fold: int
    predictions: pd.DataFrame  # CLIP_KEYS of the fold's held-out clips + probability
    test_predictions: pd.DataFrame  # CLIP_KEYS of the fold's test clips + probability
    inner_roc_auc: dict[str, float]  # each base learner's pooled out-of-fold ROC-AUC
    weights: dict[str, float]  # each stacked learner's weight (standardised logit)
    record: dict[str, list[str]]  # the videos its fits used (`fit_record`)


def stack_fold(training_clips: pd.DataFrame, learners: list[BaseLearner], fold: int) -> StackedFold:
    """The ensemble's held-out P(fake) for `fold` (see the module docstring)."""
    rows = training_clips[training_clips["fold"] == fold]
    train = rows[rows["role"] == TRAIN]
    held_out = rows[rows["role"] == VALIDATION].reset_index(drop=True)
    scored_outer = rows[rows["role"].isin([VALIDATION, TEST])].reset_index(drop=True)
    train_fold_of = train["video_id"].map(own_folds(training_clips))
    inner_folds = sorted(train_fold_of.unique())
    if len(inner_folds) < 2:
        raise ValueError(
            f"fold {fold}: stacking needs 2 or more training folds to fit its meta-learner "
            f"inside them, got {inner_folds} (FVC_FOLDS >= 3)"
        )
    fitted_on, out_of_fold = [train["video_id"]], []
    for inner in inner_folds:
        inner_train = train[train_fold_of != inner]
        scored = train[(train_fold_of == inner) & (train["aug_index"] == ORIGINAL)]
        predictions = {b.name: b.fit_predict(inner_train, scored) for b in learners}
        out_of_fold.append(scored[CLIP_KEYS].assign(**predictions))
        fitted_on.append(inner_train["video_id"])
    meta_rows = pd.concat(out_of_fold, ignore_index=True)
    y = (meta_rows["label"] == POSITIVE).to_numpy(int)
    inner_auc = {b.name: pooled_roc_auc(y, meta_rows[b.name].to_numpy()) for b in learners}
    stacked = [b for b in learners if inner_auc[b.name] > 0.5] or list(learners)
    names = [b.name for b in stacked]
    meta = estimator("ensemble").fit(_logits(meta_rows[names]), y)
    outer = scored_outer.assign(**{b.name: b.fit_predict(train, scored_outer) for b in stacked})
    probability = meta.predict_proba(_logits(outer[names]))[:, 1]
    scored = outer[CLIP_KEYS].assign(probability=probability)
    is_test = (outer["role"] == TEST).to_numpy()
    record = fit_record(
        train=pd.concat(fitted_on),
        selection=meta_rows["video_id"],
        scored=held_out["video_id"],
    )
    weights = dict(zip(names, meta.coef_.tolist(), strict=True))
    return StackedFold(fold, scored[~is_test].reset_index(drop=True),
                       scored[is_test].reset_index(drop=True), inner_auc, weights,
                       record)  # fmt: skip
