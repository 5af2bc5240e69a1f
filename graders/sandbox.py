"""Confining a student kernel: limits, a private directory, no network, and another user.

The grader starts each kernel through this module (``python -m graders.sandbox SPEC -- CMD``).
It applies, in order, before ``exec``-ing the kernel:

* on Linux: new mount and network namespaces (as root directly; otherwise inside a new user
  namespace when the system allows unprivileged ones). The network namespace has no interface,
  so there is no network at all; the kernel talks to the grader over Unix sockets. The kernel
  then runs in a *new root*: an empty tmpfs into which only the system directories (``/usr``,
  ``/etc``, ``/lib`` …), the Python installation, MNIST (read-only) and the sandbox's own
  directory are bound, with a private ``/tmp`` and ``/dev/shm``. Everything else (other
  submissions, the reference solutions, the grader's code and results, home directories) does
  not exist for it;
* as root: the switch to an unprivileged uid (``SANDBOX_UID_BASE + slot``) that owns nothing but
  the sandbox's directory, so it cannot signal the grader or write anything else;
* everywhere: rlimits on CPU time, address space, processes, file size and open files.

Anonymous resident memory, the number of processes and the wall clock are enforced from outside
by the grader (:mod:`graders.execute`), which can kill every process of the sandbox.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
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
    isolate_network: bool = True
    expose: tuple[str, ...] = ()
    """Directories the kernel must reach, read-only (the Python installation, MNIST)."""
    sandbox_root: str = ""
    """The sandbox's own directory (work, home, ipc, exchange), bound read-write into the new root."""
    new_root: bool = True
    """Run the kernel in a new root that holds only what it needs (Linux, namespaces available)."""
    disk_bytes: int = 1024 * 2**20
    """Everything the kernel can write in the new root (its folder, HOME, ``/tmp``, ``/dev/shm``) is one
    tmpfs of this size (the probes' outputs another, of :data:`OUTPUT_BYTES`): the host's disk never
    receives a byte from it."""
    private: str = ""
    """The grader's private directory (hidden from the kernel), where the new root is assembled."""
    data: str = ""
    """MNIST as the kernel may see it (held-back digits removed), bound read-only at ``SANDBOX/data``."""
    handover: str = ""
    """A folder the grader owns (``SANDBOX/run``): the launcher puts the kernel's connection file there."""

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self)))

    @classmethod
    def read(cls, path: Path) -> "SandboxSpec":
        data = json.loads(path.read_text())
        data["hide"] = tuple(data["hide"])
        data["expose"] = tuple(data.get("expose", ()))
        known = set(cls.__dataclass_fields__)
        return cls(**{key: value for key, value in data.items() if key in known})


@dataclass
class SandboxReport:
    """What the launcher managed to apply (written beside the spec for the grader to read)."""

    namespaces: bool = False
    user_namespace: bool = False
    """True when an unprivileged user namespace made the namespaces possible (grader not root)."""
    network_isolated: bool = False
    new_root: bool = False
    """True when the kernel sees only the new root (system directories, Python, its sandbox)."""
    pid_namespace: bool = False
    """True when the kernel runs in its own PID namespace (it cannot see or signal the grader)."""
    uid: int | None = None
    hidden: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def isolated_python(module: str) -> list[str]:
    """The command that runs ``module`` with this Python, importing nothing from the current folder.

    For every process the grader starts outside the sandbox (this launcher, batch workers): ``-I``
    drops the current folder, ``PYTHONPATH`` and the user's site-packages from the import path, and
    only the folder this harness is installed in is added back, so a package a notebook planted
    where the process starts can never be imported by it (as root, or as the instructor).
    """
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = (f"import sys; sys.path.insert(0, {package_root!r}); import runpy; "
            f"runpy.run_module({module!r}, run_name='__main__', alter_sys=True)")
    return [sys.executable, "-I", "-c", code]


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


_CLONE_NEWUSER = 0x10000000
_CLONE_NEWIPC = 0x08000000
_CLONE_NEWPID = 0x20000000
_MS_NOSUID = 0x2
_MS_NODEV = 0x4
_MS_NOEXEC = 0x8
_MS_NOATIME = 0x400
_MS_NODIRATIME = 0x800
_MS_RELATIME = 0x200000
_MNT_DETACH = 2
_LOCKED_FLAGS = tuple(  # statvfs flag → mount flag; a user namespace may not clear these on a remount
    (getattr(os, name, 0), flag)  # the ST_* constants exist on Linux only
    for name, flag in (("ST_NOSUID", _MS_NOSUID), ("ST_NODEV", _MS_NODEV), ("ST_NOEXEC", _MS_NOEXEC),
                       ("ST_NOATIME", _MS_NOATIME), ("ST_NODIRATIME", _MS_NODIRATIME), ("ST_RELATIME", _MS_RELATIME))
)
SYSTEM_DIRECTORIES = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
"""Bound read-only into the new root: what any program needs to start."""


def enter_namespaces(spec: SandboxSpec, report: SandboxReport) -> None:
    """New mount (+ network) namespace, then the new root (or, failing that, the hide list).

    As root the namespaces are created directly; otherwise inside a new user namespace that maps
    only the grader's own uid (the kernel keeps no capability once it ``exec``s).
    """
    libc = _libc()
    flags = _CLONE_NEWNS | _CLONE_NEWIPC | (_CLONE_NEWNET if spec.isolate_network else 0)  # IPC: no System V
    # segment or message queue made in the sandbox outlives it, nor reaches the host's
    as_root = is_root()
    if not as_root:
        flags |= _CLONE_NEWUSER
    uid, gid = os.getuid(), os.getgid()
    if libc.unshare(flags | _CLONE_NEWPID) == 0:
        report.pid_namespace = True
    elif libc.unshare(flags) != 0:
        report.notes.append(f"namespaces unavailable (errno {ctypes.get_errno()}); limits only")
        return
    if not as_root:
        _map_own_ids(uid, gid)
        report.user_namespace = True
    report.namespaces = True
    report.network_isolated = spec.isolate_network
    _mount(libc, "none", "/", None, _MS_REC | _MS_PRIVATE, None)
    if spec.new_root and spec.sandbox_root:
        try:
            enter_new_root(libc, spec, report)
            return
        except OSError as error:
            report.notes.append(f"new root unavailable ({error}); hiding the grader's directories instead")
    _expose(libc, spec.expose)
    _hide(libc, spec.hide, "", report)


def _map_own_ids(uid: int, gid: int) -> None:
    """Inside a new user namespace: map the grader's uid and gid to themselves, nothing else."""
    with open("/proc/self/setgroups", "w") as handle:
        handle.write("deny")
    with open("/proc/self/uid_map", "w") as handle:
        handle.write(f"{uid} {uid} 1")
    with open("/proc/self/gid_map", "w") as handle:
        handle.write(f"{gid} {gid} 1")


def _bind(libc: ctypes.CDLL, source: str, target: str, read_only: bool) -> None:
    """Bind ``source`` (with its sub-mounts) on ``target``; read-only keeps the flags a user namespace locks."""
    _mount(libc, source, target, None, _MS_BIND | _MS_REC, None)
    if read_only:
        locked = os.statvfs(target).f_flag
        extra = sum(flag for statvfs_flag, flag in _LOCKED_FLAGS if locked & statvfs_flag)
        _mount(libc, source, target, None, _MS_BIND | _MS_REMOUNT | _MS_RDONLY | extra, None)


def _hide(libc: ctypes.CDLL, directories: tuple[str, ...], root: str, report: SandboxReport) -> None:
    for directory in directories:
        inside = root + directory
        if os.path.isdir(inside):
            _mount(libc, "tmpfs", inside, "tmpfs", _MS_RDONLY, "size=4k,mode=755")
            report.hidden.append(directory)


WRITABLE = ("work", "home", "tmp", "shm")
"""Folders of the one quota tmpfs: the kernel's folder and HOME, /tmp, /dev/shm."""
OUTPUT_BYTES = 256 * 2**20
"""The probes' outputs have a tmpfs of their own: a notebook that fills its disk does not stop them."""
DEVICES = ("null", "zero", "full", "random", "urandom")
"""The only device nodes in the sandbox's /dev."""


def enter_new_root(libc: ctypes.CDLL, spec: SandboxSpec, report: SandboxReport) -> None:
    """Build a root holding only what the kernel needs, and ``chroot`` into it.

    The root is a tmpfs (in the grader's private directory, which the kernel cannot see) with the
    system directories, the Python installation and MNIST bound read-only, ``/proc`` and ``/sys``,
    a ``/dev`` with the harmless devices only, and the sandbox's folder at its own path (so every
    path the grader gave the kernel stays valid). Everything writable lives on one size-limited
    tmpfs, made here, inside the namespace: nothing the kernel writes reaches the host's disk, and
    it all disappears with the namespace.
    """
    root = tempfile.mkdtemp(prefix="nbgrade-root-", dir=spec.private or None)
    _mount(libc, "tmpfs", root, "tmpfs", _MS_NOSUID | _MS_NODEV, "size=1m,mode=755")
    for entry in os.listdir("/"):
        if os.path.islink("/" + entry):
            os.symlink(os.readlink("/" + entry), os.path.join(root, entry))
    for directory in SYSTEM_DIRECTORIES:
        if os.path.isdir(directory) and not os.path.islink(directory):
            os.makedirs(root + directory, exist_ok=True)
            _bind(libc, directory, root + directory, read_only=True)
    for directory, read_only in (("/proc", False), ("/sys", True)):
        os.makedirs(root + directory, exist_ok=True)
        _bind(libc, directory, root + directory, read_only=read_only)
    writable = _quota_tmpfs(libc, spec)
    _minimal_dev(libc, root, writable)
    _bind(libc, os.path.join(writable, "tmp"), _made(root + "/tmp"), read_only=False)
    for path in sorted({form for p in spec.expose for form in (os.path.abspath(p), os.path.realpath(p))}):
        if os.path.isdir(path) and not os.path.exists(root + path):
            os.makedirs(root + path)
            _bind(libc, path, root + path, read_only=True)
    _sandbox_folder(libc, spec, root + spec.sandbox_root, writable)
    _hide(libc, spec.hide, root, report)
    _mount(libc, "none", root, None, _MS_BIND | _MS_REMOUNT | _MS_RDONLY | _MS_NOSUID | _MS_NODEV, None)
    os.chroot(root)
    os.chdir("/")
    report.new_root = True


def _made(path: str, mode: int = 0o755) -> str:
    os.makedirs(path, mode=mode, exist_ok=True)
    return path


def _quota_tmpfs(libc: ctypes.CDLL, spec: SandboxSpec) -> str:
    """One tmpfs of ``spec.disk_bytes`` holding every folder the kernel may write (see :data:`WRITABLE`)."""
    writable = tempfile.mkdtemp(prefix="nbgrade-rw-", dir=spec.private or None)
    size = max(spec.disk_bytes, 4 * 2**20)
    _mount(libc, "tmpfs", writable, "tmpfs", _MS_NOSUID | _MS_NODEV, f"size={size},nr_inodes=65536,mode=755")
    owner = spec.uid if is_root() and spec.uid is not None else os.getuid()
    for name in WRITABLE:
        os.mkdir(os.path.join(writable, name))
    for name in ("tmp", "shm"):
        os.chmod(os.path.join(writable, name), 0o1777)
    for name in ("work", "home"):
        folder = os.path.join(writable, name)
        os.symlink("../data", os.path.join(folder, "data"))  # ./data and ~/data: MNIST, as the templates expect
        os.lchown(os.path.join(folder, "data"), owner, owner)
        os.chown(folder, owner, owner)
        os.chmod(folder, 0o700)
    out = os.path.join(writable, "out")
    os.mkdir(out)
    _mount(libc, "tmpfs", out, "tmpfs", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, f"size={OUTPUT_BYTES},nr_inodes=4096,mode=755")
    return writable


def _minimal_dev(libc: ctypes.CDLL, root: str, writable: str) -> None:
    """A /dev with null, zero, full, random, urandom, the std streams, a private shm and pts."""
    dev = _made(root + "/dev")
    _mount(libc, "tmpfs", dev, "tmpfs", _MS_NOSUID, "size=64k,mode=755")
    for name in DEVICES:
        if os.path.exists("/dev/" + name):
            open(os.path.join(dev, name), "w").close()
            _bind(libc, "/dev/" + name, os.path.join(dev, name), read_only=False)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2"), ("ptmx", "pts/ptmx")):
        os.symlink(target, os.path.join(dev, name))
    _bind(libc, os.path.join(writable, "shm"), _made(dev + "/shm"), read_only=False)
    try:  # a pts instance of its own (ttys are not needed by a kernel; best effort)
        _mount(libc, "devpts", _made(dev + "/pts"), "devpts", _MS_NOSUID | _MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620")
    except OSError:
        pass


def _sandbox_folder(libc: ctypes.CDLL, spec: SandboxSpec, inside: str, writable: str) -> None:
    """The sandbox folder in the new root: root's own, so the kernel can replace none of its entries.

    ``work``, ``home`` and ``out`` come from the quota tmpfs; ``data`` (MNIST), ``run`` (the
    connection file), ``inputs`` (the probes' hidden inputs) are the grader's, read-only; ``ipc``
    holds the kernel's sockets (a folder per start, locked by the grader once the kernel is up).
    """
    _made(inside)
    host = spec.sandbox_root
    sources = {
        "work": (os.path.join(writable, "work"), False),
        "home": (os.path.join(writable, "home"), False),
        "out": (os.path.join(writable, "out"), False),
        "data": (spec.data, True),
        "run": (os.path.join(host, "run"), True),
        "inputs": (os.path.join(host, "inputs"), True),
        "ipc": (os.path.join(host, "ipc"), False),
    }
    for name, (source, read_only) in sources.items():  # the folders of graders.workspace.Workspace
        if source and os.path.isdir(source):
            _bind(libc, source, _made(os.path.join(inside, name)), read_only=read_only)


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


def apply_rlimits(spec: SandboxSpec, own_processes: int | None = 0) -> None:
    """CPU, memory, processes, file size, open files; each lowered only (never raised).

    ``own_processes`` is what the kernel's user already runs when the kernel keeps the grader's
    user: RLIMIT_NPROC counts every process of the user, so the kernel gets that many more
    (None: unknown, and the process limit is not lowered).
    """
    limits = {
        resource.RLIMIT_CPU: spec.cpu_seconds,
        resource.RLIMIT_AS: spec.address_space_bytes,
        resource.RLIMIT_FSIZE: spec.max_file_bytes,
        resource.RLIMIT_NOFILE: spec.max_open_files,
        resource.RLIMIT_CORE: 0,
    }
    if own_processes is not None:
        limits[resource.RLIMIT_NPROC] = spec.max_processes + own_processes
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


def hand_over_connection_file(argv: list[str], handover: str, uid: int | None) -> list[str]:
    """Copy the kernel's connection file (the grader's, 0600) into the grader's handover folder.

    The folder is the grader's (the kernel cannot write it), the copy is created new
    (``O_EXCL | O_NOFOLLOW``) and given to the kernel's uid through its descriptor: no path the
    kernel could have touched is followed, as root or as the instructor.
    """
    if "-f" not in argv or not handover:
        return argv
    position = argv.index("-f") + 1
    source = argv[position]
    from graders.hostfs import open_directory, write_new_file

    with open(source, "rb") as handle:
        content = handle.read(65536)
    name = os.path.basename(source)
    folder = open_directory(handover)
    try:
        try:
            os.unlink(name, dir_fd=folder)  # a restart's: the folder is the grader's, nothing else is there
        except FileNotFoundError:
            pass
        write_new_file(folder, name, content, mode=0o400, owner=uid)
    finally:
        os.close(folder)
    return [*argv[:position], os.path.join(handover, name), *argv[position + 1 :]]


def launch(spec_path: Path, argv: list[str]) -> None:
    """Apply the spec to this process, then become the kernel (``exec``).

    With a new PID namespace the launcher stays outside as the kernel's watcher (see
    :func:`run_in_pid_namespace`); otherwise it ``exec``s the kernel itself.
    """
    spec = SandboxSpec.read(spec_path)
    report = SandboxReport()
    report_file = spec_path.with_suffix(".applied.json").open("w")  # opened before the grader's files are hidden
    switch_user = is_root() and spec.uid is not None
    argv = hand_over_connection_file(argv, spec.handover, spec.uid if switch_user else None)
    own_processes = 0 if switch_user else count_processes(os.getuid())
    os.umask(0o022)
    if sys.platform.startswith("linux"):
        try:
            enter_namespaces(spec, report)
        except OSError as error:
            report.notes.append(f"namespace set-up incomplete: {error}")
    if switch_user and not path_reachable_by_others(Path(sys.executable)):
        switch_user = False
        report.notes.append("the Python installation is not reachable by an unprivileged user; kernel kept the grader's user")
    report.uid = spec.uid if switch_user else None
    with report_file:
        report_file.write(json.dumps(asdict(report)))
    kernel = KernelStart(spec, argv, switch_user, own_processes)
    if report.pid_namespace:
        run_in_pid_namespace(kernel)
    kernel.become()


@dataclass(frozen=True)
class KernelStart:
    """The last steps before the kernel runs: the user, the limits, the directory, ``exec``."""

    spec: SandboxSpec
    argv: list[str]
    switch_user: bool
    own_processes: int | None

    def become(self, environment: dict[str, str] | None = None) -> None:
        if sys.platform.startswith("linux"):
            _libc().prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS: no setuid program gives the kernel root back
        if self.switch_user:
            drop_privileges(self.spec.uid)
        apply_rlimits(self.spec, own_processes=self.own_processes)
        os.chdir(self.spec.workdir)
        os.execvpe(self.argv[0], self.argv, environment or os.environ.copy())


def run_in_pid_namespace(kernel: KernelStart) -> None:
    """Run the kernel as the grandchild of this launcher, inside the new PID namespace; never returns.

    The launcher's child is the namespace's init (pid 1): it mounts a /proc that shows only the
    namespace, starts the kernel, reaps orphans, and reports the kernel's wait status through a
    pipe before it exits, which kills whatever the kernel left running. The launcher stays outside:
    it ends like the kernel did (same exit code or signal, for the grader's message), and stops
    the namespace if the grader goes away. Interrupts (SIGINT to the process group) reach the
    kernel; the launcher and init ignore them.
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    read_fd, write_fd = os.pipe()
    grader = os.getppid()
    init = os.fork()
    if init == 0:
        os.close(read_fd)
        _namespace_init(kernel, write_fd)
    os.close(write_fd)
    status = _wait_while_parent_lives(init, grader)
    reported = os.read(read_fd, 32).strip()
    _end_like(int(reported) if reported else status)


def _namespace_init(kernel: KernelStart, status_fd: int) -> None:
    import signal

    libc = _libc()
    libc.mount(b"proc", b"/proc", b"proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, None)  # best effort
    child = os.fork()
    if child == 0:
        os.close(status_fd)
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # an ignored SIGINT would survive exec: no KeyboardInterrupt
        environment = {k: v for k, v in os.environ.items() if k != "JPY_PARENT_PID"}  # its parent is pid 1 here
        kernel.become(environment)
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            os._exit(0)
        if pid == child:
            os.write(status_fd, str(status).encode())
            os._exit(0)


def _wait_while_parent_lives(child: int, parent: int) -> int:
    """The child's wait status; SIGKILL it (and with it the namespace) if our parent dies first."""
    import signal
    import time

    while True:
        pid, status = os.waitpid(child, os.WNOHANG)
        if pid == child:
            return status
        if os.getppid() != parent:
            os.kill(child, signal.SIGKILL)
        time.sleep(0.1)


def _end_like(status: int) -> None:
    """Exit with the kernel's exit code, or die of the kernel's signal."""
    import signal

    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        if number not in (signal.SIGKILL, signal.SIGSTOP):  # those two have no handler to reset
            signal.signal(number, signal.SIG_DFL)
        os.kill(os.getpid(), number)
        os._exit(128 + number)
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1)


def count_processes(uid: int) -> int | None:
    """Processes and threads the user already has (RLIMIT_NPROC counts them all, not only the kernel's).

    None where there is no /proc to count them (macOS): the process limit is then left as it is.
    """
    if not os.path.isdir("/proc/self"):
        return None
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as handle:
                fields = dict(line.split(":", 1) for line in handle if line.startswith(("Uid:", "Threads:")))
        except (OSError, ValueError):
            continue
        if int(fields.get("Uid", "-1 0").split()[0]) == uid:
            total += int(fields.get("Threads", "1").strip() or 1)
    return total


def main() -> None:
    args = sys.argv[1:]
    if len(args) < 3 or args[1] != "--":
        sys.stderr.write("usage: python -m graders.sandbox SPEC.json -- COMMAND ...\n")
        raise SystemExit(2)
    launch(Path(args[0]), args[2:])


if __name__ == "__main__":
    main()
