"""Execute: run a student's notebook with nbclient in a confined kernel, and never judge it.

A :class:`KernelSession` owns one sandboxed kernel. :func:`execute_notebook` runs the submitted
cells through it one by one: a cell that raises does not stop the run; a cell that exceeds its
timeout is interrupted; a kernel that dies is restarted once and the notebook re-run with the
fatal cell skipped. A watchdog thread kills the kernel's processes when the wall-clock budget or
the memory cap is exceeded, whatever nbclient is doing at the time.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager as KernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat import NotebookNode

from graders.config import Limits
from graders.kernel import kernel_source
from graders.sandbox import SANDBOX_UID_BASE, SandboxSpec, is_root, path_reachable_by_others

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
TIMEOUT_ENAME = "CellTimeoutError"


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


@dataclass
class CellRun:
    """How one cell ran."""

    index: int
    status: str
    """``ok``, ``error``, ``timeout``, ``killed`` (kernel died), ``skipped``."""
    duration: float = 0.0
    ename: str = ""
    evalue: str = ""
    traceback: str = ""
    execution_count: int | None = None

    @property
    def summary(self) -> str:
        if self.status == "timeout":
            return f"did not finish within its time limit ({self.evalue})"
        if self.status == "killed":
            return self.evalue or "the kernel died while running this cell"
        if self.status == "skipped":
            return self.evalue or "not run"
        return f"{self.ename}: {self.evalue}"[:300] if self.ename else ""


@dataclass
class ExecutedNotebook:
    """The notebook after execution (outputs capped) and what happened to each cell."""

    notebook: NotebookNode
    runs: list[CellRun]
    duration: float
    status: str = "completed"
    """``completed`` or ``timed_out`` (the total budget ran out)."""
    restarts: int = 0
    notes: list[str] = field(default_factory=list)



@dataclass
class Workspace:
    """Directories of one grading run: the sandbox's (owned by its uid) and the grader's own."""

    sandbox_root: Path
    workdir: Path
    home: Path
    ipc: Path
    exchange: Path
    private: Path
    uid: int | None

    @classmethod
    def create(cls, mnist_root: Path, slot: int = 0, switch_user: bool = True) -> "Workspace":
        private = Path(tempfile.mkdtemp(prefix="nbgrade-private-"))
        root = Path(tempfile.mkdtemp(prefix="nbgrade-sandbox-"))
        uid = SANDBOX_UID_BASE + slot if switch_user and is_root() and _python_reachable() else None
        workspace = cls(root, root / "work", root / "home", root / "ipc", root / "exchange", private, uid)
        for directory in (workspace.workdir, workspace.home, workspace.ipc):
            directory.mkdir()
        workspace._link_data(mnist_root)
        if uid is not None:
            for path in [root, *root.rglob("*")]:
                os.chown(path, uid, uid, follow_symlinks=False)
        return workspace

    @property
    def data_places(self) -> tuple[Path, ...]:
        """Where student code looks for MNIST: ./data, ../data, ~/data."""
        return (self.workdir / "data", self.sandbox_root / "data", self.home / "data")

    def _link_data(self, mnist_root: Path) -> None:
        """Symlinks to MNIST; as root, empty directories that the sandbox binds MNIST onto."""
        for place in self.data_places:
            if self.uid is None:
                place.symlink_to(mnist_root, target_is_directory=True)
            else:
                place.mkdir()

    def data_binds(self, mnist_root: Path) -> tuple[tuple[str, str], ...]:
        """Read-only binds of MNIST (the sandbox user cannot reach the grader's cache)."""
        return tuple((str(mnist_root), str(place)) for place in self.data_places)

    def new_exchange(self) -> Path:
        """A fresh exchange directory, created only once the student's cells have run."""
        if self.exchange.exists():
            shutil.rmtree(self.exchange, ignore_errors=True)
        self.exchange.mkdir()
        if self.uid is not None:
            os.chown(self.exchange, self.uid, self.uid)
        return self.exchange

    def cleanup(self) -> None:
        shutil.rmtree(self.private, ignore_errors=True)
        shutil.rmtree(self.sandbox_root, ignore_errors=True)


def _python_reachable() -> bool:
    """The sandbox user must be able to run this Python (as root, namespaces can expose it)."""
    return sys.platform.startswith("linux") or path_reachable_by_others(Path(sys.executable))


def python_installation() -> tuple[str, ...]:
    """Directories a kernel needs to run this Python: the venv and the base installation."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, str(Path(sys.executable).resolve().parent.parent)}
    return tuple(sorted(str(Path(p).resolve()) for p in paths))


def hidden_directories(extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The grader's own code and the reference solutions, hidden from the kernel (as root)."""
    hidden = []
    for package in ("reference", "graders"):
        spec = find_spec(package)
        if spec and spec.submodule_search_locations:
            hidden.extend(spec.submodule_search_locations)
    repo = Path(hidden[-1]).parent if hidden else None
    if repo is not None:
        for name in ("tests", "benchmarks", ".git"):
            if (repo / name).is_dir():
                hidden.append(str(repo / name))
    return tuple(dict.fromkeys([*hidden, *extra]))


class CappedClient(NotebookClient):
    """nbclient with bounded outputs: what a cell prints past the cap is dropped, with a note."""

    def __init__(self, nb: NotebookNode, km: KernelManager, limits: Limits) -> None:
        super().__init__(
            nb,
            km=km,
            timeout=int(limits.cell_timeout),
            allow_errors=True,
            interrupt_on_timeout=True,
            error_on_timeout={
                "ename": TIMEOUT_ENAME,
                "evalue": f"cell exceeded {limits.cell_timeout:g} s",
                "traceback": [],
            },
            iopub_timeout=5,
            raise_on_iopub_timeout=False,
            record_timing=False,
            shutdown_kernel="immediate",
        )
        self.cap_cell = limits.max_output_chars
        self.cap_total = limits.max_output_total_chars
        self.used_total = 0
        self.used_cell: dict[int, int] = {}
        self.truncated_cells: set[int] = set()

    def output(self, outs, msg, display_id, cell_index):  # type: ignore[override]
        size = len(json.dumps(msg.get("content", {})))
        used = self.used_cell.get(cell_index, 0)
        if used + size > self.cap_cell or self.used_total + size > self.cap_total:
            if cell_index not in self.truncated_cells:
                self.truncated_cells.add(cell_index)
                outs.append(
                    nbformat.v4.new_output(
                        "stream", name="stderr", text="\n[grader] output truncated: this cell printed too much.\n"
                    )
                )
            return None
        self.used_cell[cell_index] = used + size
        self.used_total += size
        return super().output(outs, msg, display_id, cell_index)


def read_rss_anon_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def processes_of(kernel_pid: int | None, uid: int | None) -> list[int]:
    """Every process of the sandbox: all of its uid when it has one, else the kernel's tree."""
    import psutil

    if uid is not None:
        found = []
        for proc in psutil.process_iter(["uids"]):
            try:
                if proc.info["uids"] and proc.info["uids"].real == uid:
                    found.append(proc.pid)
            except (psutil.Error, TypeError):
                continue
        return found
    if kernel_pid is None:
        return []
    try:
        root = psutil.Process(kernel_pid)
        return [kernel_pid, *(child.pid for child in root.children(recursive=True))]
    except psutil.Error:
        return []


def kill_processes(kernel_pid: int | None, uid: int | None) -> None:
    pids = processes_of(kernel_pid, uid)
    if kernel_pid is not None:
        try:
            os.killpg(kernel_pid, signal.SIGKILL)
        except OSError:
            pass
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


class KernelSession:
    """One sandboxed kernel, the nbclient driving it, and the watchdog guarding it."""

    def __init__(
        self,
        notebook: NotebookNode,
        workspace: Workspace,
        limits: Limits,
        mnist_root: Path,
        seed: int,
        sandbox: bool = True,
        hide: tuple[str, ...] = (),
    ) -> None:
        self.notebook = notebook
        self.workspace = workspace
        self.limits = limits
        self.mnist_root = mnist_root
        self.seed = seed
        self.sandbox = sandbox
        self.hide = hide
        self.client: CappedClient | None = None
        self.km: KernelManager | None = None
        self.kill_reason: str | None = None
        self.deadline = float("inf")
        self._stop = threading.Event()
        self._watchdog: threading.Thread | None = None
        self.sandbox_notes: list[str] = []
        self.peak_rss_kb = 0

    # -------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self.kill_reason = None
        self.km = KernelManager(
            kernel_name="nbgrade",
            kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(self._write_kernelspec())]),
            transport="ipc",
            ip=str(self.workspace.ipc / "k"),
        )
        self.client = CappedClient(self.notebook, self.km, self.limits)
        self.client.reset_execution_trackers()
        self.client.start_new_kernel(cwd=str(self.workspace.workdir))
        self.client.start_new_kernel_client()
        self._read_sandbox_report()
        self._stop.clear()
        self._watchdog = threading.Thread(target=self._watch, daemon=True)
        self._watchdog.start()
        prelude = kernel_source("prelude").replace("NBGRADE_SEED = 0", f"NBGRADE_SEED = {int(self.seed)}")
        prelude = prelude.replace('NBGRADE_MNIST_ROOT = ""', f"NBGRADE_MNIST_ROOT = {str(self.workspace.sandbox_root / 'data')!r}")
        self.run_code(prelude, timeout=120, store_history=False)

    def shutdown(self) -> None:
        self._stop.set()
        if self.client is not None and self.km is not None:
            try:
                self.client._cleanup_kernel()
            except Exception:  # noqa: BLE001 - a dead or hung kernel must not stop grading
                pass
        self.kill()
        self.client = None
        self.km = None

    def kill(self, reason: str | None = None) -> None:
        if reason and not self.kill_reason:
            self.kill_reason = reason
        kill_processes(self.kernel_pid, self.workspace.uid if self.sandbox else None)

    def restart(self) -> None:
        self.shutdown()
        self.start()

    @property
    def kernel_pid(self) -> int | None:
        provisioner = getattr(self.km, "provisioner", None)
        process = getattr(provisioner, "process", None)
        return getattr(process, "pid", None)

    def _write_kernelspec(self) -> Path:
        spec_dir = self.workspace.private / "kernels" / "nbgrade"
        spec_dir.mkdir(parents=True, exist_ok=True)
        kernel = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        argv = kernel
        if self.sandbox:
            spec_path = self.workspace.private / "sandbox.json"
            self._sandbox_spec().write(spec_path)
            argv = [sys.executable, "-m", "graders.sandbox", str(spec_path), "--", *kernel]
        (spec_dir / "kernel.json").write_text(
            json.dumps({"argv": argv, "display_name": "nbgrade", "language": "python", "env": self._kernel_env()})
        )
        return spec_dir.parent

    def _sandbox_spec(self) -> SandboxSpec:
        limits = self.limits
        hide = (*hidden_directories(), str(self.workspace.private), *self.hide)
        return SandboxSpec(
            workdir=str(self.workspace.workdir),
            home=str(self.workspace.home),
            uid=self.workspace.uid,
            cpu_seconds=int(limits.total_timeout * max(2, limits.threads + 1) + 120),
            address_space_bytes=max(limits.memory_mb * 4, 16384) * 2**20,
            max_processes=limits.max_processes,
            max_file_bytes=limits.max_file_mb * 2**20,
            max_open_files=limits.max_open_files,
            hide=hide,
            expose=python_installation(),
            binds=self.workspace.data_binds(self.mnist_root) if self.workspace.uid is not None else (),
        )

    def _kernel_env(self) -> dict[str, str]:
        home = str(self.workspace.home)
        threads = str(self.limits.threads)
        return {
            "HOME": home,
            "USER": "student",
            "TMPDIR": home,
            "IPYTHONDIR": f"{home}/.ipython",
            "JUPYTER_RUNTIME_DIR": f"{home}/.jupyter-runtime",
            "MPLCONFIGDIR": f"{home}/.matplotlib",
            "MPLBACKEND": "module://matplotlib_inline.backend_inline",
            "TORCH_HOME": f"{home}/.torch",
            "XDG_CACHE_HOME": f"{home}/.cache",
            "OMP_NUM_THREADS": threads,
            "MKL_NUM_THREADS": threads,
            "OPENBLAS_NUM_THREADS": threads,
            "NBGRADE_THREADS": threads,
            "PYTHONHASHSEED": "0",
            "PYTHONDONTWRITEBYTECODE": "1",
            "http_proxy": "http://127.0.0.1:9",
            "https_proxy": "http://127.0.0.1:9",
            "HTTP_PROXY": "http://127.0.0.1:9",
            "HTTPS_PROXY": "http://127.0.0.1:9",
            "NBGRADE_IN_SANDBOX": "1",
        }

    def _read_sandbox_report(self) -> None:
        applied = self.workspace.private / "sandbox.applied.json"
        if applied.exists():
            report = json.loads(applied.read_text())
            self.sandbox_notes = list(report.get("notes", []))
            self.sandbox_report = report

    # -------------------------------------------------------------- watchdog
    def _watch(self) -> None:
        cap_kb = self.limits.memory_mb * 1024
        while not self._stop.wait(0.25):
            if time.monotonic() > self.deadline:
                self.kill("the notebook ran out of its total time budget")
                continue
            pids = processes_of(self.kernel_pid, self.workspace.uid if self.sandbox else None)
            rss = sum(read_rss_anon_kb(pid) for pid in pids)
            self.peak_rss_kb = max(self.peak_rss_kb, rss)
            if rss > cap_kb:
                self.kill(f"the kernel used more than {self.limits.memory_mb} MB of memory and was stopped")

    # -------------------------------------------------------------- running code
    def run_cell(self, index: int, timeout: float, store_history: bool = True) -> CellRun:
        """Run cell ``index`` of the notebook; never raises for what the student's code does."""
        assert self.client is not None
        cell = self.client.nb.cells[index]
        self.client.timeout = max(1, int(min(timeout, self.deadline - time.monotonic())))
        started = time.monotonic()
        try:
            self.client.execute_cell(cell, index, store_history=store_history)
        except (DeadKernelError, RuntimeError) as error:
            return CellRun(index, "killed", time.monotonic() - started, "DeadKernel", self.kill_reason or _died(error))
        except CellTimeoutError:
            return CellRun(index, "timeout", time.monotonic() - started, TIMEOUT_ENAME, f"{timeout:g} s")
        run = _cell_outcome(index, self.client.nb.cells[index], time.monotonic() - started, self.kill_reason)
        if run.ename == "KeyboardInterrupt" and run.duration >= self.client.timeout - 0.5:
            run.status, run.evalue = "timeout", f"{self.client.timeout:g} s"
        return run

    def run_code(self, source: str, timeout: float, store_history: bool = True) -> CellRun:
        """Run grader code (prelude, probes) in a scratch cell appended after the student's."""
        assert self.client is not None
        cells = self.client.nb.cells
        cells.append(nbformat.v4.new_code_cell(source))
        index = len(cells) - 1
        try:
            run = self.run_cell(index, timeout, store_history)
        finally:
            cells.pop(index)
        return run

    def responsive(self, timeout: float = 10.0) -> bool:
        """After an interrupt: does the kernel answer again?"""
        return self.run_code("pass", timeout=timeout, store_history=False).status == "ok"


def _died(error: BaseException) -> str:
    return "the kernel died (the process exited or was killed)" if isinstance(error, DeadKernelError) else str(error)[:200]


def _cell_outcome(index: int, cell: NotebookNode, duration: float, kill_reason: str | None) -> CellRun:
    count = cell.get("execution_count")
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            ename = output.get("ename", "Error")
            status = "timeout" if ename == TIMEOUT_ENAME else "error"
            trace = strip_ansi("\n".join(output.get("traceback", [])))[-6000:]
            return CellRun(index, status, duration, ename, str(output.get("evalue", ""))[:500], trace, count)
    return CellRun(index, "ok", duration, execution_count=count)


def execute_notebook(session: KernelSession, limits: Limits) -> ExecutedNotebook:
    """Run every code cell; restart once after a fatal cell and re-run without it."""
    started = time.monotonic()
    session.deadline = started + limits.total_timeout
    notebook = session.notebook
    code_cells = [i for i, c in enumerate(notebook.cells) if c.cell_type == "code" and c.source.strip()]
    fatal: set[int] = set()
    restarts = 0
    notes: list[str] = []
    while True:
        runs, died_at = _run_cells(session, code_cells, fatal, limits)
        if died_at is None or restarts >= 1 or time.monotonic() > session.deadline:
            break
        fatal.add(died_at)
        restarts += 1
        notes.append(
            f"The kernel died in cell {died_at + 1}; it was restarted and the notebook re-run without that cell."
        )
        session.restart()
    status = "timed_out" if time.monotonic() > session.deadline or _budget_killed(runs) else "completed"
    for run in runs:
        if run.index in fatal and run.status == "skipped":
            run.evalue = "skipped after it killed the kernel"
    return ExecutedNotebook(notebook, runs, time.monotonic() - started, status, restarts, notes)


def _budget_killed(runs: list[CellRun]) -> bool:
    return any(r.status == "killed" and "time budget" in r.evalue for r in runs)


def _run_cells(
    session: KernelSession, code_cells: list[int], fatal: set[int], limits: Limits
) -> tuple[list[CellRun], int | None]:
    runs: list[CellRun] = []
    for position, index in enumerate(code_cells):
        if index in fatal:
            runs.append(CellRun(index, "skipped", evalue="skipped after it killed the kernel"))
            continue
        if time.monotonic() >= session.deadline:
            runs.extend(CellRun(i, "skipped", evalue="not run: the notebook's time budget was used up") for i in code_cells[position:])
            break
        run = session.run_cell(index, limits.cell_timeout)
        runs.append(run)
        if run.status == "killed":
            rest = code_cells[position + 1 :]
            reason = "not run: the kernel had died"
            runs.extend(CellRun(i, "skipped", evalue=reason) for i in rest)
            return runs, (None if "time budget" in run.evalue else index)
        if run.status == "timeout" and not session.responsive():
            session.kill("the kernel did not respond after a cell timed out")
            rest = code_cells[position + 1 :]
            runs.extend(CellRun(i, "skipped", evalue="not run: the kernel hung") for i in rest)
            return runs, index
    return runs, None
