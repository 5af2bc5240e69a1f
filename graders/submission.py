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

from graders.safetext import clean_data, needs_cleaning

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
    notebook, read_notes = read_notebook_with_notes(path)
    runnable, notes = make_runnable(notebook)
    return Submission(
        path=path, sha256=file_sha256(path), notebook=notebook, runnable=runnable, notes=tuple([*read_notes, *notes])
    )


def read_notebook(path: Path) -> NotebookNode:
    """Parse and validate a notebook file, upgrading nbformat 3; student-readable errors."""
    return read_notebook_with_notes(path)[0]


def read_notebook_with_notes(path: Path) -> tuple[NotebookNode, list[str]]:
    """The notebook in ``path`` and sentences about how it was read (encoding, metadata that lied)."""
    if not path.is_file():
        raise InvalidSubmission(f"{path.name} is not a file.")
    size = path.stat().st_size
    if size > MAX_SUBMISSION_BYTES:
        raise InvalidSubmission(
            f"{path.name} is {size / 2**20:.0f} MB, more than the {MAX_SUBMISSION_BYTES // 2**20} MB "
            "a notebook may have: clear large outputs (Kernel → Restart & Clear Output) and resubmit."
        )
    if size == 0:
        raise InvalidSubmission(f"{path.name} is empty (0 bytes). Save the notebook in Jupyter and resubmit the .ipynb file.")
    raw = path.read_bytes()
    text, encoding = decode(raw)
    if encoding == UTF8_REPLACED:
        bad = text.count(REPLACEMENT) - raw.count(REPLACEMENT.encode())
        notes = [f"The file has {bad} byte{'s' if bad != 1 else ''} that {'are' if bad != 1 else 'is'} not valid UTF-8 "
                 "(Jupyter saves notebooks as UTF-8); each was replaced with \N{REPLACEMENT CHARACTER}."]
    elif encoding in ("utf-8", "utf-8-sig"):
        notes = []
    else:
        notes = [f"The file is not UTF-8; it was read as {encoding} (Jupyter saves notebooks as UTF-8)."]
    del raw
    name = path.name
    is_script = path.suffix.lower() == ".py"
    if is_script and not text.lstrip("\ufeff \t\r\n").startswith("{"):
        notebook, more = percent_notebook(text, name)
        return notebook, [*notes, *more]
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        if is_percent_script(text):
            notebook, more = percent_notebook(text, name)
            return notebook, [*notes, *more]
        hint = " It looks like a Python script renamed to .ipynb." if _looks_like_python(text) and not is_script else ""
        raise InvalidSubmission(
            f"{name} is not a Jupyter notebook: it is not valid JSON "
            f"(line {error.lineno}, column {error.colno}).{hint} Save it from Jupyter as .ipynb."
        ) from None
    except RecursionError:
        raise InvalidSubmission(f"{name} is not a readable notebook: its JSON is nested too deeply. "
                                "Save it from Jupyter as .ipynb.") from None
    del text
    notebook, more = _to_notebook(data, name)
    return notebook, [*notes, *more]


REPLACEMENT = "\ufffd"
UTF8_REPLACED = "utf-8 (invalid bytes replaced)"


_BOMS = ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe\x00\x00", "utf-32"), (b"\x00\x00\xfe\xff", "utf-32"),
         (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"))


def decode(raw: bytes) -> tuple[str, str]:
    """The text of a file and the encoding it was read with: a BOM decides, else UTF-8, then Windows-1252, then Latin-1."""
    for bom, encoding in _BOMS:
        if raw.startswith(bom):
            try:
                return raw.decode(encoding), encoding
            except UnicodeDecodeError:
                break
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    # UTF-8 with a few bad bytes (a hostile or damaged file) keeps its real text readable; a
    # Windows-1252 file (no valid multi-byte sequence at all) is read as such.
    text = raw.decode("utf-8", errors="replace")
    replaced = text.count(REPLACEMENT) - raw.count(REPLACEMENT.encode())
    valid = sum(1 for char in text if char > "\x7f" and char != REPLACEMENT)
    if valid and valid >= replaced:
        return text, UTF8_REPLACED
    try:
        return raw.decode("cp1252"), "cp1252"
    except UnicodeDecodeError:
        return raw.decode("latin-1"), "latin-1"


def _looks_like_python(text: str) -> bool:
    """Python's own statements (``print(`` alone is not enough: R and Julia have it too)."""
    return bool(re.search(r"^\s*(import [\w.]+|from [\w.]+ import |def \w+\s*\(|class \w+\s*[(:])", text, re.M))


PYTHON_LANGUAGES = ("python", "python3", "ipython", "ipython3", "py")


def _to_notebook(data: object, name: str) -> tuple[NotebookNode, list[str]]:
    if not isinstance(data, dict) or ("cells" not in data and "worksheets" not in data):
        raise InvalidSubmission(
            f"{name} is JSON but not a Jupyter notebook (it has no cells). Submit the .ipynb file."
        )
    notes = []
    if needs_cleaning(data, lenient=True):
        notes.append("Some text in the notebook held characters that cannot be saved or shown (NUL, control characters, "
                     "unpaired surrogates) or was nested too deeply; they were replaced with \N{REPLACEMENT CHARACTER}.")
    data = clean_data(data, lenient=True)  # every string from here on can be written as UTF-8, shown, and sent to a kernel
    if "cells" in data and not isinstance(data.get("nbformat"), int):
        data = {**data, "nbformat": 4, "nbformat_minor": data.get("nbformat_minor", 4)}
    elif "cells" not in data and not isinstance(data.get("nbformat"), int):
        data = {**data, "nbformat": 3, "nbformat_minor": 0}
    version = data.get("nbformat")
    try:
        notebook = nbformat.from_dict(data)
        if version == 3:
            from nbformat.v3.rwbase import rejoin_lines

            notebook = rejoin_lines(notebook)  # v3 keeps sources and outputs as lists of lines
        notebook = nbformat.convert(notebook, 4)
    except Exception as error:  # nbformat raises many kinds for malformed input
        raise InvalidSubmission(f"{name} is not a readable notebook: {_one_line(error)}") from None
    if isinstance(version, int) and version < 4:
        notes.append(f"The notebook is in the old nbformat {version} format (IPython Notebook before Jupyter 4); "
                     "it was converted to nbformat 4 and graded.")
    notebook = normalise_cells(notebook)
    if not any(cell.cell_type == "code" and cell.source.strip() for cell in notebook.cells):
        raise InvalidSubmission(f"{name} has no code: there is nothing to grade.")
    return notebook, [*notes, *_language_notes(notebook, name)]


# ---------------------------------------------------------------------------------------------
# Python scripts in the percent format (VS Code, Spyder, Jupytext)
# ---------------------------------------------------------------------------------------------
_PERCENT_MARKER = re.compile(r"^#\s?%%(?:[ \t](.*))?$")
"""``# %%``, ``#%%``, ``# %% title [markdown] key="value"``; not ``# %%time`` (an escaped cell magic)."""
_CELL_KIND = re.compile(r"\[(markdown|md|raw)\]")


def is_percent_script(text: str) -> bool:
    """Python text whose cells are marked with ``# %%`` lines."""
    return any(_PERCENT_MARKER.match(line.rstrip()) for line in text.splitlines())


def percent_notebook(text: str, name: str) -> tuple[NotebookNode, list[str]]:
    """A script in the percent format as a notebook (the notes say so); any other script is refused, once."""
    cells = parse_percent(text)
    if cells is None:
        raise InvalidSubmission(
            f"{name} is a Python script, not a Jupyter notebook; only scripts whose cells start with `# %%` lines "
            "(as VS Code and Jupytext write them) are graded as notebooks. Submit your .ipynb file "
            "(File → Download → .ipynb)."
        )
    nb = nbformat.v4.new_notebook(metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
    })
    assignment = _header_assignment(text)
    if assignment:
        nb.metadata["nbgrade"] = {"assignment": assignment}
    for kind, source in cells:
        maker = {"code": nbformat.v4.new_code_cell, "markdown": nbformat.v4.new_markdown_cell, "raw": nbformat.v4.new_raw_cell}[kind]
        nb.cells.append(maker(source))
    notebook, notes = _to_notebook(nb, name)
    return notebook, [f"{name} is a Python script in the percent format (`# %%` cells); its {len(cells)} cells were "
                      "graded as a notebook.", *notes]


def parse_percent(text: str) -> list[tuple[str, str]] | None:
    """(cell type, source) for each ``# %%`` cell of ``text``; None when it has no cell marker.

    Text before the first marker is a code cell unless it is only comments (a Jupytext YAML header,
    a module comment). Markdown cells are comment lines (``# ## Q2``) or one triple-quoted string.
    """
    lines = text.lstrip("\ufeff").splitlines()
    starts = [i for i, line in enumerate(lines) if _PERCENT_MARKER.match(line.rstrip())]
    if not starts:
        return None
    cells: list[tuple[str, str]] = []
    head = _strip_blank(lines[: starts[0]])
    if any(line.strip() and not line.lstrip().startswith("#") for line in head):
        cells.append(("code", "\n".join(head)))
    for number, start in enumerate(starts):
        end = starts[number + 1] if number + 1 < len(starts) else len(lines)
        options = _PERCENT_MARKER.match(lines[start].rstrip()).group(1) or ""
        kind = _CELL_KIND.search(options)
        kind = {"md": "markdown"}.get(kind.group(1), kind.group(1)) if kind else "code"
        body = _strip_blank(lines[start + 1 : end])
        if kind != "code":
            source = _markdown_source(body)
        else:
            source = "\n".join(body)
        if source.strip():
            cells.append((kind, source))
    return cells


def _header_assignment(text: str) -> str | None:
    """``nbgrade.assignment`` from a Jupytext YAML header (``# ---`` … ``# ---``), when the template's metadata was kept."""
    lines = text.lstrip("\ufeff").splitlines()[:200]
    if not lines or lines[0].rstrip() != "# ---":
        return None
    try:
        end = next(i for i, line in enumerate(lines[1:], 1) if line.rstrip() == "# ---")
    except StopIteration:
        return None
    header = "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#") for line in lines[1:end])
    if len(header) > 20_000:
        return None
    try:
        import yaml

        data = yaml.safe_load(header)
        assignment = data["jupyter"]["nbgrade"]["assignment"]  # only this one value is read: no walk of hostile YAML
    except Exception:  # noqa: BLE001 - no header, not YAML, no such key: detected from the names instead
        return None
    return assignment if isinstance(assignment, str) and len(assignment) < 100 else None


def _strip_blank(lines: list[str]) -> list[str]:
    start, end = 0, len(lines)
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return lines[start:end]


def _markdown_source(body: list[str]) -> str:
    joined = "\n".join(body).strip()
    for quote in ('"""', "'''"):
        if len(joined) >= 6 and joined.startswith(quote) and joined.endswith(quote):
            return joined[3:-3].strip("\n")
    out = []
    for line in body:
        stripped = line.lstrip()
        if stripped.startswith("# "):
            out.append(stripped[2:])
        elif stripped.startswith("#"):
            out.append(stripped[1:])
        else:
            out.append(line)
    return "\n".join(out)


def normalise_cells(notebook: NotebookNode) -> NotebookNode:
    """Repair what hand-edited or exported notebooks get wrong: missing keys, sources as lists or null."""
    notebook.setdefault("metadata", {})
    cells = notebook.get("cells")
    if not isinstance(cells, list):
        cells = []
    repaired = []
    for cell in cells:
        if not isinstance(cell, dict):
            continue
        kind = cell.get("cell_type") if cell.get("cell_type") in ("code", "markdown", "raw") else "raw"
        source = cell.get("source", "")
        if isinstance(source, list):
            source = "".join(str(part) for part in source)
        fixed = {**cell, "cell_type": kind, "source": source if isinstance(source, str) else "",
                 "metadata": cell.get("metadata") if isinstance(cell.get("metadata"), dict) else {}}
        if kind == "code":
            fixed["outputs"] = cell.get("outputs") if isinstance(cell.get("outputs"), list) else []
            fixed["execution_count"] = cell.get("execution_count") if isinstance(cell.get("execution_count"), int) else None
        repaired.append(fixed)
    notebook["cells"] = repaired
    return nbformat.from_dict(notebook)


def _language_notes(notebook: NotebookNode, name: str) -> list[str]:
    """A notebook whose metadata names another language is graded if its code is Python, else refused."""
    metadata = notebook.metadata
    language = (metadata.get("kernelspec") or {}).get("language") or (metadata.get("language_info") or {}).get("name")
    if not language or str(language).lower() in PYTHON_LANGUAGES:
        return []
    code = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")
    if _looks_like_python(code):
        return [f"The notebook's metadata names the {language} language, but its code is Python; it was run with Python."]
    raise InvalidSubmission(
        f"{name} is a notebook for the {language} language; this assignment is graded in Python. Submit the Python notebook."
    )


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__


_SHELL = re.compile(r"^(\s*)!(.*)$")
_LINE_MAGIC = re.compile(r"^(\s*)%(?!%)([A-Za-z_]\w*)(.*)$")
_NEUTRALISED_LINE_MAGICS = {
    "pip", "conda", "mamba", "cd", "run", "load", "sx", "system", "bash", "sh", "env", "store", "tensorboard",
    "notebook", "qtconsole", "connect_info", "killbgscripts", "bookmark", "pushd", "popd",
}
_NEUTRALISED_CELL_MAGICS = {"bash", "sh", "script", "system", "html", "javascript", "js", "perl", "ruby", "svg", "latex"}
_GUARDED_LINE_MAGICS = {"load_ext", "reload_ext", "autoreload", "aimport", "config", "watermark", "pylab"}
"""Magics that may need what the grading kernel does not have: a failure is printed, the cell goes on."""


def make_runnable(notebook: NotebookNode) -> tuple[NotebookNode, list[str]]:
    """A copy with outputs dropped and what cannot run in a grading kernel neutralised."""
    runnable = nbformat.v4.new_notebook(metadata=dict(notebook.metadata), nbformat_minor=notebook.get("nbformat_minor", 4))
    notes: list[str] = []
    for index, cell in enumerate(notebook.cells):
        copy = {key: value for key, value in cell.items() if key not in ("outputs", "attachments", "execution_count")}
        if cell.cell_type == "code":
            source, cell_notes = neutralise_source(cell.source)
            copy.update(source=source, outputs=[], execution_count=None)
            notes.extend(f"Cell {index + 1}: {note}" for note in cell_notes)
        runnable.cells.append(nbformat.from_dict(copy))
    return runnable, notes


def neutralise_source(source: str) -> tuple[str, list[str]]:
    """Replace shell escapes, package installs and the like with harmless statements, with notes."""
    lines = source.splitlines()
    first = lines[0].strip() if lines else ""
    if first.startswith("%%"):
        magic, _, arguments = first[2:].partition(" ")
        if magic in _NEUTRALISED_CELL_MAGICS:
            return "pass  # grader: cell magic %%" + magic + " not run", [
                f"the %%{magic} cell was not run (shell and other-language cells are disabled while grading)."
            ]
        if magic == "timeit":
            setup = _strip_timing_options(arguments)
            return "\n".join([setup, *lines[1:]] if setup else lines[1:]), ["%%timeit was run once instead of timed."]
    notes: list[str] = []
    out: list[str] = []
    for line in lines:
        replacement, note = _neutralise_line(line)
        out.append(replacement)
        if note:
            notes.append(note)
    notes.extend(advice for pattern, advice in _ADVISORIES if pattern.search(source))
    return "\n".join(out), notes


_ADVISORIES = (
    (re.compile(r"(?<![\w.])input\s*\("), "input() returns an empty string while grading (nobody can type)."),
    (re.compile(r"\bdrive\.mount\s*\("), "Google Drive is not mounted while grading: files read from it are not there."),
)
"""Code that runs, but not as on the student's machine: a note, the source unchanged."""


def _neutralise_line(line: str) -> tuple[str, str | None]:
    shell = _SHELL.match(line)
    if shell:
        return (f"{shell.group(1)}pass  # grader: shell command not run",
                f"the shell command `!{shell.group(2).strip()[:60]}` was not run (no shell or network while grading).")
    magic = _LINE_MAGIC.match(line)
    if not magic:
        return line, None
    indent, name, arguments = magic.groups()
    if name in _NEUTRALISED_LINE_MAGICS:
        return f"{indent}pass  # grader: %{name} not run", f"`%{name}{arguments[:60]}` was not run while grading."
    if name in ("timeit", "time"):
        return f"{indent}{_strip_timing_options(arguments) or 'pass'}", None
    if name == "matplotlib" and arguments.strip() not in ("", "inline"):
        return (f"{indent}pass  # grader: %matplotlib{arguments} not run",
                f"`%matplotlib{arguments[:40]}` was replaced by the inline backend while grading.")
    if name in _GUARDED_LINE_MAGICS:
        call = f"__import__('IPython').get_ipython().run_line_magic({name!r}, {arguments.strip()!r})"
        return (f"{indent}try: {call}\n{indent}except Exception as _nbgrade_error: "
                f"print('[grader] %{name} failed:', _nbgrade_error)"), None
    return line, None


def _strip_timing_options(arguments: str) -> str:
    """``-n 3 -r 2 f()`` → ``f()``: the statement a %timeit / %time line runs."""
    return re.sub(r"^(\s*-[A-Za-z]+(\s+\d+)?)*\s*", "", arguments).strip()
