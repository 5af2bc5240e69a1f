"""Checks as small declarative claims, and the rubric that registers them.

A check is a function decorated with :meth:`Rubric.check`. The decorator carries the
claim's name, its part, points, visibility and hint; the body only reads observations and
either returns (the claim holds) or calls :func:`fail` (it does not). A check that raises
anything else is *errored*, and a check whose observation is missing is *failed*: no check
ever passes because something did not run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, NoReturn

from graders.assignment import PartSpec
from graders.outcome import CheckResult, Outcome, Visibility

__all__ = [  # Outcome, Visibility and CheckResult live in graders.outcome; imported from here too
    "CheckBody", "CheckFailure", "CheckResult", "CheckSpec", "Outcome", "PartSpec", "Rubric", "RubricError",
    "Visibility", "fail", "not_run", "timed_out",
]


class CheckFailure(Exception):
    """Raised by :func:`fail` inside a check body: the claim does not hold."""

    def __init__(
        self,
        message: str,
        *,
        expected: str | None = None,
        got: str | None = None,
        mistake: str | None = None,
        detail: str | None = None,
        outcome: Outcome = Outcome.FAILED,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.expected = expected
        self.got = got
        self.mistake = mistake
        self.detail = detail
        self.outcome = outcome


def fail(
    message: str,
    *,
    expected: str | None = None,
    got: str | None = None,
    mistake: str | None = None,
    detail: str | None = None,
) -> NoReturn:
    """Declare the claim false, with what was expected, what was got and the likely mistake."""
    raise CheckFailure(message, expected=expected, got=got, mistake=mistake, detail=detail)


def not_run(message: str, *, detail: str | None = None) -> NoReturn:
    """Declare that the check could not run (its object is missing or crashed): scores 0."""
    raise CheckFailure(message, detail=detail, outcome=Outcome.NOT_RUN)


def timed_out(message: str, *, detail: str | None = None) -> NoReturn:
    """Declare that the student's code ran out of time for this check: scores 0."""
    raise CheckFailure(message, detail=detail, outcome=Outcome.TIMED_OUT)


CheckBody = Callable[[Any], None]
"""A check body, called with the part's :class:`graders.judge.JudgeContext` (not imported here: judge
imports this module)."""


@dataclass(frozen=True)
class CheckSpec:
    """One registered claim about a submission."""

    name: str
    """The claim, snake_case (``kernel_matches_reference``)."""
    part: str
    """The part id it belongs to (``Q3``)."""
    points: float
    """Points earned when the claim holds."""
    body: CheckBody
    """The function that observes and asserts."""
    description: str
    """One sentence for the report: what is being claimed."""
    hint: str | None = None
    """A general hint shown when the check fails and the body named no mistake."""
    hidden_inputs: bool = False
    """True when the check uses inputs drawn at grading time; their values are never shown to students."""
    public: bool = False
    """True when the check needs no reference solution and may run in a student's local checks."""
    visibility: Visibility = Visibility.VISIBLE
    observes: tuple[str, ...] = ()
    """The observation keys the body reads (``grad_{case}``; another part's as ``Q1:dataset.len``),
    checked against the probes' ``PRODUCES`` when the assignment loads (:mod:`graders.assignment`)."""


class RubricError(ValueError):
    """The rubric itself is wrong (a harness bug, caught before any student code runs)."""


@dataclass
class Rubric:
    """All the checks of one assignment, registered explicitly and validated at load."""

    assignment: str
    title: str
    parts: tuple[PartSpec, ...]
    checks: list[CheckSpec] = field(default_factory=list)

    def check(
        self,
        part: str,
        points: float,
        description: str,
        *,
        hint: str | None = None,
        hidden_inputs: bool = False,
        public: bool = False,
        visibility: Visibility = Visibility.VISIBLE,
        observes: tuple[str, ...] = (),
    ) -> Callable[[CheckBody], CheckBody]:
        """Register the decorated function as a claim worth ``points`` in ``part``."""

        def register(body: CheckBody) -> CheckBody:
            self.checks.append(
                CheckSpec(
                    name=body.__name__,
                    part=part,
                    points=float(points),
                    body=body,
                    description=description,
                    hint=hint,
                    hidden_inputs=hidden_inputs,
                    public=public,
                    visibility=visibility,
                    observes=tuple(observes),
                )
            )
            return body

        return register

    def part(self, part_id: str) -> PartSpec:
        for part in self.parts:
            if part.id == part_id:
                return part
        raise KeyError(part_id)

    def checks_for(self, part_id: str) -> list[CheckSpec]:
        return [c for c in self.checks if c.part == part_id]

    @property
    def max_score(self) -> float:
        return sum(p.points for p in self.parts)

    def validate(self) -> None:
        """Refuse a rubric with duplicate names, unknown parts or points that do not add up."""
        names = [c.name for c in self.checks]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise RubricError(f"{self.assignment}: duplicate check names {duplicates}")
        part_ids = {p.id for p in self.parts}
        stray = sorted({c.part for c in self.checks} - part_ids)
        if stray:
            raise RubricError(f"{self.assignment}: checks for unknown parts {stray}")
        for part in self.parts:
            total = sum(c.points for c in self.checks_for(part.id))
            if abs(total - part.points) > 1e-9:
                raise RubricError(
                    f"{self.assignment} {part.id}: checks add up to {total:g} points, "
                    f"the part is worth {part.points:g}"
                )
