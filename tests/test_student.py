"""What students get: the templates, `check()` in a live kernel, the bundle, and `grade --public`.

Budget: about 45 s on 2 cores (two kernels through nbclient, one bundle installed with pip and
graded in public mode); everything else is static.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from graders.bundle import bundle_texts, secret_leaks, write_bundle
from graders.parts import assign_cells, detect_assignment
from graders.registry import get_assignment
from tests.conftest import REPO, make_notebook

TEMPLATES = REPO / "student_template"
CONTRACT_NAMES = {
    "csci145-ps6": {
        "1A": ("train_set", "test_set", "train_loader", "test_loader"),
        "1B": ("logreg_model", "logreg_losses"),
        "1C": ("gaussian_kernel", "sigma", "K_train", "K_test", "kernel_model"),
        "2A": ("sigmoid_derivative",),
        "2B": ("make_mlp",),
        "2C": ("train_losses", "test_losses"),
    },
    "ece685d-hw2": {
        "P1": ("residual_mlp_gradients",),
        "P2": ("MNISTTwoView", "two_view_dataset"),
        "P3": ("bce_loss", "bce_gradient", "bce_hessian", "histories"),
    },
}
"""The names docs/contract.md lists for each part (written out here so the test cannot drift with the code)."""
ASSIGNMENTS = tuple(CONTRACT_NAMES)


def template(assignment: str) -> nbformat.NotebookNode:
    return nbformat.read(str(TEMPLATES / f"{assignment}.ipynb"), as_version=4)


def top_level_names(source: str) -> set[str]:
    """Names a code cell binds at top level (def, class, assignment targets)."""
    names = set()
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
    return names


# ---------------------------------------------------------------------------------------------
# Templates
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_template_is_a_clean_valid_notebook_for_its_assignment(assignment):
    nb = template(assignment)
    nbformat.validate(nb)
    assert nb.metadata["nbgrade"] == {"assignment": assignment}
    assert nb.metadata["kernelspec"]["name"] == "python3" and nb.metadata["kernelspec"]["language"] == "python"
    assert detect_assignment(nb) == assignment
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "a template carries no outputs"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_every_part_has_a_heading_the_grader_detects(assignment):
    nb = template(assignment)
    part_ids = tuple(p.id for p in get_assignment(assignment).rubric.parts)
    cells = assign_cells(nb, part_ids)
    assert all(cells[pid] for pid in part_ids), f"parts without cells: {[p for p in part_ids if not cells[p]]}"
    for pid in part_ids:
        first = nb.cells[cells[pid][0]]
        assert first.cell_type == "markdown" and re.match(rf"^## {pid} · \S", first.source), first.source[:60]


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_every_contract_name_has_a_stub_in_its_part(assignment):
    nb = template(assignment)
    cells = assign_cells(nb, tuple(p.id for p in get_assignment(assignment).rubric.parts))
    for pid, names in CONTRACT_NAMES[assignment].items():
        bound = set().union(*(top_level_names(nb.cells[i].source) for i in cells[pid] if nb.cells[i].cell_type == "code"))
        assert set(names) <= bound, f"{pid}: no stub for {sorted(set(names) - bound)}"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_a_check_cell_closes_every_autograded_part_and_the_last_cell_explains_the_pdf(assignment):
    nb = template(assignment)
    rubric = get_assignment(assignment).rubric
    cells = assign_cells(nb, tuple(p.id for p in rubric.parts))
    for part in rubric.parts:
        if not part.points:
            continue
        sources = [nb.cells[i].source for i in cells[part.id] if nb.cells[i].cell_type == "code"]
        assert f'from graders import check\ncheck("{part.id}")' in sources, f"{part.id} has no check cell"
    assert "grade pdf my.ipynb" in nb.cells[-1].source and "check()" in nb.cells[-1].source


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_problem_statements_are_not_taken_for_the_students_answer(assignment):
    from graders.parts import written_answer

    nb = template(assignment)
    rubric = get_assignment(assignment).rubric
    cells = assign_cells(nb, tuple(p.id for p in rubric.parts))
    for part in rubric.parts:
        answer = written_answer(nb, cells[part.id]) or ""
        assert "$" not in answer and len(answer) < 80, f"{part.id}: the statement leaked into the answer: {answer[:80]!r}"


# ---------------------------------------------------------------------------------------------
# check() in a live kernel
# ---------------------------------------------------------------------------------------------
def run_live(nb: nbformat.NotebookNode, cwd: Path) -> nbformat.NotebookNode:
    """Execute like a student's Jupyter would: an ordinary (unsandboxed) python3 kernel with graders installed."""
    NotebookClient(nb, timeout=180, allow_errors=True, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def text_of(cell: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")


LIVE_CELLS = [
    "import time, torch\nfrom torch import nn\nimport matplotlib\nmatplotlib.use('module://matplotlib_inline.backend_inline')\n"
    "import matplotlib.pyplot as plt",
    "def sigmoid_derivative(z):\n    s = torch.sigmoid(torch.as_tensor(z))\n    return s * (1 - s)",
    # ReLU after the last layer: a classic mistake the public checks name
    "def make_mlp(num_layers, d, m, k):\n    widths = [d] + [m] * (num_layers - 1) + [k]\n"
    "    layers = []\n    for i in range(num_layers):\n        layers += [nn.Linear(widths[i], widths[i + 1]), nn.ReLU()]\n"
    "    return nn.Sequential(*layers)",
    "from graders import check\nstarted = time.perf_counter()\ncheck('2A')\nprint(f'took {time.perf_counter() - started:.2f} s')",
    "torch.manual_seed(0)\nnet = make_mlp(2, 3, 4, 2)\nnet.train()\ncheck('2B')\n"
    "after = torch.rand(1)\ntorch.manual_seed(0); make_mlp(2, 3, 4, 2); expected = torch.rand(1)\n"
    "print('rng kept:', bool(after == expected), 'train mode kept:', net.training)",
    "train_losses = {d: [1.0, 0.5, 0.3] for d in (1, 2, 3)}\ntest_losses = {d: [1.1, 0.7, 0.6] for d in (1, 2, 3)}\n"
    "for d in (1, 2, 3):\n    plt.plot(train_losses[d], '-')\n    plt.plot(test_losses[d], ':')\nplt.show()",
    "check('2C')",
]


def test_check_runs_public_checks_on_the_live_kernel_and_names_mistakes(tmp_path):
    nb = run_live(make_notebook(LIVE_CELLS), tmp_path)
    errors = [o for c in nb.cells for o in c.outputs if o.get("output_type") == "error"]
    assert not errors, [f"{e.ename}: {e.evalue}" for e in errors]
    two_a, two_b, two_c = text_of(nb.cells[3]), text_of(nb.cells[4]), text_of(nb.cells[6])
    assert "2A · Sigmoid derivative: 2/2 public checks passed" in two_a
    assert "✓ sigmoid_derivative matches autograd on hidden tensors" in two_a
    assert "2B · Neural network of depth ℓ:" in two_b and "✗ ReLU sits between layers and not after the last one" in two_b
    assert "hint: ReLU after the last layer: the output layer is linear" in two_b
    assert "rng kept: True train mode kept: True" in two_b, "check() must not disturb the student's session"
    assert "2C · Empirical comparison: 3/3 public checks passed" in two_c, two_c


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_template_runs_top_to_bottom_and_every_check_names_the_stub(assignment, tmp_path):
    nb = run_live(template(assignment), tmp_path)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.get("output_type") == "error"]
    assert not errors, [f"{e.ename}: {e.evalue}" for e in errors]
    check_cells = [c for c in nb.cells if c.cell_type == "code" and "check(" in c.source]
    assert len(check_cells) == len(CONTRACT_NAMES[assignment]) + 1
    for cell in check_cells:
        out = text_of(cell)
        assert re.search(r"0/\d+ public checks passed", out) and "✓" not in out, out
        assert re.search(r"still the template's stub|still None, the template's placeholder|no entry for depth|no dict for", out), out


# ---------------------------------------------------------------------------------------------
# The student bundle
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return write_bundle("csci145-ps6", tmp_path_factory.mktemp("bundle") / "csci145-ps6")


def test_bundle_holds_template_package_and_readme_but_no_reference(bundle):
    names = {p.relative_to(bundle.root).as_posix() for p in bundle.root.rglob("*") if p.is_file()}
    assert {"csci145-ps6.ipynb", "README.md", "nbgrade-ml.tar.gz", "nbgrade-ml/pyproject.toml",
            "nbgrade-ml/graders/local.py", "nbgrade-ml/graders/kernel/runtime.py"} <= names
    assert not any("reference" in n.split("/") or n.endswith(".ipynb") and n != "csci145-ps6.ipynb" for n in names)
    assert (bundle.template.read_bytes() == (TEMPLATES / "csci145-ps6.ipynb").read_bytes())
    assert "grade --public csci145-ps6.ipynb" in bundle.readme.read_text()
    assert secret_leaks(bundle.root) == []


def test_leak_detector_finds_reference_code_answers_and_notebooks(bundle, tmp_path):
    """The proof above is only worth something if it can fail: plant each kind of secret in a copy."""
    planted = tmp_path / "planted"
    shutil.copytree(bundle.root, planted)
    reference = REPO / "reference"
    tree = ast.parse((reference / "csci145_ps6.py").read_text())
    function = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and len(n.body) >= 3)
    function.name = "renamed_" + function.name  # renaming or reformatting must not hide it
    (planted / "nbgrade-ml" / "graders" / "helper.py").write_text(ast.unparse(function))
    answer = next((reference / "answers" / "csci145-ps6").glob("*.md")).read_text()
    sentence = max(answer.splitlines(), key=len)
    (planted / "README.md").write_text(bundle.readme.read_text() + "\n" + sentence + "\n")
    shutil.copyfile(reference / "notebooks" / "ece685d-hw2.ipynb", planted / "extra.ipynb")
    leaks = secret_leaks(planted)
    assert any("a function body" in leak and "csci145_ps6.py" in leak for leak in leaks)
    assert any("answers/csci145-ps6" in leak and "text" in leak for leak in leaks)
    assert any("notebooks/ece685d-hw2.ipynb" in leak for leak in leaks)


def test_bundle_archive_holds_the_same_package(bundle):
    texts = bundle_texts(bundle.root)
    archived = {p.name for p in texts if ".tar.gz" in p.as_posix()}
    copied = {p.name for p in (bundle.package / "graders").rglob("*.py")}
    assert copied <= archived


def test_installed_bundle_grades_the_template_publicly_without_the_reference(bundle, tmp_path):
    """`pip install` the student archive, then `grade` (no --public) in a Python that cannot import the reference.

    The student copy says first that it grades public checks only, runs them, and exits 0 (issue 17, item 3)."""
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(bundle.archive)], check=True, capture_output=True)
    assert not (site / "reference").exists()
    runner = (  # the checkout's editable install is switched off: only the bundle's copy can be imported
        "import sys, importlib.util\n"
        "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in getattr(f, '__module__', '')]\n"
        "sys.path_hooks[:] = [h for h in sys.path_hooks if 'editable' not in repr(h)]\n"
        "sys.path_importer_cache.clear()\n"
        f"sys.path.insert(0, {str(site)!r})\n"
        "from graders.cli import main\ncode = main(sys.argv[1:])\n"
        "print('REFERENCE', importlib.util.find_spec('reference') is not None, sys.modules['graders'].__file__)\n"
        "sys.exit(code)\n"
    )
    out = tmp_path / "graded"
    env = {**os.environ, "PYTHONPATH": str(site)}
    run = subprocess.run([sys.executable, "-c", runner, str(bundle.template), "--out", str(out), "--seed", "7"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=240)
    assert run.returncode == 0, run.stderr[-2000:]
    assert f"REFERENCE False {site}" in run.stdout
    from graders.judge import PUBLIC_COPY_NOTE

    lines = run.stdout.splitlines()
    assert lines[1].strip() == f"! {PUBLIC_COPY_NOTE}", lines[:3]
    assert "Unknown assignment" not in run.stdout and "grader failed" not in run.stdout
    assert re.search(r"total 0 of \d+ public points", run.stdout), run.stdout
    results = json.loads((out / "results.json").read_text())
    grading = json.loads((out / "grading.json").read_text())
    assert results["score"] == 0 and grading["public_only"] is True
    assert grading["execution"]["issues"] == [], "the template's cells all run"
    outputs = {t["name"]: t["output"] for t in results["tests"]}
    assert "still None, the template's placeholder" in outputs["1A · datasets_have_contract_lengths"]
    assert "NotImplementedError: still the template's stub" in outputs["2A · sigmoid_derivative_matches_autograd"]
    kernel = outputs["1C · kernel_matches_reference"]
    assert "gaussian_kernel" in kernel and "Runs at grading" not in kernel, "the kernel's formula is a public check"
    assert "Runs at grading" in outputs["1B · logreg_accuracy_on_held_back"]
    assert (out / "report.html").is_file()
