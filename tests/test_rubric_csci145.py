"""End to end: csci145-ps6 graded by the real engine (sandboxed kernel, probes, judge).

The reference notebook and an independently written correct solution get every autograded
point; notebooks with seeded mistakes lose points on the mistaken part only, and the message
names the mistake.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from graders.checks import Outcome
from tests.conftest import REFERENCE_NOTEBOOKS, make_notebook

pytestmark = pytest.mark.slow

IMPORTS = """
import numpy as np, torch, torch.nn as nn, torch.nn.functional as F
import matplotlib.pyplot as plt
from torch.utils.data import DataLoader, Subset, TensorDataset
from torchvision import datasets, transforms
torch.manual_seed(0); rng = np.random.default_rng(0)
"""

ALT_SOLUTION = [
    ("markdown", "# Problem 1"),
    IMPORTS,
    ("markdown", "## Part A"),
    """
train_full = datasets.MNIST("./data", train=True, download=True)
test_full = datasets.MNIST("./data", train=False, download=True)
tr_idx = torch.randperm(len(train_full))[:1000]
te_idx = torch.randperm(len(test_full))[:100]
Xtr = train_full.data[tr_idx].float().div(255).reshape(-1, 784)
ytr = train_full.targets[tr_idx]
Xte = test_full.data[te_idx].float().div(255).reshape(-1, 784)
yte = test_full.targets[te_idx]
train_set, test_set = TensorDataset(Xtr, ytr), TensorDataset(Xte, yte)
train_loader = DataLoader(train_set, batch_size=50, shuffle=True)
test_loader = DataLoader(test_set, batch_size=50)
""",
    ("markdown", "## Part B"),
    """
class SoftmaxRegression(nn.Module):
    def __init__(self):
        super().__init__()
        self.W = nn.Parameter(torch.zeros(784, 10))
        self.b = nn.Parameter(torch.zeros(10))
    def forward(self, x):
        return x.reshape(len(x), -1) @ self.W + self.b

logreg_model = SoftmaxRegression()
opt = torch.optim.Adam(logreg_model.parameters(), lr=0.01)
logreg_losses, it = [], iter(train_loader)
for step in range(100):
    try:
        xb, yb = next(it)
    except StopIteration:
        it = iter(train_loader); xb, yb = next(it)
    loss = F.cross_entropy(logreg_model(xb), yb)
    opt.zero_grad(); loss.backward(); opt.step()
    logreg_losses.append(float(loss))
fig, axs = plt.subplots(2, 5)
for ax, i in zip(axs.ravel(), rng.choice(100, 10, replace=False)):
    ax.imshow(Xte[i].reshape(28, 28)); ax.set_xlabel(f"predicted {int(logreg_model(Xte[i:i+1]).argmax())}")
plt.show()
""",
    ("markdown", "## Part C"),
    """
from scipy.spatial.distance import cdist
def gaussian_kernel(X1, X2, sigma):
    return np.exp(-cdist(np.asarray(X1, float), np.asarray(X2, float), "sqeuclidean") / (2 * sigma ** 2))
sigma = 0.5 * float(np.median(cdist(Xtr.numpy(), Xtr.numpy())))
K_train = gaussian_kernel(Xtr.numpy(), Xtr.numpy(), sigma)
K_test = gaussian_kernel(Xte.numpy(), Xtr.numpy(), sigma)
class KernelLogReg(nn.Module):
    def __init__(self, n):
        super().__init__(); self.lin = nn.Linear(n, 10)
    def forward(self, k):
        return self.lin(k)
kernel_model = KernelLogReg(len(K_train))
Kt = torch.tensor(K_train, dtype=torch.float32)
opt = torch.optim.Adam(kernel_model.parameters(), lr=0.05)
for _ in range(300):
    loss = F.cross_entropy(kernel_model(Kt), ytr); opt.zero_grad(); loss.backward(); opt.step()
preds = kernel_model(torch.tensor(K_test, dtype=torch.float32)).argmax(1)
fig, axs = plt.subplots(1, 4)
for j, ax in enumerate(axs):
    ax.imshow(Xte[j].reshape(28, 28)); ax.set_title(str(int(preds[j])))
plt.show()
""",
    ("markdown", "# Problem 2\n## Part A"),
    """
def sigmoid_derivative(z):
    z = torch.as_tensor(z)
    e = torch.exp(-z.abs())
    return e / (1 + e) ** 2
""",
    ("markdown", "## Part B"),
    """
class MLP(nn.Module):
    def __init__(self, L, d, m, k):
        super().__init__()
        sizes = [d] + [m] * (L - 1) + [k]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
    def forward(self, x):
        for layer in self.layers[:-1]:
            x = F.relu(layer(x))
        return self.layers[-1](x)
def make_mlp(num_layers, d, m, k):
    return MLP(num_layers, d, m, k)
""",
    ("markdown", "## Part C"),
    """
train_losses, test_losses = {}, {}
for L in (1, 2, 3):
    net = make_mlp(L, 784, 64, 10); opt = torch.optim.SGD(net.parameters(), lr=0.1)
    train_losses[L], test_losses[L] = [], []
    for epoch in range(3):
        for xb, yb in train_loader:
            loss = F.cross_entropy(net(xb), yb); opt.zero_grad(); loss.backward(); opt.step()
        with torch.no_grad():
            train_losses[L].append(float(F.cross_entropy(net(Xtr), ytr)))
            test_losses[L].append(float(F.cross_entropy(net(Xte), yte)))
fig, axs = plt.subplots(1, 3, figsize=(9, 3))
for ax, L in zip(axs, (1, 2, 3)):
    ax.plot(train_losses[L], "-", label="train"); ax.plot(test_losses[L], linestyle="dotted", label="test"); ax.legend()
plt.show()
""",
]


def checks_by_name(result) -> dict:
    return {c.name: c for c in result.checks}


def part_scores(result) -> dict[str, float]:
    return {p.id: p.score for p in result.parts}


def test_reference_notebook_gets_every_autograded_point(grade_notebook):
    result, out = grade_notebook(REFERENCE_NOTEBOOKS / "csci145-ps6.ipynb")
    failed = {c.name: c.message for c in result.checks if not c.passed}
    assert failed == {}
    assert result.score == result.max_score == 90
    assert [c.detail for c in result.checks if "authoring bug" in (c.detail or "")] == [], "every read is declared"
    data = json.loads((out / "results.json").read_text())
    assert data["score"] == 90 and all(t["name"].split(" ")[0] in {p.id for p in result.parts} for t in data["tests"])


def test_independent_correct_solution_gets_every_point(grade_notebook):
    result, _ = grade_notebook(make_notebook(ALT_SOLUTION), name="alt.ipynb")
    failed = {c.name: f"{c.outcome.value}: {c.message}" for c in result.checks if not c.passed}
    assert failed == {}
    assert result.assignment == "csci145-ps6"  # detected from names and headings, no metadata
    biases = [w for p in result.parts for w in p.warnings if "biases" in w]
    assert biases, "biases in make_mlp are allowed but reported"


SIGMOID = "def sigmoid_derivative(z):\n    s = torch.sigmoid(torch.as_tensor(z))\n    return s * (1 - s)\n"

MISTAKES_A = [
    IMPORTS,
    ("markdown", "## 1A · Loading MNIST"),
    """
mnist = datasets.MNIST("data", train=True, download=True, transform=transforms.ToTensor())
train_set, test_set = Subset(mnist, range(1000)), Subset(mnist, range(1000, 1100))
train_loader, test_loader = DataLoader(train_set, batch_size=100), DataLoader(test_set, batch_size=100)
""",
    ("markdown", "## 1C · Kernel"),
    "def gaussian_kernel(X1, X2, sigma):\n    return torch.exp(-torch.cdist(X1, X2) ** 2 / sigma ** 2)\n",
    ("markdown", "## 2A · Sigmoid derivative"),
    "def sigmoid_derivative(z):\n    s = torch.sigmoid(torch.as_tensor(z))\n    return s * (1 + s)\n",
    ("markdown", "## 2B · Network"),
    "def make_mlp(num_layers, d, m, k):\n    sizes = [d] + [m] * (num_layers - 1) + [k]\n"
    "    layers = []\n    for a, b in zip(sizes[:-1], sizes[1:]):\n        layers += [nn.Linear(a, b), nn.ReLU()]\n    return nn.Sequential(*layers)\n",
    ("markdown", "## 2C · Comparison"),
    "train_losses = {1: [2.0, 1.5, 1.2], 2: [2.1, 1.4, 1.0], 3: [2.2, 1.3, 0.9]}\ntest_losses = {k: list(v) for k, v in train_losses.items()}\n",
]

MISTAKES_B = [
    IMPORTS,
    ("markdown", "## 1A · Loading MNIST"),
    """
mnist = datasets.MNIST("data", train=True, download=True, transform=transforms.ToTensor())
perm = torch.randperm(len(mnist))
train_set, test_set = Subset(mnist, perm[:1000].tolist()), Subset(mnist, perm[950:1050].tolist())
train_loader = DataLoader(train_set, batch_size=64, shuffle=True, drop_last=True)
test_loader = DataLoader(test_set, batch_size=10)
""",
    ("markdown", "## 1C · Kernel"),
    "def gaussian_kernel(X1, X2, sigma):\n    return torch.exp(-sigma * torch.cdist(X1, X2) ** 2)\n",
    ("markdown", "## 2A · Sigmoid derivative"),
    "def sigmoid_derivative(z):\n    z = torch.as_tensor(z)\n    return torch.exp(-z) / (1 + torch.exp(-z)) ** 2\n",
    ("markdown", "## 2B · Network"),
    "def make_mlp(num_layers, d, m, k):\n    layers = [nn.Linear(d, m), nn.ReLU()]\n"
    "    for _ in range(num_layers - 1):\n        layers += [nn.Linear(m, m), nn.ReLU()]\n    return nn.Sequential(*layers, nn.Linear(m, k))\n",
    ("markdown", "## 2C · Comparison"),
    "train_losses = {1: [1.0, 1.2, 1.4], 2: [2.1, 1.4, 1.0], 3: [2.2, 1.3, 0.9]}\ntest_losses = {1: [1.1, 1.3, 1.5], 2: [2.0, 1.5, 1.2], 3: [2.0, 1.4, 1.1]}\n",
]

MISTAKES_C = [
    IMPORTS,
    ("markdown", "## 1C · Kernel"),
    "def gaussian_kernel(X1, X2, sigma):\n    return torch.exp(-torch.cdist(X1, X2) / (2 * sigma ** 2))\n",
    ("markdown", "## 2A · Sigmoid derivative"),
    SIGMOID,
    ("markdown", "## 2B · Network"),
    "def make_mlp(num_layers, d, m, k):\n    sizes = [d] + [m] * (num_layers - 1) + [k]\n"
    "    return nn.Sequential(*[nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])])\n",
]


@pytest.fixture(scope="module")
def graded_mistakes(tmp_path_factory):
    from graders.grade import grade_submission
    from tests.conftest import fast_config, write_notebook

    results = {}
    for name, cells in (("A", MISTAKES_A), ("B", MISTAKES_B), ("C", MISTAKES_C)):
        directory = tmp_path_factory.mktemp(name)
        path = write_notebook(make_notebook(cells, assignment="csci145-ps6"), directory / f"{name}.ipynb")
        results[name] = grade_submission(path, fast_config(), out_dir=directory / "out")
    return results


@pytest.mark.parametrize(
    "notebook, check, words",
    [
        ("A", "sets_are_random_draws", "first 1000 images"),
        ("A", "kernel_matches_reference", "your kernel is exp(−‖x − x′‖²/σ²): the denominator should be 2σ²"),
        ("A", "sigmoid_derivative_matches_autograd", "σ(z)(1 + σ(z))"),
        ("A", "mlp_relu_between_layers_not_after_last", "ReLU after the last layer"),
        ("A", "depth_histories_present", "test loss is computed on the training set"),
        ("B", "test_images_not_in_train", "also appear in train_set"),
        ("B", "loaders_cover_each_set_once", "drop_last"),
        ("B", "kernel_matches_reference", "your kernel is exp(−σ‖x − x′‖²)"),
        ("B", "sigmoid_derivative_stable_at_large_inputs", "overflows"),
        ("B", "mlp_weight_shapes_match_depth", "off-by-one depth"),
        ("B", "training_loss_decreases_per_depth", "depth 1"),
        ("C", "kernel_matches_reference", "‖x − x′‖ unsquared"),
        ("C", "mlp_relu_between_layers_not_after_last", "no ReLU"),
    ],
)
def test_seeded_mistake_is_named(graded_mistakes, notebook, check, words):
    result = checks_by_name(graded_mistakes[notebook])[check]
    assert result.outcome is Outcome.FAILED, result
    assert result.score == 0
    text = f"{result.message} {result.mistake or ''}"
    assert words in text, text


def test_mistakes_cost_points_only_on_their_part(graded_mistakes):
    """A's and B's 2A/2B mistakes are in 2A/2B; C's 2A is correct and keeps its 5 points."""
    scores = part_scores(graded_mistakes["C"])
    assert scores["2A"] == 5
    checks = checks_by_name(graded_mistakes["A"])
    assert checks["datasets_have_contract_lengths"].passed and checks["items_are_image_label_pairs"].passed
    assert checks["sigmoid_derivative_stable_at_large_inputs"].passed  # the sign error is one deduction, in one check
    assert checks["mlp_weight_shapes_match_depth"].passed and checks["mlp_output_matches_formula"].passed
    assert checks["training_loss_decreases_per_depth"].passed


def test_missing_names_score_zero_with_the_defined_names_listed(graded_mistakes):
    result = graded_mistakes["C"]
    kernel_train = checks_by_name(result)["K_train_is_valid_kernel"]
    assert kernel_train.outcome is Outcome.NOT_RUN and kernel_train.score == 0
    assert "`K_train` is not defined" in kernel_train.message and "gaussian_kernel" in kernel_train.message
