"""Local grading workers: separate processes that grade one submission at a time.

Each worker is a ``python -m graders.pool`` subprocess that reads one JSON request per line on
stdin, calls :func:`graders.grade.grade_submission` into the requested folder and answers one
JSON line. Nothing crosses the pipe but paths and short strings; the results themselves are the
files ``grade_submission`` writes (results.json, grading.json, report.html, executed.ipynb).

Why not :class:`concurrent.futures.ProcessPoolExecutor`: when one of its processes dies, the
whole pool breaks and every in-flight submission fails with it, without saying which one killed
it. Here a dead or hung worker costs exactly its own submission (which still gets a row, marked
``crashed``) and is replaced. Why long-lived workers rather than one process per submission: the
grader imports torch and the reference solutions (≈4 s of CPU on the 2-core CI machine) once per
worker instead of once per submission; a worker is replaced after :data:`MAX_TASKS_PER_WORKER`
submissions so that nothing accumulates. Each worker watches its parent and, when orphaned,
kills its kernels and exits.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import IO, Any, Callable, Protocol

from graders.config import GradeConfig, Limits
from graders.sandbox import isolated_python

MAX_TASKS_PER_WORKER = 25
"""Submissions one worker grades before it is replaced by a fresh process."""
HARD_MARGIN_SECONDS = 600.0
"""Wall clock beyond the kernel's budgets before a worker is killed (judging, report, start-up)."""
WORKER_START_TIMEOUT = 300.0
"""Seconds a new worker may take to import the grader, torch and MNIST before it counts as failed."""


@dataclass(frozen=True)
class GradeTask:
    """Grade one notebook into ``out_dir`` (a staging folder the batch commits afterwards)."""

    id: str
    notebook: Path
    out_dir: Path
    note: str = ""
    """Said first in the result (which file of a submission folder was graded and why)."""


@dataclass(frozen=True)
class TaskOutcome:
    """How grading one submission ended, from the batch's point of view."""

    id: str
    graded: bool
    """True when ``grade_submission`` returned and wrote its files into the task's ``out_dir``."""
    seconds: float
    """Wall-clock seconds the worker spent (until the crash when it crashed)."""
    host: str
    worker: str = ""
    """Which worker process graded it (``local-1``, a Dask worker's name …)."""
    error: str = ""
    """Why nothing was written: a crash or the hard limit (instructor detail)."""
    row: dict[str, Any] | None = None
    """The gradebook row (:meth:`graders.gradebook.GradebookRow.to_dict`) the worker computed, host included."""


# ----------------------------------------------------------------------------- configuration
def config_to_dict(config: GradeConfig) -> dict[str, Any]:
    """JSON-ready form of a config, for worker processes (the inverse of :func:`config_from_dict`)."""
    data = asdict(config)
    data["mnist_root"] = str(config.mnist_root) if config.mnist_root is not None else None
    return data


def config_from_dict(data: dict[str, Any]) -> GradeConfig:
    """The config that :func:`config_to_dict` described (JSON lists become tuples again)."""
    values = {f.name: _from_json(data[f.name]) for f in fields(GradeConfig) if f.name in data}
    limit_names = {f.name for f in fields(Limits)}
    values["limits"] = Limits(**{k: v for k, v in data.get("limits", {}).items() if k in limit_names})
    if values.get("mnist_root"):
        values["mnist_root"] = Path(values["mnist_root"])
    return GradeConfig(**values)


def _from_json(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def hard_timeout(limits: Limits) -> float:
    """Seconds after which a worker grading one submission is killed, whatever it is doing.

    ``grade_submission`` enforces its own budgets (cells, total, probes); this only catches a
    grader that hangs outside them.
    """
    return limits.total_timeout + limits.probe_timeout * 8 + HARD_MARGIN_SECONDS


# ----------------------------------------------------------------------------- parent side
class GradingWorker:
    """One worker subprocess and the pipes to it."""

    def __init__(self, config: GradeConfig, name: str, log_path: Path | None = None) -> None:
        self.config = config
        self.name = name
        self.log_path = log_path
        self.process: subprocess.Popen | None = None
        self.tasks_done = 0
        self.kill_reason = ""
        self._log: IO[bytes] | None = None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start the process and wait until it has imported the grader (raises when it cannot)."""
        self._log = self.log_path.open("ab") if self.log_path else None
        self.process = subprocess.Popen(
            isolated_python("graders.pool"), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._log or subprocess.DEVNULL, env=worker_environment(self.config.limits.threads),
            start_new_session=True,
        )
        ready = self._exchange({"config": config_to_dict(self.config)}, WORKER_START_TIMEOUT)
        if ready is None or not ready.get("ready"):
            self.stop()
            raise RuntimeError(f"grading worker {self.name} did not start: {self.kill_reason or self.exit_description()}")

    def grade(self, task: GradeTask, timeout: float) -> TaskOutcome:
        """Grade one submission; a crash or a hang becomes an outcome, never an exception."""
        started = time.monotonic()
        self.kill_reason = ""
        reply = self._exchange({"id": task.id, "notebook": str(task.notebook), "out_dir": str(task.out_dir), "note": task.note},
                               timeout)
        seconds = round(time.monotonic() - started, 2)
        self.tasks_done += 1
        if reply is None:
            self.stop()
            return TaskOutcome(task.id, False, seconds, local_host(), self.name, self.kill_reason or self.exit_description())
        return TaskOutcome(task.id, bool(reply.get("graded")), seconds, local_host(), self.name, str(reply.get("error", "")),
                           reply.get("row"))

    def _exchange(self, request: dict, timeout: float) -> dict | None:
        """Send one request line and read one reply line; None when the worker died or timed out."""
        assert self.process is not None and self.process.stdin is not None and self.process.stdout is not None
        timer = threading.Timer(timeout, self.kill, args=(f"the grader exceeded its hard limit of {timeout:.0f} s and was killed",))
        timer.daemon = True
        timer.start()
        try:
            self.process.stdin.write((json.dumps(request) + "\n").encode())
            self.process.stdin.flush()
            line = self.process.stdout.readline()
        except (BrokenPipeError, OSError):
            line = b""
        finally:
            timer.cancel()
        return json.loads(line) if line.strip() else None

    def exit_description(self) -> str:
        if self.process is None:
            return "the grading worker was not running"
        try:
            code = self.process.wait(10)
        except subprocess.TimeoutExpired:
            return "the grading worker stopped answering"
        if code < 0:
            return f"the grading worker was killed by {signal.Signals(-code).name}"
        return f"the grading worker exited with status {code}"

    def kill(self, reason: str = "") -> None:
        """Kill the worker, its process group and every descendant (its kernels)."""
        if reason and not self.kill_reason:
            self.kill_reason = reason
        if self.process is None:
            return
        kill_tree(self.process.pid)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                assert self.process.stdin is not None
                self.process.stdin.close()
                self.process.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.kill()
                self.process.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid``'s descendants (kernels run in their own sessions), then its process group."""
    import psutil

    try:
        descendants = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        descendants = []
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass
    for child in descendants:
        try:
            child.kill()
        except psutil.Error:
            pass


def worker_environment(threads: int) -> dict[str, str]:
    """The worker's environment: BLAS/torch threads capped (the grader is found by :func:`isolated_python`)."""
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NBGRADE_THREADS"):
        env[name] = str(threads)
    # Kernels inherit this. OpenMP's default spin-waiting made a 2-thread kernel (-j 1 on 2 cores)
    # 7× slower under other load (4 csci145 notebooks: 410 s, against 67 s passive and 61 s with 1 thread).
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def local_host() -> str:
    return socket.gethostname()


class TaskRunner(Protocol):
    """Where a batch's submissions are graded: this machine's worker processes, or a Dask cluster.

    The batch hands its runner the tasks and is called back, serialised, as each finishes; it
    never needs to know which runner it has (:class:`LocalRunner`, :class:`graders.cluster.DaskRunner`).
    """

    def run(self, tasks: list[GradeTask], config: GradeConfig, on_done: Callable[[TaskOutcome], None], *,
            prepare: Callable[[GradeTask], TaskOutcome | None] | None = None, log_dir: Path | None = None) -> None:
        """Grade ``tasks``; ``prepare`` and ``on_done`` as in :func:`run_local`; ``log_dir`` for the workers' logs."""


@dataclass(frozen=True)
class LocalRunner:
    """Grade on this machine with ``jobs`` worker processes at once (:func:`run_local`)."""

    jobs: int

    def run(self, tasks: list[GradeTask], config: GradeConfig, on_done: Callable[[TaskOutcome], None], *,
            prepare: Callable[[GradeTask], TaskOutcome | None] | None = None, log_dir: Path | None = None) -> None:
        if log_dir is not None:
            log_dir.mkdir(exist_ok=True)
        run_local(tasks, config, self.jobs, on_done, log_dir=log_dir, prepare=prepare)


def run_local(
    tasks: list[GradeTask], config: GradeConfig, jobs: int, on_done: Callable[[TaskOutcome], None],
    log_dir: Path | None = None, prepare: Callable[[GradeTask], TaskOutcome | None] | None = None,
) -> None:
    """Grade ``tasks`` with ``jobs`` workers; ``on_done`` is called (serialised) as each finishes.

    ``prepare`` runs first for each task in the parent; when it returns an outcome (a file that is
    not a notebook needs no kernel), no worker is involved. Workers start only when needed.
    """
    pending: queue.SimpleQueue[GradeTask] = queue.SimpleQueue()
    for task in tasks:
        pending.put(task)
    lock = threading.Lock()
    workers: list[GradingWorker] = []
    timeout = hard_timeout(config.limits)

    def report(outcome: TaskOutcome) -> None:
        with lock:
            on_done(outcome)

    def slot(index: int) -> None:
        worker: GradingWorker | None = None
        while True:
            try:
                task = pending.get_nowait()
            except queue.Empty:
                break
            early = prepare(task) if prepare is not None else None
            if early is not None:
                report(early)
                continue
            if worker is None or not worker.alive:
                worker = GradingWorker(config, f"local-{index}", log_dir / f"worker-{index}.log" if log_dir else None)
                workers.append(worker)
                try:
                    worker.start()
                except (RuntimeError, OSError) as error:
                    report(TaskOutcome(task.id, False, 0.0, local_host(), worker.name, str(error)))
                    worker = None
                    continue
            report(worker.grade(task, timeout))
            if not worker.alive or worker.tasks_done >= MAX_TASKS_PER_WORKER:
                worker.stop()
                worker = None
        if worker is not None:
            worker.stop()

    threads = [threading.Thread(target=slot, args=(i + 1,), daemon=True, name=f"nbgrade-slot-{i + 1}")
               for i in range(max(1, min(jobs, len(tasks))))]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            while thread.is_alive():
                thread.join(0.5)
    except BaseException:
        for worker in workers:
            worker.kill("the batch was interrupted")
        raise


# ----------------------------------------------------------------------------- worker side
def worker_main() -> int:
    """The worker process: read requests on stdin, grade, answer on the original stdout."""
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything printed by libraries goes to the log, never into the protocol
    watch_parent(os.getppid())
    hello = sys.stdin.readline()
    if not hello:
        return 0
    config = config_from_dict(json.loads(hello)["config"])
    preload(config)
    _reply(replies, {"ready": True, "pid": os.getpid()})
    for line in sys.stdin:
        if line.strip():
            _reply(replies, grade_request(json.loads(line), config))
    return 0


def grade_request(request: dict, config: GradeConfig) -> dict:
    from graders.grade import grade_submission
    from graders.gradebook import row_from_result

    try:
        result = grade_submission(Path(request["notebook"]), config, out_dir=Path(request["out_dir"]),
                                  note=str(request.get("note", "")))
        row = row_from_result(request["id"], result, host=local_host())
        return {"id": request["id"], "graded": True, "row": row.to_dict()}
    except Exception as error:  # noqa: BLE001 - reported as a crashed submission, the worker carries on
        return {"id": request["id"], "graded": False, "error": "".join(traceback.format_exception(error))[-4000:]}


def preload(config: GradeConfig) -> None:
    """Import what every grading needs (grader, torch) once, before the first submission.

    The assignment's reference solution is not among them: the judge imports it when a check first
    uses it (:class:`graders.grade.LazyReference`), and no built-in check does (benchmarks/README.md).
    """
    import graders.grade  # noqa: F401
    from graders.mnist import ensure_mnist

    try:
        import torch

        torch.set_num_threads(max(1, config.limits.threads))
    except ImportError:
        pass
    ensure_mnist(config.mnist_root)


def watch_parent(parent: int) -> None:
    """Exit (killing this worker's kernels) as soon as the process that started it is gone."""

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                import psutil

                for child in psutil.Process().children(recursive=True):
                    try:
                        child.kill()
                    except psutil.Error:
                        pass
                os._exit(70)

    threading.Thread(target=watch, daemon=True, name="nbgrade-parent-watch").start()


def _reply(stream: IO[str], message: dict) -> None:
    stream.write(json.dumps(message) + "\n")
    stream.flush()


if __name__ == "__main__":
    raise SystemExit(worker_main())
