"""ece685d-hw2 rubric: the reference notebook, an independent correct solution, and subtly wrong ones.

Each wrong notebook is the independent solution below with exact text substitutions (asserted to
apply), so every mistake is a visible diff. A notebook carries at most one mistake per part (two
in P1 only where they touch disjoint gradients, since each gradient is its own check), and every
part is asserted separately: exactly the expected checks fail, each message names the mistake, and
a correct part keeps every point. Grading a notebook costs ≈ 10 s of CPU (torch and torchvision
imports alone ≈ 7 s), so the file grades eight notebooks: ≤ 150 s with ``-n 2`` on an idle
2-core machine. The catalogues themselves are also unit-tested without a kernel.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REFERENCE_NOTEBOOKS, fast_config, make_notebook
from graders.result import GradingResult, PartResult
from graders.assignments.ece685d_hw2 import rubric

ASSIGNMENT = "ece685d-hw2"
FULL = {"P1": 20.0, "P2": 30.0, "P3": 30.0}

# ------------------------------------------------------------------------------------------------
# An independent correct solution: NumPy backprop, classic torchvision transforms over a random
# Subset, NumPy logistic regression; names taken from the documented aliases where they exist.
# ------------------------------------------------------------------------------------------------
IMPORTS = """
import time
import numpy as np
import torch
import torchvision
import matplotlib.pyplot as plt
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import transforms
"""

P1_SOURCE = """
def residual_backprop(X, Y, params, g, g_prime):
    X = np.asarray(X, dtype=float)
    Y = np.asarray(Y, dtype=float).reshape(-1, 1)
    W1, b1, W2, b2, W3, b3 = (np.asarray(params[k], dtype=float) for k in ("W1", "b1", "W2", "b2", "W3", "b3"))
    N = X.shape[0]
    a1 = X @ W1 + b1
    h1 = g(a1) + X
    a2 = h1 @ W2 + b2
    h2 = g(a2) + h1
    y_hat = h2 @ W3 + b3
    dy = 2 * (y_hat - Y) / N
    e2 = dy @ W3.T
    d2 = e2 * g_prime(a2)
    e1 = e2 + d2 @ W2.T
    d1 = e1 * g_prime(a1)
    return {"W1": X.T @ d1, "b1": d1.sum(axis=0), "W2": h1.T @ d2, "b2": d2.sum(axis=0),
            "W3": h2.T @ dy, "b3": dy.sum(axis=0)}
"""

P2_SOURCE = """
class TwoViewMNIST(Dataset):
    def __init__(self, mnist, augment):
        self.mnist = mnist
        self.augment = augment

    def __len__(self):
        return len(self.mnist)

    def __getitem__(self, index):
        image, label = self.mnist[index]
        return self.augment(image), self.augment(image), torch.tensor(label)


augment = transforms.Compose([
    transforms.RandomCrop(28, padding=3),
    transforms.RandomRotation(15),
    transforms.ToTensor(),
    transforms.Normalize((0.1307,), (0.3081,)),
])
mnist = torchvision.datasets.MNIST("data", train=True, download=True)
subset = Subset(mnist, torch.randperm(len(mnist), generator=torch.Generator().manual_seed(3))[:1500].tolist())
two_view_ds = TwoViewMNIST(subset, augment)

picks = list(range(8))
fig, axes = plt.subplots(8, 3, figsize=(2, 5), dpi=40)
for row, i in enumerate(picks):
    image, label = subset[i]
    x1, x2, _ = two_view_ds[i]
    axes[row, 0].imshow(np.asarray(image), cmap="gray")
    axes[row, 0].set_xlabel(f"y = {label}")
    axes[row, 1].imshow(x1[0], cmap="gray")
    axes[row, 2].imshow(x2[0], cmap="gray")
plt.show()
"""

P3_SOURCE = """
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

features, targets = load_breast_cancer(return_X_y=True)
Xa, Xb, ya, yb = train_test_split(features, targets, test_size=0.3, random_state=1)
mu, sd = Xa.mean(0), Xa.std(0)
Xtr = np.c_[(Xa - mu) / sd, np.ones(len(Xa))]
Xte = np.c_[(Xb - mu) / sd, np.ones(len(Xb))]


def log_sig(z):
    return -np.logaddexp(0, -z)


def sigmoid(z):
    return np.exp(log_sig(z))


def _args(w, X, y):
    return np.asarray(w, float).reshape(-1), np.asarray(X, float), np.asarray(y, float).reshape(-1)


def bce_loss(w, X, y):
    w, X, y = _args(w, X, y)
    z = X @ w
    return -np.sum(y * log_sig(z) + (1 - y) * log_sig(-z))


def bce_grad(w, X, y):
    w, X, y = _args(w, X, y)
    z = X @ w
    return X.T @ (sigmoid(z) - y)


def bce_hess(w, X, y):
    w, X, y = _args(w, X, y)
    s = sigmoid(X @ w)
    return X.T @ (X * (s * (1 - s))[:, None])


RIDGE = 1.0
ITERS = 60


def gd_step(w):
    return bce_grad(w, Xtr, ya) / len(ya)


def newton_step(w):
    H = bce_hess(w, Xtr, ya)
    return np.linalg.solve(H + RIDGE * np.eye(len(w)), bce_grad(w, Xtr, ya))


def diag_step(w):
    H = bce_hess(w, Xtr, ya)
    return bce_grad(w, Xtr, ya) / (np.diag(H) + RIDGE)


def run(step, lr=0.1):
    w = np.zeros(Xtr.shape[1])
    record = {"loss": [], "accuracy": [], "time": [], "weights_norm": []}
    start = time.perf_counter()
    for it in range(ITERS + 1):
        record["loss"].append(bce_loss(w, Xtr, ya))
        record["accuracy"].append(np.mean((Xte @ w > 0) == yb))
        record["weights_norm"].append(np.linalg.norm(w))
        record["time"].append(time.perf_counter() - start)
        w = w - lr * step(w)
    return record


history = {"gd": run(gd_step), "newton": run(newton_step), "newton_diag": run(diag_step)}

fig, axes = plt.subplots(1, 3, figsize=(6, 2), dpi=40)
for method, record in history.items():
    axes[0].plot(record["loss"], label=method)
    axes[1].plot(record["accuracy"], label=method)
    axes[2].plot(record["time"], label=method)
axes[0].set(xlabel="iteration", ylabel="loss")
axes[1].set(xlabel="iteration", ylabel="test accuracy")
axes[2].set(xlabel="iteration", ylabel="time since start (s)")
plt.show()
"""


def solution_notebook(p1: str | None = P1_SOURCE, p2: str | None = P2_SOURCE, p3: str | None = P3_SOURCE):
    """A notebook with the given part sources (None leaves a part out), each under its heading."""
    cells: list = [("markdown", "# ECE 685D HW2"), IMPORTS]
    for part, source in (("P1", p1), ("P2", p2), ("P3", p3)):
        if source is not None:
            cells += [("markdown", f"## {part}"), source]
    return make_notebook(cells, assignment=ASSIGNMENT)


def edit(source: str, *replacements: tuple[str, str]) -> str:
    """``source`` with each (old, new) replaced; every ``old`` must occur, so a stale edit fails loudly."""
    for old, new in replacements:
        assert old in source, f"test edit does not apply: {old!r}"
        source = source.replace(old, new)
    return source


# ------------------------------------------------------------------------------------------------
# Helpers for assertions
# ------------------------------------------------------------------------------------------------
def part(result: GradingResult, part_id: str) -> PartResult:
    return next(p for p in result.parts if p.id == part_id)


def failed(result: GradingResult, part_id: str) -> dict[str, str]:
    """Failed check name → its message and named mistake, for one part."""
    return {c.name: f"{c.message} | {c.mistake}" for c in part(result, part_id).checks if not c.passed}


def assert_full(result: GradingResult, *part_ids: str) -> None:
    for part_id in part_ids:
        assert part(result, part_id).score == FULL[part_id], (part_id, failed(result, part_id))


def assert_mistake(result: GradingResult, part_id: str, checks: set[str], words: str, allowed: set[str] = frozenset()) -> None:
    """Exactly ``checks`` (plus possibly ``allowed``) fail in ``part_id``, and each names ``words``."""
    found = failed(result, part_id)
    assert checks <= set(found) <= checks | set(allowed), (part_id, found)
    for name in checks:
        assert words in found[name], (name, found[name])
    assert part(result, part_id).score < FULL[part_id]


def grade(grade_notebook, nb, name: str) -> GradingResult:
    result, _ = grade_notebook(nb, name=name)
    assert result.status == "graded", result.messages
    return result


# ------------------------------------------------------------------------------------------------
# The reference notebook and an independent correct solution
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reference_graded(tmp_path_factory) -> tuple[GradingResult, Path]:
    """The reference notebook graded once for the module: (result, output directory)."""
    from graders.grade import grade_submission

    out = tmp_path_factory.mktemp("reference")
    return grade_submission(REFERENCE_NOTEBOOKS / "ece685d-hw2.ipynb", fast_config(seed=1), out_dir=out), out


@pytest.mark.slow
def test_reference_notebook_gets_every_autograded_point(reference_graded: tuple[GradingResult, Path]) -> None:
    result, out = reference_graded
    assert_full(result, "P1", "P2", "P3")
    assert [c.detail for c in result.checks if "authoring bug" in (c.detail or "")] == [], "every read is declared"
    p1, p3 = part(result, "P1"), part(result, "P3")
    assert p1.self_graded_points == 10 and p1.answer_markdown and "skip path" in p1.answer_markdown
    assert p3.self_graded_points == 0 and p3.answer_markdown and "Runtime" in p3.answer_markdown
    gradescope = json.loads((out / "results.json").read_text())
    assert gradescope["score"] == 80
    assert {t["name"].split(" ")[0] for t in gradescope["tests"]} == {"P1", "P2", "P3"}


@pytest.mark.slow
def test_independent_correct_solution_gets_full_marks(grade_notebook) -> None:
    result = grade(grade_notebook, solution_notebook(), "independent.ipynb")
    assert_full(result, "P1", "P2", "P3")
    found = {o.contract_name: o for p in result.parts for o in p.graded_objects}
    assert found["residual_mlp_gradients"].found_as == "residual_backprop"
    assert found["MNISTTwoView"].found_as == "TwoViewMNIST" and found["two_view_dataset"].found_as == "two_view_ds"
    assert found["bce_gradient"].found_as == "bce_grad" and found["histories"].found_as == "history"


# ------------------------------------------------------------------------------------------------
# Subtly wrong notebooks: one mistake per part, asserted part by part
# ------------------------------------------------------------------------------------------------
P1_TRANSPOSED_AND_B3_MEAN = edit(P1_SOURCE, ('"W1": X.T @ d1', '"W1": d1.T @ X'), ('"W2": h1.T @ d2', '"W2": d2.T @ h1'),
                                 ('"b3": dy.sum(axis=0)', '"b3": dy.mean(axis=0)'))
"""Two P1 mistakes that touch disjoint gradients (W1, W2 and b3): each check names its own."""
P1_FORWARD_W = edit(
    P1_SOURCE,
    ("a1 = X @ W1 + b1", "a1 = X @ W1.T + b1"), ("a2 = h1 @ W2 + b2", "a2 = h1 @ W2.T + b2"),
    ("e1 = e2 + d2 @ W2.T", "e1 = e2 + d2 @ W2"),
    ('"W1": X.T @ d1', '"W1": d1.T @ X'), ('"W2": h1.T @ d2', '"W2": d2.T @ h1'),
)
P1_NO_FACTOR_2 = edit(P1_SOURCE, ("dy = 2 * (y_hat - Y) / N", "dy = (y_hat - Y) / N"))
P1_SUM = edit(P1_SOURCE, ("dy = 2 * (y_hat - Y) / N", "dy = 2 * (y_hat - Y)"))
P1_NO_SKIP = edit(P1_SOURCE, ("e1 = e2 + d2 @ W2.T", "e1 = d2 @ W2.T"))
P1_G_NOT_PRIME = edit(P1_SOURCE, ("g_prime(a2)", "g(a2)"), ("g_prime(a1)", "g(a1)"))

P2_FOUR_TUPLE = edit(P2_SOURCE, ("return self.augment(image), self.augment(image), torch.tensor(label)",
                                 "return transforms.functional.to_tensor(image), self.augment(image), self.augment(image), torch.tensor(label)"),
                     ("x1, x2, _ = two_view_ds[i]", "_, x1, x2, _ = two_view_ds[i]"))
P2_ONE_HOT = edit(P2_SOURCE, ("torch.tensor(label)\n", "torch.nn.functional.one_hot(torch.tensor(label), 10)\n"))
P2_WRONG_IMAGE = edit(P2_SOURCE, ("image, label = self.mnist[index]",
                                  "image, _ = self.mnist[(index + 1) % len(self.mnist)]\n        label = self.mnist[index][1]"))
P2_SAME_VIEW = edit(P2_SOURCE, ("return self.augment(image), self.augment(image), torch.tensor(label)",
                                "view = self.augment(image)\n        return view, view, torch.tensor(label)"))
P2_RESEEDED = edit(P2_SOURCE, ("image, label = self.mnist[index]", "torch.manual_seed(index)\n        image, label = self.mnist[index]"))

P3_MEAN = edit(P3_SOURCE, ("return -np.sum(y * log_sig(z)", "return -np.mean(y * log_sig(z)"),
               ("return X.T @ (sigmoid(z) - y)", "return X.T @ (sigmoid(z) - y) / len(y)"),
               ("return X.T @ (X * (s * (1 - s))[:, None])", "return X.T @ (X * (s * (1 - s))[:, None]) / len(y)"))
P3_ASCENT = edit(P3_SOURCE, ("return X.T @ (sigmoid(z) - y)", "return X.T @ (y - sigmoid(z))"))
P3_UNWEIGHTED_HESSIAN = edit(P3_SOURCE, ("return X.T @ (X * (s * (1 - s))[:, None])", "return X.T @ X"))
P3_NO_NEGATIVE_CLASS = edit(P3_SOURCE, ("return -np.sum(y * log_sig(z) + (1 - y) * log_sig(-z))", "return -np.sum(y * log_sig(z))"))
P3_DIAG_IS_FULL = edit(P3_SOURCE, ("return bce_grad(w, Xtr, ya) / (np.diag(H) + RIDGE)",
                                   "return np.linalg.solve(H + RIDGE * np.eye(len(w)), bce_grad(w, Xtr, ya))"))
P3_TIME_PER_ITERATION = edit(P3_SOURCE, ("    for it in range(ITERS + 1):\n", "    for it in range(ITERS + 1):\n        start = time.perf_counter()\n"))

GRADIENT_CHECKS = {f"gradient_{n}_matches_autograd" for n in ("W1", "b1", "W2", "b2", "W3", "b3")}


@pytest.mark.slow
def test_transposed_gradient_b3_averaged_twice_four_tuple_and_mean_loss(grade_notebook) -> None:
    result = grade(grade_notebook, solution_notebook(P1_TRANSPOSED_AND_B3_MEAN, P2_FOUR_TUPLE, P3_MEAN), "mistakes_a.ipynb")
    assert_mistake(result, "P1", {"gradient_W1_matches_autograd", "gradient_W2_matches_autograd"}, "transposed",
                   allowed={"gradient_b3_matches_autograd"})
    assert "averaged twice" in failed(result, "P1")["gradient_b3_matches_autograd"]
    assert part(result, "P1").score == 9
    assert_mistake(result, "P2", {"item_is_two_views_and_label"}, "(original, x1, x2, y)")
    assert part(result, "P2").score == 26
    assert_mistake(result, "P3", {"bce_loss_matches_autograd", "bce_gradient_matches_autograd", "bce_hessian_matches_autograd"},
                   "mean instead of sum", allowed={"final_accuracy_reaches_threshold"})


@pytest.mark.slow
def test_forward_with_w_one_hot_label_and_gradient_ascent(grade_notebook) -> None:
    result = grade(grade_notebook, solution_notebook(P1_FORWARD_W, P2_ONE_HOT, P3_ASCENT), "mistakes_b.ipynb")
    assert_mistake(result, "P1", {"gradient_W1_matches_autograd", "gradient_W2_matches_autograd"}, "uses W instead of Wᵀ",
                   allowed=GRADIENT_CHECKS)
    assert_mistake(result, "P2", {"label_is_source_images_integer_label"}, "one-hot")
    assert part(result, "P2").score == 26
    assert_mistake(result, "P3", {"bce_gradient_matches_autograd"}, "log-likelihood",
                   allowed={"loss_decreases_for_each_method", "final_accuracy_reaches_threshold"})
    assert "gradient ascent" in failed(result, "P3")["loss_decreases_for_each_method"]


@pytest.mark.slow
def test_missing_factor_2_wrong_image_views_and_unweighted_hessian(grade_notebook) -> None:
    result = grade(grade_notebook, solution_notebook(P1_NO_FACTOR_2, P2_WRONG_IMAGE, P3_UNWEIGHTED_HESSIAN), "mistakes_c.ipynb")
    assert_mistake(result, "P1", GRADIENT_CHECKS, "missing factor 2")
    assert_mistake(result, "P2", {"views_resemble_their_source"}, "views of the wrong image")
    assert part(result, "P2").score == 26
    assert_mistake(result, "P3", {"bce_hessian_matches_autograd"}, "σ(1 − σ) weights")
    assert part(result, "P3").score == 25


@pytest.mark.slow
def test_sum_not_mean_same_view_and_missing_negative_class(grade_notebook) -> None:
    result = grade(grade_notebook, solution_notebook(P1_SUM, P2_SAME_VIEW, P3_NO_NEGATIVE_CLASS), "mistakes_d.ipynb")
    assert_mistake(result, "P1", GRADIENT_CHECKS, "sum instead of mean")
    assert_mistake(result, "P2", {"views_differ_within_item"}, "apply the random augmentation twice")
    assert_mistake(result, "P3", {"bce_loss_matches_autograd"}, "negative-class term")


@pytest.mark.slow
def test_skip_path_dropped_reseeded_views_and_diag_newton_full_hessian(grade_notebook) -> None:
    result = grade(grade_notebook, solution_notebook(P1_NO_SKIP, P2_RESEEDED, P3_DIAG_IS_FULL), "mistakes_e.ipynb")
    assert_mistake(result, "P1", {"gradient_W1_matches_autograd", "gradient_b1_matches_autograd"}, "identity path")
    assert_mistake(result, "P2", {"views_differ_between_draws"}, "fresh randomness")
    assert_mistake(result, "P3", {"newton_diag_differs_from_newton"}, "uses the full Hessian")


@pytest.mark.slow
def test_g_for_g_prime_and_time_per_iteration(grade_notebook) -> None:
    result = grade(grade_notebook, solution_notebook(P1_G_NOT_PRIME, P2_SOURCE, P3_TIME_PER_ITERATION), "mistakes_f.ipynb")
    assert_mistake(result, "P1", {"gradient_W1_matches_autograd", "gradient_b1_matches_autograd",
                                  "gradient_W2_matches_autograd", "gradient_b2_matches_autograd"}, "g is used where g′ belongs")
    assert_full(result, "P2")
    assert_mistake(result, "P3", {"time_is_cumulative"}, "time recorded per iteration")


# ------------------------------------------------------------------------------------------------
# The catalogues and measures themselves, without a kernel
# ------------------------------------------------------------------------------------------------
def test_manual_backprop_matches_autograd_and_every_mistake_differs(mnist_root: Path) -> None:
    hidden = rubric.hidden_inputs(7, mnist_root)["P1"]
    for case, spec in enumerate(hidden["cases"]):
        X, Y, params = rubric._case_arrays(hidden, case)
        expected = rubric.autograd_residual_gradients(X, Y, params, spec["activation"])
        manual = rubric.manual_residual_gradients(X, Y, params, spec["activation"])
        for name in rubric.PARAM_NAMES:
            assert rubric.relative_error(manual[name], expected[name]) < 1e-12
        for name, mistakes in rubric.residual_mistakes(X, Y, params, spec["activation"]).items():
            for text, make in mistakes.items():
                wrong = make()
                if text in (rubric.SKIP_DROPPED,) and name not in ("W1", "b1"):
                    continue  # the skip path only reaches the first layer's gradients
                if text in (rubric.G_NOT_G_PRIME, rubric.TANH_HARDCODED, rubric.G_PRIME_AT_H) and name in ("W3", "b3"):
                    continue  # no g′ in the output layer
                if text == rubric.TANH_HARDCODED and spec["activation"] == "tanh":
                    continue  # tanh′ is the right g′ for tanh
                assert rubric.relative_error(wrong, expected[name]) > 1e-3, (spec, name, text)


def test_bce_catalogue_entries_differ_from_autograd() -> None:
    rng = np.random.default_rng(0)
    X, w = rng.normal(size=(30, 4)), rng.normal(size=4)
    y = (rng.random(30) < 0.5).astype(float)
    expected = rubric.autograd_bce(w, X, y)
    for name, mistakes in rubric.bce_mistakes(w, X, y).items():
        for text, make in mistakes.items():
            assert rubric.relative_error(np.asarray(make()).reshape(-1), expected[name].reshape(-1)) > 1e-3, (name, text)


def test_resemblance_prefers_own_source_under_shifts() -> None:
    rng = np.random.default_rng(1)
    sources = np.zeros((8, 28, 28))
    for image in sources:
        rows, cols = rng.integers(6, 20, size=2)
        image[rows:rows + 6, 4:24] = 1.0
        image[4:24, cols:cols + 3] = 1.0
    views = np.stack([rubric._shift(image[None], 3, -2)[0] for image in sources])
    correlation = rubric.resemblance(views, sources)
    assert all(rubric.best_in_groups(correlation, 8))
    wrong = rubric.resemblance(np.roll(views, 1, axis=0), sources)
    assert not any(rubric.best_in_groups(wrong, 8))


@pytest.mark.parametrize(
    ("message", "words"),
    [
        ("PicklingError: Can't pickle <function <lambda>>: attribute lookup failed", "lambda"),
        ("BlockingIOError: [Errno 11] Resource temporarily unavailable", "limits processes"),
        ("RuntimeError: DataLoader worker (pid 12) exited unexpectedly", "died"),
    ],
)
def test_worker_failures_are_explained(message: str, words: str) -> None:
    kind, text = message.split(": ", 1)
    assert words in (rubric.worker_failure_reason({"type": kind, "message": text}) or "")


def test_rubric_points_match_the_contract() -> None:
    parts = {p.id: (p.points, p.self_graded_points) for p in rubric.RUBRIC.parts}
    assert parts == {"P1": (20, 10), "P2": (30, 0), "P3": (30, 0)}
    assert rubric.RUBRIC.part("P3").self_graded_prompt
    assert len([c for c in rubric.RUBRIC.checks if c.part == "P1"]) == 6
