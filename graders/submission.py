"""Reading a submitted file into a notebook we are willing to run.

Only the *source* of the submitted code cells counts: saved outputs and execution counts are
dropped before anything runs, so stale outputs never earn points. Things that cannot work in a
grading kernel (shell escapes, ``%pip``, Colab's ``drive.mount``) are neutralised here, with a
note for the student, rather than left to crash the run.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbformat import NotebookNode

MAX_SUBMISSION_BYTES = 50 * 1024 * 1024
"""A notebook larger than this is not read (real ones with figures are a few MB)."""


class InvalidSubmission(Exception):
    """The file is not a notebook we can grade; the message is for the student."""


@dataclass(frozen=True)
class Submission:
    """A notebook ready to execute, and where it came from."""

    path: Path
    sha256: str
    notebook: NotebookNode
    """The notebook as submitted (nbformat 4), outputs included (the report may show them)."""
    runnable: NotebookNode
    """The same cells with outputs dropped and shell escapes / magics neutralised."""
    notes: tuple[str, ...] = field(default=())
    """Sentences for the student about what was neutralised."""

    @property
    def name(self) -> str:
        return self.path.name


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_submission(path: Path) -> Submission:
    """Read ``path`` as a notebook, or raise :class:`InvalidSubmission` saying why not."""
    notebook = read_notebook(path)
    runnable, notes = make_runnable(notebook)
    return Submission(
        path=path, sha256=file_sha256(path), notebook=notebook, runnable=runnable, notes=tuple(notes)
    )


def read_notebook(path: Path) -> NotebookNode:
    """Parse and validate a notebook file, upgrading nbformat 3; student-readable errors."""
    if not path.is_file():
        raise InvalidSubmission(f"{path.name} is not a file.")
    size = path.stat().st_size
    if size > MAX_SUBMISSION_BYTES:
        raise InvalidSubmission(
            f"{path.name} is {size / 2**20:.0f} MB, more than the {MAX_SUBMISSION_BYTES // 2**20} MB "
            "a notebook may have: clear large outputs (Kernel → Restart & Clear Output) and resubmit."
        )
    raw = path.read_bytes()
    text = _decode(raw, path.name)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        hint = " It looks like a Python script renamed to .ipynb." if _looks_like_python(text) else ""
        raise InvalidSubmission(
            f"{path.name} is not a Jupyter notebook: it is not valid JSON "
            f"(line {error.lineno}, column {error.colno}).{hint} Save it from Jupyter as .ipynb."
        ) from None
    return _to_notebook(data, path.name)


def _decode(raw: bytes, name: str) -> str:
    for encoding in ("utf-8-sig", "utf-16"):
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError:
            continue
        if encoding == "utf-16" and not raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
            continue
        return text
    return raw.decode("latin-1")


def _looks_like_python(text: str) -> bool:
    return bool(re.search(r"^\s*(import |from \S+ import |def |class |print\()", text, re.M))


def _to_notebook(data: object, name: str) -> NotebookNode:
    if not isinstance(data, dict) or ("cells" not in data and "worksheets" not in data):
        raise InvalidSubmission(
            f"{name} is JSON but not a Jupyter notebook (it has no cells). Submit the .ipynb file."
        )
    try:
        notebook = nbformat.reads(json.dumps(data), as_version=4)
    except Exception as error:  # nbformat raises many kinds for malformed input
        raise InvalidSubmission(f"{name} is not a readable notebook: {_one_line(error)}") from None
    language = notebook.metadata.get("kernelspec", {}).get("language") or notebook.metadata.get(
        "language_info", {}
    ).get("name")
    if language and str(language).lower() not in ("python", "python3", "ipython", "ipython3"):
        raise InvalidSubmission(
            f"{name} is a {language} notebook; this assignment is graded in Python. "
            "Submit the Python notebook."
        )
    if not any(cell.get("cell_type") == "code" for cell in notebook.cells):
        raise InvalidSubmission(f"{name} has no code cells: there is nothing to grade.")
    return notebook


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__


_SHELL = re.compile(r"^(\s*)!(.*)$")
_LINE_MAGIC = re.compile(r"^(\s*)%(?!%)(\w+)(.*)$")
_NEUTRALISED_LINE_MAGICS = {"pip", "conda", "cd", "run", "load", "sx", "system", "bash", "sh", "env", "store", "writefile"}
_NEUTRALISED_CELL_MAGICS = {"bash", "sh", "script", "system", "writefile", "html", "javascript", "js", "capture_all"}


def make_runnable(notebook: NotebookNode) -> tuple[NotebookNode, list[str]]:
    """A copy with outputs dropped and what cannot run in a grading kernel neutralised."""
    runnable = nbformat.from_dict(json.loads(json.dumps(notebook)))
    notes: list[str] = []
    for index, cell in enumerate(runnable.cells):
        cell.pop("attachments", None)
        if cell.cell_type != "code":
            continue
        cell.outputs = []
        cell.execution_count = None
        source, cell_notes = neutralise_source(cell.source)
        cell.source = source
        notes.extend(f"Cell {index + 1}: {note}" for note in cell_notes)
    return runnable, notes


def neutralise_source(source: str) -> tuple[str, list[str]]:
    """Replace shell escapes, package installs and Colab mounts with harmless statements."""
    lines = source.splitlines()
    first = lines[0].strip() if lines else ""
    if first.startswith("%%"):
        magic = first[2:].split()[0] if len(first) > 2 else ""
        if magic in _NEUTRALISED_CELL_MAGICS:
            return "pass  # grader: cell magic %%" + magic + " not run", [
                f"the %%{magic} cell was not run (shell and file-writing cells are disabled while grading)."
            ]
        if magic == "timeit":
            lines = lines[1:]
            notes = ["%%timeit was run once instead of timed."]
            return "\n".join(lines), notes
    notes: list[str] = []
    out: list[str] = []
    for line in lines:
        shell = _SHELL.match(line)
        magic = _LINE_MAGIC.match(line)
        if shell:
            out.append(f"{shell.group(1)}pass  # grader: shell command not run")
            notes.append(f"the shell command `!{shell.group(2).strip()[:60]}` was not run (no shell or network while grading).")
        elif magic and magic.group(2) in _NEUTRALISED_LINE_MAGICS:
            out.append(f"{magic.group(1)}pass  # grader: %{magic.group(2)} not run")
            notes.append(f"`%{magic.group(2)}{magic.group(3)[:60]}` was not run while grading.")
        elif magic and magic.group(2) in ("timeit", "time"):
            statement = re.sub(r"^(\s*-[a-z]+(\s+\d+)?)*\s*", "", magic.group(3))
            out.append(f"{magic.group(1)}{statement or 'pass'}")
        else:
            out.append(line)
    return "\n".join(out), notes
