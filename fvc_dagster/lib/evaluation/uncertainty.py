"""How far a pooled held-out ROC-AUC can be trusted when videos come in cascades (duplicate
groups): a bootstrap interval that resamples whole cascades, and a chance band from permuting
labels between cascades. ROC-AUC is the Mann-Whitney U statistic (ties count one half),
vectorised over resamples."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.stats import rankdata

# Resamples scored at once: bounds each (distinct scores x resamples) matrix to about 16 MB.
_CELLS_PER_CHUNK = 2_000_000


def pooled_roc_auc(y, p) -> float:
    """ROC-AUC of scores `p` for binary labels `y` (1 = positive) by average ranks; NaN when
    `y` holds one class."""
    y, p = np.asarray(y, dtype=bool), np.asarray(p, dtype=float)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    rank_sum = rankdata(p)[y].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _cascade_index(cascades) -> tuple[np.ndarray, int]:
    codes = np.unique(np.asarray(cascades), return_inverse=True)[1].ravel()
    return codes, int(codes.max()) + 1 if len(codes) else 0


def _tie_tables(y, p, codes: np.ndarray, n_cascades: int) -> tuple[sparse.csr_array, ...]:
    """How many positive, and negative, rows each cascade (column) has at each distinct
    score (row, ascending)."""
    groups = np.unique(np.asarray(p, dtype=float), return_inverse=True)[1].ravel()
    y = np.asarray(y, dtype=bool)
    shape = (int(groups.max()) + 1, n_cascades)
    return tuple(
        sparse.csr_array((np.ones(mask.sum()), (groups[mask], codes[mask])), shape=shape)
        for mask in (y, ~y)
    )


def _weighted_aucs(pos: sparse.csr_array, neg: sparse.csr_array, counts: np.ndarray) -> np.ndarray:
    """ROC-AUC of each resample (column of `counts`: how often each cascade was drawn), ties
    counting one half, from `_tie_tables`; NaN for a resample with one class."""
    pos, neg = pos @ counts, neg @ counts  # distinct scores x resamples
    n_pos, n_neg = pos.sum(axis=0), neg.sum(axis=0)
    beaten = np.cumsum(neg, axis=0)
    beaten -= 0.5 * neg  # negatives below each score, and half of those tied with it
    with np.errstate(invalid="ignore", divide="ignore"):
        aucs = np.einsum("ij,ij->j", pos, beaten) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), aucs, np.nan)


def bootstrap_roc_aucs(y, p, cascades, n_resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """Pooled ROC-AUC of `n_resamples` cascade bootstrap resamples: each draws as many
    cascades as there are, with replacement, and takes every row of a drawn cascade. NaN for
    a resample with one class."""
    if len(p) == 0:
        return np.full(n_resamples, np.nan)
    codes, n_cascades = _cascade_index(cascades)
    pos, neg = _tie_tables(y, p, codes, n_cascades)
    rng = np.random.default_rng(seed)
    chunk = max(1, _CELLS_PER_CHUNK // max(pos.shape))
    aucs = []
    for start in range(0, n_resamples, chunk):
        size = min(chunk, n_resamples - start)
        draws = rng.integers(0, n_cascades, size=(size, n_cascades))
        offsets = (draws + np.arange(size)[:, None] * n_cascades).ravel()
        counts = np.bincount(offsets, minlength=size * n_cascades).reshape(size, n_cascades)
        aucs.append(_weighted_aucs(pos, neg, counts.T.astype(float)))
    return np.concatenate(aucs) if aucs else np.empty(0)


def _interval(aucs: np.ndarray, level: float) -> tuple[float, float]:
    valid = aucs[~np.isnan(aucs)]
    if valid.size == 0:
        return float("nan"), float("nan")
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(valid, [tail, 100 - tail])
    return float(low), float(high)


def cascade_bootstrap_interval(
    y, p, cascades, n_resamples: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile interval (`level`) of the pooled ROC-AUC over cascade bootstrap resamples
    (`bootstrap_roc_aucs`), resamples with one class skipped; NaNs when none has two."""
    return _interval(bootstrap_roc_aucs(y, p, cascades, n_resamples, seed), level)


def _cascade_labels(y, cascades) -> tuple[np.ndarray, np.ndarray]:
    """Each row's cascade (0..k-1) and each cascade's majority label (a tie counts as 1)."""
    codes, n_cascades = _cascade_index(cascades)
    positives = np.bincount(codes, weights=np.asarray(y, dtype=float), minlength=n_cascades)
    sizes = np.bincount(codes, minlength=n_cascades)
    return codes, positives >= sizes / 2


def chance_band(
    y, p, cascades, n_permutations: int = 1000, quantile: float = 0.95, seed: int = 0
) -> float:
    """The `quantile` of pooled ROC-AUC under labels permuted between cascades: the cascades'
    majority labels are shuffled among them, each cascade keeping its rows and predictions
    and all its rows taking its new label. NaN when every cascade has the same label."""
    codes, labels = _cascade_labels(y, cascades)
    n_cascades = len(labels)
    # The AUC of a labelling by average ranks: only each cascade's rank sum and size matter.
    rank_sums = np.bincount(
        codes, weights=rankdata(np.asarray(p, dtype=float)), minlength=n_cascades
    )
    sizes = np.bincount(codes, minlength=n_cascades).astype(float)
    rng = np.random.default_rng(seed)
    permuted = rng.permuted(np.tile(labels, (n_permutations, 1)), axis=1).astype(float)
    n_pos = permuted @ sizes
    n_neg = len(codes) - n_pos
    with np.errstate(invalid="ignore", divide="ignore"):
        aucs = (permuted @ rank_sums - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    aucs = aucs[(n_pos > 0) & (n_neg > 0)]
    return float(np.quantile(aucs, quantile)) if aucs.size else float("nan")


@dataclass(frozen=True)
class ScoreUncertainty:
    """A pooled ROC-AUC with its cascade bootstrap interval and permutation chance band."""

    roc_auc: float
    low: float
    high: float
    band: float
    skipped_resamples: int

    @property
    def above_chance(self) -> bool:
        """Whether the interval's low end clears the chance band (False when either is NaN)."""
        return bool(self.low > self.band)


def score_uncertainty(y, p, cascades, n_resamples: int = 1000, seed: int = 0) -> ScoreUncertainty:
    """Pooled ROC-AUC of `p` for `y`, its 95% cascade bootstrap interval and the 95th
    percentile of its cascade permutation chance band, from `n_resamples` each."""
    aucs = bootstrap_roc_aucs(y, p, cascades, n_resamples, seed)
    low, high = _interval(aucs, 0.95)
    return ScoreUncertainty(
        roc_auc=pooled_roc_auc(y, p),
        low=low,
        high=high,
        band=chance_band(y, p, cascades, n_resamples, 0.95, seed),
        skipped_resamples=int(np.isnan(aucs).sum()),
    )
