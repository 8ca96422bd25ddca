"""The ensemble's meta-learner: a logistic regression whose weights cannot be negative, so it
cannot turn a model that anti-learns into a strong one by flipping its sign."""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit


class NonNegativeLogistic:
    """Logistic regression with non-negative weights (free intercept), L2-penalised, classes
    balanced, on standardised inputs; fit by L-BFGS-B. `coef_` are the weights of the
    standardised inputs."""

    def __init__(self, l2: float = 1.0):
        self.l2 = l2

    def fit(self, x: np.ndarray, y: np.ndarray) -> NonNegativeLogistic:
        x, y = np.asarray(x, float), np.asarray(y, int)
        if len(np.unique(y)) < 2:
            raise ValueError("the meta-learner needs both classes")
        self.mean_, self.scale_ = x.mean(axis=0), x.std(axis=0)
        self.scale_[self.scale_ == 0] = 1.0
        z = (x - self.mean_) / self.scale_
        weight = np.where(y == 1, len(y) / (2 * y.sum()), len(y) / (2 * (len(y) - y.sum())))
        n = len(y)

        def loss(params: np.ndarray) -> tuple[float, np.ndarray]:
            margin = z @ params[:-1] + params[-1]
            p = expit(margin)
            nll = np.logaddexp(0, margin) - y * margin
            residual = weight * (p - y)
            grad = np.append(z.T @ residual, residual.sum()) / n
            grad[:-1] += self.l2 * params[:-1] / n
            return float(weight @ nll / n + 0.5 * self.l2 * params[:-1] @ params[:-1] / n), grad

        bounds = [(0.0, None)] * z.shape[1] + [(None, None)]
        start = np.zeros(z.shape[1] + 1)
        found = minimize(loss, start, jac=True, method="L-BFGS-B", bounds=bounds)
        self.coef_, self.intercept_ = found.x[:-1], float(found.x[-1])
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        z = (np.asarray(x, float) - self.mean_) / self.scale_
        p = expit(z @ self.coef_ + self.intercept_)
        return np.column_stack([1 - p, p])


def non_negative_logistic(seed: int = 0, l2: float = 1.0) -> NonNegativeLogistic:
    """The ensemble row's estimator (deterministic: `seed` is unused)."""
    return NonNegativeLogistic(l2)
