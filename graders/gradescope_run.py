"""What runs inside Gradescope's container: find the notebook, grade it, write ``results.json``.

``run_autograder`` (a file of the zip, see :mod:`graders.autograder`) calls
``python -I -m graders.gradescope_main run --root /autograder --config …``, which reads the
:class:`AutograderConfig` the zip was built with and calls :func:`run_autograder`: the notebook is
chosen by :func:`graders.choose.choose_notebook` (the same rule as a batch), graded with the
sandbox on and ``/autograder/source`` and ``/autograder/results`` hidden from the kernel, and the
results written atomically, under Gradescope's size limit. Instructor detail goes to stdout,
which Gradescope shows to instructors only.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from graders.choose import ChosenNotebook, choose_notebook
from graders.config import GradeConfig, Limits

MAX_RESULTS_BYTES = 1_000_000
"""Gradescope's limit on results.json (:func:`shrink` cuts test outputs to stay under it)."""


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
        result = grade_submission(choice.path, settings, note=choice.message)
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
