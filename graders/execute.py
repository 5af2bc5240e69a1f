"""Execute: run a student's notebook with nbclient in a confined kernel, and never judge it.

A :class:`KernelSession` owns one sandboxed kernel. :func:`execute_notebook` runs the submitted
cells through it one by one: a cell that raises does not stop the run; a cell that exceeds its
timeout is interrupted; a kernel that dies is restarted once and the notebook re-run with the
fatal cell skipped. A watchdog thread kills the kernel's processes when the wall-clock budget,
the memory cap or the process count is exceeded, whatever nbclient is doing at the time.

The grader's own memory stays bounded whatever the notebook prints: the kernel caps each cell's
output before sending it (see ``kernel/prelude.py``), the grader's sockets refuse messages larger
than :data:`MAX_MESSAGE_BYTES` and queue at most :data:`MAX_QUEUED_MESSAGES` of them, and what
the kernel writes to its own stdout/stderr file descriptors is drained into a small ring buffer.
"""

from __future__ import annotations

import json
import os
import re
import secrets
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
import zmq
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager as KernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionComplete, CellTimeoutError, DeadKernelError
from nbformat import NotebookNode

from graders.config import Limits
from graders.kernel import kernel_source
from graders.sandbox import SANDBOX_UID_BASE, SandboxSpec, is_root, isolated_python, path_reachable_by_others

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
TIMEOUT_ENAME = "CellTimeoutError"
MAX_MESSAGE_BYTES = 16 * 2**20
"""A kernel message larger than this is dropped by the grader's socket (zmq MAXMSGSIZE)."""
MAX_QUEUED_MESSAGES = 64
"""Messages the grader's sockets queue before the kernel's further output is dropped (zmq RCVHWM)."""
IOPUB_TIMEOUT = 5
"""Seconds to wait, after a cell's reply, for the rest of its output (1 s after a timeout)."""
TRUNCATION_NOTE = "[grader] output truncated: this cell printed too much."
KERNEL_LOG_BYTES = 32_768
"""The last bytes of the kernel process's own stdout/stderr kept for the instructor (crash messages)."""


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
    """The folders of one grading run, laid out so that the kernel can replace nothing the grader uses.

    ``sandbox_root`` and every folder in it are the grader's (root's as root) and read-only to the
    kernel, except ``work`` and ``home`` (the kernel's uid) and each start's socket folder under
    ``ipc`` until the kernel is up. The grader hands files over in its own folders (``run``: the
    connection file; ``inputs``: hidden inputs) and reads the probes' results from ``out`` through
    :mod:`graders.hostfs`. In the new root (Linux with namespaces) ``work``, ``home`` and ``out``
    are replaced by folders of the sandbox's own size-limited tmpfs; the host folders are used only
    where namespaces are unavailable. The grader's own ``private`` folder is invisible to the kernel.
    """

    sandbox_root: Path
    private: Path
    uid: int | None
    data_view: Path
    """The MNIST root the kernel may read (see :func:`graders.mnist.sandbox_view`)."""
    uid_lock: int = -1
    """File descriptor holding this machine-wide claim on ``uid`` (see :func:`claim_uid`)."""
    starts: int = 0
    exchanges: int = 0

    @classmethod
    def create(cls, data_view: Path, slot: int = 0, switch_user: bool = True) -> "Workspace":
        private = Path(tempfile.mkdtemp(prefix="nbgrade-private-")).resolve()
        root = Path(tempfile.mkdtemp(prefix="nbgrade-sandbox-")).resolve()
        root.chmod(0o755)
        uid, lock = claim_uid(slot) if switch_user and is_root() and _python_reachable() else (None, -1)
        workspace = cls(root, private, uid, Path(data_view), lock)
        for name, mode, owner in (("work", 0o700, uid), ("home", 0o700, uid), ("run", 0o755, None),
                                  ("inputs", 0o755, None), ("ipc", 0o711, None), ("out", 0o755, None)):
            (root / name).mkdir(mode=mode)
            (root / name).chmod(mode)
            if owner is not None:
                os.chown(root / name, owner, owner, follow_symlinks=False)
        (root / "data").symlink_to(Path(data_view).resolve(), target_is_directory=True)
        for folder in (workspace.workdir, workspace.home):
            (folder / "data").symlink_to("../data", target_is_directory=True)
            if uid is not None:
                os.chown(folder / "data", uid, uid, follow_symlinks=False)
        return workspace

    @property
    def workdir(self) -> Path:
        return self.sandbox_root / "work"

    @property
    def home(self) -> Path:
        return self.sandbox_root / "home"

    @property
    def handover(self) -> Path:
        """Where the launcher puts the kernel's connection file (the grader's folder, read-only to the kernel)."""
        return self.sandbox_root / "run"

    def new_ipc_folder(self) -> tuple[Path, int]:
        """A fresh folder for one kernel start's sockets, the kernel's until :meth:`lock_ipc_folder`.

        Created after every process of the previous kernel was killed, under a folder the kernel
        cannot write: nothing can be waiting in it.
        """
        from graders.hostfs import make_directory, open_directory

        self.starts += 1
        parent = open_directory(self.sandbox_root / "ipc")
        try:
            fd = make_directory(parent, str(self.starts), 0o700, owner=self.uid)
        finally:
            os.close(parent)
        return self.sandbox_root / "ipc" / str(self.starts), fd

    @staticmethod
    def lock_ipc_folder(fd: int) -> None:
        """Once the kernel is connected: the socket folder becomes the grader's, so no socket can be swapped."""
        try:
            os.fchown(fd, os.geteuid(), os.getegid())
            os.fchmod(fd, 0o755)
        except OSError:
            pass
        finally:
            os.close(fd)

    def new_exchange_number(self) -> int:
        self.exchanges += 1
        return self.exchanges

    def cleanup(self) -> None:
        shutil.rmtree(self.private, ignore_errors=True)
        shutil.rmtree(self.sandbox_root, ignore_errors=True)  # fd-based on Linux: follows no link
        if self.uid_lock >= 0:
            os.close(self.uid_lock)  # releases the claim on the uid
            self.uid_lock = -1


SANDBOX_SLOTS = 4000
"""Sandbox uids are ``SANDBOX_UID_BASE`` … ``SANDBOX_UID_BASE + SANDBOX_SLOTS - 1``."""


def claim_uid(preferred_slot: int) -> tuple[int, int]:
    """A sandbox uid no other grader on this machine is using, and the lock that holds it.

    The watchdog and the killer act on *every* process of the uid, so two kernels must never
    share one: each claim is an exclusive ``flock`` on a file named after the uid, held until
    :meth:`Workspace.cleanup` (or the grader's exit), and a uid that still has processes (left by
    a grader that crashed) is skipped.
    """
    import fcntl

    directory = Path(tempfile.gettempdir()) / "nbgrade-uids"
    directory.mkdir(mode=0o700, exist_ok=True)
    for offset in range(SANDBOX_SLOTS):
        uid = SANDBOX_UID_BASE + (preferred_slot + offset) % SANDBOX_SLOTS
        fd = os.open(directory / str(uid), os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        if not processes_of(None, uid):
            return uid, fd
        os.close(fd)
    raise RuntimeError("no free sandbox uid: every slot is in use")


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
        size = text_size(content)
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


def read_anon_kb(pid: int) -> int:
    """Anonymous memory of one process: its proportional share (Pss_Anon) when the system reports it.

    Forked children (DataLoader workers, a fork bomb) share their parent's pages copy-on-write;
    the proportional share counts those pages once across the processes instead of once each.
    """
    for path, key in ((f"/proc/{pid}/smaps_rollup", "Pss_Anon:"), (f"/proc/{pid}/status", "RssAnon:")):
        try:
            with open(path) as handle:
                for line in handle:
                    if line.startswith(key):
                        return int(line.split()[1])
        except OSError:
            continue
    return _resident_kb(pid)


def _resident_kb(pid: int) -> int:
    """Resident memory where /proc does not exist (macOS): all of it, shared pages included."""
    import psutil

    try:
        return psutil.Process(pid).memory_info().rss // 1024
    except psutil.Error:
        return 0


read_rss_anon_kb = read_anon_kb


def processes_of(kernel_pid: int | None, uid: int | None) -> list[int]:
    """Every process of the sandbox: all of its uid when it has one, else the kernel's tree."""
    import psutil

    if uid is not None:
        found = []
        for proc in psutil.process_iter(["uids", "status"]):
            try:
                if proc.info["uids"] and proc.info["uids"].real == uid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                    found.append(proc.pid)
            except (psutil.Error, TypeError):
                continue
        return found
    if kernel_pid is None:
        return []
    try:
        root = psutil.Process(kernel_pid)
        tree = [root, *root.children(recursive=True)]
        return [p.pid for p in tree if _not_zombie(p)]
    except psutil.Error:
        return []


def _not_zombie(process) -> bool:  # noqa: ANN001 - psutil.Process
    import psutil

    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def kill_processes(kernel_pid: int | None, uid: int | None, patience: float = 20.0) -> None:
    """SIGKILL the kernel's process group and every process of the sandbox, until none is left.

    With a sandbox uid, ``kill -9 -1`` run *as that uid* signals all of its processes in one
    system call, which also stops a fork bomb that keeps forking while it is being killed. Large
    processes take a while to exit after SIGKILL (seconds, for dozens of forked kernels on a busy
    machine); waiting for them keeps the uid's process count free for a restarted kernel.
    """
    if kernel_pid is not None:
        try:
            os.killpg(kernel_pid, signal.SIGKILL)
        except OSError:
            pass
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        pids = processes_of(kernel_pid, uid)
        if not pids:
            return
        if uid is not None:
            _kill_all_of_uid(uid)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.1)


def _kill_all_of_uid(uid: int) -> None:
    import subprocess

    kill = shutil.which("kill") or "/bin/kill"
    try:
        subprocess.run([kill, "-9", "--", "-1"], user=uid, group=uid, extra_groups=[], timeout=5,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.SubprocessError):
        pass


def describe_exit(returncode: int | None) -> str:
    """One sentence on how the kernel process ended, from its exit status."""
    if returncode is None:
        return "the kernel died (the process exited or was killed)"
    if returncode < 0:
        number = -returncode
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        what = {
            signal.SIGSEGV: "crashed with a segmentation fault (SIGSEGV)",
            signal.SIGBUS: "crashed with a bus error (SIGBUS)",
            signal.SIGABRT: "aborted (SIGABRT)",
            signal.SIGKILL: "was killed (SIGKILL)",
            signal.SIGXCPU: "ran out of CPU time (SIGXCPU)",
            signal.SIGXFSZ: "wrote a file larger than allowed (SIGXFSZ)",
        }.get(number, f"was stopped by {name}")
        return f"the kernel {what}"
    return f"the kernel process exited (exit code {returncode})"


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

    def kill(self, reason: str | None = None) -> None:
        if reason and not self.kill_reason:
            self.kill_reason = reason
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
            disk_bytes=limits.disk_mb * 2**20,
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
            self.kill("the notebook ran out of its total time budget")
            return
        pids = processes_of(self.kernel_pid, self.workspace.uid if self.sandbox else None)
        self.peak_processes = max(self.peak_processes, len(pids))
        if len(pids) > self.process_limit:
            self.kill(f"the notebook started more than {self.process_limit} processes and was stopped")
            return
        disk_kb = self.written_kb()
        self.peak_disk_kb = max(self.peak_disk_kb, disk_kb)
        anon_kb = sum(read_anon_kb(pid) for pid in pids) + disk_kb  # the sandbox's files live in RAM (tmpfs)
        self.peak_rss_kb = max(self.peak_rss_kb, anon_kb)
        if anon_kb > self.limits.memory_mb * 1024:
            files = f" (with {disk_kb // 1024} MB of files it wrote)" if disk_kb >= 1024 else ""
            self.kill(f"the kernel used more than {self.limits.memory_mb} MB of memory{files} and was stopped")

    def view_root(self) -> str | None:
        """Where the grader reaches the sandbox's files: the launcher's root in the new root, else ``/``."""
        if not self.sandbox_report.get("new_root"):
            return "/"
        pid = self.kernel_pid
        return f"/proc/{pid}/root" if pid is not None else None

    def written_kb(self) -> int:
        """What the notebook has written (its one tmpfs: folder, HOME, /tmp, /dev/shm, probe outputs)."""
        if not self.sandbox_report.get("new_root") or self.kernel_pid is None:
            return 0
        from graders.hostfs import open_directory

        total = 0
        for folder in ("work", "out"):  # the quota tmpfs, and the probes' own
            try:
                fd = open_directory(f"/proc/{self.kernel_pid}/root", (*self.workspace.sandbox_root.parts[1:], folder))
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
            return CellRun(index, "killed", 0.0, "DeadKernel", self.exit_description() if self.client else "the kernel was not running")
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
            return CellRun(index, "timeout", time.monotonic() - started, TIMEOUT_ENAME, f"{timeout:g} s")
        if self.kill_reason or not self.alive:
            return self._died(index, started, None)
        run = _cell_outcome(index, self.client.nb.cells[index], time.monotonic() - started, self.kill_reason)
        if self.client.timed_out:
            run.status, run.ename, run.evalue = "timeout", TIMEOUT_ENAME, f"{self.client.timeout:g} s"
        return run

    def _died(self, index: int, started: float, error: BaseException | None) -> CellRun:
        """The kernel is gone: record why (watchdog reason, exit status), and kill what is left of it."""
        self.dead = True
        if error is not None and not isinstance(error, DeadKernelError) and self.alive:
            self.dead = False  # a RuntimeError from nbclient while the kernel still runs: treat as an error
            return CellRun(index, "error", time.monotonic() - started, type(error).__name__, str(error)[:300])
        reason = self.exit_description()
        self.kill()
        return CellRun(index, "killed", time.monotonic() - started, "DeadKernel", reason)

    def run_code(self, source: str, timeout: float, store_history: bool = True) -> CellRun:
        """Run grader code (prelude, probes) in a scratch cell appended after the student's."""
        if self.client is None:
            return CellRun(-1, "killed", 0.0, "DeadKernel", "the kernel was not running")
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
        return self.alive and self.run_code("pass", timeout=timeout, store_history=False).status == "ok"

    def stop_if_unresponsive(self, reason: str) -> bool:
        """After a timeout: kill the kernel when it does not answer; True when it had to be killed."""
        if self.responsive():
            return False
        self.kill(reason)
        self.dead = True
        return True


_STATE_PIN = re.compile(r"^nbgrade-state (\d+) (\d+) (\d+) (\d+)$", re.M)


def _state_pin(prelude_output: str) -> tuple[int, ...]:
    """(id of the state module, of its two functions, its nonce) from the prelude's one line of output."""
    match = _STATE_PIN.search(prelude_output)
    return tuple(int(value) for value in match.groups()) if match else ()


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
    code_cells = student_code_cells(session.notebook)
    fatal: dict[int, CellRun] = {}
    notes: list[str] = []
    while True:
        runs, died = _run_cells(session, code_cells, fatal, limits)
        if died is None or len(fatal) >= 1 or time.monotonic() > session.deadline:
            break
        fatal[died.index] = died
        notes.append(
            f"The kernel died in cell {died.index + 1} ({died.evalue}); it was restarted and the notebook "
            "re-run without that cell."
        )
        session.restart()
    status = "timed_out" if time.monotonic() > session.deadline or _budget_killed(runs) else "completed"
    if died is not None and len(fatal) >= 1:
        notes.append(f"The kernel died again in cell {died.index + 1} ({died.evalue}); the cells after it were not run.")
    notes.extend(_truncation_notes(session, limits))
    return ExecutedNotebook(session.notebook, runs, time.monotonic() - started, status, len(fatal), notes)


def _truncation_notes(session: KernelSession, limits: Limits) -> list[str]:
    """Which cells lost output, to the grader's cap or to the kernel's (which leaves its note in the output)."""
    cells = set(session.client.truncated_cells) if session.client is not None else set()
    for index, cell in enumerate(session.notebook.cells):
        if any(TRUNCATION_NOTE in str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
               for o in cell.get("outputs", [])):
            cells.add(index)
    cells = sorted(cells)
    if not cells:
        return []
    listed = ", ".join(str(i + 1) for i in cells[:10]) + (" …" if len(cells) > 10 else "")
    return [f"Cell{'s' if len(cells) > 1 else ''} {listed} printed more than {limits.max_output_chars:,} characters "
            "(or the notebook more than {:,}); the rest of the output was not kept.".format(limits.max_output_total_chars)]


def student_code_cells(notebook: NotebookNode) -> list[int]:
    return [i for i, c in enumerate(notebook.cells) if c.cell_type == "code" and c.source.strip()]


def _budget_killed(runs: list[CellRun]) -> bool:
    return any(r.status == "killed" and "time budget" in r.evalue for r in runs)


def _run_cells(
    session: KernelSession, code_cells: list[int], fatal: dict[int, CellRun], limits: Limits
) -> tuple[list[CellRun], CellRun | None]:
    """Run ``code_cells`` in order, the fatal ones excepted; the run that killed the kernel, if any."""
    runs: list[CellRun] = []
    for position, index in enumerate(code_cells):
        if index in fatal:
            first = fatal[index]
            runs.append(CellRun(index, first.status, first.duration, first.ename,
                                f"{first.evalue}; skipped when the notebook was re-run"))
            continue
        if time.monotonic() >= session.deadline:
            runs.extend(CellRun(i, "skipped", evalue="not run: the notebook's time budget was used up") for i in code_cells[position:])
            break
        run = session.run_cell(index, limits.cell_timeout)
        runs.append(run)
        if run.status == "killed":
            rest = code_cells[position + 1 :]
            runs.extend(CellRun(i, "skipped", evalue=f"not run: the kernel had died in cell {index + 1}") for i in rest)
            return runs, (None if "time budget" in run.evalue else run)
        if run.status == "timeout" and session.stop_if_unresponsive("the kernel did not respond after a cell timed out"):
            run.evalue = f"{run.evalue}; the kernel did not respond to the interrupt and was restarted"
            rest = code_cells[position + 1 :]
            runs.extend(CellRun(i, "skipped", evalue="not run: the kernel hung") for i in rest)
            return runs, run
    return runs, None
