"""Confining a student kernel: limits, a private directory, no network, and another user.

The grader starts each kernel through this module (``python -m graders.sandbox SPEC -- CMD``).
It applies, in order, before ``exec``-ing the kernel:

* as root on Linux: new mount and network namespaces (the network namespace has no interface,
  so there is no network at all; the kernel talks to the grader over Unix sockets), the
  reference solutions and the grader's own code hidden under empty read-only mounts, MNIST
  bound read-only into the working directory, and the switch to an unprivileged uid that owns
  nothing but the private working directory;
* everywhere: rlimits on CPU time, address space, processes, file size and open files.

Anonymous resident memory and the wall clock are enforced from outside by the grader
(:mod:`graders.execute`), which can kill every process of the sandbox uid.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

SANDBOX_UID_BASE = 61000
"""Kernels run as uid ``SANDBOX_UID_BASE + slot`` when the grader is root (no passwd entry needed)."""

_CLONE_NEWNS = 0x00020000
_CLONE_NEWNET = 0x40000000
_MS_RDONLY = 0x1
_MS_REMOUNT = 0x20
_MS_BIND = 0x1000
_MS_REC = 0x4000
_MS_PRIVATE = 0x40000


@dataclass(frozen=True)
class SandboxSpec:
    """What the launcher applies to one kernel; written as JSON by the grader."""

    workdir: str
    """The kernel's working directory (private, created by the grader)."""
    home: str
    """HOME for the kernel."""
    uid: int | None
    """Switch to this uid (root only); None keeps the grader's user."""
    cpu_seconds: int
    address_space_bytes: int
    max_processes: int
    max_file_bytes: int
    max_open_files: int
    hide: tuple[str, ...] = ()
    """Directories to cover with an empty read-only mount (root only)."""
    binds: tuple[tuple[str, str], ...] = ()
    """(source, target) directories bound read-only into the sandbox (root only)."""
    isolate_network: bool = True
    expose: tuple[str, ...] = ()
    """Directories the kernel must reach (the Python installation) even under a private home such as /root."""

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self)))

    @classmethod
    def read(cls, path: Path) -> "SandboxSpec":
        data = json.loads(path.read_text())
        data["hide"] = tuple(data["hide"])
        data["binds"] = tuple(tuple(pair) for pair in data["binds"])
        data["expose"] = tuple(data.get("expose", ()))
        return cls(**data)


@dataclass
class SandboxReport:
    """What the launcher managed to apply (written beside the spec for the grader to read)."""

    namespaces: bool = False
    network_isolated: bool = False
    uid: int | None = None
    hidden: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def path_reachable_by_others(path: Path) -> bool:
    """True when every directory up to ``path`` lets other users through (o+x) and it is o+r."""
    path = path.resolve()
    for parent in [*reversed(path.parents), path]:
        try:
            mode = parent.stat().st_mode
        except OSError:
            return False
        if parent.is_dir() and not mode & 0o001:
            return False
    return bool(path.stat().st_mode & 0o004)


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _mount(libc: ctypes.CDLL, source: str, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    result = libc.mount(
        source.encode(), target.encode(), fstype.encode() if fstype else None, flags, data.encode() if data else None
    )
    if result != 0:
        raise OSError(ctypes.get_errno(), f"mount {source} on {target} failed")


def enter_namespaces(spec: SandboxSpec, report: SandboxReport) -> None:
    """New mount (+ network) namespace; hide and bind directories. Root on Linux only."""
    libc = _libc()
    flags = _CLONE_NEWNS | (_CLONE_NEWNET if spec.isolate_network else 0)
    if libc.unshare(flags) != 0:
        report.notes.append(f"namespaces unavailable (errno {ctypes.get_errno()}); limits only")
        return
    report.namespaces = True
    report.network_isolated = spec.isolate_network
    _mount(libc, "none", "/", None, _MS_REC | _MS_PRIVATE, None)
    for source, target in spec.binds:
        os.makedirs(target, exist_ok=True)
        _mount(libc, source, target, None, _MS_BIND | _MS_REC, None)
        _mount(libc, source, target, None, _MS_BIND | _MS_REMOUNT | _MS_RDONLY, None)
    _expose(libc, spec.expose)
    for directory in spec.hide:
        if os.path.isdir(directory):
            _mount(libc, "tmpfs", directory, "tmpfs", _MS_RDONLY, "size=4k,mode=755")
            report.hidden.append(directory)


def blocked_ancestor(path: Path) -> Path | None:
    """The top-most directory on the way to ``path`` that other users cannot pass through."""
    for parent in [*reversed(path.parents), path]:
        try:
            if parent.is_dir() and not parent.stat().st_mode & 0o001:
                return parent
        except OSError:
            return None
    return None


def _expose(libc: ctypes.CDLL, paths: tuple[str, ...]) -> None:
    """Make ``paths`` reachable by the sandbox user without opening what lies beside them.

    A directory such as /root (mode 0700) on the way is covered with an empty tmpfs (so the
    rest of it stays invisible) and each exposed path is bound back into it, read-only.
    """
    blocked: dict[Path, list[Path]] = {}
    for raw in paths:
        path = Path(raw).resolve()
        ancestor = blocked_ancestor(path)
        if ancestor is not None and ancestor != path:
            blocked.setdefault(ancestor, []).append(path)
    for ancestor, inside in blocked.items():
        stash = Path(tempfile.mkdtemp(prefix="nbgrade-stash-"))
        for number, path in enumerate(inside):
            (stash / str(number)).mkdir()
            _mount(libc, str(path), str(stash / str(number)), None, _MS_BIND | _MS_REC, None)
        _mount(libc, "tmpfs", str(ancestor), "tmpfs", 0, "size=64k,mode=755")
        for number, path in enumerate(inside):
            path.mkdir(parents=True, exist_ok=True)
            _mount(libc, str(stash / str(number)), str(path), None, _MS_BIND | _MS_REC, None)
            _mount(libc, str(path), str(path), None, _MS_BIND | _MS_REMOUNT | _MS_RDONLY, None)
            libc.umount2(str(stash / str(number)).encode(), 2)  # MNT_DETACH


def apply_rlimits(spec: SandboxSpec) -> None:
    """CPU, memory, processes, file size, open files; each lowered only (never raised)."""
    limits = {
        resource.RLIMIT_CPU: spec.cpu_seconds,
        resource.RLIMIT_AS: spec.address_space_bytes,
        resource.RLIMIT_NPROC: spec.max_processes,
        resource.RLIMIT_FSIZE: spec.max_file_bytes,
        resource.RLIMIT_NOFILE: spec.max_open_files,
        resource.RLIMIT_CORE: 0,
    }
    for which, value in limits.items():
        soft, hard = resource.getrlimit(which)
        cap = value if hard == resource.RLIM_INFINITY else min(value, hard)
        try:
            resource.setrlimit(which, (cap, cap))
        except (ValueError, OSError):
            resource.setrlimit(which, (min(cap, soft) if soft != resource.RLIM_INFINITY else cap, hard))


def drop_privileges(uid: int) -> None:
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)


def private_connection_file(argv: list[str], home: str, uid: int | None) -> list[str]:
    """Copy the kernel's connection file (0600, root's) to where the sandbox user can read it."""
    if "-f" not in argv:
        return argv
    position = argv.index("-f") + 1
    source = argv[position]
    target = os.path.join(home, "kernel-connection.json")
    shutil.copyfile(source, target)
    os.chmod(target, 0o600)
    if uid is not None:
        os.chown(target, uid, uid)
    return [*argv[:position], target, *argv[position + 1 :]]


def launch(spec_path: Path, argv: list[str]) -> None:
    """Apply the spec to this process, then become the kernel (``exec``)."""
    spec = SandboxSpec.read(spec_path)
    report = SandboxReport()
    report_file = spec_path.with_suffix(".applied.json").open("w")  # opened before the grader's files are hidden
    switch_user = is_root() and spec.uid is not None
    if is_root() and sys.platform.startswith("linux"):
        try:
            enter_namespaces(spec, report)
        except OSError as error:
            report.notes.append(f"namespace set-up incomplete: {error}")
    argv = private_connection_file(argv, spec.home, spec.uid if switch_user else None)
    if switch_user and not path_reachable_by_others(Path(sys.executable)):
        switch_user = False
        report.notes.append("the Python installation is not reachable by an unprivileged user; kernel kept the grader's user")
    report.uid = spec.uid if switch_user else None
    with report_file:
        report_file.write(json.dumps(asdict(report)))
    if switch_user:
        drop_privileges(spec.uid)
    apply_rlimits(spec)
    os.chdir(spec.workdir)
    os.execvpe(argv[0], argv, os.environ.copy())


def main() -> None:
    args = sys.argv[1:]
    if len(args) < 3 or args[1] != "--":
        sys.stderr.write("usage: python -m graders.sandbox SPEC.json -- COMMAND ...\n")
        raise SystemExit(2)
    launch(Path(args[0]), args[2:])


if __name__ == "__main__":
    main()
