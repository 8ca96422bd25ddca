"""Baseline classifiers on tabular clip features; preprocessing is fit on training folds only."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_selection import VarianceThreshold
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC


class CorrelationPruner(BaseEstimator, TransformerMixin):
    """Drops each feature whose |correlation| with an earlier kept feature exceeds `threshold`."""

    def __init__(self, threshold: float = 0.95):
        self.threshold = threshold

    def fit(self, X, y=None):
        X = np.asarray(X, dtype=float)
        corr = np.abs(np.nan_to_num(np.corrcoef(X, rowvar=False))) if X.shape[1] > 1 else np.eye(1)
        keep: list[int] = []
        for j in range(X.shape[1]):
            if all(corr[j, k] <= self.threshold for k in keep):
                keep.append(j)
        self.keep_ = np.asarray(keep, dtype=int)
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X):
        return np.asarray(X, dtype=float)[:, self.keep_]


def _xgboost(seed: int):
    from xgboost import XGBClassifier

    return XGBClassifier(
        n_estimators=200, max_depth=3, learning_rate=0.1, subsample=0.9, n_jobs=2, random_state=seed
    )


BASELINES: dict[str, Callable[[int], BaseEstimator]] = {
    "logistic_regression": lambda seed: LogisticRegression(
        C=1.0, class_weight="balanced", max_iter=2000, random_state=seed
    ),
    # Platt-calibrated probabilities, as scikit-learn recommends in place of SVC(probability=True)
    "svm": lambda seed: CalibratedClassifierCV(
        SVC(C=1.0, kernel="rbf", class_weight="balanced", random_state=seed), ensemble=False
    ),
    "xgboost": _xgboost,
}


def baseline_pipeline(model: str, seed: int = 0) -> Pipeline:
    """Impute, drop constant and collinear features, scale, then classify."""
    return Pipeline(
        [
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
            ("constant", VarianceThreshold(0.0)),
            ("collinear", CorrelationPruner(0.95)),
            ("scale", StandardScaler()),
            ("classify", BASELINES[model](seed)),
        ]
    )


def kept_features(pipeline: Pipeline, names: list[str]) -> list[str]:
    """Names of the features that survive pruning in a fitted pipeline."""
    after_constant = np.asarray(names)[pipeline.named_steps["constant"].get_support()]
    return after_constant[pipeline.named_steps["collinear"].keep_].tolist()
