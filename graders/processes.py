"""Process accounting for a sandboxed kernel: which processes it has, their memory, killing them all.

The watchdog (:class:`graders.kernel_session.KernelSession`) and the uid claim
(:func:`graders.workspace.claim_uid`) act on *every* process of a sandbox: all processes of its
uid when it has one, else the kernel's process tree. Nothing here trusts a name or a file the
kernel chose: processes are found by uid or parentage, memory is read from ``/proc``.
"""

from __future__ import annotations

import os
import shutil
import signal
import time


def read_private_kb(pid: int) -> int:
    """Private memory of one process: its proportional share of anonymous and shared-memory pages.

    Forked children (DataLoader workers, a fork bomb) share their parent's pages copy-on-write;
    the proportional share (Pss) counts those pages once across the processes instead of once each.
    Shared memory (``mmap(-1, n)``, a mapped memfd or /dev/shm file) is RAM too: ``Pss_Shmem``.
    """
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            fields = dict(line.split(":", 1) for line in handle if line.startswith(("Pss_Anon:", "Pss_Shmem:")))
        if fields:
            return sum(int(value.split()[0]) for value in fields.values())
    except (OSError, ValueError):
        pass
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(("RssAnon:",)):
                    return int(line.split()[1])
    except OSError:
        pass
    return _resident_kb(pid)


def unmapped_memfd_kb(pids: list[int]) -> int:
    """RAM held in memfd files the sandbox keeps open (each counted once, by inode): no map shows it."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for pid in pids:
        try:
            descriptors = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in descriptors[:4096]:
            path = f"/proc/{pid}/fd/{fd}"
            try:
                if not os.readlink(path).startswith("/memfd:"):
                    continue
                info = os.stat(path)
            except OSError:
                continue
            if (info.st_dev, info.st_ino) not in seen:
                seen.add((info.st_dev, info.st_ino))
                total += info.st_blocks // 2
    return total


def _resident_kb(pid: int) -> int:
    """Resident memory where /proc does not exist (macOS): all of it, shared pages included."""
    import psutil

    try:
        return psutil.Process(pid).memory_info().rss // 1024
    except psutil.Error:
        return 0


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
