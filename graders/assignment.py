"""What an assignment declares: one frozen :class:`AssignmentSpec` per assignment package.

The engine (execute, observe, judge, report, pdf, batch, autograder, CLI) knows no assignment:
everything it needs about one (parts and their headings, points, self-graded prompts, the
markers that recognise its notebooks, thresholds, the Gradescope budget, the kernel-side probe
text, the rubric, the reference material, the template) is declared here by the assignment's own
package and found through the ``nbgrade.assignments`` entry-point group (:mod:`graders.registry`).
``docs/authoring.md`` is the author's guide.

The probe↔check protocol is declared on both sides and checked when the package loads
(:func:`protocol_problems`): the kernel-side probe text carries a literal ``PRODUCES`` mapping
(part id → observation keys it writes), each check an ``observes`` tuple (the keys it reads). A
key may hold ``{placeholders}`` (``grad_{case}``); a key of another part is written ``"Q1:dataset.len"``.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from graders.checks import Rubric


class AssignmentError(ValueError):
    """An assignment package declares something inconsistent (an authoring bug, caught at load)."""


@dataclass(frozen=True)
class ReferenceTable:
    """A table of reference measurements shown beside a self-graded answer (e.g. measured scaling)."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    note: str = ""


@dataclass(frozen=True)
class PartSpec:
    """One part of an assignment: how it is titled, found in a notebook and scored."""

    id: str
    """The part id students put in the heading (unique across installed assignments)."""
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
    """Other ways students title this part in headings (informational)."""
    headings: tuple[str, ...] = ()
    """Regular expressions that, found in a heading, open this part (``(?<!\\w)P\\s*2(?!\\w)``)."""
    problem: str | None = None
    """The problem number this part sits under (``3`` for 3B): ``Problem 3`` … ``Part B`` opens it."""
    letter: str | None = None
    """Its letter under ``problem`` (``C``); None for a part that is a whole problem (``Problem 2`` opens it)."""
    heading_words: tuple[str, ...] = ()
    """Weak words tried after everything else (``summary``): a heading holding one opens this part."""
    figures: bool = False
    """Whether the part asks for a figure in the notebook's outputs (the PDF warns when outputs are missing)."""
    reference_table: Callable[[Path], ReferenceTable | None] | None = None
    """Reference root → a table shown beside the self-graded answer (None: no table)."""


@dataclass(frozen=True)
class Threshold:
    """A pass mark for a trained figure: the problem's own value, lowered below the reference's worst run."""

    key: str
    """``PART.figure`` (``Q2.test_accuracy``): what the checks ask for and the calibration file's key."""
    contract: float
    """The figure the problem states."""


@dataclass(frozen=True)
class ReferenceRun:
    """The reference notebook graded by the autograder in a cgroup limited like a default Gradescope container."""

    limit_mb: int
    cpu: float
    peak_mb: int
    """Peak memory of the whole container (grader + kernel), over the runs."""
    seconds: float
    """Longest wall-clock time of one run."""
    runs: int = 1
    """How many runs the figures summarise (all scored full marks)."""


@dataclass(frozen=True)
class AutograderBudget:
    """What one assignment's grading needs on Gradescope (0.5 CPU by default)."""

    notebook_seconds: float
    """All the student's cells together (several times the reference notebook at 0.5 CPU)."""
    cell_seconds: float
    probe_seconds: float
    """The grader's observation of one part inside the kernel."""
    container_memory_mb: int
    """The Gradescope memory setting the reference notebook was measured to fit in."""
    measured: ReferenceRun
    """The measurement behind ``container_memory_mb`` (rerun ``benchmarks/gradescope_memory.py`` after a change)."""
    memory_reason: str = ""
    """Why the assignment needs more than Gradescope's default, when it does."""


HiddenInputs = Callable[[int, Path], dict[str, dict[str, Any]]]
"""Seed, data root → part id → name → hidden input (keys ending ``_grader_only`` never reach the kernel)."""


@dataclass(frozen=True)
class AssignmentSpec:
    """Everything about one assignment, declared once by its package."""

    id: str
    """The id used on the command line, in notebook metadata and in results (``stat101-hw1``)."""
    title: str
    package: str
    """The declaring package (``stat101_grading.hw1``): its resources hold the probe text."""
    rubric: Rubric
    """The checks, registered in the package (its ``parts`` are the assignment's parts)."""
    hidden_inputs: HiddenInputs
    markers: tuple[str, ...]
    """Names and heading words that recognise a notebook of this assignment (two suffice)."""
    contract_names: tuple[str, ...]
    """The names the problem set asks students to define; the engine never spells them."""
    budget: AutograderBudget
    probes: str = "probes.py"
    """Kernel-side probe text, a resource of ``package`` (sent to the kernel as text, never imported)."""
    reference_module: str | None = None
    """Import path of the reference solution, imported only when judging (``stat101_reference.hw1``).

    Hidden checks run where this module can be found (:meth:`reference_available`); its top-level
    package (:attr:`reference_package`) holds the reference material the paths below name."""
    reference_notebook: str | None = None
    """The executed-solution notebook, relative to :attr:`reference_package` (``notebooks/stat101-hw1.ipynb``), or absolute."""
    reference_answers: str | None = None
    """Folder of written reference answers ``<PART>.md``, relative to :attr:`reference_package`, or absolute."""
    calibration: str | None = None
    """Calibration JSON (min / median / max per threshold key), relative to :attr:`reference_package`, or absolute."""
    thresholds: tuple[Threshold, ...] = ()
    template: Path | None = None
    """The student template notebook (the product keeps templates in ``student_template/``)."""

    @property
    def parts(self) -> tuple[PartSpec, ...]:
        return self.rubric.parts

    @property
    def part_ids(self) -> tuple[str, ...]:
        return tuple(p.id for p in self.rubric.parts)

    @property
    def template_name(self) -> str:
        return f"{self.id}.ipynb"

    @property
    def reference_package(self) -> str | None:
        """The top-level package of :attr:`reference_module` (None when the assignment declares no solution)."""
        return self.reference_module.split(".")[0] if self.reference_module else None

    def reference_available(self) -> bool:
        """Whether the reference solution can be imported here (not in a student bundle): hidden checks run."""
        return self.reference_module is not None and find_module(self.reference_module) is not None

    def reference_root(self) -> Path | None:
        """The folder of :attr:`reference_package`, where relative reference paths are resolved (None: not installed)."""
        spec = find_module(self.reference_package) if self.reference_package else None
        if spec is None:
            return None
        if spec.submodule_search_locations:
            return Path(next(iter(spec.submodule_search_locations)))
        return Path(spec.origin).parent if spec.origin else None  # a single module: the folder holding it

    def reference_path(self, declared: str | None) -> Path | None:
        """A declared reference path (``reference_notebook``, ``reference_answers``, ``calibration``), resolved.

        An absolute path is kept as it is; a relative one is joined to :meth:`reference_root`. None when
        nothing is declared or the reference package is not installed.
        """
        if not declared:
            return None
        path = Path(declared)
        if path.is_absolute():
            return path
        root = self.reference_root()
        return root / path if root is not None else None

    def probe_source(self) -> str:
        """The kernel-side probe text (read as a resource; the grader never imports it)."""
        return resources.files(self.package).joinpath(self.probes).read_text(encoding="utf-8")

    def probed_parts(self) -> tuple[str, ...]:
        """The parts whose probe function ``probe_<PART>`` the probe text defines."""
        names = {node.name for node in ast.parse(self.probe_source()).body if isinstance(node, ast.FunctionDef)}
        return tuple(pid for pid in self.part_ids if f"probe_{pid}" in names)

    def produces(self) -> dict[str, tuple[str, ...]]:
        """The probe text's ``PRODUCES`` literal: part id → observation keys it writes."""
        return produced_keys(self.probe_source(), f"{self.package}/{self.probes}")

    def observed_with(self, part_id: str) -> tuple[str, ...]:
        """Other parts whose observations the checks of ``part_id`` read (observed together locally)."""
        others = (ObservedKey.parse(key, c.part).part for c in self.rubric.checks_for(part_id) for key in c.observes)
        return tuple(dict.fromkeys(p for p in others if p != part_id))

    def validate(self) -> None:
        """Refuse a declaration whose rubric, parts or probe↔check protocol do not agree."""
        if self.rubric.assignment != self.id or self.rubric.title != self.title:
            raise AssignmentError(f"{self.id}: the rubric is declared for {self.rubric.assignment!r} / {self.rubric.title!r}")
        self.rubric.validate()
        for threshold in self.thresholds:
            if threshold.key.split(".", 1)[0] not in self.part_ids:
                raise AssignmentError(f"{self.id}: threshold {threshold.key!r} names no part")
        problems = protocol_problems(self)
        if problems:
            raise AssignmentError(f"{self.id}: the probes and checks disagree:\n  " + "\n  ".join(problems))


def find_module(name: str):  # noqa: ANN201 - importlib's ModuleSpec or None
    """``importlib.util.find_spec`` that says None instead of raising (a missing parent, a broken path entry)."""
    from importlib.util import find_spec

    try:
        return find_spec(name)
    except (ImportError, ValueError):
        return None


# ---------------------------------------------------------------------------------------------
# The probe↔check protocol
# ---------------------------------------------------------------------------------------------
_PLACEHOLDER = re.compile(r"\{[^{}]*\}")


@dataclass(frozen=True)
class ObservedKey:
    """One key a check reads: its part and its pattern (``{placeholders}`` match any key segment)."""

    part: str
    pattern: str

    @classmethod
    def parse(cls, text: str, own_part: str) -> "ObservedKey":
        part, sep, key = text.partition(":")
        return cls(part, key) if sep else cls(own_part, text)

    @property
    def shape(self) -> str:
        """The pattern with every placeholder written ``{}`` (how keys are compared)."""
        return _PLACEHOLDER.sub("{}", self.pattern)

    def matcher(self) -> re.Pattern[str]:
        pieces = _PLACEHOLDER.split(self.pattern)
        return re.compile(r"[^.:]+".join(re.escape(p) for p in pieces) + r"\Z")


def produced_keys(source: str, where: str = "probe text") -> dict[str, tuple[str, ...]]:
    """The ``PRODUCES = {...}`` literal of kernel-side probe text, parsed (never executed)."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "PRODUCES" for t in node.targets):
            try:
                value = ast.literal_eval(node.value)
            except ValueError as error:
                raise AssignmentError(f"{where}: PRODUCES must be a literal dict of tuples ({error})") from None
            if not isinstance(value, dict) or not all(isinstance(v, (tuple, list)) for v in value.values()):
                raise AssignmentError(f"{where}: PRODUCES must map part ids to tuples of keys")
            return {str(part): tuple(str(k) for k in keys) for part, keys in value.items()}
    raise AssignmentError(f"{where}: no PRODUCES declaration (part id → observation keys the probes write)")


def protocol_problems(spec: AssignmentSpec) -> list[str]:
    """Every disagreement between what the probes produce and what the checks read (empty: none)."""
    produced = spec.produces()
    problems = [f"PRODUCES names part {p!r}, which the rubric does not have" for p in produced if p not in spec.part_ids]
    probed = set(spec.probed_parts())
    problems += [f"PRODUCES declares keys for {p} but the probe text defines no probe_{p}" for p in produced if p not in probed]
    shapes = {(part, ObservedKey(part, key).shape) for part, keys in produced.items() for key in keys}
    read: set[tuple[str, str]] = set()
    for check in spec.rubric.checks:
        for text in check.observes:
            key = ObservedKey.parse(text, check.part)
            read.add((key.part, key.shape))
            if (key.part, key.shape) not in shapes:
                problems.append(f"check {check.name} ({check.part}) reads {key.part}:{key.pattern!r}, which no probe produces")
    for part, keys in produced.items():
        for key in keys:
            if (part, ObservedKey(part, key).shape) not in read:
                problems.append(f"probe_{part} produces {key!r}, which no check reads")
    return problems
