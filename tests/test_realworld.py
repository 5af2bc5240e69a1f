"""Real-world notebooks: other names, one giant cell, VS Code exports, helpers, 4-tuples, parts left out.

Each is graded on what can be found. The results say which object was graded for each part and
why (``PartResult.graded_objects``), list the names the notebook defined, and a missing part says
so in one line.

Budget: about 35 s with ``-n 2`` (two notebooks graded; the csci145 one trains a logistic
regression for 100 steps on 1000 digits).
"""

from __future__ import annotations

import json

import nbformat
import pytest

from graders.grade import grade_submission
from graders.result import GradingResult
from tests.conftest import fast_config
from tests.hostile_corpus import valid_results

GIANT_CELL = '''\
import numpy as np, torch, matplotlib.pyplot as plt
from torch import nn
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms

torch.manual_seed(0)
mnist = datasets.MNIST("./data", train=True, download=True, transform=transforms.ToTensor())
order = torch.randperm(len(mnist))
trn, tst = Subset(mnist, order[:1000].tolist()), Subset(mnist, order[1000:1100].tolist())
dl_train, dl_test = DataLoader(trn, batch_size=64, shuffle=True), DataLoader(tst, batch_size=100)

def to_flat(x):
    return x.reshape(len(x), -1)

def evaluate(net, loader):
    """A helper returning a 4-tuple."""
    xs, ys = zip(*[(x, y) for x, y in loader])
    x, y = torch.cat(xs), torch.cat(ys)
    with torch.no_grad():
        out = net(x)
    pred = out.argmax(1)
    return nn.functional.cross_entropy(out, y).item(), (pred == y).float().mean().item(), pred, y

def train_logreg(steps=100):
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    history, batches = [], iter(())
    for _ in range(steps):
        try:
            x, y = next(batches)
        except StopIteration:
            batches = iter(dl_train)
            x, y = next(batches)
        opt.zero_grad()
        loss = nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        history.append(loss.item())
    return net, history, evaluate(net, dl_train)[1], evaluate(net, dl_test)[1]

model, losses, acc_train, acc_test = train_logreg()
_, _, pred, truth = evaluate(model, dl_test)
fig, axes = plt.subplots(2, 5)
for i, ax in enumerate(axes.flat):
    ax.imshow(tst[i][0][0], cmap="gray")
    ax.set_title(f"pred {pred[i].item()}")
plt.show()

def kernel_fn(A, B, s):
    A, B = torch.as_tensor(A, dtype=torch.float64), torch.as_tensor(B, dtype=torch.float64)
    d2 = (A ** 2).sum(1)[:, None] + (B ** 2).sum(1)[None, :] - 2 * A @ B.T
    return torch.exp(-d2.clamp_min(0) / (2 * s ** 2))

X = to_flat(torch.stack([trn[i][0] for i in range(len(trn))]))
bandwidth = float(torch.cdist(X[:200], X[:200]).median())
K = kernel_fn(X, X, bandwidth)

def sigmoid_prime(z):
    s = torch.sigmoid(torch.as_tensor(z, dtype=torch.float64))
    return s * (1 - s)

def build_mlp(num_layers, d, m, k):
    if num_layers == 1:
        return nn.Linear(d, k)
    layers = [nn.Linear(d, m), nn.ReLU()]
    for _ in range(num_layers - 2):
        layers += [nn.Linear(m, m), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(m, k))
'''

COMPUTE_GRADIENTS = '''\
def forward(X, params, g):
    """A helper returning a 4-tuple of the hidden quantities."""
    a1 = X @ params["W1"] + params["b1"]
    h1 = g(a1) + X
    a2 = h1 @ params["W2"] + params["b2"]
    return a1, h1, a2, g(a2) + h1

def compute_gradients(X, Y, params, g, g_prime):
    a1, h1, a2, h2 = forward(X, params, g)
    n = X.shape[0]
    dy = -2 * (Y - (h2 @ params["W3"] + params["b3"])) / n
    dh2 = dy @ params["W3"].T
    da2 = dh2 * g_prime(a2)
    dh1 = dh2 + da2 @ params["W2"].T
    da1 = dh1 * g_prime(a1)
    return {"W3": h2.T @ dy, "b3": dy.sum(0), "W2": h1.T @ da2, "b2": da2.sum(0), "W1": X.T @ da1, "b1": da1.sum(0)}
'''


def vscode_export(cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    """A notebook as VS Code saves it: null execution counts, its own metadata, no nbgrade marker."""
    nb = nbformat.v4.new_notebook()
    for kind, source in cells:
        cell = nbformat.v4.new_markdown_cell(source) if kind == "markdown" else nbformat.v4.new_code_cell(source)
        if kind == "code":
            cell.execution_count = None
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="(stale output from VS Code)\n")]
        nb.cells.append(cell)
    nb.metadata = {
        "kernelspec": {"display_name": ".venv", "language": "python", "name": "python3"},
        "language_info": {"name": "python", "version": "3.11.4", "mimetype": "text/x-python"},
        "orig_nbformat": 4,
        "vscode": {"interpreter": {"hash": "0123456789abcdef"}},
    }
    return nb


def graded(result: GradingResult, part: str) -> dict[str, tuple[str | None, str, str]]:
    return {g.contract_name: (g.found_as, g.how, g.reason) for g in result.part(part).graded_objects}


@pytest.fixture(scope="module")
def giant(tmp_path_factory) -> GradingResult:
    tmp = tmp_path_factory.mktemp("giant")
    nb = vscode_export([("markdown", "# CSCI 145 — Problem Set 6\nMy solutions, all in one cell."), ("code", GIANT_CELL)])
    path = tmp / "my_homework.ipynb"
    nbformat.write(nb, str(path))
    result = grade_submission(path, fast_config(cell_timeout=120, total_timeout=240), out_dir=tmp / "out")
    valid_results(tmp / "out")
    return result


def test_the_assignment_is_detected_and_the_vscode_export_runs(giant):
    assert giant.assignment == "csci145-ps6" and giant.status == "graded"
    assert giant.execution.issues == ()
    assert {"trn", "tst", "model", "losses", "to_flat", "evaluate", "train_logreg", "kernel_fn", "sigmoid_prime",
            "build_mlp", "acc_train", "acc_test"} <= set(giant.defined_names)


def test_other_names_are_found_and_the_results_say_how(giant):
    assert graded(giant, "1A")["train_set"][:2] == ("trn", "discovered")
    assert "only Dataset of 1000 items" in graded(giant, "1A")["train_set"][2]
    assert graded(giant, "1A")["test_set"][:2] == ("tst", "discovered")
    assert graded(giant, "1A")["train_loader"][:2] == ("dl_train", "alias")
    assert graded(giant, "1B")["logreg_model"][:2] == ("model", "alias")
    assert graded(giant, "1B")["logreg_losses"][:2] == ("losses", "alias")
    assert graded(giant, "1C")["gaussian_kernel"][:2] == ("kernel_fn", "alias")
    assert graded(giant, "1C")["K_train"][:2] == ("K", "alias") and graded(giant, "1C")["sigma"][:2] == ("bandwidth", "alias")
    assert graded(giant, "2A")["sigmoid_derivative"][:2] == ("sigmoid_prime", "alias")
    assert graded(giant, "2B")["make_mlp"][:2] == ("build_mlp", "alias")


def test_what_was_found_is_graded_normally(giant):
    scores = {part.id: part.score for part in giant.parts}
    assert scores["1A"] == 10 and scores["1B"] == 20 and scores["2A"] == 5 and scores["2B"] == 15
    passed = {check.name for check in giant.checks if check.passed}
    assert {"kernel_matches_reference", "K_train_is_valid_kernel", "K_train_matches_gaussian_kernel_of_training_images"} <= passed


def test_a_part_left_out_says_so_in_one_line(giant):
    for check in giant.part("2C").checks[:2]:
        assert check.message.startswith("`train_losses` is not defined in your notebook. Names your notebook defines: ")
        assert "\n" not in check.message and "kernel_fn" in check.message
    k_test = next(c for c in giant.part("1C").checks if c.name == "K_test_has_shape_100_by_n")
    assert k_test.message.startswith("`K_test` is not defined in your notebook.")


def test_compute_gradients_with_a_4_tuple_helper_is_graded_for_p1(tmp_path):
    nb = vscode_export([("markdown", "# ECE 685D HW2\n## P1 · Backprop on a Residual MLP"), ("code", COMPUTE_GRADIENTS)])
    path = tmp_path / "hw2.ipynb"
    nbformat.write(nb, str(path))
    result = grade_submission(path, fast_config(), out_dir=tmp_path / "out")
    data = valid_results(tmp_path / "out")
    assert result.assignment == "ece685d-hw2"
    assert graded(result, "P1")["residual_mlp_gradients"][:2] == ("compute_gradients", "alias")
    assert result.part("P1").score == 20 and data["score"] == 20
    assert {"forward", "compute_gradients"} <= set(result.defined_names)
    for part in ("P2", "P3"):
        messages = [c.message for c in result.part(part).checks if not c.passed]
        assert messages and all("\n" not in m for m in messages)
        assert any("is not defined in your notebook" in m for m in messages)
    assert json.loads((tmp_path / "out" / "grading.json").read_text())["execution"]["issues"] == []
