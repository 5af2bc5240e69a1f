"""``grade pdf``: a Gradescope-ready PDF of a notebook, rendered offline by headless Chromium.

    grade pdf SUBMISSION.ipynb [-o FILE.pdf] [--report] [--execute] [--self-grade FILE.json]

The notebook goes through the report's renderer (:mod:`graders.render`: markdown with MathML,
highlighted code, escaped text outputs, PNG/JPEG figures; HTML and JavaScript outputs shown as
text), is laid out with each part (found by the grader's part detection) starting on a new
page under its id, and is printed by Debian's Chromium through Playwright with JavaScript
disabled and every request but ``data:`` URLs blocked. Chromium builds the PDF outline from the
part headings; the footer numbers the pages. Nothing is downloaded and no LaTeX is needed.

``--execute`` first runs the notebook in the grading sandbox; ``--report`` grades it (or reuses
``STEM.graded/grading.json`` for the same file) and appends the self-grade report, with the
rubric blank or filled in from a self-grade the report page exported (``--self-grade``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from markupsafe import escape
from nbformat import NotebookNode

from graders.config import GradeConfig, Limits
from graders.parts import assign_cells, detect_assignment
from graders.render import PDF_LIMITS, CellFragment, RenderLimits, render_cells, template_environment
from graders.result import GradingResult
from graders.submission import InvalidSubmission, Submission, load_submission

CHROMIUM_ENV = "NBGRADE_CHROMIUM"
CHROMIUM_ARGS = ("--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync")
INSTALL_HINT = "install it with `apt-get install chromium`, or pass --chromium PATH / set NBGRADE_CHROMIUM"
CONTRACT_PART_IDS = {"csci145-ps6": ("1A", "1B", "1C", "1D", "2A", "2B", "2C"), "ece685d-hw2": ("P1", "P2", "P3")}
"""The CONTRACT's part ids, used only when an assignment's rubric module cannot be loaded."""
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
def assignment_parts(assignment: str | None) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The assignment's title and (part id, part title) pairs, from its rubric when it loads."""
    if assignment is None:
        return "Notebook", ()
    try:
        from graders.rubrics import get_assignment

        rubric = get_assignment(assignment).rubric
        return rubric.title, tuple((p.id, p.title) for p in rubric.parts)
    except (KeyError, ImportError):
        return assignment, tuple((pid, "") for pid in CONTRACT_PART_IDS.get(assignment, ()))


def notebook_document(notebook: NotebookNode, submission: str, assignment: str | None, subtitle: str,
                      limits: RenderLimits = PDF_LIMITS) -> NotebookDocument:
    """The notebook as a front matter (cells before the first part) and one section per part."""
    title, parts = assignment_parts(assignment)
    part_cells = assign_cells(notebook, tuple(pid for pid, _ in parts)) if parts else {}
    in_parts = {i for cells in part_cells.values() for i in cells}
    front = render_cells(notebook, [i for i in range(len(notebook.cells)) if i not in in_parts], limits)
    sections = tuple(
        NotebookSection(pid, ptitle, f"nb-{pid}", tuple(render_cells(notebook, part_cells.get(pid, []), limits)))
        for pid, ptitle in parts
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
def find_chromium(explicit: str | None = None) -> str | None:
    """The Chromium to use: the flag, then ``$NBGRADE_CHROMIUM``, then ``chromium`` on PATH."""
    for candidate in (explicit, os.environ.get(CHROMIUM_ENV)):
        if candidate:
            return candidate if Path(candidate).is_file() and os.access(candidate, os.X_OK) else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


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
            raise ChromiumUnusable(f"could not start Chromium at {chromium}: {_one_line(str(error))}") from error
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
    from graders.execute import KernelSession, Workspace, execute_notebook
    from graders.mnist import ensure_mnist, sandbox_view

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


def render_pdf(request: PdfRequest) -> PdfOutcome:
    """Write the PDF for ``request.submission``; raises :class:`ChromiumMissing` (HTML written instead)."""
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
    chromium = find_chromium(request.chromium)
    try:
        if chromium is None:
            raise ChromiumUnusable(f"Chromium not found ({INSTALL_HINT})")
        blocked = print_to_pdf(html, request.pdf_path, chromium, footer_template(submission.name))
    except ChromiumUnusable as error:
        html_path = request.pdf_path.with_suffix(".html")
        html_path.parent.mkdir(parents=True, exist_ok=True)
        html_path.write_text(html, encoding="utf-8")
        raise ChromiumMissing(str(error), html_path) from error
    return PdfOutcome(request.pdf_path, round(time.monotonic() - started, 2), request.pdf_path.stat().st_size, blocked)


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------
def pdf_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grade pdf", description="A Gradescope-ready PDF of a notebook: each part on "
                                     "its own page, rendered offline by headless Chromium.")
    parser.add_argument("submission", type=Path, help="the notebook (.ipynb)")
    parser.add_argument("-o", "--output", type=Path, help="the PDF to write (default: the notebook's stem + .pdf)")
    parser.add_argument("--report", action="store_true", help="append the self-grade report (grades the notebook "
                        "unless STEM.graded/grading.json is for this file)")
    parser.add_argument("--execute", action="store_true", help="run the notebook first, in the grading sandbox")
    parser.add_argument("--self-grade", type=Path, help="a self-grade exported by the report page (JSON), printed "
                        "into the appended rubric")
    parser.add_argument("--assignment", help="assignment id (detected from the notebook when omitted)")
    parser.add_argument("--chromium", help=f"the Chromium executable (default: ${CHROMIUM_ENV}, then chromium on PATH)")
    parser.add_argument("--seed", type=int, help="seed when grading or executing")
    parser.add_argument("--timeout", type=float, help="total seconds the notebook may run (default 600)")
    parser.add_argument("--no-sandbox", action="store_true", help="run the kernel without confinement (debugging only)")
    return parser


def request_from_args(args: argparse.Namespace) -> PdfRequest:
    limits = Limits() if not args.timeout else Limits(total_timeout=args.timeout)
    config = GradeConfig(assignment=args.assignment, seed=args.seed, limits=limits, sandbox=not args.no_sandbox)
    return PdfRequest(submission=args.submission, output=args.output, report=args.report, execute=args.execute,
                      assignment=args.assignment, chromium=args.chromium, self_grade=args.self_grade, config=config)


def cli(argv: list[str]) -> int:
    """``grade pdf``: 0 when the PDF was written, 1 when it could not be (HTML written instead), 2 for usage errors."""
    args = pdf_parser().parse_args(argv)
    request = request_from_args(args)
    if not request.submission.is_file():
        return _usage_error(f"{request.submission}: no such file")
    if request.self_grade is not None and not request.self_grade.is_file():
        return _usage_error(f"{request.self_grade}: no such file")
    try:
        outcome = render_pdf(request)
    except InvalidSubmission as error:
        return _usage_error(_one_line(str(error)))
    except ChromiumMissing as error:
        print(f"grade pdf: {error}; wrote {error.html_path} instead (open it in a browser and print it to PDF)",
              file=sys.stderr)
        return 1
    except ValueError as error:  # a --self-grade file that is not one
        return _usage_error(_one_line(str(error)))
    except Exception as error:  # noqa: BLE001 - Playwright/Chromium failures: one line, exit 1
        print(f"grade pdf: could not print the PDF: {_one_line(str(error))}", file=sys.stderr)
        return 1
    print(f"wrote {outcome.path} ({outcome.size_bytes / 1e6:.1f} MB, {outcome.seconds:.1f} s)")
    return 0


def _usage_error(message: str) -> int:
    print(f"grade pdf: error: {message}", file=sys.stderr)
    return 2


def _one_line(text: str) -> str:
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return re.sub(r"\s+", " ", first)[:300]
