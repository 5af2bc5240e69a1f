"""Which file of a submission folder is graded (graders/choose.py), on made-up folders.

The same rule serves Gradescope's run and a batch of a Gradescope export: these tests also
check that the batch collector picks what the autograder would.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from graders.choose import choose_notebook, notebook_kind, submitted_files
from graders.collect import gradescope_item
from tests.conftest import make_notebook, write_notebook

PS6 = ("csci145-ps6",)
PERCENT = "# %%\nimport numpy as np\n\n# %%\nx = 1\n"


def declared(path: Path, *cells: str) -> Path:
    return write_notebook(make_notebook(list(cells) or ["x = 1"], "csci145-ps6"), path)


def test_a_single_ipynb_is_graded_and_named(tmp_path: Path) -> None:
    declared(tmp_path / "hw6.ipynb")
    choice = choose_notebook(tmp_path, PS6)
    assert choice.path == tmp_path / "hw6.ipynb" and choice.message == "Graded `hw6.ipynb`."


def test_an_ipynb_is_preferred_to_a_percent_script_and_a_renamed_notebook(tmp_path: Path) -> None:
    (tmp_path / "hw6.py").write_text(PERCENT)
    write_notebook(make_notebook(["x = 1"]), tmp_path / "hw6.json")
    write_notebook(make_notebook(["x = 1"]), tmp_path / "hw6.ipynb")
    choice = choose_notebook(tmp_path, PS6)
    assert choice.path == tmp_path / "hw6.ipynb" and choice.candidates == 3
    assert "You submitted 3 notebooks" in choice.message and "is an .ipynb file" in choice.message


def test_a_percent_script_beats_a_renamed_notebook_and_a_plain_script_is_no_notebook(tmp_path: Path) -> None:
    (tmp_path / "plain.py").write_text("print(1)\n")
    write_notebook(make_notebook(["x = 1"]), tmp_path / "hw6.txt")
    (tmp_path / "hw6.py").write_text(PERCENT)
    assert [notebook_kind(tmp_path / n) for n in ("plain.py", "hw6.txt", "hw6.py")] == [-1, 0, 1]
    assert choose_notebook(tmp_path, PS6).path == tmp_path / "hw6.py"


def test_the_notebook_that_declares_the_assignment_wins_over_a_better_named_one(tmp_path: Path) -> None:
    write_notebook(make_notebook(["x = 1"]), tmp_path / "csci145-ps6.ipynb")
    declared(tmp_path / "mine.txt")
    choice = choose_notebook(tmp_path, PS6)
    assert choice.path == tmp_path / "mine.txt" and "declares this assignment" in choice.message


def test_no_notebook_says_what_the_folder_holds(tmp_path: Path) -> None:
    (tmp_path / "hw6.py").write_text("print(1)\n")
    (tmp_path / "notes.pdf").write_bytes(b"%PDF-1.4")
    choice = choose_notebook(tmp_path, PS6)
    assert choice.path is None and choice.candidates == 0
    assert "hw6.py, notes.pdf" in choice.message and "`# %%`" in choice.message


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symbolic links")
def test_links_checkpoints_and_hidden_folders_are_never_graded(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    reference = declared(outside / "reference.ipynb", "K_train = 1", "def sigmoid_derivative(z):\n    return z")
    submission = tmp_path / "submission"
    submission.mkdir()
    (submission / "reference.ipynb").symlink_to(reference)
    (submission / "linked").symlink_to(outside, target_is_directory=True)
    for hidden in (".ipynb_checkpoints", ".hidden", "__MACOSX"):
        (submission / hidden).mkdir()
        declared(submission / hidden / "hw6.ipynb")
    write_notebook(make_notebook(["x = 1"]), submission / "scratch.ipynb")
    assert submitted_files(submission) == [submission / "scratch.ipynb"]
    assert choose_notebook(submission, PS6).path == submission / "scratch.ipynb"
    linked_folder = tmp_path / "linked-submission"
    linked_folder.symlink_to(outside, target_is_directory=True)
    assert choose_notebook(linked_folder, PS6).path is None


def test_a_batch_of_an_export_grades_the_file_the_autograder_would(tmp_path: Path) -> None:
    export = tmp_path / "export"
    folder = export / "submission_1"
    folder.mkdir(parents=True)
    write_notebook(make_notebook(["x = 1"]), folder / "scratch.ipynb")
    declared(folder / "answers.txt", "def sigmoid_derivative(z):\n    return z")
    item = gradescope_item(export, "submission_1", {})
    assert item.path == choose_notebook(folder, PS6).path == folder / "answers.txt"
    assert item.id == "submission_1" and "declares this assignment" in item.choice
    (folder / "answers.txt").unlink()
    (folder / "scratch.ipynb").unlink()
    empty = gradescope_item(export, "submission_1", {})
    assert empty.path is None and "No Jupyter notebook was found" in (empty.problem or "")
