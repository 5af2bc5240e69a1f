"""nbgrade-ml: grade Jupyter-notebook problem sets (PyTorch, torchvision, scikit-learn) against reference solutions.

Library entry points (imported lazily so that ``from graders import check`` stays light inside a
student's kernel):

* :func:`grade_submission` — grade one notebook file, return a :class:`~graders.result.GradingResult`.
* :class:`GradeConfig`, :class:`Limits` — how to grade it (typed, frozen; see :mod:`graders.config`).
* :func:`check` — a student's local public checks on the live kernel.
"""

from __future__ import annotations

from typing import Any

__all__ = ["grade_submission", "GradeConfig", "Limits", "check"]


def __getattr__(name: str) -> Any:
    if name == "grade_submission":
        from graders.grade import grade_submission

        return grade_submission
    if name in ("GradeConfig", "Limits"):
        from graders import config

        return getattr(config, name)
    if name == "check":
        from graders.local import check

        return check
    raise AttributeError(name)
