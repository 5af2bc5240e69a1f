"""The Gradescope autograder zip, and the real ``run_autograder`` in a simulated ``/autograder``.

The zip is built once; its wheel is installed with pip into a target directory that the grader
imports first (so the wheel's own copy of the harness is what runs); setup.sh is skipped (the
test's virtual environment stands in for the one it builds). Every results.json is validated
against a JSON Schema of Gradescope's format written out below.

Budget: about 75 s on 2 cores (the reference notebook graded end to end, with a tampering cell appended,
is 45–65 s of it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import jsonschema
import nbformat
import pytest

from graders.autograder import (
    AutograderConfig,
    autograder_config,
    build_zip,
)
from graders.gradescope_run import shrink
from graders.choose import choose_notebook
from graders.mnist import default_cache_dir
from tests.conftest import REFERENCE_NOTEBOOKS, make_notebook, write_notebook

VISIBILITY = {"enum": ["hidden", "after_due_date", "after_published", "visible"]}
FORMAT = {"enum": ["text", "html", "simple_format", "md", "ansi"]}
GRADESCOPE_RESULTS_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Gradescope autograder results.json (gradescope-autograders.readthedocs.io/en/latest/specs/)",
    "type": "object",
    "properties": {
        "score": {"type": "number"},
        "execution_time": {"type": "number"},
        "output": {"type": "string"},
        "output_format": FORMAT,
        "test_output_format": FORMAT,
        "test_name_format": FORMAT,
        "visibility": VISIBILITY,
        "stdout_visibility": VISIBILITY,
        "extra_data": {"type": "object"},
        "tests": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "score": {"type": "number"},
                    "max_score": {"type": "number"},
                    "status": {"enum": ["passed", "failed"]},
                    "name": {"type": "string"},
                    "name_format": FORMAT,
                    "number": {"type": "string"},
                    "output": {"type": "string"},
                    "output_format": FORMAT,
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "visibility": VISIBILITY,
                    "extra_data": {"type": "object"},
                },
                "required": ["name", "score", "max_score"],
                "additionalProperties": False,
            },
        },
        "leaderboard": {"type": "array"},
    },
    "required": ["score", "execution_time", "output", "tests"],
    "additionalProperties": False,
}


def valid_results(path: Path) -> dict:
    """results.json, checked: Gradescope's schema, under 1 MB, every test visible so the total shows."""
    assert path.stat().st_size < 1_000_000
    data = json.loads(path.read_text())
    jsonschema.validate(data, GRADESCOPE_RESULTS_SCHEMA)
    assert all(t.get("visibility", "visible") == "visible" for t in data["tests"])
    assert data.get("visibility", "visible") == "visible"
    return data


# ---------------------------------------------------------------------------------------------
# A simulated /autograder
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def autograder_zip(tmp_path_factory) -> Path:
    return build_zip("csci145-ps6", tmp_path_factory.mktemp("zip") / "autograder.zip")


@pytest.fixture(scope="module")
def wheel_site(autograder_zip, tmp_path_factory) -> Path:
    """The zip's wheel, installed by pip (as setup.sh does, minus the dependencies already here)."""
    site = tmp_path_factory.mktemp("site")
    unpacked = tmp_path_factory.mktemp("unpacked")
    with zipfile.ZipFile(autograder_zip) as archive:
        wheel = next(n for n in archive.namelist() if n.endswith(".whl"))
        archive.extract(wheel, unpacked)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(unpacked / wheel)],
                   check=True, capture_output=True)
    return site


def make_root(tmp_path: Path, autograder_zip: Path, submission: dict[str, bytes]) -> Path:
    """/autograder as Gradescope lays it out: source (the unzipped zip), run_autograder, submission/."""
    root = tmp_path / "autograder"
    (root / "submission").mkdir(parents=True)
    with zipfile.ZipFile(autograder_zip) as archive:
        for info in archive.infolist():
            archive.extract(info, root / "source")
            os.chmod(root / "source" / info.filename, (info.external_attr >> 16) & 0o777)
    (root / "run_autograder").write_bytes((root / "source" / "run_autograder").read_bytes())
    os.chmod(root / "run_autograder", 0o755)
    for name, data in submission.items():
        (root / "submission" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "submission" / name).write_bytes(data)
    return root


def run_autograder(root: Path, site: Path, python: str = sys.executable, timeout: float = 400) -> tuple[dict, str]:
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "NBGRADE_PYTHON": python, "PYTHONPATH": str(site),
           "NBGRADE_CACHE": str(default_cache_dir())}
    run = subprocess.run([str(root / "run_autograder")], env=env, capture_output=True, text=True, timeout=timeout, cwd=root)
    assert run.returncode == 0, run.stderr[-2000:]
    return valid_results(root / "results" / "results.json"), run.stdout


def notebook_bytes(cells, assignment: str | None = "csci145-ps6") -> bytes:
    return nbformat.writes(make_notebook(cells, assignment)).encode()


# ---------------------------------------------------------------------------------------------
# The zip
# ---------------------------------------------------------------------------------------------
def test_zip_has_gradescope_layout_and_installs_cpu_torch_and_mnist_at_build_time(autograder_zip):
    with zipfile.ZipFile(autograder_zip) as archive:
        names = set(archive.namelist())
        setup = archive.read("setup.sh").decode()
        wheel = next(n for n in names if n.endswith(".whl"))
        modes = {i.filename: (i.external_attr >> 16) & 0o777 for i in archive.infolist()}
        config = AutograderConfig.from_json(archive.read("autograder_config.json").decode())
        readme = archive.read("README.md").decode()
        requirements = archive.read("requirements.txt").decode()
        with archive.open(wheel) as raw, zipfile.ZipFile(raw) as whl:
            wheel_names = whl.namelist()
            entry_points = whl.read(next(n for n in wheel_names if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert {"setup.sh", "run_autograder", "fallback_results.py", "autograder_config.json", "README.md"} <= names
    assert modes["setup.sh"] & 0o111 and modes["run_autograder"] & 0o111
    assert "apt-get install -y --no-install-recommends python3 python3-venv python3-pip" in setup
    assert "--index-url https://download.pytorch.org/whl/cpu" in setup and "grade data" in setup
    assert "playwright" not in requirements and "torch>=" in requirements
    assert "graders/assignments/csci145_ps6/probes.py" in wheel_names and "reference/data/calibration_csci145-ps6.json" in wheel_names
    assert not any(n.startswith(("reference/notebooks/", "reference/answers/")) for n in wheel_names)
    assert "[nbgrade.assignments]\ncsci145-ps6 = graders.assignments.csci145_ps6:ASSIGNMENT\n" in entry_points, "how the container finds it"
    assert config.assignment == "csci145-ps6" and config.hard_limit_seconds < config.timeout_minutes * 60
    assert f"Autograder timeout: {config.timeout_minutes} minutes" in readme and "Memory" in readme


def test_limits_fit_inside_the_gradescope_timeout_and_memory():
    for assignment in ("csci145-ps6", "ece685d-hw2"):
        config = autograder_config(assignment)
        parts = len(config.parts)
        inner = config.limits.total_timeout + config.limits.probe_timeout * (parts + 1)
        assert inner < config.hard_limit_seconds < config.timeout_minutes * 60
        assert config.limits.memory_mb < config.container_memory_mb
    assert autograder_config("ece685d-hw2").container_memory_mb == 768, "ece685d-hw2 fits Gradescope's default"
    assert autograder_config("csci145-ps6", timeout_minutes=20).limits.total_timeout == 300
    with pytest.raises(ValueError, match="allow more minutes"):
        autograder_config("csci145-ps6", timeout_minutes=3)


def test_shrink_keeps_results_under_a_megabyte():
    data = {"score": 0, "output": "x" * 300_000, "tests": [{"name": f"t{i}", "score": 0, "max_score": 1, "output": "y" * 50_000} for i in range(60)]}
    assert len(json.dumps(shrink(data))) < 1_000_000


# ---------------------------------------------------------------------------------------------
# Which notebook is graded
# ---------------------------------------------------------------------------------------------
def test_a_misnamed_notebook_is_found_and_the_message_says_so(tmp_path):
    write_notebook(make_notebook(["x = 1"], "csci145-ps6"), tmp_path / "my homework.txt")
    (tmp_path / "notes.pdf").write_bytes(b"%PDF-1.4")
    choice = choose_notebook(tmp_path, ("csci145-ps6",))
    assert choice.path == tmp_path / "my homework.txt"
    assert "does not end in .ipynb" in choice.message


def test_among_several_notebooks_the_one_answering_the_assignment_is_graded(tmp_path):
    write_notebook(make_notebook(["x = 1"]), tmp_path / "scratch.ipynb")
    write_notebook(make_notebook(["def sigmoid_derivative(z):\n    return z", "K_train = 1"], "csci145-ps6"), tmp_path / "hw6.ipynb")
    (tmp_path / ".ipynb_checkpoints").mkdir()
    write_notebook(make_notebook(["x = 2"], "csci145-ps6"), tmp_path / ".ipynb_checkpoints" / "hw6-checkpoint.ipynb")
    choice = choose_notebook(tmp_path, ("csci145-ps6",))
    assert choice.path == tmp_path / "hw6.ipynb"
    assert "You submitted 2 notebooks" in choice.message and "declares this assignment" in choice.message


# ---------------------------------------------------------------------------------------------
# The real run_autograder
# ---------------------------------------------------------------------------------------------
TAMPERING = r'''
import pathlib
held = []
for secret in ("{root}/source/setup.sh", "{root}/source/autograder_config.json", "{reference}", "{rubric}"):
    try:
        pathlib.Path(secret).read_text()
    except OSError as error:
        held.append(type(error).__name__)
    else:
        raise RuntimeError("LEAK: the kernel read " + secret)
try:
    pathlib.Path("{root}/results/results.json").write_text('{{"score": 999, "tests": []}}')
except OSError as error:
    held.append(type(error).__name__)
else:
    raise RuntimeError("LEAK: the kernel wrote the results")
raise RuntimeError("sandbox held: " + ",".join(held))
'''


@pytest.mark.slow
def test_reference_notebook_gets_full_marks_and_its_kernel_cannot_touch_the_grader(autograder_zip, wheel_site, tmp_path):
    """The reference notebook, with one student cell appended that tries to read and write what it must not."""
    root = tmp_path / "autograder"
    notebook = nbformat.read(str(REFERENCE_NOTEBOOKS / "csci145-ps6.ipynb"), as_version=4)
    rubric = wheel_site / "graders" / "assignments" / "csci145_ps6" / "rubric.py"
    notebook.cells.append(nbformat.v4.new_code_cell(TAMPERING.format(root=root, reference=wheel_site / "reference" / "csci145_ps6.py", rubric=rubric)))
    make_root(tmp_path, autograder_zip, {"PS6 final (1).ipynb": nbformat.writes(notebook).encode()})
    results, stdout = run_autograder(root, wheel_site)
    assert results["score"] == 90 and sum(t["max_score"] for t in results["tests"]) == 90
    assert all(t["status"] == "passed" for t in results["tests"])
    assert "Graded `PS6 final (1).ipynb`." in results["output"]
    assert all(t["name"][:2] in {"1A", "1B", "1C", "2A", "2B", "2C"} for t in results["tests"])
    assert "90/90" in stdout
    assert "LEAK" not in results["output"]
    assert "RuntimeError: sandbox held: " in results["output"], "the tampering cell must have run"


def test_broken_notebook_scores_zero_with_a_clear_message(autograder_zip, wheel_site, tmp_path):
    root = make_root(tmp_path, autograder_zip, {"hw6.ipynb": b'{"cells": [{"cell_type": "code", "source": "x = '})
    results, stdout = run_autograder(root, wheel_site)
    assert results["score"] == 0 and sum(t["max_score"] for t in results["tests"]) == 90
    assert "hw6.ipynb is not a Jupyter notebook: it is not valid JSON" in results["output"]
    assert "csci145-ps6 hw6.ipynb: 0/90" in stdout


def test_no_notebook_scores_zero_and_lists_what_was_submitted(autograder_zip, wheel_site, tmp_path):
    root = make_root(tmp_path, autograder_zip, {"solution.py": b"print('hi')\n", "writeup.pdf": b"%PDF-1.4"})
    results, _ = run_autograder(root, wheel_site)
    assert results["score"] == 0 and results["tests"]
    assert "No Jupyter notebook was found in your submission (solution.py, writeup.pdf)" in results["output"]


def test_a_crash_of_the_harness_still_writes_valid_results(autograder_zip, tmp_path):
    root = make_root(tmp_path, autograder_zip, {"hw6.ipynb": notebook_bytes(["x = 1"])})
    broken_python = tmp_path / "python"
    broken_python.write_text("#!/bin/sh\necho 'Traceback: ModuleNotFoundError: No module named torch' >&2\nexit 3\n")
    broken_python.chmod(0o755)
    results, stdout = run_autograder(root, tmp_path, python=str(broken_python))
    assert results["score"] == 0 and sum(t["max_score"] for t in results["tests"]) == 90
    assert "The autograder itself failed" in results["output"] and "exit status 3" in results["output"]
    assert "No module named torch" in stdout and "No module named torch" not in json.dumps(results)


def test_the_hard_time_limit_still_writes_valid_results(autograder_zip, tmp_path):
    root = make_root(tmp_path, autograder_zip, {"hw6.ipynb": notebook_bytes(["x = 1"])})
    script = root / "run_autograder"
    script.write_text("\n".join("HARD_LIMIT=2" if line.startswith("HARD_LIMIT=") else line for line in script.read_text().splitlines()) + "\n")
    sleeper = tmp_path / "python"
    sleeper.write_text("#!/bin/sh\nexec sleep 60\n")
    sleeper.chmod(0o755)
    results, _ = run_autograder(root, tmp_path, python=str(sleeper), timeout=60)
    assert results["score"] == 0 and "did not finish within the autograder's time limit" in results["output"]
    assert isinstance(results["execution_time"], (int, float))
