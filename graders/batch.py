"""Batch grading: a folder, zip or Gradescope export in; per-submission results, a gradebook and a class summary out.

    grade SUBMISSIONS [--out DIR] [-j N] [--force] [--seed N] [--assignment ID [--force-assignment]]
                      [--scheduler ADDRESS | --cluster slurm]

The orchestrator, as a list of named steps (:func:`grade_batch`):

1. collect the submissions (:mod:`graders.collect`); when an assignment is given (``--assignment``),
   stop with :class:`AssignmentMismatch` if any notebook's metadata or headings name another one
   (``--force-assignment`` grades them anyway, each result saying so), so that a wrong id never
   gives a whole class 0;
2. fix the batch's seed — ``--seed``, else the one recorded in ``DIR/manifest.json``, else one
   drawn now and recorded — so that every submission, and every later regrade, sees the same
   hidden inputs;
3. skip what ``DIR`` already holds for the same notebook content, harness version, seed and
   settings (unless ``--force``);
4. grade the rest, each submission in a worker process (:mod:`graders.pool`) or on a Dask
   cluster (:mod:`graders.cluster`), into a staging folder that is moved to ``DIR/<id>/`` once
   complete — a worker that dies still gives its submission a row, marked ``crashed``;
5. write ``DIR/gradebook.csv`` (:mod:`graders.gradebook`), the similarity report
   (``DIR/similarity.csv`` and side-by-side pages, :mod:`graders.similarity`: the submitted code,
   compared across the class and with the ``--compare-with`` archives, here in the client so that a
   Dask batch gets the same report) and ``DIR/summary.html`` (:mod:`graders.class_summary`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Sequence, TextIO

from graders.collect import BatchInputError, BatchItem, CollectedBatch, collect_submissions
from graders.config import GradeConfig
from graders.gradebook import GradebookRow, RowStatus, row_from_result, write_gradebook
from graders.pool import GradeTask, LocalRunner, TaskOutcome, TaskRunner, local_host
from graders.progress import BatchProgress, format_duration
from graders.result import GradingResult, ResultStatus

if TYPE_CHECKING:
    from graders.similarity import SimilarityReport

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1
GRADEBOOK_NAME = "gradebook.csv"
SUMMARY_NAME = "summary.html"
STAGING_DIR = ".staging"
LOG_DIR = ".logs"
CRASH_MESSAGE = "The grader stopped while grading this submission; your instructor has the details."


class BatchUsageError(Exception):
    """A mistake in how the batch was asked for (bad --jobs, cluster extra missing …): exit 2."""


@dataclass(frozen=True)
class BatchResult:
    """What a batch run produced."""

    out_dir: Path
    rows: list[GradebookRow]
    graded: int
    """Submissions graded in this run."""
    skipped: int
    """Submissions already graded in ``out_dir`` (same content, harness, seed and settings)."""
    seed: int
    seconds: float
    kind: str
    """``folder``, ``zip``, ``gradescope`` or ``gradescope-zip``."""
    similar_pairs: int = 0
    """Pairs of alike notebooks listed in ``similarity.csv``."""

    @property
    def gradebook(self) -> Path:
        return self.out_dir / GRADEBOOK_NAME

    @property
    def summary(self) -> Path:
        return self.out_dir / SUMMARY_NAME

    def row(self, item_id: str) -> GradebookRow:
        return next(row for row in self.rows if row.id == item_id)


# ----------------------------------------------------------------------------- manifest
@dataclass
class Manifest:
    """``DIR/manifest.json``: the batch's seed and, per submission, what was graded and how."""

    seed: int | None = None
    entries: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def load(cls, out_dir: Path) -> "Manifest":
        path = out_dir / MANIFEST_NAME
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return cls()
        if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
            return cls()
        return cls(seed=data.get("seed"), entries=dict(data.get("submissions", {})))

    def save(self, out_dir: Path) -> None:
        """Written after every submission (atomically), so an interrupted batch resumes."""
        data = {"format": MANIFEST_FORMAT, "seed": self.seed, "submissions": self.entries}
        temporary = out_dir / (MANIFEST_NAME + ".tmp")
        temporary.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(temporary, out_dir / MANIFEST_NAME)

    def is_current(self, item: BatchItem, key: dict[str, str], out_dir: Path) -> bool:
        """Already graded: same content and grading key, its files present, and not a crash."""
        entry = self.entries.get(item.id)
        return (
            entry is not None
            and entry.get("sha256") == item.sha256
            and entry.get("source") == item.source
            and all(entry.get(k) == v for k, v in key.items())
            and entry.get("row", {}).get("status") != RowStatus.CRASHED
            and (out_dir / item.id / "grading.json").is_file()
        )


def grading_key(config: GradeConfig) -> dict[str, str]:
    """What makes two gradings of the same notebook comparable: harness version, seed, settings.

    Threads are left out: they depend on the number of workers, not on what is graded.
    """
    from graders.grade import versions

    settings = asdict(config)
    settings.pop("seed")
    settings["limits"].pop("threads")
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return {"harness": versions()["harness"], "seed": str(config.seed), "settings": digest}


def batch_seed(config: GradeConfig, manifest: Manifest) -> int:
    """``--seed``, else the seed this folder was graded with, else one drawn now (and recorded)."""
    if config.seed is not None:
        return config.seed
    if isinstance(manifest.seed, int):
        return manifest.seed
    return secrets.randbelow(2**31)


# ----------------------------------------------------------------------------- the batch
def grade_batch(
    source: Path,
    out_dir: Path,
    config: GradeConfig,
    jobs: int | None = None,
    force: bool = False,
    *,
    runner: TaskRunner | None = None,
    stream: TextIO | None = None,
    tty: bool | None = None,
    check_assignment_first: bool = True,
    compare_with: Sequence[Path] = (),
) -> BatchResult:
    """Grade every submission under ``source`` into ``out_dir``; see the module docstring.

    ``compare_with`` are archives (folders, zips, exports of earlier years' or published notebooks)
    that the similarity report compares the submissions with; they are collected before grading
    starts, so that a wrong path stops the batch at once rather than after it. ``runner`` grades the
    submissions (default: ``jobs`` worker processes on this machine; :func:`graders.runner.runner_for`
    gives a Dask one); ``jobs`` also scales each kernel's threads.
    """
    started = time.monotonic()
    workers = jobs if jobs is not None else (os.cpu_count() or 1)
    if workers < 1:
        raise BatchUsageError(f"-j/--jobs must be at least 1 (got {jobs})")
    out_dir.mkdir(parents=True, exist_ok=True)
    collected = collect_submissions(source, exclude=out_dir)
    archives: list[tuple[Path, CollectedBatch]] = []
    try:
        archives.extend((path, collect_archive(path, out_dir)) for path in compare_with)
        if config.assignment and check_assignment_first:
            try:
                check_assignment(collected, config.assignment)
            except AssignmentMismatch:
                with contextlib.suppress(OSError):
                    out_dir.rmdir()  # made just now for this batch, and nothing was graded into it
                raise
        manifest = Manifest.load(out_dir)
        config = replace(config, seed=batch_seed(config, manifest), limits=config.limits.scaled_for_workers(workers))
        manifest.seed = config.seed
        run = BatchRun(collected, out_dir, config, manifest, force)
        run.archives = [(path, archive.items) for path, archive in archives]
        run.grade(runner or LocalRunner(workers), BatchProgress(len(collected.items), 0, stream, tty))
        run.write_outputs()
    finally:
        collected.cleanup()
        for _, archive in archives:
            archive.cleanup()
        shutil.rmtree(out_dir / STAGING_DIR, ignore_errors=True)
    return BatchResult(out_dir, run.ordered_rows(), run.graded, run.skipped, config.seed or 0,
                       round(time.monotonic() - started, 2), collected.kind, run.similar_pairs)


def collect_archive(path: Path, out_dir: Path) -> CollectedBatch:
    """The notebooks of one ``--compare-with`` archive (folder, zip or export); BatchInputError when it has none."""
    try:
        return collect_submissions(path, exclude=out_dir)
    except BatchInputError as error:
        raise BatchInputError(f"--compare-with {error}") from None


class BatchRun:
    """The state of one batch run: which items to grade, the rows so far, the manifest."""

    def __init__(self, collected: CollectedBatch, out_dir: Path, config: GradeConfig, manifest: Manifest, force: bool) -> None:
        self.items = {item.id: item for item in collected.items}
        self.out_dir = out_dir
        self.config = config
        self.manifest = manifest
        self.key = grading_key(config)
        self.rows: dict[str, GradebookRow] = {}
        self.graded = 0
        self.progress = BatchProgress(0)
        self.archives: list[tuple[Path, list[BatchItem]]] = []
        """The ``--compare-with`` archives: each path and the notebooks collected from it."""
        self.similar_pairs = 0
        self.todo = [item for item in collected.items if force or not manifest.is_current(item, self.key, out_dir)]
        self.skipped = len(collected.items) - len(self.todo)
        todo_ids = {item.id for item in self.todo}
        for item in collected.items:
            if item.id not in todo_ids:
                row = GradebookRow.from_dict(manifest.entries[item.id]["row"])
                self.rows[item.id] = replace(row, name=item.name, email=item.email)

    def grade(self, runner: TaskRunner, progress: BatchProgress) -> None:
        """Grade the items that need it, recording each as it finishes."""
        progress.skipped = self.skipped
        progress.start()
        self.progress = progress
        staging = self.out_dir / STAGING_DIR
        shutil.rmtree(staging, ignore_errors=True)
        tasks = []
        for item in self.todo:
            if item.path is None:
                result = invalid_item_result(item, self.config)
                self.record(item, result, row_from_result(item.id, result, host=local_host()), worker="")
            else:
                tasks.append(GradeTask(item.id, item.path, staging / item.id, item.choice))
        if tasks:
            runner.run(tasks, self.config, self.on_done, prepare=self.prepare, log_dir=self.out_dir / LOG_DIR)
        progress.finish()

    def prepare(self, task: GradeTask) -> TaskOutcome | None:
        """A file that cannot be read as a notebook is graded here, without a worker or a kernel."""
        result = unreadable_result(task.notebook, self.config)
        if result is None:
            return None
        if task.note:
            result = replace(result, messages=(task.note, *result.messages))
        write_result_files(result, task.out_dir, self.config)
        row = row_from_result(task.id, result, host=local_host())
        return TaskOutcome(task.id, True, result.duration, local_host(), "", "", row.to_dict())

    def on_done(self, outcome: TaskOutcome) -> None:
        """Move a finished submission into place (or write its crash result) and record its row."""
        item = self.items[outcome.id]
        staging = self.out_dir / STAGING_DIR / item.id
        if outcome.graded and (staging / "grading.json").is_file():
            final = commit_folder(staging, self.out_dir / item.id)
            result = GradingResult.from_dict(json.loads((final / "grading.json").read_text()))
            row = GradebookRow.from_dict(outcome.row) if outcome.row else row_from_result(item.id, result, host=outcome.host)
            self.record(item, result, row, outcome.worker)
        else:
            result = crash_result(item, self.config, outcome)
            self.record(item, result, row_from_result(item.id, result, host=outcome.host, crashed=True), outcome.worker)

    def record(self, item: BatchItem, result: GradingResult, row: GradebookRow, worker: str) -> None:
        """Write outputs for results made here (crash, no notebook), update rows, manifest and progress."""
        if row.status == RowStatus.CRASHED or item.path is None:
            shutil.rmtree(self.out_dir / item.id, ignore_errors=True)
            write_result_files(result, self.out_dir / item.id, self.config)
        row = replace(row, name=item.name, email=item.email)
        self.rows[item.id] = row
        self.graded += 1
        self.manifest.entries[item.id] = {
            "sha256": item.sha256, "source": item.source, **self.key, "row": row.to_dict(),
            "worker": worker, "graded_at": result.graded_at,
        }
        self.manifest.save(self.out_dir)
        self.progress.update(item.id, row.total, row.max_total, row.status, row.seconds)

    def ordered_rows(self) -> list[GradebookRow]:
        return [self.rows[item_id] for item_id in self.items if item_id in self.rows]

    def write_outputs(self) -> None:
        """gradebook.csv, the similarity report and summary.html over every submission of the input (graded now or before)."""
        from graders.class_summary import write_class_summary

        rows = self.ordered_rows()
        write_gradebook(rows, self.out_dir / GRADEBOOK_NAME)
        results = {row.id: load_result(self.out_dir / row.id) for row in rows}
        similarity = self.write_similarity(results)
        write_class_summary(rows, results, self.out_dir / SUMMARY_NAME, seed=self.config.seed, similarity=similarity)

    def write_similarity(self, results: dict[str, GradingResult | None]) -> SimilarityReport | str:
        """similarity.csv and the side-by-side pages: the report, or why it could not be made (the grades stand)."""
        from graders.similarity import batch_similarity

        assignments = {item_id: result.assignment for item_id, result in results.items() if result is not None and result.assignment}
        try:
            report = batch_similarity(list(self.items.values()), assignments, self.out_dir, self.archives)
        except Exception as error:  # noqa: BLE001 - hours of grading still get their gradebook and summary
            return f"The similarity report could not be made: {type(error).__name__}: {error}"
        self.similar_pairs = len(report.pairs)
        return report


# ----------------------------------------------------------------------------- results made by the batch
def invalid_item_result(item: BatchItem, config: GradeConfig) -> GradingResult:
    """The result of a submission that has no gradable notebook (none found, too large)."""
    from graders.grade import invalid_result

    return invalid_result(Path(item.source), config, config.seed or 0, item.problem or "Nothing to grade.", 0.0)


def unreadable_result(path: Path, config: GradeConfig) -> GradingResult | None:
    """What ``grade_submission`` returns for a file that is not a gradable notebook; None when it is one.

    Reading is parsing JSON (bounded by the submission size limit); nothing of the student runs.
    """
    from graders.grade import invalid_result
    from graders.submission import InvalidSubmission, load_submission

    started = time.monotonic()
    try:
        load_submission(path)
    except InvalidSubmission as error:
        return invalid_result(path, config, config.seed or 0, str(error), time.monotonic() - started)
    return None


def crash_result(item: BatchItem, config: GradeConfig, outcome: TaskOutcome) -> GradingResult:
    """A zero with one message for a submission whose worker died or hung (detail for the instructor)."""
    from graders.grade import invalid_result

    assert item.path is not None
    detail = f"worker {outcome.worker or '?'} on {outcome.host}: {outcome.error or 'no result was written'}"
    return invalid_result(item.path, config, config.seed or 0, CRASH_MESSAGE, outcome.seconds, status=ResultStatus.HARNESS_ERROR, detail=detail)


def write_result_files(result: GradingResult, out_dir: Path, config: GradeConfig) -> None:
    from graders.grade import write_outputs

    write_outputs(result, out_dir, config)


def commit_folder(staging: Path, final: Path) -> Path:
    """Replace ``final`` by the complete ``staging`` folder (a rename on the same filesystem)."""
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)
    return final


def load_result(folder: Path) -> GradingResult | None:
    try:
        return GradingResult.from_dict(json.loads((folder / "grading.json").read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


# ----------------------------------------------------------------------------- command line
def default_out_dir(path: Path) -> Path:
    """``<folder>.graded/`` beside a folder, ``<name>.graded/`` beside ``<name>.zip``."""
    base = path.stem if path.is_file() else path.name
    return path.with_name(base + ".graded")


@dataclass(frozen=True)
class BatchOptions:
    """How ``grade SUBMISSIONS`` was asked to run a batch (built by :mod:`graders.cli`)."""

    out_dir: Path | None = None
    """Where the batch's outputs go; default ``<SUBMISSIONS>.graded/`` beside the input."""
    jobs: int | None = None
    """Submissions graded at once on this machine; default: the number of cores."""
    force: bool = False
    """Regrade submissions that ``out_dir`` already holds for the same content and settings."""
    scheduler: str | None = None
    """A Dask scheduler's address (``$DASK_SCHEDULER_ADDRESS`` when None and no ``cluster``)."""
    cluster: str | None = None
    """A Dask cluster to start (``slurm``) instead of grading on this machine."""
    cluster_workers: int = 2
    """Workers to start with ``cluster``."""
    force_assignment: bool = False
    """Grade with the configured assignment even when notebooks contradict it (see :func:`check_assignment`)."""
    compare_with: tuple[Path, ...] = ()
    """Earlier submissions (folders, zips) to compare this batch's notebooks with, for the similarity report."""

    def resolved_out_dir(self, source: Path) -> Path:
        return self.out_dir or default_out_dir(source.resolve())

    def resolved_scheduler(self) -> str | None:
        if self.scheduler:
            return self.scheduler
        return None if self.cluster else os.environ.get("DASK_SCHEDULER_ADDRESS") or None

    @property
    def on_dask(self) -> bool:
        """The batch is to be graded on a Dask cluster (a scheduler's address, or a cluster to start)."""
        return bool(self.resolved_scheduler() or self.cluster)


class AssignmentMismatch(BatchUsageError):
    """``--assignment`` contradicts what the batch's notebooks say they answer: stop before grading them all to 0."""


def check_assignment(collected: CollectedBatch, assignment_id: str) -> None:
    """Raise :class:`AssignmentMismatch` when any notebook's metadata or headings name another assignment.

    Reading a notebook here is parsing its JSON (bounded by the submission size limit); nothing runs.
    """
    from graders.parts import assignment_mismatch
    from graders.submission import InvalidSubmission, read_notebook

    contradicting = []
    for item in collected.items:
        if item.path is None:
            continue
        try:
            mismatch = assignment_mismatch(read_notebook(item.path), assignment_id)
        except (InvalidSubmission, OSError, ValueError):
            continue
        if mismatch is not None:
            contradicting.append((item.id, mismatch))
    if contradicting:
        first_id, first = contradicting[0]
        raise AssignmentMismatch(
            f"--assignment {assignment_id} contradicts {len(contradicting)} of {len(collected.items)} notebooks "
            f"(e.g. {first_id}: {first.evidence}); nothing was graded. Check the assignment id, "
            "or pass --force-assignment to grade them as it anyway (each result will say so)"
        )


def run_batch(
    source: Path, options: BatchOptions, config: GradeConfig, stream: TextIO | None = None, runner: TaskRunner | None = None
) -> BatchResult:
    """``grade SUBMISSIONS …`` as a library call: the batch's options resolved, then :func:`grade_batch`.

    ``runner``: :func:`graders.runner.runner_for` of the same options (needed when they ask for Dask).
    """
    if runner is None and options.on_dask:
        raise BatchUsageError("the options ask for a Dask cluster: pass runner=graders.runner.runner_for(options)")
    return grade_batch(source, options.resolved_out_dir(source), config, options.jobs, options.force, runner=runner,
                       stream=stream, check_assignment_first=not options.force_assignment,
                       compare_with=options.compare_with)


def format_batch_result(result: BatchResult) -> str:
    graded = [row for row in result.rows if row.status in (RowStatus.GRADED, RowStatus.TIMED_OUT)]
    mean = sum(row.total for row in graded) / len(graded) if graded else 0.0
    maximum = max((row.max_total for row in graded), default=0.0)
    problems = [row for row in result.rows if row.status != RowStatus.GRADED]
    lines = [
        f"{len(result.rows)} submissions ({result.kind}): {result.graded} graded now, {result.skipped} already graded; "
        f"seed {result.seed}; {format_duration(result.seconds)}",
        f"  mean {mean:.1f} / {maximum:g} over {len(graded)} graded",
    ]
    lines.extend(f"  ! {row.id}: {row.status}" for row in problems[:20])
    lines.append(f"  similarity: {result.similar_pairs} pair(s) of alike notebooks in {result.out_dir / 'similarity.csv'}"
                 " (evidence for a person to weigh, never a verdict)")
    lines.append(f"  written: {result.gradebook}, {result.summary}, and one folder per submission in {result.out_dir}")
    return "\n".join(lines)

