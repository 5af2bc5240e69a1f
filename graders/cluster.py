"""Batch grading on a Dask cluster (``grade SUBMISSIONS --scheduler ADDRESS`` or ``--cluster slurm``).

Only imported when asked for: nothing else in the harness imports Dask, and the local process
pool (:mod:`graders.pool`) stays the default. Install with ``pip install "nbgrade-ml[cluster]"``.

The task is "grade one submission": the notebook's *bytes* travel to a worker (no shared
filesystem is assumed); the worker grades them with the same sandbox, limits and seed as a local
run — through the same :class:`graders.pool.GradingWorker` subprocess, so a submission that
brings its grader down costs that submission only, never the Dask worker — and returns the files
``grade_submission`` wrote (results.json, grading.json, report.html, executed.ipynb) and the
gradebook row as data. The client writes them into the batch folder exactly as a local run does.

* One grading at a time per worker process: a per-process lock (and the ``grader`` resource when
  the workers advertise it, ``dask worker --resources grader=1``).
* A worker lost mid-task: the scheduler runs the task again elsewhere (up to Dask's
  ``distributed.scheduler.allowed-failures``); the client records each submission once.
* A worker whose harness version differs from the client's is refused (never sent a task):
  a gradebook never mixes rubrics.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from contextlib import contextmanager
from typing import Any, Callable, Iterator
from urllib.parse import urlparse

from dask.distributed import Client, as_completed, get_worker

from graders.config import GradeConfig
from graders.pool import (
    MAX_TASKS_PER_WORKER, GradeTask, GradingWorker, TaskOutcome, config_from_dict, config_to_dict, hard_timeout,
)

GRADER_RESOURCE = "grader"
CONNECT_TIMEOUT = "30s"
SLURM_WORKER_WAIT_SECONDS = 900


class HarnessMismatch(RuntimeError):
    """A worker runs another harness version than the client."""


@dataclass(frozen=True)
class RemoteTask:
    """What travels to a worker: the notebook's bytes and how to grade it."""

    id: str
    filename: str
    data: bytes
    config: dict[str, Any]
    harness: str
    workers_per_host: dict[str, int]
    """Dask worker processes on each host, so kernels get cores // workers threads."""
    note: str = ""
    """Said first in the result (see :attr:`graders.pool.GradeTask.note`)."""


# ----------------------------------------------------------------------------- worker side
_grader_lock = threading.Lock()


@dataclass
class _WorkerGrader:
    """This Dask worker process's grading subprocess and the configuration it was started with."""

    process: GradingWorker | None = None
    key: str = ""


_grader = _WorkerGrader()


def harness_version() -> str:
    from graders.grade import versions

    return versions()["harness"]


def grade_remote(task: RemoteTask) -> dict[str, Any]:
    """Run on a Dask worker: grade one submission, return its files and row as data."""
    if harness_version() != task.harness:
        raise HarnessMismatch(f"worker {socket.gethostname()} runs harness {harness_version()}, the client {task.harness}")
    worker = get_worker()
    host = urlparse(worker.address).hostname or ""
    config = config_from_dict(task.config)
    config = replace(config, limits=config.limits.scaled_for_workers(task.workers_per_host.get(host, 1)))
    with _grader_lock, tempfile.TemporaryDirectory(prefix="nbgrade-remote-") as scratch:
        notebook = Path(scratch) / "in" / Path(task.filename).name
        notebook.parent.mkdir()
        notebook.write_bytes(task.data)
        out = Path(scratch) / "out"
        outcome = _local_grader(config, str(worker.name)).grade(GradeTask(task.id, notebook, out, task.note), hard_timeout(config.limits))
        files = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} if outcome.graded and out.is_dir() else {}
    return {
        "id": task.id, "graded": outcome.graded and "grading.json" in files, "files": files, "row": outcome.row,
        "seconds": outcome.seconds, "host": socket.gethostname(), "worker": str(worker.name), "error": outcome.error,
    }


def _local_grader(config: GradeConfig, name: str) -> GradingWorker:
    """This worker process's grading subprocess (replaced when it died, the config changed, or it is due)."""
    key = repr(config_to_dict(config))
    current = _grader.process
    if current is not None and (not current.alive or _grader.key != key or current.tasks_done >= MAX_TASKS_PER_WORKER):
        current.stop()
        _grader.process = None
    if _grader.process is None:
        process = GradingWorker(config, name)
        process.start()
        _grader.process, _grader.key = process, key
    return _grader.process


# ----------------------------------------------------------------------------- client side
@dataclass(frozen=True)
class DaskRunner:
    """A batch's :class:`graders.pool.TaskRunner` on Dask: a running scheduler, or a cluster it starts."""

    address: str | None = None
    """The scheduler's address (``tcp://HEAD:8786``)."""
    cluster: str | None = None
    """A cluster to start instead (``slurm``)."""
    workers: int = 2
    """Workers to start with ``cluster``."""

    def run(self, tasks: list[GradeTask], config: GradeConfig, on_done: Callable[[TaskOutcome], None], *,
            prepare: Callable[[GradeTask], TaskOutcome | None] | None = None, log_dir: Path | None = None) -> None:
        run_on_cluster(tasks, config, on_done, address=self.address, cluster=self.cluster, workers=self.workers,
                       prepare=prepare)


def run_on_cluster(
    tasks: list[GradeTask], config: GradeConfig, on_done: Callable[[TaskOutcome], None], *,
    address: str | None = None, cluster: str | None = None, workers: int = 2,
    prepare: Callable[[GradeTask], TaskOutcome | None] | None = None,
) -> None:
    """Grade ``tasks`` on the cluster; write each result into its task's ``out_dir``; call ``on_done``.

    At most one task per live worker is submitted at a time, the next as each one finishes: a
    task is never queued behind a 30-second grading on one worker while another sits idle.
    ``prepare`` is as in :func:`graders.pool.run_local`.
    """
    from graders.batch import BatchUsageError

    with connect(address, cluster, workers, config) as client:
        accepted = accepted_workers(client)
        per_host = workers_per_host(client)  # fixed for the batch: a lost worker must not restart the others' graders
        pending = list(tasks)
        in_flight: dict[Any, GradeTask] = {}
        completed = as_completed()

        def fill() -> None:
            capacity = max(1, len(accepted) if accepted is not None else len(client.scheduler_info().get("workers", {})))
            while pending and len(in_flight) < capacity:
                task = pending.pop(0)
                early = prepare(task) if prepare is not None else None
                if early is not None:  # not a notebook: nothing to send
                    on_done(early)
                    continue
                future = submit(client, task, config, accepted, per_host)
                in_flight[future] = task
                completed.add(future)

        try:
            fill()
            for future in completed:
                on_done(collect(future, in_flight.pop(future)))
                fill()
        except HarnessMismatch as error:
            raise BatchUsageError(f"refused: {error}; a gradebook never mixes harness versions") from None
        finally:
            client.cancel(list(in_flight))


@contextmanager
def connect(address: str | None, cluster: str | None, workers: int, config: GradeConfig) -> Iterator[Client]:
    """A client to a running scheduler, or to a cluster started here (``slurm``)."""
    from graders.batch import BatchUsageError

    if cluster == "slurm":
        with start_slurm(workers, config) as slurm, Client(slurm) as client:
            client.wait_for_workers(1, timeout=SLURM_WORKER_WAIT_SECONDS)
            yield client
        return
    try:
        client = Client(address, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError) as error:
        raise BatchUsageError(f"could not reach the Dask scheduler at {address}: {error}") from None
    try:
        if not client.scheduler_info().get("workers"):
            client.wait_for_workers(1, timeout=60)
        yield client
    finally:
        client.close()


@contextmanager
def start_slurm(workers: int, config: GradeConfig) -> Iterator[Any]:
    """A SLURM cluster of ``workers`` one-core jobs through dask-jobqueue."""
    from graders.batch import BatchUsageError

    if shutil.which("sbatch") is None:
        raise BatchUsageError("--cluster slurm: sbatch is not on PATH (run this on a SLURM login node)")
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise BatchUsageError("--cluster slurm needs dask-jobqueue: pip install 'nbgrade-ml[cluster]'") from None
    walltime_minutes = int(hard_timeout(config.limits) * 4 / 60) + 30
    slurm = SLURMCluster(cores=1, processes=1, memory=f"{config.limits.memory_mb + 2048}MB",
                         walltime=f"{walltime_minutes // 60:02d}:{walltime_minutes % 60:02d}:00")
    slurm.scale(jobs=workers)
    try:
        yield slurm
    finally:
        slurm.close()


def accepted_workers(client: Client) -> list[str] | None:
    """Workers running the client's harness version; None when all do (no restriction needed).

    A mismatched worker is refused with a message on stderr; when no worker matches the batch stops.
    """
    import sys

    from graders.batch import BatchUsageError

    mine = harness_version()
    theirs = client.run(harness_version)
    refused = {address: version for address, version in theirs.items() if version != mine}
    for address, version in refused.items():
        print(f"grade: refusing Dask worker {address}: harness {version}, this client runs {mine}", file=sys.stderr)
    if refused and len(refused) == len(theirs):
        raise BatchUsageError(f"no Dask worker runs harness {mine} (found {sorted(set(refused.values()))}); "
                              "install the same nbgrade-ml on the workers")
    return sorted(set(theirs) - set(refused)) if refused else None


def workers_per_host(client: Client) -> dict[str, int]:
    counts: dict[str, int] = {}
    for address in client.scheduler_info().get("workers", {}):
        host = urlparse(address).hostname or ""
        counts[host] = counts.get(host, 0) + 1
    return counts


def submit(client: Client, task: GradeTask, config: GradeConfig, accepted: list[str] | None, per_host: dict[str, int]) -> Any:
    remote = RemoteTask(task.id, task.notebook.name, task.notebook.read_bytes(), config_to_dict(config), harness_version(), per_host,
                        task.note)
    options: dict[str, Any] = {"key": f"nbgrade-{task.id}-{uuid.uuid4().hex[:8]}", "pure": False}
    if accepted is not None:
        options.update(workers=accepted, allow_other_workers=False)
    if _all_have_resource(client):
        options["resources"] = {GRADER_RESOURCE: 1}
    return client.submit(grade_remote, remote, **options)


def _all_have_resource(client: Client) -> bool:
    workers = client.scheduler_info().get("workers", {}).values()
    return bool(workers) and all(GRADER_RESOURCE in (w.get("resources") or {}) for w in workers)


def collect(future: Any, task: GradeTask) -> TaskOutcome:
    """The outcome of one task; its files written into ``task.out_dir``. A lost task is a crash, not an exception."""
    try:
        payload = future.result()
    except HarnessMismatch:
        raise
    except Exception as error:  # noqa: BLE001 - KilledWorker, a cancelled or failed task: the submission still gets a row
        return TaskOutcome(task.id, False, 0.0, "", "", f"{type(error).__name__}: {error}"[:2000])
    write_files(payload["files"], task.out_dir)
    return TaskOutcome(task.id, bool(payload["graded"]), float(payload["seconds"]), payload["host"], payload["worker"],
                       payload.get("error", ""), payload.get("row"))


def write_files(files: dict[str, bytes], out_dir: Path) -> None:
    """Write a task's files; only plain file names are accepted."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        if Path(name).name != name or name in ("", ".", ".."):
            continue
        (out_dir / name).write_bytes(content)

