"""Checks as small declarative claims, and the rubric that registers them.

A check is a function decorated with :meth:`Rubric.check`. The decorator carries the
claim's name, its part, points, visibility and hint; the body only reads observations and
either returns (the claim holds) or calls :func:`fail` (it does not). A check that raises
anything else is *errored*, and a check whose observation is missing is *failed*: no check
ever passes because something did not run.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, NoReturn

if TYPE_CHECKING:
    from graders.judge import JudgeContext


class Outcome(str, enum.Enum):
    """How one check ended. Only ``PASSED`` earns points."""

    PASSED = "passed"
    FAILED = "failed"
    ERRORED = "errored"
    TIMED_OUT = "timed_out"
    NOT_RUN = "not_run"
    AT_GRADING = "at_grading"
    """A hidden check in public mode (``grade --public``, the student copy): it did not run and is
    neither a failure nor a pass; it runs when the submission is graded."""


class Visibility(str, enum.Enum):
    """Gradescope's visibility values for a test."""

    VISIBLE = "visible"
    HIDDEN = "hidden"
    AFTER_DUE_DATE = "after_due_date"
    AFTER_PUBLISHED = "after_published"


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


CheckBody = Callable[["JudgeContext"], None]


@dataclass(frozen=True)
class CheckSpec:
    """One registered claim about a submission."""

    name: str
    """The claim, snake_case (``kernel_matches_reference``)."""
    part: str
    """The part id it belongs to (``1C``)."""
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


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check on one submission."""

    name: str
    part: str
    description: str
    outcome: Outcome
    score: float
    max_score: float
    message: str = ""
    """What the student reads: what was called, expected, observed."""
    expected: str | None = None
    got: str | None = None
    mistake: str | None = None
    """The likely mistake, named (e.g. "off by a factor 2: did you use 2σ² in the denominator?")."""
    warnings: tuple[str, ...] = ()
    """Things that satisfy the contract yet look wrong to an expert; they never deduct."""
    detail: str | None = None
    """Instructor-only detail (tracebacks, hidden inputs)."""
    hidden_inputs: bool = False
    visibility: Visibility = Visibility.VISIBLE

    @property
    def passed(self) -> bool:
        return self.outcome is Outcome.PASSED

    @property
    def ran(self) -> bool:
        """False for a hidden check in public mode (it runs at grading)."""
        return self.outcome is not Outcome.AT_GRADING

    def to_dict(self) -> dict:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        data["outcome"] = self.outcome.value
        data["visibility"] = self.visibility.value
        data["warnings"] = list(self.warnings)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "CheckResult":
        fields = dict(data)
        fields["outcome"] = Outcome(fields["outcome"])
        fields["visibility"] = Visibility(fields.get("visibility", "visible"))
        fields["warnings"] = tuple(fields.get("warnings", ()))
        return cls(**fields)


@dataclass(frozen=True)
class PartSpec:
    """One part of an assignment (``1A`` … ``2C``, ``P1`` … ``P3``)."""

    id: str
    title: str
    points: float
    """Autograded points, the sum of the part's check points."""
    self_graded_points: float = 0.0
    """Points that only the student's self-grade (rubric in the report) can give."""
    self_graded_prompt: str | None = None
    """What the student writes for the self-graded share (shown in the report)."""
    answer_heading: tuple[str, ...] = ()
    """Words that identify the markdown heading of the written answer, for self-graded parts."""
    aliases: tuple[str, ...] = ()
    """Other ways students title this part in headings (``Part A``, ``Problem 1``)."""


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
