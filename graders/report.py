"""The self-grade report: one self-contained HTML page per graded submission.

:func:`render_html_report` turns a finished :class:`GradingResult` (plus the executed notebook
it was graded on) into a page with the score, each part's checks, the student's cells beside
the reference solution's, and a self-grade rubric the student fills in in the page. The page
makes no network request: CSS and JavaScript are inline, figures are data URIs, math is
MathML, and a Content-Security-Policy forbids everything else. Student content passes through
:mod:`graders.render` (escaped or sanitised); student mode never shows check details or hidden
inputs.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
from markupsafe import Markup
from nbformat import NotebookNode

from graders.assignment import AssignmentSpec, PartSpec, ReferenceTable
from graders.outcome import CheckResult, Visibility
from graders.parts import assign_cells
from graders.registry import get_assignment
from graders.render import REPORT_LIMITS, CellFragment, RenderLimits, render_cells, render_markdown, template_environment
from graders.result import CellIssue, GradedObject, GradingResult, PartResult
from graders.summary_table import public_totals, shown_points, shown_status

REPORT_FILE = "report.html"
SELF_GRADE_FORMAT = "nbgrade-selfgrade/1"
"""The ``format`` field of an exported self-grade (JSON), read back by ``grade pdf --self-grade``."""


@dataclass(frozen=True)
class SelfGradeLevel:
    """One step of the coarse self-grade scale (out of 10), scaled to the part's points."""

    level: int
    points: float
    label: str


SCALE: tuple[tuple[int, str], ...] = (
    (10, "Complete and correct: every step the reference makes is there, or an equally valid argument"),
    (8, "Correct idea and result, with a minor slip or an omitted justification"),
    (5, "Partly right: the right approach, but a key step is missing or wrong"),
    (2, "Attempted, but mostly wrong or far from the reference"),
    (0, "Not attempted, or nothing relevant"),
)
"""The coarse 0/2/5/8/10 scale of self-graded courses; 2, 5 and 8 need a comment saying why."""
PARTIAL_LEVELS = (2, 5, 8)


# ---------------------------------------------------------------------------------------------
# View models: plain data the templates print (autoescaped), built once from the result
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CheckView:
    name: str
    description: str
    outcome: str
    passed: bool
    score: float
    max_score: float
    message: str = ""
    expected: str | None = None
    got: str | None = None
    mistake: str | None = None
    warnings: tuple[str, ...] = ()
    hidden_inputs: bool = False
    withheld: bool = False
    """A hidden check in student mode: only its claim and outcome are shown."""
    ran: bool = True
    """False for a hidden check in public mode: it runs at grading, so it is neither passed nor failed."""
    detail: str | None = None
    """Instructor mode only."""


@dataclass(frozen=True)
class TableView:
    caption: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    note: str = ""


@dataclass(frozen=True)
class SelfGradeView:
    part_id: str
    max_points: float
    prompt: str
    levels: tuple[SelfGradeLevel, ...]
    answer: Markup | None
    reference_answer: Markup | None
    table: TableView | None = None
    level: int | None = None
    """Pre-filled choice (``grade pdf --self-grade``); the page itself restores from localStorage."""
    comment: str = ""

    @property
    def points(self) -> float | None:
        """Points of the pre-filled choice, None when nothing was chosen."""
        return None if self.level is None else round(self.max_points * self.level / 10, 2)


@dataclass(frozen=True)
class PartView:
    id: str
    title: str
    anchor: str
    score: float
    max_score: float
    self_graded_points: float
    status: str
    checks: tuple[CheckView, ...]
    graded_objects: tuple[GradedObject, ...]
    warnings: tuple[str, ...]
    issues: tuple[CellIssue, ...]
    student_cells: tuple[CellFragment, ...]
    reference_cells: tuple[CellFragment, ...]
    self_grade: SelfGradeView | None
    cells_note: str = ""
    shown_max: float = 0.0
    """The points the shown score is out of: in public mode, the part's public points only."""


@dataclass(frozen=True)
class ReferenceMaterial:
    """What the reference solution contributes to a page (nothing, in a student bundle)."""

    notebook: NotebookNode | None = None
    cells: dict[str, list[int]] = field(default_factory=dict)
    answers: dict[str, str] = field(default_factory=dict)
    tables: dict[str, TableView] = field(default_factory=dict)
    """Part id → a table of reference measurements shown beside its self-graded answer."""
    unavailable: str = ""
    """Why there is no reference column ("" when there is one)."""


@dataclass(frozen=True)
class ReportPage:
    result: GradingResult
    instructor: bool
    parts: tuple[PartView, ...]
    reference_note: str
    notebook_note: str
    self_graded_max: float
    nonce: str
    data: dict[str, Any]
    @property
    def banners(self) -> list[tuple[str, str]]:
        """(kind, text) of the result's top-level messages: the student copy's note informs, the rest warn."""
        from graders.judge import PUBLIC_COPY_NOTE

        return [("info" if m == PUBLIC_COPY_NOTE else "bad", m) for m in self.result.messages]

    @property
    def autograded_max(self) -> float:
        """What the autograded score is out of: in public mode, the public points only."""
        return public_totals(self.result)[1] if self.result.public_only else self.result.max_score

    @property
    def at_grading_points(self) -> float:
        """Points of hidden checks that did not run (public mode): they are judged at grading."""
        return public_totals(self.result)[2] if self.result.public_only else 0.0

    @property
    def self_scored(self) -> float | None:
        """Sum of the pre-filled self-grades, None when none was given (the page's script fills it in)."""
        chosen = [p.self_grade.points for p in self.parts if p.self_grade and p.self_grade.points is not None]
        return sum(chosen) if chosen else None


# ---------------------------------------------------------------------------------------------
# Reference material
# ---------------------------------------------------------------------------------------------
def reference_root(spec: AssignmentSpec | None) -> Path | None:
    """The folder of the assignment's own reference package, or None where it is not installed (student bundle)."""
    return spec.reference_root() if spec is not None and spec.reference_available() else None


def load_reference(assignment: str, parts: tuple[PartSpec, ...], public_only: bool) -> ReferenceMaterial:
    """The reference notebook (executed), written answers and reference tables the assignment declares, or why not.

    Each is found where the assignment says: a path relative to its reference package, or an absolute one.
    """
    if public_only:
        return ReferenceMaterial(unavailable="Graded in public mode (the checks you can run yourself): the reference "
                                             "solution is not part of it, so this page shows your work only.")
    spec = _assignment(assignment)
    root = reference_root(spec)
    if spec is None or root is None:
        return ReferenceMaterial(unavailable="The reference solution is not installed here (a student bundle), so "
                                             "this page shows your work only.")
    path = spec.reference_path(spec.reference_notebook)
    notebook = nbformat.read(str(path), as_version=4) if path is not None and path.is_file() else None
    answers_dir = spec.reference_path(spec.reference_answers)
    answers = {p.id: (answers_dir / f"{p.id}.md").read_text(encoding="utf-8")
               for p in parts if answers_dir is not None and (answers_dir / f"{p.id}.md").is_file()}
    tables = {p.id: table_view(table) for p in parts if p.reference_table for table in [p.reference_table(root)] if table}
    return ReferenceMaterial(
        notebook=notebook,
        cells=assign_cells(notebook, parts) if notebook is not None else {},
        answers=answers,
        tables=tables,
        unavailable="" if notebook is not None else f"No reference notebook for {assignment} was found.",
    )


def table_view(table: ReferenceTable) -> TableView:
    """A reference table an assignment declares, as the report prints it."""
    return TableView(table.title, table.columns, table.rows, table.note)


# ---------------------------------------------------------------------------------------------
# Building the page
# ---------------------------------------------------------------------------------------------
def check_view(check: CheckResult, instructor: bool) -> CheckView:
    """What one check shows: everything for an instructor; no detail (and nothing of a hidden check) for a student."""
    withheld = not instructor and check.visibility is not Visibility.VISIBLE
    if withheld:
        return CheckView(check.name, check.description, check.outcome.value, check.passed, check.score,
                         check.max_score, withheld=True, hidden_inputs=check.hidden_inputs, ran=check.ran)
    return CheckView(
        check.name, check.description, check.outcome.value, check.passed, check.score, check.max_score,
        message=check.message, expected=check.expected, got=check.got,
        mistake=None if check.mistake and check.mistake in check.message else check.mistake,
        warnings=check.warnings, hidden_inputs=check.hidden_inputs,
        detail=check.detail if instructor else None, ran=check.ran,
    )


def rubric_parts(assignment: str) -> tuple[PartSpec, ...]:
    """The assignment's parts from its rubric (empty when the assignment is unknown)."""
    spec = _assignment(assignment)
    return spec.parts if spec is not None else ()


def _assignment(assignment: str) -> AssignmentSpec | None:
    try:
        return get_assignment(assignment)
    except (KeyError, ImportError):
        return None


def self_grade_specs(parts: tuple[PartSpec, ...]) -> dict[str, tuple[float, str]]:
    """Part id → (self-graded points, prompt) for parts with a written, self-graded share."""
    return {p.id: (p.self_graded_points, p.self_graded_prompt or "")
            for p in parts if p.self_graded_points > 0 or p.self_graded_prompt}


def self_grade_view(part: PartResult, spec: tuple[float, str], reference: ReferenceMaterial, limits: RenderLimits,
                    prefill: dict[str, Any] | None) -> SelfGradeView:
    points, prompt = spec
    levels = tuple(SelfGradeLevel(level, round(points * level / 10, 2), label) for level, label in SCALE)
    answer = render_markdown(part.answer_markdown, heading_shift=limits.heading_shift) if part.answer_markdown else None
    ref_text = reference.answers.get(part.id)
    ref_answer = render_markdown(ref_text, heading_shift=limits.heading_shift) if ref_text else None
    table = reference.tables.get(part.id)
    chosen = (prefill or {}).get(part.id, {})
    level = chosen.get("level") if chosen.get("level") in {lv for lv, _ in SCALE} else None
    return SelfGradeView(part.id, points, prompt, levels, answer, ref_answer, table, level,
                         str(chosen.get("comment", ""))[:4000])


def part_view(part: PartResult, result: GradingResult, notebook: NotebookNode | None, reference: ReferenceMaterial,
              self_specs: dict[str, tuple[float, str]], instructor: bool, limits: RenderLimits,
              prefill: dict[str, Any] | None) -> PartView:
    spec = self_specs.get(part.id)
    self_grade = self_grade_view(part, spec, reference, limits, prefill) if spec else None
    student = render_cells(notebook, part.cells, limits) if notebook is not None else []
    ref_cells = render_cells(reference.notebook, reference.cells.get(part.id, []), limits) if reference.notebook else []
    if self_grade is not None:
        # The written answer is compared in the self-grade block; here only the code and its outputs.
        student = [c for c in student if c.kind == "code"]
        ref_cells = [c for c in ref_cells if c.kind == "code"]
    check_warnings = {w for c in part.checks for w in c.warnings}
    cells_note = ""
    if notebook is not None and not part.cells:
        cells_note = f"No cells were found under a heading for {part.id}: title the part \"{part.id} · {part.title}\"."
    return PartView(
        id=part.id, title=part.title, anchor=f"part-{part.id}", score=part.score, max_score=part.max_score,
        self_graded_points=part.self_graded_points, status=shown_status(part), shown_max=shown_points(part)[1],
        checks=tuple(check_view(c, instructor) for c in part.checks),
        graded_objects=part.graded_objects,
        warnings=tuple(w for w in part.warnings if w not in check_warnings),
        issues=tuple(i for i in result.execution.issues if i.cell in part.cells),
        student_cells=tuple(student), reference_cells=tuple(ref_cells), self_grade=self_grade, cells_note=cells_note,
    )


def page_data(result: GradingResult, parts: tuple[PartView, ...]) -> dict[str, Any]:
    """What the page's script needs: scores, the self-graded parts and the storage key."""
    return {
        "format": SELF_GRADE_FORMAT,
        "storage_key": f"nbgrade-selfgrade:{result.assignment}:{result.sha256 or result.submission}",
        "assignment": result.assignment,
        "submission": result.submission,
        "sha256": result.sha256,
        "seed": result.seed,
        "graded_at": result.graded_at,
        "autograded": {"score": result.score, "max": public_totals(result)[1] if result.public_only else result.max_score},
        "parts": [{"id": p.id, "score": p.score, "max": p.max_score,
                   "self_max": p.self_grade.max_points if p.self_grade else 0.0} for p in parts],
        "partial_levels": list(PARTIAL_LEVELS),
    }


def build_page(result: GradingResult, *, instructor: bool = False, notebook: NotebookNode | None = None,
               limits: RenderLimits = REPORT_LIMITS, prefill: dict[str, Any] | None = None) -> ReportPage:
    """Everything the report template prints, computed once from the result."""
    specs = rubric_parts(result.assignment)
    # All of the rubric's parts, so a part's reference cells end where the next part begins.
    reference = load_reference(result.assignment, specs or tuple(PartSpec(p.id, p.title, 0) for p in result.parts),
                               result.public_only) if result.parts else ReferenceMaterial(
        unavailable="No part of this submission could be graded.")
    self_specs = self_grade_specs(specs)
    parts = tuple(part_view(p, result, notebook, reference, self_specs, instructor, limits, prefill) for p in result.parts)
    notebook_note = "" if notebook is not None else "The executed notebook is not available, so your cells are not shown."
    return ReportPage(
        result=result, instructor=instructor, parts=parts, reference_note=reference.unavailable,
        notebook_note=notebook_note,
        self_graded_max=sum(p.self_grade.max_points for p in parts if p.self_grade),
        nonce=secrets.token_urlsafe(18), data=page_data(result, parts),
    )


def render_html_report(result: GradingResult, *, instructor: bool = False, notebook: NotebookNode | None = None) -> str:
    """The report page as one self-contained HTML string."""
    page = build_page(result, instructor=instructor, notebook=notebook)
    return template_environment().get_template("report.html.j2").render(page=page)


def read_executed_notebook(result: GradingResult, out_dir: Path) -> NotebookNode | None:
    """The executed notebook written beside the results (None when grading never got that far)."""
    if not result.notebook_path:
        return None
    path = out_dir / Path(result.notebook_path).name
    if not path.is_file():
        return None
    return nbformat.read(str(path), as_version=4)


def write_report(result: GradingResult, out_dir: Path, instructor: bool = False) -> Path:
    """Write ``out_dir/report.html`` for ``result`` and return its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    html = render_html_report(result, instructor=instructor, notebook=read_executed_notebook(result, out_dir))
    target = out_dir / REPORT_FILE
    target.write_text(html, encoding="utf-8")
    return target


def read_self_grade(path: Path) -> dict[str, Any]:
    """Part id → {level, comment} from a self-grade exported by the page (JSON)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or data.get("format") != SELF_GRADE_FORMAT:
        raise ValueError(f"{path.name}: not a self-grade exported by the report (format {SELF_GRADE_FORMAT})")
    return {str(entry.get("part")): entry for entry in data.get("self_graded", []) if isinstance(entry, dict)}


__all__ = ["render_html_report", "write_report", "build_page", "read_self_grade", "REPORT_FILE"]
