"""P3 reference: logistic regression on breast cancer by gradient descent and Newton's method.

The loss is the contract's *sum* of binary cross-entropies,

    L(D; w) = Σ_n −y_n log σ(wᵀx_n) − (1 − y_n) log(1 − σ(wᵀx_n)) = Σ_n softplus(z_n) − y_n z_n,

with z = Xw, and is computed from the logits (``logaddexp``) so that large |z| never gives
log(0). Its gradient is Xᵀ(σ(z) − y) and its Hessian Xᵀ diag(σ(z)(1 − σ(z))) X.

Data: scikit-learn's breast cancer set (569 × 30), split 70/30 stratified with
``random_state=seed``, features standardised with the *training* mean and standard deviation,
and a constant-one column appended last so that w's last entry is the bias (d = 31).

All three methods use learning rate η = 0.1:

* gradient descent steps on the *mean-normalised* gradient, w ← w − η ∇L / n. The sum loss has
  curvature of order n·λ_max(XᵀX/n)/4 ≈ 1300 here, so a raw step η∇L would overshoot by a
  factor of ~100; dividing by n is the same as η/n on the sum loss and leaves L, ∇L and the
  minimiser exactly as the contract defines them;
* Newton: w ← w − η (H + λI)⁻¹ ∇L with the exact Hessian, damped by η and by a
  Levenberg–Marquardt ridge λ = 1 (≈ 1% of diag H at the start) that only matters once the
  (often separable) training set drives H towards singular;
* diagonal Newton: w ← w − η ∇L ⊘ (diag H + λ), each coordinate scaled by its own curvature.

Newton-type steps are invariant to rescaling the loss, so they need no normalisation.

Each ``fit_*`` returns a history with one entry per iteration, entry 0 being the initial
weights: ``"loss"`` is the training objective L(D_train; w) (the quantity being minimised),
``"test_loss"`` the same sum over the test set, ``"accuracy"`` the test accuracy, and
``"time"`` the cumulative seconds spent in the update steps (evaluation excluded, so the
curve compares the methods' cost and not the bookkeeping).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

from reference.ece685d_hw2._arrays import ArrayLike, any_torch, to_float64_tensor, to_kind

__all__ = [
    "LEARNING_RATE",
    "TEST_SIZE",
    "DEFAULT_ITERATIONS",
    "METHODS",
    "BreastCancerSplit",
    "History",
    "load_breast_cancer_split",
    "initial_weights",
    "bce_loss",
    "bce_gradient",
    "bce_hessian",
    "classification_accuracy",
    "fit_gd",
    "fit_newton",
    "fit_newton_diag",
    "run_histories",
]

LEARNING_RATE = 0.1
"""The learning rate the problem statement prescribes, used by all three methods."""
TEST_SIZE = 0.3
"""Fraction of the 569 examples held out as the test set."""
DEFAULT_ITERATIONS = 100
"""Enough for every method to settle: damped Newton's error shrinks by ≥ 0.9 per step."""
DAMPING = 1.0
"""Levenberg–Marquardt ridge λ added to the (diagonal) Hessian, in units of the sum loss.

At the start diag H ≈ n/4 ≈ 100, so λ = 1 is a 1% perturbation; it takes over only when the
training set is (nearly) separable and H collapses towards 0 as ‖w‖ grows, where the pure
Newton step would race to infinity and overfit (test loss ×10, see P3.md). The gradient is
unchanged, so the stationary points are those of the contract's un-regularised L."""
INIT_SCALE = 0.01
"""Standard deviation of the random initial weights: small, so σ(wᵀx) ≈ ½ at the start."""
METHODS: tuple[str, ...] = ("gd", "newton", "newton_diag")
"""The history keys of the contract, in the order the problem lists the methods."""

History = dict[str, list[float]]
Direction = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class BreastCancerSplit:
    """A standardised train/test split of the breast cancer set, bias column last."""

    X_train: torch.Tensor
    """n_train × 31 float64: standardised features, then a column of ones."""
    y_train: torch.Tensor
    """n_train float64 labels in {0, 1} (1 = benign, scikit-learn's coding)."""
    X_test: torch.Tensor
    """n_test × 31 float64, standardised with the training statistics."""
    y_test: torch.Tensor
    """n_test float64 labels in {0, 1}."""


@lru_cache(maxsize=1)
def _breast_cancer_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Return scikit-learn's bundled breast cancer features and labels (read once)."""
    X, y = load_breast_cancer(return_X_y=True)
    return X, y


def _with_bias(X: np.ndarray, mean: np.ndarray, std: np.ndarray) -> torch.Tensor:
    """Standardise ``X`` with the given statistics and append a column of ones."""
    standardised = (X - mean) / std
    return torch.from_numpy(np.hstack([standardised, np.ones((X.shape[0], 1))]))


def load_breast_cancer_split(seed: int = 0, test_size: float = TEST_SIZE) -> BreastCancerSplit:
    """Split breast cancer stratified with ``random_state=seed`` and standardise on train only."""
    X, y = _breast_cancer_arrays()
    X_tr, X_te, y_tr, y_te = train_test_split(
        X, y, test_size=test_size, random_state=seed, stratify=y
    )
    mean, std = X_tr.mean(axis=0), X_tr.std(axis=0)
    return BreastCancerSplit(
        X_train=_with_bias(X_tr, mean, std),
        y_train=torch.from_numpy(y_tr.astype(np.float64)),
        X_test=_with_bias(X_te, mean, std),
        y_test=torch.from_numpy(y_te.astype(np.float64)),
    )


def initial_weights(d: int, seed: int = 0) -> torch.Tensor:
    """Return d float64 weights drawn from N(0, INIT_SCALE²), seeded by ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    return INIT_SCALE * torch.randn(d, generator=generator, dtype=torch.float64)


def _logits_and_labels(w: object, X: object, y: object) -> tuple[torch.Tensor, torch.Tensor]:
    """Return z = Xw (length n) and y as float64 vectors, whatever the input shapes (d or d×1)."""
    X64 = to_float64_tensor(X)
    z = X64 @ to_float64_tensor(w).reshape(-1)
    return z, to_float64_tensor(y).reshape(-1)


def bce_loss(w: ArrayLike, X: ArrayLike, y: ArrayLike) -> ArrayLike:
    """Return L(D; w) = Σ softplus(z) − y z with z = Xw: the summed BCE, stable for any |z|.

    A 0-dim float64 tensor when any input is a tensor, a 0-dim NumPy array otherwise.
    """
    z, y64 = _logits_and_labels(w, X, y)
    loss = (torch.logaddexp(torch.zeros_like(z), z) - y64 * z).sum()
    return to_kind(loss, any_torch([w, X, y]))


def bce_gradient(w: ArrayLike, X: ArrayLike, y: ArrayLike) -> ArrayLike:
    """Return ∂L/∂w = Xᵀ(σ(Xw) − y), shaped like ``w``."""
    z, y64 = _logits_and_labels(w, X, y)
    gradient = to_float64_tensor(X).T @ (torch.sigmoid(z) - y64)
    return to_kind(gradient.reshape(np.shape(w)), any_torch([w, X, y]))


def bce_hessian(w: ArrayLike, X: ArrayLike, y: ArrayLike) -> ArrayLike:
    """Return ∂²L/∂w∂wᵀ = Xᵀ diag(σ(z)(1 − σ(z))) X, a d×d matrix (``y`` does not enter)."""
    z, _ = _logits_and_labels(w, X, y)
    X64 = to_float64_tensor(X)
    curvature = torch.sigmoid(z) * torch.sigmoid(-z)  # σ(1−σ) without cancellation
    return to_kind(X64.T @ (curvature[:, None] * X64), any_torch([w, X, y]))


def classification_accuracy(w: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> float:
    """Return the fraction of rows where the prediction 1[wᵀx > 0] equals the label."""
    return float(((X @ w > 0).to(torch.float64) == y).to(torch.float64).mean())




def _gd_direction(w: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Return ∇L / n: the sum-loss gradient normalised to the mean-loss scale (see module doc)."""
    return bce_gradient(w, X, y) / X.shape[0]


def _newton_direction(w: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Return (H + λI)⁻¹ ∇L with the exact Hessian: O(nd² + d³) per step."""
    hessian = bce_hessian(w, X, y)
    regularised = hessian + DAMPING * torch.eye(hessian.shape[0], dtype=hessian.dtype)
    return torch.linalg.solve(regularised, bce_gradient(w, X, y))


def _newton_diag_direction(w: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Return ∇L ⊘ (diag H + λ), diag H_jj = Σ_n σ(1−σ) x_nj² computed in O(nd) without H."""
    z = X @ w
    curvature = torch.sigmoid(z) * torch.sigmoid(-z)
    diagonal = (X * X).T @ curvature
    return bce_gradient(w, X, y) / (diagonal + DAMPING)


def _record(history: History, w: torch.Tensor, split: BreastCancerSplit, elapsed: float) -> None:
    """Append training loss, test loss, test accuracy and elapsed step time for weights ``w``."""
    history["loss"].append(float(bce_loss(w, split.X_train, split.y_train)))
    history["test_loss"].append(float(bce_loss(w, split.X_test, split.y_test)))
    history["accuracy"].append(classification_accuracy(w, split.X_test, split.y_test))
    history["time"].append(elapsed)


@contextmanager
def _single_threaded() -> Iterator[None]:
    """Run torch on one thread, restoring the previous setting afterwards.

    With d = 31 threading cannot pay off, and on a loaded 2-core machine MKL's two-thread
    GEMM for XᵀSX took 16 ms against 0.1 ms single-threaded: the runtime curves would measure
    the scheduler rather than the methods.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _descend(
    direction: Direction, split: BreastCancerSplit, w0: torch.Tensor, lr: float, iterations: int
) -> History:
    """Take ``iterations`` steps w ← w − lr·direction(w), recording w₀ and the state after each."""
    history: History = {"loss": [], "test_loss": [], "accuracy": [], "time": []}
    w, elapsed = w0.clone(), 0.0
    with _single_threaded():
        _record(history, w, split, elapsed)
        for _ in range(iterations):
            start = time.perf_counter()
            w = w - lr * direction(w, split.X_train, split.y_train)
            elapsed += time.perf_counter() - start
            _record(history, w, split, elapsed)
    return history


def fit_gd(
    split: BreastCancerSplit,
    w0: torch.Tensor,
    lr: float = LEARNING_RATE,
    iterations: int = DEFAULT_ITERATIONS,
) -> History:
    """Fit by gradient descent on the gradient / n; return the history (iterations + 1 entries)."""
    return _descend(_gd_direction, split, w0, lr, iterations)


def fit_newton(
    split: BreastCancerSplit,
    w0: torch.Tensor,
    lr: float = LEARNING_RATE,
    iterations: int = DEFAULT_ITERATIONS,
) -> History:
    """Fit by damped Newton with the exact (ridge-guarded) Hessian; return the history."""
    return _descend(_newton_direction, split, w0, lr, iterations)


def fit_newton_diag(
    split: BreastCancerSplit,
    w0: torch.Tensor,
    lr: float = LEARNING_RATE,
    iterations: int = DEFAULT_ITERATIONS,
) -> History:
    """Fit by Newton with the diagonal of the Hessian only; return the history."""
    return _descend(_newton_diag_direction, split, w0, lr, iterations)


def run_histories(seed: int = 0, iterations: int = DEFAULT_ITERATIONS) -> dict[str, History]:
    """Fit all three methods from the same seeded split and initial weights.

    ``seed`` is both the split's ``random_state`` and the seed of the initial weights.
    """
    split = load_breast_cancer_split(seed)
    w0 = initial_weights(split.X_train.shape[1], seed)
    fits = {"gd": fit_gd, "newton": fit_newton, "newton_diag": fit_newton_diag}
    return {method: fits[method](split, w0, iterations=iterations) for method in METHODS}
