"""The Gradescope autograder: ``grade gradescope ASSIGNMENT -o autograder.zip``, and what runs inside it.

The zip holds, at its root (Gradescope unpacks it into ``/autograder/source``):

* ``setup.sh``: run once when Gradescope builds the image (Ubuntu base image, as root). It
  installs Python, a virtual environment with CPU-only PyTorch wheels, the harness from the wheel
  in the zip, and provisions MNIST (``grade data``) so nothing is downloaded while grading.
  Afterwards only root can read the harness, the reference solutions and ``/autograder/source``.
* ``run_autograder``: run for every submission. It calls ``python -m graders.autograder run``
  under a hard time limit, then ``fallback_results.py`` (standard library only), which writes a
  valid ``results.json`` with a 0 and a message whenever the grader did not: a crash of the
  harness, an import error, the time limit. Instructor detail goes to stdout, which Gradescope
  shows to instructors only.
* the harness wheel (``graders`` and ``reference``, without the reference notebooks and written
  answers), ``requirements.txt``, ``autograder_config.json`` (assignment, limits, parts) and an
  instructor ``README.md`` (upload steps and the Gradescope settings the assignment needs).

Inside the container the grader runs as root and the student's kernel as an unprivileged uid
(:mod:`graders.sandbox`); ``/autograder/source`` and ``/autograder/results`` are passed to it as
hidden directories and are not readable or writable by that uid in any case.

``AUTOGRADER_ROOT`` replaces ``/autograder`` (the tests run the real ``run_autograder`` in a
temporary directory), ``NBGRADE_PYTHON`` the virtual environment's Python.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import re
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from graders.bundle import Distribution, harness_distribution, package_files
from graders.choose import ChosenNotebook, choose_notebook
from graders.config import GradeConfig, Limits
from graders.registry import ENTRY_POINT_GROUP, get_assignment

VENV = "/opt/nbgrade-venv"
"""Where setup.sh creates the virtual environment (outside /autograder, so hiding that hides no Python)."""
CACHE = "/opt/nbgrade-cache"
"""$NBGRADE_CACHE in the container: the MNIST that setup.sh provisions."""
TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
NOT_IN_CONTAINER = {"playwright": "headless-browser PDFs (grade pdf); the autograder only writes results.json"}
"""Harness dependencies the container does not need, and why."""
CONFIG_FILE = "autograder_config.json"
FALLBACK_FILE = "fallback_results.py"
MAX_RESULTS_BYTES = 1_000_000
GRADESCOPE_DEFAULT_TIMEOUT_MINUTES = 10
GRADESCOPE_DEFAULT_MEMORY_MB = 768
WRAPPER_MARGIN_SECONDS = 45
"""Kept between run_autograder's hard limit and Gradescope's timeout, for the fallback writer."""
GRADER_RESERVE_MB = 200
"""Container memory left to the grader process (and the page cache) beside the kernel."""


GRADESCOPE_DEFAULT_CPU = 0.5
MEASURED_BY = "benchmarks/gradescope_memory.py"
"""The script that measured each budget's reference run: the autograder in a cgroup with Gradescope's limits."""


def measured_sentence(assignment_id: str) -> str:
    """What the reference run measured, in the words every place (CLI, zip README, project README) uses."""
    run = get_assignment(assignment_id).budget.measured
    return (f"grading the reference notebook peaked at {run.peak_mb} MB and took at most {run.seconds:g} s "
            f"under a {run.limit_mb} MB / {run.cpu:g} CPU limit ({run.runs} runs, all full marks)")


@dataclass(frozen=True)
class AutograderConfig:
    """Everything ``run_autograder`` needs, written into the zip as JSON."""

    assignment: str
    title: str
    template_name: str
    timeout_minutes: int
    """The Gradescope "Autograder timeout" this zip was built for."""
    hard_limit_seconds: int
    """run_autograder stops the grader after this long (then the fallback writes a 0)."""
    container_memory_mb: int
    memory_reason: str
    limits: Limits
    parts: tuple[tuple[str, str, float], ...] = field(default=())
    """(id, title, autograded points) of each part, for the fallback results."""

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> "AutograderConfig":
        data = json.loads(text)
        data["limits"] = Limits(**data["limits"])
        data["parts"] = tuple(tuple(p) for p in data["parts"])
        return cls(**data)


def gradescope_settings(config: AutograderConfig) -> str:
    """The Gradescope settings a zip was built for, in one line (printed by ``grade gradescope``)."""
    memory = config.container_memory_mb
    default = " (Gradescope's default)" if memory == GRADESCOPE_DEFAULT_MEMORY_MB else ""
    return (f"timeout {config.timeout_minutes} min, memory {memory} MB{default}, CPU {GRADESCOPE_DEFAULT_CPU:g} "
            f"(default): {measured_sentence(config.assignment)}")


def autograder_config(assignment_id: str, timeout_minutes: int | None = None, memory_mb: int | None = None) -> AutograderConfig:
    """The limits for ``assignment_id`` from its budget, fitted into Gradescope's timeout and memory."""
    assignment = get_assignment(assignment_id)
    budget = assignment.budget
    minutes = timeout_minutes or GRADESCOPE_DEFAULT_TIMEOUT_MINUTES
    memory = memory_mb or budget.container_memory_mb
    hard = minutes * 60 - WRAPPER_MARGIN_SECONDS
    parts = assignment.rubric.parts
    reserve = 60 + budget.probe_seconds * (len(parts) + 1) + 60  # start-up, observation, judging
    notebook = min(budget.notebook_seconds, hard - reserve)
    if notebook < 60:
        raise ValueError(f"a {minutes}-minute timeout leaves {notebook:.0f} s for the notebook; allow more minutes")
    limits = Limits(
        cell_timeout=min(budget.cell_seconds, notebook), total_timeout=notebook, probe_timeout=budget.probe_seconds,
        memory_mb=memory - GRADER_RESERVE_MB, threads=1,
    )
    return AutograderConfig(
        assignment=assignment_id, title=assignment.title, template_name=assignment.template_name,
        timeout_minutes=minutes, hard_limit_seconds=hard, container_memory_mb=memory,
        memory_reason=budget.memory_reason if memory > GRADESCOPE_DEFAULT_MEMORY_MB else "",
        limits=limits, parts=tuple((p.id, p.title, p.points) for p in parts),
    )


# ---------------------------------------------------------------------------------------------
# Building the zip
# ---------------------------------------------------------------------------------------------
def wheel_name(dist: Distribution) -> str:
    return f"{dist.name.replace('-', '_')}-{dist.version}-py3-none-any.whl"


def wheel_members() -> list[tuple[str, Path]]:
    """(path in the wheel, file) for ``graders`` and ``reference``, without reference notebooks and answers."""
    import graders
    import reference

    members = [(f"graders/{p.relative_to(Path(graders.__file__).parent).as_posix()}", p) for p in package_files()]
    reference_dir = Path(reference.__file__).resolve().parent
    for path in package_files(reference_dir):
        relative = path.relative_to(reference_dir)
        if relative.parts[0] not in ("notebooks", "answers"):
            members.append((f"reference/{relative.as_posix()}", path))
    return members


def entry_points_text(dist: Distribution) -> str:
    """The wheel's ``entry_points.txt``: the ``grade`` script and the assignments the harness registers."""
    assignments = "".join(f"{name} = {value}\n" for name, value in dist.assignments)
    return f"[console_scripts]\ngrade = graders.cli:main\n\n[{ENTRY_POINT_GROUP}]\n{assignments}"


def build_wheel(directory: Path, dist: Distribution | None = None) -> Path:
    """A pure-Python wheel of the harness, written directly (no build backend, reproducible bytes)."""
    dist = dist or harness_distribution()
    target = directory / wheel_name(dist)
    info = f"{dist.name.replace('-', '_')}-{dist.version}.dist-info"
    files = [(name, path.read_bytes()) for name, path in wheel_members()]
    files += [
        (f"{info}/METADATA", _wheel_metadata(dist).encode()),
        (f"{info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: nbgrade-ml autograder\nRoot-Is-Purelib: true\nTag: py3-none-any\n"),
        (f"{info}/entry_points.txt", entry_points_text(dist).encode()),
        (f"{info}/top_level.txt", b"graders\nreference\n"),
    ]
    record = "".join(f"{name},sha256={_digest(data)},{len(data)}\n" for name, data in files) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as wheel:
        for name, data in [*files, (f"{info}/RECORD", record.encode())]:
            wheel.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data, zipfile.ZIP_DEFLATED)
    return target


def _digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _wheel_metadata(dist: Distribution) -> str:
    requires = "".join(f"Requires-Dist: {r}\n" for r in dist.requirements)
    return (f"Metadata-Version: 2.1\nName: {dist.name}\nVersion: {dist.version}\n"
            f"Summary: Auto-grading harness (Gradescope autograder build)\nRequires-Python: {dist.requires_python}\n{requires}")


def container_requirements(dist: Distribution) -> list[str]:
    return [r for r in dist.requirements if _requirement_name(r) not in NOT_IN_CONTAINER]


def _requirement_name(requirement: str) -> str:
    import re

    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower()


def setup_script(wheel: str) -> str:
    torch = " ".join(f'"{r}"' for r in harness_distribution().requirements if _requirement_name(r) in ("torch", "torchvision"))
    return f"""#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image (Ubuntu base image).
set -euxo pipefail
export DEBIAN_FRONTEND=noninteractive
SOURCE=/autograder/source
apt-get update
apt-get install -y --no-install-recommends python3 python3-venv python3-pip ca-certificates
python3 -m venv {VENV}
{VENV}/bin/python -m pip install --upgrade pip
# CPU-only PyTorch (the CUDA wheels are gigabytes and Gradescope has no GPU), then the rest from PyPI.
{VENV}/bin/python -m pip install --index-url {TORCH_INDEX} {torch}
{VENV}/bin/python -m pip install -r "$SOURCE/requirements.txt"
{VENV}/bin/python -m pip install --no-deps "$SOURCE/{wheel}"
# MNIST now, at build time: nothing is downloaded while grading.
mkdir -p {CACHE}
NBGRADE_CACHE={CACHE} {VENV}/bin/grade data
chmod -R a+rX {CACHE} {VENV}
# Only root (the grader) reads the harness, the reference solutions and this directory; the
# students' kernels run as another user.
SITE=$({VENV}/bin/python -c "import graders, os; print(os.path.dirname(os.path.dirname(graders.__file__)))")
chmod 700 "$SITE/graders" "$SITE/reference" "$SOURCE"
"""


def run_script(config: AutograderConfig) -> str:
    return f"""#!/usr/bin/env bash
# Gradescope runs this as root from /autograder for every submission.
# AUTOGRADER_ROOT replaces /autograder and NBGRADE_PYTHON the Python of {VENV} (used by the tests).
set -u
ROOT="${{AUTOGRADER_ROOT:-/autograder}}"
SOURCE="$ROOT/source"
RESULTS="$ROOT/results"
PYTHON="${{NBGRADE_PYTHON:-{VENV}/bin/python}}"
export NBGRADE_CACHE="${{NBGRADE_CACHE:-{CACHE}}}"
export PYTHONDONTWRITEBYTECODE=1
HARD_LIMIT={config.hard_limit_seconds}  # seconds: {config.assignment}'s budget within a {config.timeout_minutes}-minute Gradescope timeout
mkdir -p "$RESULTS"
chmod 755 "$RESULTS"
chmod 700 "$SOURCE"
rm -f "$RESULTS/results.json"
LOG="$(mktemp)"
START=$SECONDS
cd /  # -I and a folder no submission writes: Python imports nothing the student uploaded
timeout --kill-after=15 "$HARD_LIMIT" "$PYTHON" -I -m graders.autograder run --root "$ROOT" --config "$SOURCE/{CONFIG_FILE}" 2>&1 | tee "$LOG"
STATUS=${{PIPESTATUS[0]}}
ARGS=(--results "$RESULTS/results.json" --config "$SOURCE/{CONFIG_FILE}" --status "$STATUS" --log "$LOG" --elapsed $((SECONDS - START)))
if ! python3 -I "$SOURCE/{FALLBACK_FILE}" "${{ARGS[@]}}" && ! "$PYTHON" -I "$SOURCE/{FALLBACK_FILE}" "${{ARGS[@]}}"; then
  rm -f "$RESULTS/results.json"
  echo '{{"score": 0, "execution_time": 0, "output": "The autograder failed before it could grade your notebook; your instructor has the details.", "stdout_visibility": "hidden", "tests": []}}' > "$RESULTS/results.json"
fi
rm -f "$LOG"
exit 0
"""


FALLBACK_SCRIPT = '''"""Write a valid Gradescope results.json when the grader did not (standard library only).

What the grader wrote is kept only if it is valid: strict UTF-8 JSON under 1 MB, finite numbers, no
unpaired surrogates, the shape of Gradescope's format. A partial file (the grader was killed while
writing it), a corrupt one or a symlink is replaced, atomically, by a 0 with a message.
"""
import argparse
import json
import math
import os
import sys
import tempfile

MAX_BYTES = 1000000
VISIBILITY = ("hidden", "after_due_date", "after_published", "visible")
FORMATS = ("text", "html", "simple_format", "md", "ansi")
TOP_KEYS = {"score", "execution_time", "output", "output_format", "test_output_format", "test_name_format",
            "visibility", "stdout_visibility", "extra_data", "tests", "leaderboard"}
TEST_KEYS = {"score", "max_score", "status", "name", "name_format", "number", "output", "output_format", "tags",
             "visibility", "extra_data"}


def number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def text(value):
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def plain_data(value, depth=0):
    """Strings that UTF-8 can hold, finite numbers, at most 64 levels deep."""
    if depth > 64:
        return False
    if isinstance(value, str):
        return text(value)
    if isinstance(value, dict):
        return all(text(k) and plain_data(v, depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return all(plain_data(v, depth + 1) for v in value)
    return value is None or isinstance(value, bool) or number(value)


def valid_test(test):
    return (isinstance(test, dict) and set(test) <= TEST_KEYS and text(test.get("name"))
            and number(test.get("score")) and number(test.get("max_score"))
            and test.get("status", "passed") in ("passed", "failed")
            and text(test.get("output", "")) and text(test.get("number", ""))
            and test.get("visibility", "visible") in VISIBILITY
            and all(test.get(key, "text") in FORMATS for key in ("name_format", "output_format"))
            and isinstance(test.get("tags", []), list) and all(text(t) for t in test.get("tags", []))
            and isinstance(test.get("extra_data", {}), dict))


def refuse(constant):
    raise ValueError("not JSON: " + constant)


def valid(path):
    """Whether ``path`` is a results.json Gradescope accepts (a regular file, not a symlink)."""
    try:
        if os.path.islink(path) or not os.path.isfile(path) or os.path.getsize(path) >= MAX_BYTES:
            return False
        with open(path, "rb") as handle:
            data = json.loads(handle.read(MAX_BYTES).decode("utf-8"), parse_constant=refuse)
    except Exception:  # noqa: BLE001 - unreadable, not UTF-8, not JSON, NaN, nested too deeply: all invalid
        return False
    if not isinstance(data, dict) or not set(data) <= TOP_KEYS:
        return False
    tests = data.get("tests")
    return (number(data.get("score")) and number(data.get("execution_time")) and text(data.get("output"))
            and isinstance(tests, list) and all(valid_test(t) for t in tests)
            and all(data.get(key, "visible") in VISIBILITY for key in ("visibility", "stdout_visibility"))
            and all(data.get(key, "text") in FORMATS for key in ("output_format", "test_output_format", "test_name_format"))
            and isinstance(data.get("extra_data", {}), dict) and isinstance(data.get("leaderboard", []), list)
            and plain_data(data))


def write_atomically(path, data):
    """A temporary file beside ``path`` (O_EXCL, never a symlink), fsync'ed, then renamed over it."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, scratch = tempfile.mkstemp(prefix=".results.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            json.dump(data, handle, indent=1, ensure_ascii=True, allow_nan=False)
            handle.flush()
            os.fchmod(handle.fileno(), 0o644)
            os.fsync(handle.fileno())
        os.replace(scratch, path)
    except BaseException:
        try:
            os.unlink(scratch)
        except OSError:
            pass
        raise


def read_config(path):
    try:
        with open(path, encoding="utf-8") as handle:
            config = json.load(handle)
    except Exception:  # noqa: BLE001
        return {}
    return config if isinstance(config, dict) else {}


def fallback_results(config, status, elapsed):
    try:
        limit = int(config.get("hard_limit_seconds", 0))
    except (TypeError, ValueError):
        limit = 0
    try:
        seconds = float(elapsed)
    except ValueError:
        seconds = None  # unknown: a kill (137) is then taken for the time limit's
    if seconds is not None and not (math.isfinite(seconds) and seconds >= 0):
        seconds = None
    if status == "124" or (status == "137" and (seconds is None or seconds >= limit - 30)):
        message = ("Grading did not finish within the autograder's time limit (%d minutes): does a cell train for a very "
                   "long time, or wait forever? Your notebook scored 0; run it top to bottom locally and resubmit."
                   % (limit // 60))
    elif status == "137":
        message = ("The grader was killed while grading your notebook (exit status 137, usually the container running out "
                   "of memory), so it scored 0. Make large arrays or models smaller if you have any; your instructor "
                   "has the details.")
    elif status == "0":
        message = ("The autograder finished but wrote no valid result for your notebook, so it scored 0. "
                   "This is not your mistake; your instructor has the details.")
    else:
        message = ("The autograder itself failed while grading your notebook (exit status %s), so it scored 0. "
                   "This is not your mistake; your instructor has the details." % (status or "unknown"))
    tests = []
    parts = config.get("parts")
    for part in parts if isinstance(parts, list) else []:
        try:
            pid, title, points = part
            points = float(points)
        except (TypeError, ValueError):
            continue
        if points and math.isfinite(points):
            tests.append({"name": "%s \\u00b7 %s" % (pid, title), "score": 0.0, "max_score": points, "status": "failed",
                          "output": message, "visibility": "visible"})
    return {"score": 0.0, "execution_time": seconds or 0.0, "output": message, "visibility": "visible",
            "stdout_visibility": "hidden", "tests": tests}


def log_tail(path, limit=6000):
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 4 * limit))
            return handle.read().decode("utf-8", errors="replace")[-limit:]
    except (OSError, ValueError):
        return ""


def main():
    parser = argparse.ArgumentParser()
    for name in ("--results", "--config", "--status", "--log", "--elapsed"):
        parser.add_argument(name, default="")
    args = parser.parse_args()
    if valid(args.results):
        return 0
    write_atomically(args.results, fallback_results(read_config(args.config), args.status, args.elapsed))
    report = ("nbgrade fallback: the grader wrote no valid results.json (exit status %s); instructor detail:\\n%s\\n"
              % (args.status, log_tail(args.log)))
    try:  # stdout (instructors only) after results.json: an unprintable log never costs the results
        sys.stdout.buffer.write(report.encode("utf-8", errors="replace"))
        sys.stdout.flush()
    except (AttributeError, OSError, ValueError):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''


def instructor_readme(config: AutograderConfig, zip_name: str, wheel: str) -> str:
    memory = config.container_memory_mb
    measured = measured_sentence(config.assignment)
    first = get_assignment(config.assignment).rubric.checks[0]
    example = f"{first.part} · {first.name}"
    memory_line = (f"**Memory: {memory} MB** (Gradescope's default is {GRADESCOPE_DEFAULT_MEMORY_MB} MB)"
                   + (f": {config.memory_reason}" if config.memory_reason else "")
                   + f"; {measured}."
                   if memory != GRADESCOPE_DEFAULT_MEMORY_MB else
                   f"**Memory: {memory} MB**, Gradescope's default: {measured} ({MEASURED_BY}). A notebook that "
                   f"needs more is stopped by the grader itself at {config.limits.memory_mb} MB and re-run without the "
                   "cell that needed it (still graded, with a note to the student) instead of Gradescope killing the run.")
    return f"""# Gradescope autograder: {config.title} (`{config.assignment}`)

## Upload

1. Create a *Programming Assignment* on Gradescope, {sum(p[2] for p in config.parts):g} points (autograded).
   Parts graded by the students themselves are a separate assignment (the PDF from `grade pdf`).
2. *Configure Autograder* → *Zip file upload* → `{zip_name}` → Base image: **Ubuntu 22.04**
   (any Ubuntu image with apt works) → *Update Autograder*. The build installs Python, CPU PyTorch
   and the harness, and provisions MNIST (a few minutes).
3. Settings → Autograder settings:
   * **Autograder timeout: {config.timeout_minutes} minutes** (this zip's own hard limit is
     {config.hard_limit_seconds} s: past it the submission gets a 0 with a message).
   * {memory_line}
   * **CPU: {GRADESCOPE_DEFAULT_CPU:g}**, Gradescope's default, is enough (the kernel uses one thread).
4. *Test Autograder* with the reference notebook: it must score full marks.

Students upload their notebook (`{config.template_name}`, any name works): `run_autograder`
grades the `.ipynb` in the submission, or a notebook with another extension, or the best match
among several, and says which one it graded.

## What students see

Every check is a visible test named after its part (`{example}`), so the
total shows. Checks on inputs drawn at grading time say so without revealing them. Hidden
details (tracebacks, inputs) are printed to the autograder's stdout, which only instructors see.

## Limits (from the assignment's budget)

* the student's cells: {config.limits.total_timeout:g} s in all, {config.limits.cell_timeout:g} s per cell;
* the grader's observation of each part: {config.limits.probe_timeout:g} s;
* the kernel's memory: {config.limits.memory_mb} MB (the grader keeps {GRADER_RESERVE_MB} MB).

Rebuild with other values: `grade gradescope {config.assignment} -o {zip_name} --timeout-minutes N --memory-mb M`.

## Contents

`setup.sh`, `run_autograder`, `{FALLBACK_FILE}`, `{CONFIG_FILE}`, `requirements.txt`, `{wheel}`
(the harness and the reference solutions: root-only inside the container, never readable by the
students' code, which runs as another user).
"""


def build_zip(assignment_id: str, target: Path, timeout_minutes: int | None = None, memory_mb: int | None = None) -> Path:
    """Write the autograder zip for ``assignment_id`` to ``target``."""
    config = autograder_config(assignment_id, timeout_minutes, memory_mb)
    dist = harness_distribution()
    with tempfile.TemporaryDirectory(prefix="nbgrade-zip-") as scratch:
        wheel = build_wheel(Path(scratch), dist)
        entries: list[tuple[str, bytes, int]] = [
            ("setup.sh", setup_script(wheel.name).encode(), 0o755),
            ("run_autograder", run_script(config).encode(), 0o755),
            (FALLBACK_FILE, FALLBACK_SCRIPT.encode(), 0o644),
            (CONFIG_FILE, config.to_json().encode(), 0o644),
            ("requirements.txt", "".join(f"{r}\n" for r in container_requirements(dist)).encode(), 0o644),
            ("README.md", instructor_readme(config, target.name, wheel.name).encode(), 0o644),
            (wheel.name, wheel.read_bytes(), 0o644),
        ]
        target.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, data, mode in entries:
                info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
                info.external_attr = (0o100000 | mode) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, data)
    return target


# ---------------------------------------------------------------------------------------------
# Inside the container: find the notebook (graders.choose), grade it, write results.json
# ---------------------------------------------------------------------------------------------
def grade_config(config: AutograderConfig, root: Path) -> GradeConfig:
    return GradeConfig(
        assignment=config.assignment, limits=config.limits, sandbox=True, write_report=False, instructor=False,
        hide=(str(root / "source"), str(root / "results")),
    )


def run_autograder(root: Path, config: AutograderConfig) -> dict:
    """Grade the submission under ``root`` and write ``root/results/results.json``; return what was written."""
    from graders.grade import grade_submission, invalid_result

    started = time.monotonic()
    results_dir = root / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    choice = choose_notebook(root / "submission", (config.assignment,))
    settings = grade_config(config, root)
    if choice.path is None:
        result = invalid_result(root / "submission", settings, 0, choice.message, time.monotonic() - started)
    else:
        result = grade_submission(choice.path, settings)
        result = dataclasses.replace(result, messages=(choice.message, *result.messages))
    data = gradescope_results(result)
    write_results(data, results_dir / "results.json")
    print_instructor_summary(result, choice)
    return data


def gradescope_results(result) -> dict:
    from graders.gradescope import to_gradescope

    data = to_gradescope(result, instructor=False)
    data["extra_data"] = {"assignment": result.assignment, "seed": result.seed, "status": result.status,
                          "submission": result.submission, "sha256": result.sha256}
    return shrink(data)


def shrink(data: dict, limit: int = MAX_RESULTS_BYTES) -> dict:
    """Cut test outputs until the JSON fits under ``limit`` bytes (Gradescope's results stay small)."""
    for cap in (4000, 1500, 500, 120):
        if len(json.dumps(data, ensure_ascii=False).encode("utf-8", errors="replace")) < limit:
            return data
        for test in data.get("tests", []):
            if len(test.get("output", "")) > cap:
                test["output"] = test["output"][: cap - 20] + "\n… (truncated)"
        data["output"] = data.get("output", "")[: cap * 4]
    return data


def write_results(data: dict, path: Path) -> None:
    """Atomically: a reader (or a crash half-way) never sees a partial results.json; a symlink there is replaced."""
    from graders.safetext import write_json_atomic

    write_json_atomic(path, data)


def print_instructor_summary(result, choice: ChosenNotebook) -> None:
    """To stdout, which Gradescope shows to instructors only: the score, each failure and its detail."""
    from graders.safetext import clean_text  # a file name may hold any byte; the result's own text is clean already

    name = clean_text(choice.path.name) if choice.path else "(no notebook)"
    print(f"{result.assignment} {name}: {result.score:g}/{result.max_score:g} "
          f"(seed {result.seed}, {result.duration:.1f} s, status {result.status})")
    for check in result.checks:
        if not check.passed:
            print(f"  {check.part} {check.name}: {check.outcome.value}: {check.message}"[:400])
            if check.detail:
                print("    " + check.detail[-1500:].replace("\n", "\n    "))
    if result.instructor_detail:
        print("harness detail:\n" + result.instructor_detail[-6000:])


if __name__ == "__main__":  # what run_autograder calls; parsed with the rest of the command line
    from graders.cli import autograder_main

    sys.exit(autograder_main(sys.argv[1:]))
