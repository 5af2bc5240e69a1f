"""The hostile, malformed and real-world submissions of the robustness tests, built in code.

Nothing here is a fixture file: every notebook is generated small, in the test that uses it. Each
hostile notebook also holds correct parts (2A, and 2C where noted) so a test can check that the
rest of the notebook is still graded normally: the hostile part scores 0 (or is contained), the
correct ones get their points.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Callable, Iterable

import nbformat
from nbformat import NotebookNode

from graders.result import GradingResult

Cell = str | tuple[str, str]

CORRECT_2A: list[Cell] = [
    ("markdown", "## 2A · Sigmoid derivative"),
    "import numpy as np\n\n"
    "def sigmoid_derivative(z):\n"
    "    z = np.asarray(z, dtype=np.float64)\n"
    "    s = np.exp(-np.logaddexp(0.0, -z))  # σ(z), stable for any |z|\n"
    "    return s * (1.0 - s)\n",
]
"""5 autograded points (2A), NumPy only: cheap to run, and it leaves torch for the probes to import."""

CORRECT_2C: list[Cell] = [
    ("markdown", "## 2C · Empirical comparison"),
    "import matplotlib.pyplot as plt\n"
    "train_losses = {1: [2.3, 1.1, 0.7], 2: [2.3, 0.9, 0.5], 3: [2.3, 0.8, 0.4]}\n"
    "test_losses = {1: [2.3, 1.2, 0.9], 2: [2.3, 1.0, 0.8], 3: [2.3, 1.0, 0.9]}\n"
    "for depth in (1, 2, 3):\n"
    "    plt.plot(train_losses[depth], label=f'train, depth {depth}')\n"
    "    plt.plot(test_losses[depth], ':', label=f'test, depth {depth}')\n"
    "plt.legend(); plt.show()\n",
]
"""15 autograded points (2C) without training anything."""

FAKE_VERDICT = "All tests passed 90/90"


def notebook(cells: Iterable[Cell], assignment: str | None = "csci145-ps6") -> NotebookNode:
    """A notebook from code strings and ("markdown", text) pairs."""
    nb = nbformat.v4.new_notebook()
    for cell in cells:
        if isinstance(cell, tuple):
            nb.cells.append(nbformat.v4.new_markdown_cell(cell[1]))
        else:
            nb.cells.append(nbformat.v4.new_code_cell(cell))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    if assignment:
        nb.metadata["nbgrade"] = {"assignment": assignment}
    return nb


def with_stale_outputs(nb: NotebookNode) -> NotebookNode:
    """Saved outputs claiming success and execution counts out of order, on every code cell."""
    counts = iter([7, 3, 12, 1, 9, 4, 15, 2, 11, 5, 8, 6, 13, 10, 14])
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.execution_count = next(counts, None)
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"{FAKE_VERDICT}\n")]
    return nb


def cell_index(nb: NotebookNode, marker: str) -> int:
    """Index of the first cell whose source contains ``marker``."""
    return next(i for i, cell in enumerate(nb.cells) if marker in cell.source)


# ---------------------------------------------------------------------------------------------
# Malformed files (no kernel needed)
# ---------------------------------------------------------------------------------------------
def malformed_files() -> dict[str, bytes]:
    """File name → bytes of a file that is not a gradable notebook."""
    script = b"import torch\n\ndef sigmoid_derivative(z):\n    return torch.sigmoid(z) * (1 - torch.sigmoid(z))\n"
    r_notebook = notebook(["library(ggplot2)\nx <- c(1, 2, 3)\nprint(mean(x))"])
    r_notebook.metadata["kernelspec"] = {"name": "ir", "display_name": "R", "language": "R"}
    return {
        "not_json.ipynb": b"{\"cells\": [ this is not json",
        "json_list.ipynb": b"[1, 2, 3]",
        "json_not_notebook.ipynb": json.dumps({"name": "my homework", "answers": [1, 2]}).encode(),
        "empty_file.ipynb": b"",
        "empty_notebook.ipynb": nbformat.writes(nbformat.v4.new_notebook()).encode(),
        "script_renamed.ipynb": script,
        "r_kernel.ipynb": nbformat.writes(r_notebook).encode(),
        "binary.ipynb": bytes(range(256)) * 4,
    }


def quirky_valid_file() -> bytes:
    """A gradable notebook with every quirk at once: nbformat 3, UTF-16 with a BOM, an R kernelspec, no nbgrade metadata."""
    cells = [{"cell_type": "markdown", "source": ["## 2A · Sigmoid derivative — é"], "metadata": {}}]
    cells += [{"cell_type": "code", "input": CORRECT_2A[1], "language": "python", "outputs": [],
               "prompt_number": 4, "metadata": {}, "collapsed": False}]
    v3 = {
        "nbformat": 3, "nbformat_minor": 0,
        "metadata": {"name": "", "kernelspec": {"name": "ir", "display_name": "R", "language": "R"}},
        "worksheets": [{"cells": cells, "metadata": {}}],
    }
    return json.dumps(v3, ensure_ascii=False).encode("utf-16")


# ---------------------------------------------------------------------------------------------
# Resources
# ---------------------------------------------------------------------------------------------
def resource_cells() -> list[Cell]:
    """Kernel suicide first (it uses the one restart), then exits, hangs and floods of output."""
    return [
        *CORRECT_2A,
        "import os\nos._exit(3)  # the kernel kills itself",
        "import sys\nsys.exit()",
        "raise SystemExit(3)",
        "while True:\n    pass  # infinite loop",
        "import time\ntime.sleep(10**6)  # sleeping forever",
        "for _ in range(5):\n    print('x' * (200 * 2**20))  # 1 GB in five 200 MB prints",
        "line = 'y' * 999\nfor _ in range(100_000):\n    print(line)  # 100 MB of lines",
        "import os\nfor _ in range(20):\n    os.write(1, b'z' * 2**20)  # 20 MB straight to file descriptor 1",
        "import base64\nfrom IPython.display import display\n"
        "display({'image/png': base64.b64encode(b'\\x89PNG' + bytes(40 * 2**20)).decode()}, raw=True)  # a 53 MB image",
        f"print({FAKE_VERDICT!r})\nprint('[grader] score: 90 / 90')\nprint('<script>alert(\"owned\")</script>')",
        "after_floods = True",
    ]


def bomb_cells() -> list[Cell]:
    """A memory bomb, then a fork bomb; run with a small memory cap and process limit."""
    return [
        *CORRECT_2A,
        "import numpy as np\nhog = []\nwhile True:\n    hog.append(np.ones(2**24))  # 128 MB a step",
        "after_memory_bomb = True",
        "import os, time\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        time.sleep(0.01)",
        "after_fork_bomb = True",
    ]


def probe_killer_cells() -> list[Cell]:
    """make_mlp kills the kernel when the grader calls it; 2A and 2C are correct."""
    return [
        *CORRECT_2A,
        ("markdown", "## 2B · Neural network of depth ℓ"),
        "import os, signal\n\ndef make_mlp(num_layers, d, m, k):\n    os.kill(os.getpid(), signal.SIGKILL)",
        *CORRECT_2C,
    ]


def probe_hanger_cells() -> list[Cell]:
    """sigmoid_derivative never returns and swallows every interrupt; 2C is correct."""
    return [
        ("markdown", "## 2A · Sigmoid derivative"),
        "import time\n\n"
        "def sigmoid_derivative(z):\n"
        "    while True:\n"
        "        try:\n"
        "            time.sleep(0.05)\n"
        "        except BaseException:\n"
        "            pass",
        *CORRECT_2C,
    ]


# ---------------------------------------------------------------------------------------------
# Tampering and environment
# ---------------------------------------------------------------------------------------------
def environment_cells() -> list[Cell]:
    """What real notebooks do that cannot work while grading."""
    return [
        "name = input('Your name: ')\n"
        "!pip install torch==0.0.1\n"
        "%pip install nothing-at-all\n"
        "%cd /content/drive/MyDrive\n"
        "%matplotlib notebook\n"
        "%load_ext tensorboard\n"
        "%timeit -n 3 sum(range(10))\n"
        "from google.colab import drive\n"
        "drive.mount('/content/drive')\n"
        "print('INPUT', repr(name))",
        "from torchvision import datasets\n"
        "colab = datasets.MNIST('/content/data', train=False, download=True)\n"
        "home = datasets.MNIST('~/data', train=True, download=True)\n"
        "print('MNIST', len(colab), len(home))",
    ]


def tampering_cells(submission_dir: Path, canary: Path, repo: Path) -> list[Cell]:
    """Writes fake results everywhere, reads the grader's secrets, reaches for the network."""
    places = ["results.json", "../results.json", "~/results.json", "/tmp/results.json", "/results.json",
              "/autograder/results/results.json", f"{submission_dir}/results.json",
              f"{submission_dir}/submission.graded/results.json", f"{submission_dir}/submission.graded/report.html",
              f"{canary}/owned.txt"]
    secrets = [f"{repo}/reference/csci145_ps6.py", f"{repo}/graders/assignments/csci145_ps6/rubric.py",
               f"{repo}/graders/assignments/csci145_ps6/probes.py", f"{repo}/tests/conftest.py",
               f"{submission_dir}/submission.ipynb", "/etc/shadow"]
    return [
        "import json, os\n"
        f"fake = {{'score': 90.0, 'output': {FAKE_VERDICT!r}, 'tests': []}}\n"
        "WRITES = {}\n"
        f"for place in {places!r}:\n"
        "    path = os.path.abspath(os.path.expanduser(place))\n"
        "    try:\n"
        "        os.makedirs(os.path.dirname(path), exist_ok=True)\n"
        "        with open(path, 'w') as handle:\n"
        "            json.dump(fake, handle)\n"
        "        WRITES[place] = 'written'\n"
        "    except Exception as error:\n"
        "        WRITES[place] = type(error).__name__\n"
        "print('WRITES', json.dumps(WRITES))",
        "READS = {}\n"
        f"for path in {secrets!r}:\n"
        "    try:\n"
        "        with open(path) as handle:\n"
        "            READS[path] = 'read %d characters' % len(handle.read())\n"
        "    except Exception as error:\n"
        "        READS[path] = type(error).__name__\n"
        "import socket\n"
        "try:\n"
        "    socket.create_connection(('1.1.1.1', 80), timeout=3)\n"
        "    READS['network'] = 'connected'\n"
        "except OSError as error:\n"
        "    READS['network'] = type(error).__name__\n"
        "try:\n"
        "    os.kill(os.getppid(), 9)\n"
        "    READS['kill parent'] = 'sent'\n"
        "except OSError as error:\n"
        "    READS['kill parent'] = type(error).__name__\n"
        "print('READS', json.dumps(READS))",
    ]


def liar_cells() -> list[Cell]:
    """Objects that lie about what they are; none of them may earn a point."""
    return [
        "import torch\nimport numpy as np\nfrom torch import nn\n\n"
        "class Liar:\n"
        "    calls = 0\n"
        "    def __eq__(self, other):\n"
        "        return True\n"
        "    def __len__(self):\n"
        "        return 100\n"
        "    @property\n"
        "    def shape(self):  # a different answer every time\n"
        "        Liar.calls += 1\n"
        "        return (1, 28, 28) if Liar.calls % 2 else (784,)\n"
        "    def __array__(self, *args, **kwargs):\n"
        "        return np.zeros(5)\n"
        "    def __iter__(self):\n"
        "        raise RuntimeError('not today')\n\n"
        "class Shifting(torch.utils.data.Dataset):\n"
        "    n = 999\n"
        "    def __len__(self):  # grows on every call\n"
        "        Shifting.n += 1\n"
        "        return Shifting.n\n"
        "    def __getitem__(self, i):\n"
        "        return Liar(), 3\n\n"
        "class EyeTensor(torch.Tensor):  # every operation answers the identity\n"
        "    @classmethod\n"
        "    def __torch_function__(cls, func, types, args=(), kwargs=None):\n"
        "        out = super().__torch_function__(func, types, args, kwargs or {})\n"
        "        return torch.eye(1000) if isinstance(out, torch.Tensor) else out\n"
        "    def numpy(self):\n"
        "        return np.eye(1000)\n"
        "    def __array__(self, *args, **kwargs):\n"
        "        return np.eye(1000)\n\n"
        "_kernel_calls = [0]\n"
        "def gaussian_kernel(X1, X2, sigma):  # right on the first call only\n"
        "    _kernel_calls[0] += 1\n"
        "    X1, X2 = torch.as_tensor(X1, dtype=torch.float64), torch.as_tensor(X2, dtype=torch.float64)\n"
        "    K = torch.exp(-torch.cdist(X1, X2) ** 2 / (2 * sigma ** 2))\n"
        "    return K if _kernel_calls[0] == 1 else K * _kernel_calls[0]\n\n"
        "def make_mlp(num_layers, d, m, k):\n"
        "    return Liar()\n\n"
        "train_set, test_set = Shifting(), Shifting()\n"
        "logreg_losses = Liar()\n"
        "K_train = torch.rand(1000, 1000).as_subclass(EyeTensor)\n"
        "train_losses = test_losses = Liar()",
        "import json, builtins\n"
        "torch.allclose = lambda *a, **k: True\n"
        "np.allclose = lambda *a, **k: True\n"
        "np.asarray = lambda *a, **k: np.zeros(3)\n"
        "torch.autograd.grad = lambda *a, **k: (torch.zeros(1),)\n"
        "json.dump = lambda *a, **k: None\n"
        "np.save = lambda *a, **k: None\n"
        "def _no_open(*args, **kwargs):\n"
        "    raise PermissionError('no files for the grader')\n"
        "builtins.open = _no_open\n"
        "builtins.print = lambda *a, **k: None",
    ]


# ---------------------------------------------------------------------------------------------
# Checking what came out
# ---------------------------------------------------------------------------------------------
PART_IDS = ("1A", "1B", "1C", "1D", "2A", "2B", "2C")


def valid_results(out_dir: Path) -> dict:
    """results.json in Gradescope's format (the fields Gradescope reads), under 1 MB."""
    path = out_dir / "results.json"
    assert path.stat().st_size < 1_000_000
    data = json.loads(path.read_text())
    assert isinstance(data["score"], (int, float)) and isinstance(data["execution_time"], (int, float))
    assert isinstance(data["output"], str) and isinstance(data["tests"], list)
    for test in data["tests"]:
        assert test["name"].split(" ")[0] in PART_IDS + ("P1", "P2", "P3"), test["name"]
        assert 0 <= test["score"] <= test["max_score"]
        assert test["status"] in ("passed", "failed") and test["visibility"] in ("visible", "hidden", "after_due_date", "after_published")
    assert abs(sum(t["score"] for t in data["tests"]) - data["score"]) < 1e-6
    return data


def part_scores(result: GradingResult) -> dict[str, float]:
    return {part.id: part.score for part in result.parts}


def check_messages(result: GradingResult, part_id: str) -> str:
    """Every failed check's message in one part, one per line."""
    return "\n".join(check.message for check in result.part(part_id).checks if not check.passed)


def issue_for(result: GradingResult, cell: int) -> str:
    """``status: summary`` of the execution issue of one cell (empty when it ran cleanly)."""
    found = [f"{i.status}: {i.summary}" for i in result.execution.issues if i.cell == cell]
    return found[0] if found else ""


def executed_outputs(out_dir: Path, cell: int) -> str:
    """The text the graded run printed in one cell (from executed.ipynb)."""
    nb = nbformat.read(str(out_dir / "executed.ipynb"), as_version=4)
    return "".join(str(o.get("text", "")) for o in nb.cells[cell].get("outputs", []))


def namespaces_available() -> bool:
    """Whether kernels run in a new root here: as root, or with unprivileged user namespaces (Linux)."""
    if not Path("/proc/self/ns/mnt").exists():
        return False
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return True
    for path, minimum in (("/proc/sys/kernel/unprivileged_userns_clone", 1), ("/proc/sys/user/max_user_namespaces", 1)):
        try:
            if int(Path(path).read_text()) < minimum:
                return False
        except (OSError, ValueError):
            continue
    return True


def rss_anon_mb() -> float:
    """This process's anonymous resident memory (Linux)."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Sampler:
    """Reads ``read()`` every ``interval`` seconds while the ``with`` block runs; keeps the ``keep``-most value.

    ``before`` is the reading at the start, ``extreme`` the highest (``keep=max``) or lowest (``min``) seen,
    ``after`` the reading at the end.
    """

    def __init__(self, read: Callable[[], float], interval: float, keep: Callable[[float, float], float] = max) -> None:
        self.read, self.interval, self.keep = read, interval, keep

    def __enter__(self) -> "Sampler":
        self.before = self.extreme = self.read()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.extreme = self.keep(self.extreme, self.read())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.after = self.read()


class PeakMemory(Sampler):
    """Samples this process's RssAnon every 20 ms while the ``with`` block runs."""

    def __init__(self) -> None:
        super().__init__(rss_anon_mb, 0.02)

    @property
    def peak(self) -> float:
        return self.extreme

    @property
    def growth(self) -> float:
        return self.peak - self.before
