"""ece685d-hw2: every check the CONTRACT lists for P1–P3, as small declarative claims.

Hidden inputs are drawn in :func:`hidden_inputs` from the run's seed; probes in the kernel call
the student's objects on them (``probes.py`` beside this module); the claims below
compare what came back with autograd (computed here, in float64) and with catalogues of known
wrong formulas, so a failing check names the likely mistake.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from graders.assignment import PartSpec
from graders.checks import Rubric, fail, not_run
from graders.judge import JudgeContext, name_mistake, relative_error, shape_text
from graders.mnist import load_mnist_arrays
from graders.observe import FigureRecord

def _problem(number: str) -> dict[str, Any]:
    """How a part is titled: ``P2``, ``**P2. Dataset**``, or ``Problem 2``."""
    return {"headings": (rf"(?<![\w])P\s*{number}(?![\w])",), "problem": number}


RUBRIC = Rubric(
    assignment="ece685d-hw2",
    title="ECE 685D HW2",
    parts=(
        PartSpec(
            "P1", "Backprop on a residual MLP", 20, 10,
            "Derive (a) ∂L/∂W₃ and ∂L/∂b₃, (b) the residual recursion e_{ℓ−1} = e_ℓ + W_ℓ δ_ℓ, and "
            "(c) ∂L/∂W_ℓ and ∂L/∂b_ℓ for ℓ = 1, 2 in terms of the forward pass.",
            ("P1", "Derivation", "Backprop"), **_problem("1"),
        ),
        PartSpec("P2", "Multi-view dataset", 30, figures=True, **_problem("2")),
        PartSpec(
            "P3", "Logistic regression by gradient descent and Newton's method", 30, 0,
            "Compare gradient descent, Newton's method and diagonal Newton in loss, test accuracy and "
            "runtime: what do you observe, and why?",
            ("P3", "Comparison"), figures=True, **_problem("3"),
        ),
    ),
)
check = RUBRIC.check

PARAM_NAMES = ("W1", "b1", "W2", "b2", "W3", "b3")
P1_ACTIVATIONS = ("tanh", "sin", "hardtanh", "leaky_relu")
"""One hidden case per activation: two smooth ones and two piecewise-linear 1-Lipschitz ones."""
GRADIENT_RTOL = 1e-5
"""‖student − autograd‖ / ‖autograd‖ in float64; 1e-5 leaves room for students who compute in float32."""
MISTAKE_RTOL = 1e-4
"""How close a wrong formula must come to the student's values to be named as the mistake."""
BCE_RTOL = 1e-4
"""Relative tolerance of the BCE functions: room for float32 and for an ε ≤ 1e-6 inside the logs; mistakes are O(1) off."""
P2_SAMPLES = 64
"""Items the probe draws (twice each) from the student's dataset; x1 and x2 are each judged on all of them."""
RESEMBLANCE_ABOVE_MEAN = 0.70
"""Fraction of one view's items more like their own source than the average other source.

Measured with blur and shift tolerance on 48 items per seed: reference augmentation 1.00, ±10% translations
1.00, SimCLR-strength crops (scale 0.08–1, 20°, blur) ≈ 0.82, views of the wrong image ≈ 0.43–0.53."""
RESEMBLANCE_BEST_IN_8 = 0.30
"""Fraction of one view's items whose source is the best match within a group of 8 (chance 0.125): reference
≥ 0.98, SimCLR-strength ≈ 0.5, wrong image ≈ 0.12–0.19. Both fractions must hold; with 64 items views of the
wrong image pass each with probability ≈ 1e-3 (> 3σ), both ≈ 1e-6, while SimCLR-strength crops fail ≈ 1%."""
MAX_SHIFT = 4
"""Pixels of translation forgiven when comparing a view with an image (crops and affine moves)."""
BLUR_SIGMA = 1.0
LABEL_AGREEMENT_BY_RESEMBLANCE = 0.5
"""When each source is only the MNIST image most like the views, the share of labels that must match its label
(pixel matching picks a look-alike of the same digit under strong augmentation; a wrong label matches ≈ 10%)."""
VIEWS_DIFFER_FRACTION = 0.75
"""Fraction of sampled items whose two views (or two draws) must differ."""
P3_CASES = ((40, 5), (25, 8))
"""(n, d) of the hidden logistic-regression problems."""


# ---------------------------------------------------------------------------------------------
# Hidden inputs (drawn in the grader from the run's seed)
# ---------------------------------------------------------------------------------------------
def _residual_case(rng: np.random.Generator, case: int, activation: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    N, m = int(rng.integers(5, 33)), int(rng.integers(3, 9))
    arrays = {
        f"X_{case}": rng.normal(size=(N, m)),
        f"Y_{case}": rng.normal(size=(N, 1)),
        f"W1_{case}": rng.normal(scale=1.2 / np.sqrt(m), size=(m, m)),
        f"b1_{case}": rng.normal(scale=0.5, size=m),
        f"W2_{case}": rng.normal(scale=1.2 / np.sqrt(m), size=(m, m)),
        f"b2_{case}": rng.normal(scale=0.5, size=m),
        f"W3_{case}": rng.normal(scale=1.0 / np.sqrt(m), size=(m, 1)),
        f"b3_{case}": rng.normal(size=1),
    }
    return {"N": N, "m": m, "activation": activation}, arrays


def _bce_case(rng: np.random.Generator, case: int, n: int, d: int) -> dict[str, np.ndarray]:
    X = rng.normal(size=(n, d))
    w_true = rng.normal(scale=0.8, size=d)
    y = (rng.random(n) < 1 / (1 + np.exp(-X @ w_true))).astype(np.float64)
    return {f"w_{case}": rng.normal(scale=0.5, size=d), f"X_{case}": X, f"y_{case}": y}


def hidden_inputs(seed: int, mnist_root: Path) -> dict[str, dict[str, Any]]:
    """Each part's hidden inputs; ``_mnist`` (for P2's source lookup) stays in the grader."""
    rng = np.random.default_rng(seed)
    p1: dict[str, Any] = {"cases": []}
    for case, activation in enumerate(P1_ACTIVATIONS):
        spec, arrays = _residual_case(rng, case, activation)
        p1["cases"].append(spec)
        p1.update(arrays)
    p3: dict[str, Any] = {"cases": len(P3_CASES)}
    for case, (n, d) in enumerate(P3_CASES):
        p3.update(_bce_case(rng, case, n, d))
    train, train_labels = load_mnist_arrays(train=True, root=mnist_root)
    test, test_labels = load_mnist_arrays(train=False, root=mnist_root)
    return {
        "_mnist": {"train": train, "train_labels": train_labels, "test": test, "test_labels": test_labels},
        "P1": p1,
        "P2": {"seed": int(rng.integers(0, 2**31 - 1)), "samples": P2_SAMPLES},
        "P3": p3,
    }


# ---------------------------------------------------------------------------------------------
# P1 · Backprop on a residual MLP
# ---------------------------------------------------------------------------------------------
NUMPY_ACTIVATIONS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]] = {
    "tanh": (np.tanh, lambda a: 1 - np.tanh(a) ** 2),
    "sin": (np.sin, np.cos),
    "hardtanh": (lambda a: np.clip(a, -1.0, 1.0), lambda a: ((a > -1) & (a < 1)).astype(np.float64)),
    "leaky_relu": (lambda a: np.where(a > 0, a, 0.5 * a), lambda a: np.where(a > 0, 1.0, 0.5)),
}
ACTIVATION_TEXT = {"tanh": "tanh", "sin": "sin", "hardtanh": "hardtanh (clip to [−1, 1])", "leaky_relu": "leaky ReLU with slope 0.5"}


def _torch_activation(name: str) -> Callable[[Any], Any]:
    import torch

    return {
        "tanh": torch.tanh,
        "sin": torch.sin,
        "hardtanh": torch.nn.functional.hardtanh,
        "leaky_relu": lambda a: torch.nn.functional.leaky_relu(a, 0.5),
    }[name]


def _case_arrays(inputs: dict[str, Any], case: int) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    return inputs[f"X_{case}"], inputs[f"Y_{case}"], {name: inputs[f"{name}_{case}"] for name in PARAM_NAMES}


def autograd_residual_gradients(
    X: np.ndarray, Y: np.ndarray, params: dict[str, np.ndarray], activation: str,
    transposed_forward: bool = False, skip: bool = True,
) -> dict[str, np.ndarray]:
    """∂L/∂p by torch autograd in float64 for the CONTRACT's network (or, flagged, one using W instead of Wᵀ
    or one without the skip connections: the gradients a consistent but mistaken derivation produces)."""
    import torch

    g = _torch_activation(activation)
    leaves = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in params.items()}
    h = torch.tensor(X, dtype=torch.float64)
    for layer in ("1", "2"):
        W = leaves["W" + layer].T if transposed_forward else leaves["W" + layer]
        h = g(h @ W + leaves["b" + layer]) + (h if skip else 0)
    y_hat = h @ leaves["W3"] + leaves["b3"]
    loss = ((torch.tensor(Y, dtype=torch.float64) - y_hat) ** 2).mean()
    grads = torch.autograd.grad(loss, [leaves[k] for k in PARAM_NAMES])
    return {k: grad.numpy() for k, grad in zip(PARAM_NAMES, grads)}


@dataclass(frozen=True)
class Backprop:
    """One way of writing the backward pass by hand; the defaults are the correct one."""

    factor: float = 2.0
    """∂(y − ŷ)²/∂ŷ = 2(ŷ − y): the factor (and its sign)."""
    divide_by_n: int = 1
    """Powers of N dividing ∂L/∂ŷ: 1 for the mean, 0 for a sum, 2 for a mean taken twice."""
    skip: bool = True
    """Whether the identity path carries e_ℓ back to e_{ℓ−1}."""
    derivative: str = "g_prime"
    """``g_prime`` (correct), ``g`` (g used for g′) or ``tanh`` (tanh′ hard-coded)."""
    derivative_at_h: bool = False
    """Whether g′ is evaluated at the layer's output h_ℓ instead of its pre-activation a_ℓ."""
    transposed_forward: bool = False
    """Whether the forward pass multiplies by W instead of Wᵀ (the backward formulas staying those of Wᵀ)."""


def manual_residual_gradients(
    X: np.ndarray, Y: np.ndarray, p: dict[str, np.ndarray], activation: str, how: Backprop = Backprop()
) -> dict[str, np.ndarray]:
    """The residual MLP's gradients written by hand in NumPy, correct or with one catalogued slip."""
    g, g_prime = NUMPY_ACTIVATIONS[activation]
    derivative = {"g_prime": g_prime, "g": g, "tanh": NUMPY_ACTIVATIONS["tanh"][1]}[how.derivative]
    W1, W2 = (p["W1"].T, p["W2"].T) if how.transposed_forward else (p["W1"], p["W2"])
    a1 = X @ W1 + p["b1"]
    h1 = g(a1) + X
    a2 = h1 @ W2 + p["b2"]
    h2 = g(a2) + h1
    r = h2 @ p["W3"] + p["b3"] - Y
    dy = how.factor * r / len(X) ** how.divide_by_n
    e2 = dy @ p["W3"].T
    d2 = e2 * derivative(h2 if how.derivative_at_h else a2)
    e1 = (e2 if how.skip else 0) + d2 @ p["W2"].T
    d1 = e1 * derivative(h1 if how.derivative_at_h else a1)
    return {"W1": X.T @ d1, "b1": d1.sum(0), "W2": h1.T @ d2, "b2": d2.sum(0), "W3": h2.T @ dy, "b3": dy.sum(0)}


TRANSPOSED = "the weight gradient is transposed: ∂L/∂W_ℓ = H_{ℓ−1}ᵀ δ_ℓ has the shape of W_ℓ (rows index the layer's inputs), not δ_ℓᵀ H_{ℓ−1}"
FORWARD_W = "the forward pass uses W instead of Wᵀ: a_ℓ = W_ℓᵀ h_{ℓ−1}, which for examples as rows is A_ℓ = H_{ℓ−1} W_ℓ"
FACTOR_2 = "missing factor 2 of the squared error: ∂L/∂ŷ_i = (2/N)(ŷ_i − y_i)"
SUM_NOT_MEAN = "sum instead of mean: L = (1/N) Σ (y − ŷ)², so ∂L/∂ŷ carries 1/N"
MEAN_TWICE = "divided by N twice (mean instead of sum over examples after the 1/N was already applied): the 1/N appears once"
SIGN = "sign error: ∂L/∂ŷ = (2/N)(ŷ − y), not (2/N)(y − ŷ)"
SKIP_DROPPED = "the identity path of the residual is dropped in backprop: e_{ℓ−1} = e_ℓ + W_ℓ δ_ℓ, the skip connection passes e_ℓ back unchanged"
G_NOT_G_PRIME = "g is used where g′ belongs: δ_ℓ = e_ℓ ⊙ g′(a_ℓ), not e_ℓ ⊙ g(a_ℓ)"
G_PRIME_AT_H = "g′ is evaluated at the layer's output h_ℓ: δ_ℓ = e_ℓ ⊙ g′(a_ℓ), at the pre-activation a_ℓ"
NO_SKIP_FORWARD = "the forward pass drops the skip connection: h_ℓ = g(a_ℓ) + h_{ℓ−1}"
TANH_HARDCODED = "g′ is hard-coded as tanh′ (1 − tanh²): use the g_prime argument"
B3_TWICE = "∂L/∂b₃ is averaged twice (divided by N twice): it is (2/N) Σ_i (ŷ_i − y_i), with one 1/N"
B3_SUMMED = "∂L/∂b₃ is summed without the 1/N (sum instead of mean): it is (2/N) Σ_i (ŷ_i − y_i)"


def residual_mistakes(X: np.ndarray, Y: np.ndarray, p: dict[str, np.ndarray], activation: str) -> dict[str, dict[str, Callable[[], np.ndarray]]]:
    """Parameter → {named mistake → the gradient that mistake produces}, for :func:`name_mistake`."""
    variants: dict[str, Callable[[], dict[str, np.ndarray]]] = {
        FACTOR_2: lambda: manual_residual_gradients(X, Y, p, activation, Backprop(factor=1.0)),
        SUM_NOT_MEAN: lambda: manual_residual_gradients(X, Y, p, activation, Backprop(divide_by_n=0)),
        MEAN_TWICE: lambda: manual_residual_gradients(X, Y, p, activation, Backprop(divide_by_n=2)),
        SIGN: lambda: manual_residual_gradients(X, Y, p, activation, Backprop(factor=-2.0)),
        SKIP_DROPPED: lambda: manual_residual_gradients(X, Y, p, activation, Backprop(skip=False)),
        G_NOT_G_PRIME: lambda: manual_residual_gradients(X, Y, p, activation, Backprop(derivative="g")),
        TANH_HARDCODED: lambda: manual_residual_gradients(X, Y, p, activation, Backprop(derivative="tanh")),
        FORWARD_W: lambda: autograd_residual_gradients(X, Y, p, activation, transposed_forward=True),
        FORWARD_W + " (the backward pass still uses the formulas for Wᵀ)":
            lambda: manual_residual_gradients(X, Y, p, activation, Backprop(transposed_forward=True)),
        G_PRIME_AT_H: lambda: manual_residual_gradients(X, Y, p, activation, Backprop(derivative_at_h=True)),
        NO_SKIP_FORWARD: lambda: autograd_residual_gradients(X, Y, p, activation, skip=False),
    }
    correct = manual_residual_gradients(X, Y, p, activation)
    found: dict[str, dict[str, Callable[[], np.ndarray]]] = {}
    for name in PARAM_NAMES:
        entries: dict[str, Callable[[], np.ndarray]] = {}
        if name == "b3":
            entries[B3_TWICE] = lambda: correct["b3"] / len(X)
            entries[B3_SUMMED] = lambda: correct["b3"] * len(X)
        if name in ("W1", "W2"):
            entries[TRANSPOSED] = lambda name=name: correct[name].T
        for text, make in variants.items():
            entries[text] = lambda make=make, name=name: make()[name]
        if name in ("W1", "W2"):
            entries[FORWARD_W + " (and its gradient transposed)"] = lambda name=name: variants[FORWARD_W]()[name].T
        found[name] = entries
    return found


def failure_text(error: dict[str, str]) -> str:
    """How a probed call failed: every argument form tried (CallFailed), or the one error raised."""
    if error.get("type") == "CallFailed":
        return f"failed {error['message']}"
    return f"raised {error['type']}: {error['message']}"


def _call_text(spec: dict[str, Any]) -> str:
    return (f"residual_mlp_gradients(X {spec['N']}×{spec['m']}, Y {spec['N']}×1, params with m = {spec['m']}, "
            f"g = {ACTIVATION_TEXT[spec['activation']]}, g_prime)")


def _student_gradient(ctx: JudgeContext, case: int, name: str, spec: dict[str, Any]) -> np.ndarray:
    """The student's ∂L/∂name for one case, or a failure that says why there is none."""
    call = _call_text(spec)
    error = ctx.call_error(f"case_{case}")
    if error:
        if error.get("type") == "NotADict":
            fail(f"{call} {error['message']}.", expected="a dict with keys W1, b1, W2, b2, W3, b3",
                 mistake="return {'W1': dW1, 'b1': db1, …} keyed like params.")
        if error.get("type") == "AutogradUnavailable":
            fail(f"{call} uses autograd ({error['message']}); P1 asks for the backward pass by hand, so gradients "
                 "computed by autograd earn no points.", expected="gradients computed by hand (no autograd)",
                 got="a call into autograd", mistake="write the backward pass yourself: δ₃ = (2/N)(ŷ − y), then "
                 "δ₂ = W₃δ₃ and δ_ℓ through g′(a_ℓ) and the skip connections, layer by layer.")
        fail(f"{call} {failure_text(error)}", detail=error.get("traceback"))
    got = ctx.obs.array(f"grad_{case}_{name}")
    if got is not None:
        return got
    conversion = ctx.call_error(f"grad_{case}_{name}")
    if conversion:
        fail(f"{call}['{name}'] could not be read as numbers: {conversion['message']}")
    keys = ctx.obs.get(f"keys_{case}") or []
    fail(f"{call} returned no gradient for `{name}` (keys: {', '.join(keys) or 'none'}).",
         expected=f"a key '{name}' holding ∂L/∂{name}")


def symbolic_shape(shape: tuple[int, ...], spec: dict[str, Any]) -> str:
    """A shape written with m and N where its sizes are the case's m or N (so messages read the same for every case)."""
    names = {spec["m"]: "m", spec["N"]: "N"}
    return "×".join(names.get(size, str(size)) for size in shape) or "scalar"


def _conform_shape(ctx: JudgeContext, got: np.ndarray, expected: np.ndarray, name: str, call: str, spec: dict[str, Any]) -> np.ndarray:
    """Accept a vector gradient in another vector shape (warned); a weight gradient must match W's shape."""
    if got.shape == expected.shape:
        return got
    vector = name.startswith("b") or (name == "W3" and got.shape == (expected.size,))
    if vector and got.size == expected.size:
        ctx.warn(f"∂L/∂{name} has shape {symbolic_shape(got.shape, spec)}; {name} has shape {symbolic_shape(expected.shape, spec)} "
                 "(same values, accepted; return the parameter's shape so that a step p − η∂L/∂p keeps it).")
        return got.reshape(expected.shape)
    mistake = None
    if name == "W3" and got.shape == expected.T.shape:
        mistake = TRANSPOSED
    elif name == "b3" and got.size > 1:
        mistake = "∂L/∂b₃ is not summed over the examples: it is one number, (2/N) Σ_i (ŷ_i − y_i)."
    elif name.startswith("b") and got.ndim == 2 and got.shape[1] == expected.size:
        mistake = f"∂L/∂{name} is not summed over the examples (rows): sum δ_ℓ over the batch."
    fail(f"{call}['{name}'] has shape {shape_text(got)}; {name} has shape {shape_text(expected)}.",
         expected=shape_text(expected), got=shape_text(got), mistake=mistake)


def check_residual_gradient(ctx: JudgeContext, name: str) -> None:
    """∂L/∂name matches autograd on every hidden case; otherwise name the likely mistake."""
    ctx.require("residual_mlp_gradients")
    inputs = ctx.inputs()
    for case, spec in enumerate(inputs["cases"]):
        X, Y, params = _case_arrays(inputs, case)
        call = _call_text(spec)
        got = _student_gradient(ctx, case, name, spec)
        expected = autograd_residual_gradients(X, Y, params, spec["activation"])[name]
        got = _conform_shape(ctx, got, expected, name, call, spec)
        error = relative_error(got, expected)
        if error > GRADIENT_RTOL:
            mistake = name_mistake(got, residual_mistakes(X, Y, params, spec["activation"])[name], MISTAKE_RTOL)
            fail(f"∂L/∂{name} from {call} differs from autograd (relative error {error:.2g} > {GRADIENT_RTOL:g}).",
                 expected=f"{shape_text(expected)} values of ∂L/∂{name} (float64 autograd)", got=f"{shape_text(got)} values",
                 mistake=mistake)


@check("P1", 4, "∂L/∂W1 matches autograd (tanh, sin, hardtanh, leaky ReLU; hidden N, m, values)", hidden_inputs=True, public=True,
       observes=("case_{case}", "grad_{case}_{name}", "keys_{case}"))
def gradient_W1_matches_autograd(ctx: JudgeContext) -> None:
    check_residual_gradient(ctx, "W1")


@check("P1", 3, "∂L/∂b1 matches autograd (tanh, sin, hardtanh, leaky ReLU; hidden N, m, values)", hidden_inputs=True, public=True,
       observes=("case_{case}", "grad_{case}_{name}", "keys_{case}"))
def gradient_b1_matches_autograd(ctx: JudgeContext) -> None:
    check_residual_gradient(ctx, "b1")


@check("P1", 4, "∂L/∂W2 matches autograd (tanh, sin, hardtanh, leaky ReLU; hidden N, m, values)", hidden_inputs=True, public=True,
       observes=("case_{case}", "grad_{case}_{name}", "keys_{case}"))
def gradient_W2_matches_autograd(ctx: JudgeContext) -> None:
    check_residual_gradient(ctx, "W2")


@check("P1", 3, "∂L/∂b2 matches autograd (tanh, sin, hardtanh, leaky ReLU; hidden N, m, values)", hidden_inputs=True, public=True,
       observes=("case_{case}", "grad_{case}_{name}", "keys_{case}"))
def gradient_b2_matches_autograd(ctx: JudgeContext) -> None:
    check_residual_gradient(ctx, "b2")


@check("P1", 3, "∂L/∂W3 matches autograd (tanh, sin, hardtanh, leaky ReLU; hidden N, m, values)", hidden_inputs=True, public=True,
       observes=("case_{case}", "grad_{case}_{name}", "keys_{case}"))
def gradient_W3_matches_autograd(ctx: JudgeContext) -> None:
    check_residual_gradient(ctx, "W3")


@check("P1", 3, "∂L/∂b3 matches autograd (tanh, sin, hardtanh, leaky ReLU; hidden N, m, values)", hidden_inputs=True, public=True,
       observes=("case_{case}", "grad_{case}_{name}", "keys_{case}"))
def gradient_b3_matches_autograd(ctx: JudgeContext) -> None:
    check_residual_gradient(ctx, "b3")


# ---------------------------------------------------------------------------------------------
# P2 · Multi-view dataset
# ---------------------------------------------------------------------------------------------
def _require_items(ctx: JudgeContext) -> None:
    """NOT_RUN unless `two_view_dataset` exists and has items the probe could draw."""
    ctx.require("two_view_dataset")
    error = ctx.call_error("len")
    if error:
        not_run(f"len(two_view_dataset) raised {error['type']}: {error['message']}")
    n = ctx.obs.get("len")
    if not isinstance(n, int) or n <= 0:
        not_run(f"two_view_dataset has no items (len is {n!r})")


def _item_layout(ctx: JudgeContext) -> dict[str, Any]:
    """Where x1, x2 and y sit in an item (as the probe found them), or NOT_RUN when no views could be found."""
    _require_items(ctx)
    error = ctx.call_error("items")
    if error:
        not_run(f"two_view_dataset[i] raised {error['type']}: {error['message']}", detail=error.get("traceback"))
    layout = ctx.obs.get("layout")
    if not isinstance(layout, dict):
        item = ctx.obs.get("item") or {}
        kinds = ", ".join(e.get("type", "?") for e in item.get("elements", [])) or item.get("kind", "?")
        not_run(f"two_view_dataset[i] is not (x1, x2, y): it holds {kinds}, so no views could be found")
    return layout


def _views(ctx: JudgeContext, key: str) -> np.ndarray:
    _item_layout(ctx)
    return ctx.array(key, "drawing items of two_view_dataset")


@check("P2", 3, "MNISTTwoView is a subclass of torch.utils.data.Dataset and two_view_dataset is an instance", public=True,
       observes=("class", "instance"))
def class_subclasses_dataset(ctx: JudgeContext) -> None:
    ctx.require("MNISTTwoView")
    info = ctx.obs.get("class") or {}
    if not info.get("is_class"):
        fail(f"`MNISTTwoView` is a {info.get('name')}, not a class.", mistake="define `class MNISTTwoView(Dataset): …`.")
    if not info.get("subclasses_dataset"):
        fail(f"`MNISTTwoView` does not subclass torch.utils.data.Dataset (its bases: {', '.join(info.get('bases', [])) or 'object'}).",
             mistake="write `class MNISTTwoView(torch.utils.data.Dataset):` so DataLoader and tooling recognise it.")
    ctx.require("two_view_dataset")
    instance = ctx.obs.get("instance") or {}
    if not instance.get("of_class"):
        fail(f"`two_view_dataset` is a {instance.get('type')}, not an MNISTTwoView.",
             mistake="build it as two_view_dataset = MNISTTwoView(…) over MNIST.")


@check("P2", 2, "len(two_view_dataset) > 0", public=True,
       observes=("len",))
def dataset_has_items(ctx: JudgeContext) -> None:
    ctx.require("two_view_dataset")
    error = ctx.call_error("len")
    if error:
        fail(f"len(two_view_dataset) raised {error['type']}: {error['message']}", mistake="define __len__ (e.g. return len(self.base)).")
    n = ctx.obs.get("len")
    if not isinstance(n, int) or n <= 0:
        fail(f"len(two_view_dataset) is {n!r}; expected a positive number of MNIST images.")


def _is_tensor_like(element: dict[str, Any]) -> bool:
    return bool(element.get("tensor"))


@check("P2", 4, "an item is a 3-tuple (x1, x2, y) with x1, x2 tensors of equal shape", public=True,
       observes=("item", "items", "layout", "len"))
def item_is_two_views_and_label(ctx: JudgeContext) -> None:
    layout = _item_layout(ctx)
    item = ctx.obs.get("item") or {}
    elements = item.get("elements", [])
    if layout.get("nested"):
        fail("two_view_dataset[i] is ((x1, x2), y); the contract's item is the flat 3-tuple (x1, x2, y).",
             mistake="return x1, x2, y rather than (x1, x2), y.")
    if item.get("length") == 4 and layout.get("original") is not None:
        fail("two_view_dataset[i] returns 4 values (original, x1, x2, y); the contract's item is the 3-tuple (x1, x2, y).",
             expected="(x1, x2, y)", got="(original, x1, x2, y)",
             mistake="keep the original image out of the item: show it in the figure by indexing the base MNIST dataset.")
    if item.get("length") != 3:
        fail(f"two_view_dataset[i] has {item.get('length')} elements ({', '.join(e['type'] for e in elements)}); expected (x1, x2, y).",
             expected="(x1, x2, y)")
    x1, x2 = (elements[i] for i in layout["views"])
    for label, element in (("x1", x1), ("x2", x2)):
        if not _is_tensor_like(element):
            fail(f"{label} is a {element.get('module')}.{element.get('type')}, not a tensor.",
                 mistake="finish the augmentation with transforms.ToTensor() (or v2.ToImage() + v2.ToDtype) so views are tensors.")
    if x1.get("shape") != x2.get("shape"):
        fail(f"x1 has shape {x1.get('shape')} and x2 has shape {x2.get('shape')}; the views must have equal shapes.",
             mistake="resize both views to the same size (e.g. RandomResizedCrop(28)).")


def _integer_labels(ctx: JudgeContext) -> tuple[np.ndarray, str | None]:
    """Labels as integers, and a sentence when their form breaks the contract (one-hot, float, several values)."""
    raw = _views(ctx, "labels")
    item = ctx.obs.get("item") or {}
    layout = ctx.obs.get("layout") or {}
    element = (item.get("elements") or [{}])[layout.get("label", -1)] if item.get("elements") else {}
    if raw.shape[1] == 1:
        problem = None
        if "float" in str(element.get("dtype", "")) or element.get("type") == "float" or not np.allclose(raw, np.round(raw)):
            problem = f"the label is a float ({element.get('repr', element.get('type'))}); the contract asks for an integer class"
        return np.round(raw[:, 0]).astype(np.int64), problem
    one_hot = raw.shape[1] == 10 and np.allclose(raw.sum(axis=1), 1) and np.allclose(raw.max(axis=1), 1)
    if one_hot:
        return raw.argmax(axis=1), "the label is one-hot encoded (10 values); the contract asks for the integer class y"
    return np.full(len(raw), -1), f"the label has {raw.shape[1]} values; the contract asks for one integer class"


@dataclass(frozen=True)
class SourceImages:
    """The images the sampled items were made from, and their labels, as the grader found them."""

    images: np.ndarray
    """K×28×28 float64."""
    labels: np.ndarray | None
    how: str
    """Where they came from, for messages."""
    by_resemblance: bool = False
    """True when no attribute held the sources and each is the MNIST image its views resemble most."""


def to_28x28(rows: np.ndarray, shape: list[int] | tuple[int, ...] | None = None) -> np.ndarray | None:
    """K×28×28 float64 from flattened images shaped ``shape`` (C×H×W, H×W×C, H×W or 784 values)."""
    rows = np.asarray(rows, dtype=np.float64)
    shape = tuple(shape) if shape else ((28, 28) if rows.shape[1] == 784 else None)
    if shape is None or int(np.prod(shape)) != rows.shape[1]:
        return None
    images = rows.reshape((len(rows), *shape))
    if images.ndim == 4:
        images = images.mean(axis=1) if shape[0] in (1, 3, 4) else images.mean(axis=3)
    if images.ndim != 3:
        return None
    if images.shape[1:] != (28, 28):
        from scipy.ndimage import zoom

        factors = (1, 28 / images.shape[1], 28 / images.shape[2])
        images = zoom(images, factors, order=1)[:, :28, :28]
    return images


def _unit_rows(images: np.ndarray) -> np.ndarray:
    rows = images.reshape(len(images), -1)
    rows = rows - rows.mean(axis=1, keepdims=True)
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def _blur(images: np.ndarray) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(images, sigma=(0, BLUR_SIGMA, BLUR_SIGMA))


def _shift(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    out = np.zeros_like(images)
    h, w = images.shape[1:]
    out[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = images[:, max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def resemblance(views: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """views × sources correlation of blurred images, the best over shifts of up to MAX_SHIFT pixels."""
    targets = _unit_rows(_blur(sources))
    blurred = _blur(views)
    best = np.full((len(views), len(sources)), -np.inf)
    for dy in range(-MAX_SHIFT, MAX_SHIFT + 1):
        for dx in range(-MAX_SHIFT, MAX_SHIFT + 1):
            best = np.maximum(best, _unit_rows(_shift(blurred, dy, dx)) @ targets.T)
    return best


def _mnist_pool(ctx: JudgeContext) -> tuple[np.ndarray, np.ndarray]:
    mnist = ctx.inputs("_mnist")
    return np.concatenate([mnist["train"], mnist["test"]]), np.concatenate([mnist["train_labels"], mnist["test_labels"]])


CANDIDATES = 16
"""MNIST images per view shortlisted by plain correlation before the shift-tolerant comparison."""


def closest_mnist(ctx: JudgeContext, *view_sets: np.ndarray) -> np.ndarray:
    """Index into the provisioned MNIST (train then test) of the image item i's views (one array per view) resemble most.

    Plain blurred correlation shortlists candidates for every view; the shift-tolerant :func:`resemblance`,
    summed over the item's views, picks among them (crops and rotations defeat plain correlation).
    """
    pool, _ = _mnist_pool(ctx)
    targets = _unit_rows(_blur(pool.astype(np.float64)))
    shortlists = [np.argsort(-(_unit_rows(_blur(views)) @ targets.T), axis=1)[:, :CANDIDATES] for views in view_sets]
    best = np.empty(len(view_sets[0]), dtype=np.int64)
    for i in range(len(best)):
        candidates = np.unique(np.concatenate([shortlist[i] for shortlist in shortlists]))
        score = sum(resemblance(views[i:i + 1], pool[candidates].astype(np.float64))[0] for views in view_sets)
        best[i] = candidates[int(np.argmax(score))]
    return best


def _source_images(ctx: JudgeContext) -> SourceImages:
    """The sampled items' source images: an attribute of the dataset, the item's own original, its index in MNIST, or resemblance."""
    pool, pool_labels = _mnist_pool(ctx)
    indices = np.asarray(ctx.obs.get("indices") or [], dtype=np.int64)
    for key, how in (("source_images", f"image i of {ctx.obs.get('source_how')}"), ("originals", "the original each item returns")):
        found = ctx.obs.array(key)
        images = to_28x28(found) if found is not None else None
        if images is not None:
            labels = ctx.obs.array("source_labels") if key == "source_images" else None
            if labels is None or labels.shape[1] != 1:
                labels = pool_labels[closest_mnist(ctx, images)]
            return SourceImages(images, np.asarray(labels).reshape(-1).astype(np.int64), how)
    views = _view_images(ctx)
    half = len(views) // 2
    aligned = index_alignment(ctx, views[:half], indices)
    if aligned is not None:
        split, offset = aligned
        mnist = ctx.inputs("_mnist")
        shown = f"; the views show image i {'+' if offset > 0 else '−'} {abs(offset)}" if offset else ""
        return SourceImages(mnist[split][indices].astype(np.float64), mnist[f"{split}_labels"][indices],
                            f"MNIST {split} image i, as the dataset indexes that split in order{shown}")
    best = closest_mnist(ctx, views[:half], views[half:])
    ctx.warn("no attribute of two_view_dataset held its source images (e.g. self.base); each item's source was taken "
             "to be the MNIST image its views resemble most.")
    return SourceImages(pool[best].astype(np.float64), pool_labels[best], "the MNIST image the views resemble most", True)


ALIGNMENT_OFFSETS = (0, 1, -1, 2, -2)
"""Offsets c tried for "item i shows image i + c of an MNIST split": 0 is a split in order, others an off-by-c mistake."""


def resembles(views: np.ndarray, sources: np.ndarray) -> bool:
    above, best = resemblance_fractions(resemblance(views, sources))
    return above >= RESEMBLANCE_ABOVE_MEAN and best >= RESEMBLANCE_BEST_IN_8


def index_alignment(ctx: JudgeContext, views: np.ndarray, indices: np.ndarray) -> tuple[str, int] | None:
    """(split, c) when the dataset has an MNIST split's length and item i's views show image i + c of it.

    With no attribute holding the source images, this is how a dataset that wraps a split in order is told
    from a random subset of the same length; c ≠ 0 is then reported by the resemblance check.
    """
    mnist = ctx.inputs("_mnist")
    for split in ("train", "test"):
        size = len(mnist[split])
        if ctx.obs.get("len") != size or not len(indices):
            continue
        for offset in ALIGNMENT_OFFSETS:
            if resembles(views, mnist[split][(indices + offset) % size].astype(np.float64)):
                return split, offset
    return None


def _view_images(ctx: JudgeContext) -> np.ndarray:
    """x1 then x2 of the sampled items as 2K×28×28 images."""
    shape = ctx.obs.get("view_shape")
    images = [to_28x28(_views(ctx, key), shape) for key in ("x1", "x2")]
    if any(i is None for i in images):
        not_run(f"views of shape {shape} could not be compared with 28×28 MNIST images")
    return np.concatenate(images)


@check("P2", 4, "the label is an integer equal to the label of the item's source image", public=True,
       observes=("indices", "item", "items", "labels", "layout", "len", "source_how", "source_images", "source_labels", "originals", "view_shape"))
def label_is_source_images_integer_label(ctx: JudgeContext) -> None:
    labels, problem = _integer_labels(ctx)
    sources = _source_images(ctx)
    agree = float(np.mean(labels == sources.labels)) if sources.labels is not None else 1.0
    needed = LABEL_AGREEMENT_BY_RESEMBLANCE if sources.by_resemblance else 1.0
    verdict = (f"its argmax matches the source's label in {agree:.0%} of {len(labels)} sampled items"
               if problem and "one-hot" in problem else "")
    if problem:
        fail(f"{problem}{' (' + verdict + ')' if verdict else ''}.", mistake=problem.split(";")[0] + ": return int(label).")
    if agree < needed:
        wrong = int(np.sum(labels != sources.labels))
        fail(f"for {wrong} of {len(labels)} sampled items the label differs from the label of {sources.how}.",
             expected="y = the label of the image both views are made from", got=f"{agree:.0%} agreement",
             mistake=("the views show a different image from the one the label belongs to: take the views and the label from the same index."
                      if sources.by_resemblance else "the label must come from the same index as the image the views are drawn from."))


def _fraction_differing(a: np.ndarray, b: np.ndarray) -> float:
    scale = np.maximum(np.abs(a).max(axis=1), np.abs(b).max(axis=1))
    return float(np.mean(np.abs(a - b).max(axis=1) > 1e-6 * np.maximum(scale, 1e-12)))


@check("P2", 3, "the two views of one item differ", public=True,
       observes=("items", "layout", "len", "x1", "x2", "item"))
def views_differ_within_item(ctx: JudgeContext) -> None:
    x1, x2 = _views(ctx, "x1"), _views(ctx, "x2")
    if x1.shape != x2.shape:
        not_run("x1 and x2 have different shapes")
    differ = _fraction_differing(x1, x2)
    if differ < VIEWS_DIFFER_FRACTION:
        fail(f"x1 equals x2 in {1 - differ:.0%} of {len(x1)} sampled items.", expected=f"different views in ≥ {VIEWS_DIFFER_FRACTION:.0%}",
             got=f"{differ:.0%}", mistake="apply the random augmentation twice (x1 = t(img); x2 = t(img)), not once for both views.")


@check("P2", 3, "drawing the same index twice gives new views (independent randomness)", public=True,
       observes=("items", "layout", "len", "x1", "x1_again", "item"))
def views_differ_between_draws(ctx: JudgeContext) -> None:
    first, again = _views(ctx, "x1"), _views(ctx, "x1_again")
    if first.shape != again.shape:
        not_run("the two draws have different shapes")
    differ = _fraction_differing(first, again)
    if differ < VIEWS_DIFFER_FRACTION:
        fail(f"two_view_dataset[i] returned the same x1 twice for {1 - differ:.0%} of {len(first)} sampled indices.",
             expected=f"new views in ≥ {VIEWS_DIFFER_FRACTION:.0%}", got=f"{differ:.0%}",
             mistake="the augmentation must draw fresh randomness at each call: do not reseed inside __getitem__ or cache the views.")


def resemblance_fractions(correlation: np.ndarray) -> tuple[float, float]:
    """(share of views more like their own source than the average other, share whose source is best in its group of 8)."""
    k = len(correlation)
    own = np.diag(correlation)
    others = (correlation.sum(axis=1) - own) / max(k - 1, 1)
    best = best_in_groups(correlation, 8)
    return float(np.mean(own > others)), float(np.mean(best)) if best else 1.0


@check("P2", 4, "each view resembles its own source image more than other images", public=True,
       observes=("indices", "items", "layout", "len", "source_how", "source_images", "source_labels", "view_shape", "x1", "x2", "originals", "item"))
def views_resemble_their_source(ctx: JudgeContext) -> None:
    views = _view_images(ctx)
    sources = _source_images(ctx)
    k = len(sources.images)
    for name, images in (("x1", views[:k]), ("x2", views[k:])):
        above, best = resemblance_fractions(resemblance(images, sources.images))
        if above >= RESEMBLANCE_ABOVE_MEAN and best >= RESEMBLANCE_BEST_IN_8:
            continue
        fail(f"{name} resembles its source ({sources.how}) more than the average other image in {above:.0%} of {k} items, "
             f"and its source is the best match within a group of 8 in {best:.0%}.",
             expected=f"≥ {RESEMBLANCE_ABOVE_MEAN:.0%} and ≥ {RESEMBLANCE_BEST_IN_8:.0%} (mild augmentations reach ≈ 100%)",
             got=f"{above:.0%} and {best:.0%}",
             mistake=(f"views of the wrong image: {name} of item i must be an augmentation of image i (the image whose label is returned)."
                      if above < 0.6 else "the augmentations are so strong that a view no longer looks like its digit; make them milder."))


def best_in_groups(correlation: np.ndarray, size: int) -> list[bool]:
    """For consecutive groups of ``size`` items: whether each view's own source is its best match in the group."""
    found = []
    for start in range(0, len(correlation) - size + 1, size):
        block = correlation[start:start + size, start:start + size]
        found.extend(bool(b) for b in block.argmax(axis=1) == np.arange(size))
    return found


WORKER_REASONS = (
    (("pickle", "Can't get attribute", "can't get local object"),
     "the dataset (or its transform) cannot be sent to worker processes: a lambda or a class defined inside a function "
     "cannot be pickled; define the class and its transforms at the top level of a cell"),
    (("Resource temporarily unavailable", "BlockingIOError", "can't start new thread", "Cannot allocate memory"),
     "worker processes could not be started: the grading sandbox limits processes, and this notebook had used them up"),
    (("Timeout", "timed out", "DataLoader timed out"),
     "the workers did not deliver a batch in time"),
    (("exited unexpectedly", "killed by signal", "bus error", "shared memory"),
     "a worker process died (out of memory or shared memory); keep __getitem__ light"),
)


def worker_failure_reason(error: dict[str, str]) -> str | None:
    """Why DataLoader workers failed, from the error's type and message (tracebacks mention fork/spawn regardless)."""
    text = f"{error.get('type')}: {error.get('message')}"
    for needles, reason in WORKER_REASONS:
        if any(n.lower() in text.lower() for n in needles):
            return reason
    return None


def _check_batches(ctx: JudgeContext, key: str, what: str) -> None:
    layout = _item_layout(ctx)
    error = ctx.call_error(key)
    if error:
        reason = worker_failure_reason(error) if key == "loader_workers" else None
        limit = ctx.obs.get("process_limit")
        if reason and "limits processes" in reason and isinstance(limit, list):
            reason += f" (at most {limit[0]} processes and threads)"
        if "PIL" in error.get("message", "") or "default_collate" in error.get("message", ""):
            reason = "the default collate cannot batch these items: return tensors (transforms.ToTensor()) and an int label"
        fail(f"{what} raised {error['type']}: {error['message'][:300]}", mistake=reason, detail=error.get("traceback"))
    batches = ctx.obs.get(key) or []
    if not batches:
        not_run(f"{what} yielded no batch")
    elements = batches[0].get("elements", [])
    if len(elements) <= max(layout["views"] + [layout["label"]]) or layout.get("nested"):
        fail(f"a batch of {what} has {len(elements)} elements; expected (x1, x2, y).")
    x1, x2, y = (elements[i] for i in (*layout["views"], layout["label"]))
    shapes = (x1.get("shape", []), x2.get("shape", []), y.get("shape", []))
    if len(shapes[0]) != 4 or shapes[0] != shapes[1] or shapes[0][0] != 8:
        fail(f"a batch of {what} holds views of shapes {shapes[0]} and {shapes[1]}; expected 8×C×H×W for both.",
             expected="8×C×H×W, 8×C×H×W, 8", got=f"{shapes[0]}, {shapes[1]}, {shapes[2]}",
             mistake="views need a channel dimension (1×28×28), as ToTensor() gives." if len(shapes[0]) == 3 else None)
    if not shapes[2] or shapes[2][0] != 8:
        fail(f"a batch of {what} holds labels of shape {shapes[2]}; expected 8.", expected="8", got=str(shapes[2]))


@check("P2", 3, "it works in a DataLoader with batch size 8 and shuffling (batches 8×C×H×W, 8×C×H×W, 8)", public=True,
       observes=("items", "layout", "len", "loader", "process_limit", "item"))
def dataloader_yields_batches_of_8(ctx: JudgeContext) -> None:
    _check_batches(ctx, "loader", "DataLoader(two_view_dataset, batch_size=8, shuffle=True)")


def _batch_shapes(ctx: JudgeContext, key: str) -> list[list[int]]:
    batches = ctx.obs.get(key) or [{}]
    return [element.get("shape", []) for element in batches[0].get("elements", [])]


@check("P2", 2, "it works in a DataLoader with num_workers=2", public=True,
       observes=("items", "layout", "len", "loader", "loader_workers", "pickle_error", "process_limit", "item"))
def dataloader_works_with_two_workers(ctx: JudgeContext) -> None:
    what = "DataLoader(two_view_dataset, batch_size=8, shuffle=True, num_workers=2)"
    if ctx.call_error("loader_workers") or ctx.call_error("loader"):
        _check_batches(ctx, "loader_workers", what)
    _item_layout(ctx)
    with_workers, without = _batch_shapes(ctx, "loader_workers"), _batch_shapes(ctx, "loader")
    if with_workers != without:
        fail(f"{what} yields batches shaped {with_workers}, but without workers {without}.")
    problem = ctx.obs.get("pickle_error")
    if problem:
        ctx.warn(f"two_view_dataset cannot be pickled ({problem}); workers work here (fork), but would fail where "
                 "workers are spawned (macOS, Windows): define the class and transforms at top level, without lambdas.")


def _digit_text(ax: dict[str, Any]) -> bool:
    text = " ".join([ax.get("xlabel", ""), ax.get("ylabel", ""), ax.get("title", ""), *ax.get("texts", [])])
    return any(ch.isdigit() for ch in text)


def grid_shape(figure: FigureRecord) -> tuple[int, int] | None:
    """(rows, columns) of the subplot grid holding the figure's images."""
    shapes = {tuple(ax["geometry"][:2]) for ax in figure.image_axes if ax.get("geometry")}
    return shapes.pop() if len(shapes) == 1 else None


def labelled_originals(figure: FigureRecord) -> int:
    """Rows of the figure whose first-column (original) image carries a digit label."""
    return sum(1 for ax in figure.image_axes if ax.get("geometry") and ax["geometry"][3] == 0 and _digit_text(ax))


@check("P2", 2, "a figure of 8 rows × 3 columns (original, x1, x2) with labels under the originals", public=True)
def figure_shows_8_rows_of_original_and_views(ctx: JudgeContext) -> None:
    def good(figures: list[FigureRecord]) -> bool:
        return any(grid_shape(f) == (8, 3) and len(f.image_axes) >= 24 and labelled_originals(f) >= 8 for f in figures)

    if ctx.find_figures(good):
        return
    figures = ctx.observations.figures
    grids = [f for f in figures if grid_shape(f) == (8, 3) and len(f.image_axes) >= 24]
    if grids:
        fail(f"the 8 × 3 figure labels {max(labelled_originals(f) for f in grids)} of its 8 originals with a digit.",
             mistake="put each original's label under it: axes[row, 0].set_xlabel(f'label {y}').")
    if any(grid_shape(f) == (3, 8) for f in figures):
        fail("the figure is 3 rows × 8 columns; the problem asks for 8 rows (one per example) × 3 columns (original, x1, x2).",
             mistake="plt.subplots(8, 3): one row per example.")
    best = max((len(f.image_axes) for f in figures), default=0)
    fail(f"no figure with 8 rows × 3 columns of images was found (the largest has {best} image panels).",
         expected="plt.subplots(8, 3) with original, x1, x2 per row", got=f"{best} image panels",
         mistake="draw one minibatch of 8: original, x1 and x2 side by side, with the label under the original.")


# ---------------------------------------------------------------------------------------------
# P3 · Logistic regression by gradient descent and Newton's method
# ---------------------------------------------------------------------------------------------
def _log_sigmoid(z: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -z)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.exp(_log_sigmoid(z))


def autograd_bce(w: np.ndarray, X: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Loss (a sum), gradient and Hessian of the binary cross-entropy by torch autograd, float64."""
    import torch

    Xt, yt = torch.tensor(X), torch.tensor(y)

    def loss(v: "torch.Tensor") -> "torch.Tensor":
        return torch.nn.functional.binary_cross_entropy_with_logits(Xt @ v, yt, reduction="sum")

    leaf = torch.tensor(w, requires_grad=True)
    value = loss(leaf)
    (gradient,) = torch.autograd.grad(value, leaf)
    hessian = torch.autograd.functional.hessian(loss, torch.tensor(w))
    return {"bce_loss": value.detach().numpy(), "bce_gradient": gradient.numpy(), "bce_hessian": hessian.numpy()}


MEAN_NOT_SUM = "mean instead of sum: the contract's L(D; w) is the SUM over examples (no 1/n)"
LIKELIHOOD_SIGN = "sign of the log-likelihood: L is the negative log-likelihood, ∇L = Xᵀ(σ(Xw) − y); Xᵀ(y − σ(Xw)) is the ascent direction"
NEGATIVE_CLASS_MISSING = "the negative-class term −(1 − y) log(1 − σ(wᵀx)) is missing"


def bce_mistakes(w: np.ndarray, X: np.ndarray, y: np.ndarray) -> dict[str, dict[str, Callable[[], np.ndarray]]]:
    """Contract name → {named mistake → what that mistake returns}."""
    z = X @ w
    s = _sigmoid(z)
    loss = float(np.sum(np.logaddexp(0.0, z) - y * z))
    gradient = X.T @ (s - y)
    weights = s * (1 - s)
    hessian = X.T @ (weights[:, None] * X)
    return {
        "bce_loss": {
            MEAN_NOT_SUM: lambda: np.asarray(loss / len(y)),
            LIKELIHOOD_SIGN: lambda: np.asarray(-loss),
            NEGATIVE_CLASS_MISSING: lambda: np.asarray(-np.sum(y * _log_sigmoid(z))),
            "the positive-class term −y log σ(wᵀx) is missing": lambda: np.asarray(-np.sum((1 - y) * _log_sigmoid(-z))),
        },
        "bce_gradient": {
            MEAN_NOT_SUM: lambda: gradient / len(y),
            LIKELIHOOD_SIGN: lambda: -gradient,
            NEGATIVE_CLASS_MISSING: lambda: -X.T @ (y * (1 - s)),
            "σ(Xw) − y is not multiplied by X: ∇L = Xᵀ(σ(Xw) − y)": lambda: s - y,
        },
        "bce_hessian": {
            "the Hessian lacks the σ(1 − σ) weights: ∇²L = Xᵀ diag(σ(z)(1 − σ(z))) X, not XᵀX": lambda: X.T @ X,
            MEAN_NOT_SUM: lambda: hessian / len(y),
            LIKELIHOOD_SIGN + " (so ∇²L is positive semi-definite)": lambda: -hessian,
            NEGATIVE_CLASS_MISSING + ": its curvature weights are y σ(1 − σ), not σ(1 − σ)": lambda: X.T @ ((y * weights)[:, None] * X),
            "only the diagonal of the Hessian is returned: bce_hessian must be the full d×d matrix": lambda: np.diag(np.diag(hessian)),
            "the weights are σ(z), not σ(z)(1 − σ(z))": lambda: X.T @ (s[:, None] * X),
            "the Hessian is the outer product of the gradient, not Xᵀ diag(σ(1 − σ)) X": lambda: np.outer(gradient, gradient),
        },
    }


BCE_EXPECTED = {
    "bce_loss": "the summed binary cross-entropy Σ −y log σ(wᵀx) − (1 − y) log(1 − σ(wᵀx))",
    "bce_gradient": "∂L/∂w = Xᵀ(σ(Xw) − y), a vector like w",
    "bce_hessian": "∂²L/∂w∂wᵀ = Xᵀ diag(σ(1 − σ)) X, a d×d matrix",
}


def check_bce_function(ctx: JudgeContext, name: str) -> None:
    """``name`` matches autograd on every hidden (w, X, y); otherwise name the likely mistake."""
    ctx.require(name)
    inputs = ctx.inputs()
    for case in range(inputs["cases"]):
        w, X, y = inputs[f"w_{case}"], inputs[f"X_{case}"], inputs[f"y_{case}"]
        call = f"{name}(w of {len(w)}, X {shape_text(X)}, y of {len(y)})"
        expected = autograd_bce(w, X, y)[name]
        error = ctx.call_error(f"{name}_{case}")
        if error:
            fail(f"{call} {failure_text(error)}", detail=error.get("traceback"))
        got = ctx.array(f"{name}_{case}", call)
        if got.size == expected.size and got.shape != expected.shape:
            got = got.reshape(expected.shape)
        error = relative_error(got, expected)
        if error > BCE_RTOL:
            fail(f"{call} differs from autograd (relative error {error:.2g} > {BCE_RTOL:g}).",
                 expected=f"{shape_text(expected)}: {BCE_EXPECTED[name]}", got=f"{shape_text(got)} values",
                 mistake=name_mistake(got, bce_mistakes(w, X, y)[name], MISTAKE_RTOL))


@check("P3", 4, "bce_loss matches autograd's summed BCE on hidden w, X, y", hidden_inputs=True, public=True,
       observes=("bce_loss_{case}",))
def bce_loss_matches_autograd(ctx: JudgeContext) -> None:
    check_bce_function(ctx, "bce_loss")


@check("P3", 5, "bce_gradient matches autograd on hidden w, X, y", hidden_inputs=True, public=True,
       observes=("bce_gradient_{case}",))
def bce_gradient_matches_autograd(ctx: JudgeContext) -> None:
    check_bce_function(ctx, "bce_gradient")


@check("P3", 5, "bce_hessian matches autograd on hidden w, X, y", hidden_inputs=True, public=True,
       observes=("bce_hessian_{case}",))
def bce_hessian_matches_autograd(ctx: JudgeContext) -> None:
    check_bce_function(ctx, "bce_hessian")


METHODS = ("gd", "newton", "newton_diag")
SERIES = ("loss", "accuracy", "time")


KEY_ALIASES = {
    "gd": ("gradient_descent", "GD"),
    "newton": ("Newton", "newton_full"),
    "newton_diag": ("diag_newton", "diagonal_newton", "newton_diagonal", "Newton_diag"),
    "loss": ("losses", "train_loss", "training_loss"),
    "accuracy": ("acc", "accuracies", "test_accuracy", "test_acc"),
    "time": ("times", "elapsed", "runtime", "wall_time"),
}
"""Other spellings of the contract's keys that are accepted, with a warning naming the contract key."""


def _entry(ctx: JudgeContext, record: dict[str, Any], key: str, where: str) -> Any:
    if key in record:
        return record[key]
    for alias in KEY_ALIASES[key]:
        if alias in record:
            ctx.warn(f"{where}['{alias}'] was graded as {where}['{key}']; the contract's key is '{key}'.")
            return record[alias]
    return None


def _histories(ctx: JudgeContext) -> dict[str, dict[str, np.ndarray]]:
    """histories[method][series] as float arrays, or a failure naming what is missing or unreadable."""
    ctx.require("histories")
    error = ctx.call_error("histories")
    if error:
        fail(f"`histories` could not be read: {error['message']}")
    value = ctx.obs.get("histories")
    if not isinstance(value, dict):
        fail("`histories` is not a dict keyed by 'gd', 'newton', 'newton_diag'.")
    found: dict[str, dict[str, np.ndarray]] = {}
    for method in METHODS:
        record = _entry(ctx, value, method, "histories")
        if not isinstance(record, dict) or "_type" in record:
            keys = f"keys: {', '.join(sorted(value))}" if value else "it is empty"
            fail(f"histories has no dict for '{method}' ({keys}).",
                 expected="histories['gd'], ['newton'], ['newton_diag'], each a dict of lists")
        series = {}
        for name in SERIES:
            raw = _entry(ctx, record, name, f"histories['{method}']")
            if isinstance(raw, str):
                fail(f"histories['{method}']['{name}'] could not be read as numbers ({raw}).")
            if not isinstance(raw, list):
                fail(f"histories['{method}'] has no list '{name}' (keys: {', '.join(sorted(record))}).",
                     expected="lists 'loss', 'accuracy' (test set) and 'time' (seconds since start)")
            series[name] = np.asarray([float(v) if not isinstance(v, str) else np.nan for v in raw])
        found[method] = series
    return found


@check("P3", 4, "histories holds equal-length finite loss, accuracy and time lists for gd, newton and newton_diag", public=True,
       observes=("histories",))
def histories_have_three_methods(ctx: JudgeContext) -> None:
    for method, series in _histories(ctx).items():
        lengths = {name: len(values) for name, values in series.items()}
        if len(set(lengths.values())) != 1 or lengths["loss"] < 2:
            fail(f"histories['{method}'] has lists of lengths {lengths}; expected equal lengths (one entry per iteration, ≥ 2).")
        for name, values in series.items():
            if not np.all(np.isfinite(values)):
                fail(f"histories['{method}']['{name}'] contains NaN or inf.",
                     mistake="the loss overflowed: compute it from the logits (softplus(z) − y z) or lower the step." if name == "loss" else None)


@check("P3", 2, "each method's time is non-decreasing (seconds since start)", public=True,
       observes=("histories",))
def time_is_cumulative(ctx: JudgeContext) -> None:
    for method, series in _histories(ctx).items():
        time = series["time"]
        if len(time) and time[0] > 1e6:
            fail(f"histories['{method}']['time'] starts at {time[0]:.3g}: these are clock readings, not seconds since start.",
                 mistake="subtract the start time: time.perf_counter() − start.")
        drops = int(np.sum(np.diff(time) < 0))
        if drops:
            per_iteration = drops >= 0.2 * (len(time) - 1) and np.all(time >= 0)
            fail(f"histories['{method}']['time'] decreases {drops} times; it must be non-decreasing (seconds since start).",
                 mistake=("time recorded per iteration instead of since start: accumulate the durations or record "
                          "time.perf_counter() − start, with start taken once before the loop.") if per_iteration else None)


@check("P3", 3, "each method's loss ends below where it started", public=True,
       observes=("histories",))
def loss_decreases_for_each_method(ctx: JudgeContext) -> None:
    for method, series in _histories(ctx).items():
        loss = series["loss"]
        if not loss[-1] < loss[0]:
            fail(f"histories['{method}']['loss'] goes from {loss[0]:.4g} to {loss[-1]:.4g}; it should decrease.",
                 mistake=("the update climbs the loss: gradient ascent instead of descent (w ← w − η∇L with ∇L = Xᵀ(σ(Xw) − y); "
                          "check the sign of the log-likelihood)") if loss[-1] > loss[0] else None)
    _warn_if_convergence_doubtful(ctx, _histories(ctx))


def _warn_if_convergence_doubtful(ctx: JudgeContext, histories: dict[str, dict[str, np.ndarray]]) -> None:
    """Loss curves that satisfy the contract yet an expert would doubt (never a deduction)."""
    gd, newton = histories["gd"]["loss"], histories["newton"]["loss"]
    rises = np.diff(gd) > 1e-3 * np.abs(gd[:-1]) + 1e-9
    if len(gd) > 2 and np.sum(rises) >= max(2, 0.1 * (len(gd) - 1)):
        ctx.warn(f"the gradient-descent loss rises at {int(np.sum(rises))} of {len(gd) - 1} iterations: on a convex loss that means "
                 "the step is too large for the summed loss (its gradient grows with n), or the features are not standardised.")
    if len(newton) and len(gd) and newton[-1] > 1.05 * gd[-1] + 1e-9:
        ctx.warn(f"Newton's method ends at a higher loss than gradient descent ({newton[-1]:.4g} vs {gd[-1]:.4g}): with the exact "
                 "Hessian it should converge in a few iterations; check the update w ← w − (∇²L)⁻¹∇L (or a damped/regularised solve).")


def _final_accuracy(ctx: JudgeContext, method: str, values: np.ndarray) -> float:
    final = float(values[-1])
    if 1.0 < np.nanmax(values) <= 100.0:
        ctx.warn(f"histories['{method}']['accuracy'] looks like percentages; it was divided by 100.")
        final /= 100.0
    return final


P3_TEST_SIZE = 171
"""Test examples of the problem's split: 30 % of scikit-learn's 569 breast-cancer cases, rounded up."""


@check("P3", 3, "each method's final test accuracy reaches the calibrated threshold", public=True,
       observes=("histories",))
def final_accuracy_reaches_threshold(ctx: JudgeContext) -> None:
    for method, series in _histories(ctx).items():
        final = _final_accuracy(ctx, method, series["accuracy"])
        ctx.require_threshold(f"P3.final_accuracy.{method}", final, f"histories['{method}']'s final test accuracy",
                 mistake="standardise the features (with training statistics), include a bias, and run enough iterations.")
        _warn_unless_a_test_fraction(ctx, method, final)


def _warn_unless_a_test_fraction(ctx: JudgeContext, method: str, accuracy: float) -> None:
    """The histories are the student's own numbers: an accuracy no count of correct test cases gives is doubtful."""
    correct = accuracy * P3_TEST_SIZE
    if abs(correct - round(correct)) > 1e-6 * P3_TEST_SIZE:
        ctx.warn(f"histories['{method}']'s final accuracy {accuracy:.6g} is not k/{P3_TEST_SIZE} for any count k of "
                 f"correct test cases: the problem's split (test size 30 %) has {P3_TEST_SIZE} test examples; was it "
                 "measured on another set, or averaged?")


@check("P3", 2, "diagonal Newton is a different method from Newton (its history differs)", public=True,
       observes=("histories",))
def newton_diag_differs_from_newton(ctx: JudgeContext) -> None:
    histories = _histories(ctx)
    newton, diagonal = histories["newton"]["loss"], histories["newton_diag"]["loss"]
    if newton.shape == diagonal.shape and np.allclose(newton, diagonal, rtol=1e-9, atol=0):
        fail("histories['newton_diag']['loss'] equals histories['newton']['loss'] at every iteration.",
             mistake="diagonal Newton uses the full Hessian: divide the gradient by diag(∇²L) only "
                     "(w ← w − η ∇L ⊘ diag(∇²L)), not solve with the whole matrix.")


def _comparison_axes(figures: list[FigureRecord]) -> list[dict[str, Any]]:
    """Axes that compare three or more methods: ≥ 3 curves, or ≥ 3 bars."""
    found = []
    for figure in figures:
        for ax in figure.axes:
            curves = sum(1 for line in ax.get("lines", []) if line.get("points", 0) >= 2)
            if curves >= 3 or ax.get("patches", 0) >= 3:
                found.append(ax)
    return found


def _mentions_time(ax: dict[str, Any]) -> bool:
    text = " ".join([ax.get("xlabel", ""), ax.get("ylabel", ""), ax.get("title", "")]).lower()
    return any(word in text for word in ("time", "second", "runtime", "(s)", "sec", "ms"))


@check("P3", 2, "a figure compares the three methods' loss, accuracy and runtime", public=True)
def comparison_figure_exists(ctx: JudgeContext) -> None:
    def good(figures: list[FigureRecord]) -> bool:
        axes = _comparison_axes(figures)
        return len(axes) >= 3 or (len(axes) >= 2 and any(_mentions_time(ax) for figure in figures for ax in figure.axes))

    if ctx.find_figures(good):
        return
    found = len(_comparison_axes(ctx.observations.figures))
    fail(f"found {found} plot(s) comparing three methods; expected loss, accuracy and runtime compared across gd, newton and newton_diag.",
         mistake="plot loss and accuracy per iteration for the three methods, and their runtime (e.g. loss against time, or time per method).")


CHECKS = RUBRIC.checks
RUBRIC.validate()
