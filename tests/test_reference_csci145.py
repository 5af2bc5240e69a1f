"""Tests for reference.csci145_ps6: each part against an independent computation, and the notebook.

The trained parts are checked against the contract's thresholds on the provisioned 5k MNIST
(a private cache per test module, so nothing outside tmp is written).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist
from torch.utils.data import DataLoader, Dataset

from graders.mnist import MnistInfo, ensure_mnist, load_mnist_arrays
from reference import csci145_ps6 as ref

NOTEBOOK = Path(__file__).resolve().parents[1] / "reference" / "notebooks" / "csci145-ps6.ipynb"
CONTRACT_NAMES = (
    "train_set", "test_set", "train_loader", "test_loader", "logreg_model", "logreg_losses",
    "gaussian_kernel", "sigma", "K_train", "K_test", "kernel_model", "sigmoid_derivative",
    "make_mlp", "train_losses", "test_losses",
)
FLOAT32_RTOL = 1e-6
FLOAT64_RTOL = 1e-12


def relative_error(actual: torch.Tensor | np.ndarray, expected: torch.Tensor | np.ndarray) -> float:
    """‖actual − expected‖ / ‖expected‖ in float64, the contract's tolerance measure."""
    actual = np.asarray(torch.as_tensor(actual).detach().double())
    expected = np.asarray(torch.as_tensor(expected).detach().double())
    return float(np.linalg.norm(actual - expected) / np.linalg.norm(expected))


@pytest.fixture(scope="module")
def mnist(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MnistInfo]:
    """MNIST provisioned into a private cache; ``$NBGRADE_CACHE`` points there for the module."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NBGRADE_CACHE", str(tmp_path_factory.mktemp("cache")))
        patch.delenv("NBGRADE_MNIST", raising=False)
        yield ensure_mnist()


@dataclass(frozen=True)
class Solution:
    """The reference's trained objects for seed 0."""

    train_set: Dataset
    test_set: Dataset
    train_loader: DataLoader
    test_loader: DataLoader
    logreg_model: torch.nn.Module
    logreg_losses: list[float]


@pytest.fixture(scope="module")
def solution(mnist: MnistInfo) -> Solution:
    train_set, test_set = ref.make_datasets(mnist.root, seed=0)
    train_loader, test_loader = ref.make_loaders(train_set, test_set, seed=0)
    model, losses = ref.train_logistic_regression(train_loader, seed=0)
    return Solution(train_set, test_set, train_loader, test_loader, model, losses)


# --- 1A ---------------------------------------------------------------------------------


def test_datasets_have_contract_sizes_and_items(solution: Solution) -> None:
    assert (len(solution.train_set), len(solution.test_set)) == (1000, 100)
    image, label = solution.train_set[0]
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32
    assert isinstance(label, int) and 0 <= label <= 9


def test_test_images_are_not_in_train_set(solution: Solution) -> None:
    X_train, _ = ref.dataset_matrix(solution.train_set)
    X_test, _ = ref.dataset_matrix(solution.test_set)
    train_rows = {row.numpy().tobytes() for row in X_train}
    assert not any(row.numpy().tobytes() in train_rows for row in X_test)


def test_datasets_are_random_draws(mnist: MnistInfo, solution: Solution) -> None:
    assert solution.train_set.indices != list(range(1000))
    again, _ = ref.make_datasets(mnist.root, seed=0)
    other, _ = ref.make_datasets(mnist.root, seed=1)
    assert again.indices == solution.train_set.indices
    assert other.indices != solution.train_set.indices


def test_loaders_cover_each_set_once_per_epoch(solution: Solution) -> None:
    for loader, dataset in ((solution.train_loader, solution.train_set), (solution.test_loader, solution.test_set)):
        seen = []
        for images, labels in loader:
            assert len(images) == len(labels)
            seen.extend(labels.tolist())
        assert sorted(seen) == sorted(label for _, label in dataset)


# --- 1B ---------------------------------------------------------------------------------


def _holdout(size: int = 500, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images of MNIST's test split, which make_datasets never draws from."""
    images, labels = load_mnist_arrays(train=False)
    chosen = np.random.default_rng(seed).choice(len(images), size=size, replace=False)
    return torch.from_numpy(images[chosen]).float().div(255).unsqueeze(1), torch.from_numpy(labels[chosen])


def test_logistic_regression_shapes(solution: Solution) -> None:
    shapes = sorted(tuple(p.shape) for p in solution.logreg_model.parameters())
    assert shapes == [(10,), (10, 784)]
    assert solution.logreg_model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    assert solution.logreg_model(torch.zeros(3, 784)).shape == (3, 10)


def test_logistic_regression_trains_100_steps(solution: Solution) -> None:
    losses = solution.logreg_losses
    assert len(losses) == 100 and all(math.isfinite(loss) for loss in losses)
    assert losses[-1] < 0.5 * losses[0]


def test_logistic_regression_clears_contract_accuracy(solution: Solution) -> None:
    images, labels = _holdout()
    with torch.no_grad():
        held_back_accuracy = ref.accuracy(solution.logreg_model(images), labels)
    assert held_back_accuracy >= 0.70


# --- 1C ---------------------------------------------------------------------------------


def _kernel_by_loops(X1: np.ndarray, X2: np.ndarray, sigma: float) -> np.ndarray:
    """The kernel entry by entry, straight from the formula."""
    K = np.empty((len(X1), len(X2)))
    for i, a in enumerate(X1):
        for j, b in enumerate(X2):
            K[i, j] = math.exp(-sum((float(p) - float(q)) ** 2 for p, q in zip(a, b)) / (2 * sigma**2))
    return K


@pytest.mark.parametrize(("n1", "n2", "d", "sigma"), [(4, 3, 2, 1.0), (5, 6, 7, 0.8), (3, 2, 20, 3.5)])
def test_gaussian_kernel_matches_explicit_loops(n1: int, n2: int, d: int, sigma: float) -> None:
    rng = np.random.default_rng(n1 * 100 + d)
    X1, X2 = rng.normal(size=(n1, d)), rng.normal(size=(n2, d))
    assert relative_error(ref.gaussian_kernel(X1, X2, sigma), _kernel_by_loops(X1, X2, sigma)) < FLOAT64_RTOL


@pytest.mark.parametrize(("n1", "n2", "d"), [(1, 1, 1), (10, 7, 3), (32, 50, 784), (64, 16, 100)])
@pytest.mark.parametrize("sigma", [0.5, 1.0, 6.0])
def test_gaussian_kernel_matches_cdist(n1: int, n2: int, d: int, sigma: float) -> None:
    rng = np.random.default_rng(n1 + 1000 * d)
    X1, X2 = rng.uniform(0, 1, size=(n1, d)), rng.uniform(0, 1, size=(n2, d))
    # Scale so that entries are neither all ~0 nor all ~1 for every (d, sigma).
    scale = sigma / math.sqrt(d)
    X1, X2 = X1 * scale, X2 * scale
    expected = np.exp(-cdist(X1, X2, "sqeuclidean") / (2 * sigma**2))
    from_torch32 = ref.gaussian_kernel(torch.tensor(X1, dtype=torch.float32), torch.tensor(X2, dtype=torch.float32), sigma)
    assert from_torch32.dtype == torch.float32 and from_torch32.shape == (n1, n2)
    assert relative_error(from_torch32, expected) < 10 * FLOAT32_RTOL
    assert relative_error(ref.gaussian_kernel(X1, X2, sigma), expected) < FLOAT64_RTOL


def test_gaussian_kernel_on_pixels_is_a_valid_gram_matrix(solution: Solution) -> None:
    X, _ = ref.dataset_matrix(solution.train_set)
    X = X[:300]
    K = ref.gaussian_kernel(X, X, ref.choose_sigma(X))
    assert torch.equal(K, K.T)
    assert torch.allclose(K.diagonal(), torch.ones(len(K)), rtol=0, atol=1e-7)
    assert torch.linalg.eigvalsh(K.double()).min().item() > -1e-5
    images = torch.stack([solution.train_set[i][0] for i in range(300)])
    assert torch.equal(ref.gaussian_kernel(images, images, 2.0), ref.gaussian_kernel(X, X, 2.0))


def test_gaussian_kernel_rejects_non_positive_sigma() -> None:
    with pytest.raises(ValueError, match="sigma"):
        ref.gaussian_kernel(np.ones((2, 2)), np.ones((2, 2)), 0.0)


def test_choose_sigma_suits_pixel_scale(solution: Solution) -> None:
    X, _ = ref.dataset_matrix(solution.train_set)
    K = ref.gaussian_kernel(X, X, ref.choose_sigma(X))
    off_diagonal_mean = (K.sum() - K.trace()).item() / (len(K) * (len(K) - 1))
    assert 0.05 < off_diagonal_mean < 0.5, "K should be far from both the identity and all-ones"


def test_kernel_model_clears_contract_accuracy(solution: Solution) -> None:
    X_train, y_train = ref.dataset_matrix(solution.train_set)
    X_test, y_test = ref.dataset_matrix(solution.test_set)
    sigma = ref.choose_sigma(X_train)
    K_train = ref.gaussian_kernel(X_train, X_train, sigma)
    K_test = ref.gaussian_kernel(X_test, X_train, sigma)
    model, losses = ref.train_kernel_model(K_train, y_train, seed=0)
    assert model.linear.in_features == 1000 and K_test.shape == (100, 1000)
    assert len(losses) == ref.KERNEL_STEPS and losses[-1] < losses[0]
    with torch.no_grad():
        assert ref.accuracy(model(K_train), y_train) >= 0.90
        assert ref.accuracy(model(K_test), y_test) >= 0.50


# --- 2A ---------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(), (7,), (3, 4), (2, 3, 5)])
def test_sigmoid_derivative_matches_autograd(shape: tuple[int, ...]) -> None:
    z = torch.empty(shape, dtype=torch.float64).uniform_(-15, 15, generator=torch.Generator().manual_seed(len(shape)))
    z.requires_grad_(True)
    torch.sigmoid(z).sum().backward()
    # Autograd's σ(1 − σ) loses relative precision for |z| ≳ 15, hence the range.
    assert relative_error(ref.sigmoid_derivative(z.detach()), z.grad) < 1e-9


def test_sigmoid_derivative_matches_closed_form_in_the_tails() -> None:
    z = torch.linspace(-700, 700, 2801, dtype=torch.float64)
    e = torch.exp(-z.abs())
    closed_form = e / (1 + e) ** 2  # σ'(z) is even; this form never overflows.
    derivative = ref.sigmoid_derivative(z)
    assert torch.allclose(derivative, closed_form, rtol=1e-12, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sigmoid_derivative_is_finite_at_extremes(dtype: torch.dtype) -> None:
    z = torch.tensor([-1000.0, -100.0, 0.0, 100.0, 1000.0], dtype=dtype)
    derivative = ref.sigmoid_derivative(z)
    assert torch.isfinite(derivative).all()
    assert derivative[[0, 4]].abs().max().item() <= 1e-300
    assert derivative[2].item() == pytest.approx(0.25, rel=1e-7)


def test_sigmoid_derivative_accepts_numpy() -> None:
    z = np.array([-2.0, 0.0, 3.0])
    expected = [math.exp(-v) / (1 + math.exp(-v)) ** 2 for v in z]
    assert relative_error(ref.sigmoid_derivative(z), np.array(expected)) < FLOAT64_RTOL


# --- 2B ---------------------------------------------------------------------------------


def _mlp_by_formula(weights: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """W⁽ℓ⁾ ReLU(W⁽ℓ⁻¹⁾ … ReLU(W⁽¹⁾ x)) for a batch of row vectors x."""
    h = x
    for W in weights[:-1]:
        h = torch.clamp(h @ W.T, min=0)
    return h @ weights[-1].T


@pytest.mark.parametrize("num_layers", [1, 2, 3, 4])
def test_make_mlp_weight_shapes(num_layers: int) -> None:
    d, m, k = 11, 6, 4
    model = ref.make_mlp(num_layers, d, m, k)
    expected = [(k, d)] if num_layers == 1 else [(m, d)] + [(m, m)] * (num_layers - 2) + [(k, m)]
    assert [tuple(p.shape) for p in model.parameters()] == expected
    relus = [type(layer) for layer in model].count(torch.nn.ReLU)
    assert relus == num_layers - 1 and not isinstance(list(model)[-1], torch.nn.ReLU)


@pytest.mark.parametrize(("num_layers", "d", "m", "k"), [(1, 9, 5, 3), (2, 784, 32, 10), (3, 5, 17, 2), (4, 12, 8, 7)])
def test_make_mlp_computes_the_formula(num_layers: int, d: int, m: int, k: int) -> None:
    torch.manual_seed(num_layers)
    model = ref.make_mlp(num_layers, d, m, k).double()
    x = torch.randn(13, d, dtype=torch.float64, generator=torch.Generator().manual_seed(d))
    weights = [p.detach() for p in model.parameters()]
    with torch.no_grad():
        assert relative_error(model(x), _mlp_by_formula(weights, x)) < FLOAT64_RTOL


def test_make_mlp_rejects_zero_layers() -> None:
    with pytest.raises(ValueError, match="num_layers"):
        ref.make_mlp(0, 3, 3, 3)


# --- 2C ---------------------------------------------------------------------------------


def test_depth_comparison_training_loss_decreases(solution: Solution) -> None:
    epochs = 4
    train_losses, test_losses = ref.train_depth_comparison(
        solution.train_loader, solution.test_loader, epochs=epochs, seed=0
    )
    assert set(train_losses) == set(test_losses) == {1, 2, 3}
    for depth in (1, 2, 3):
        assert len(train_losses[depth]) == len(test_losses[depth]) == epochs
        assert all(math.isfinite(v) for v in train_losses[depth] + test_losses[depth])
        assert train_losses[depth][-1] < train_losses[depth][0]


# --- 1D ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("variant", "parameters"), [("pixel", 784 * 10 + 10), ("kernel", 60 * 10 + 10)])
def test_measure_training_step_reports_a_row(variant: str, parameters: int) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(60, 784), dtype=np.uint8)
    labels = rng.integers(0, 10, size=60)
    row = ref.measure_training_step(images, labels, variant, steps=3)
    assert row["n"] == 60 and row["variant"] == variant and row["parameters"] == parameters
    assert row["seconds_per_step"] > 0 and row["peak_memory_mb"] >= 0


# --- the reference notebook ---------------------------------------------------------------

_REPORT_NAMES = f"""
import json as _json
print(_json.dumps({{name: name in globals() for name in {list(CONTRACT_NAMES)!r}}}))
print(_json.dumps({{
    "train": len(train_set), "test": len(test_set), "K_train": list(K_train.shape),
    "K_test": list(K_test.shape), "logreg_losses": len(logreg_losses),
    "depths": sorted(train_losses), "sigma": float(sigma),
}}))
"""


@pytest.mark.slow
def test_reference_notebook_runs_offline_and_defines_contract(mnist: MnistInfo, tmp_path: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert notebook.metadata["nbgrade"] == {"assignment": "csci145-ps6"}
    notebook.cells.append(nbformat.v4.new_code_cell(_REPORT_NAMES))
    os.symlink(mnist.root, tmp_path / "data")
    client = nbclient.NotebookClient(
        notebook, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    defined, facts = (json.loads(line) for line in notebook.cells[-1].outputs[0]["text"].splitlines())
    assert [name for name, present in defined.items() if not present] == []
    assert facts == {
        "train": 1000, "test": 100, "K_train": [1000, 1000], "K_test": [100, 1000],
        "logreg_losses": 100, "depths": [1, 2, 3], "sigma": facts["sigma"],
    }
    assert facts["sigma"] > 1.0, "pixel-scale bandwidth expected"
