"""Finding an assignment's parts in a notebook: which assignment, and which cells belong to which part.

Students title parts in many ways (``## 3B · Kernels``, ``### Part B``, ``Problem 3 (b)``,
``**Q4. Dataset**``); the detection reads markdown headings (and bold-only lines) in order and keeps
the last problem number it saw, so ``Part B`` under ``Problem 3`` opens the part declared ``problem="3",
letter="B"``. What opens which part is declared by each assignment (:class:`graders.assignment.PartSpec`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from nbformat import NotebookNode

from graders.assignment import PartSpec
from graders.registry import all_assignments, get_assignment, part_owners

_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s*(.+?)\s*#*\s*$")
_BOLD_LINE = re.compile(r"^\s*(\*\*|__)(.+?)(\*\*|__)\s*$")
_PROBLEM = re.compile(r"(?i)\b(?:problem|question|exercise|q)\s*(\d+)\b")
_PART_LETTER = re.compile(r"(?i)\bpart\s*\(?([a-z])\)?(?![\w])")


def assignment_markers() -> dict[str, tuple[str, ...]]:
    """Assignment id → the names and heading words that recognise its notebooks (declared by each package)."""
    return {spec.id: spec.markers for spec in all_assignments()}


@dataclass(frozen=True)
class Heading:
    cell: int
    level: int
    text: str


def detect_assignment(notebook: NotebookNode) -> str | None:
    """The assignment a notebook answers: its metadata first, else the names and headings it uses."""
    declared = notebook.metadata.get("nbgrade", {}).get("assignment")
    if declared in assignment_markers():
        return declared
    scores = {assignment: len(found) for assignment, found in marker_scores(notebook).items()}
    best = max(scores, key=scores.get)
    return best if scores[best] >= 2 else None


@dataclass(frozen=True)
class AssignmentContradiction:
    """Why a notebook looks like another assignment than the one it is being graded as."""

    given: str
    """The assignment it is graded as (``--assignment``, or the Gradescope autograder's)."""
    detected: str
    """The assignment its metadata or names and headings point to."""
    evidence: str
    """What says so, e.g. ``its metadata declares stat101-hw1``."""

    @property
    def message(self) -> str:
        """One loud sentence for the results, the report and the terminal."""
        return (f"WARNING: this notebook was graded as `{self.given}`, but {self.evidence}. A notebook graded against "
                "the wrong assignment scores (nearly) 0: check that the right notebook was submitted and the right "
                "assignment chosen.")


def marker_scores(notebook: NotebookNode) -> dict[str, list[str]]:
    """For each assignment, which of its names and heading words the notebook's cells use."""
    text = "\n".join(cell.source for cell in notebook.cells).lower()
    return {assignment: [m for m in markers if m.lower() in text] for assignment, markers in assignment_markers().items()}


def assignment_mismatch(notebook: NotebookNode, assignment_id: str) -> AssignmentContradiction | None:
    """The contradiction when ``notebook`` declares, or clearly uses, another assignment than ``assignment_id``.

    Metadata (the templates carry it) is decisive; without it, the names and headings must point
    to another assignment at least as strongly as detection needs (two markers) and more than to
    the given one. A notebook that says nothing either way is not a contradiction.
    """
    declared = notebook.metadata.get("nbgrade", {}).get("assignment")
    if declared in assignment_markers() and declared != assignment_id:
        return AssignmentContradiction(assignment_id, declared, f"its metadata declares `{declared}`")
    if declared == assignment_id:
        return None
    scores = marker_scores(notebook)
    given = len(scores.get(assignment_id, []))
    for other, found in sorted(scores.items(), key=lambda item: -len(item[1])):
        if other != assignment_id and len(found) >= 2 and len(found) > given:
            shown = ", ".join(found[:4]) + (" …" if len(found) > 4 else "")
            return AssignmentContradiction(assignment_id, other, f"it uses {len(found)} names and headings of `{other}` "
                                                                 f"({shown}) and {given} of `{assignment_id}`")
    return None


def headings(notebook: NotebookNode) -> list[Heading]:
    found: list[Heading] = []
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "markdown":
            continue
        for line in cell.source.splitlines():
            match = _HEADING.match(line)
            if match:
                found.append(Heading(index, len(match.group(1)), _plain(match.group(2))))
                continue
            bold = _BOLD_LINE.match(line)
            if bold and len(bold.group(2)) < 80:
                found.append(Heading(index, 7, _plain(bold.group(2))))
    return found


def _plain(text: str) -> str:
    return re.sub(r"[*_`$\\]", "", text).strip()


def part_of_heading(text: str, parts: tuple[PartSpec, ...], problem: str | None) -> tuple[str | None, str | None]:
    """The part a heading opens (or None) and the problem number in force after it.

    In order: the earliest match of a part's own ``headings`` patterns; ``Part C`` under the
    problem in force; a whole problem (``Problem 2``); a part's weak ``heading_words``.
    """
    problem_match = _PROBLEM.search(text)
    if problem_match:
        problem = problem_match.group(1)
    found = [(m.start(), index) for index, part in enumerate(parts) for pattern in part.headings
             for m in [re.search(pattern, text)] if m]
    if found:
        part = parts[min(found)[1]]
        return part.id, part.problem or problem
    letter = _PART_LETTER.search(text)
    for part in parts:
        if letter and problem and part.problem == problem and (part.letter or "").upper() == letter.group(1).upper():
            return part.id, problem
    for part in parts:
        if problem_match and part.problem == problem and part.letter is None:
            return part.id, problem
    lowered = text.lower()
    for part in parts:
        if any(word.lower() in lowered for word in part.heading_words):
            return part.id, problem
    return None, problem


def part_specs(parts: Sequence[PartSpec | str]) -> tuple[PartSpec, ...]:
    """Parts given as declarations, or as part ids (looked up in the installed assignments)."""
    owners = part_owners() if any(isinstance(p, str) for p in parts) else {}
    return tuple(p if isinstance(p, PartSpec) else get_assignment(owners[p]).rubric.part(p) if p in owners else PartSpec(p, "", 0)
                 for p in parts)


def assign_cells(notebook: NotebookNode, parts: Sequence[PartSpec | str]) -> dict[str, list[int]]:
    """Map each part id to the indices of the cells under its heading (possibly empty)."""
    specs = part_specs(parts)
    cells: dict[str, list[int]] = {p.id: [] for p in specs}
    opened_at: dict[int, str] = {}
    problem: str | None = None
    for heading in headings(notebook):
        part, problem = part_of_heading(heading.text, specs, problem)
        if part and heading.cell not in opened_at:
            opened_at[heading.cell] = part
    current: str | None = None
    for index in range(len(notebook.cells)):
        current = opened_at.get(index, current)
        if current:
            cells[current].append(index)
    return cells


def written_answer(notebook: NotebookNode, cells: list[int]) -> str | None:
    """The markdown a student wrote in a part's cells (the first, heading-only cell excluded)."""
    texts = []
    for index in cells:
        cell = notebook.cells[index]
        if cell.cell_type != "markdown" or "problem-statement" in cell.get("metadata", {}).get("tags", []):
            continue  # the templates tag their problem statements: they are not the student's answer
        body = "\n".join(line for line in cell.source.splitlines() if not _HEADING.match(line))
        if body.strip():
            texts.append(body.strip())
    return "\n\n".join(texts) or None
