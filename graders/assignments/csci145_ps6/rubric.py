"""csci145-ps6: every check the CONTRACT lists for 1A–2C, as small declarative claims.

Hidden inputs are drawn in :func:`hidden_inputs` from the run's seed; probes in the kernel call
the student's objects on them (``probes.py`` beside this module); the claims below
compare what came back with the reference solution and a catalogue of known wrong formulas.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from graders.assignment import PartSpec
from graders.assignments.csci145_ps6.scaling import scaling_table
from graders.checks import Rubric, fail, not_run
from graders.mnist import held_back_digits, load_mnist_arrays
from graders.judge import JudgeContext, name_mistake, relative_error, shape_text
from graders.observe import FigureRecord


def _part(problem: str, letter: str) -> dict[str, Any]:
    """How a part is titled: ``1C``, ``1.C``, ``1 (c)``, or ``Part C`` under ``Problem 1``."""
    return {"headings": (rf"(?<![\w.]){problem}\s*[.·\-]?\s*\(?[{letter}{letter.lower()}]\)?(?![\w])",),
            "problem": problem, "letter": letter}


RUBRIC = Rubric(
    assignment="csci145-ps6",
    title="CSCI 145 Problem Set 6",
    parts=(
        PartSpec("1A", "Loading MNIST", 10, **_part("1", "A")),
        PartSpec("1B", "Logistic regression", 20, figures=True, **_part("1", "B")),
        PartSpec("1C", "Reparameterization trick / Gaussian kernel", 25, figures=True, **_part("1", "C")),
        PartSpec("1D", "Summary", 0, 5, "Which variant trains more quickly, and which scales better with n?", ("1D", "Summary"),
                 heading_words=("summary",), reference_table=scaling_table, **_part("1", "D")),
        PartSpec("2A", "Sigmoid derivative", 5, 5, "Show that σ′(z) = σ(z)(1 − σ(z)).", ("2A",), **_part("2", "A")),
        PartSpec("2B", "Neural network of depth ℓ", 15, **_part("2", "B")),
        PartSpec("2C", "Empirical comparison", 15, 0, "What do you notice about depths 1, 2 and 3?", ("2C",), figures=True,
                 **_part("2", "C")),
    ),
)
check = RUBRIC.check

KERNEL_RTOL = 1e-4
"""Relative tolerance of gaussian_kernel against the float64 reference (students compute in float32)."""
K_MATCH_RTOL = 1e-3
SIGMOID_RTOL = 1e-6
MLP_RTOL = 1e-4
HELD_BACK = 500


# ---------------------------------------------------------------------------------------------
# Hidden inputs (drawn in the grader from the run's seed; labels never leave the grader)
# ---------------------------------------------------------------------------------------------
def hidden_inputs(seed: int, mnist_root: Path) -> dict[str, dict[str, Any]]:
    """Each part's hidden inputs; keys ending in ``_grader_only`` and the ``_mnist`` entry stay in the grader."""
    rng = np.random.default_rng(seed)
    images, _ = load_mnist_arrays(train=False, root=mnist_root)
    train_images, _ = load_mnist_arrays(train=True, root=mnist_root)
    held_images, held_labels = held_back_digits(mnist_root)  # never readable inside the sandbox
    pick = rng.choice(len(held_labels), size=min(HELD_BACK, len(held_labels)), replace=False)
    kernel_cases = [(5, 7, 3), (12, 9, 784), (8, 8, 16), (1, 4, 10)]
    one_c: dict[str, Any] = {"cases": len(kernel_cases), "sigmas": []}
    for case, (n1, n2, d) in enumerate(kernel_cases):
        X1 = rng.random((n1, d)) if d == 784 else rng.normal(size=(n1, d))
        X2 = rng.random((n2, d)) if d == 784 else rng.normal(size=(n2, d))
        typical = np.sqrt(2 * d * X1.var())
        one_c[f"X1_{case}"], one_c[f"X2_{case}"] = X1, X2
        one_c["sigmas"].append(round(float(typical * rng.uniform(0.4, 1.2)), 4))
    z_cases = [
        rng.normal(scale=3.0, size=7),
        rng.normal(scale=2.0, size=(4, 5)),
        np.array([-1000.0, -710.0, -50.0, -1e-3, 0.0, 1e-3, 50.0, 710.0, 1000.0]),
        rng.uniform(-800, 800, size=20),
    ]
    two_a: dict[str, Any] = {"cases": len(z_cases), **{f"z_{i}": z for i, z in enumerate(z_cases)}}
    mlp_cases = []
    two_b: dict[str, Any] = {}
    for case, layers in enumerate((1, 2, 3, 4)):
        d, m, k = (int(v) for v in rng.choice(np.arange(3, 17), size=3, replace=False))
        mlp_cases.append([layers, d, m, k])
        two_b[f"x_{case}"] = rng.normal(size=(6, d)).astype(np.float32)
    two_b["cases"] = mlp_cases
    return {
        "_mnist": {"train": train_images[:1000], "test": images[:100]},
        "1A": {},
        "1B": {"images": held_images[pick], "labels_grader_only": held_labels[pick]},
        "1C": one_c,
        "2A": two_a,
        "2B": two_b,
        "2C": {},
    }


# ---------------------------------------------------------------------------------------------
# 1A · Loading MNIST
# ---------------------------------------------------------------------------------------------
def _dataset_arrays(ctx: JudgeContext, name: str) -> tuple[np.ndarray, np.ndarray]:
    ctx.require(name, "1A")
    images = ctx.array(f"{name}.images", f"indexing `{name}`", "1A")
    labels = ctx.array(f"{name}.labels", f"indexing `{name}`", "1A")
    return images, labels


@check("1A", 2, "train_set has 1000 items and test_set has 100", public=True,
       observes=("test_set.len", "train_set.len"))
def datasets_have_contract_lengths(ctx: JudgeContext) -> None:
    for name, expected in (("train_set", 1000), ("test_set", 100)):
        ctx.require(name, "1A")
        got = ctx.obs.get(f"{name}.len")
        if got != expected:
            fail(f"len({name}) is {got}, expected {expected}.", expected=str(expected), got=str(got),
                 mistake=f"`{name}` holds the whole MNIST split: take a random subset of {expected} (e.g. torch.utils.data.Subset with random indices)." if isinstance(got, int) and got > expected else None)


@check("1A", 2, "items are (image, int label) with a 1×28×28 or 784-value image", public=True,
       observes=("test_set.item", "test_set.items", "train_set.item", "train_set.items", "train_set.labels"))
def items_are_image_label_pairs(ctx: JudgeContext) -> None:
    _warn_if_unbalanced(ctx)
    for name in ("train_set", "test_set"):
        ctx.require(name, "1A")
        item = ctx.obs.get(f"{name}.item") or {}
        error = ctx.obs.error(f"{name}.items")
        if error:
            fail(f"{name}[0]: {error['message']}.", expected="(image, label)")
        shape = item.get("image_shape") or []
        if int(np.prod(shape)) != 784:
            fail(f"{name}[0][0] has shape {shape}; expected 1×28×28 or 784 values.", expected="1×28×28 or 784", got=str(shape))
        if tuple(shape) == (28, 28):
            ctx.warn(f"{name} images are 28×28 without a channel dimension; the contract asks for 1×28×28 or 784 values.")
        label_shape = item.get("label_shape") or []
        if int(np.prod(label_shape)) != 1:
            fail(f"{name}[0][1] has shape {label_shape}; expected an integer label.", got=str(item.get("label_repr")),
                 mistake="the label is one-hot encoded; keep the integer class (nn.CrossEntropyLoss takes class indices).")


def _warn_if_unbalanced(ctx: JudgeContext) -> None:
    labels = ctx.obs_of("1A").array("train_set.labels")
    if labels is not None and len(labels) >= 500:
        counts = np.bincount(np.clip(labels, 0, 9), minlength=10)
        if counts.min() < 0.25 * len(labels) / 10:
            ctx.warn(f"train_set's classes are very unbalanced (per-digit counts {counts.tolist()}): is the draw really random?")


def _row_keys(images: np.ndarray) -> list[bytes]:
    return [hashlib.sha1(np.round(row, 4).astype(np.float32).tobytes()).digest() for row in images]


@check("1A", 2, "no image of test_set appears in train_set (compared by pixels)", public=True,
       observes=("test_set.images", "test_set.labels", "train_set.images", "train_set.labels"))
def test_images_not_in_train(ctx: JudgeContext) -> None:
    train, _ = _dataset_arrays(ctx, "train_set")
    test, _ = _dataset_arrays(ctx, "test_set")
    if train.shape[1:] != test.shape[1:]:
        not_run("train_set and test_set images have different sizes")
    shared = set(_row_keys(train)) & set(_row_keys(test))
    if shared:
        fail(f"{len(shared)} of the {len(test)} test images also appear in train_set.", expected="0 shared images", got=str(len(shared)),
             mistake="draw both sets from one random permutation (disjoint index ranges), or from different MNIST splits.")


def _zscore(rows: np.ndarray) -> np.ndarray:
    rows = rows.reshape(len(rows), -1).astype(np.float64)
    rows = rows - rows.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.where(norms == 0, 1, norms)


def first_rows_match(images: np.ndarray, mnist_images: np.ndarray, count: int = 20) -> int:
    """How many of the first ``count`` images equal MNIST's first rows (any pixel scaling)."""
    count = min(count, len(images), len(mnist_images))
    correlation = np.sum(_zscore(images[:count]) * _zscore(mnist_images[:count]), axis=1)
    return int(np.sum(correlation > 0.999))


@check("1A", 1, "the sets are random draws, not simply the first rows of MNIST in order", public=True,
       observes=("test_set.images", "test_set.labels", "train_set.images", "train_set.labels"))
def sets_are_random_draws(ctx: JudgeContext) -> None:
    mnist = ctx.inputs("_mnist")
    for name, size in (("train_set", 1000), ("test_set", 100)):
        images, _ = _dataset_arrays(ctx, name)
        for split in ("train", "test"):
            matches = first_rows_match(images, mnist[split])
            if matches >= 18:
                fail(f"{name} is the first {len(images)} images of the MNIST {split} split, in order.",
                     mistake=f"the problem asks for {size} randomly selected pairs: use torch.randperm / Subset with random indices.")


def _loader_matches(ctx: JudgeContext, loader: str, dataset: str) -> None:
    ctx.require(loader, "1A")
    error = ctx.obs.error(f"{loader}.batches")
    if error:
        fail(f"iterating `{loader}` failed: {error['type']}: {error['message']}")
    if ctx.obs.get(f"{loader}.mismatched_batches", 0):
        fail(f"some batches of `{loader}` have a different number of images and labels.")
    images, labels = _dataset_arrays(ctx, dataset)
    got_images = ctx.array(f"{loader}.images", f"iterating `{loader}`", "1A")
    got_labels = ctx.array(f"{loader}.labels", f"iterating `{loader}`", "1A")
    if len(got_images) != len(images):
        fail(f"one epoch of `{loader}` yields {len(got_images)} images; `{dataset}` has {len(images)}.",
             expected=str(len(images)), got=str(len(got_images)),
             mistake="drop_last=True drops the last partial batch" if len(got_images) < len(images) else "the loader is built over a different dataset")
    if got_images.shape[1:] == images.shape[1:] and sorted(_row_keys(got_images)) == sorted(_row_keys(images)):
        return
    if sorted(got_labels.tolist()) == sorted(labels.tolist()):
        ctx.warn(f"`{loader}` yields different pixels than `{dataset}[i]` (a random transform?); coverage was checked by labels.")
        return
    fail(f"one epoch of `{loader}` does not yield exactly the items of `{dataset}`.",
         mistake=f"build `{loader}` as DataLoader({dataset}, batch_size=..., shuffle=...).")


@check("1A", 3, "each loader's batches agree in size and cover its set exactly once per epoch", public=True,
       observes=("test_loader.batches", "test_loader.images", "test_loader.labels", "test_loader.mismatched_batches", "test_set.images", "test_set.labels", "train_loader.batches", "train_loader.images", "train_loader.labels", "train_loader.mismatched_batches", "train_set.images", "train_set.labels"))
def loaders_cover_each_set_once(ctx: JudgeContext) -> None:
    _loader_matches(ctx, "train_loader", "train_set")
    _loader_matches(ctx, "test_loader", "test_set")


# ---------------------------------------------------------------------------------------------
# 1B · Logistic regression
# ---------------------------------------------------------------------------------------------
def _matrix_params(params: list) -> tuple[list, list]:
    matrices = [(n, tuple(s)) for n, s in params if len(s) == 2]
    vectors = [(n, tuple(s)) for n, s in params if len(s) == 1]
    return matrices, vectors


@check("1B", 4, "logreg_model's only parameters are W (784×10 or 10×784) and an optional bias", public=True,
       observes=("parameters",))
def logreg_parameters_are_784_by_10(ctx: JudgeContext) -> None:
    ctx.require("logreg_model")
    params = ctx.obs.get("parameters") or []
    matrices, vectors = _matrix_params(params)
    described = ", ".join(f"{n} {shape_text(tuple(s))}" for n, s in params) or "none"
    others = [p for p in params if len(p[1]) not in (1, 2)]
    if len(matrices) != 1 or matrices[0][1] not in ((784, 10), (10, 784)) or others:
        fail(f"logreg_model has parameters: {described}.", expected="one 784×10 (or 10×784) weight and optionally a bias of 10",
             got=described, mistake="logistic regression is a single linear map: no hidden layers." if len(matrices) > 1 else None)
    if any(shape != (10,) for _, shape in vectors):
        fail(f"logreg_model's bias has shape {vectors}; expected 10.", got=described)


@check("1B", 3, "logreg_model maps a batch of B images to B×10 logits", public=True,
       observes=("logits",))
def logreg_outputs_batch_by_10(ctx: JudgeContext) -> None:
    ctx.require("logreg_model")
    logits = ctx.array("logits", "logreg_model(images)")
    n = len(ctx.inputs()["images"])
    if logits.shape != (n, 10):
        fail(f"logreg_model on {n} images returned shape {shape_text(logits)}.", expected=f"{n}×10", got=shape_text(logits))


def _losses(ctx: JudgeContext, contract: str, part: str | None = None) -> Any:
    ctx.require(contract, part)
    value = ctx.obs_of(part or ctx.part_id).get(contract.replace("logreg_", ""))
    error = ctx.call_error(contract.replace("logreg_", ""), part)
    if error:
        fail(f"`{contract}` could not be read as numbers: {error['message']}")
    return value


@check("1B", 4, "logreg_losses has 100 finite values and the last is below the first", public=True,
       observes=("losses",))
def logreg_losses_has_100_decreasing(ctx: JudgeContext) -> None:
    losses = _losses(ctx, "logreg_losses")
    if not isinstance(losses, list):
        fail(f"`logreg_losses` is not a list of numbers (got {type(losses).__name__}).")
    if len(losses) != 100:
        fail(f"len(logreg_losses) is {len(losses)}, expected 100 (one loss per training step).", expected="100", got=str(len(losses)),
             mistake="record the loss at every optimizer step, not once per epoch." if len(losses) < 100 else None)
    values = np.asarray([float(v) if not isinstance(v, str) else np.nan for v in losses])
    if not np.all(np.isfinite(values)):
        fail("logreg_losses contains NaN or infinite values.", mistake="the learning rate may be too large, or the loss is computed on probabilities instead of logits.")
    if not values[-1] < values[0]:
        fail(f"the last loss ({values[-1]:.4g}) is not below the first ({values[0]:.4g}): training did not reduce the loss.",
             mistake="check that optimizer.zero_grad(), loss.backward() and optimizer.step() run at every step.")
    if np.max(values) > 3 * values[0]:
        ctx.warn(f"the loss spikes to {np.max(values):.3g} (from {values[0]:.3g}): the learning rate may be too large.")
    tail = float(np.mean(values[-10:]))
    if tail > 0.8 * values[0]:
        ctx.warn(f"the loss barely falls over 100 steps ({values[0]:.3g} → {tail:.3g} averaged over the last 10): "
                 "the learning rate may be too small, or the model is not the one being optimised.")


@check("1B", 6, "logreg_model reaches the test-accuracy threshold on digits the grader holds back", hidden_inputs=True,
       observes=("logits",))
def logreg_accuracy_on_held_back(ctx: JudgeContext) -> None:
    ctx.require("logreg_model")
    logits = ctx.array("logits", "logreg_model(images)")
    labels = ctx.inputs()["labels_grader_only"]
    if logits.shape != (len(labels), 10):
        not_run(f"logreg_model returned {shape_text(logits)} logits, so accuracy cannot be measured")
    threshold = ctx.thresholds["1B.test_accuracy"]
    accuracy = float(np.mean(np.argmax(logits, axis=1) == labels))
    ctx.require_threshold("1B.test_accuracy", accuracy, f"accuracy on {len(labels)} held-back MNIST digits",
                          mistake="the model classifies unseen digits poorly: train it for the 100 steps, and feed it images scaled as in training.")
    if threshold.reference_median and accuracy < threshold.reference_median - 0.10:
        ctx.warn(f"held-back accuracy {accuracy:.3f} passes but is well below the reference's typical {threshold.reference_median:.3f}.")


def _digit_labelled(ax: dict[str, Any]) -> bool:
    text = " ".join([ax.get("title", ""), ax.get("xlabel", ""), ax.get("ylabel", ""), *ax.get("texts", [])])
    return any(ch.isdigit() for ch in text)


def _prediction_figure(figures: list[FigureRecord], minimum: int) -> FigureRecord | None:
    for figure in figures:
        labelled = [ax for ax in figure.image_axes if _digit_labelled(ax)]
        if len(labelled) >= minimum:
            return figure
    return None


@check("1B", 3, "a figure shows 10 test images, each titled or labelled with a digit", public=True)
def prediction_figure_has_10_labelled_digits(ctx: JudgeContext) -> None:
    if ctx.find_figures(lambda figures: _prediction_figure(figures, 10) is not None):
        return
    best = max((len(f.image_axes) for f in ctx.observations.figures), default=0)
    fail("no figure with 10 images each titled with a digit was found in the notebook's outputs.",
         expected="10 image panels with a predicted digit in each title", got=f"at most {best} image panels in one figure",
         mistake="plot 10 test images in subplots and set each title to the predicted digit (plt.title / ax.set_title).")


# ---------------------------------------------------------------------------------------------
# 1C · Reparameterization trick / Gaussian kernel
# ---------------------------------------------------------------------------------------------
def _sq_dists(X1: np.ndarray, X2: np.ndarray) -> np.ndarray:
    return np.maximum(np.sum(X1**2, 1)[:, None] + np.sum(X2**2, 1)[None, :] - 2 * X1 @ X2.T, 0.0)


KERNEL_FORMULA = "exp(−‖x1_i − x2_j‖² / (2σ²))"
"""The kernel exactly as the problem statement prints it."""


def stated_gaussian_kernel(X1: np.ndarray, X2: np.ndarray, sigma: float) -> np.ndarray:
    """The statement's own formula, exp(−‖x1_i − x2_j‖² / (2σ²)), in float64.

    Public checks compare with this, not with the reference solution: it reveals nothing the
    problem statement does not, so a student's ``check("1C")`` runs the same comparison as grading.
    """
    X1 = np.asarray(X1, dtype=np.float64).reshape(len(X1), -1)
    X2 = np.asarray(X2, dtype=np.float64).reshape(len(X2), -1)
    return np.exp(-_sq_dists(X1, X2) / (2 * float(sigma) ** 2))


def kernel_mistakes(X1: np.ndarray, X2: np.ndarray, sigma: float) -> dict[str, Any]:
    """Known wrong formulas for the Gaussian kernel, each named as what the student's code computes."""
    X1 = np.asarray(X1, dtype=np.float64).reshape(len(X1), -1)
    X2 = np.asarray(X2, dtype=np.float64).reshape(len(X2), -1)
    D = _sq_dists(X1, X2)
    return {
        "your kernel is exp(−‖x − x′‖²/σ²): the denominator should be 2σ², not σ²": lambda: np.exp(-D / sigma**2),
        "your kernel is exp(−‖x − x′‖²/(4σ²)): the denominator should be 2σ², not 4σ²": lambda: np.exp(-D / (4 * sigma**2)),
        "your kernel is exp(−‖x − x′‖·σ²/2): `/ 2 * sigma**2` multiplies by σ² (operator precedence); write `/ (2 * sigma**2)`":
            lambda: np.exp(-D * sigma**2 / 2),
        "your kernel uses the distance ‖x − x′‖ unsquared: the exponent should be −‖x − x′‖²/(2σ²)": lambda: np.exp(-np.sqrt(D) / (2 * sigma**2)),
        "your kernel is exp(−‖x − x′‖²/(2σ)): σ should be squared in the denominator, 2σ²": lambda: np.exp(-D / (2 * sigma)),
        "your kernel is exp(−σ‖x − x′‖²), σ multiplying: the bandwidth divides, exp(−‖x − x′‖²/(2σ²))": lambda: np.exp(-sigma * D),
        "your kernel is exp(+‖x − x′‖²/(2σ²)): the exponent needs a minus sign": lambda: np.exp(D / (2 * sigma**2)),
        "your kernel averages the squared differences over the d features (a mean): ‖x − x′‖² is their sum":
            lambda: np.exp(-D / X1.shape[1] / (2 * sigma**2)),
        "your kernel returns the exponent −‖x − x′‖²/(2σ²) without exp": lambda: -D / (2 * sigma**2),
        "your kernel matrix is transposed (n2×n1): rows should index X1 and columns X2": lambda: np.exp(-D / (2 * sigma**2)).T,
        "your kernel uses the dot product xᵀx′: the exponent should use the squared distance ‖x − x′‖²":
            lambda: np.exp(-(X1 @ X2.T) / (2 * sigma**2)),
    }


def named_failure(where: str, error: float, tolerance: float, mistake: str | None) -> str:
    """A failing formula check's message: the mistake named from the catalogue when one matches."""
    if mistake:
        return f"{where} is not the stated {KERNEL_FORMULA}: {mistake} (relative error {error:.2g})."
    return f"{where} differs from the stated {KERNEL_FORMULA} (relative error {error:.2g} > {tolerance:g})."


@check("1C", 7, f"gaussian_kernel computes the stated {KERNEL_FORMULA} on freshly drawn inputs (several shapes, σ ≠ 1, d ≠ 784)",
       hidden_inputs=True, public=True,
       observes=("K_{case}",))
def kernel_matches_reference(ctx: JudgeContext) -> None:
    # The name is kept so that gradebooks stay comparable; the comparison is with the statement's formula.
    ctx.require("gaussian_kernel")
    inputs = ctx.inputs()
    for case in range(inputs["cases"]):
        X1, X2, sigma = inputs[f"X1_{case}"], inputs[f"X2_{case}"], inputs["sigmas"][case]
        where = f"gaussian_kernel(X1 {shape_text(X1)}, X2 {shape_text(X2)}, sigma)"
        got = ctx.array(f"K_{case}", where)
        expected = stated_gaussian_kernel(X1, X2, sigma)
        got = got.reshape(expected.shape) if got.size == expected.size and got.ndim != 2 else got
        error = relative_error(got, expected)
        if error > KERNEL_RTOL:
            mistake = name_mistake(got, kernel_mistakes(X1, X2, sigma), KERNEL_RTOL * 10)
            fail(named_failure(where, error, KERNEL_RTOL, mistake),
                 expected=f"{shape_text(expected)} matrix with entries {KERNEL_FORMULA}",
                 got=f"{shape_text(got)} matrix", mistake=mistake)


def _K_train(ctx: JudgeContext) -> np.ndarray:
    ctx.require("K_train")
    return ctx.array("K_train", "reading `K_train`")


@check("1C", 4, "K_train is symmetric with a unit diagonal and positive semi-definite", public=True,
       observes=("1A:train_set.len", "K_train"))
def K_train_is_valid_kernel(ctx: JudgeContext) -> None:
    K = _K_train(ctx)
    n = ctx.obs_of("1A").get("train_set.len") or 1000
    if K.ndim != 2 or K.shape[0] != K.shape[1]:
        fail(f"K_train has shape {shape_text(K)}; expected n×n with n = {n}.", expected=f"{n}×{n}", got=shape_text(K))
    if K.shape[0] != n:
        fail(f"K_train is {shape_text(K)} but train_set has {n} images.", expected=f"{n}×{n}", got=shape_text(K))
    if relative_error(K, K.T) > 1e-5:
        fail("K_train is not symmetric.", mistake="K_train must be the kernel of the training images with themselves: gaussian_kernel(X_train, X_train, σ).")
    diagonal = np.abs(np.diag(K) - 1).max()
    if diagonal > 1e-4:
        fail(f"K_train's diagonal differs from 1 by up to {diagonal:.3g}.", mistake="your kernel's diagonal is not exp(−0) = 1: a term is added to or scales the exponential (a Gaussian kernel is 1 for identical images).")
    smallest = float(np.linalg.eigvalsh(K).min())
    if smallest < -1e-3 * max(1.0, float(np.abs(np.diag(K)).max())) * len(K) ** 0.5:
        fail(f"K_train has a negative eigenvalue ({smallest:.3g}): it is not positive semi-definite.")
    _warn_if_identity(ctx, K)


def _warn_if_identity(ctx: JudgeContext, K: np.ndarray) -> bool:
    off = K[~np.eye(len(K), dtype=bool)] if len(K) > 1 else np.zeros(1)
    if float(np.mean(off)) > 0.98:
        ctx.warn(f"K_train is nearly constant (mean off-diagonal {float(np.mean(off)):.3f}): σ is very large for the pixel scale, "
                 "so every image looks alike to the kernel.")
    if float(np.mean(off)) < 1e-3:
        ctx.warn(f"K_train is nearly the identity (mean off-diagonal {float(np.mean(off)):.1e}): σ is too small for the pixel scale, "
                 "so every image looks unrelated to every other; try σ near the median distance between images.")
        return True
    return False


def _x_candidates(ctx: JudgeContext) -> dict[str, np.ndarray]:
    found: dict[str, np.ndarray] = {}
    for name in (ctx.obs.get("candidates") or {}).get("X", []):
        value = ctx.obs.array(f"X.{name}")
        if value is not None:
            found[f"`{name}`"] = value.astype(np.float64)
    train = ctx.obs_of("1A").array("train_set.images")
    if train is not None:
        train = train.reshape(len(train), -1).astype(np.float64)
        found["the images of train_set"] = train
        found["the images of train_set × 255"] = train * 255
        found["the images of train_set / 255"] = train / 255
    return found


@check("1C", 3, "K_train equals the stated kernel of the training images with themselves, at your sigma", public=True,
       observes=("1A:train_set.images", "K_train", "X.{name}", "candidates", "sigma"))
def K_train_matches_gaussian_kernel_of_training_images(ctx: JudgeContext) -> None:
    K = _K_train(ctx)
    ctx.require("sigma")
    sigma = ctx.obs.get("sigma")
    if not isinstance(sigma, (int, float)) or not sigma > 0:
        fail(f"`sigma` is {sigma!r}; expected a positive float.")
    candidates = {k: v for k, v in _x_candidates(ctx).items() if len(v) == len(K)}
    if not candidates:
        not_run("no matrix of training images with one row per row of K_train was found to recompute it")
    best = (np.inf, None, None)
    for label, X in candidates.items():
        expected = stated_gaussian_kernel(X, X, float(sigma))
        error = relative_error(K, expected)
        if error <= K_MATCH_RTOL:
            return
        best = min(best, (error, label, X), key=lambda t: t[0])
    mistake = name_mistake(K, kernel_mistakes(best[2], best[2], float(sigma)), K_MATCH_RTOL * 10) if best[2] is not None else None
    named = f": {mistake}" if mistake else ""
    fail(f"K_train differs from {KERNEL_FORMULA} of X with itself at sigma = {sigma:g}, for every candidate X "
         f"(closest: {best[1]}, relative error {best[0]:.2g}){named}.",
         expected=f"relative error ≤ {K_MATCH_RTOL:g}", got=f"{best[0]:.2g}", mistake=mistake)


@check("1C", 2, "K_test is 100×n: test images against training images", public=True,
       observes=("1A:train_set.len", "K_test"))
def K_test_has_shape_100_by_n(ctx: JudgeContext) -> None:
    ctx.require("K_test")
    K = ctx.array("K_test", "reading `K_test`")
    n = ctx.obs_of("1A").get("train_set.len") or 1000
    if K.shape != (100, n):
        fail(f"K_test has shape {shape_text(K)}; expected 100×{n}.", expected=f"100×{n}", got=shape_text(K),
             mistake="K_test is transposed: rows are test images, columns training images." if K.shape == (n, 100) else None)


@check("1C", 2, "kernel_model takes rows of a kernel matrix: input size n", public=True,
       observes=("1A:train_set.len", "kernel_model.parameters", "train_logits"))
def kernel_model_takes_n_inputs(ctx: JudgeContext) -> None:
    ctx.require("kernel_model")
    n = ctx.obs_of("1A").get("train_set.len") or 1000
    params = ctx.obs.get("kernel_model.parameters") or []
    matrices, _ = _matrix_params(params)
    if not any(n in shape for _, shape in matrices):
        got = ", ".join(f"{name} {shape_text(s)}" for name, s in matrices) or "no weight matrix"
        fail(f"kernel_model has {got}; its input size must be n = {n}.", expected=f"a weight with a dimension of {n}", got=got,
             mistake="the model's input is a row of K (n numbers), not an image (784 pixels)." if any(784 in s for _, s in matrices) else None)
    logits = ctx.array("train_logits", "kernel_model(K_train)")
    if logits.shape != (n, 10):
        fail(f"kernel_model(K_train) returned {shape_text(logits)}; expected {n}×10.")


def _accuracy_against(logits: np.ndarray, label_sets: dict[str, np.ndarray]) -> tuple[float, str]:
    best = (-1.0, "")
    for name, labels in label_sets.items():
        if len(labels) == len(logits):
            best = max(best, (float(np.mean(np.argmax(logits, 1) == labels)), name))
    return best


@check("1C", 3, "kernel_model trained full-batch reaches the train-accuracy threshold on K_train", public=True,
       observes=("1A:train_set.labels", "candidates", "train_logits", "y.{name}", "K_train"))
def kernel_model_train_accuracy(ctx: JudgeContext) -> None:
    ctx.require("kernel_model")
    logits = ctx.array("train_logits", "kernel_model(K_train)")
    labels = {"train_set labels": ctx.obs_of("1A").array("train_set.labels")}
    labels.update({f"`{n}`": ctx.obs.array(f"y.{n}") for n in (ctx.obs.get("candidates") or {}).get("y", [])})
    labels = {k: v for k, v in labels.items() if v is not None}
    if not labels:
        not_run("no training labels were found to measure accuracy (train_set is missing)")
    accuracy, _ = _accuracy_against(logits.reshape(len(logits), -1), labels)
    if accuracy < ctx.thresholds["1C.train_accuracy"].value:
        identity = _warn_if_identity(ctx, ctx.obs.array("K_train")) if ctx.obs.array("K_train") is not None else False
        ctx.require_threshold("1C.train_accuracy", accuracy, "kernel_model's accuracy on K_train",
             mistake="σ is too small for the pixel scale: K_train is nearly the identity." if identity else "train full-batch on K_train for enough steps (hundreds with Adam), and check that σ is not too large (a σ near half the median distance between images works well).")


@check("1C", 3, "kernel_model reaches the test-accuracy threshold on K_test against the test labels", public=True,
       observes=("1A:test_set.labels", "test_logits"))
def kernel_model_test_accuracy(ctx: JudgeContext) -> None:
    ctx.require("kernel_model")
    ctx.require("K_test")
    logits = ctx.array("test_logits", "kernel_model(K_test)")
    labels = ctx.obs_of("1A").array("test_set.labels")
    if labels is None or len(labels) != len(logits):
        not_run("test_set labels matching K_test's rows were not found")
    accuracy = float(np.mean(np.argmax(logits.reshape(len(logits), -1), 1) == labels))
    ctx.require_threshold("1C.test_accuracy", accuracy, "kernel_model's accuracy on K_test",
             mistake="K_test must compare test images with the *training* images, in the same order as K_train's columns.")
    threshold = ctx.thresholds["1C.test_accuracy"]
    if threshold.reference_median and accuracy < threshold.reference_median - 0.15:
        ctx.warn(f"test accuracy {accuracy:.3f} passes but is far below the reference's typical {threshold.reference_median:.3f}: "
                 "an overfitted kernel model (σ too small, or too many steps without regularisation) fits K_train but not K_test.")


@check("1C", 1, "a figure shows kernel-model predictions on test images", public=True)
def kernel_prediction_figure_exists(ctx: JudgeContext) -> None:
    if ctx.find_figures(lambda figures: _prediction_figure(figures, 1) is not None):
        return
    fail("no figure of test images labelled with predicted digits was found.",
         mistake="plot a few test images with the kernel model's predictions as titles.")


# ---------------------------------------------------------------------------------------------
# 2A · Sigmoid derivative
# ---------------------------------------------------------------------------------------------
def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.where(z >= 0, 1 / (1 + np.exp(-np.abs(z))), np.exp(-np.abs(z)) / (1 + np.exp(-np.abs(z))))


def autograd_sigmoid_derivative(z: np.ndarray) -> np.ndarray:
    import torch

    t = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(torch.sigmoid(t).sum(), t)
    return grad.numpy()


def sigmoid_mistakes(z: np.ndarray) -> dict[str, Any]:
    s = _sigmoid(z)
    return {
        "your derivative is σ(z)(1 + σ(z)): the sign inside should be minus, σ(z)(1 − σ(z))": lambda: s * (1 + s),
        "your derivative is −σ(z)(1 − σ(z)): the result should not be negated": lambda: -s * (1 - s),
        "your derivative is σ(z)²: it should be σ(z)(1 − σ(z))": lambda: s**2,
        "your function returns σ(z) itself: the derivative is σ(z)(1 − σ(z))": lambda: s,
        "your function returns 1 − σ(z): the derivative is σ(z)(1 − σ(z))": lambda: 1 - s,
        "your derivative is z(1 − z): apply σ first, σ(z)(1 − σ(z))": lambda: z * (1 - z),
    }


@check("2A", 3, "sigmoid_derivative matches autograd on hidden tensors", hidden_inputs=True, public=True,
       observes=("out_{case}", "source"))
def sigmoid_derivative_matches_autograd(ctx: JudgeContext) -> None:
    ctx.require("sigmoid_derivative")
    inputs = ctx.inputs()
    for case in (0, 1):
        z = inputs[f"z_{case}"]
        got = ctx.array(f"out_{case}", f"sigmoid_derivative(z of shape {shape_text(z)})")
        expected = autograd_sigmoid_derivative(z)
        error = relative_error(got, expected)
        if error > SIGMOID_RTOL:
            fail(f"sigmoid_derivative(z of shape {shape_text(z)}) differs from autograd (relative error {error:.2g} > {SIGMOID_RTOL:g}).",
                 expected=f"{shape_text(expected)} values of σ(z)(1 − σ(z))", got=f"{shape_text(got)} values",
                 mistake=name_mistake(got, sigmoid_mistakes(z), 1e-4))
    source = str(ctx.obs.get("source", ""))
    if "backward" in source or "autograd" in source:
        ctx.warn("sigmoid_derivative appears to use autograd; the problem asks for the formula written by hand.")


def _formula_right_in_normal_range(ctx: JudgeContext) -> bool:
    got = ctx.obs.array("out_0")
    return got is not None and relative_error(got, autograd_sigmoid_derivative(ctx.inputs()["z_0"])) <= SIGMOID_RTOL


@check("2A", 2, "sigmoid_derivative stays finite for large |z| (±50 … ±1000); the formula itself is judged by the autograd check",
       hidden_inputs=True, public=True,
       observes=("out_{case}",))
def sigmoid_derivative_stable_at_large_inputs(ctx: JudgeContext) -> None:
    ctx.require("sigmoid_derivative")
    inputs = ctx.inputs()
    for case in (2, 3):
        z = inputs[f"z_{case}"]
        got = ctx.array(f"out_{case}", "sigmoid_derivative on large |z|")
        if not np.all(np.isfinite(got)):
            bad = z.reshape(-1)[~np.isfinite(got.reshape(-1))][:3] if got.size == z.size else []
            fail(f"sigmoid_derivative returned NaN or inf for large |z| (e.g. z = {', '.join(f'{v:g}' for v in bad)}).",
                 mistake="exp(−z) overflows for z ≪ 0: compute σ with torch.sigmoid (or a numerically stable form) and then σ(1 − σ).")
        if not _formula_right_in_normal_range(ctx):
            # A wrong formula is deducted by the autograd check; here only finiteness counts, and the
            # pass must not read as if the values were right.
            ctx.warn("only finiteness was judged at large |z|: the values there are finite but not σ(z)(1 − σ(z)), "
                     "because the formula is wrong (the autograd check deducts that, once).")
            continue
        expected = autograd_sigmoid_derivative(z)
        if got.shape != expected.shape or np.max(np.abs(got - expected)) > 1e-12 + 1e-6 * np.abs(expected).max():
            fail("sigmoid_derivative is inaccurate for large |z|.", expected="values within 1e-6 of autograd", got=f"max deviation {np.max(np.abs(got - expected)) if got.shape == expected.shape else 'shape ' + shape_text(got)}")


# ---------------------------------------------------------------------------------------------
# 2B · Neural network of depth ℓ
# ---------------------------------------------------------------------------------------------
def expected_weight_shapes(layers: int, d: int, m: int, k: int) -> list[tuple[int, int]]:
    if layers == 1:
        return [(k, d)]
    return [(m, d)] + [(m, m)] * (layers - 2) + [(k, m)]


def _mlp_case(ctx: JudgeContext, case: int) -> tuple[list, list[np.ndarray], list]:
    ctx.require("make_mlp")
    layers, d, m, k = ctx.inputs()["cases"][case]
    error = ctx.call_error(f"net_{case}")
    if error:
        fail(f"make_mlp({layers}, {d}, {m}, {k}) raised {error['type']}: {error['message']}", detail=error.get("traceback"))
    params = ctx.obs.get(f"params_{case}")
    if params is None:
        not_run(f"make_mlp({layers}, {d}, {m}, {k}) returned nothing the grader could inspect")
    arrays = [ctx.obs.array(f"p_{case}_{i}") for i in range(len(params))]
    return params, arrays, [layers, d, m, k]


@check("2B", 6, "make_mlp builds ℓ weight matrices of shapes m×d, m×m …, k×m (k×d for ℓ = 1)", hidden_inputs=True, public=True,
       observes=("net_{case}", "p_{case}_{index}", "params_{case}"))
def mlp_weight_shapes_match_depth(ctx: JudgeContext) -> None:
    for case in range(len(ctx.inputs()["cases"])):
        params, _, (layers, d, m, k) = _mlp_case(ctx, case)
        shapes = [tuple(s) for _, s in params if len(s) == 2]
        expected = expected_weight_shapes(layers, d, m, k)
        transposed = [tuple(reversed(s)) for s in shapes]
        if shapes == expected:
            continue
        if transposed == expected:
            ctx.warn("weights are stored transposed (in×out); the formula W x uses out×in.")
            continue
        mistake = None
        if len(shapes) == layers + 1:
            mistake = f"off-by-one depth: ℓ = {layers} means {layers} weight matrices (ℓ − 1 ReLUs), not {layers} hidden layers."
        elif len(shapes) == layers - 1:
            mistake = f"off-by-one depth: ℓ = {layers} needs {layers} weight matrices."
        fail(f"make_mlp({layers}, d={d}, m={m}, k={k}) has weight matrices {[shape_text(s) for s in shapes]}.",
             expected=str([shape_text(s) for s in expected]), got=str([shape_text(s) for s in shapes]), mistake=mistake)
    biases = any(len(s) == 1 for case in range(len(ctx.inputs()["cases"])) for _, s in (ctx.obs.get(f"params_{case}") or []))
    if biases:
        ctx.warn("the layers have biases; the formula has none (allowed, and accounted for in the output check).")


def mlp_formula(x: np.ndarray, arrays: list[np.ndarray], relu_last: bool = False, relu: bool = True) -> np.ndarray:
    """W⁽ℓ⁾ ReLU(… ReLU(W⁽¹⁾x)) recomputed from the module's own parameters (biases if present)."""
    weights = [a for a in arrays if a.ndim == 2]
    biases = [a for a in arrays if a.ndim == 1]
    h = x.astype(np.float64)
    for i, W in enumerate(weights):
        h = h @ W.T if W.shape[1] == h.shape[1] else h @ W
        bias = next((b for b in biases if b.shape[0] == h.shape[1]), None) if len(biases) == len(weights) else None
        if bias is not None:
            h = h + biases[i] if biases[i].shape[0] == h.shape[1] else h
        if relu and (i < len(weights) - 1 or relu_last):
            h = np.maximum(h, 0)
    return h


def _mlp_outputs(ctx: JudgeContext, case: int) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], list]:
    params, arrays, spec = _mlp_case(ctx, case)
    if any(a is None for a in arrays):
        not_run("the module's parameters could not be read")
    got = ctx.array(f"out_{case}", f"make_mlp{tuple(spec)}(x)")
    return got, ctx.inputs()[f"x_{case}"], arrays, spec


@check("2B", 4, "ReLU sits between layers and not after the last one", hidden_inputs=True, public=True,
       observes=("net_{case}", "out_{case}", "p_{case}_{index}", "params_{case}", "modules_{case}"))
def mlp_relu_between_layers_not_after_last(ctx: JudgeContext) -> None:
    for case in range(len(ctx.inputs()["cases"])):
        got, x, arrays, spec = _mlp_outputs(ctx, case)
        if spec[0] == 1:
            continue
        expected = mlp_formula(x, arrays)
        if relative_error(got, expected) <= MLP_RTOL:
            continue
        if relative_error(got, mlp_formula(x, arrays, relu_last=True)) <= MLP_RTOL:
            fail(f"make_mlp{tuple(spec)} applies ReLU after the last layer.", mistake="ReLU after the last layer: the output layer is linear (logits can be negative).")
        if relative_error(got, mlp_formula(x, arrays, relu=False)) <= MLP_RTOL:
            fail(f"make_mlp{tuple(spec)} has no ReLU between its layers.", mistake="without ReLU between layers the network is a single linear map.")
        modules = ctx.obs.get(f"modules_{case}") or []
        fail(f"make_mlp{tuple(spec)}'s output does not follow linear → ReLU → … → linear (modules: {', '.join(modules[:12])}).")


@check("2B", 5, "the module's output equals the formula recomputed from its own weights", hidden_inputs=True, public=True,
       observes=("net_{case}", "out_{case}", "p_{case}_{index}", "params_{case}"))
def mlp_output_matches_formula(ctx: JudgeContext) -> None:
    for case in range(len(ctx.inputs()["cases"])):
        got, x, arrays, spec = _mlp_outputs(ctx, case)
        expected = mlp_formula(x, arrays)
        error = relative_error(got, expected)
        placement_only = min(
            relative_error(got, mlp_formula(x, arrays, relu_last=True)), relative_error(got, mlp_formula(x, arrays, relu=False))
        )
        if error > MLP_RTOL and placement_only > MLP_RTOL:  # a misplaced ReLU is the other check's deduction
            fail(f"make_mlp{tuple(spec)} on x of shape {shape_text(x)} returned {shape_text(got)} values that differ from "
                 f"W⁽ℓ⁾ReLU(…W⁽¹⁾x) computed from its own weights (relative error {error:.2g}).",
                 expected=f"{shape_text(expected)}", got=shape_text(got),
                 mistake="your forward() skips, reorders or reshapes a layer: it should apply every layer in order to x, with rows as examples.")


# ---------------------------------------------------------------------------------------------
# 2C · Empirical comparison
# ---------------------------------------------------------------------------------------------
def _depth_histories(ctx: JudgeContext) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    found = []
    for name in ("train_losses", "test_losses"):
        ctx.require(name)
        value = ctx.obs.get(name)
        if not isinstance(value, dict):
            fail(f"`{name}` is not a dict from depth to a list of losses (got {type(value).__name__}).")
        histories = {}
        for depth in (1, 2, 3):
            raw = value.get(str(depth))
            if raw is None:
                fail(f"`{name}` has no entry for depth {depth} (keys: {', '.join(sorted(value))}).", expected="keys 1, 2, 3")
            histories[depth] = np.asarray([float(v) if not isinstance(v, str) else np.nan for v in raw])
        found.append(histories)
    return found[0], found[1]


@check("2C", 4, "train_losses and test_losses hold equal-length finite histories (≥ 2 epochs) for depths 1, 2, 3", public=True,
       observes=("test_losses", "train_losses"))
def depth_histories_present(ctx: JudgeContext) -> None:
    train, test = _depth_histories(ctx)
    for depth in (1, 2, 3):
        if len(train[depth]) < 2 or len(train[depth]) != len(test[depth]):
            fail(f"depth {depth}: {len(train[depth])} training and {len(test[depth])} test losses; expected equal lengths of at least 2.")
        if not (np.all(np.isfinite(train[depth])) and np.all(np.isfinite(test[depth]))):
            fail(f"depth {depth}: the losses contain NaN or inf.")
    if all(np.allclose(train[d], test[d], rtol=1e-9, atol=0) for d in (1, 2, 3)):
        fail("test_losses equals train_losses at every epoch.", mistake="the test loss is computed on the training set: evaluate on test_loader.")
    _warn_if_histories_doubtful(ctx, train, test)


def _warn_if_histories_doubtful(ctx: JudgeContext, train: dict[int, np.ndarray], test: dict[int, np.ndarray]) -> None:
    """Histories that satisfy the contract yet an expert would doubt (never a deduction)."""
    same = [(a, b) for a, b in ((1, 2), (1, 3), (2, 3))
            if train[a].shape == train[b].shape and np.allclose(train[a], train[b], rtol=1e-9, atol=0)]
    if same:
        ctx.warn(f"depths {same[0][0]} and {same[0][1]} have identical training losses at every epoch: "
                 "is the same model (or the same depth) trained twice?")
    if all(len(test[d]) == len(train[d]) and np.all(test[d] < train[d]) for d in (1, 2, 3)):
        ctx.warn("the test loss is below the training loss at every epoch for every depth: "
                 "are train_losses and test_losses swapped, or is the training loss taken before each step's update?")


@check("2C", 6, "the training loss decreases over training for each depth", public=True,
       observes=("test_losses", "train_losses"))
def training_loss_decreases_per_depth(ctx: JudgeContext) -> None:
    train, _ = _depth_histories(ctx)
    for depth in (1, 2, 3):
        if not train[depth][-1] < train[depth][0]:
            fail(f"depth {depth}: the training loss went from {train[depth][0]:.4g} to {train[depth][-1]:.4g}; it should decrease.",
                 mistake="the training loop does not train this depth's model: create its optimizer from its own parameters and zero the gradients at each step.")


def _line_styles(figures: list[FigureRecord]) -> tuple[int, int, int]:
    """Counts of solid, dotted and dashed curves (≥ 2 points) across ``figures``."""
    lines = [line for figure in figures for ax in figure.axes for line in ax.get("lines", []) if line.get("points", 0) >= 2]
    solid = sum(line.get("linestyle") in ("-", "solid") for line in lines)
    dotted = sum(_is_dotted(str(line.get("linestyle"))) for line in lines)
    dashed = sum(line.get("linestyle") in ("--", "dashed", "-.", "dashdot") for line in lines)
    return solid, dotted, dashed


def _is_dotted(style: str) -> bool:
    return style in (":", "dotted") or style.startswith("(0, (1")


@check("2C", 5, "a figure shows solid training and dotted test curves for the three depths", public=True)
def loss_figure_solid_train_dotted_test(ctx: JudgeContext) -> None:
    if ctx.find_figures(lambda figures: _line_styles(figures)[0] >= 3 and _line_styles(figures)[1] >= 3):
        return
    if ctx.find_figures(lambda figures: _line_styles(figures)[0] >= 3 and _line_styles(figures)[2] >= 3):
        ctx.warn("test curves are dashed, not dotted (linestyle=':').")
        return
    solid, dotted, _ = _line_styles(ctx.observations.figures)
    fail(f"found {solid} solid and {dotted} dotted curves; expected 3 of each (training solid, test dotted, per depth).",
         mistake="plot test losses with linestyle=':' (dotted) and training losses with the default solid line.")


CHECKS = RUBRIC.checks
RUBRIC.validate()
