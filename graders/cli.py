"""The ``grade`` command: parse arguments, call the library, map errors to exit codes.

    grade SUBMISSION.ipynb [--assignment ID] [--out DIR] [--seed N] [--timeout S] [--public] [--instructor]
    grade SUBMISSIONS_DIR_OR_ZIP [--out DIR] [-j N] [--force] [--scheduler ADDRESS]
    grade data            where MNIST is, its source and size
    grade pdf NB.ipynb    a Gradescope-ready PDF of the notebook (and --report)
    grade student ID -o DIR       the student bundle
    grade gradescope ID -o ZIP    the Gradescope autograder zip

Exit status: 0 when the submission was graded (whatever the score), 1 when a requested
artefact could not be produced, 2 for a usage error (one line, no traceback).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from graders.config import GradeConfig, Limits
from graders.rubrics import ASSIGNMENT_IDS, UnknownAssignment

SUBCOMMANDS = ("data", "pdf", "student", "gradescope")


def grade_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grade", description="Grade Jupyter notebook submissions against the reference.")
    parser.add_argument("submission", type=Path, help="a notebook, or a folder / zip / Gradescope export of notebooks")
    parser.add_argument("--assignment", choices=ASSIGNMENT_IDS, help="assignment id (detected from the notebook when omitted)")
    parser.add_argument("--out", type=Path, help="output directory (default: <stem>.graded/ beside the submission)")
    parser.add_argument("--seed", type=int, help="seed of the hidden inputs (default: fresh, recorded in the results)")
    parser.add_argument("--timeout", type=float, help="total seconds the notebook may run (default 600)")
    parser.add_argument("--cell-timeout", type=float, help="seconds one cell may run (default 120)")
    parser.add_argument("--memory", type=int, help="kernel memory cap in MB (default 4096)")
    parser.add_argument("--mnist", type=Path, help="a full MNIST root to use instead of the provisioned copy")
    parser.add_argument("--public", action="store_true", help="run only the public checks (what students run locally)")
    parser.add_argument("--instructor", action="store_true", help="show hidden-check details and tracebacks")
    parser.add_argument("--no-sandbox", action="store_true", help="run the kernel without confinement (debugging only)")
    parser.add_argument("--no-report", action="store_true", help="do not write report.html")
    parser.add_argument("-j", "--jobs", type=int, help="batch: submissions graded in parallel (default: number of cores)")
    parser.add_argument("--force", action="store_true", help="batch: regrade submissions already graded")
    parser.add_argument("--scheduler", help="batch: grade on a Dask cluster at this address (also $DASK_SCHEDULER_ADDRESS)")
    parser.add_argument("--cluster", choices=("slurm",), help="batch: start a Dask cluster with dask-jobqueue")
    parser.add_argument("--workers", type=int, default=2, help="batch: workers to start with --cluster")
    parser.add_argument("--compare-with", action="append", type=Path, metavar="FOLDER",
                        help="batch: also compare the notebooks with this archive (earlier years, notebooks found online; "
                             "a folder, zip or export; repeatable) in the similarity report")
    return parser


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


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in SUBCOMMANDS:
            return _subcommand(argv[0], argv[1:])
        return _grade(grade_parser().parse_args(argv))
    except (UnknownAssignment, FileNotFoundError, NotADirectoryError) as error:
        message = error.args[0] if error.args else str(error)
        print(f"grade: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("grade: interrupted", file=sys.stderr)
        return 130


def _grade(args: argparse.Namespace) -> int:
    from graders.grade import UsageError, grade_submission

    config = config_from_args(args)
    path: Path = args.submission
    if not path.exists():
        print(f"grade: error: {path}: no such file or directory", file=sys.stderr)
        return 2
    if path.is_dir() or path.suffix == ".zip":
        from graders.batch import run_batch_cli

        return run_batch_cli(path, args, config)
    out = args.out or path.with_name(path.stem + ".graded")
    try:
        result = grade_submission(path, config, out_dir=out)
    except UsageError as error:
        print(f"grade: error: {error}", file=sys.stderr)
        return 2
    from graders.summary_table import print_result

    print_result(result, out)
    return 0


def _subcommand(name: str, argv: list[str]) -> int:
    if name == "data":
        return _data(argv)
    module = {"pdf": "graders.pdf", "student": "graders.bundle", "gradescope": "graders.autograder"}[name]
    import importlib

    return importlib.import_module(module).cli(argv)


def _data(argv: list[str]) -> int:
    from graders.mnist import describe, ensure_mnist

    parser = argparse.ArgumentParser(prog="grade data", description="Show (and provision) the MNIST copy used for grading.")
    parser.add_argument("--mnist", type=Path, help="a full MNIST root to use instead")
    args = parser.parse_args(argv)
    print(describe(ensure_mnist(args.mnist)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
