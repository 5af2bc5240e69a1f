"""Grading one submission: execute → observe → judge → report, as a list of named steps.

:func:`grade_submission` always returns a :class:`GradingResult`: a file that is not a notebook,
a notebook that crashes or hangs, or a failure of the harness itself each become a valid result
with a message, never an exception.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import importlib.util
import os
import platform
import secrets
import threading
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from graders.config import GradeConfig
from graders.execute import ExecutedNotebook, execute_notebook
from graders.judge import PUBLIC_COPY_NOTE, JudgeContext, graded_objects, judge_part
from graders.kernel_session import KernelSession, KillReason
from graders.mnist import ensure_mnist, sandbox_view
from graders.observe import Observations, ProbePlan, observe
from graders.outcome import CheckResult, Outcome
from graders.parts import assign_cells, assignment_mismatch, detect_assignment, written_answer
from graders.result import CellIssue, ExecutionSummary, GradingResult, PartResult, ResultStatus
from graders.assignment import AssignmentSpec
from graders.registry import get_assignment, secret_parts, sent_to_kernel
from graders.submission import InvalidSubmission, Submission, file_sha256, load_submission
from graders.thresholds import thresholds_for
from graders.workspace import Workspace

KERNEL_GRACE_SECONDS = 60.0
"""Extra wall-clock beyond the budgets before the grader stops waiting for the kernel stage."""


class UsageError(Exception):
    """A mistake in how the grader was called (unknown assignment, missing file): exit 2."""


@dataclass
class KernelStage:
    """What the execute and observe stages produced (filled in by a worker thread)."""

    executed: ExecutedNotebook | None = None
    observations: Observations | None = None
    error: str | None = None
    peak_kernel_rss_mb: float = 0.0


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for package, name in (("nbgrade-ml", "harness"), ("torch", "torch"), ("nbclient", "nbclient")):
        try:
            found[name] = version(package)
        except PackageNotFoundError:
            found[name] = "unknown"
    return found


def grade_submission(
    path: Path | str, config: GradeConfig | None = None, out_dir: Path | None = None, note: str = ""
) -> GradingResult:
    """Grade one notebook; write results.json (and the report) into ``out_dir`` when given.

    ``note``: a sentence said first in the result's messages (which file of a submission folder
    was graded and why, :class:`graders.choose.ChosenNotebook`).
    """
    config = config or GradeConfig()
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path}: no such file")
    seed = config.seed if config.seed is not None else secrets.randbelow(2**31)
    started = time.monotonic()
    student_copy = False
    try:
        submission = load_submission(path)
        assignment = resolve_assignment(submission, config)
        # the student bundle: grade what can be graded here (the public checks), and say so first
        student_copy = not config.public_only and not reference_available(assignment)
        if student_copy:
            config = replace(config, public_only=True)
        result = _grade_notebook(submission, assignment, config, seed, started, out_dir)
    except InvalidSubmission as error:
        if not config.public_only and config.assignment and not reference_available(get_assignment(config.assignment)):
            student_copy, config = True, replace(config, public_only=True)
        result = invalid_result(path, config, seed, str(error), time.monotonic() - started)
    except UsageError:
        raise
    except Exception as error:  # noqa: BLE001 - the harness failing still yields a valid result
        detail = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        result = invalid_result(path, config, seed, "The grader failed on this submission; your instructor has the details.",
                                time.monotonic() - started, status=ResultStatus.HARNESS_ERROR, detail=detail)
    if student_copy:
        result = replace(result, messages=(PUBLIC_COPY_NOTE, *result.messages))
    if note:
        result = replace(result, messages=(note, *result.messages))
    if out_dir is not None:
        write_outputs(result, out_dir, config)
    return result


def reference_available(assignment: AssignmentSpec) -> bool:
    """Whether the assignment's own ``reference_module`` (its solution) can be imported: not in the student bundle."""
    return assignment.reference_available()


def _grade_notebook(submission: Submission, assignment: AssignmentSpec, config: GradeConfig, seed: int, started: float,
                    out_dir: Path | None) -> GradingResult:
    data_view = sandbox_view(ensure_mnist(config.mnist_root))  # held-back digits stay out of it
    hidden = assignment.hidden_inputs(seed, data_view)
    workspace = Workspace.create(data_view, slot=_slot(), switch_user=config.sandbox)
    try:
        stage = run_kernel_stage(submission, assignment, hidden, config, data_view, seed, workspace,
                                 meanwhile=(lambda: prepare_judge(assignment, config)) if preload_fits(config) else None)
        executed = stage.executed or _nothing_executed(submission)
        observations = stage.observations or Observations(parts={})
        part_cells = assign_cells(submission.notebook, assignment.parts)
        parts = judge_submission(assignment, observations, hidden, executed, part_cells, submission, config)
    finally:
        workspace.cleanup()
    notebook_path, save_error = None, ""
    if out_dir is not None:
        try:
            notebook_path = save_executed_notebook(executed, out_dir)
        except Exception as error:  # noqa: BLE001 - the grades stand without the executed notebook
            save_error = f"\nexecuted notebook not written: {type(error).__name__}: {error}"
    return GradingResult(
        assignment=assignment.id,
        assignment_title=assignment.rubric.title,
        submission=submission.name,
        sha256=submission.sha256,
        seed=seed,
        graded_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        duration=round(time.monotonic() - started, 2),
        versions=versions(),
        parts=tuple(parts),
        execution=execution_summary(executed, submission, stage),
        defined_names=tuple(n.get("name", "") for n in observations.defined_names),
        messages=(*assignment_warnings(submission, assignment.id), *_stage_messages(stage)),
        public_only=config.public_only,
        instructor_detail=(stage.error or "") + save_error,
        notebook_path=notebook_path,
    )


def resolve_assignment(submission: Submission, config: GradeConfig) -> AssignmentSpec:
    assignment_id = config.assignment or detect_assignment(submission.notebook)
    if assignment_id is None:
        raise InvalidSubmission(
            f"{submission.name}: could not tell which assignment this notebook answers "
            "(no metadata and too few of the assignment's names); grade it with --assignment."
        )
    return get_assignment(assignment_id)


def assignment_warnings(submission: Submission, assignment_id: str) -> tuple[str, ...]:
    """A loud note when the notebook's metadata or headings name another assignment than the one it is graded as."""
    contradiction = assignment_mismatch(submission.notebook, assignment_id)
    return (contradiction.message,) if contradiction else ()


def run_kernel_stage(
    submission: Submission, assignment: AssignmentSpec, hidden: dict, config: GradeConfig, mnist_root: Path, seed: int,
    workspace: Workspace, meanwhile: Callable[[], None] | None = None,
) -> KernelStage:
    """Execute and observe in a worker thread, with a hard wall-clock limit on top of the watchdog.

    The observations stay in ``workspace`` (read lazily by the judge); the caller cleans it up.
    ``meanwhile`` (which must not raise) runs in the calling thread once the kernel's thread has
    started: the grader's own preparation, on the core a single-threaded kernel leaves idle.
    """
    stage = KernelStage()
    session = KernelSession(submission.runnable, workspace, config.limits, mnist_root, seed, sandbox=config.sandbox, hide=config.hide)
    source = assignment.probe_source()
    probed = assignment.probed_parts()
    plan = ProbePlan(source, sent_to_kernel(hidden, probed), secret_parts(hidden, probed))

    def work() -> None:
        try:
            session.start()
            stage.executed = execute_notebook(session, config.limits)
            if session.client is None:
                session.start()  # the kernel died at the very end: probes need a live kernel
            stage.observations = observe(session, stage.executed, plan, config.limits.probe_timeout)
        except Exception as error:  # noqa: BLE001
            stage.error = "".join(traceback.format_exception(type(error), error, error.__traceback__))[-6000:]

    budget = config.limits.total_timeout + config.limits.probe_timeout * (len(probed) + 1) + 120 + KERNEL_GRACE_SECONDS
    worker = threading.Thread(target=work, daemon=True, name="nbgrade-kernel")
    deadline = time.monotonic() + budget
    worker.start()
    if meanwhile is not None:
        meanwhile()
    worker.join(max(0.0, deadline - time.monotonic()))
    if worker.is_alive():
        stage.error = (stage.error or "") + f"kernel stage exceeded {budget:.0f} s; the kernel was killed"
        session.kill(KillReason.HARD_LIMIT, "the grader's hard time limit was reached")
        worker.join(10)
    stage.peak_kernel_rss_mb = session.peak_rss_kb / 1024
    closer = threading.Thread(target=session.shutdown, daemon=True, name="nbgrade-shutdown")
    closer.start()
    closer.join(30)  # the kernel's processes are killed regardless; never wait forever on a client
    return stage


GRADER_IMPORTS_MB = 400
"""The grader's RssAnon once torch is imported (294 MB with the CUDA wheel), with a margin: benchmarks/README.md."""


def preload_fits(config: GradeConfig) -> bool:
    """Whether the judge's imports can be made while the kernel runs: the kernel's memory cap and the
    grader's imports together fit in what this process may use (a container's cgroup limit, the RAM).

    In a 768 MB Gradescope container (kernel cap 568 MB) they do not, and the grader imports after the
    kernel has gone, as it always did: the kernel and the grader's torch are never resident together.
    """
    ceiling = memory_ceiling_mb()
    return ceiling is None or config.limits.memory_mb + GRADER_IMPORTS_MB <= ceiling


def memory_ceiling_mb() -> float | None:
    """The least of the RAM and this process's cgroup memory limit (v1 or v2), in MB; None when unknown."""
    found = []
    try:
        found.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20)
    except (ValueError, OSError):
        pass
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        _, controllers, group = (line.split(":", 2) + ["", ""])[:3]
        if controllers == "":
            files = (Path("/sys/fs/cgroup") / group.lstrip("/") / "memory.max", Path("/sys/fs/cgroup/memory.max"))
        elif "memory" in controllers.split(","):
            files = (Path("/sys/fs/cgroup/memory") / group.lstrip("/") / "memory.limit_in_bytes",
                     Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
        else:
            continue
        for file in files:
            try:
                text = file.read_text().strip()
            except OSError:
                continue
            if text.isdigit():
                found.append(int(text) / 2**20)
            break
    return min(found) if found else None


def prepare_judge(assignment: AssignmentSpec, config: GradeConfig) -> None:
    """Import torch (the checks' autograd references) and the report's modules while the kernel runs.

    Profiled (benchmarks/README.md): these imports, made after the kernel stage, were seconds of
    ``grade``'s wall time spent while the kernel was idle. Nothing here may fail a grade: an import
    error is met again, where it always was, when a check needs the module.
    """
    try:
        if importlib.util.find_spec("torch") is not None:
            importlib.import_module("torch")
        importlib.import_module("graders.gradescope")
        if config.write_report:
            importlib.import_module("graders.report")
    except Exception:  # noqa: BLE001 - see above
        pass


_slot_lock = threading.Lock()
_slot_counter = [0]


def _slot() -> int:
    """A sandbox uid slot unique within this process (parallel graders use separate processes)."""
    import os

    with _slot_lock:
        _slot_counter[0] += 1
        return (os.getpid() * 7 + _slot_counter[0]) % 4000


def judge_submission(
    assignment: AssignmentSpec,
    observations: Observations,
    hidden: dict,
    executed: ExecutedNotebook,
    part_cells: dict[str, list[int]],
    submission: Submission,
    config: GradeConfig,
) -> list[PartResult]:
    reference = None if config.public_only or not assignment.reference_module else LazyReference(assignment.reference_module)
    thresholds = thresholds_for(assignment)
    with one_blas_thread():
        return _judge_parts(assignment, observations, hidden, executed, part_cells, submission, config, reference, thresholds)


class LazyReference:
    """The reference solution module, imported when a check first uses it (``ctx.ref().name``).

    Profiled (benchmarks/README.md): importing it for every grade cost ece685d 4.6 s of CPU and
    160 MB of the grader's memory (sklearn, scipy, torchvision), and no check of the built-in
    assignments reads it; an assignment whose checks do gets it on first use.
    """

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        return getattr(importlib.import_module(self._name), attribute)

    def __repr__(self) -> str:
        return f"<reference solution {self._name}, imported on first use>"


class one_blas_thread:
    """BLAS/OpenMP (numpy's, torch's) at one thread while the judge computes: its matrices are small, and
    on 2 shared cores OpenBLAS's spinning threads made ece685d's shift-tolerant image comparison
    5–8× slower (profiled: benchmarks/README.md). Without threadpoolctl (a scikit-learn dependency) nothing changes."""

    def __enter__(self) -> None:
        self._limits = None
        try:
            from threadpoolctl import threadpool_limits

            self._limits = threadpool_limits(limits=1)
        except Exception:  # noqa: BLE001 - a speed setting, never a reason to fail a grade
            self._limits = None

    def __exit__(self, *exc: object) -> None:
        if self._limits is not None:
            self._limits.restore_original_limits()


def _judge_parts(assignment: AssignmentSpec, observations: Observations, hidden: dict, executed: ExecutedNotebook,
                 part_cells: dict[str, list[int]], submission: Submission, config: GradeConfig, reference: Any,
                 thresholds: Any) -> list[PartResult]:
    parts = []
    for spec in assignment.rubric.parts:
        ctx = JudgeContext(spec.id, observations, hidden, executed, part_cells, reference, thresholds)
        checks = judge_part(assignment.rubric, spec.id, ctx, config.public_only)
        observation = observations.part(spec.id)
        answer = written_answer(submission.notebook, part_cells.get(spec.id, [])) if spec.self_graded_points or spec.self_graded_prompt else None
        parts.append(
            PartResult(
                id=spec.id,
                title=spec.title,
                score=sum(c.score for c in checks),
                max_score=spec.points,
                self_graded_points=spec.self_graded_points,
                checks=tuple(checks),
                graded_objects=graded_objects(observation),
                warnings=tuple(dict.fromkeys(w for c in checks for w in c.warnings)),
                cells=tuple(part_cells.get(spec.id, [])),
                answer_markdown=answer,
            )
        )
    return parts


def execution_summary(executed: ExecutedNotebook, submission: Submission, stage: KernelStage) -> ExecutionSummary:
    issues = tuple(
        CellIssue(run.index, run.status, run.summary, run.traceback) for run in executed.runs if run.status != "ok"
    )
    notes = [*submission.notes, *executed.notes, *(stage.observations.notes if stage.observations else ())]
    return ExecutionSummary(
        status=executed.status,
        duration=round(executed.duration, 2),
        cell_count=len(submission.notebook.cells),
        issues=issues,
        kernel_restarts=executed.restarts,
        notes=tuple(notes),
    )


def _stage_messages(stage: KernelStage) -> list[str]:
    if stage.error and stage.executed is None:
        return ["The notebook could not be run to the end; parts that needed it score 0."]
    return []


def _nothing_executed(submission: Submission) -> ExecutedNotebook:
    return ExecutedNotebook(submission.runnable, [], 0.0, "not_run")


NOT_GRADED = "Not graded: the submission could not be graded (the reason is at the top)."
"""Each check's message in an invalid result: the reason itself is said once, in the result's messages."""


def invalid_result(
    path: Path, config: GradeConfig, seed: int, message: str, duration: float,
    status: ResultStatus = ResultStatus.INVALID_SUBMISSION, detail: str = "",
) -> GradingResult:
    """A zero for every check of the assignment (when known), with one clear message, said once."""
    assignment_id = config.assignment
    parts: tuple[PartResult, ...] = ()
    title = "Unknown assignment"
    if assignment_id:
        assignment = get_assignment(assignment_id)
        title = assignment.rubric.title
        parts = tuple(
            PartResult(
                id=spec.id, title=spec.title, score=0.0, max_score=spec.points, self_graded_points=spec.self_graded_points,
                checks=tuple(
                    CheckResult(name=c.name, part=c.part, description=c.description, outcome=Outcome.NOT_RUN, score=0.0,
                                max_score=c.points, message=NOT_GRADED, hidden_inputs=c.hidden_inputs, visibility=c.visibility)
                    for c in assignment.rubric.checks_for(spec.id)
                ),
            )
            for spec in assignment.rubric.parts
        )
    sha = file_sha256(path) if path.is_file() else ""
    return GradingResult(
        assignment=assignment_id or "unknown", assignment_title=title, submission=path.name, sha256=sha, seed=seed,
        graded_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), duration=round(duration, 2),
        versions=versions(), parts=parts, execution=ExecutionSummary("not_run", 0.0, 0), messages=(message,),
        status=status, public_only=config.public_only, instructor_detail=detail,
    )


def save_executed_notebook(executed: ExecutedNotebook, out_dir: Path) -> str:
    """executed.ipynb, atomically, its text cleaned (lone surrogates and NULs from the kernel → U+FFFD)."""
    import nbformat

    from graders.safetext import clean_data, write_text_atomic

    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "executed.ipynb"
    notebook = nbformat.from_dict(clean_data(executed.notebook, lenient=True))
    write_text_atomic(target, nbformat.writes(notebook))
    return target.name


def write_outputs(result: GradingResult, out_dir: Path, config: GradeConfig) -> None:
    """results.json (Gradescope), grading.json (everything, for reports and batch), report.html."""
    from graders.gradescope import write_results_json

    out_dir.mkdir(parents=True, exist_ok=True)
    # Both atomic (temporary file, fsync, os.replace; a symlink planted there is replaced, not
    # followed), and the result's text was cleaned when it was built (GradingResult.__post_init__).
    write_results_json(result, out_dir / "results.json", instructor=config.instructor)
    result.write_json(out_dir / "grading.json")
    if config.write_report:
        try:
            from graders.report import write_report

            write_report(result, out_dir, instructor=config.instructor)
        except Exception as error:  # noqa: BLE001 - results.json is written; a report failure must not lose it
            import sys

            print(f"grade: warning: report.html not written ({type(error).__name__}: {error})", file=sys.stderr)
