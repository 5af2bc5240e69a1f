"""Tests of the ECE 685D HW2 reference (reference/ece685d_hw2) against independent computations.

Every reference function is compared with something it does not share code with: torch
autograd for the gradients and Hessians, scikit-learn's ``log_loss`` for the loss, plain
pixel statistics for the two-view dataset. Comparisons are relative,
‖reference − independent‖ / ‖independent‖, in float64.
"""

from __future__ import annotations

import json
import math
import pickle
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
from sklearn.metrics import log_loss
from torch.utils.data import DataLoader

from graders.mnist import ensure_mnist
from reference.ece685d_hw2 import (
    METHODS,
    PARAM_NAMES,
    MNISTTwoView,
    bce_gradient,
    bce_hessian,
    bce_loss,
    load_breast_cancer_split,
    make_two_view_dataset,
    measure_view_resemblance,
    residual_mlp_forward,
    residual_mlp_gradients,
    residual_mlp_loss,
    run_histories,
)

GRADIENT_RTOL = 1e-8
"""Manual and autograd gradients in float64 agree to rounding (~1e-15); 1e-8 leaves room."""
LOSS_RTOL = 1e-10
"""Two float64 evaluations of the same sum of logs."""
ACCURACY_THRESHOLD = 0.90
"""The contract's final test-accuracy threshold for P3."""
NOTEBOOK = Path(__file__).resolve().parents[1] / "reference" / "notebooks" / "ece685d-hw2.ipynb"
CONTRACT_NAMES = (
    "residual_mlp_gradients",
    "MNISTTwoView",
    "two_view_dataset",
    "bce_loss",
    "bce_gradient",
    "bce_hessian",
    "histories",
)


def relative_error(actual: torch.Tensor | np.ndarray, expected: torch.Tensor) -> float:
    """Return ‖actual − expected‖ / max(‖expected‖, 1e-300) in float64."""
    actual64 = torch.as_tensor(np.asarray(actual), dtype=torch.float64)
    difference = torch.linalg.vector_norm(actual64 - expected.reshape(actual64.shape))
    return float(difference / max(float(torch.linalg.vector_norm(expected)), 1e-300))


# --------------------------------------------------------------------------------------------
# P1 · residual MLP
# --------------------------------------------------------------------------------------------

ACTIVATIONS: dict[str, tuple[Callable, Callable]] = {
    "tanh": (torch.tanh, lambda a: 1.0 - torch.tanh(a) ** 2),
    "sin": (torch.sin, torch.cos),
    "hardtanh": (
        torch.nn.functional.hardtanh,
        lambda a: ((a > -1.0) & (a < 1.0)).to(a.dtype),
    ),
}
SHAPES = [(1, 1), (5, 3), (17, 8), (64, 20)]


Problem = tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]


def random_problem(n: int, m: int, seed: int) -> Problem:
    """Return X (n×m), Y (n×1) and contract-shaped float64 parameters from a seeded generator."""
    gen = torch.Generator().manual_seed(seed)
    shapes = {"W1": (m, m), "b1": (m,), "W2": (m, m), "b2": (m,), "W3": (m, 1), "b3": (1,)}
    params = {k: torch.randn(s, generator=gen, dtype=torch.float64) for k, s in shapes.items()}
    X = torch.randn(n, m, generator=gen, dtype=torch.float64)
    return X, torch.randn(n, 1, generator=gen, dtype=torch.float64), params


def autograd_gradients(X: torch.Tensor, Y: torch.Tensor, params: dict, g: Callable) -> dict:
    """Return ∂L/∂p by autograd on an independent, column-vector transcription of the network."""
    leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    h0 = X.T  # m×N: the problem's column-vector convention
    h1 = g(leaves["W1"].T @ h0 + leaves["b1"][:, None]) + h0
    h2 = g(leaves["W2"].T @ h1 + leaves["b2"][:, None]) + h1
    y_hat = leaves["W3"].T @ h2 + leaves["b3"][:, None]
    loss = ((Y.T - y_hat) ** 2).mean()
    grads = torch.autograd.grad(loss, [leaves[k] for k in PARAM_NAMES])
    return dict(zip(PARAM_NAMES, grads))


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize(("n", "m"), SHAPES)
def test_residual_gradients_match_autograd(activation: str, n: int, m: int) -> None:
    g, g_prime = ACTIVATIONS[activation]
    X, Y, params = random_problem(n, m, seed=1000 * n + m)
    manual = residual_mlp_gradients(X, Y, params, g, g_prime)
    expected = autograd_gradients(X, Y, params, g)
    for name in PARAM_NAMES:
        assert manual[name].shape == params[name].shape, name
        assert relative_error(manual[name], expected[name]) <= GRADIENT_RTOL, name


def test_residual_gradients_need_no_autograd() -> None:
    """Inference mode forbids building a graph: manual backprop must still work there."""
    X, Y, params = random_problem(9, 4, seed=7)
    with torch.inference_mode():
        manual = residual_mlp_gradients(X, Y, params, torch.tanh, lambda a: 1 - torch.tanh(a) ** 2)
    expected = autograd_gradients(X, Y, params, torch.tanh)
    assert max(relative_error(manual[k], expected[k]) for k in PARAM_NAMES) <= GRADIENT_RTOL


def test_residual_gradients_return_numpy_for_numpy_inputs() -> None:
    X, Y, params = random_problem(11, 5, seed=3)
    manual = residual_mlp_gradients(
        X.numpy(), Y.numpy(), {k: v.numpy() for k, v in params.items()}, np.sin, np.cos
    )
    expected = autograd_gradients(X, Y, params, torch.sin)
    for name in PARAM_NAMES:
        assert isinstance(manual[name], np.ndarray), name
        assert relative_error(manual[name], expected[name]) <= GRADIENT_RTOL, name


def test_residual_forward_and_loss_match_direct_formula() -> None:
    X, Y, params = random_problem(13, 6, seed=5)
    h1 = torch.tanh(X @ params["W1"] + params["b1"]) + X
    h2 = torch.tanh(h1 @ params["W2"] + params["b2"]) + h1
    y_hat = h2 @ params["W3"] + params["b3"]
    assert relative_error(residual_mlp_forward(X, params, torch.tanh), y_hat) <= GRADIENT_RTOL
    expected_loss = float(((Y - y_hat) ** 2).mean())
    loss = residual_mlp_loss(X, Y, params, torch.tanh)
    assert math.isclose(loss, expected_loss, rel_tol=LOSS_RTOL)


# --------------------------------------------------------------------------------------------
# P3 · logistic regression
# --------------------------------------------------------------------------------------------

BCE_SHAPES = [(1, 1), (7, 3), (50, 10), (398, 31)]


def random_logistic(n: int, d: int, seed: int, scale: float = 1.0) -> tuple[torch.Tensor, ...]:
    """Return w (d), X (n×d), y (n, in {0, 1}) in float64 from a seeded generator."""
    gen = torch.Generator().manual_seed(seed)
    w = scale * torch.randn(d, generator=gen, dtype=torch.float64)
    X = torch.randn(n, d, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 2, (n,), generator=gen).to(torch.float64)
    return w, X, y


def autograd_bce(w: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The summed BCE written with torch's own logits loss (independent of the reference)."""
    return torch.nn.functional.binary_cross_entropy_with_logits(X @ w, y, reduction="sum")


@pytest.mark.parametrize(("n", "d"), BCE_SHAPES)
def test_bce_loss_matches_sklearn_log_loss(n: int, d: int) -> None:
    w, X, y = random_logistic(n, d, seed=n + d, scale=0.3)
    probability = torch.sigmoid(X @ w).numpy()
    expected = log_loss(y.numpy(), probability, labels=[0, 1]) * n
    assert math.isclose(float(bce_loss(w, X, y)), expected, rel_tol=LOSS_RTOL)


@pytest.mark.parametrize(("n", "d"), BCE_SHAPES)
def test_bce_gradient_and_hessian_match_autograd(n: int, d: int) -> None:
    w, X, y = random_logistic(n, d, seed=10 * n + d)
    leaf = w.clone().requires_grad_(True)
    (expected_gradient,) = torch.autograd.grad(autograd_bce(leaf, X, y), leaf)
    expected_hessian = torch.autograd.functional.hessian(lambda v: autograd_bce(v, X, y), w)
    assert relative_error(bce_loss(w, X, y), autograd_bce(w, X, y).detach()) <= LOSS_RTOL
    assert relative_error(bce_gradient(w, X, y), expected_gradient) <= GRADIENT_RTOL
    hessian = bce_hessian(w, X, y)
    assert hessian.shape == (d, d)
    assert relative_error(hessian, expected_hessian) <= GRADIENT_RTOL


def test_bce_functions_accept_numpy_and_column_shapes() -> None:
    w, X, y = random_logistic(20, 4, seed=11)
    w_col, y_col = w.numpy().reshape(-1, 1), y.numpy().reshape(-1, 1)
    gradient = bce_gradient(w_col, X.numpy(), y_col)
    assert isinstance(gradient, np.ndarray) and gradient.shape == (4, 1)
    assert isinstance(bce_hessian(w_col, X.numpy(), y_col), np.ndarray)
    expected = float(autograd_bce(w, X, y))
    assert math.isclose(float(bce_loss(w_col, X.numpy(), y_col)), expected, rel_tol=LOSS_RTOL)


def test_bce_loss_is_finite_for_huge_logits() -> None:
    """|wᵀx| in the thousands would give log(0) if σ were computed before the log."""
    w, X, y = random_logistic(30, 5, seed=13, scale=1e3)
    loss = bce_loss(w, X, y)
    assert torch.isfinite(loss)
    assert relative_error(loss, autograd_bce(w, X, y)) <= LOSS_RTOL
    assert torch.isfinite(bce_gradient(w, X, y)).all() and torch.isfinite(bce_hessian(w, X, y)).all()


def test_breast_cancer_split_is_standardised_with_bias_last() -> None:
    split = load_breast_cancer_split(seed=0)
    assert split.X_train.shape == (398, 31) and split.X_test.shape == (171, 31)
    assert torch.equal(split.X_train[:, -1], torch.ones(398, dtype=torch.float64))
    means = split.X_train[:, :-1].mean(0)
    assert float(means.abs().max()) <= 1e-12  # training mean removed exactly (to rounding)
    assert float((split.X_train[:, :-1].std(0, correction=0) - 1).abs().max()) <= 1e-12


@pytest.fixture(scope="module")
def histories_by_seed() -> dict[int, dict[str, dict[str, list[float]]]]:
    """Histories of the three methods for three seeds (split and initial weights)."""
    return {seed: run_histories(seed) for seed in (0, 1, 2)}


def test_histories_are_well_formed(histories_by_seed: dict) -> None:
    for histories in histories_by_seed.values():
        assert set(histories) == set(METHODS)
        for history in histories.values():
            lengths = {len(history[key]) for key in ("loss", "accuracy", "time")}
            assert len(lengths) == 1 and lengths.pop() >= 2
            assert all(math.isfinite(v) for key in history for v in history[key])
            assert all(b >= a for a, b in zip(history["time"], history["time"][1:]))


def test_histories_meet_contract_thresholds(histories_by_seed: dict) -> None:
    for seed, histories in histories_by_seed.items():
        for method, history in histories.items():
            assert history["loss"][-1] < history["loss"][0], (seed, method)
            assert history["accuracy"][-1] >= ACCURACY_THRESHOLD, (seed, method)


def test_every_method_decreases_the_training_loss_monotonically(histories_by_seed: dict) -> None:
    """Learning rate 0.1 is stable for all three steps: no iteration increases L (1e-9 slack)."""
    for histories in histories_by_seed.values():
        for method, history in histories.items():
            steps = np.diff(history["loss"])
            assert steps.max() <= 1e-9, method


# --------------------------------------------------------------------------------------------
# P2 · two-view MNIST
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_view() -> MNISTTwoView:
    return make_two_view_dataset(ensure_mnist().root, train=True)


def test_two_view_items_are_views_of_the_labelled_image(two_view: MNISTTwoView) -> None:
    torch.manual_seed(0)
    x1, x2, label = two_view[5]
    _, base_label = two_view.base[5]
    assert isinstance(label, int) and label == int(base_label)
    assert x1.shape == x2.shape == (1, 28, 28) and x1.dtype == torch.float32
    assert not torch.equal(x1, x2)
    again1, again2, _ = two_view[5]
    assert not torch.equal(again1, x1) and not torch.equal(again2, x2)


def test_two_view_loader_with_workers_yields_batches_of_8(two_view: MNISTTwoView) -> None:
    loader = DataLoader(
        two_view, batch_size=8, shuffle=True, num_workers=2,
        generator=torch.Generator().manual_seed(0),
    )
    batches = iter(loader)
    for _ in range(3):
        x1, x2, y = next(batches)
        assert x1.shape == x2.shape == (8, 1, 28, 28)
        assert y.shape == (8,) and y.dtype == torch.int64
        assert not torch.equal(x1, x2)


def test_two_view_pickles(two_view: MNISTTwoView) -> None:
    clone = pickle.loads(pickle.dumps(two_view))
    assert len(clone) == len(two_view) and clone[0][2] == two_view[0][2]


def test_two_view_accepts_a_plain_list_of_tensors() -> None:
    gen = torch.Generator().manual_seed(1)
    images = [(torch.randint(0, 256, (28, 28), generator=gen, dtype=torch.uint8), 3) for _ in range(4)]
    x1, x2, label = MNISTTwoView(images)[2]
    assert x1.shape == x2.shape == (1, 28, 28) and label == 3


def centred_unit_rows(images: torch.Tensor) -> torch.Tensor:
    """Flatten, subtract each row's mean and scale to unit norm (rows' dot = correlation)."""
    rows = images.reshape(images.shape[0], -1).to(torch.float64)
    rows = rows - rows.mean(1, keepdim=True)
    return rows / rows.norm(dim=1, keepdim=True)


def test_views_resemble_their_own_source_most(two_view: MNISTTwoView) -> None:
    """Among groups of 8 digits each view's best-correlated original is its own in ≥ 90%."""
    torch.manual_seed(0)
    indices = torch.randperm(len(two_view), generator=torch.Generator().manual_seed(0))[:128]
    originals = torch.stack([two_view.original(int(i)) for i in indices])
    views = torch.stack([two_view[int(i)][0] for i in indices])
    correlations = centred_unit_rows(views) @ centred_unit_rows(originals).T
    own = correlations.diagonal()
    assert bool((own > correlations.mean(1)).all())
    groups = correlations.reshape(16, 8, 16, 8).diagonal(dim1=0, dim2=2).permute(2, 0, 1)
    hits = (groups.argmax(2) == torch.arange(8)).to(torch.float64).mean()
    assert float(hits) >= 0.90


def test_measure_view_resemblance_is_seeded_and_leaves_rng_alone(two_view: MNISTTwoView) -> None:
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = measure_view_resemblance(two_view, seed=4, n_images=64)
    assert torch.equal(torch.get_rng_state(), state)
    assert measure_view_resemblance(two_view, seed=4, n_images=64) == first
    assert first["above_mean_other"] == 1.0 and first["best_in_group"] >= 0.90


# --------------------------------------------------------------------------------------------
# Reference notebook
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_reference_notebook_runs_offline_and_defines_contract_names() -> None:
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert notebook.metadata["nbgrade"]["assignment"] == "ece685d-hw2"
    probe = "import json\nprint(json.dumps({n: n in globals() for n in %r}))" % (CONTRACT_NAMES,)
    notebook.cells.append(nbformat.v4.new_code_cell(probe))
    with tempfile.TemporaryDirectory() as workdir:
        (Path(workdir) / "data").symlink_to(ensure_mnist().root, target_is_directory=True)
        start = time.perf_counter()
        nbclient.NotebookClient(
            notebook, timeout=120, kernel_name="python3",
            resources={"metadata": {"path": workdir}},
        ).execute()
        elapsed = time.perf_counter() - start
    defined = json.loads(notebook.cells[-1].outputs[0]["text"])
    assert defined == {name: True for name in CONTRACT_NAMES}
    assert elapsed < 60.0
