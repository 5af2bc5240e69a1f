"""Code that runs inside the student's kernel, sent as text (never imported there).

The files in this package are read by :mod:`graders.observe` and :mod:`graders.execute` and
executed in the kernel in a private namespace. They only *collect data* about the student's
objects (JSON and ``.npy`` files); every judgement happens in the grader process.
"""

from __future__ import annotations

from importlib import resources


def kernel_source(name: str) -> str:
    """The text of ``graders/kernel/<name>.py``."""
    return resources.files(__name__).joinpath(f"{name}.py").read_text()
