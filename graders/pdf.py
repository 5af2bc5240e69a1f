"""``grade pdf``: a Gradescope-ready PDF of a notebook, rendered offline by headless Chromium.

    grade pdf SUBMISSION.ipynb [-o FILE.pdf] [--report] [--execute] [--self-grade FILE.json]

The notebook goes through the report's renderer (:mod:`graders.render`: markdown with MathML,
highlighted code, escaped text outputs, PNG/JPEG figures; HTML and JavaScript outputs shown as
text), is laid out with each part (found by the grader's part detection) starting on a new
page under its id, and is printed through Playwright by a Chromium-based browser with JavaScript
disabled and every request but ``data:`` URLs blocked. The browser is the one the student has
(:func:`find_browser`: ``--chromium`` or ``$NBGRADE_CHROMIUM``, else Chromium, Google Chrome or
Microsoft Edge on PATH or where they are usually installed on Linux, macOS and Windows, else the
Chromium ``playwright install chromium`` downloaded); without one, the printable HTML is written
instead. Chromium builds the PDF outline from the part headings; the footer numbers the pages.
Nothing is downloaded and no LaTeX is needed.

Before printing, :func:`pdf_warnings` says what would make the PDF one to regret: a notebook
saved without outputs (or without a figure although parts ask for figures), an ``--assignment``
that contradicts the notebook. The PDF is still made. The command line is in :mod:`graders.cli`.

``--execute`` first runs the notebook in the grading sandbox; ``--report`` grades it (or reuses
``STEM.graded/grading.json`` for the same file) and appends the self-grade report, with the
rubric blank or filled in from a self-grade the report page exported (``--self-grade``).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping

from markupsafe import escape
from nbformat import NotebookNode

from graders.config import GradeConfig
from graders.assignment import AssignmentSpec, PartSpec
from graders.parts import assign_cells, assignment_mismatch, detect_assignment
from graders.registry import get_assignment
from graders.render import PDF_LIMITS, CellFragment, RenderLimits, render_cells, template_environment
from graders.result import GradingResult
from graders.submission import Submission, load_submission

CHROMIUM_ENV = "NBGRADE_CHROMIUM"
CHROMIUM_ARGS = ("--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync")
BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "microsoft-edge",
                 "microsoft-edge-stable", "msedge", "chrome")
"""Executable names of Chromium-based browsers, looked up on PATH in this order."""
PLAYWRIGHT_EXECUTABLES = {
    "linux": ("chromium-*/chrome-linux/chrome", "chromium-*/chrome-linux64/chrome",
              "chromium_headless_shell-*/chrome-linux/headless_shell",
              "chromium_headless_shell-*/chrome-headless-shell-linux64/chrome-headless-shell"),
    "darwin": ("chromium-*/chrome-mac*/Chromium.app/Contents/MacOS/Chromium",
               "chromium-*/chrome-mac*/Google Chrome for Testing.app/Contents/MacOS/Google Chrome for Testing",
               "chromium_headless_shell-*/chrome-mac*/headless_shell"),
    "win32": ("chromium-*/chrome-win*/chrome.exe", "chromium_headless_shell-*/chrome-win*/headless_shell.exe"),
}
"""Where ``playwright install chromium`` puts the browser, under its cache folder, per platform."""
INSTALL_HINT = ("looked for Chromium, Google Chrome, Microsoft Edge and Playwright's Chromium on PATH and where they are "
                "usually installed. Install one (Debian/Ubuntu: `sudo apt-get install chromium`; macOS or Windows: Google "
                "Chrome; anywhere: `python -m playwright install chromium`), or pass --chromium PATH / set NBGRADE_CHROMIUM")
RENDER_TIMEOUT_MS = 180_000


class ChromiumUnusable(RuntimeError):
    """Chromium was found but would not start."""


class ChromiumMissing(RuntimeError):
    """No usable Chromium: the HTML (with its print stylesheet) was written instead."""

    def __init__(self, message: str, html_path: Path) -> None:
        super().__init__(message)
        self.html_path = html_path


@dataclass(frozen=True)
class PdfRequest:
    """What ``grade pdf`` was asked to do."""

    submission: Path
    output: Path | None = None
    """The PDF to write; default: the submission's stem with ``.pdf`` beside it."""
    report: bool = False
    """Append the self-grade report (grading the notebook unless it was graded already)."""
    execute: bool = False
    """Run the notebook in the grading sandbox first and render the executed notebook."""
    assignment: str | None = None
    """Assignment id; detected from the notebook when None."""
    chromium: str | None = None
    """Chromium executable; else ``$NBGRADE_CHROMIUM``, else ``chromium`` on PATH."""
    self_grade: Path | None = None
    """A self-grade exported by the report page (JSON), printed into the appended rubric."""
    config: GradeConfig = field(default_factory=GradeConfig)
    limits: RenderLimits = PDF_LIMITS

    @property
    def pdf_path(self) -> Path:
        return self.output or self.submission.with_suffix(".pdf")


@dataclass(frozen=True)
class PdfOutcome:
    """The PDF written and what rendering it took."""

    path: Path
    seconds: float
    size_bytes: int
    blocked_requests: tuple[str, ...] = ()
    """URLs Chromium tried to fetch and was refused (none are expected: content is sanitised)."""
    browser: str = ""
    """The browser executable that printed it."""
    warnings: tuple["PdfWarning", ...] = ()
    """What the student should know before handing the PDF in (also passed to ``render_pdf``'s ``warn``)."""


@dataclass(frozen=True)
class PdfWarning:
    """Something about the notebook that makes a PDF a student would regret, and what to do about it."""

    message: str
    hint: str


@dataclass(frozen=True)
class NotebookSection:
    """One part of the notebook: its own page(s) in the PDF."""

    id: str
    title: str
    anchor: str
    cells: tuple[CellFragment, ...]


@dataclass(frozen=True)
class NotebookDocument:
    """What the PDF template prints."""

    title: str
    submission: str
    subtitle: str
    front: tuple[CellFragment, ...]
    sections: tuple[NotebookSection, ...]
    notes: tuple[str, ...] = ()


# ---------------------------------------------------------------------------------------------
# Layout: the notebook cut into parts
# ---------------------------------------------------------------------------------------------
def assignment_parts(assignment: str | None) -> tuple[str, tuple[PartSpec, ...]]:
    """The assignment's title and parts, as its package declares them (none when it is not installed)."""
    spec = _assignment(assignment)
    if spec is None:
        return assignment or "Notebook", ()
    return spec.title, spec.parts


def _assignment(assignment: str | None) -> AssignmentSpec | None:
    if assignment is None:
        return None
    try:
        return get_assignment(assignment)
    except (KeyError, ImportError):
        return None


def notebook_document(notebook: NotebookNode, submission: str, assignment: str | None, subtitle: str,
                      limits: RenderLimits = PDF_LIMITS) -> NotebookDocument:
    """The notebook as a front matter (cells before the first part) and one section per part."""
    title, parts = assignment_parts(assignment)
    part_cells = assign_cells(notebook, parts) if parts else {}
    in_parts = {i for cells in part_cells.values() for i in cells}
    front = render_cells(notebook, [i for i in range(len(notebook.cells)) if i not in in_parts], limits)
    sections = tuple(
        NotebookSection(p.id, p.title, f"nb-{p.id}", tuple(render_cells(notebook, part_cells.get(p.id, []), limits)))
        for p in parts
    )
    notes = () if parts else ("The assignment could not be told from this notebook, so it is not split into parts; "
                              "pass --assignment.",)
    return NotebookDocument(title, submission, subtitle, tuple(front), sections, notes)


def document_html(document: NotebookDocument, report_page: Any = None) -> str:
    """The printable HTML: notebook sections, then (optionally) the self-grade report."""
    return template_environment().get_template("notebook.html.j2").render(doc=document, page=report_page)


def footer_template(submission: str) -> str:
    """Chromium's footer: the file name (escaped: students name their files) and the page number."""
    return ('<div style="font-size:8px;width:100%;margin:0 13mm;display:flex;justify-content:space-between;'
            'color:#555;font-family:sans-serif"><span>' + str(escape(submission)) + '</span><span>page '
            '<span class="pageNumber"></span> of <span class="totalPages"></span></span></div>')


# ---------------------------------------------------------------------------------------------
# Printing with Chromium
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BrowserHost:
    """Where a browser is looked for: environment, platform and file system (a fake one in the tests)."""

    environ: Mapping[str, str]
    platform: str
    """``sys.platform``: ``linux``, ``darwin`` or ``win32``."""
    home: Path
    which: Callable[[str], str | None]
    """``shutil.which``: a name on PATH → its path."""
    is_executable: Callable[[Path], bool]
    glob: Callable[[Path, str], list[Path]]
    """Paths under a folder matching a pattern (``Path.glob``)."""
    playwright_executable: Callable[[], str | None] = lambda: None
    """The Chromium Playwright itself would start (its API), asked only when nothing else was found."""

    @classmethod
    def current(cls) -> "BrowserHost":
        return cls(os.environ, sys.platform, Path.home(), shutil.which, _is_executable,
                   lambda folder, pattern: sorted(folder.glob(pattern)) if folder.is_dir() else [],
                   _playwright_executable)


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _playwright_executable() -> str | None:
    try:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            return playwright.chromium.executable_path
    except Exception:  # noqa: BLE001 - Playwright missing, or its driver would not start: no browser from it
        return None


def install_locations(host: BrowserHost) -> list[Path]:
    """Where Chromium, Google Chrome and Microsoft Edge are usually installed on ``host.platform``."""
    if host.platform == "darwin":
        apps = [("Google Chrome.app", "Google Chrome"), ("Chromium.app", "Chromium"), ("Microsoft Edge.app", "Microsoft Edge")]
        return [base / app / "Contents" / "MacOS" / exe for base in (Path("/Applications"), host.home / "Applications")
                for app, exe in apps]
    if host.platform.startswith(("win", "cygwin")):
        bases = [host.environ.get(k) for k in ("PROGRAMFILES", "PROGRAMFILES(X86)", "LOCALAPPDATA")]
        bases = [b for b in bases if b] or ["C:\\Program Files", "C:\\Program Files (x86)"]
        exes = [("Google", "Chrome", "Application", "chrome.exe"), ("Microsoft", "Edge", "Application", "msedge.exe"),
                ("Chromium", "Application", "chrome.exe")]
        return [Path(base, *exe) for base in bases for exe in exes]
    return [Path(p) for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome",
                              "/usr/bin/google-chrome-stable", "/usr/bin/microsoft-edge", "/snap/bin/chromium",
                              "/opt/google/chrome/chrome", "/opt/microsoft/msedge/msedge", "/usr/lib/chromium/chromium")]


def playwright_locations(host: BrowserHost) -> list[Path]:
    """Chromium that ``playwright install chromium`` downloaded (newest first), then its headless shell."""
    configured = host.environ.get("PLAYWRIGHT_BROWSERS_PATH")
    if configured and configured != "0":
        root = Path(configured)
    elif host.platform == "darwin":
        root = host.home / "Library" / "Caches" / "ms-playwright"
    elif host.platform.startswith(("win", "cygwin")):
        root = Path(host.environ.get("LOCALAPPDATA") or host.home / "AppData" / "Local", "ms-playwright")
    else:
        root = host.home / ".cache" / "ms-playwright"
    patterns = PLAYWRIGHT_EXECUTABLES["darwin" if host.platform == "darwin" else
                                      "win32" if host.platform.startswith(("win", "cygwin")) else "linux"]
    found: list[Path] = []
    for pattern in patterns:
        found.extend(sorted(host.glob(root, pattern), key=_revision, reverse=True))
    return found


def _revision(path: Path) -> int:
    """``chromium-1148`` → 1148 (newest first), from the folder right under Playwright's cache."""
    for part in path.parts:
        match = re.fullmatch(r"chromium(?:_headless_shell)?-(\d+)", part)
        if match:
            return int(match.group(1))
    return 0


def find_browser(explicit: str | None, host: BrowserHost) -> str | None:
    """The browser to print with: ``--chromium``, else ``$NBGRADE_CHROMIUM`` (either one is used or nothing is),
    else the usual names on PATH, the usual install locations, Playwright's downloaded Chromium."""
    for candidate in (explicit, host.environ.get(CHROMIUM_ENV)):
        if candidate:
            return candidate if host.is_executable(Path(candidate)) else None
    for name in BROWSER_NAMES:
        found = host.which(name)
        if found:
            return found
    for path in (*install_locations(host), *playwright_locations(host)):
        if host.is_executable(path):
            return str(path)
    fallback = host.playwright_executable()
    return fallback if fallback and host.is_executable(Path(fallback)) else None


def find_chromium(explicit: str | None = None) -> str | None:
    """The browser to print with on this machine (see :func:`find_browser`)."""
    return find_browser(explicit, BrowserHost.current())


def print_to_pdf(html: str, output: Path, chromium: str, footer: str) -> tuple[str, ...]:
    """Print ``html`` to ``output`` offline (JavaScript off, every non-data: request refused)."""
    from playwright.sync_api import sync_playwright

    blocked: list[str] = []

    def refuse(route: Any) -> None:
        url = route.request.url
        if url.startswith("data:"):
            route.continue_()
        else:
            blocked.append(url[:200])
            route.abort()

    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=list(CHROMIUM_ARGS))
        except Exception as error:  # noqa: BLE001 - Playwright's launch errors are of several kinds
            raise ChromiumUnusable(f"could not start Chromium at {chromium}: {one_line(str(error))}") from error
        try:
            context = browser.new_context(java_script_enabled=False, offline=True)
            context.route("**/*", refuse)
            page = context.new_page()
            page.set_content(html, wait_until="load", timeout=RENDER_TIMEOUT_MS)
            output.parent.mkdir(parents=True, exist_ok=True)
            page.pdf(path=str(output), format="Letter", print_background=True, outline=True, tagged=True,
                     display_header_footer=True, header_template="<span></span>", footer_template=footer,
                     margin={"top": "14mm", "bottom": "16mm", "left": "13mm", "right": "13mm"})
        finally:
            browser.close()
    return tuple(blocked)


# ---------------------------------------------------------------------------------------------
# The notebook to print, and the report to append
# ---------------------------------------------------------------------------------------------
def execute_for_pdf(submission: Submission, config: GradeConfig) -> NotebookNode:
    """Run the notebook in the grading sandbox, with grading's limits, and return it with its outputs."""
    from graders.execute import execute_notebook
    from graders.kernel_session import KernelSession
    from graders.mnist import ensure_mnist, sandbox_view
    from graders.workspace import Workspace

    mnist = ensure_mnist(config.mnist_root)
    workspace = Workspace.create(sandbox_view(mnist), slot=(os.getpid() * 7 + 4001) % 4000, switch_user=config.sandbox)
    session = KernelSession(submission.runnable, workspace, config.limits, mnist.root,
                            config.seed if config.seed is not None else 0, sandbox=config.sandbox)
    try:
        session.start()
        return execute_notebook(session, config.limits).notebook
    finally:
        session.shutdown()
        workspace.cleanup()


def graded_dir(submission: Path) -> Path:
    """Where ``grade`` writes a submission's results by default."""
    return submission.with_name(submission.stem + ".graded")


def grading_for_report(submission: Submission, request: PdfRequest) -> tuple[GradingResult, Path]:
    """The submission's grading: reused from ``STEM.graded/grading.json`` when it is for this file, else graded now."""
    from graders.grade import grade_submission

    out_dir = graded_dir(submission.path)
    saved = out_dir / "grading.json"
    if saved.is_file():
        result = GradingResult.from_dict(json.loads(saved.read_text(encoding="utf-8")))
        if result.sha256 == submission.sha256:
            return result, out_dir
    config = replace(request.config, assignment=request.assignment or request.config.assignment)
    return grade_submission(submission.path, config, out_dir=out_dir), out_dir


def report_page_for(submission: Submission, request: PdfRequest) -> tuple[Any, NotebookNode | None]:
    """The report's page model (rubric pre-filled from ``--self-grade``) and the executed notebook."""
    from graders.report import build_page, read_executed_notebook, read_self_grade

    result, out_dir = grading_for_report(submission, request)
    executed = read_executed_notebook(result, out_dir)
    prefill = read_self_grade(request.self_grade) if request.self_grade else None
    page = build_page(result, instructor=request.config.instructor, notebook=executed, limits=request.limits,
                      prefill=prefill)
    return page, executed


IMAGE_TYPES = ("image/png", "image/jpeg", "image/svg+xml")


def figure_parts(assignment: str | None) -> tuple[str, ...]:
    """The parts that ask for a figure in the notebook's outputs (declared by the assignment's package)."""
    spec = _assignment(assignment)
    return tuple(p.id for p in spec.parts if p.figures) if spec is not None else ()


def output_warnings(notebook: NotebookNode, name: str, assignment: str | None) -> tuple[PdfWarning, ...]:
    """A warning when the saved notebook has no outputs at all, or no figure although parts ask for figures."""
    code = [c for c in notebook.cells if c.cell_type == "code" and c.source.strip()]
    if not code:
        return ()
    hint = (f"Run the notebook top to bottom and save it before printing (Jupyter: Kernel → Restart & Run All, then "
            f"File → Save; Colab: Runtime → Run all, then File → Download → .ipynb), or let grade pdf run it first: "
            f"grade pdf {name} --execute")
    outputs = [o for c in code for o in c.get("outputs", [])]
    if not outputs:
        return (PdfWarning(f"WARNING: {name} has no saved outputs. None of its {len(code)} code cells shows a result, a "
                           "printed value or a figure, so the PDF shows your code only and whoever grades it sees no "
                           "plots or numbers.", hint),)
    parts = figure_parts(assignment)
    has_figure = any(kind in o.get("data", {}) for o in outputs for kind in IMAGE_TYPES)
    if parts and not has_figure:
        return (PdfWarning(f"WARNING: {name} has no figure in its saved outputs, although parts {', '.join(parts)} ask "
                           "for one: the PDF shows none.", hint),)
    return ()


def pdf_warnings(request: PdfRequest, submission: Submission, notebook: NotebookNode, assignment: str | None) -> tuple[PdfWarning, ...]:
    """Everything the student should hear before the PDF is printed."""
    warnings = list(output_warnings(notebook, submission.name, assignment))
    contradiction = assignment_mismatch(submission.notebook, request.assignment) if request.assignment else None
    if contradiction is not None:
        warnings.append(PdfWarning(contradiction.message.replace("graded", "printed"),
                                   "Without --assignment the parts are detected from the notebook."))
    return tuple(warnings)


def render_pdf(request: PdfRequest, warn: Callable[[str, str], None] | None = None) -> PdfOutcome:
    """Write the PDF for ``request.submission``; raises :class:`ChromiumMissing` (HTML written instead).

    ``warn(message, hint)`` hears each :class:`PdfWarning` before printing starts (a missing browser
    does not hide them); they are also in the outcome.
    """
    started = time.monotonic()
    submission = load_submission(request.submission)
    assignment = request.assignment or detect_assignment(submission.notebook)
    report_page, notebook, subtitle = None, submission.notebook, "outputs as saved in the notebook"
    if request.report:
        report_page, executed = report_page_for(submission, request)
        assignment = assignment or report_page.result.assignment
        if request.execute and executed is not None:
            notebook, subtitle = executed, "outputs from running the notebook in the grading sandbox"
    if request.execute and notebook is submission.notebook:
        notebook, subtitle = execute_for_pdf(submission, request.config), "outputs from running the notebook in the grading sandbox"
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    document = notebook_document(notebook, submission.name, assignment, f"{subtitle} · rendered {stamp}", request.limits)
    html = document_html(document, report_page)
    warnings = pdf_warnings(request, submission, notebook, assignment)
    for warning in warnings if warn is not None else ():
        warn(warning.message, warning.hint)
    chromium = find_chromium(request.chromium)
    try:
        if chromium is None:
            raise ChromiumUnusable(f"no browser to print with: {INSTALL_HINT}")
        blocked = print_to_pdf(html, request.pdf_path, chromium, footer_template(submission.name))
    except ChromiumUnusable as error:
        html_path = request.pdf_path.with_suffix(".html")
        html_path.parent.mkdir(parents=True, exist_ok=True)
        html_path.write_text(html, encoding="utf-8")
        raise ChromiumMissing(str(error), html_path) from error
    return PdfOutcome(request.pdf_path, round(time.monotonic() - started, 2), request.pdf_path.stat().st_size, blocked,
                      chromium, warnings)


def one_line(text: str) -> str:
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return re.sub(r"\s+", " ", first)[:300]
