"""Shared fixtures: the provisioned MNIST, notebook builders, and a grading helper."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import nbformat
import pytest

from graders.config import GradeConfig, Limits

REPO = Path(__file__).resolve().parents[1]
REFERENCE_NOTEBOOKS = REPO / "reference" / "notebooks"


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    from graders.mnist import ensure_mnist

    return ensure_mnist().root


def make_notebook(cells: Iterable[str | tuple[str, str]], assignment: str | None = None) -> nbformat.NotebookNode:
    """A notebook from code strings, or ("markdown", text) pairs."""
    nb = nbformat.v4.new_notebook()
    for cell in cells:
        if isinstance(cell, tuple):
            kind, text = cell
            nb.cells.append(nbformat.v4.new_markdown_cell(text) if kind == "markdown" else nbformat.v4.new_code_cell(text))
        else:
            nb.cells.append(nbformat.v4.new_code_cell(cell))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    if assignment:
        nb.metadata["nbgrade"] = {"assignment": assignment}
    return nb


def write_notebook(nb: nbformat.NotebookNode, path: Path) -> Path:
    nbformat.write(nb, str(path))
    return path


def fast_config(**overrides) -> GradeConfig:
    """Short limits for tests; everything else as in production (sandbox on)."""
    limits = Limits(cell_timeout=overrides.pop("cell_timeout", 60), total_timeout=overrides.pop("total_timeout", 240),
                    probe_timeout=overrides.pop("probe_timeout", 60))
    return GradeConfig(seed=overrides.pop("seed", 12345), limits=limits, write_report=overrides.pop("write_report", False), **overrides)


@pytest.fixture
def grade_notebook(tmp_path):
    """grade_notebook(nb_or_path, **config overrides) -> (GradingResult, out_dir)."""
    from graders.grade import grade_submission

    def run(nb, name: str = "submission.ipynb", **overrides):
        path = nb if isinstance(nb, Path) else write_notebook(nb, tmp_path / name)
        out = tmp_path / (Path(name).stem + ".graded")
        return grade_submission(path, fast_config(**overrides), out_dir=out), out

    return run
