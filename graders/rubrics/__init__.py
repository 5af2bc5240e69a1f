"""The assignments the harness grades, each a rubric plus what its probes need."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from graders.checks import Rubric


class UnknownAssignment(KeyError):
    """An assignment id the harness does not know (a usage error)."""


@dataclass(frozen=True)
class Assignment:
    """One gradable assignment."""

    id: str
    rubric: Rubric
    probes: str
    """Name of the kernel-side probe source in ``graders/kernel``."""
    reference_module: str
    """Import path of the reference solution (imported only when judging)."""
    hidden_inputs: Callable[[int, Path], dict[str, dict[str, Any]]]
    """Seed, MNIST root → part id → name → hidden input."""
    module: ModuleType


_MODULES = {"csci145-ps6": "graders.rubrics.csci145_ps6", "ece685d-hw2": "graders.rubrics.ece685d_hw2"}
ASSIGNMENT_IDS = tuple(_MODULES)


def get_assignment(assignment_id: str) -> Assignment:
    if assignment_id not in _MODULES:
        raise UnknownAssignment(f"unknown assignment {assignment_id!r}; known: {', '.join(_MODULES)}")
    module = importlib.import_module(_MODULES[assignment_id])
    return Assignment(
        id=assignment_id,
        rubric=module.RUBRIC,
        probes="probes_" + assignment_id.replace("-", "_"),
        reference_module="reference." + assignment_id.replace("-", "_"),
        hidden_inputs=module.hidden_inputs,
        module=module,
    )


def sent_to_kernel(hidden: dict[str, dict[str, Any]], part_ids: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """The probes' inputs: every part's hidden values except those marked ``_grader_only``."""
    return {
        part: {k: v for k, v in hidden.get(part, {}).items() if not k.endswith("_grader_only")}
        for part in part_ids
    }
