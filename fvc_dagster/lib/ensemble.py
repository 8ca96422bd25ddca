"""Stacking: a logistic regression over the base models' held-out probabilities.

For fold k the meta-learner is fit on the held-out predictions of the other folds' videos only
and scores fold k's clips, so no fold's labels ever reach its own meta-learner; the rows each
meta-learner was fit on are returned for the check that proves it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from fvc_dagster.lib.metrics import NO_WEIGHTS

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

CLIP_KEYS = ["fold", "video_id", "clip_id", "label"]


def base_model_name(model: str, weights: str) -> str:
    """A base model's column in the stacking table: `model`, or `model[weights]` for a network."""
    return model if weights == NO_WEIGHTS else f"{model}[{weights}]"


def stacking_table(predictions: pd.DataFrame, folds: list[int]) -> tuple[pd.DataFrame, list[str]]:
    """One row per fold and validation clip (`CLIP_KEYS`), a column of P(fake) per base model,
    and the base models used: those with a prediction for every clip of every fold (a model
    trained on some folds only is left out)."""
    missing = sorted(set(folds) - set(predictions["fold"]))
    if missing:
        raise ValueError(f"no held-out predictions for folds {missing}: train a base model on "
                         "every fold")  # fmt: skip
    named = predictions.assign(
        base=[base_model_name(m, w) for m, w in zip(predictions["model"],
                                                     predictions["weights"], strict=True)]
    )  # fmt: skip
    wide = named.pivot_table(index=CLIP_KEYS, columns="base", values="probability", aggfunc="first")
    complete = [c for c in wide.columns if wide[c].notna().all()]
    if not complete:
        raise ValueError("no base model has held-out predictions for every clip of every fold")
    return wide[complete].reset_index(), sorted(complete)


@dataclass
class StackedFold:
    fold: int
    meta_learner: Pipeline
    predictions: pd.DataFrame  # CLIP_KEYS of fold's clips + probability
    training_rows: pd.DataFrame  # fold (the one scored), video_id, clip_id the learner saw


def stack_fold(
    table: pd.DataFrame, base_models: list[str], fold: int, seed: int = 0
) -> StackedFold:
    """Fit the meta-learner of `fold` on the other folds' rows and score the fold's rows."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train, held_out = table[table["fold"] != fold], table[table["fold"] == fold]
    y = (train["label"] == "fake").to_numpy(int)
    if len(np.unique(y)) < 2:
        raise ValueError(f"fold {fold}: the other folds' predictions hold a single class")
    learner = make_pipeline(
        StandardScaler(), LogisticRegression(class_weight="balanced", random_state=seed)
    ).fit(train[base_models].to_numpy(float), y)
    scored = held_out[CLIP_KEYS].assign(
        probability=learner.predict_proba(held_out[base_models].to_numpy(float))[:, 1]
    )
    seen = train[["video_id", "clip_id"]].assign(fold=fold)[["fold", "video_id", "clip_id"]]
    return StackedFold(fold, learner, scored.reset_index(drop=True), seen.reset_index(drop=True))


def meta_learner_leaks(training_rows: pd.DataFrame, folds: pd.DataFrame) -> pd.DataFrame:
    """Rows a fold's meta-learner was fit on whose video `cv_folds` places in that very fold
    (`fold, video_id, clip_id`); empty when no fold's labels reached its own meta-learner."""
    placed = folds[["video_id", "fold"]].rename(columns={"fold": "video_fold"})
    rows = training_rows.merge(placed, on="video_id", how="left")
    return rows[rows["video_fold"] == rows["fold"]][["fold", "video_id", "clip_id"]]
