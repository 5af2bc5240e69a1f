"""Benchmark of the grading harness: one table, every number measured in the same run.

    .venv/bin/python benchmarks/run.py [--quick] [--no-dask] [--otter-python PATH] [--save benchmarks/results.md]

For the reference notebooks and generated csci145-ps6 submissions (the bundled example student
notebook and the reference with a catalogued mistake inserted):

* plain execution (nbclient, no grading, same data, 1 BLAS/torch thread like ``grade``) against
  ``grade`` wall time — the grading overhead as a ratio;
* peak anonymous resident memory (``RssAnon``: the CUDA torch wheel maps ~660 MB of shared library
  pages that plain RSS would count) of the grader process, of the kernel's process tree, and of
  both at the same instant, sampled every 0.1 s;
* batch throughput of ``grade FOLDER -j 1`` against ``-j 2``, and ``--scheduler`` with two local
  Dask workers against ``-j 2``;
* ``otter run`` (otter-grader from PyPI, in its own virtual environment) on the same submissions,
  with the autograder in ``benchmarks/otter/`` that makes the equivalent checks (figures excepted);
* both reference notebooks through the Gradescope autograder's command in a cgroup limited to
  768 MB and 0.5 CPU (``gradescope_memory.py``'s code; needs root and cgroup v1): score and peak.

Targets (issue 19): ``grade`` ÷ plain ≤ 1.05× (csci145) and ≤ 1.10× (ece685d), wall; grader peak
RssAnon ≤ 200 MB; ``otter run`` ÷ ``grade`` ≥ 1.3×; Dask ÷ ``-j 2`` throughput ≥ 0.95× and ``-j 2`` ÷
``-j 1`` ≥ 1.85× on 8 submissions; full marks and peak ≤ 576 MB in the 768 MB / 0.5 CPU cgroup.

This is a measurement, not a test: nothing here fails. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import nbformat
import psutil

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
GRADE = BIN / "grade"
SEED = 2026
REFERENCES = {"csci145-ps6": REPO / "reference/notebooks/csci145-ps6.ipynb", "ece685d-hw2": REPO / "reference/notebooks/ece685d-hw2.ipynb"}
STUDENT_EXAMPLE = REPO / "examples/csci145-ps6-student.ipynb"
MUTATIONS = {
    "csci145 sign error": ("torch.sigmoid(z) * torch.sigmoid(-z)", "torch.sigmoid(z) * (1 + torch.sigmoid(z))"),
    "csci145 sigma error": ("(2 * sigma ** 2)", "(sigma ** 2)"),
}
BATCH_SIZE = 8
"""Submissions in the batch rows: the four above, then copies of them (each with a distinct comment line) up to this many."""
OVERHEAD_TARGET = {"csci145": 1.05, "ece685d": 1.10}
GRADER_ANON_TARGET_MB = 200
CGROUP_LIMIT_MB, CGROUP_CPU, CGROUP_PEAK_TARGET_MB = 768, 0.5, 576
"""Generated submissions: the reference with one catalogued mistake (σ′ sign; σ² instead of 2σ²)."""
SAMPLE_SECONDS = 0.1
THREADS_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
"""``grade`` runs a single notebook's kernel with 1 thread (Limits.threads); plain execution does too."""


# ----------------------------------------------------------------------------- the table
@dataclass
class Row:
    measurement: str
    value: str
    target: str = ""
    met: bool | None = None
    load: float = field(default_factory=lambda: os.getloadavg()[0])
    """The 1-minute load average when the row was measured (wall-clock numbers stretch with it)."""


@dataclass
class Table:
    rows: list[Row] = field(default_factory=list)

    def add(self, measurement: str, value: str, target: str = "", met: bool | None = None) -> None:
        self.rows.append(Row(measurement, value, target, met))
        print(f"  {measurement}: {value} [load {os.getloadavg()[0]:.1f}]" + (f"  (target {target}: {'met' if met else 'MISSED'})" if target else ""), flush=True)

    def markdown(self) -> str:
        lines = ["| measurement | value | target | met | load |", "|---|---:|---|:---:|---:|"]
        for row in self.rows:
            verdict = "" if row.met is None else ("yes" if row.met else "**no**")
            lines.append(f"| {row.measurement} | {row.value} | {row.target} | {verdict} | {row.load:.1f} |")
        return "\n".join(lines)


# ----------------------------------------------------------------------------- memory
def rss_anon_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class AnonSampler:
    """Peak RssAnon of a process (the grader) and of all its descendants (the kernel), sampled together,
    and the CPU seconds of every process of the tree at its last sample.

    CPU is summed per process rather than taken from ``wait4``: a kernel killed and never waited for
    by its parent would drop out of the rusage of the tree.
    """

    def __init__(self, pid: int, include_root: bool = True) -> None:
        self.pid = pid
        self.include_root = include_root
        self.root_peak = self.children_peak = self.both_peak = 0.0
        self.cpu_by_pid: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "AnonSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def cpu(self) -> float:
        return sum(self.cpu_by_pid.values())

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            try:
                root = psutil.Process(self.pid)
                tree = [root, *root.children(recursive=True)] if self.include_root else root.children(recursive=True)
            except psutil.Error:
                continue
            anon = {p.pid: rss_anon_mb(p.pid) for p in tree}
            for process in tree:
                try:
                    times = process.cpu_times()
                    self.cpu_by_pid[process.pid] = times.user + times.system
                except psutil.Error:
                    continue
            kids = sum(v for pid, v in anon.items() if pid != self.pid)
            own = anon.get(self.pid, 0.0)
            self.root_peak = max(self.root_peak, own)
            self.children_peak = max(self.children_peak, kids)
            self.both_peak = max(self.both_peak, own + kids)


# ----------------------------------------------------------------------------- measurements
@dataclass
class Timing:
    """Wall-clock and CPU (user + system, the whole process tree) seconds of one run."""

    wall: float
    cpu: float


def run_measured(argv: list[str], env: dict[str, str] | None = None) -> tuple[Timing, AnonSampler]:
    """Run ``argv`` to completion, sampling the memory and CPU of its process tree."""
    started = time.monotonic()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with AnonSampler(process.pid) as sampler:
        process.wait()
    if process.returncode != 0:
        raise subprocess.CalledProcessError(process.returncode, argv)
    return Timing(time.monotonic() - started, sampler.cpu), sampler


def plain_execution(notebook: Path, mnist_root: Path) -> tuple[Timing, float]:
    """Time and peak kernel RssAnon (MB) of running the notebook with nbclient alone (in a child process)."""
    with tempfile.TemporaryDirectory(prefix="bench-plain-") as workdir:
        (Path(workdir) / "data").symlink_to(mnist_root, target_is_directory=True)
        timing, sampler = run_measured([sys.executable, __file__, "--plain-execute", str(notebook), workdir],
                                       env={**os.environ, **THREADS_ENV})
    return timing, sampler.children_peak


def plain_execute(notebook: Path, workdir: Path) -> None:
    """The child process of :func:`plain_execution`: nbclient, the notebook's source, nothing else."""
    from nbclient import NotebookClient

    nb = nbformat.read(str(notebook), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    NotebookClient(nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}).execute()


def timed_grade(notebook: Path, out: Path) -> tuple[Timing, AnonSampler, dict]:
    """Time of ``grade NOTEBOOK``, its memory peaks, and the grading.json it wrote."""
    timing, sampler = run_measured([str(GRADE), str(notebook), "--out", str(out), "--seed", str(SEED)])
    return timing, sampler, json.loads((out / "grading.json").read_text())


ONE_THREAD_CONTROL = (
    "import sys; from graders.config import Limits; Limits.scaled_for_workers = lambda self, workers: self; "
    "from graders.cli import main; sys.exit(main(sys.argv[1:]))"
)
"""``grade`` with every kernel held at Limits' default of 1 thread, whatever ``-j`` is (a control, not a mode)."""


def timed_batch(folder: Path, out: Path, *extra: str, one_thread: bool = False) -> tuple[Timing, list[dict]]:
    import csv

    command = [sys.executable, "-c", ONE_THREAD_CONTROL] if one_thread else [str(GRADE)]
    timing, _ = run_measured([*command, str(folder), "--out", str(out), "--seed", str(SEED), "--force", *extra])
    with (out / "gradebook.csv").open() as handle:
        rows = list(csv.DictReader(handle))[1:]
    return timing, rows


@contextmanager
def local_dask_cluster(root: Path, workers: int = 2) -> Iterator[str]:
    """A scheduler and ``workers`` one-thread workers on loopback, each its own process group."""
    from distributed import Client

    dask = BIN / "dask"
    scheduler_file = root / "scheduler.json"
    processes = [subprocess.Popen([str(dask), "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                   "--scheduler-file", str(scheduler_file)], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, start_new_session=True)]
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
        address = json.loads(scheduler_file.read_text())["address"]
        for index in range(workers):
            processes.append(subprocess.Popen(
                [str(dask), "worker", "--scheduler-file", str(scheduler_file), "--nthreads", "1", "--no-dashboard",
                 "--name", f"w{index + 1}", "--local-directory", str(root / f"w{index + 1}")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        with Client(address, timeout="30s") as client:
            client.wait_for_workers(workers, timeout=60)
        yield address
    finally:
        for process in reversed(processes):
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for process in processes:
            process.wait(30)


def build_otter_autograder(target: Path, mnist_root: Path) -> Path:
    """benchmarks/otter (config and tests) plus MNIST as a support file, zipped as ``otter run`` expects."""
    source = REPO / "benchmarks" / "otter"
    archive = target / "autograder.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(source / "otter_config.json", "otter_config.json")
        for test in sorted((source / "tests").glob("*.py")):
            zf.write(test, f"tests/{test.name}")
        for path in sorted(mnist_root.rglob("*")):
            if path.is_file() and not path.name.endswith(".npz"):
                zf.write(path, f"files/data/{path.relative_to(mnist_root).as_posix()}")
    return archive


def otter_run(python: Path, autograder: Path, notebook: Path, out: Path) -> tuple[Timing, float]:
    """Time and score of ``otter run`` on one notebook (a fresh folder holding only it), 1 thread like ``grade``."""
    folder = out / notebook.stem
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(notebook, folder / "submission.ipynb")
    timing, _ = run_measured([str(python), "-m", "otter", "run", "-a", str(autograder), "-o", str(folder), "--no-logo",
                              str(folder / "submission.ipynb")], env={**os.environ, **THREADS_ENV})
    results = json.loads((folder / "results.json").read_text())
    return timing, float(results.get("score", sum(t.get("score", 0) for t in results.get("tests", []))))


# ----------------------------------------------------------------------------- inputs
def generated_submissions(folder: Path) -> dict[str, Path]:
    """The csci145 batch: reference, example student, and the reference with each mutation."""
    folder.mkdir(parents=True)
    made = {"csci145 reference": folder / "reference.ipynb", "csci145 example student": folder / "student.ipynb"}
    shutil.copy(REFERENCES["csci145-ps6"], made["csci145 reference"])
    shutil.copy(STUDENT_EXAMPLE, made["csci145 example student"])
    text = REFERENCES["csci145-ps6"].read_text()
    for name, (old, new) in MUTATIONS.items():
        old_json, new_json = json.dumps(old)[1:-1], json.dumps(new)[1:-1]
        if old_json not in text:
            raise SystemExit(f"benchmark: the reference notebook no longer contains {old!r}; update MUTATIONS")
        path = folder / (name.split(" ", 1)[1].replace(" ", "-") + ".ipynb")
        path.write_text(text.replace(old_json, new_json))
        made[name] = path
    return made


def fill_batch(folder: Path, originals: dict[str, Path], size: int = BATCH_SIZE) -> None:
    """Copies of the generated submissions up to ``size`` notebooks, each with a distinct first line of code."""
    sources = list(originals.values())
    for index in range(len(sources), size):
        source = sources[index % len(sources)]
        nb = nbformat.read(str(source), as_version=4)
        first = next(cell for cell in nb.cells if cell.cell_type == "code")
        first.source = f"# benchmark copy {index}\n" + first.source
        nbformat.write(nb, str(folder / f"{source.stem}-copy{index}.ipynb"))


def environment_line() -> str:
    import platform

    import torch

    load = os.getloadavg()
    return (f"{platform.node()}: {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GB, Python "
            f"{platform.python_version()}, torch {torch.__version__}; load average at start {load[0]:.1f}")


# ----------------------------------------------------------------------------- the run
def measure_notebook(table: Table, name: str, notebook: Path, mnist_root: Path, scratch: Path, repeat: int) -> Timing:
    """Plain execution and ``grade``, alternated ``repeat`` times; the fastest of each is kept (the least disturbed)."""
    plains, grades = [], []
    for attempt in range(repeat):
        plains.append(plain_execution(notebook, mnist_root))
        grades.append(timed_grade(notebook, scratch / f"grade-{name.replace(' ', '-')}-{attempt}"))
    plain = Timing(min(t.wall for t, _ in plains), min(t.cpu for t, _ in plains))
    plain_kernel = max(k for _, k in plains)
    wall, cpu = min(t.wall for t, _, _ in grades), min(t.cpu for t, _, _ in grades)
    memory = max((s for _, s, _ in grades), key=lambda s: s.both_peak)
    graded = grades[0][2]
    table.add(f"{name}: plain nbclient execution, wall / CPU", f"{plain.wall:.1f} s / {plain.cpu:.1f} s")
    table.add(f"{name}: `grade` ({graded['score']:g}/{graded['max_score']:g}), wall / CPU", f"{wall:.1f} s / {cpu:.1f} s")
    limit = OVERHEAD_TARGET[name.split()[0]]
    table.add(f"{name}: `grade` ÷ plain, wall", f"{wall / plain.wall:.2f}×", f"≤ {limit:.2f}×", wall / plain.wall <= limit)
    table.add(f"{name}: `grade` ÷ plain, CPU", f"{cpu / plain.cpu:.2f}×")
    table.add(f"{name}: grader process peak RssAnon", f"{memory.root_peak:.0f} MB", f"≤ {GRADER_ANON_TARGET_MB} MB",
              memory.root_peak <= GRADER_ANON_TARGET_MB)
    table.add(f"{name}: kernel peak RssAnon (plain nbclient kernel: {plain_kernel:.0f} MB)", f"{memory.children_peak:.0f} MB")
    table.add(f"{name}: grader + kernel peak RssAnon (no limit)", f"{memory.both_peak:.0f} MB")
    return Timing(wall, cpu)


def measure_batches(table: Table, folder: Path, scratch: Path, dask: bool, control: bool = True) -> float:
    count = len(list(folder.glob("*.ipynb")))
    one, rows_one = timed_batch(folder, scratch / "batch-j1", "-j", "1")
    two, rows_two = timed_batch(folder, scratch / "batch-j2", "-j", "2")
    table.add(f"batch of {count} csci145 submissions, `-j 1`: wall (CPU)", f"{one.wall:.1f} s ({one.cpu:.0f} s), {60 * count / one.wall:.2f}/min")
    table.add(f"batch of {count} csci145 submissions, `-j 2`: wall (CPU)", f"{two.wall:.1f} s ({two.cpu:.0f} s), {60 * count / two.wall:.2f}/min")
    table.add("`-j 2` throughput ÷ `-j 1` throughput", f"{one.wall / two.wall:.2f}×", "≥ 1.85×", one.wall / two.wall >= 1.85)
    if control:
        held, _ = timed_batch(folder, scratch / "batch-j1-1thread", "-j", "1", one_thread=True)
        table.add("control: `-j 1` with its kernel held at 1 thread (not 2): wall", f"{held.wall:.1f} s, {60 * count / held.wall:.2f}/min")
        table.add("`-j 2` throughput ÷ that control", f"{held.wall / two.wall:.2f}×")
    same = [r["total"] for r in rows_one] == [r["total"] for r in rows_two]
    table.add("same scores with `-j 1` and `-j 2`", "yes" if same else "no", "identical", same)
    if dask:
        from importlib.util import find_spec

        if find_spec("distributed") is None:
            table.add("`--scheduler`, 2 local Dask workers", "not measured: the cluster extra is not installed")
            return one.wall
        with tempfile.TemporaryDirectory(prefix="bench-dask-") as root, local_dask_cluster(Path(root)) as address:
            remote, rows_dask = timed_batch(folder, scratch / "batch-dask", "--scheduler", address)
        table.add(f"batch of {count}, `--scheduler` with 2 local workers: wall", f"{remote.wall:.1f} s, {60 * count / remote.wall:.2f}/min")
        ratio = two.wall / remote.wall
        table.add("`--scheduler` throughput ÷ `-j 2` throughput", f"{ratio:.2f}×", "≥ 0.95×", ratio >= 0.95)
        same = [r["total"] for r in rows_dask] == [r["total"] for r in rows_two]
        table.add("same scores on Dask and locally", "yes" if same else "no", "identical", same)
    return one.wall


def measure_otter(table: Table, python: Path | None, submissions: dict[str, Path], mnist_root: Path, scratch: Path,
                  graded: dict[str, Timing], repeat: int) -> None:
    """``otter run`` on each csci145 submission against ``grade`` on the same notebook (both 1 thread, fastest of ``repeat``)."""
    if python is None or not python.exists():
        table.add("otter run", "not measured: no otter-grader environment (see benchmarks/README.md)")
        return
    autograder = build_otter_autograder(scratch, mnist_root)
    ours, theirs = Timing(0.0, 0.0), Timing(0.0, 0.0)
    for name, notebook in submissions.items():
        runs = [otter_run(python, autograder, notebook, scratch / f"otter-{attempt}") for attempt in range(repeat)]
        otter = Timing(min(t.wall for t, _ in runs), min(t.cpu for t, _ in runs))
        table.add(f"{name}: `otter run` ({runs[0][1]:g}/78 on its equivalent checks), wall / CPU", f"{otter.wall:.1f} s / {otter.cpu:.1f} s")
        if name in graded:
            ours = Timing(ours.wall + graded[name].wall, ours.cpu + graded[name].cpu)
            theirs = Timing(theirs.wall + otter.wall, theirs.cpu + otter.cpu)
    if theirs.wall:
        table.add("csci145 submissions: `otter run` ÷ `grade`, wall", f"{theirs.wall:.1f} s ÷ {ours.wall:.1f} s = {theirs.wall / ours.wall:.2f}×",
                  "≥ 1.30×", theirs.wall / ours.wall >= 1.30)
        table.add("csci145 submissions: `otter run` ÷ `grade`, CPU", f"{theirs.cpu:.1f} s ÷ {ours.cpu:.1f} s = {theirs.cpu / ours.cpu:.2f}×")


def measure_cgroup(table: Table) -> None:
    """Both reference notebooks through the autograder's command in a 768 MB / 0.5 CPU cgroup (gradescope_memory.py)."""
    import gradescope_memory

    if os.geteuid() != 0 or not (gradescope_memory.CGROUP / "memory").is_dir():
        table.add(f"{CGROUP_LIMIT_MB} MB / {CGROUP_CPU:g} CPU cgroup", "not measured: needs root and cgroup v1 memory and cpu controllers")
        return
    for assignment, notebook in gradescope_memory.REFERENCE.items():
        m = gradescope_memory.measure(assignment, notebook, CGROUP_LIMIT_MB, CGROUP_CPU)
        full = m.max_score > 0 and m.score == m.max_score
        table.add(f"{assignment} reference in {CGROUP_LIMIT_MB} MB / {CGROUP_CPU:g} CPU: score, wall", f"{m.score:g}/{m.max_score:g}, {m.wall_seconds:.0f} s "
                  f"(failcnt {m.failcnt}, OOM kills {m.oom_kills})", "full marks", full)
        table.add(f"{assignment} reference in {CGROUP_LIMIT_MB} MB / {CGROUP_CPU:g} CPU: peak anonymous (charge incl. cache)",
                  f"{m.peak_anon_mb:.0f} MB ({m.peak_charge_mb:.0f} MB)", f"≤ {CGROUP_PEAK_TARGET_MB} MB", m.peak_anon_mb <= CGROUP_PEAK_TARGET_MB)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="per-notebook and otter rows for the two references only, no 1-thread batch control")
    parser.add_argument("--no-cgroup", action="store_true", help="skip the 768 MB / 0.5 CPU cgroup rows")
    parser.add_argument("--repeat", type=int, default=1, help="alternate plain and graded runs N times, keep the fastest")
    parser.add_argument("--plain-execute", nargs=2, type=Path, metavar=("NOTEBOOK", "WORKDIR"), help=argparse.SUPPRESS)
    parser.add_argument("--no-dask", action="store_true", help="skip the Dask row")
    parser.add_argument("--otter-python", type=Path, default=Path(os.environ.get("OTTER_PYTHON", "/tmp/otter-venv/bin/python")),
                        help="the Python of a virtual environment with otter-grader (default $OTTER_PYTHON or /tmp/otter-venv)")
    parser.add_argument("--save", type=Path, default=REPO / "benchmarks" / "results.md", help="where to write the table")
    args = parser.parse_args(argv)
    if args.plain_execute:
        plain_execute(*args.plain_execute)
        return 0

    from graders.mnist import ensure_mnist

    mnist_root = ensure_mnist().root
    subprocess.run([sys.executable, "-c", "import torch, graders.grade"], check=True)  # warm the page cache
    header = environment_line()
    print(header, flush=True)
    table = Table()
    with tempfile.TemporaryDirectory(prefix="nbgrade-bench-") as scratch_name:
        scratch = Path(scratch_name)
        batch = generated_submissions(scratch / "csci145-batch")
        per_notebook = {"csci145 reference": batch["csci145 reference"], "ece685d reference": REFERENCES["ece685d-hw2"]}
        if not args.quick:
            per_notebook.update({k: v for k, v in batch.items() if k != "csci145 reference"})
        graded = {name: measure_notebook(table, name, notebook, mnist_root, scratch, max(1, args.repeat))
                  for name, notebook in per_notebook.items()}
        fill_batch(scratch / "csci145-batch", batch)
        measure_batches(table, scratch / "csci145-batch", scratch, dask=not args.no_dask, control=not args.quick)
        measure_otter(table, args.otter_python, batch if not args.quick else {"csci145 reference": batch["csci145 reference"]},
                      mnist_root, scratch, graded, max(1, args.repeat))
        if not args.no_cgroup:
            measure_cgroup(table)
    footer = f"load average at end {os.getloadavg()[0]:.1f}"
    text = f"# Benchmark results\n\n{header}; {footer}.\n\n{table.markdown()}\n"
    print("\n" + table.markdown())
    args.save.write_text(text)
    print(f"\nwritten: {args.save}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
