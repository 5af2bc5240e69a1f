"""Write demo-linreg's student template and its executed reference notebook from one list of cells.

    .venv/bin/python examples/demo-linreg/build_notebooks.py

The template gets the stubs, the reference notebook the solution (then it is executed, so that the
report can show its outputs beside a student's). Both carry ``metadata.nbgrade.assignment``.
Rerun after changing a statement; the package must be installed (the check cells import it).
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
TEMPLATE = HERE / "demo_linreg" / "template" / "demo-linreg.ipynb"
REFERENCE = HERE / "demo_linreg_reference" / "demo-linreg.ipynb"

INTRO = """# Demo · Linear regression warm-up

This notebook is your answer sheet: three short parts, each with a statement, a code cell with a
**stub** for the name the grader calls, and a check cell. Replace the stubs with your own code and
keep the names (`mse_loss`, `mse_gradient`, `fit_linreg`).

* `check("LR1")` (the cell after each part) runs that part's *public* checks on your live objects,
  on inputs drawn for the occasion: it tells you what was called, what was expected and what came
  back. `check()` runs all parts.
* When you hand it in, the grader runs the whole notebook from the top in a fresh kernel and calls
  your functions on **hidden inputs** drawn at grading time, so hard-coded answers earn nothing.
  Your LR3 weights are also compared with the least-squares solution (a hidden check).

Throughout, $X \\in \\mathbb{R}^{n\\times d}$ holds one example per row, $y \\in \\mathbb{R}^n$ and
$w \\in \\mathbb{R}^d$ are NumPy arrays (1-D), and

$$L(w) = \\frac{1}{n}\\,\\lVert Xw - y \\rVert^2 = \\frac{1}{n}\\sum_{i=1}^{n} (x_i^\\top w - y_i)^2 .$$"""

IMPORTS = """import matplotlib.pyplot as plt
import numpy as np

try:  # the public checks; imported first, so that they see every figure you draw
    from graders import check
except ImportError:
    print("The checks are not installed yet: README.md says how (one pip install).")"""

LR1 = """## LR1 · Mean squared error (3 points)

Write `mse_loss(w, X, y)` returning $L(w)$ as one number (a float or a 0-d array): the **mean**,
not the sum, of the squared residuals, with no factor ½ and no square root."""

LR2 = """## LR2 · Its gradient, by hand (4 points)

Write `mse_gradient(w, X, y)` returning $\\nabla L(w) \\in \\mathbb{R}^d$ (the shape of `w`), derived
by hand and written with NumPy: **no autograd**. The grader compares it with PyTorch's autograd on
hidden $w, X, y$:

$$\\nabla L(w) = \\frac{2}{n} X^\\top (Xw - y).$$"""

LR3 = """## LR3 · Gradient descent and its loss curve (3 points)

Write `fit_linreg(X, y, lr, steps)`: start from $w = 0$, take exactly `steps` steps
$w \\leftarrow w - \\mathrm{lr}\\,\\nabla L(w)$ with your `mse_gradient`, record $L(w)$ once per step,
and return the pair `(w, losses)` (the final weights and the list of losses). Then train on the
data below and **plot the loss per step** (label the axes: the y-label must say *loss*)."""

STUBS = {
    "LR1": 'def mse_loss(w, X, y):\n    # (1/n) * ||Xw - y||^2\n    raise NotImplementedError("still the template\'s stub")',
    "LR2": 'def mse_gradient(w, X, y):\n    # (2/n) * X^T (Xw - y), by hand\n    raise NotImplementedError("still the template\'s stub")',
    "LR3": 'def fit_linreg(X, y, lr, steps):\n    # w = 0; for each step: record the loss, then w <- w - lr * gradient; return w, losses\n'
           '    raise NotImplementedError("still the template\'s stub")',
}
SOLUTIONS = {
    "LR1": "def mse_loss(w, X, y):\n    r = X @ w - y\n    return r @ r / len(y)",
    "LR2": "def mse_gradient(w, X, y):\n    return 2.0 / len(y) * X.T @ (X @ w - y)",
    "LR3": ("def fit_linreg(X, y, lr, steps):\n    w = np.zeros(X.shape[1])\n    losses = []\n"
            "    for _ in range(steps):\n        losses.append(float(mse_loss(w, X, y)))\n"
            "        w = w - lr * mse_gradient(w, X, y)\n    return w, losses"),
}
TRAIN = """rng = np.random.default_rng(0)
X_train = rng.normal(size=(100, 2))
y_train = X_train @ np.array([1.5, -0.5]) + 0.1 * rng.normal(size=100)
w_fit, losses = fit_linreg(X_train, y_train, lr=0.1, steps=50)
print("w =", w_fit)

plt.figure(figsize=(5, 3))
plt.plot(losses)
plt.xlabel("step")
plt.ylabel("MSE loss")
plt.title("Gradient descent")
plt.show()"""


def cells(solved: bool) -> list[nbformat.NotebookNode]:
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    body = SOLUTIONS if solved else STUBS
    train = TRAIN if solved else "# Train on X_train, y_train (lr=0.1, steps=50) and plot the loss per step.\n" + "\n".join(
        line for line in TRAIN.splitlines() if line.startswith(("rng", "X_train", "y_train")))
    return [
        md(INTRO), code(IMPORTS),
        md(LR1), code(body["LR1"]), code('check("LR1")'),
        md(LR2), code(body["LR2"]), code('check("LR2")'),
        md(LR3), code(body["LR3"]), code(train), code('check("LR3")'),
    ]


def notebook(solved: bool) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook(cells=cells(solved))
    nb.metadata.update({
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
        "nbgrade": {"assignment": "demo-linreg"},
    })
    return nb


def main() -> int:
    template = notebook(solved=False)
    nbformat.write(template, str(TEMPLATE))
    reference = notebook(solved=True)
    NotebookClient(reference, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}).execute()
    nbformat.write(reference, str(REFERENCE))
    print(f"wrote {TEMPLATE.relative_to(HERE)} and {REFERENCE.relative_to(HERE)} (executed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
