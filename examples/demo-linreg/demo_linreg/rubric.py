"""demo-linreg: the parts, the checks and their catalogue of known mistakes, and the hidden inputs.

Hidden inputs are drawn in :func:`hidden_inputs` from the run's seed; the probes (``probes.py``
beside this module, run in the student's kernel) call the student's functions on them and record
what came back; the checks below compare it with the stated formula (LR1), with torch autograd
(LR2) and with the reference solution (LR3), and name the likely mistake when one is catalogued.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from graders.assignment import PartSpec
from graders.checks import Rubric, fail
from graders.judge import JudgeContext, name_mistake, relative_error, shape_text
from graders.observe import FigureRecord


def _heading(part: str) -> dict[str, Any]:
    """How a part is titled: ``## LR2 · …`` (``LR 2`` too)."""
    return {"headings": (rf"(?<!\w)LR\s*{part}(?!\w)",)}


RUBRIC = Rubric(
    assignment="demo-linreg",
    title="Demo: linear regression warm-up",
    parts=(
        PartSpec("LR1", "Mean squared error", 3, **_heading("1")),
        PartSpec("LR2", "Its gradient, by hand", 4, **_heading("2")),
        PartSpec("LR3", "Gradient descent and its loss curve", 3, figures=True, **_heading("3")),
    ),
)
check = RUBRIC.check

CASES = ((12, 3), (40, 5), (7, 1))
"""(n, d) of the hidden problems on which LR1 and LR2 call the student's functions."""
RTOL = 1e-6
"""Relative tolerance against the formula / autograd (float64; float32 students stay well inside)."""
MISTAKE_RTOL = 1e-6
"""How close a catalogued wrong formula must come to the student's values to be named."""
FIT = {"n": 200, "d": 3, "lr": 0.1, "steps": 300}
"""LR3's hidden training problem: standardised features, so gradient descent converges in far fewer steps."""
FIT_RTOL = 1e-3
"""‖w − w_lstsq‖ / ‖w_lstsq‖ the trained weights must reach (the reference reaches ~1e-15)."""


# ---------------------------------------------------------------------------------------------
# Hidden inputs (drawn in the grader from the run's seed; nothing here is secret but the seed)
# ---------------------------------------------------------------------------------------------
def _case(rng: np.random.Generator, case: int, n: int, d: int) -> dict[str, np.ndarray]:
    return {f"w_{case}": rng.normal(size=d), f"X_{case}": rng.normal(size=(n, d)), f"y_{case}": rng.normal(size=n)}


def hidden_inputs(seed: int, data_root: Path) -> dict[str, dict[str, Any]]:
    """Part id → name → value; arrays reach the kernel as ``.npy``, the rest as ``params.json``."""
    rng = np.random.default_rng(seed)
    lr1: dict[str, Any] = {"cases": len(CASES)}
    lr2: dict[str, Any] = {"cases": len(CASES)}
    for case, (n, d) in enumerate(CASES):
        lr1.update(_case(rng, case, n, d))
        lr2.update(_case(rng, case, n, d))
    X = rng.normal(size=(FIT["n"], FIT["d"]))
    y = X @ rng.normal(size=FIT["d"]) + 0.1 * rng.normal(size=FIT["n"])
    lr3 = {"X": X, "y": y, "lr": FIT["lr"], "steps": FIT["steps"]}
    return {"LR1": lr1, "LR2": lr2, "LR3": lr3}


def failure_text(error: dict[str, str]) -> str:
    return f"raised {error.get('type')}: {error.get('message')}"


def _cases(ctx: JudgeContext) -> list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    inputs = ctx.inputs()
    return [(c, inputs[f"w_{c}"], inputs[f"X_{c}"], inputs[f"y_{c}"]) for c in range(inputs["cases"])]


# ---------------------------------------------------------------------------------------------
# LR1 · L(w) = (1/n) ‖Xw − y‖²
# ---------------------------------------------------------------------------------------------
def mse(w: np.ndarray, X: np.ndarray, y: np.ndarray) -> float:
    """The stated formula (not the reference solution: the public check needs none)."""
    r = X @ w - y
    return float(r @ r / len(y))


SUM_NOT_MEAN = "sum instead of mean: L(w) = (1/n) Σ (xᵢᵀw − yᵢ)², divide by n"
HALF = "an extra ½: L(w) = (1/n) ‖Xw − y‖², not 1/(2n) (that convention belongs to another course)"
ROOT = "the square root is taken (RMSE): L(w) is the mean of the squares, without a root"
ABSOLUTE = "absolute errors instead of squares: L(w) = (1/n) Σ (xᵢᵀw − yᵢ)²"


def mse_mistakes(w: np.ndarray, X: np.ndarray, y: np.ndarray) -> dict[str, Callable[[], np.ndarray]]:
    r, n = X @ w - y, len(y)
    return {
        SUM_NOT_MEAN: lambda: np.asarray(r @ r),
        HALF: lambda: np.asarray(r @ r / (2 * n)),
        ROOT: lambda: np.asarray(np.sqrt(r @ r / n)),
        ABSOLUTE: lambda: np.asarray(np.abs(r).mean()),
    }


@check("LR1", 3, "mse_loss(w, X, y) equals (1/n)‖Xw − y‖² on hidden w, X, y", hidden_inputs=True, public=True,
       observes=("mse_loss_{case}",))
def mse_loss_matches_formula(ctx: JudgeContext) -> None:
    ctx.require("mse_loss")
    for case, w, X, y in _cases(ctx):
        call = f"mse_loss(w of {len(w)}, X {shape_text(X)}, y of {len(y)})"
        error = ctx.call_error(f"mse_loss_{case}")
        if error:
            fail(f"{call} {failure_text(error)}", detail=error.get("traceback"))
        got = ctx.array(f"mse_loss_{case}", call)
        if got.size != 1:
            fail(f"{call} returned {shape_text(got)} values; the loss is one number.", expected="a scalar",
                 got=shape_text(got), mistake="average over the examples: (1/n) Σᵢ (xᵢᵀw − yᵢ)²")
        got = got.reshape(())
        expected = np.asarray(mse(w, X, y))
        if relative_error(got, expected) > RTOL:
            fail(f"{call} returned {float(got):.6g}; (1/n)‖Xw − y‖² is {float(expected):.6g}.",
                 expected=f"{float(expected):.6g}", got=f"{float(got):.6g}",
                 mistake=name_mistake(got, mse_mistakes(w, X, y), MISTAKE_RTOL))


# ---------------------------------------------------------------------------------------------
# LR2 · ∇L(w) = (2/n) Xᵀ(Xw − y), by hand, against autograd
# ---------------------------------------------------------------------------------------------
def autograd_gradient(w: np.ndarray, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """∇L by torch autograd in float64 (the grader's own computation, never the student's)."""
    import torch

    leaf = torch.tensor(w, dtype=torch.float64, requires_grad=True)
    residual = torch.tensor(X) @ leaf - torch.tensor(y)
    (gradient,) = torch.autograd.grad((residual ** 2).mean(), leaf)
    return gradient.numpy()


FACTOR_2 = "missing factor 2: ∂/∂w (xᵀw − y)² = 2(xᵀw − y)x, so ∇L = (2/n) Xᵀ(Xw − y)"
GRAD_SUM = "sum instead of mean: ∇L carries the 1/n of L, ∇L = (2/n) Xᵀ(Xw − y)"
GRAD_SIGN = "sign error: ∇L = (2/n) Xᵀ(Xw − y); (2/n) Xᵀ(y − Xw) is the descent direction, not the gradient"


def gradient_mistakes(w: np.ndarray, X: np.ndarray, y: np.ndarray) -> dict[str, Callable[[], np.ndarray]]:
    g = autograd_gradient(w, X, y)
    return {FACTOR_2: lambda: g / 2, GRAD_SUM: lambda: g * len(y), GRAD_SIGN: lambda: -g,
            FACTOR_2 + " (and the 1/n)": lambda: g * len(y) / 2}


@check("LR2", 4, "mse_gradient(w, X, y) matches torch autograd on hidden w, X, y", hidden_inputs=True, public=True,
       observes=("mse_gradient_{case}",))
def mse_gradient_matches_autograd(ctx: JudgeContext) -> None:
    ctx.require("mse_gradient")
    for case, w, X, y in _cases(ctx):
        call = f"mse_gradient(w of {len(w)}, X {shape_text(X)}, y of {len(y)})"
        error = ctx.call_error(f"mse_gradient_{case}")
        if error:
            fail(f"{call} {failure_text(error)}", detail=error.get("traceback"))
        got = ctx.array(f"mse_gradient_{case}", call)
        expected = autograd_gradient(w, X, y)
        if got.shape != expected.shape and got.size == expected.size:
            ctx.warn(f"mse_gradient returned shape {shape_text(got)}; w has shape {shape_text(expected)} (accepted).")
            got = got.reshape(expected.shape)
        if got.shape != expected.shape:
            fail(f"{call} returned shape {shape_text(got)}; ∇L has the shape of w, {shape_text(expected)}.",
                 expected=shape_text(expected), got=shape_text(got),
                 mistake="multiply by Xᵀ: ∇L = (2/n) Xᵀ(Xw − y) is a vector like w, not one value per example"
                 if got.size == len(y) else None)
        error_value = relative_error(got, expected)
        if error_value > RTOL:
            fail(f"{call} differs from autograd (relative error {error_value:.2g} > {RTOL:g}).",
                 expected=f"{shape_text(expected)}: (2/n) Xᵀ(Xw − y)", got=f"{shape_text(got)} values",
                 mistake=name_mistake(got, gradient_mistakes(w, X, y), MISTAKE_RTOL))


# ---------------------------------------------------------------------------------------------
# LR3 · fit_linreg(X, y, lr, steps) → (w, losses), and a figure of the loss curve
# ---------------------------------------------------------------------------------------------
def _fit(ctx: JudgeContext) -> tuple[np.ndarray, np.ndarray]:
    ctx.require("fit_linreg")
    error = ctx.call_error("fit")
    if error:
        fail(f"fit_linreg(X 200×3, y, lr=0.1, steps=300) {failure_text(error)}", detail=error.get("traceback"))
    return (ctx.array("w", "fit_linreg(...)[0] (the weights)"),
            ctx.array("losses", "fit_linreg(...)[1] (the loss per step)"))


@check("LR3", 1, "fit_linreg's losses are finite, one per step, and decrease", hidden_inputs=True, public=True,
       observes=("fit", "w", "losses"))
def losses_decrease(ctx: JudgeContext) -> None:
    _, losses = _fit(ctx)
    steps = ctx.inputs()["steps"]
    losses = losses.reshape(-1)
    if len(losses) not in (steps, steps + 1):
        fail(f"fit_linreg returned {len(losses)} losses for steps={steps}.", expected=f"{steps} (or {steps + 1})",
             got=str(len(losses)), mistake="append the loss once per step, inside the loop")
    if not np.all(np.isfinite(losses)):
        fail("the losses contain NaN or inf.", mistake="the step diverged: w ← w − lr ∇L, with the gradient of LR2")
    if not losses[-1] < losses[0]:
        fail(f"the loss goes from {losses[0]:.4g} to {losses[-1]:.4g}; gradient descent should lower it.",
             mistake="the update climbs the loss: w ← w − lr ∇L (minus)" if losses[-1] > losses[0] else None)


@check("LR3", 1, "fit_linreg's weights reach the least-squares solution", hidden_inputs=True,
       observes=("fit", "w", "losses"))
def weights_reach_least_squares(ctx: JudgeContext) -> None:
    w, _ = _fit(ctx)
    inputs = ctx.inputs()
    expected = np.asarray(ctx.ref().least_squares(inputs["X"], inputs["y"]))
    w = w.reshape(expected.shape) if w.size == expected.size else w
    error = relative_error(w, expected)
    if error > FIT_RTOL:
        fail(f"after {inputs['steps']} steps at lr={inputs['lr']:g} the weights are {error:.2g} (relative) from the "
             f"least-squares solution (tolerance {FIT_RTOL:g}).", expected="w ≈ argmin ‖Xw − y‖²",
             got=f"{shape_text(w)} weights",
             mistake="start from w = 0 and take exactly `steps` steps of w ← w − lr · mse_gradient(w, X, y)")


def _loss_curves(figures: list[FigureRecord]) -> list[dict[str, Any]]:
    """Axes with a curve of ≥ 10 points whose labels or title mention the loss."""
    found = []
    for figure in figures:
        for ax in figure.axes:
            words = " ".join([ax.get("xlabel", ""), ax.get("ylabel", ""), ax.get("title", ""), figure.suptitle]).lower()
            if "loss" in words and any(line.get("points", 0) >= 10 for line in ax.get("lines", [])):
                found.append(ax)
    return found


@check("LR3", 1, "a figure shows the loss curve (a labelled line of the loss per step)", public=True)
def loss_curve_figure(ctx: JudgeContext) -> None:
    if ctx.find_figures(lambda figures: bool(_loss_curves(figures))):
        return
    fail("no figure under LR3 shows the loss per step (a line of ≥ 10 points, with 'loss' in its labels or title).",
         mistake="plt.plot(losses); plt.xlabel('step'); plt.ylabel('MSE loss'); plt.show()")


CHECKS = RUBRIC.checks
RUBRIC.validate()
