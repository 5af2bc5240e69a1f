"""The reference solution of demo-linreg (secret: imported by the grader only when judging)."""

from __future__ import annotations

import numpy as np


def mse_loss(w, X, y):
    r = X @ w - y
    return r @ r / len(y)


def mse_gradient(w, X, y):
    return 2.0 / len(y) * X.T @ (X @ w - y)


def fit_linreg(X, y, lr, steps):
    w = np.zeros(X.shape[1])
    losses = []
    for _ in range(steps):
        losses.append(float(mse_loss(w, X, y)))
        w = w - lr * mse_gradient(w, X, y)
    return w, losses


def least_squares(X, y):
    """argmin ‖Xw − y‖², what gradient descent converges to (the LR3 hidden check compares with it)."""
    return np.linalg.lstsq(X, y, rcond=None)[0]
