"""The finished grading result: plain data that the report stage and batch grading consume."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from graders.outcome import CheckResult, Outcome
from graders.safetext import clean_text, clean_value, write_json_atomic

MAX_RESULT_TEXT = 50_000
"""Longest string kept in a result (tracebacks, messages, written answers); longer ones are cut with a note."""
MAX_NAMES, MAX_NAME = 2000, 200
"""At most this many of the student's defined names are kept, each cut to this many characters."""


class ResultStatus(str, enum.Enum):
    """Whether a submission was graded; the value is what results.json, grading.json and the gradebook write."""

    GRADED = "graded"
    """Graded, whatever the score (a notebook that crashed or timed out is graded too)."""
    INVALID_SUBMISSION = "invalid_submission"
    """Not a gradable notebook (not JSON, no code, no notebook in the submission …): 0, with the reason."""
    HARNESS_ERROR = "harness_error"
    """The grader itself failed on this submission: 0, with instructor detail."""

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class GradedObject:
    """Which object of the student's notebook was graded for a contract name, and why."""

    contract_name: str
    found_as: str | None
    """The name in the student's namespace, or None when nothing was found."""
    how: str
    """``exact``, ``alias`` or ``discovered``; ``missing`` when not found."""
    reason: str
    """One sentence for the report (e.g. "the only nn.Module with a 784×10 weight")."""


@dataclass(frozen=True)
class CellIssue:
    """A student cell that did not run cleanly."""

    cell: int
    """Index of the cell in the submitted notebook (0-based)."""
    status: str
    """``error``, ``timeout``, ``killed``, ``skipped`` or ``neutralized``."""
    summary: str
    """One line a student understands (``NameError: name 'X' is not defined``)."""
    traceback: str = ""
    """Instructor detail, ANSI stripped and truncated."""


@dataclass(frozen=True)
class PartResult:
    id: str
    title: str
    score: float
    max_score: float
    self_graded_points: float
    checks: tuple[CheckResult, ...]
    graded_objects: tuple[GradedObject, ...] = ()
    warnings: tuple[str, ...] = ()
    cells: tuple[int, ...] = ()
    """Indices of the submission's cells that belong to this part (by its headings)."""
    answer_markdown: str | None = None
    """The student's written answer for a self-graded share, when one was found."""

    @property
    def status(self) -> str:
        if self.max_score == 0:
            return "self-graded"
        if all(c.passed for c in self.checks):
            return "passed"
        if any(c.passed for c in self.checks):
            return "partial"
        return "failed"


@dataclass(frozen=True)
class ExecutionSummary:
    """What happened when the notebook ran, without judging it."""

    status: str
    """``completed``, ``timed_out`` (total budget), ``not_run`` (not a notebook)."""
    duration: float
    cell_count: int
    issues: tuple[CellIssue, ...] = ()
    kernel_restarts: int = 0
    notes: tuple[str, ...] = ()
    """Sentences for the student: neutralised magics, skipped cells, truncated outputs."""


@dataclass(frozen=True)
class GradingResult:
    """Everything known about one graded submission."""

    assignment: str
    assignment_title: str
    submission: str
    """File name of the submission (never a full path of the grading machine)."""
    sha256: str
    seed: int
    graded_at: str
    duration: float
    versions: dict[str, str]
    parts: tuple[PartResult, ...]
    execution: ExecutionSummary
    defined_names: tuple[str, ...] = ()
    messages: tuple[str, ...] = ()
    """Top-level sentences (the notebook could not be read, the harness failed, …)."""
    status: ResultStatus = ResultStatus.GRADED
    public_only: bool = False
    instructor_detail: str = ""
    notebook_path: str | None = None
    """Where the executed notebook (outputs capped) was written, for the report."""

    def __post_init__(self) -> None:
        # The one choke point for text that came from the notebook or the kernel (names, messages,
        # tracebacks, file names): whatever builds a result, every file and table made from it can
        # be written (no lone surrogates, no NUL or terminal escapes, no string over MAX_RESULT_TEXT).
        names = self.defined_names
        if len(names) > MAX_NAMES or any(not isinstance(n, str) or len(n) > MAX_NAME for n in names):
            object.__setattr__(self, "defined_names", tuple(clean_text(n, MAX_NAME) for n in names[:MAX_NAMES]))
        for spec in fields(self):
            value = getattr(self, spec.name)
            cleaned = clean_value(value, MAX_RESULT_TEXT)
            if cleaned is not value:
                object.__setattr__(self, spec.name, cleaned)

    @property
    def score(self) -> float:
        return sum(p.score for p in self.parts)

    @property
    def max_score(self) -> float:
        return sum(p.max_score for p in self.parts)

    @property
    def checks(self) -> list[CheckResult]:
        return [c for p in self.parts for c in p.checks]

    def part(self, part_id: str) -> PartResult:
        for part in self.parts:
            if part.id == part_id:
                return part
        raise KeyError(part_id)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["parts"] = [
            {**asdict(p), "checks": [c.to_dict() for c in p.checks], "status": p.status}
            for p in self.parts
        ]
        data["score"] = self.score
        data["max_score"] = self.max_score
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "GradingResult":
        parts = tuple(
            PartResult(
                id=p["id"],
                title=p["title"],
                score=p["score"],
                max_score=p["max_score"],
                self_graded_points=p["self_graded_points"],
                checks=tuple(CheckResult.from_dict(c) for c in p["checks"]),
                graded_objects=tuple(GradedObject(**g) for g in p["graded_objects"]),
                warnings=tuple(p["warnings"]),
                cells=tuple(p["cells"]),
                answer_markdown=p["answer_markdown"],
            )
            for p in data["parts"]
        )
        ex = data["execution"]
        execution = ExecutionSummary(
            status=ex["status"],
            duration=ex["duration"],
            cell_count=ex["cell_count"],
            issues=tuple(CellIssue(**i) for i in ex["issues"]),
            kernel_restarts=ex["kernel_restarts"],
            notes=tuple(ex["notes"]),
        )
        simple = {
            k: data[k]
            for k in (
                "assignment", "assignment_title", "submission", "sha256", "seed", "graded_at",
                "duration", "versions", "status", "public_only", "instructor_detail", "notebook_path",
            )
        }
        simple["status"] = ResultStatus(simple["status"])
        return cls(
            **simple,
            parts=parts,
            execution=execution,
            defined_names=tuple(data["defined_names"]),
            messages=tuple(data["messages"]),
        )

    def write_json(self, path: Path) -> None:
        """grading.json, atomically (strict JSON: non-finite numbers become null)."""
        write_json_atomic(path, self.to_dict())


def outcome_counts(result: GradingResult) -> dict[Outcome, int]:
    counts = {o: 0 for o in Outcome}
    for check in result.checks:
        counts[check.outcome] += 1
    return counts
