"""The folders of one grading run and the sandbox uid it holds; what the kernel may see of the host.

:class:`Workspace` lays out the sandbox folder so that the kernel can replace nothing the grader
uses (see the README's "Sandbox and limits"); :func:`claim_uid` gives each kernel a uid no other
grader on the machine uses; :func:`python_installation` and :func:`hidden_directories` say what
the new root exposes and hides.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

from graders.processes import processes_of
from graders.sandbox import SANDBOX_UID_BASE, is_root, path_reachable_by_others


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
        try:
            for folder in (self.private, self.sandbox_root):
                remove_tree(folder)
        finally:
            if self.uid_lock >= 0:
                os.close(self.uid_lock)  # releases the claim on the uid
                self.uid_lock = -1


def remove_tree(folder: Path) -> None:
    """Delete a folder the kernel may have filled, following no link, however deep it is nested.

    shutil.rmtree works by descriptors on Linux (no link is followed) but recurses once per level:
    a tree nested thousands deep raises RecursionError, which ``ignore_errors`` does not catch; then
    ``rm -rf --one-file-system`` (iterative, follows no link) finishes the job.
    """
    try:
        shutil.rmtree(folder, ignore_errors=True)
    except RecursionError:
        import subprocess

        rm = shutil.which("rm") or "/bin/rm"
        subprocess.run([rm, "-rf", "--one-file-system", "--", str(folder)], check=False, timeout=300,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


SANDBOX_SLOTS = 4000
"""Sandbox uids are ``SANDBOX_UID_BASE`` … ``SANDBOX_UID_BASE + SANDBOX_SLOTS - 1``."""


_KEYCTL = {"x86_64": 250, "aarch64": 219, "i686": 288, "armv7l": 311, "ppc64le": 280, "s390x": 280}
"""The keyctl system call's number (glibc has no wrapper; libkeyutils may not be installed)."""
_KEYCTL_CLEAR = 7
_USER_KEYRINGS = (-4, -5)  # KEY_SPEC_USER_KEYRING, KEY_SPEC_USER_SESSION_KEYRING


def clear_keyrings(uid: int) -> None:
    """Empty the uid's user keyrings, which live in the host's kernel outside every namespace.

    Run in a forked child that becomes the uid (only the owner may clear them); best effort.
    """
    number = _KEYCTL.get(os.uname().machine)
    if number is None or not hasattr(os, "fork"):
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    child = os.fork()
    if child == 0:
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            for keyring in _USER_KEYRINGS:
                libc.syscall(number, _KEYCTL_CLEAR, keyring)
        finally:
            os._exit(0)
    os.waitpid(child, 0)


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
            clear_keyrings(uid)  # a key an earlier grading on this uid left in the host's kernel is gone
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


def assignment_packages() -> tuple[str, ...]:
    """Top-level packages of every registered assignment: its entry point's, and its reference module's."""
    from importlib import metadata

    names = {entry.value.split(":")[0].split(".")[0] for entry in metadata.entry_points(group="nbgrade.assignments")}
    try:
        from graders.registry import all_assignments

        names.update(spec.reference_module.split(".")[0] for spec in all_assignments() if spec.reference_module)
    except Exception:  # noqa: BLE001 - an assignment that does not load is still hidden by its entry point
        pass
    return tuple(sorted(names))


def _find_top_level(name: str):  # noqa: ANN202 - importlib's ModuleSpec
    try:
        return find_spec(name)
    except (ImportError, ValueError):
        return None


def hidden_directories(extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The grader's own code and every assignment's package and reference solution, hidden from the kernel.

    The kernel needs the Python installation (bound read-only into its new root), and with it come the
    site-packages folders where a course installs its assignments: each registered assignment's
    packages (the entry point's and its declared reference module's) are covered, wherever they live.
    """
    hidden = []
    for package in ("reference", "graders", *assignment_packages()):
        spec = _find_top_level(package)
        if spec and spec.submodule_search_locations:
            hidden.extend(spec.submodule_search_locations)
        elif spec and spec.origin and spec.origin not in ("built-in", "frozen"):
            hidden.append(str(Path(spec.origin).parent / Path(spec.origin).name))
    graders_spec = _find_top_level("graders")
    repo = Path(graders_spec.origin).parent.parent if graders_spec and graders_spec.origin else None
    if repo is not None:
        for name in ("tests", "benchmarks", ".git"):
            if (repo / name).is_dir():
                hidden.append(str(repo / name))
    return tuple(dict.fromkeys([*hidden, *extra]))
