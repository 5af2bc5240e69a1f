"""Outcome types: how one check ended, who may see it, and the result it leaves.

These are closed types shared by the checks, the judge, the grading result and the reports;
they import nothing else of the harness, so any stage may depend on them without a cycle.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


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
