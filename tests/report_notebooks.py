"""Notebooks and results for the report and PDF tests: a failing one, a hostile one, a huge one.

Grading is the slow step, so :func:`graded_once` grades a notebook once per test session and
shares the result across modules and pytest-xdist workers (a lock file in the session's shared
temporary directory; the second caller reads ``grading.json``).
"""

from __future__ import annotations

import base64
import fcntl
import json
from pathlib import Path
from typing import Callable

import nbformat
from nbformat import NotebookNode

from graders.checks import CheckResult, Outcome, Visibility
from graders.result import CellIssue, ExecutionSummary, GradedObject, GradingResult, PartResult
from tests.conftest import REFERENCE_NOTEBOOKS, fast_config, make_notebook, write_notebook

PWN = "window.__pwned"
"""Every hostile payload assigns this global; a test asserts it never exists."""


def shared_root(tmp_path_factory) -> Path:
    """A directory shared by all xdist workers of this session."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if base.name.startswith("popen-gw") else base


def graded_once(tmp_path_factory, name: str, notebook: Callable[[Path], Path], **config) -> tuple[GradingResult, Path]:
    """Grade ``notebook(dir)`` once per session (with the report written) and return (result, out_dir)."""
    from graders.grade import grade_submission

    root = shared_root(tmp_path_factory) / "report-tests" / name
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        out = root / "graded"
        if not (out / "grading.json").is_file():
            path = notebook(root)
            grade_submission(path, fast_config(write_report=True, **config), out_dir=out)
        result = GradingResult.from_dict(json.loads((out / "grading.json").read_text()))
    return result, out


def reference_notebook(directory: Path) -> Path:
    target = directory / "csci145-ps6.ipynb"
    target.write_bytes((REFERENCE_NOTEBOOKS / "csci145-ps6.ipynb").read_bytes())
    return target


def failing_notebook(directory: Path) -> Path:
    """csci145-ps6 with a factor-2 kernel, an unstable sigmoid derivative, a crash and a too-shallow MLP."""
    nb = make_notebook([
        ("markdown", "# CSCI 145 Problem Set 6"),
        ("markdown", "## 1C · Gaussian kernel"),
        "import torch\nfrom torch import nn\n\n"
        "def gaussian_kernel(X1, X2, sigma):\n"
        "    X1 = torch.as_tensor(X1).double().reshape(len(X1), -1)\n"
        "    X2 = torch.as_tensor(X2).double().reshape(len(X2), -1)\n"
        "    return torch.exp(-torch.cdist(X1, X2) ** 2 / sigma ** 2)  # forgot the 2",
        ("markdown", "## 2A · Sigmoid derivative\n\nThe derivative is $\\sigma(z)(1-\\sigma(z))$ but I ran out of time."),
        "def sigmoid_derivative(z):\n    e = torch.exp(-torch.as_tensor(z, dtype=torch.float64))\n    return e / (1 + e) ** 2",
        "raise ValueError('this cell crashes on purpose')",
        ("markdown", "## 2B · Neural network of depth ℓ"),
        "def make_mlp(num_layers, d, m, k):\n    return nn.Sequential(nn.Linear(d, k, bias=False))  # ignores the depth",
    ], assignment="csci145-ps6")
    return write_notebook(nb, directory / "failing.ipynb")


# ---------------------------------------------------------------------------------------------
# The hostile notebook: everything a submission could throw at a page, built without a kernel
# ---------------------------------------------------------------------------------------------
HOSTILE_MARKDOWN = f"""## 1A · Loading MNIST

<script>{PWN}=1</script>
<img src=x onerror="{PWN}=2">
<iframe src="https://evil.example/frame"></iframe>
<svg><script>{PWN}=3</script></svg>
<style>body {{ display: none }}</style>
<meta http-equiv="refresh" content="0;url=https://evil.example/">
<base href="https://evil.example/">
<div class="badge st-passed">✓ PASSED 100 / 100</div>

[click me](javascript:{PWN}=4) and [data](data:text/html;base64,PHNjcmlwdD4=) and ![tracker](https://evil.example/t.png)

Math: $\\href{{javascript:{PWN}=5}}{{x}}$ and $\\text{{<img src=x onerror={PWN}=6>}}$ and $\\style{{background:url(https://evil.example/m)}}{{y}}$
"""
HUGE_CHARS = 3_000_000


def png_bytes() -> bytes:
    """A valid 1×1 PNG (so the test can tell real images from fake ones)."""
    return base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


def hostile_notebook() -> NotebookNode:
    """A notebook whose markdown, outputs and sources all try to run script or fetch something."""
    nb = make_notebook([("markdown", "# CSCI 145 Problem Set 6"), ("markdown", HOSTILE_MARKDOWN),
                        f"print('</pre></script><script>{PWN}=7</script>')"], assignment="csci145-ps6")
    code = nb.cells[2]
    code.execution_count = 1
    out = nbformat.v4.new_output
    code.outputs = [
        out("stream", name="stdout", text=f"</pre><script>{PWN}=7</script>\n"),
        out("display_data", data={"text/html": f'<img src=x onerror="{PWN}=8"><b>fake PASSED</b>',
                                  "text/plain": "<IPython.core.display.HTML object>"}),
        out("display_data", data={"application/javascript": f"{PWN}=9",
                                  "text/plain": "<IPython.core.display.Javascript object>"}),
        out("display_data", data={"image/svg+xml": f'<svg xmlns="http://www.w3.org/2000/svg" onload="{PWN}=10">'
                                                   f'<script>{PWN}=11</script></svg>'}),
        out("display_data", data={"image/png": base64.b64encode(b"<script>" + PWN.encode() + b"=12</script>").decode()}),
        out("display_data", data={"image/png": base64.b64encode(png_bytes()).decode(), "text/plain": "<Figure>"}),
        out("display_data", data={"text/markdown": f"<script>{PWN}=13</script> **bold**"}),
        out("error", ename="<script>", evalue=f"{PWN}=14", traceback=[f"\x1b[31m<script>{PWN}=14</script>\x1b[0m"]),
        out("stream", name="stdout", text="huge line of output\n" * (HUGE_CHARS // 20)),
    ]
    return nb


def hostile_result(notebook_name: str = "executed.ipynb") -> GradingResult:
    """A result whose every student-controlled string is hostile (names, messages, answers, issues)."""
    evil = f"<script>{PWN}=20</script>"
    check = CheckResult(name="datasets_have_contract_lengths", part="1A", description="train_set has 1000 items",
                        outcome=Outcome.FAILED, score=0.0, max_score=2.0, message=f"len({evil}) is 3",
                        expected="1000", got=f'<img src=x onerror="{PWN}=21">',
                        mistake="did you <b>forget</b>?", warnings=(f"<iframe src=https://evil.example>{evil}",),
                        detail="INSTRUCTOR-ONLY-DETAIL hidden input 0.123", hidden_inputs=True)
    hidden = CheckResult(name="secret_claim", part="1A", description="a hidden claim", outcome=Outcome.FAILED,
                         score=0.0, max_score=1.0, message="HIDDEN-CHECK-MESSAGE", detail="HIDDEN-DETAIL",
                         visibility=Visibility.HIDDEN)
    parts = (
        PartResult("1A", "Loading MNIST", 0.0, 3.0, 0.0, (check, hidden), cells=(1, 2),
                   graded_objects=(GradedObject("train_set", evil, "discovered", f"the only Dataset {evil}"),)),
        PartResult("2A", "Sigmoid derivative", 0.0, 0.0, 5.0, (), cells=(),
                   answer_markdown=f"{evil} <img src=x onerror={PWN}=22> $\\text{{{evil}}}$"),
    )
    execution = ExecutionSummary("completed", 1.0, 3, issues=(CellIssue(2, "error", f"ValueError: {evil}",
                                                                         traceback="TRACEBACK-INSTRUCTOR-ONLY"),),
                                 notes=(f"`%pip install {evil}` was not run while grading.",))
    return GradingResult(
        assignment="csci145-ps6", assignment_title="CSCI 145 Problem Set 6",
        submission=f'evil"><script>{PWN}=23</script>.ipynb', sha256="0" * 64, seed=7,
        graded_at="2026-01-01T00:00:00+00:00", duration=1.0,
        versions={"harness": "0.1.0", "python": "3.11", "torch": "2"}, parts=parts, execution=execution,
        messages=(f"Top message {evil}",), notebook_path=notebook_name, instructor_detail="RESULT-INSTRUCTOR-DETAIL",
    )


def write_hostile(directory: Path) -> tuple[GradingResult, Path]:
    """The hostile notebook and result written as ``grade`` would (out_dir/executed.ipynb)."""
    directory.mkdir(parents=True, exist_ok=True)
    nbformat.write(hostile_notebook(), str(directory / "executed.ipynb"))
    return hostile_result(), directory
