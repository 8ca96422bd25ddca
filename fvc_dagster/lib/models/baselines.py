"""Baseline classifiers on tabular clip features; preprocessing is fit on training folds only.

Of the 23 clip features only a few carry the manipulation on a given corpus, and with about 48
training videos per fold the classifiers fitted the noise of the rest; `SignificantFeatures`
keeps the features whose class means differ on the training rows (docs/models.md, Tabular
baselines, has the measurements).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_selection import VarianceThreshold, f_classif
from sklearn.frozen import FrozenEstimator
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from fvc_dagster.lib.models.registry import estimator, get_spec


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


class SignificantFeatures(BaseEstimator, TransformerMixin):
    """Keeps the features whose class means differ significantly on the training rows.

    One-way ANOVA F test per feature (`f_classif`), Bonferroni-corrected: a feature is kept when
    its p-value is below `alpha / n_features`. When none is, the feature with the largest F is
    kept, so the classifier always has an input. Fit on training rows only; each row should be an
    independent observation (one clip per video), or the p-values are overconfident.
    """

    def __init__(self, alpha: float = 0.05):
        self.alpha = alpha

    def fit(self, X, y):
        X = np.asarray(X, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            f_stat, p_value = f_classif(X, y)
        f_stat, p_value = np.nan_to_num(f_stat, nan=0.0), np.nan_to_num(p_value, nan=1.0)
        keep = np.flatnonzero(p_value < self.alpha / max(X.shape[1], 1))
        if keep.size == 0:
            keep = np.asarray([int(np.argmax(f_stat))])
        self.keep_ = keep.astype(int)
        self.f_ = f_stat
        self.p_ = p_value
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X):
        return np.asarray(X, dtype=float)[:, self.keep_]


class SmallSampleCalibratedClassifierCV(CalibratedClassifierCV):
    """`CalibratedClassifierCV` with at most as many calibration folds as the smaller class has
    rows (5 at most): fitted on one clip per video, a small corpus's training folds can hold
    fewer than 5 videos of a class. With a single row of a class no split can hold it on both
    sides, so the classifier is fit on every row and its sigmoid calibrated on the same rows."""

    def fit(self, X, y, **fit_params):
        _, counts = np.unique(y, return_counts=True)
        if counts.min() >= 2:
            self.cv = int(min(counts.min(), 5))
            return super().fit(X, y, **fit_params)
        frozen = FrozenEstimator(clone(self.estimator).fit(X, y))
        every_row = np.arange(len(y))
        fitted = CalibratedClassifierCV(
            frozen, method=self.method, cv=[(every_row, every_row)], ensemble=False
        ).fit(X, y)
        self.classes_ = fitted.classes_
        self.calibrated_classifiers_ = fitted.calibrated_classifiers_
        self.n_features_in_ = fitted.n_features_in_
        return self


def logistic_regression(seed: int) -> BaseEstimator:
    return LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000, random_state=seed)


def svm(seed: int) -> BaseEstimator:
    """Platt-calibrated probabilities, as scikit-learn recommends in place of
    SVC(probability=True)."""
    return SmallSampleCalibratedClassifierCV(
        SVC(C=1.0, kernel="rbf", class_weight="balanced", random_state=seed), ensemble=False
    )


def xgboost(seed: int) -> BaseEstimator:
    from xgboost import XGBClassifier

    return XGBClassifier(
        n_estimators=200, max_depth=3, learning_rate=0.1, subsample=0.9, n_jobs=2, random_state=seed
    )


# The types beyond skops' defaults that a fitted `baseline_pipeline` of any tabular row holds:
# what loading one from a skops file may build (`trusted_skops_types`), fixed here, never read
# from the file it vets. A tabular row with another estimator adds its types here (a test says
# which).
SKOPS_TRUSTED_TYPES = (
    "fvc_dagster.lib.models.baselines.CorrelationPruner",
    "fvc_dagster.lib.models.baselines.SignificantFeatures",
    "fvc_dagster.lib.models.baselines.SmallSampleCalibratedClassifierCV",
    "numpy.dtype",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "xgboost.core.Booster",
    "xgboost.sklearn.XGBClassifier",
)


def trusted_skops_types(file: str | Path) -> list[str]:
    """`SKOPS_TRUSTED_TYPES`, after checking that the skops file `file` holds no other type
    skops does not trust by default; ValueError naming the file and each such type otherwise."""
    import skops.io

    untrusted = sorted(set(skops.io.get_untrusted_types(file=file)) - set(SKOPS_TRUSTED_TYPES))
    if untrusted:
        raise ValueError(
            f"{file} holds types a baseline pipeline never holds, refused: {', '.join(untrusted)}"
        )
    return list(SKOPS_TRUSTED_TYPES)


def baseline_pipeline(model: str, seed: int = 0) -> Pipeline:
    """Impute, drop constant and collinear features, keep the significant ones, scale, classify
    with the tabular row `model`'s estimator."""
    if get_spec(model).kind != "tabular":
        raise ValueError(f"{model!r} is not a tabular model")
    return Pipeline(
        [
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
            ("constant", VarianceThreshold(0.0)),
            ("collinear", CorrelationPruner(0.95)),
            ("select", SignificantFeatures(0.05)),
            ("scale", StandardScaler()),
            ("classify", estimator(model, seed)),
        ]
    )


def kept_features(pipeline: Pipeline, names: list[str]) -> list[str]:
    """Names of the features that survive pruning (constant, collinear) in a fitted pipeline."""
    after_constant = np.asarray(names)[pipeline.named_steps["constant"].get_support()]
    return after_constant[pipeline.named_steps["collinear"].keep_].tolist()


def selected_features(pipeline: Pipeline, names: list[str]) -> list[str]:
    """Names of the features the classifier of a fitted pipeline sees (pruned, then selected)."""
    kept = np.asarray(kept_features(pipeline, names))
    return kept[pipeline.named_steps["select"].keep_].tolist()
