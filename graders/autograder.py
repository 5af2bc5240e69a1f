"""The Gradescope autograder: ``grade gradescope ASSIGNMENT -o autograder.zip``, and what runs inside it.

The zip holds, at its root (Gradescope unpacks it into ``/autograder/source``):

* ``setup.sh``: run once when Gradescope builds the image (Ubuntu base image, as root). It
  installs Python, a virtual environment with CPU-only PyTorch wheels, the harness from the wheel
  in the zip, and provisions MNIST (``grade data``) so nothing is downloaded while grading.
  Afterwards only root can read the harness, the reference solutions and ``/autograder/source``.
* ``run_autograder``: run for every submission. It calls ``python -m graders.gradescope_main run``
  under a hard time limit, then ``fallback_results.py`` (standard library only), which writes a
  valid ``results.json`` with a 0 and a message whenever the grader did not: a crash of the
  harness, an import error, the time limit. Instructor detail goes to stdout, which Gradescope
  shows to instructors only.
* the harness wheel (``graders``, the assignment's own package when another distribution declares
  it, and the top-level package of its ``reference_module``, without notebooks and written answers;
  the entry points of the harness's assignments and of this one), ``requirements.txt``, ``autograder_config.json`` (assignment, limits, parts) and an
  instructor ``README.md`` (upload steps and the Gradescope settings the assignment needs).

Inside the container the grader runs as root and the student's kernel as an unprivileged uid
(:mod:`graders.sandbox`); ``/autograder/source`` and ``/autograder/results`` are passed to it as
hidden directories and are not readable or writable by that uid in any case.

This module builds the zip; the three scripts are files of the package (``graders/autograder_files/``,
their ``@KEY@`` placeholders filled in here), and what runs in the container is
:mod:`graders.gradescope_run`.

``AUTOGRADER_ROOT`` replaces ``/autograder`` (the tests run the real ``run_autograder`` in a
temporary directory), ``NBGRADE_PYTHON`` the virtual environment's Python.
"""

from __future__ import annotations

import base64
import hashlib
import re
import tempfile
import zipfile
from importlib import resources
from pathlib import Path

from graders.bundle import (
    PACKAGE_DIR,
    Distribution,
    harness_distribution,
    own_package,
    package_files,
    requirement_name,
    top_level_members,
    with_assignment,
)
from graders.config import Limits
from graders.gradescope_run import AutograderConfig
from graders.registry import ENTRY_POINT_GROUP, all_assignments, get_assignment

VENV = "/opt/nbgrade-venv"
"""Where setup.sh creates the virtual environment (outside /autograder, so hiding that hides no Python)."""
CACHE = "/opt/nbgrade-cache"
"""$NBGRADE_CACHE in the container: the MNIST that setup.sh provisions."""
TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
NOT_IN_CONTAINER = {"playwright": "headless-browser PDFs (grade pdf); the autograder only writes results.json"}
"""Harness dependencies the container does not need, and why."""
CONFIG_FILE = "autograder_config.json"
FALLBACK_FILE = "fallback_results.py"
ZIP_FILES = "autograder_files"
"""The package folder holding ``setup.sh``, ``run_autograder`` and ``fallback_results.py``."""
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


def wheel_packages(assignment_id: str) -> tuple[str, ...]:
    """The top-level packages the container needs beside ``graders``: the assignment's own and its reference's."""
    spec = get_assignment(assignment_id)
    names = [own_package(spec), spec.reference_package]
    return tuple(dict.fromkeys(n for n in names if n and n != PACKAGE_DIR.name))


def not_in_wheel(package: str) -> tuple[Path, ...]:
    """What of a shipped package the container never reads: the reference notebooks and answers declared in it."""
    skipped = []
    for spec in all_assignments():
        if spec.reference_package == package:
            skipped += [p for p in (spec.reference_path(spec.reference_notebook), spec.reference_path(spec.reference_answers)) if p]
    return tuple(skipped)


def wheel_members(assignment_id: str | None = None) -> list[tuple[str, Path]]:
    """(path in the wheel, file) for ``graders`` and :func:`wheel_packages`, without notebooks and written answers.

    Without an assignment, the packages of every assignment the harness registers itself.
    """
    members = [(f"graders/{p.relative_to(PACKAGE_DIR).as_posix()}", p) for p in package_files()]
    ids = (assignment_id,) if assignment_id else tuple(a for a, _ in harness_distribution().assignments)
    for package in dict.fromkeys(p for a in ids for p in wheel_packages(a)):
        members += [(name, path) for name, path in top_level_members(package, not_in_wheel(package))
                    if path.suffix != ".ipynb"]  # notebooks (templates, executed solutions): nothing in the container reads one
    return members


def entry_points_text(dist: Distribution) -> str:
    """The wheel's ``entry_points.txt``: the ``grade`` script and the assignments the harness registers."""
    assignments = "".join(f"{name} = {value}\n" for name, value in dist.assignments)
    return f"[console_scripts]\ngrade = graders.cli:main\n\n[{ENTRY_POINT_GROUP}]\n{assignments}"


def build_wheel(directory: Path, dist: Distribution | None = None, assignment_id: str | None = None) -> Path:
    """A pure-Python wheel of the harness (and of ``assignment_id``'s packages), written directly (reproducible bytes)."""
    dist = dist or harness_distribution()
    target = directory / wheel_name(dist)
    info = f"{dist.name.replace('-', '_')}-{dist.version}.dist-info"
    members = wheel_members(assignment_id)
    files = [(name, path.read_bytes()) for name, path in members]
    files += [
        (f"{info}/METADATA", _wheel_metadata(dist).encode()),
        (f"{info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: nbgrade-ml autograder\nRoot-Is-Purelib: true\nTag: py3-none-any\n"),
        (f"{info}/entry_points.txt", entry_points_text(dist).encode()),
        (f"{info}/top_level.txt", "".join(f"{Path(n).stem}\n" for n in wheel_top_level(members)).encode()),
    ]
    record = "".join(f"{name},sha256={_digest(data)},{len(data)}\n" for name, data in files) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as wheel:
        for name, data in [*files, (f"{info}/RECORD", record.encode())]:
            wheel.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data, zipfile.ZIP_DEFLATED)
    return target


def wheel_top_level(members: list[tuple[str, Path]]) -> tuple[str, ...]:
    """The wheel's top-level entries (``graders``, a package's folder, a single module's ``name.py``), in order."""
    return tuple(dict.fromkeys(name.split("/", 1)[0] for name, _ in members))


def _digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _wheel_metadata(dist: Distribution) -> str:
    requires = "".join(f"Requires-Dist: {r}\n" for r in dist.requirements)
    return (f"Metadata-Version: 2.1\nName: {dist.name}\nVersion: {dist.version}\n"
            f"Summary: Auto-grading harness (Gradescope autograder build)\nRequires-Python: {dist.requires_python}\n{requires}")


def container_requirements(dist: Distribution) -> list[str]:
    return [r for r in dist.requirements if _requirement_name(r) not in NOT_IN_CONTAINER]


def _requirement_name(requirement: str) -> str:
    return requirement_name(requirement)


def zip_file_text(name: str, **values: object) -> str:
    """The zip's file ``name`` (``graders/autograder_files/NAME``) with each ``@KEY@`` replaced by its value.

    Every placeholder must be given a value: a script is never written with one left in it.
    """
    text = resources.files("graders").joinpath(ZIP_FILES, name).read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace(f"@{key}@", str(value))
    missing = sorted(set(re.findall(r"@[A-Z_]+@", text)))
    if missing:
        raise ValueError(f"{name}: no value for {', '.join(missing)}")
    return text


def setup_script(wheel: str, top_level: tuple[str, ...] = ("graders", "reference")) -> str:
    """``setup.sh``: run once, as root, when Gradescope builds the image.

    ``top_level``: what the wheel installs at the top of site-packages (made readable by root only).
    """
    torch = " ".join(f'"{r}"' for r in harness_distribution().requirements if _requirement_name(r) in ("torch", "torchvision"))
    return zip_file_text("setup.sh", VENV=VENV, CACHE=CACHE, TORCH_INDEX=TORCH_INDEX, TORCH=torch, WHEEL=wheel,
                         TOP_LEVEL=" ".join(f'"{name}"' for name in top_level))


def run_script(config: AutograderConfig) -> str:
    """``run_autograder``: run for every submission, under the hard time limit, then the fallback writer."""
    return zip_file_text("run_autograder", VENV=VENV, CACHE=CACHE, CONFIG_FILE=CONFIG_FILE, FALLBACK_FILE=FALLBACK_FILE,
                         HARD_LIMIT=config.hard_limit_seconds, ASSIGNMENT=config.assignment,
                         TIMEOUT_MINUTES=config.timeout_minutes)


FALLBACK_SCRIPT = zip_file_text(FALLBACK_FILE)
"""``fallback_results.py`` (standard library only): writes a valid results.json when the grader did not."""


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
    dist = with_assignment(harness_distribution(), assignment_id, wheel_packages(assignment_id))
    with tempfile.TemporaryDirectory(prefix="nbgrade-zip-") as scratch:
        wheel = build_wheel(Path(scratch), dist, assignment_id)
        top_level = wheel_top_level(wheel_members(assignment_id))
        entries: list[tuple[str, bytes, int]] = [
            ("setup.sh", setup_script(wheel.name, top_level).encode(), 0o755),
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
