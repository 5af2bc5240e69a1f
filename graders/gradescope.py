"""Gradescope's results.json, from a finished :class:`GradingResult`.

Format: top-level ``score``, ``execution_time``, ``output`` and ``tests``; each test has a
``name`` starting with its part id, ``score``, ``max_score``, ``status`` (passed / failed),
``output``, ``visibility`` and ``tags``. Every check is visible so students see their total (a
single hidden test hides it on Gradescope); checks on hidden inputs say so without revealing
them. Outputs are truncated so the file stays well under 1 MB.
"""

from __future__ import annotations

import math
from pathlib import Path

from graders.check_text import Audience, describe_check
from graders.outcome import CheckResult
from graders.result import GradingResult
from graders.safetext import clean_text, write_json_atomic

MAX_TEST_OUTPUT = 4000
MAX_TOP_OUTPUT = 20000


def _truncate(text: str, limit: int) -> str:
    text = clean_text(text)
    return text if len(text) <= limit else text[: limit - 40] + "\n… (truncated)"


def _number(value: float, digits: int = 4) -> float:
    """A finite number for Gradescope (its schema has no NaN or infinity)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return 0.0
    return round(value, digits) if math.isfinite(value) else 0.0


def check_output(check: CheckResult, instructor: bool = False) -> str:
    """What a student (or, with ``instructor``, the instructor) reads under one test on Gradescope."""
    return _truncate(describe_check(check, Audience.INSTRUCTOR if instructor else Audience.GRADESCOPE), MAX_TEST_OUTPUT)


def top_output(result: GradingResult) -> str:
    lines = [f"{result.assignment_title}: {result.score:g} / {result.max_score:g} autograded points."]
    lines.extend(result.messages)
    for issue in result.execution.issues[:20]:
        lines.append(f"Cell {issue.cell + 1}: {issue.status}: {issue.summary}")
    lines.extend(result.execution.notes[:20])
    for part in result.parts:
        if part.self_graded_points:
            lines.append(f"{part.id}: {part.self_graded_points:g} more points are self-graded against the solution.")
    return _truncate("\n".join(lines), MAX_TOP_OUTPUT)


def to_gradescope(result: GradingResult, instructor: bool = False) -> dict:
    tests = []
    for part in result.parts:
        for check in part.checks:
            tests.append(
                {
                    "name": clean_text(f"{part.id} · {check.name}", 300),
                    "score": _number(check.score),
                    "max_score": _number(check.max_score),
                    "status": "passed" if check.passed else "failed",
                    "output": check_output(check, instructor),
                    "visibility": check.visibility.value,
                    "tags": [part.id, check.outcome.value],
                }
            )
    return {
        "score": _number(result.score),
        "execution_time": _number(result.duration, 2),
        "output": top_output(result),
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
    }


def write_results_json(result: GradingResult, path: Path, instructor: bool = False) -> None:
    """results.json, atomically: a reader never sees a partial file, a symlink there is replaced."""
    write_json_atomic(path, to_gradescope(result, instructor))
