"""The installed assignments, found through the ``nbgrade.assignments`` entry-point group.

Each entry point names an :class:`~graders.assignment.AssignmentSpec` (``package.module:ASSIGNMENT``),
the way pytest finds plugins through ``pytest11``: this project registers its built-in assignments
in its own ``pyproject.toml``, and a course can install a package of its own. A declaration is
validated when it is first loaded (rubric, parts, the probe↔check protocol), before any student
code runs.
"""

from __future__ import annotations

import functools
from importlib import metadata
from typing import Any

from graders.assignment import AssignmentError, AssignmentSpec

ENTRY_POINT_GROUP = "nbgrade.assignments"


class UnknownAssignment(KeyError):
    """An assignment id no installed package declares (a usage error)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown assignment"


@functools.lru_cache(maxsize=1)
def _entry_points() -> dict[str, metadata.EntryPoint]:
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def entry_point(assignment_id: str) -> metadata.EntryPoint:
    """The entry point that registers ``assignment_id`` (its ``value`` and the distribution declaring it)."""
    entry = _entry_points().get(assignment_id)
    if entry is None:
        get_assignment(assignment_id)  # raises UnknownAssignment naming the known ones
        raise UnknownAssignment(f"unknown assignment {assignment_id!r}")
    return entry


def assignment_ids() -> tuple[str, ...]:
    """The ids of every installed assignment, sorted."""
    return tuple(sorted(_entry_points()))


@functools.lru_cache(maxsize=None)
def get_assignment(assignment_id: str) -> AssignmentSpec:
    """The validated declaration of ``assignment_id``, or :class:`UnknownAssignment` naming the known ones."""
    entry = _entry_points().get(assignment_id)
    if entry is None:
        known = ", ".join(assignment_ids()) or f"none (no package registers the {ENTRY_POINT_GROUP!r} entry points)"
        raise UnknownAssignment(f"unknown assignment {assignment_id!r}; known: {known}")
    spec = entry.load()
    if not isinstance(spec, AssignmentSpec):
        raise AssignmentError(f"entry point {assignment_id} = {entry.value} is a {type(spec).__name__}, not an AssignmentSpec")
    if spec.id != assignment_id:
        raise AssignmentError(f"entry point {assignment_id} = {entry.value} declares the id {spec.id!r}")
    spec.validate()
    return spec


def all_assignments() -> tuple[AssignmentSpec, ...]:
    return tuple(get_assignment(a) for a in assignment_ids())


def part_owners() -> dict[str, str]:
    """Part id → the assignment it belongs to (part ids must be unique across installed assignments)."""
    owners: dict[str, str] = {}
    for spec in all_assignments():
        for pid in spec.part_ids:
            if pid in owners:
                raise AssignmentError(f"part id {pid} is declared by both {owners[pid]} and {spec.id}")
            owners[pid] = spec.id
    return owners


GRADER_ONLY = "_grader_only"
"""Suffix of a hidden input that stays in the grader (labels of held-back data)."""


def sent_to_kernel(hidden: dict[str, dict[str, Any]], part_ids: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """The probes' inputs: every part's hidden values except those marked ``_grader_only``."""
    return {
        part: {k: v for k, v in hidden.get(part, {}).items() if not k.endswith(GRADER_ONLY)}
        for part in part_ids
    }


def secret_parts(hidden: dict[str, dict[str, Any]], part_ids: tuple[str, ...]) -> tuple[str, ...]:
    """Parts whose inputs include data the sandbox must never see: those with a ``_grader_only`` value."""
    return tuple(part for part in part_ids if any(key.endswith(GRADER_ONLY) for key in hidden.get(part, {})))
