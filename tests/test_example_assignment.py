"""The example assignment examples/demo-linreg, written only by following docs/authoring.md.

It is its own distribution (``nbgrade-demo-linreg``) registering ``demo-linreg`` under the
``nbgrade.assignments`` entry point. Where it is not installed in this interpreter, a session
fixture installs it (``pip install --no-deps``) into a private folder put on the ``PYTHONPATH`` of
the ``grade`` processes these tests start: installing it into the running environment would make
every other test that iterates over the installed assignments (tests/test_cli.py's README and
contract tables) see a third assignment. Every test drives the real ``grade`` command.

The student bundle carries the example's package (not its reference) with its entry point, and is
installed and used (``grade --public``, ``check``) with nothing else of the example on the path; the
Gradescope zip's wheel carries the package and its reference, and grades the reference notebook at
full marks (hidden checks included) with nothing else of the example on the path.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from importlib import metadata
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "demo-linreg"
ASSIGNMENT = "demo-linreg"
DISTRIBUTION = "nbgrade-demo-linreg"
PACKAGE = "demo_linreg"
REFERENCE_NOTEBOOK = EXAMPLE / "demo_linreg_reference" / "demo-linreg.ipynb"
TEMPLATE = EXAMPLE / "demo_linreg" / "template" / "demo-linreg.ipynb"
GRADE = Path(sys.executable).with_name("grade")
FACTOR_2 = "missing factor 2"

pytestmark = pytest.mark.slow  # every test starts `grade` (a kernel, or an interpreter importing the harness)


def _registered_here() -> bool:
    return any(ep.name == ASSIGNMENT for ep in metadata.entry_points(group="nbgrade.assignments"))


@pytest.fixture(scope="session")
def demo_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of a `grade` process that finds demo-linreg (installed on the side when it is not installed)."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    if _registered_here():
        return env
    scratch = tmp_path_factory.mktemp("demo-linreg")
    source = shutil.copytree(EXAMPLE, scratch / "src", ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__"))
    site = scratch / "site"
    offline = ["--no-build-isolation", "--no-index"] if importlib.util.find_spec("setuptools") else []  # else pip fetches setuptools
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", *offline, "--target", str(site), str(source)],
                   check=True, capture_output=True, text=True, timeout=300)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH", "")]))
    return env


def grade(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(GRADE), *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO)


def _graded(env: dict[str, str], notebook: Path, out: Path) -> dict:
    run = grade(env, str(notebook), "--seed", "7", "--out", str(out))
    assert run.returncode == 0, run.stderr
    return json.loads((out / "grading.json").read_text())


def _parts(grading: dict) -> dict[str, dict]:
    return {part["id"]: part for part in grading["parts"]}


# ---------------------------------------------------------------------------------------------
# grade finds it
# ---------------------------------------------------------------------------------------------
def test_grade_finds_the_installed_example(demo_env):
    listed = grade(demo_env, "pdf", "--help")
    assert listed.returncode == 0 and ASSIGNMENT in listed.stdout
    unknown = grade(demo_env, "student", "nope-101", "-o", "unused")
    assert unknown.returncode == 2 and ASSIGNMENT in unknown.stderr
    probe = subprocess.run(
        [sys.executable, "-c", "import json; from graders.registry import get_assignment as g; a = g('demo-linreg'); "
         "print(json.dumps([a.part_ids, a.rubric.max_score, a.template.is_file(), a.package]))"],
        env=demo_env, capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(probe.stdout) == [["LR1", "LR2", "LR3"], 10, True, PACKAGE]


# ---------------------------------------------------------------------------------------------
# the reference at full marks, a seeded mistake on its own part
# ---------------------------------------------------------------------------------------------
def test_the_reference_notebook_scores_full_marks(demo_env, tmp_path):
    grading = _graded(demo_env, REFERENCE_NOTEBOOK, tmp_path / "ref")
    assert grading["assignment"] == ASSIGNMENT
    parts = _parts(grading)
    assert set(parts) == {"LR1", "LR2", "LR3"}
    assert all(p["score"] == p["max_score"] for p in parts.values()), {k: p["score"] for k, p in parts.items()}
    assert sum(p["max_score"] for p in parts.values()) == 10
    checks = {c["name"]: c for p in parts.values() for c in p["checks"]}
    assert checks["weights_reach_least_squares"]["outcome"] == "passed", "the hidden check imported the reference solution"
    assert checks["loss_curve_figure"]["outcome"] == "passed", "the figure check saw the displayed loss curve"
    report = (tmp_path / "ref" / "report.html").read_text()
    assert "No reference notebook" not in report, "the reference notebook declared by the package is found"


def _with_mistake(tmp_path: Path) -> Path:
    """The reference notebook, outputs cleared, with ∇L missing its factor 2 (the catalogue's first LR2 mistake)."""
    notebook = nbformat.read(str(REFERENCE_NOTEBOOK), as_version=4)
    right, wrong = "return 2.0 / len(y) * X.T @ (X @ w - y)", "return X.T @ (X @ w - y) / len(y)"
    assert sum(right in cell.source for cell in notebook.cells) == 1
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.source, cell.outputs, cell.execution_count = cell.source.replace(right, wrong), [], None
    path = tmp_path / "submission.ipynb"
    nbformat.write(notebook, str(path))
    return path


def test_a_seeded_mistake_costs_its_own_part_and_is_named(demo_env, tmp_path):
    grading = _graded(demo_env, _with_mistake(tmp_path), tmp_path / "mistake")
    parts = _parts(grading)
    assert parts["LR1"]["score"] == parts["LR1"]["max_score"] and parts["LR3"]["score"] == parts["LR3"]["max_score"]
    assert parts["LR2"]["score"] == 0
    (failed,) = parts["LR2"]["checks"]
    assert failed["name"] == "mse_gradient_matches_autograd" and failed["outcome"] == "failed"
    assert failed["mistake"].startswith(FACTOR_2), failed


# ---------------------------------------------------------------------------------------------
# the student bundle, the Gradescope zip, the PDF
# ---------------------------------------------------------------------------------------------
def test_grade_student_writes_the_template_and_the_checks(demo_env, tmp_path):
    out = tmp_path / "bundle"
    run = grade(demo_env, "student", ASSIGNMENT, "-o", str(out))
    assert run.returncode == 0, run.stderr
    notebook = nbformat.read(str(out / f"{ASSIGNMENT}.ipynb"), as_version=4)
    assert notebook.metadata["nbgrade"]["assignment"] == ASSIGNMENT
    assert not any(c.get("outputs") for c in notebook.cells if c.cell_type == "code")
    assert [c.source for c in notebook.cells if c.source.startswith("check(")] == [f'check("{p}")' for p in ("LR1", "LR2", "LR3")]
    assert "demo_linreg_reference" not in {p.name for p in out.rglob("*")}, "the reference solution never ships"


def _install(source: Path, target: Path) -> Path:
    """``pip install --no-deps --target`` (offline where setuptools is here to build a source tree)."""
    offline = ["--no-build-isolation", "--no-index"] if importlib.util.find_spec("setuptools") else []
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", *offline, "--target", str(target), str(source)],
                   check=True, capture_output=True, text=True, timeout=300)
    return target


def _only(site: Path) -> dict[str, str]:
    """An environment that finds the example only in ``site`` (not in the private install of ``demo_env``)."""
    return {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(site)}


LOCAL_CHECK = """
import json, sys, torch
from graders.local import run_local_checks
ns = {
    "mse_loss": lambda w, X, y: ((X @ w - y) ** 2).mean(),
    "mse_gradient": lambda w, X, y: 2.0 / len(y) * X.T @ (X @ w - y),
}
reports = run_local_checks(ns, "LR2")
print(json.dumps([[c.name, c.passed] for r in reports for c in r.results]))
"""


def test_the_student_bundle_carries_the_example_package(demo_env, tmp_path):
    out = tmp_path / "bundle"
    run = grade(demo_env, "student", ASSIGNMENT, "-o", str(out))
    assert run.returncode == 0, run.stderr
    assert "checked: no reference" in run.stdout, "the leak scan ran"
    with tarfile.open(out / "nbgrade-ml.tar.gz") as archive:
        names = archive.getnames()
        pyproject = archive.extractfile("nbgrade-ml/pyproject.toml").read().decode()
    assert any(f"/{PACKAGE}/rubric.py" in n for n in names) and any(f"/{PACKAGE}/probes.py" in n for n in names)
    assert any(n.endswith(f"/{PACKAGE}/template/{ASSIGNMENT}.ipynb") for n in names)
    assert not any("demo_linreg_reference" in n for n in names), "the reference solution never ships"
    assert f'{ASSIGNMENT} = "{PACKAGE}:ASSIGNMENT"' in pyproject
    # installed on its own, the bundle knows the assignment: grade --public and check() work from it
    site = _install(out / "nbgrade-ml", tmp_path / "student-site")
    assert (site / PACKAGE / "template" / f"{ASSIGNMENT}.ipynb").is_file() and not (site / "demo_linreg_reference").exists()
    env = _only(site)
    notebook = tmp_path / "mine.ipynb"
    shutil.copy(REFERENCE_NOTEBOOK, notebook)
    public = subprocess.run([sys.executable, "-m", "graders.cli", str(notebook), "--seed", "7", "--out", str(tmp_path / "pub")],
                            env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert public.returncode == 0, public.stderr
    grading = json.loads((tmp_path / "pub" / "grading.json").read_text())
    assert grading["assignment"] == ASSIGNMENT
    checks = {c["name"]: c for p in grading["parts"] for c in p["checks"]}
    if importlib.util.find_spec("demo_linreg_reference") is None:  # (installed into this environment, it is found anyway)
        assert grading["public_only"], "the bundle holds no reference: public checks only, said first"
        assert checks["weights_reach_least_squares"]["outcome"] == "at_grading"
    assert all(c["outcome"] == "passed" for name, c in checks.items() if name != "weights_reach_least_squares"), checks
    local = subprocess.run([sys.executable, "-c", LOCAL_CHECK], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert local.returncode == 0, local.stderr
    assert json.loads(local.stdout.splitlines()[-1]) == [["mse_gradient_matches_autograd", True]]


def test_the_leak_scan_covers_the_examples_own_reference(demo_env, tmp_path):
    """The scan can fail on this assignment's secret: its solution planted in the bundle's copy of its package."""
    out = tmp_path / "bundle"
    assert grade(demo_env, "student", ASSIGNMENT, "-o", str(out)).returncode == 0
    solution = (EXAMPLE / "demo_linreg_reference" / "__init__.py").read_text()
    (out / "nbgrade-ml" / PACKAGE / "helper.py").write_text(solution.replace("def ", "def renamed_"))
    scan = subprocess.run(
        [sys.executable, "-c", "import json, sys; from graders.bundle import secret_leaks; "
         f"print(json.dumps(secret_leaks(__import__('pathlib').Path(sys.argv[1]), assignment_id={ASSIGNMENT!r})))", str(out)],
        env=demo_env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert scan.returncode == 0, scan.stderr
    leaks = json.loads(scan.stdout)
    assert any(leak.startswith("demo_linreg_reference/__init__.py: a function body") for leak in leaks), leaks


def _zip(demo_env: dict[str, str], tmp_path: Path) -> Path:
    target = tmp_path / "autograder.zip"
    run = grade(demo_env, "gradescope", ASSIGNMENT, "-o", str(target))
    assert run.returncode == 0, run.stderr
    assert "peaked at 385 MB" in run.stdout
    return target


def test_grade_gradescope_builds_a_zip_for_the_example(demo_env, tmp_path):
    with zipfile.ZipFile(_zip(demo_env, tmp_path)) as archive:
        names = archive.namelist()
        config = json.loads(archive.read("autograder_config.json"))
    assert {"setup.sh", "run_autograder", "autograder_config.json", "requirements.txt", "README.md"} <= set(names)
    assert config["assignment"] == ASSIGNMENT and [p[0] for p in config["parts"]] == ["LR1", "LR2", "LR3"]


def test_the_gradescope_zip_carries_the_example_package(demo_env, tmp_path):
    with zipfile.ZipFile(_zip(demo_env, tmp_path)) as archive:
        inner = {name: archive.read(name) for name in archive.namelist() if name.endswith(".whl")}
        setup = archive.read("setup.sh").decode()
    (name, data), = inner.items()
    wheel = tmp_path / name
    wheel.write_bytes(data)
    with zipfile.ZipFile(wheel) as archive:
        members = archive.namelist()
        entry_points = "".join(archive.read(n).decode() for n in members if n.endswith("entry_points.txt"))
    assert f"{PACKAGE}/rubric.py" in members and f"{PACKAGE}/probes.py" in members
    assert "demo_linreg_reference/__init__.py" in members, "the container grades hidden checks with the reference"
    assert not any(n.endswith(".ipynb") for n in members), "no notebook (template or executed solution) in the container"
    assert f"{ASSIGNMENT} = {PACKAGE}:ASSIGNMENT" in entry_points
    assert '"demo_linreg_reference"' in setup, "setup.sh makes the reference readable by root only"
    # the wheel alone grades the reference notebook at full marks, the hidden check with the shipped reference
    env = _only(_install(wheel, tmp_path / "container-site"))
    out = tmp_path / "graded"
    run = subprocess.run([sys.executable, "-m", "graders.cli", str(REFERENCE_NOTEBOOK), "--seed", "7", "--out", str(out)],
                         env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    grading = json.loads((out / "grading.json").read_text())
    assert not grading["public_only"] and grading["assignment"] == ASSIGNMENT
    assert all(p["score"] == p["max_score"] for p in grading["parts"]), [(p["id"], p["score"]) for p in grading["parts"]]
    checks = {c["name"]: c for p in grading["parts"] for c in p["checks"]}
    assert checks["weights_reach_least_squares"]["outcome"] == "passed"


def test_grade_pdf_prints_the_reference_notebook(demo_env, tmp_path):
    from graders.pdf import find_chromium

    if find_chromium() is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    notebook = tmp_path / f"{ASSIGNMENT}.ipynb"
    shutil.copy(REFERENCE_NOTEBOOK, notebook)
    run = grade(demo_env, "pdf", str(notebook))
    assert run.returncode == 0, run.stderr
    pdf = notebook.with_suffix(".pdf")
    assert pdf.read_bytes()[:5] == b"%PDF-"
    if shutil.which("pdftotext"):
        text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
        assert all(f"{pid} · " in text for pid in ("LR1", "LR2", "LR3")), text[:2000]
