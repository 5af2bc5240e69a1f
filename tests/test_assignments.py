"""Assignments plug in: the registry, the probe↔check protocol, and an engine that names no assignment.

Fast: no kernel starts. The planted typos show that a check reading a key no probe writes, or a
probe writing a key no check reads, is refused when the assignment loads, not at grading time.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from graders.assignment import AssignmentError, AssignmentSpec, protocol_problems
from graders.checks import Rubric
from graders.registry import ENTRY_POINT_GROUP, UnknownAssignment, all_assignments, assignment_ids, get_assignment

REPO = Path(__file__).resolve().parents[1]
ENGINE = REPO / "graders"
PACKAGES = ENGINE / "assignments"


def test_the_built_in_assignments_are_registered_as_entry_points_and_validate():
    assert {"csci145-ps6", "ece685d-hw2"} <= set(assignment_ids())
    for spec in all_assignments():
        spec.validate()
        assert spec.template is not None and spec.template.is_file(), spec.id
        assert protocol_problems(spec) == []


def test_an_unknown_assignment_is_one_line_naming_the_known_ones():
    with pytest.raises(UnknownAssignment) as raised:
        get_assignment("nope-101")
    assert str(raised.value).startswith("unknown assignment 'nope-101'; known: ")
    assert all(a in str(raised.value) for a in assignment_ids())


def test_pyproject_registers_every_built_in_package_under_the_entry_point_group():
    text = (REPO / "pyproject.toml").read_text()
    assert f'[project.entry-points."{ENTRY_POINT_GROUP}"]' in text
    for package in sorted(p.name for p in PACKAGES.iterdir() if (p / "__init__.py").is_file()):
        assert f'"graders.assignments.{package}:ASSIGNMENT"' in text, package


# ------------------------------------------------------------------------------------------------
# The probe↔check protocol
# ------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _PlantedProbes(AssignmentSpec):
    """A declaration whose probe text is given inline (the real ones are package resources)."""

    probe_text: str = ""

    def probe_source(self) -> str:
        return self.probe_text


def _with(spec: AssignmentSpec, *, observes: dict[str, tuple[str, ...]] | None = None, probe_text: str | None = None):
    rubric = Rubric(spec.rubric.assignment, spec.rubric.title, spec.rubric.parts)
    rubric.checks = [dataclasses.replace(c, observes=(observes or {}).get(c.name, c.observes)) for c in spec.rubric.checks]
    fields = {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)}
    fields.update(rubric=rubric, probe_text=probe_text if probe_text is not None else spec.probe_source())
    return _PlantedProbes(**fields)


def test_a_check_reading_a_key_no_probe_produces_fails_validation():
    spec = get_assignment("csci145-ps6")
    check = next(c for c in spec.rubric.checks if c.name == "kernel_matches_reference")
    planted = _with(spec, observes={check.name: ("K_{cas}e",)})  # a typo: today's "produced no array"
    with pytest.raises(AssignmentError, match=r"kernel_matches_reference \(1C\) reads 1C:'K_\{cas\}e', which no probe produces"):
        planted.validate()


def test_a_check_reading_another_parts_key_must_name_one_that_part_produces():
    spec = get_assignment("csci145-ps6")
    planted = _with(spec, observes={"K_test_has_shape_100_by_n": ("K_test", "1A:train_set.length")})
    problems = protocol_problems(planted)
    assert problems == ["check K_test_has_shape_100_by_n (1C) reads 1A:'train_set.length', which no probe produces"]


def test_a_produced_key_no_check_reads_fails_validation():
    spec = get_assignment("ece685d-hw2")
    text = spec.probe_source().replace('"pickle_error"),', '"pickle_error", "pickel_error"),', 1)
    assert text != spec.probe_source()
    with pytest.raises(AssignmentError, match="probe_P2 produces 'pickel_error', which no check reads"):
        _with(spec, probe_text=text).validate()


def test_probe_text_without_a_literal_produces_is_refused():
    spec = get_assignment("ece685d-hw2")
    text = re.sub(r"(?m)^PRODUCES = ", "PRODUCES = dict(", spec.probe_source(), count=1)
    with pytest.raises(AssignmentError, match="PRODUCES"):
        _with(spec, probe_text=text.replace("\n}\n", "\n})\n", 1)).validate()
    with pytest.raises(AssignmentError, match="no PRODUCES declaration"):
        _with(spec, probe_text="def probe_P1(P):\n    pass\n").validate()


def test_parts_read_together_are_derived_from_the_declarations():
    spec = get_assignment("csci145-ps6")
    assert spec.observed_with("1C") == ("1A",)
    assert spec.observed_with("2B") == ()


# ------------------------------------------------------------------------------------------------
# The engine names no assignment
# ------------------------------------------------------------------------------------------------
def _declared_names() -> dict[str, str]:
    """Every assignment id, package name, part id and contract name the registered assignments declare."""
    names: dict[str, str] = {}
    for spec in all_assignments():
        names.update({spec.id: f"{spec.id}'s id", spec.package.rsplit(".", 1)[-1]: f"{spec.id}'s package"})
        names.update({pid: f"a part of {spec.id}" for pid in spec.part_ids})
        names.update({name: f"a contract name of {spec.id}" for name in spec.contract_names})
    return names


def _engine_files() -> list[Path]:
    return sorted(p for p in ENGINE.rglob("*") if p.is_file() and PACKAGES not in p.parents
                  and "__pycache__" not in p.parts and p.suffix in (".py", ".j2", ".js", ".css", ".html", ".json", ".md"))


def test_the_generic_modules_name_no_assignment_part_or_contract_name():
    names = _declared_names()
    pattern = re.compile(r"(?<![\w-])(" + "|".join(sorted(map(re.escape, names), key=len, reverse=True)) + r")(?![\w-])")
    files = _engine_files()
    assert len(files) > 30 and ENGINE / "report.py" in files and ENGINE / "kernel" / "runtime.py" in files
    hits = [f"{path.relative_to(REPO)}:{number}: {match.group(1)} ({names[match.group(1)]})"
            for path in files for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
            for match in pattern.finditer(line)]
    assert hits == [], "the engine spells what only an assignment package may:\n" + "\n".join(hits)


def test_the_scan_finds_a_planted_name(tmp_path):
    names = _declared_names()
    assert {"csci145-ps6", "1D", "P2", "gaussian_kernel", "MNISTTwoView", "csci145_ps6"} <= set(names)
    pattern = re.compile(r"(?<![\w-])(" + "|".join(sorted(map(re.escape, names), key=len, reverse=True)) + r")(?![\w-])")
    planted = 'table = scaling_table(ref) if part.id == "1D" else None  # csci145-ps6 only'
    assert [m.group(1) for m in pattern.finditer(planted)] == ["1D", "csci145-ps6"]
    assert not pattern.search("0x1D, P20, 1Dx, my_gaussian_kernel_2")


# ------------------------------------------------------------------------------------------------
# While grading: a read the declaration does not cover is told to the instructor
# ------------------------------------------------------------------------------------------------
def _judge(observes: tuple[str, ...], reads: tuple[str, ...]):
    import nbformat

    from graders.checks import CheckSpec
    from graders.execute import ExecutedNotebook
    from graders.judge import JudgeContext, run_check
    from graders.observe import Observations, PartObservation

    def body(ctx) -> None:
        for key in reads:
            part, _, name = key.rpartition(":")
            (ctx.obs_of(part) if part else ctx.obs).get(name)

    spec = CheckSpec("reads_what_it_declares", "Q2", 1.0, body, "a claim", observes=observes)
    observations = Observations(parts={p: PartObservation(p, {"n": 3, "grad_0": 1, "grad_1": 2}) for p in ("Q1", "Q2")})
    ctx = JudgeContext("Q2", observations, {}, ExecutedNotebook(nbformat.v4.new_notebook(), [], 0.0), {}, None, {})
    return run_check(spec, ctx)


def test_declared_reads_leave_no_note_and_placeholders_cover_every_case():
    result = _judge(("grad_{case}", "Q1:n"), ("grad_0", "grad_1", "Q1:n"))
    assert result.passed and result.detail is None


def test_an_undeclared_read_is_an_instructor_note_and_scores_as_before():
    result = _judge(("grad_{case}",), ("grad_0", "n", "Q1:grad_0"))
    assert result.passed and result.score == 1.0, "the student keeps the points: the bug is the author's"
    assert result.detail == ("authoring bug: reads_what_it_declares read Q2:n, Q1:grad_0 without declaring it in "
                             "`observes` (docs/authoring.md)")
