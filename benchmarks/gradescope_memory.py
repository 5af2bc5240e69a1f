"""What each assignment needs on Gradescope: the autograder run under a real memory and CPU limit.

    sudo .venv/bin/python benchmarks/gradescope_memory.py                   # both reference notebooks at 768 MB, 0.5 CPU
    sudo .venv/bin/python benchmarks/gradescope_memory.py --memory 768 512 --cpu 0.5 [NOTEBOOK ...]

A Gradescope container is a cgroup: its memory limit counts every process in it (the grader,
the kernel, what the kernel starts) and its page cache, and the kernel's OOM killer stops the
run when the limit is reached. This script makes the same thing on a Linux host with cgroup v1
controllers (as root): ``/sys/fs/cgroup/memory/<name>`` with ``memory.limit_in_bytes`` and
``/sys/fs/cgroup/cpu/<name>`` with ``cpu.cfs_quota_us / cpu.cfs_period_us`` = the CPU share.
In it, it runs exactly what ``run_autograder`` runs (``python -m graders.gradescope_main run`` with
the ``autograder_config.json`` that ``grade gradescope ASSIGNMENT --memory-mb LIMIT`` would put
in the zip) on the reference notebook in a temporary ``/autograder``-like root.

Reported per run: the score from ``results.json``, wall time, the cgroup's peak charge
(``memory.max_usage_in_bytes``: anonymous memory plus page cache, which the kernel reclaims
under pressure, so it sits near the limit whenever files were read), the peak of the cgroup's
anonymous memory (``total_rss`` + ``total_shmem`` from ``memory.stat``, sampled every 0.1 s: what
cannot be reclaimed, the number that must stay under the limit), ``memory.failcnt`` (times the
limit was hit and reclaim was needed) and OOM kills. The results are printed as a Markdown
table and written to ``benchmarks/gradescope_memory.md``.

A measurement, not a test: nothing fails. The speed benchmarks (``run.py``) are separate.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CGROUP = Path("/sys/fs/cgroup")
PERIOD_US = 100_000
SAMPLE_SECONDS = 0.1
REFERENCE = {"csci145-ps6": ROOT / "reference/notebooks/csci145-ps6.ipynb",
             "ece685d-hw2": ROOT / "reference/notebooks/ece685d-hw2.ipynb"}


@dataclass(frozen=True)
class Measurement:
    """One autograder run in a limited cgroup."""

    assignment: str
    notebook: str
    limit_mb: int
    cpu: float
    score: float
    max_score: float
    status: str
    wall_seconds: float
    peak_charge_mb: float
    """memory.max_usage_in_bytes: anonymous memory and page cache together."""
    peak_anon_mb: float
    """Sampled peak of total_rss + total_shmem: the memory the limit cannot reclaim."""
    failcnt: int
    oom_kills: int


class LimitedGroup:
    """A cgroup v1 memory + cpu pair with the given limits, removed on exit."""

    def __init__(self, name: str, limit_mb: int, cpu: float) -> None:
        self.memory = CGROUP / "memory" / name
        self.cpu = CGROUP / "cpu" / name
        self.limit_mb = limit_mb
        self.cpu_share = cpu

    def __enter__(self) -> "LimitedGroup":
        for path in (self.memory, self.cpu):
            path.mkdir(exist_ok=True)
        (self.memory / "memory.limit_in_bytes").write_text(str(self.limit_mb * 2**20))
        (self.cpu / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (self.cpu / "cpu.cfs_quota_us").write_text(str(int(self.cpu_share * PERIOD_US)))
        return self

    def __exit__(self, *exc: object) -> None:
        for path in (self.memory, self.cpu):
            for _ in range(50):
                try:
                    path.rmdir()
                    break
                except OSError:
                    time.sleep(0.2)  # the last processes are still exiting

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` run by a shell that first moves itself into both groups."""
        enter = f'echo $$ > {self.memory}/cgroup.procs && echo $$ > {self.cpu}/cgroup.procs && exec "$@"'
        return ["sh", "-c", enter, "sh", *argv]

    def stat(self) -> dict[str, int]:
        pairs = (line.split() for line in (self.memory / "memory.stat").read_text().splitlines())
        return {key: int(value) for key, value in pairs}

    def anon_bytes(self) -> int:
        stat = self.stat()
        return stat.get("total_rss", 0) + stat.get("total_shmem", 0)

    def read_int(self, name: str) -> int:
        return int((self.memory / name).read_text().split()[0])

    def oom_kills(self) -> int:
        for line in (self.memory / "memory.oom_control").read_text().splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
        return 0


def prepare_root(scratch: Path, assignment: str, notebook: Path, limit_mb: int) -> Path:
    """A ``/autograder`` layout: the submission, and the config the zip would carry for this limit."""
    from graders.autograder import CONFIG_FILE, autograder_config

    for name in ("submission", "source", "results"):
        (scratch / name).mkdir(parents=True)
    shutil.copy(notebook, scratch / "submission" / notebook.name)
    config = autograder_config(assignment, memory_mb=limit_mb)
    (scratch / "source" / CONFIG_FILE).write_text(config.to_json())
    return scratch / "source" / CONFIG_FILE


def measure(assignment: str, notebook: Path, limit_mb: int, cpu: float, log_dir: Path | None = None) -> Measurement:
    """Run the autograder on ``notebook`` in a fresh limited cgroup; keep its output in ``log_dir`` when given."""
    with tempfile.TemporaryDirectory(prefix="nbgrade-memory-") as scratch_name:
        scratch = Path(scratch_name)
        config = prepare_root(scratch, assignment, notebook, limit_mb)
        argv = [sys.executable, "-m", "graders.gradescope_main", "run", "--root", str(scratch), "--config", str(config)]
        env = {**os.environ, "AUTOGRADER_ROOT": str(scratch), "PYTHONDONTWRITEBYTECODE": "1"}
        with LimitedGroup(f"nbgrade-measure-{os.getpid()}", limit_mb, cpu) as group:
            started = time.monotonic()
            process = subprocess.Popen(group.command(argv), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, text=True)
            peak_anon = 0
            while process.poll() is None:
                peak_anon = max(peak_anon, group.anon_bytes())
                time.sleep(SAMPLE_SECONDS)
            log = process.stdout.read() if process.stdout else ""
            wall = time.monotonic() - started
            peak_charge = group.read_int("memory.max_usage_in_bytes")
            failcnt, oom = group.read_int("memory.failcnt"), group.oom_kills()
        results = scratch / "results" / "results.json"
        data = json.loads(results.read_text()) if results.is_file() else {}
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        (log_dir / f"{assignment}-{limit_mb}.log").write_text(log + "\n\nresults.json:\n" + json.dumps(data, indent=1))
    if not data:
        print(f"{assignment} at {limit_mb} MB wrote no results.json; log tail:\n{log[-3000:]}", file=sys.stderr)
    extra = data.get("extra_data", {})
    return Measurement(
        assignment, notebook.name, limit_mb, cpu, float(data.get("score", 0.0)),
        sum(float(t.get("max_score", 0.0)) for t in data.get("tests", [])), str(extra.get("status", "no results")),
        round(wall, 1), round(peak_charge / 2**20), round(peak_anon / 2**20), failcnt, oom,
    )


def table(rows: list[Measurement]) -> str:
    lines = ["| assignment | limit | CPU | score | status | wall | peak anonymous | peak charge (incl. cache) | failcnt | OOM kills |",
             "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {m.assignment} | {m.limit_mb} MB | {m.cpu:g} | {m.score:g}/{m.max_score:g} | {m.status} | {m.wall_seconds:.0f} s "
              f"| {m.peak_anon_mb:.0f} MB | {m.peak_charge_mb:.0f} MB | {m.failcnt} | {m.oom_kills} |" for m in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="notebooks to grade (default: both reference notebooks)")
    parser.add_argument("--memory", type=int, nargs="+", default=[768], help="memory limits in MB (default 768)")
    parser.add_argument("--cpu", type=float, default=0.5, help="CPU share (default 0.5, Gradescope's default)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "gradescope_memory.md")
    parser.add_argument("--logs", type=Path, help="keep each run's autograder output and results.json here")
    args = parser.parse_args(argv)
    if os.geteuid() != 0 or not (CGROUP / "memory").is_dir():
        print("needs root and cgroup v1 memory and cpu controllers under /sys/fs/cgroup", file=sys.stderr)
        return 2
    sys.path.insert(0, str(ROOT))
    from graders.parts import detect_assignment
    from graders.submission import read_notebook

    jobs = [(a, p) for a, p in REFERENCE.items()] if not args.notebooks else [
        (detect_assignment(read_notebook(p)) or "csci145-ps6", p) for p in args.notebooks]
    rows = []
    for assignment, notebook in jobs:
        for limit in args.memory:
            rows.append(measure(assignment, notebook, limit, args.cpu, args.logs))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    load = os.getloadavg()
    text = (f"# Gradescope memory and CPU, measured\n\n`benchmarks/gradescope_memory.py`, "
            f"{_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M UTC}, load {load[0]:.1f} on {os.cpu_count()} cores.\n\n"
            f"{table(rows)}\n")
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
