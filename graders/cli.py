"""The ``grade`` command, every subcommand of it, built here with argparse and nowhere else.

    grade PATH [--assignment ID] [--out DIR] [--seed N] ...   grade a notebook, or a folder / zip / Gradescope export
    grade pdf NB.ipynb [-o FILE.pdf] [--execute] [--report]   a Gradescope-ready PDF of the notebook
    grade student ASSIGNMENT -o DIR                           the student bundle
    grade gradescope ASSIGNMENT -o ZIP                        the Gradescope autograder zip
    grade data [--mnist ROOT]                                 where MNIST is, its source and size
    grade help [COMMAND]                                      this list, or one command's options

Grading is the default command: ``grade x.ipynb`` is ``grade grade x.ipynb``. The first argument
names a command unless it is an existing path holding something to grade (a file, or a folder
with a notebook or a zip somewhere inside): a class folder called ``data`` or ``pdf`` is graded by
``grade data``, while ``grade data`` in a project whose ``./data`` holds only MNIST shows MNIST.
``grade ./data`` and ``grade grade data`` always grade.

This module parses, builds the typed configuration (:class:`~graders.config.GradeConfig`,
:class:`~graders.batch.BatchOptions`, :class:`~graders.pdf.PdfRequest`), calls the library and
maps its errors to exit codes; it decides nothing else. Exit status:

* 0: the command did what it was asked; for grading, every submission was graded (whatever the score);
* 1: an artefact could not be produced (no browser for the PDF: the HTML was written instead; a
  student bundle that would leak reference material);
* 2: a usage error (unknown command or assignment, missing file, contradictory options), said in
  one line, without a traceback;
* 130: interrupted.

``python -m graders.gradescope_main run`` (what the Gradescope zip's ``run_autograder`` calls inside the
container) is parsed here too, by :func:`autograder_main`.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from graders.config import GradeConfig, Limits
from graders.registry import UnknownAssignment, assignment_ids

if TYPE_CHECKING:
    from graders.batch import BatchOptions

COMMANDS = ("grade", "pdf", "student", "gradescope", "data", "help")
"""Building the parser imports none of the commands' modules (``grade help`` and ``grade x.ipynb`` start fast);
defaults quoted in help texts (``$NBGRADE_CHROMIUM``, a 10-minute timeout) are checked by tests/test_cli.py."""
GRADABLE_SUFFIXES = (".ipynb", ".zip")
GRADABLE_MARKERS = ("submission_metadata.yml",)
MAX_ENTRIES_LOOKED_AT = 20_000
"""Entries of a folder looked at when deciding whether it holds submissions (a huge MNIST tree stays cheap)."""


class UsageError(Exception):
    """A mistake in how ``grade`` was called: one line on stderr, exit 2."""


class CommandParser(argparse.ArgumentParser):
    """An argparse parser whose usage errors are one line (and a pointer to the help), exit 2."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.split(" ", 1)[1] if " " in self.prog else ""
        print(f"{self.prog}: error: {message} (see `grade help{' ' + command if command else ''}`)", file=sys.stderr)
        raise SystemExit(2)


# ---------------------------------------------------------------------------------------------
# The parser
# ---------------------------------------------------------------------------------------------
def build_parser() -> CommandParser:
    """``grade`` and its subcommands; each subcommand's ``run`` default is the function that executes it."""
    parser = CommandParser(
        prog="grade",
        description="Grade Jupyter-notebook problem sets against reference solutions. `grade PATH` grades a notebook, "
                    "or a folder / zip / Gradescope export of notebooks (the `grade` command, the default).",
        epilog="`grade help COMMAND` shows a command's options. A first argument that is an existing file, or a folder "
               "holding notebooks, is graded even when it is named like a command (./data, ./pdf).",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands", parser_class=CommandParser)
    add_grade_command(commands)
    add_pdf_command(commands)
    add_student_command(commands)
    add_gradescope_command(commands)
    add_data_command(commands)
    helper = commands.add_parser("help", help="show this list, or a command's options: grade help pdf",
                                 description="Show the commands, or one command's options.")
    helper.add_argument("topic", nargs="?", choices=COMMANDS[:-1], metavar="COMMAND", help="one of: " + ", ".join(COMMANDS[:-1]))
    helper.set_defaults(run=lambda args: run_help(parser, commands, args.topic))
    return parser


def add_grade_command(commands: argparse._SubParsersAction) -> None:
    grade = commands.add_parser(
        "grade", help="grade a notebook, or a folder / zip / Gradescope export of notebooks (the default: grade PATH)",
        description="Grade one notebook (results.json, grading.json, report.html in STEM.graded/), or a whole class: a "
                    "folder of notebooks, a zip of them or Gradescope's submissions export (a folder per submission, a "
                    "gradebook.csv and summary.html in NAME.graded/).")
    grade.add_argument("submission", type=Path, metavar="PATH", help="a notebook, or a folder / zip / Gradescope export of notebooks")
    grade.add_argument("--assignment", choices=assignment_ids(), help="assignment id (detected from each notebook when omitted); "
                       "a notebook whose metadata or headings contradict it is flagged, and a batch stops before grading")
    grade.add_argument("--force-assignment", action="store_true", help="batch: grade with --assignment even when notebooks "
                       "contradict it (each result says so)")
    grade.add_argument("--out", type=Path, help="output directory (default: <stem>.graded/ beside the submission)")
    grade.add_argument("--seed", type=int, help="seed of the hidden inputs (default: fresh, recorded in the results)")
    grade.add_argument("--timeout", type=float, help="total seconds the notebook may run (default 600)")
    grade.add_argument("--cell-timeout", type=float, help="seconds one cell may run (default 120)")
    grade.add_argument("--memory", type=int, help="kernel memory cap in MB (default 4096)")
    grade.add_argument("--mnist", type=Path, help="a full MNIST root to use instead of the provisioned copy")
    grade.add_argument("--public", action="store_true", help="run only the public checks (what students run locally)")
    grade.add_argument("--instructor", action="store_true", help="show hidden-check details and tracebacks")
    grade.add_argument("--no-sandbox", action="store_true", help="run the kernel without confinement (debugging only)")
    grade.add_argument("--no-report", action="store_true", help="do not write report.html")
    grade.add_argument("-j", "--jobs", type=int, help="batch: submissions graded in parallel (default: number of cores)")
    grade.add_argument("--force", action="store_true", help="batch: regrade submissions already graded")
    grade.add_argument("--scheduler", help="batch: grade on a Dask cluster at this address (also $DASK_SCHEDULER_ADDRESS)")
    grade.add_argument("--cluster", choices=("slurm",), help="batch: start a Dask cluster with dask-jobqueue")
    grade.add_argument("--workers", type=int, default=2, help="batch: workers to start with --cluster (default 2)")
    grade.add_argument("--compare-with", action="append", type=Path, metavar="FOLDER",
                       help="batch: also compare the notebooks with this archive (earlier years, notebooks found online; "
                            "a folder, zip or export; repeatable) in the similarity report")
    grade.set_defaults(run=run_grade)


def add_pdf_command(commands: argparse._SubParsersAction) -> None:
    pdf = commands.add_parser(
        "pdf", help="a Gradescope-ready PDF of a notebook, each part on its own page",
        description="Print a notebook to PDF for Gradescope with a headless Chromium-based browser (Chromium, Google "
                    "Chrome, Microsoft Edge or Playwright's Chromium, found where they are usually installed): each part "
                    "on its own page, bookmarks, page numbers, math rendered; offline, no LaTeX. Without a browser the "
                    "printable HTML is written instead (exit 1).")
    pdf.add_argument("submission", type=Path, metavar="NOTEBOOK", help="the notebook (.ipynb)")
    pdf.add_argument("-o", "--output", type=Path, help="the PDF to write (default: the notebook's stem + .pdf)")
    pdf.add_argument("--execute", action="store_true", help="run the notebook first, in the grading sandbox, and print "
                     "its fresh outputs (use it when the notebook was saved without outputs)")
    pdf.add_argument("--report", action="store_true", help="append the self-grade report (grades the notebook unless "
                     "STEM.graded/grading.json is for this file)")
    pdf.add_argument("--self-grade", type=Path, help="a self-grade exported by the report page (JSON), printed into the "
                     "appended rubric")
    pdf.add_argument("--assignment", choices=assignment_ids(), help="assignment id (detected from the notebook when omitted)")
    pdf.add_argument("--chromium", metavar="PATH", help="the browser executable (default: $NBGRADE_CHROMIUM, then the "
                     "usual names on PATH and install locations)")
    pdf.add_argument("--seed", type=int, help="seed when grading or executing")
    pdf.add_argument("--timeout", type=float, help="total seconds the notebook may run (default 600)")
    pdf.add_argument("--no-sandbox", action="store_true", help="run the kernel without confinement (debugging only)")
    pdf.set_defaults(run=run_pdf)


def add_student_command(commands: argparse._SubParsersAction) -> None:
    student = commands.add_parser(
        "student", help="write the student bundle of an assignment (template, public checks, README)",
        description="Write the student bundle: the template notebook, an installable copy of the harness without the "
                    "reference solutions (for check(PART) and grade --public), its archive and a README; then "
                    "verify that no reference material leaked into it.")
    student.add_argument("assignment", choices=assignment_ids(), metavar="ASSIGNMENT", help="one of: " + ", ".join(assignment_ids()))
    student.add_argument("-o", "--out", type=Path, required=True, help="directory to write the bundle into")
    student.add_argument("--template", type=Path, help="the student template (default: student_template/ASSIGNMENT.ipynb)")
    student.add_argument("--force", action="store_true", help="overwrite a non-empty output directory")
    student.set_defaults(run=run_student)


def add_gradescope_command(commands: argparse._SubParsersAction) -> None:
    gradescope = commands.add_parser(
        "gradescope", help="build the Gradescope autograder zip of an assignment",
        description="Build the Gradescope autograder zip: setup.sh, run_autograder, the harness and an instructor README "
                    "stating the Gradescope settings (timeout, memory, CPU) the assignment was measured to need.")
    gradescope.add_argument("assignment", choices=assignment_ids(), metavar="ASSIGNMENT", help="one of: " + ", ".join(assignment_ids()))
    gradescope.add_argument("-o", "--out", type=Path, required=True, help="the zip to write (autograder.zip)")
    gradescope.add_argument("--timeout-minutes", type=int, help="Gradescope's autograder timeout (default 10)")
    gradescope.add_argument("--memory-mb", type=int, help="Gradescope's container memory (default: what the assignment "
                            "was measured to need)")
    gradescope.set_defaults(run=run_gradescope)


def add_data_command(commands: argparse._SubParsersAction) -> None:
    data = commands.add_parser("data", help="show (and provision, offline) the MNIST copy used for grading",
                               description="Show the MNIST copy used for grading, provisioning it offline first if needed.")
    data.add_argument("--mnist", type=Path, help="a full MNIST root to use instead")
    data.set_defaults(run=run_data)


# ---------------------------------------------------------------------------------------------
# Choosing the command
# ---------------------------------------------------------------------------------------------
def holds_submissions(path: Path) -> bool:
    """True when ``path`` is a file, or a folder with a notebook, a zip or a Gradescope export inside."""
    if path.is_file():
        return True
    if not path.is_dir():
        return False
    looked_at = 0
    for _, folders, files in os.walk(path):
        folders[:] = [f for f in folders if not f.startswith(".")]
        looked_at += len(files) + len(folders)
        if any(name.endswith(GRADABLE_SUFFIXES) or name in GRADABLE_MARKERS for name in files):
            return True
        if looked_at > MAX_ENTRIES_LOOKED_AT:
            return False
    return False


def with_command(argv: list[str]) -> list[str]:
    """``argv`` with ``grade`` put first when it grades a path (see the module docstring)."""
    if not argv:
        return argv
    first = argv[0]
    if first in ("-h", "--help"):
        return argv
    if first in COMMANDS and not holds_submissions(Path(first)):
        return argv
    return ["grade", *argv]


# ---------------------------------------------------------------------------------------------
# Running the commands
# ---------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    argv = with_command(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser()
    if not argv:
        parser.print_usage(sys.stderr)
        print("grade: error: give a notebook or a folder to grade, or a command (see `grade help`)", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (UsageError, UnknownAssignment, FileNotFoundError, NotADirectoryError) as error:
        message = error.args[0] if error.args else str(error)
        command = "grade" if args.command == "grade" else f"grade {args.command}"
        print(f"{command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("grade: interrupted", file=sys.stderr)
        return 130


def run_help(parser: CommandParser, commands: argparse._SubParsersAction, topic: str | None) -> int:
    (commands.choices[topic] if topic else parser).print_help()
    return 0


def config_from_args(args: argparse.Namespace) -> GradeConfig:
    limits = Limits()
    if args.timeout:
        limits = replace(limits, total_timeout=args.timeout)
    if args.cell_timeout:
        limits = replace(limits, cell_timeout=args.cell_timeout)
    if args.memory:
        limits = replace(limits, memory_mb=args.memory)
    return GradeConfig(
        assignment=args.assignment,
        seed=args.seed,
        limits=limits,
        mnist_root=args.mnist,
        public_only=args.public,
        instructor=args.instructor,
        sandbox=not args.no_sandbox,
        write_report=not args.no_report,
    )


def batch_options_from_args(args: argparse.Namespace) -> BatchOptions:
    from graders.batch import BatchOptions

    return BatchOptions(
        out_dir=args.out, jobs=args.jobs, force=args.force, scheduler=args.scheduler, cluster=args.cluster,
        cluster_workers=args.workers or 2, force_assignment=args.force_assignment,
        compare_with=tuple(getattr(args, "compare_with", None) or ()),
    )


def run_grade(args: argparse.Namespace) -> int:
    path: Path = args.submission
    if not path.exists():
        raise UsageError(f"{path}: no such file or directory")
    config = config_from_args(args)
    if path.is_dir() or path.suffix.lower() == ".zip":
        return run_grade_batch(path, batch_options_from_args(args), config)
    if args.force_assignment and not args.assignment:
        raise UsageError("--force-assignment needs --assignment")
    return run_grade_file(path, args.out or path.with_name(path.stem + ".graded"), config)


def run_grade_file(path: Path, out: Path, config: GradeConfig) -> int:
    from graders.grade import UsageError as GradeUsageError
    from graders.grade import grade_submission
    from graders.summary_table import print_result

    try:
        result = grade_submission(path, config, out_dir=out)
    except GradeUsageError as error:
        raise UsageError(str(error)) from None
    print_result(result, out)
    loud = [m for m in result.messages if m.startswith("WARNING")]
    for message in loud:
        print_warning(message, f"grade {path} without --assignment detects the assignment from the notebook.")
    return 0


def run_grade_batch(path: Path, options: BatchOptions, config: GradeConfig) -> int:
    from graders.batch import BatchUsageError, format_batch_result, run_batch
    from graders.collect import BatchInputError
    from graders.runner import runner_for

    try:
        result = run_batch(path, options, config, runner=runner_for(options))
    except (BatchInputError, BatchUsageError) as error:
        raise UsageError(str(error)) from None
    print(format_batch_result(result))
    return 0


def print_warning(message: str, hint: str = "") -> None:
    """A warning the user must not miss: framed, on stderr, the hint on its own line."""
    rule = "=" * 78
    lines = [rule, message, *([hint] if hint else []), rule]
    print("\n".join(lines), file=sys.stderr)


def run_pdf(args: argparse.Namespace) -> int:
    from graders.pdf import ChromiumMissing, PdfRequest, one_line, render_pdf
    from graders.submission import InvalidSubmission

    limits = Limits() if not args.timeout else Limits(total_timeout=args.timeout)
    config = GradeConfig(assignment=args.assignment, seed=args.seed, limits=limits, sandbox=not args.no_sandbox)
    request = PdfRequest(submission=args.submission, output=args.output, report=args.report, execute=args.execute,
                         assignment=args.assignment, chromium=args.chromium, self_grade=args.self_grade, config=config)
    for path in (request.submission, request.self_grade):
        if path is not None and not path.is_file():
            raise UsageError(f"{path}: no such file")
    try:
        outcome = render_pdf(request, warn=lambda message, hint: print_warning(message, hint))
    except InvalidSubmission as error:
        raise UsageError(one_line(str(error))) from None
    except ChromiumMissing as error:
        print(f"grade pdf: {error}; wrote {error.html_path} instead (open it in a browser and print it to PDF)",
              file=sys.stderr)
        return 1
    except ValueError as error:  # a --self-grade file that is not one
        raise UsageError(one_line(str(error))) from None
    except Exception as error:  # noqa: BLE001 - Playwright/browser failures: one line, exit 1
        print(f"grade pdf: could not print the PDF: {one_line(str(error))}", file=sys.stderr)
        return 1
    print(f"wrote {outcome.path} ({outcome.size_bytes / 1e6:.1f} MB, {outcome.seconds:.1f} s, printed by {outcome.browser})")
    return 0


def run_student(args: argparse.Namespace) -> int:
    from graders.bundle import BundleError, secret_leaks, secret_sources, write_bundle

    try:
        bundle = write_bundle(args.assignment, args.out, args.template, args.force)
        leaks = secret_leaks(bundle.root, assignment_id=args.assignment) if secret_sources(None, args.assignment) else []
    except BundleError as error:
        raise UsageError(str(error)) from None
    if leaks:
        print("grade student: error: the bundle contains reference material:\n  " + "\n  ".join(leaks[:20]), file=sys.stderr)
        return 1
    print(f"wrote {bundle.root}: {bundle.template.name}, {bundle.package.name}/, {bundle.archive.name}, {bundle.readme.name}")
    print("checked: no reference function body, answer text or notebook cell in it")
    return 0


def run_gradescope(args: argparse.Namespace) -> int:
    from graders.autograder import autograder_config, build_zip, gradescope_settings

    try:
        config = autograder_config(args.assignment, args.timeout_minutes, args.memory_mb)
        target = build_zip(args.assignment, args.out, args.timeout_minutes, args.memory_mb)
    except (ValueError, ModuleNotFoundError) as error:
        raise UsageError(str(error)) from None
    print(f"wrote {target} ({target.stat().st_size / 1e6:.1f} MB)")
    print(f"Gradescope settings: {gradescope_settings(config)}, base image Ubuntu 22.04; see README.md in the zip")
    return 0


def run_data(args: argparse.Namespace) -> int:
    from graders.mnist import describe, ensure_mnist

    print(describe(ensure_mnist(args.mnist)))
    return 0


# ---------------------------------------------------------------------------------------------
# Inside the Gradescope container
# ---------------------------------------------------------------------------------------------
def autograder_main(argv: list[str]) -> int:
    """``python -m graders.gradescope_main run --config FILE [--root DIR]``: grade ``DIR/submission`` into ``DIR/results``.

    Any failure is printed and returns 1; ``run_autograder``'s fallback writer then makes a valid 0.
    """
    from graders.gradescope_run import AutograderConfig, run_autograder

    parser = CommandParser(prog="python -m graders.gradescope_main", description="Grade the submission inside Gradescope's container.")
    parser.add_argument("action", choices=("run",))
    parser.add_argument("--root", type=Path, default=Path(os.environ.get("AUTOGRADER_ROOT", "/autograder")))
    parser.add_argument("--config", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        run_autograder(args.root, AutograderConfig.from_json(args.config.read_text()))
    except Exception:  # noqa: BLE001 - the fallback writer turns this into a valid 0
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
