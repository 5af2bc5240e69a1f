"""One sandboxed kernel, the nbclient driving it, and the watchdog guarding it.

:class:`KernelSession` starts a kernel through the sandbox launcher, runs the grader's prelude in
it, runs cells one at a time (:meth:`KernelSession.run_cell` never raises for what the student's
code does: it returns a :class:`CellRun`), and kills every process of the sandbox when the
wall-clock budget, the memory cap or the process count is exceeded, recording why as a
:class:`KillReason`.

The grader's own memory stays bounded whatever the notebook prints: the kernel caps each cell's
output before sending it (see ``kernel/prelude.py``), :class:`CappedClient` caps what it keeps,
the grader's sockets refuse messages larger than :data:`MAX_MESSAGE_BYTES` and queue at most
:data:`MAX_QUEUED_MESSAGES` of them, and what the kernel writes to its own stdout/stderr file
descriptors is drained into a small ring buffer (:class:`OutputTail`).
"""

from __future__ import annotations

import enum
import json
import os
import re
import secrets
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
import zmq
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager as KernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionComplete, CellTimeoutError, DeadKernelError
from nbformat import NotebookNode

from graders.config import Limits
from graders.kernel import kernel_source
from graders.processes import describe_exit, kill_processes, processes_of, read_private_kb, unmapped_memfd_kb
from graders.sandbox import SandboxSpec, isolated_python
from graders.workspace import Workspace, hidden_directories, python_installation


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
TIMEOUT_ENAME = "CellTimeoutError"
MAX_MESSAGE_BYTES = 4 * 2**20
"""A kernel message larger than this is dropped by the grader's socket (zmq MAXMSGSIZE) before it is
parsed: no output that large could be kept (a cell keeps at most ``Limits.max_output_chars``), and
with at most :data:`MAX_QUEUED_MESSAGES` in flight the grader never holds more than 256 MB of them."""
MAX_QUEUED_MESSAGES = 64
"""Messages the grader's sockets queue before the kernel's further output is dropped (zmq RCVHWM)."""
IOPUB_TIMEOUT = 5
"""Seconds to wait, after a cell's reply, for the rest of its output (1 s after a timeout)."""
TRUNCATION_NOTE = "[grader] output truncated: this cell printed too much."
KERNEL_LOG_BYTES = 32_768
"""The last bytes of the kernel process's own stdout/stderr kept for the instructor (crash messages)."""


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


class CellStatus(str, enum.Enum):
    """How one cell (or grader code run as a cell) ended; the value is what results and reports write."""

    OK = "ok"
    ERROR = "error"
    """The cell raised (the kernel lives on)."""
    TIMEOUT = "timeout"
    KILLED = "killed"
    """The kernel died, or was killed, while the cell ran."""
    SKIPPED = "skipped"
    """Not run (the kernel had died or hung before it, or the time budget was spent)."""

    def __str__(self) -> str:
        return self.value


class KillReason(enum.Enum):
    """Why the grader killed a kernel; the sentence a student reads is kept beside it (``kill_reason``)."""

    TIME_BUDGET = "time_budget"
    """The notebook's total time budget ran out (the run ends; no restart)."""
    PROCESSES = "processes"
    MEMORY = "memory"
    UNRESPONSIVE = "unresponsive"
    """The kernel did not answer after an interrupt."""
    HARD_LIMIT = "hard_limit"
    """The grader's own hard time limit for the whole grading."""


@dataclass
class CellRun:
    """How one cell ran."""

    index: int
    status: CellStatus
    duration: float = 0.0
    ename: str = ""
    evalue: str = ""
    traceback: str = ""
    execution_count: int | None = None
    killed_for: KillReason | None = None
    """Why the grader killed the kernel during this cell (None when it died by itself, or did not die)."""

    @property
    def summary(self) -> str:
        if self.status == CellStatus.TIMEOUT:
            return f"did not finish within its time limit ({self.evalue})"
        if self.status == CellStatus.KILLED:
            return self.evalue or "the kernel died while running this cell"
        if self.status == CellStatus.SKIPPED:
            return self.evalue or "not run"
        return f"{self.ename}: {self.evalue}"[:300] if self.ename else ""


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
            iopub_timeout=IOPUB_TIMEOUT,
            raise_on_iopub_timeout=False,
            record_timing=False,
            shutdown_kernel="immediate",
        )
        self.timed_out = False
        """Set when the running cell exceeded its timeout (nbclient then returns a synthetic reply)."""
        self.cap_cell = limits.max_output_chars
        self.cap_total = limits.max_output_total_chars
        self.used_total = 0
        self.used_cell: dict[int, int] = {}
        self.truncated_cells: set[int] = set()
        self.dropped_messages = 0
        """Malformed kernel messages dropped (a notebook crafting them gains nothing, and stops nothing)."""

    async def _async_handle_timeout(self, timeout, cell=None):  # type: ignore[override]
        self.timed_out = True
        self.iopub_timeout = 1  # an interrupted kernel that answers does so at once; one that does not never will
        return await super()._async_handle_timeout(timeout, cell)

    def process_message(self, msg, cell, cell_index):  # type: ignore[override]
        """One kernel message, after it was checked to be well formed; a malformed one is dropped, never fatal."""
        content = msg.get("content") if isinstance(msg, dict) else None
        if not isinstance(content, dict) or not isinstance(msg.get("msg_type"), str):
            self.dropped_messages += 1
            return None
        if not isinstance(content.get("transient", {}), (dict, type(None))):
            content["transient"] = {}
        if "execution_count" in content and type(content["execution_count"]) is not int:
            del content["execution_count"]
        if msg["msg_type"] in OUTPUT_MESSAGES and not _well_formed_output(content):
            self.dropped_messages += 1
            return None
        try:
            return super().process_message(msg, cell, cell_index)
        except (CellExecutionComplete, CellTimeoutError, DeadKernelError):
            raise
        except Exception:  # noqa: BLE001 - nbclient choked on what the kernel sent: drop it, keep grading
            self.dropped_messages += 1
            return None

    def handle_comm_msg(self, outs, msg, cell_index):  # type: ignore[override]
        """Widgets and comms are not graded: their state is never kept (it would grow without bound)."""
        return None

    def _update_display_id(self, display_id, msg):  # type: ignore[override]
        """An update rewrites every output sharing its display id: its size counts once per output, within the caps."""
        places = self._display_id_map.get(display_id, {})
        copies = sum(len(indices) for indices in places.values())
        size = text_size(msg.get("content", {})) * max(1, copies)
        if copies and size > self.cap_total - self.used_total:
            self.truncated_cells.update(places)
            return None
        self.used_total += size if copies else 0
        return super()._update_display_id(display_id, msg)

    def output(self, outs, msg, display_id, cell_index):  # type: ignore[override]
        content = msg.get("content", {})
        # A kept output costs memory beyond its text (about 10 kB as a notebook node): a display counts
        # OUTPUT_COST characters more, so 48,000 empty displays cannot hold the grader's memory either.
        size = text_size(content) + (STREAM_COST if msg.get("msg_type") == "stream" else OUTPUT_COST)
        used = self.used_cell.get(cell_index, 0)
        room = min(self.cap_cell - used, self.cap_total - self.used_total)
        if size <= room:
            self.used_cell[cell_index] = used + size
            self.used_total += size
            return super().output(outs, msg, display_id, cell_index)
        if cell_index in self.truncated_cells:
            return None
        self.truncated_cells.add(cell_index)
        self.used_cell[cell_index] = self.cap_cell
        if msg.get("msg_type") == "stream" and room > 0 and isinstance(content.get("text"), str):
            self.used_total += room
            super().output(outs, {**msg, "content": {**content, "text": content["text"][:room]}}, display_id, cell_index)
        outs.append(nbformat.v4.new_output("stream", name="stderr", text=f"\n{TRUNCATION_NOTE}\n"))
        return None


OUTPUT_COST = 2000
"""Characters one display, result or error output counts for, on top of its text (see CappedClient.output)."""
STREAM_COST = 16
"""A stream message is merged into the cell's previous stream output: little more than its text."""
MAX_OUTPUT_DEPTH = 16
"""An output nested deeper than this is refused whole (its size is not worth measuring)."""
TOO_DEEP = 1 << 40


OUTPUT_MESSAGES = {"stream", "display_data", "execute_result", "update_display_data", "error"}


def _well_formed_output(content: dict) -> bool:
    """The fields an output message must have, of the types the notebook format requires."""
    if "data" in content and not (isinstance(content["data"], dict)
                                  and all(isinstance(v, (str, list, dict)) for v in content["data"].values())):
        return False
    if "metadata" in content and not isinstance(content["metadata"], dict):
        return False
    if "text" in content and not isinstance(content["text"], (str, list)):
        return False
    if "name" in content and not isinstance(content["name"], str):
        return False
    return all(isinstance(content.get(k, ""), str) for k in ("ename", "evalue")) and \
        isinstance(content.get("traceback", []), list)


def text_size(value: object, depth: int = 0) -> int:
    """Characters a message's content holds anywhere: strings, dict keys, nested values (without copying it).

    Every field counts (metadata, names, keys), since every field is kept in the notebook the
    grader writes; content nested past :data:`MAX_OUTPUT_DEPTH` counts as too large to keep.
    """
    if isinstance(value, str):
        return len(value)
    if depth > MAX_OUTPUT_DEPTH:
        return TOO_DEEP
    if isinstance(value, dict):
        return sum(text_size(k, depth + 1) + text_size(v, depth + 1) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return sum(text_size(v, depth + 1) for v in value)
    return 8


class OutputTail:
    """Drains the kernel process's own stdout/stderr (a pipe), keeping only the last bytes.

    ipykernel echoes what is written to file descriptors 1 and 2 to the process's original
    stdout; without this, a notebook could flood the grader's terminal or log.
    """

    def __init__(self, keep: int = KERNEL_LOG_BYTES) -> None:
        self.keep = keep
        self.tail = b""
        self.read_fd, self.write_fd = os.pipe()
        self._thread = threading.Thread(target=self._drain, daemon=True, name="nbgrade-kernel-log")
        self._thread.start()

    def _drain(self) -> None:
        while True:
            try:
                block = os.read(self.read_fd, 65536)
            except OSError:
                return
            if not block:
                return
            self.tail = (self.tail + block)[-self.keep :]

    def close_writer(self) -> None:
        """After the kernel started: the grader's copy of the write end is not needed."""
        if self.write_fd >= 0:
            os.close(self.write_fd)
            self.write_fd = -1

    def close(self) -> None:
        self.close_writer()
        self._thread.join(2)
        if not self._thread.is_alive():
            os.close(self.read_fd)

    def text(self) -> str:
        return self.tail.decode("utf-8", "replace")


PRELOADED = {"numpy": ("numpy",), "torch": ("torch",), "torchvision": ("torch", "torchvision"),
             "matplotlib": ("matplotlib.pyplot",), "sklearn": ("sklearn",), "scipy": ("scipy",)}
"""Top-level package a notebook imports → what the prelude imports for it (slow imports, seconds each)."""
_IMPORT = re.compile(r"^\s*(?:import|from)\s+([A-Za-z_]\w*)", re.M)


def heavy_imports(notebook: NotebookNode) -> tuple[str, ...]:
    """The slow-to-import libraries the notebook's code imports, in a fixed order."""
    used = {m.group(1) for cell in notebook.cells if cell.cell_type == "code" for m in _IMPORT.finditer(cell.source)}
    return tuple(dict.fromkeys(name for top, names in PRELOADED.items() if top in used for name in names))


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
        """The sentence saying why the grader killed the kernel (for the student), beside :attr:`killed_for`."""
        self.killed_for: KillReason | None = None
        self.dead = False
        self.deadline = float("inf")
        self._stop = threading.Event()
        self._watchdog: threading.Thread | None = None
        self._output: OutputTail | None = None
        self.kernel_log = ""
        self.sandbox_notes: list[str] = []
        self.sandbox_report: dict = {}
        self.peak_rss_kb = 0
        self.peak_disk_kb = 0
        self._root_fd = -1
        self.peak_processes = 0
        self.watchdog_errors: list[str] = []
        self.starts = 0
        self.last_output = ""
        self.state_pin: tuple[int, ...] = ()
        """Identity of the prelude's state objects, as reported before any student code ran (see runtime.py)."""
        self.state_name = f"_nbgrade_{secrets.token_hex(8)}"
        """Where the prelude keeps its state in the kernel's ``sys.modules``: a name the notebook cannot know in advance."""

    # -------------------------------------------------------------- lifecycle
    def start(self, notebook: NotebookNode | None = None) -> None:
        """Start a kernel (on ``notebook`` when given: a copy whose outputs may be overwritten)."""
        if notebook is not None:
            self.notebook = notebook
        self.kill_reason = None
        self.killed_for = None
        self.dead = False
        self.starts += 1
        uid = self.workspace.uid if self.sandbox else None
        if uid is not None and processes_of(None, uid):
            kill_processes(None, uid)
            if processes_of(None, uid):
                raise RuntimeError("a process of the previous kernel could not be stopped; not starting another")
        ipc_folder, ipc_fd = self.workspace.new_ipc_folder()
        self.km = KernelManager(
            kernel_name="nbgrade",
            kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(self._write_kernelspec())]),
            transport="ipc",
            ip=str(ipc_folder / "k"),
        )
        self.km.context.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        self.km.context.setsockopt(zmq.RCVHWM, MAX_QUEUED_MESSAGES)
        self.client = CappedClient(self.notebook, self.km, self.limits)
        self.client.reset_execution_trackers()
        self._output = OutputTail()
        try:  # the launcher starts in the grader's own folder: nothing the notebook wrote is on its path
            self.client.start_new_kernel(cwd=str(self.workspace.private), stdout=self._output.write_fd,
                                         stderr=self._output.write_fd)
        except Exception as error:
            self._output.close_writer()
            Workspace.lock_ipc_folder(ipc_fd)
            raise RuntimeError(f"the kernel did not start ({error}); its last output:\n{self._output.text()[-3000:]}") from error
        finally:
            self._output.close_writer()
        try:
            self.client.start_new_kernel_client()
        finally:  # connected before any student code ran: from now on no socket in it can be swapped
            Workspace.lock_ipc_folder(ipc_fd)
        self._read_sandbox_report()
        self._pin_root()
        self._stop.clear()
        self._watchdog = threading.Thread(target=self._watch, daemon=True, name="nbgrade-watchdog")
        self._watchdog.start()
        self.run_code(self._prelude(), timeout=120, store_history=False)
        self.state_pin = _state_pin(self.last_output)

    def _prelude(self) -> str:
        values = {
            "NBGRADE_SEED = 0": f"NBGRADE_SEED = {int(self.seed)}",
            'NBGRADE_MNIST_ROOT = ""': f"NBGRADE_MNIST_ROOT = {str(self.workspace.sandbox_root / 'data')!r}",
            "NBGRADE_OUTPUT_CAP = 0": f"NBGRADE_OUTPUT_CAP = {int(self.limits.max_output_chars * 1.25) + 4096}",
            "NBGRADE_PRELOAD = ()": f"NBGRADE_PRELOAD = {heavy_imports(self.notebook)!r}",
            'NBGRADE_STATE = "_nbgrade"': f"NBGRADE_STATE = {self.state_name!r}",
        }
        prelude = kernel_source("prelude")
        for placeholder, value in values.items():
            prelude = prelude.replace(placeholder, value, 1)
        return (  # run in a private namespace: none of its names appear among the student's
            "import builtins as _nbgrade_builtins\n"
            f"_nbgrade_builtins.exec(_nbgrade_builtins.compile({prelude!r}, '<grader prelude>', 'exec'), "
            "{'__name__': '__nbgrade_prelude__'})\n"
            "del _nbgrade_builtins"
        )

    def shutdown(self) -> None:
        self._stop.set()
        self._unpin_root()
        if self.client is not None and self.km is not None:
            try:
                self.client._cleanup_kernel()
            except Exception:  # noqa: BLE001 - a dead or hung kernel must not stop grading
                pass
        self.kill()
        if self._output is not None:
            self._output.close()
            self.kernel_log = self._output.text()
            self._output = None
        self.client = None
        self.km = None

    def kill(self, reason: KillReason | None = None, message: str = "") -> None:
        """Kill every process of the kernel; with ``reason``, remember why (the first reason stays)."""
        if reason is not None and self.killed_for is None:
            self.killed_for = reason
            self.kill_reason = message or f"the kernel was stopped ({reason.value})"
        kill_processes(self.kernel_pid, self.workspace.uid if self.sandbox else None)

    def restart(self, notebook: NotebookNode | None = None) -> None:
        self.shutdown()
        self.start(notebook)

    @property
    def kernel_pid(self) -> int | None:
        provisioner = getattr(self.km, "provisioner", None)
        process = getattr(provisioner, "process", None)
        return getattr(process, "pid", None)

    @property
    def process_limit(self) -> int:
        """Live processes (not threads) the watchdog allows: a quarter of RLIMIT_NPROC, which also counts threads."""
        return max(8, self.limits.max_processes // 4)

    @property
    def alive(self) -> bool:
        """A kernel is running and has not died (as far as the grader knows)."""
        if self.client is None or self.dead:
            return False
        process = getattr(getattr(self.km, "provisioner", None), "process", None)
        return process is None or process.poll() is None

    def exit_description(self) -> str:
        """How the kernel ended: the watchdog's reason, else the process's exit status."""
        if self.kill_reason:
            return self.kill_reason
        process = getattr(getattr(self.km, "provisioner", None), "process", None)
        returncode = None
        if process is not None:
            try:
                returncode = process.wait(timeout=2)
            except Exception:  # noqa: BLE001 - still running or already reaped
                returncode = process.poll()
        return describe_exit(returncode)

    def _write_kernelspec(self) -> Path:
        spec_dir = self.workspace.private / "kernels" / "nbgrade"
        spec_dir.mkdir(parents=True, exist_ok=True)
        kernel = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        argv = kernel
        if self.sandbox:
            spec_path = self.workspace.private / "sandbox.json"
            self._sandbox_spec().write(spec_path)
            # The launcher runs as root (or as the instructor) before it confines anything: it must
            # import nothing from its current folder, PYTHONPATH or the user's site-packages.
            argv = [*isolated_python("graders.sandbox"), str(spec_path), "--", *kernel]
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
            expose=(*python_installation(), str(self.workspace.data_view.resolve())),
            sandbox_root=str(self.workspace.sandbox_root),
            private=str(self.workspace.private),
            data=str(self.workspace.data_view.resolve()),
            handover=str(self.workspace.handover),
            # Files are RAM here: at most half the memory cap, so a full disk is an error the notebook sees
            # (ENOSPC), never a kill of the kernel that would also cost the parts after it.
            disk_bytes=min(limits.disk_mb, limits.memory_mb // 2) * 2**20,
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
            "PYTHONFAULTHANDLER": "1",
            "http_proxy": "http://127.0.0.1:9",
            "https_proxy": "http://127.0.0.1:9",
            "HTTP_PROXY": "http://127.0.0.1:9",
            "HTTPS_PROXY": "http://127.0.0.1:9",
            "NBGRADE_IN_SANDBOX": "1",
        }

    def _read_sandbox_report(self) -> None:
        applied = self.workspace.private / "sandbox.applied.json"
        if applied.exists():
            try:
                report = json.loads(applied.read_text())
            except ValueError:
                return
            self.sandbox_notes = list(report.get("notes", []))
            self.sandbox_report = report

    # -------------------------------------------------------------- watchdog
    def _watch(self) -> None:
        while not self._stop.wait(0.25):
            try:
                self._check_limits()
            except Exception as error:  # noqa: BLE001 - the watchdog must outlive any odd /proc state
                self.watchdog_errors.append(repr(error)[:200])

    def _check_limits(self) -> None:
        """One watchdog round: time budget, process count, memory (each kills with a reason)."""
        if time.monotonic() > self.deadline:
            self.kill(KillReason.TIME_BUDGET, "the notebook ran out of its total time budget")
            return
        pids = processes_of(self.kernel_pid, self.workspace.uid if self.sandbox else None)
        self.peak_processes = max(self.peak_processes, len(pids))
        if len(pids) > self.process_limit:
            self.kill(KillReason.PROCESSES, f"the notebook started more than {self.process_limit} processes and was stopped")
            return
        disk_kb = self.written_kb()
        self.peak_disk_kb = max(self.peak_disk_kb, disk_kb)
        # Private and shared memory of every process, memfd files kept open, and the sandbox's files (tmpfs: RAM)
        used_kb = sum(read_private_kb(pid) for pid in pids) + unmapped_memfd_kb(pids) + disk_kb
        self.peak_rss_kb = max(self.peak_rss_kb, used_kb)
        if used_kb > self.limits.memory_mb * 1024:
            files = f" (with {disk_kb // 1024} MB of files it wrote)" if disk_kb >= 1024 else ""
            self.kill(KillReason.MEMORY, f"the kernel used more than {self.limits.memory_mb} MB of memory{files} and was stopped")

    def view_root(self) -> str | int | None:
        """Where the grader reaches the sandbox's files: the new root (a descriptor taken while the launcher
        ran, so a dead launcher's reused pid never leads elsewhere), else ``/``."""
        if not self.sandbox_report.get("new_root"):
            return "/"
        return self._root_fd if self._root_fd >= 0 else None

    def _pin_root(self) -> None:
        """Open the launcher's root once, at start, while the launcher is our living child."""
        self._unpin_root()
        pid = self.kernel_pid
        if self.sandbox_report.get("new_root") and pid is not None:
            try:
                self._root_fd = os.open(f"/proc/{pid}/root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError:
                self._root_fd = -1

    def _unpin_root(self) -> None:
        fd, self._root_fd = self._root_fd, -1  # the watchdog reads it: never leave a closed number behind
        if fd >= 0:
            os.close(fd)

    def written_kb(self) -> int:
        """What the notebook has written (its one tmpfs: folder, HOME, /tmp, /dev/shm, probe outputs)."""
        root = self.view_root()
        if not self.sandbox_report.get("new_root") or not isinstance(root, int):
            return 0
        from graders.hostfs import open_directory

        total = 0
        for folder in ("work", "out"):  # the quota tmpfs, and the probes' own
            try:
                fd = open_directory(root, (*self.workspace.sandbox_root.parts[1:], folder))
            except OSError:
                continue
            try:
                info = os.fstatvfs(fd)
            finally:
                os.close(fd)
            total += (info.f_blocks - info.f_bfree) * info.f_frsize // 1024
        return total

    # -------------------------------------------------------------- running code
    def run_cell(self, index: int, timeout: float, store_history: bool = True) -> CellRun:
        """Run cell ``index`` of the notebook; never raises for what the student's code does."""
        if not self.alive:
            return CellRun(index, CellStatus.KILLED, 0.0, "DeadKernel", self.exit_description() if self.client else "the kernel was not running",
                           killed_for=self.killed_for)
        assert self.client is not None
        cell = self.client.nb.cells[index]
        self.client.timeout = max(1, int(min(timeout, self.deadline - time.monotonic())))
        started = time.monotonic()
        self.client.timed_out = False
        self.client.iopub_timeout = IOPUB_TIMEOUT
        try:
            self.client.execute_cell(cell, index, store_history=store_history)
        except (DeadKernelError, RuntimeError) as error:
            return self._died(index, started, error)
        except CellTimeoutError:
            return CellRun(index, CellStatus.TIMEOUT, time.monotonic() - started, TIMEOUT_ENAME, f"{timeout:g} s")
        if self.killed_for is not None or not self.alive:
            return self._died(index, started, None)
        run = _cell_outcome(index, self.client.nb.cells[index], time.monotonic() - started)
        if self.client.timed_out:
            run.status, run.ename, run.evalue = CellStatus.TIMEOUT, TIMEOUT_ENAME, f"{self.client.timeout:g} s"
        return run

    def _died(self, index: int, started: float, error: BaseException | None) -> CellRun:
        """The kernel is gone: record why (watchdog reason, exit status), and kill what is left of it."""
        self.dead = True
        if error is not None and not isinstance(error, DeadKernelError) and self.alive:
            self.dead = False  # a RuntimeError from nbclient while the kernel still runs: treat as an error
            return CellRun(index, CellStatus.ERROR, time.monotonic() - started, type(error).__name__, str(error)[:300])
        reason = self.exit_description()
        self.kill()
        return CellRun(index, CellStatus.KILLED, time.monotonic() - started, "DeadKernel", reason, killed_for=self.killed_for)

    def run_code(self, source: str, timeout: float, store_history: bool = True) -> CellRun:
        """Run grader code (prelude, probes) in a scratch cell appended after the student's."""
        if self.client is None:
            return CellRun(-1, CellStatus.KILLED, 0.0, "DeadKernel", "the kernel was not running")
        cells = self.client.nb.cells
        cells.append(nbformat.v4.new_code_cell(source))
        index = len(cells) - 1
        try:
            run = self.run_cell(index, timeout, store_history)
        finally:
            self.last_output = "".join(str(o.get("text", "")) for o in cells[index].get("outputs", []))[:4096]
            cells.pop(index)
        return run

    def responsive(self, timeout: float | None = None) -> bool:
        """After an interrupt: does the kernel answer again (within the cell timeout, at most 5 s)?"""
        timeout = timeout if timeout is not None else min(5.0, max(2.0, self.limits.cell_timeout))
        return self.alive and self.run_code("pass", timeout=timeout, store_history=False).status == CellStatus.OK

    def stop_if_unresponsive(self, reason: str) -> bool:
        """After a timeout: kill the kernel when it does not answer; True when it had to be killed."""
        if self.responsive():
            return False
        self.kill(KillReason.UNRESPONSIVE, reason)
        self.dead = True
        return True


_STATE_PIN = re.compile(r"^nbgrade-state (\d+) (\d+) (\d+) (\d+)$", re.M)


def _state_pin(prelude_output: str) -> tuple[int, ...]:
    """(id of the state module, of its two functions, its nonce) from the prelude's one line of output."""
    match = _STATE_PIN.search(prelude_output)
    return tuple(int(value) for value in match.groups()) if match else ()


def _cell_outcome(index: int, cell: NotebookNode, duration: float) -> CellRun:
    count = cell.get("execution_count")
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            ename = output.get("ename", "Error")
            status = CellStatus.TIMEOUT if ename == TIMEOUT_ENAME else CellStatus.ERROR
            trace = strip_ansi("\n".join(output.get("traceback", [])))[-6000:]
            return CellRun(index, status, duration, ename, str(output.get("evalue", ""))[:500], trace, count)
    return CellRun(index, CellStatus.OK, duration, execution_count=count)
