"""Which file of a submission folder is graded: one rule for Gradescope's run and for a batch.

A submission folder (Gradescope's ``/autograder/submission``, one ``submission_<n>/`` of an
export) may hold several files. The graded one is a notebook in the student's own files: never a
symbolic link or a file under a linked folder (a link could point at the reference notebook the
autograder holds), never a checkpoint or a file in a hidden folder. Among notebooks, the one
that answers the assignment wins, an ``.ipynb`` before a ``# %%`` script before a notebook saved
under another name; :class:`ChosenNotebook` carries a sentence saying which file and why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from graders.submission import MAX_SUBMISSION_BYTES

IGNORED_NAMES = ("__MACOSX", ".ipynb_checkpoints", ".git", "__pycache__")
"""Folders whose files are never a submission (besides any folder or file whose name starts with a dot)."""

_PERCENT_HEAD = re.compile(rb"(?m)^#\s?%%(?:[ \t].*)?\r?$")
"""A ``# %%`` cell marker (VS Code, Jupytext): a .py file with one is graded as a notebook."""

REASONS = ("is a readable notebook", "declares this assignment in its metadata", "uses this assignment's names",
           "is named like the template", "is an .ipynb file rather than a script or a renamed file",
           "is not a copy or checkpoint", "has the most code")
"""What each criterion of :func:`notebook_rank` means, in its order, for the sentence a student reads."""


@dataclass(frozen=True)
class ChosenNotebook:
    """The submitted file that will be graded, and a sentence for the student saying why that one."""

    path: Path | None
    """None when the folder holds no notebook (``message`` then says what it holds)."""
    message: str
    candidates: int = 0
    """How many of the folder's files looked like notebooks."""


def submitted_files(directory: Path) -> list[Path]:
    """The student's regular files: a symlink (say, to the reference notebook the autograder holds) is never one."""
    if directory.is_symlink() or not directory.is_dir():
        return []
    return sorted(p for p in directory.rglob("*") if p.is_file() and not _through_link(directory, p)
                  and not any(part in IGNORED_NAMES or part.startswith(".") for part in p.relative_to(directory).parts))


def _through_link(directory: Path, path: Path) -> bool:
    """Whether ``path`` or a folder between ``directory`` and it is a symbolic link."""
    relative = path.relative_to(directory)
    return any((directory / Path(*relative.parts[: depth + 1])).is_symlink() for depth in range(len(relative.parts)))


def notebook_kind(path: Path) -> int:
    """2 for an .ipynb file, 1 for a ``# %%`` script, 0 for JSON with a notebook's keys, -1 for anything else."""
    if path.suffix.lower() == ".ipynb":
        return 2
    try:
        if path.stat().st_size > MAX_SUBMISSION_BYTES:
            return -1
        with path.open("rb") as handle:
            head = handle.read(65536).lstrip(b"\xef\xbb\xbf \t\r\n")
    except OSError:
        return -1
    if path.suffix.lower() == ".py":
        return 1 if _PERCENT_HEAD.search(head) is not None else -1
    return 0 if head.startswith(b"{") and (b'"cells"' in head or b'"nbformat"' in head) else -1


def looks_like_notebook(path: Path) -> bool:
    """An .ipynb file, a file under another name whose JSON has a notebook's keys, or a ``# %%`` script."""
    return notebook_kind(path) >= 0


def named_like(path: Path, assignment_ids: tuple[str, ...]) -> bool:
    """The file's name carries an assignment's id (``stat101-hw1``, ``STAT101_HW1_final``) or its course."""
    stem = path.stem.lower().replace("_", "-").replace(" ", "-")
    return any(a in stem or a.split("-")[0] in stem for a in assignment_ids)


def notebook_rank(path: Path, wanted: tuple[str, ...]) -> tuple:
    """Higher is a likelier answer: declares one of ``wanted``, uses its names, named like it, an .ipynb, not a copy, has code."""
    from graders.parts import detect_assignment
    from graders.submission import InvalidSubmission, read_notebook

    try:
        notebook = read_notebook(path)
    except (InvalidSubmission, OSError, ValueError):
        return (False, False, False, False, 0, False, 0)
    nbgrade = notebook.metadata.get("nbgrade", {})
    declared = isinstance(nbgrade, dict) and nbgrade.get("assignment") in wanted
    detected = detect_assignment(notebook) in wanted
    code = sum(1 for c in notebook.cells if c.cell_type == "code" and c.source.strip())
    copy = any(word in path.name.lower() for word in ("checkpoint", "copy", "backup"))
    return (True, declared, detected, named_like(path, wanted), notebook_kind(path), not copy, code)


def choose_notebook(directory: Path, assignments: tuple[str, ...]) -> ChosenNotebook:
    """The file of ``directory`` to grade, and why.

    ``assignments``: the ids a notebook may answer (Gradescope's run: its one assignment; a batch,
    which detects each notebook's assignment: every known one).
    """
    files = submitted_files(directory)
    candidates = [p for p in files if looks_like_notebook(p)]
    if not candidates:
        return ChosenNotebook(None, _nothing_found(files))
    ranks = {p: notebook_rank(p, tuple(assignments)) for p in candidates}
    chosen = max(candidates, key=lambda p: (ranks[p], p.stat().st_mtime, str(p)))
    shown = chosen.relative_to(directory).as_posix()
    if len(candidates) > 1:
        names = ", ".join(p.relative_to(directory).as_posix() for p in candidates[:8])
        runner_up = max(ranks[p] for p in candidates if p != chosen)
        message = (f"You submitted {len(candidates)} notebooks ({names}); graded `{shown}`, the one that "
                   f"{_why(ranks[chosen], runner_up)}. Submit a single notebook to choose yourself.")
    elif chosen.suffix.lower() == ".py":
        message = f"Graded `{shown}`, a Python script in the percent format (`# %%` cells), as a notebook."
    elif chosen.suffix.lower() != ".ipynb":
        message = f"Graded `{shown}`: it is a Jupyter notebook although its name does not end in .ipynb."
    else:
        message = f"Graded `{shown}`."
    return ChosenNotebook(chosen, message, len(candidates))


def _nothing_found(files: list[Path]) -> str:
    listing = ", ".join(p.name for p in files[:10]) + (" …" if len(files) > 10 else "") or "no files at all"
    scripts = " (a .py file is graded only when its cells start with `# %%` lines)" if any(
        p.suffix.lower() == ".py" for p in files) else ""
    return (f"No Jupyter notebook was found in your submission ({listing}){scripts}. "
            "Upload your .ipynb file (in Jupyter or Colab: File → Download → .ipynb).")


def _why(best: tuple, runner_up: tuple) -> str:
    """The first criterion of :func:`notebook_rank` on which the chosen notebook beats the next best."""
    for reason, mine, theirs in zip(REASONS, best, runner_up):
        if mine != theirs:
            return reason
    return "was saved last"
