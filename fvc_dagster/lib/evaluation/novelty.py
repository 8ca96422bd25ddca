"""How far a video lies from the videos a model was trained on: a distance from the training
videos' feature rows (one row a video: its original clip's `CLIP_FEATURES`), and a threshold above
which a video is flagged out of distribution.

The distance is Mahalanobis, from the training rows' mean under their Ledoit-Wolf shrunk
covariance, after a robust standardisation (median and interquartile range, so a few extreme
training videos do not set a feature's scale). Mahalanobis rather than a Euclidean or k-NN
distance because the forensic features are strongly correlated (several measure the same
residual energy or blocking): it counts one effect once and sees a video that breaks the
features' joint pattern. Ledoit-Wolf because a few dozen videos and 23 features make the sample
covariance singular or ill-conditioned; its shrinkage has a closed form, nothing to tune. The
whole model is a few vectors and one matrix, written as JSON.

The threshold is calibrated out of sample: fit on each fold's training videos, take the
distances of that fold's held-out videos, and pool them; their `1 - flag_rate` quantile flags
about `flag_rate` of in-distribution videos. Missing feature values (a codec cue the probe could
not read) are imputed with the training median, as the tabular baselines impute them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd

FLAG_RATE = 0.05  # share of in-distribution videos a calibrated threshold flags
_IQR_PER_SD = 1.349  # interquartile range of a normal distribution, in standard deviations


@dataclass(frozen=True)
class NoveltyModel:
    """The training distribution of `feature_names`: each feature's median and scale, the mean
    and shrunk precision matrix of the standardised rows, and the distance above which a video
    is flagged (None until calibrated)."""

    feature_names: tuple[str, ...]
    median: tuple[float, ...]
    scale: tuple[float, ...]
    mean: tuple[float, ...]
    precision: tuple[tuple[float, ...], ...]
    threshold: float | None = None

    def distances(self, rows: pd.DataFrame) -> np.ndarray:
        """Mahalanobis distance of each row from the training distribution."""
        z = _standardised(_matrix(rows, self.feature_names), self.median, self.scale)
        centred = z - np.asarray(self.mean)
        squared = np.einsum("ij,jk,ik->i", centred, np.asarray(self.precision), centred)
        return np.sqrt(np.maximum(squared, 0.0))

    def flags(self, rows: pd.DataFrame) -> np.ndarray:
        """Whether each row lies farther than the calibrated threshold."""
        if self.threshold is None:
            raise ValueError("novelty model has no threshold: use calibrated_novelty")
        return self.distances(rows) > self.threshold

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> NoveltyModel:
        fields = json.loads(text)
        return cls(
            feature_names=tuple(fields["feature_names"]),
            median=tuple(fields["median"]),
            scale=tuple(fields["scale"]),
            mean=tuple(fields["mean"]),
            precision=tuple(tuple(row) for row in fields["precision"]),
            threshold=fields["threshold"],
        )


def _matrix(rows: pd.DataFrame, feature_names: Sequence[str]) -> np.ndarray:
    missing = [name for name in feature_names if name not in rows]
    if missing:
        raise KeyError(f"feature rows lack {missing}")
    return rows[list(feature_names)].to_numpy(float)


def _standardised(x: np.ndarray, median, scale) -> np.ndarray:
    median = np.asarray(median)
    return (np.where(np.isnan(x), median, x) - median) / np.asarray(scale)


def fit_novelty(rows: pd.DataFrame, feature_names: Sequence[str]) -> NoveltyModel:
    """The training distribution of `rows` (one per training video), not yet calibrated.

    A feature's scale is its interquartile range over 1.349 (a standard deviation for normal
    data), its standard deviation where that is 0, and 1 where the feature is constant; a
    feature no training row has a value of is taken as 0, like the baselines' imputer."""
    from sklearn.covariance import LedoitWolf  # scikit-learn loads only where a model is fit

    x = _matrix(rows, feature_names)
    if len(x) < 2:
        raise ValueError(f"novelty needs 2 or more training videos, got {len(x)}")
    empty = np.isnan(x).all(axis=0)
    x[:, empty] = 0.0
    median = np.nanmedian(x, axis=0)
    x = np.where(np.isnan(x), median, x)
    q1, q3 = np.percentile(x, [25, 75], axis=0)
    scale = (q3 - q1) / _IQR_PER_SD
    scale = np.where(scale > 0, scale, x.std(axis=0))
    scale = np.where(scale > 0, scale, 1.0)
    shrunk = LedoitWolf().fit(_standardised(x, median, scale))
    return NoveltyModel(
        feature_names=tuple(feature_names),
        median=tuple(median.tolist()),
        scale=tuple(scale.tolist()),
        mean=tuple(shrunk.location_.tolist()),
        precision=tuple(map(tuple, shrunk.precision_.tolist())),
    )


def held_out_distances(
    rows: pd.DataFrame, folds: Sequence[int], feature_names: Sequence[str]
) -> np.ndarray:
    """Each row's distance under the model fit on the rows of the other folds (`folds`: each
    row's fold, in the order of `rows`)."""
    folds = np.asarray(folds)
    if len(folds) != len(rows):
        raise ValueError(f"{len(folds)} folds for {len(rows)} feature rows")
    if len(np.unique(folds)) < 2:
        raise ValueError("calibrating a novelty threshold needs 2 or more folds")
    distances = np.empty(len(rows))
    for fold in np.unique(folds):
        held_out = folds == fold
        model = fit_novelty(rows[~held_out], feature_names)
        distances[held_out] = model.distances(rows[held_out])
    return distances


def calibrated_novelty(
    rows: pd.DataFrame,
    folds: Sequence[int],
    feature_names: Sequence[str],
    flag_rate: float = FLAG_RATE,
) -> NoveltyModel:
    """The training distribution of every row of `rows`, with the threshold that flags
    `flag_rate` of the rows' pooled held-out distances (`held_out_distances`)."""
    distances = held_out_distances(rows, folds, feature_names)
    return novelty_flagging(rows, distances, feature_names, flag_rate)


def novelty_flagging(
    rows: pd.DataFrame,
    held_out: np.ndarray,
    feature_names: Sequence[str],
    flag_rate: float = FLAG_RATE,
) -> NoveltyModel:
    """The training distribution of every row of `rows`, with the threshold that flags
    `flag_rate` of `held_out`, the rows' held-out distances (`held_out_distances`)."""
    if not 0 < flag_rate < 1:
        raise ValueError(f"flag_rate {flag_rate}: need 0 < flag_rate < 1")
    threshold = float(np.quantile(held_out, 1 - flag_rate))
    return replace(fit_novelty(rows, feature_names), threshold=threshold)
