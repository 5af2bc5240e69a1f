"""Run one check of a rubric on made-up observations, in milliseconds (no kernel, no notebook).

A test builds :class:`~graders.observe.Observations` by hand (what a probe would have written for a
correct submission, made with the reference solution), changes one part of them (a catalogued
mistake, an error the probe recorded) and runs a single check through :func:`graders.judge.run_check`.
Assignments are reached through the registry, never by module path.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import replace
from typing import Any, Iterable

import nbformat

from graders.execute import ExecutedNotebook
from graders.judge import JudgeContext, run_check
from graders.observe import FigureRecord, Observations, PartObservation
from graders.outcome import CheckResult
from graders.registry import get_assignment
from graders.thresholds import thresholds_for

STUDENT_ERROR = {"type": "RuntimeError", "message": "boom in the student's code", "traceback": "Traceback (most recent call last): …"}
"""What the probe records when a call into the student's code raised."""
PROBE_FAILED = "the probe cell raised RuntimeError: boom in the student's code"
"""Why a part could not be observed at all (its probe cell did not finish)."""


def assignment(assignment_id: str) -> Any:
    return get_assignment(assignment_id)


def rubric_function(assignment_id: str, name: str) -> Any:
    """A function of the module that declares the assignment's checks (a catalogue of wrong formulas, a helper),
    found through the registry: the module of its first check's body, wherever the package keeps it."""
    body = assignment(assignment_id).rubric.checks[0].body
    return getattr(sys.modules[body.__module__], name)


def found(*contracts: str) -> dict[str, dict[str, str]]:
    """The probe's record of contract names defined under their own name."""
    return {name: {"found_as": name, "how": "exact", "reason": "defined under the contract name"} for name in contracts}


def part(part_id: str, contracts: Iterable[str], values: dict[str, Any], arrays: dict[str, Any]) -> PartObservation:
    return PartObservation(part_id, {"found": found(*contracts), "errors": {}, **values}, dict(arrays))


def figure(cell: int, axes: list[dict[str, Any]], suptitle: str = "") -> FigureRecord:
    return FigureRecord(cell, suptitle, tuple(axes))


def image_axis(title: str = "", row: int = 0, col: int = 0, rows: int = 1, cols: int = 1, **extra: Any) -> dict[str, Any]:
    return {"title": title, "xlabel": "", "ylabel": "", "images": 1, "image_shapes": [[28, 28]], "lines": [], "texts": [],
            "legend": [], "collections": 0, "patches": 0, "visible": True, "geometry": [rows, cols, row, col], **extra}


def line_axis(*styles: str, points: int = 20, **extra: Any) -> dict[str, Any]:
    lines = [{"label": f"curve {i}", "linestyle": style, "points": points, "visible": True} for i, style in enumerate(styles)]
    return {"title": "", "xlabel": "", "ylabel": "", "images": 0, "image_shapes": [], "lines": lines, "texts": [], "legend": [],
            "collections": 0, "patches": 0, "visible": True, "geometry": [1, 1, 0, 0], **extra}


def observations(parts: Iterable[PartObservation], figures: Iterable[FigureRecord] = ()) -> Observations:
    """Observations of a graded run whose figures were each displayed by the cell that drew them."""
    figures = list(figures)
    shown: dict[int, int] = {}
    for fig in figures:
        shown[fig.cell] = shown.get(fig.cell, 0) + 1
    return Observations({p.part: p for p in parts}, figures, [{"name": "x", "type": "int"}], shown)


def changed(obs: Observations, part_id: str, values: dict[str, Any] | None = None,
            arrays: dict[str, Any] | None = None) -> Observations:
    """``obs`` with some values or arrays of one part replaced (the others shared, not copied)."""
    old = obs.parts[part_id]
    new = replace(old, values={**old.values, **(values or {})}, arrays={**old.arrays, **(arrays or {})})
    return replace(obs, parts={**obs.parts, part_id: new})


def with_figures(obs: Observations, figures: Iterable[FigureRecord], displayed: bool = True) -> Observations:
    figures = list(figures)
    shown = {fig.cell: sum(f.cell == fig.cell for f in figures) for fig in figures} if displayed else {}
    return replace(obs, figures=figures, image_outputs=shown)


def call_failed(obs: Observations, part_id: str, *keys: str) -> Observations:
    """``obs`` where the probe's calls recorded under ``keys`` raised: their values and arrays are gone, the error kept."""
    old = obs.parts[part_id]
    values = {k: v for k, v in old.values.items() if k not in keys}
    values["errors"] = {**old.values.get("errors", {}), **{k: dict(STUDENT_ERROR) for k in keys}}
    arrays = {k: v for k, v in old.arrays.items() if k not in keys}
    return replace(obs, parts={**obs.parts, part_id: replace(old, values=values, arrays=arrays)})


def probe_failed(obs: Observations, part_id: str) -> Observations:
    """``obs`` where the part's probe cell itself did not finish: nothing of the part was observed."""
    return replace(obs, parts={**obs.parts, part_id: PartObservation(part_id, {}, {}, "error", PROBE_FAILED)})


class Judge:
    """Runs single checks of one assignment against observations and hidden inputs."""

    def __init__(self, assignment_id: str, hidden: dict[str, dict[str, Any]]) -> None:
        self.spec = assignment(assignment_id)
        self.rubric = self.spec.rubric
        self.checks = {c.name: c for c in self.rubric.checks}
        self.hidden = hidden
        self.reference = importlib.import_module(self.spec.reference_module)
        self.thresholds = thresholds_for(self.spec)
        self.executed = ExecutedNotebook(nbformat.v4.new_notebook(), [], 0.0)

    def rubric_function(self, name: str) -> Any:
        return rubric_function(self.spec.id, name)

    def __call__(self, check_name: str, obs: Observations) -> CheckResult:
        check = self.checks[check_name]
        ctx = JudgeContext(check.part, obs, self.hidden, self.executed, {}, self.reference, self.thresholds)
        return run_check(check, ctx)


def explain(result: CheckResult) -> str:
    """Everything a failed check said, for assertion messages and word searches."""
    return " | ".join(str(x) for x in (result.outcome.value, result.message, result.expected, result.got, result.mistake,
                                       result.detail if result.outcome.value == "errored" else "") if x)


def assert_errored_path(judge: Any, correct: Observations, check: str, keys: tuple[str, ...] | str | None) -> None:
    """The check scores 0 and quotes what was raised: a call that raised (``keys``), the probe cell itself
    (None), or a figure cell that raised before displaying its figure (``"figures"``)."""
    from graders.outcome import Outcome

    part_id = judge.checks[check].part
    if keys == "figures":  # the cell raised before showing its figure: recorded, never displayed
        result = judge(check, with_figures(correct, correct.figures, displayed=False))
        assert result.outcome is Outcome.FAILED and result.score == 0, explain(result)
        assert any("never displayed" in warning for warning in result.warnings), result.warnings
        return
    obs = probe_failed(correct, part_id) if keys is None else call_failed(correct, part_id, *keys)
    result = judge(check, obs)
    assert result.outcome in (Outcome.NOT_RUN, Outcome.FAILED), explain(result)
    assert result.score == 0
    said = "the probe cell raised RuntimeError" if keys is None else "boom in the student's code"
    assert said in result.message, explain(result)
