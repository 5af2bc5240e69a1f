"""Shared fixtures: the provisioned MNIST, notebook builders, and a grading helper."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import nbformat
import pytest

from graders.config import GradeConfig, Limits

REPO = Path(__file__).resolve().parents[1]
REFERENCE_NOTEBOOKS = REPO / "reference" / "notebooks"

# ---------------------------------------------------------------------------------------------
# Which tests are slow (`make test-fast` runs `pytest -m "not slow"` in under a minute)
# ---------------------------------------------------------------------------------------------
# A test is slow when it starts a Jupyter kernel, a browser, a Dask cluster, a subprocess that
# grades or imports the harness, or trains a reference model. Tests mark themselves with
# ``pytest.mark.slow`` (or ``browser``/``cluster``, which count as slow too); the tables below mark
# the rest in one place, by the fixture that makes them slow or by name. Every check's logic is
# also unit-tested on made-up observations (tests/test_checks_*.py), which stays in the fast suite.
SLOW_FIXTURES = frozenset({
    "grade_notebook",  # grades a notebook end to end: a sandboxed kernel
    "solution",  # test_reference_csci145: trains the reference models on MNIST
    "two_view",  # test_reference_ece685d: torchvision's MNIST with augmentations and DataLoader workers
    "graded_reference", "graded_failing",  # test_report: the reports of notebooks graded end to end
})
SLOW_MODULES = frozenset({
    "test_attacks", "test_batch", "test_cluster", "test_hostile", "test_pdf", "test_realworld", "test_report_browser",
    "test_rubric_csci145", "test_sandbox_host", "test_student",
})
"""Modules whose every test grades notebooks, runs the sandbox, a browser or a cluster."""
SLOW_TESTS = frozenset({
    "test_autograder::test_broken_notebook_scores_zero_with_a_clear_message",
    "test_autograder::test_no_notebook_scores_zero_and_lists_what_was_submitted",
    "test_autograder::test_the_hard_time_limit_still_writes_valid_results",
    "test_cli::test_a_notebook_graded_as_the_wrong_assignment_says_so_everywhere",
    "test_engine::test_a_kernel_that_dies_is_reported_with_the_reason_and_restarted",
    "test_engine::test_the_launcher_confines_a_process",
    "test_engine::test_grade_runs_past_a_crash_a_hang_and_a_kernel_death",
    "test_import_graph::test_each_module_imports_in_a_fresh_interpreter",
    "test_reference_csci145::test_measure_training_step_reports_a_row",
    "test_reference_ece685d::test_measure_view_resemblance_is_seeded_and_leaves_rng_alone",
    "test_report::test_failing_report_names_each_mistake_and_the_crashed_cell",
    "test_results_safety::test_hostile_text_in_cells_outputs_exceptions_headings_and_names_still_gives_valid_files",
    "test_results_safety::test_an_nbformat_3_notebook_is_converted_and_graded",
    "test_results_safety::test_a_percent_format_script_is_graded_as_a_notebook",
    "test_student_checks::test_item1_every_bce_mistake_is_named_by_check_P3",
    "test_student_checks::test_item1_every_residual_mistake_is_named_by_check_P1",
    "test_student_checks::test_item12_a_written_part_worth_no_points_is_never_not_scored_yet",
})
"""Single tests (module::function) that start a kernel or a grading subprocess, or run the probes in-process at length."""


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark slow tests before ``-m "not slow"`` deselects (browser and cluster tests are slow too)."""
    for item in items:
        module = item.path.stem
        if (module in SLOW_MODULES or f"{module}::{getattr(item, 'originalname', item.name)}" in SLOW_TESTS
                or SLOW_FIXTURES & set(getattr(item, "fixturenames", ()))
                or item.get_closest_marker("browser") or item.get_closest_marker("cluster")):
            item.add_marker(pytest.mark.slow)


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
