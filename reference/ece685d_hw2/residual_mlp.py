"""P1 reference: a two-hidden-layer residual MLP and its gradients by hand-written backprop.

Shapes follow the contract, one example per row::

    H0 = X                      (N×m)
    A_l = H_{l-1} W_l + b_l     (N×m),  l = 1, 2
    H_l = g(A_l) + H_{l-1}      (N×m)
    Ŷ  = H2 W3 + b3            (N×1)
    L  = (1/N) Σ_i (y_i − ŷ_i)²

Row i of ``A_l`` is the contract's column-vector a_l = W_lᵀ h_{l−1} + b_l for example i. The
backward pass is the residual recursion e_{l−1} = e_l + W_l δ_l of part (b), written for all
rows at once. No autograd is used: the operations are ones NumPy arrays and torch tensors
share (``@``, ``.T``, ``*``, ``.sum(0)``), so the same code serves both kinds, in float64.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple

import numpy as np

from reference.ece685d_hw2._arrays import ArrayLike, any_torch, to_float64_tensor

__all__ = [
    "PARAM_NAMES",
    "residual_mlp_forward",
    "residual_mlp_gradients",
    "residual_mlp_loss",
]

PARAM_NAMES: tuple[str, ...] = ("W1", "b1", "W2", "b2", "W3", "b3")
"""The six parameter keys of the contract, in forward order."""

Activation = Callable[[ArrayLike], ArrayLike]


class ForwardTrace(NamedTuple):
    """Every intermediate of one forward pass that the backward pass reads."""

    h0: ArrayLike
    a1: ArrayLike
    h1: ArrayLike
    a2: ArrayLike
    h2: ArrayLike
    y_hat: ArrayLike


def _as_float64(value: object, as_torch: bool) -> ArrayLike:
    """Return ``value`` as float64 in the chosen kind (torch tensor or NumPy array)."""
    return to_float64_tensor(value) if as_torch else np.asarray(value, dtype=np.float64)


def _prepare(
    X: object, Y: object | None, params: Mapping[str, object]
) -> tuple[ArrayLike, ArrayLike | None, dict[str, ArrayLike]]:
    """Convert inputs to one float64 kind: torch if any input is a tensor, NumPy otherwise."""
    as_torch = any_torch([X, Y, *params.values()])
    weights = {name: _as_float64(params[name], as_torch) for name in PARAM_NAMES}
    Y_out = None if Y is None else _as_float64(Y, as_torch).reshape(-1, 1)
    return _as_float64(X, as_torch), Y_out, weights


def _forward_trace(X: ArrayLike, p: Mapping[str, ArrayLike], g: Activation) -> ForwardTrace:
    """Run the network on the rows of ``X`` and keep every pre-activation and hidden state."""
    a1 = X @ p["W1"] + p["b1"].reshape(1, -1)
    h1 = g(a1) + X
    a2 = h1 @ p["W2"] + p["b2"].reshape(1, -1)
    h2 = g(a2) + h1
    y_hat = h2 @ p["W3"].reshape(-1, 1) + p["b3"].reshape(1, 1)
    return ForwardTrace(X, a1, h1, a2, h2, y_hat)


def residual_mlp_forward(X: ArrayLike, params: Mapping[str, ArrayLike], g: Activation) -> ArrayLike:
    """Return the predictions Ŷ (N×1) of the residual MLP for the rows of ``X`` (N×m)."""
    X64, _, weights = _prepare(X, None, params)
    return _forward_trace(X64, weights, g).y_hat


def residual_mlp_loss(
    X: ArrayLike, Y: ArrayLike, params: Mapping[str, ArrayLike], g: Activation
) -> float:
    """Return the mean squared error (1/N) Σ (y_i − ŷ_i)² as a Python float."""
    X64, Y64, weights = _prepare(X, Y, params)
    residual = _forward_trace(X64, weights, g).y_hat - Y64
    return float((residual * residual).sum()) / X64.shape[0]


def residual_mlp_gradients(
    X: ArrayLike,
    Y: ArrayLike,
    params: Mapping[str, ArrayLike],
    g: Activation,
    g_prime: Activation,
) -> dict[str, ArrayLike]:
    """Return ∂L/∂p for the six parameters p, computed by manual backprop (no autograd).

    Each gradient has the shape of the parameter it belongs to and is a float64 torch tensor
    when any input was a tensor, a NumPy array otherwise. ``g`` and ``g_prime`` are applied
    elementwise to N×m arrays of that kind.
    """
    X64, Y64, p = _prepare(X, Y, params)
    t = _forward_trace(X64, p, g)
    d_y_hat = (2.0 / X64.shape[0]) * (t.y_hat - Y64)  # ∂L/∂ŷ_i, N×1
    e2 = d_y_hat @ p["W3"].reshape(1, -1)  # ∂L/∂h2 per row: ŷ = W3ᵀ h2 + b3
    delta2 = e2 * g_prime(t.a2)
    e1 = e2 + delta2 @ p["W2"].T  # residual recursion: e1 = e2 + W2 δ2
    delta1 = e1 * g_prime(t.a1)
    grads = {
        "W1": t.h0.T @ delta1,
        "b1": delta1.sum(0),
        "W2": t.h1.T @ delta2,
        "b2": delta2.sum(0),
        "W3": t.h2.T @ d_y_hat,
        "b3": d_y_hat.sum(0),
    }
    return {name: grads[name].reshape(tuple(np.shape(params[name]))) for name in PARAM_NAMES}
