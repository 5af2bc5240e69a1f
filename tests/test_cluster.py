"""Batch grading on a real Dask cluster on loopback: a scheduler and two one-thread workers, each its own process.

Skipped when Dask (the ``cluster`` extra) is not installed. Each test starts its own cluster (one
of them kills a worker) and tears it down by process group; the tear-down checks that no process
of the cluster — workers, their grading subprocesses, kernels — survives. Budget: about 80 s.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytest.importorskip("distributed")
psutil = pytest.importorskip("psutil")

from graders.batch import grade_batch  # noqa: E402
from graders.cluster import DaskRunner  # noqa: E402
from tests.test_batch import batch_config, rows_by_id, write_mixed_folder  # noqa: E402

pytestmark = pytest.mark.cluster
DASK = Path(sys.executable).with_name("dask")
START_TIMEOUT = 60.0


@dataclass
class LoopbackCluster:
    """A ``dask scheduler`` and ``dask worker`` processes, each in its own process group."""

    root: Path
    address: str = ""
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    seen: set[int] = field(default_factory=set)
    """Every process ever observed in the cluster's trees (checked at tear-down)."""

    def start(self, workers: int = 2) -> None:
        scheduler_file = self.root / "scheduler.json"
        self._spawn("scheduler", ["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                  "--scheduler-file", str(scheduler_file)])
        self._wait_for(scheduler_file.is_file, "the scheduler file")
        self.address = json.loads(scheduler_file.read_text())["address"]
        for index in range(1, workers + 1):
            name = f"w{index}"
            (self.root / name).mkdir()
            self._spawn(name, ["worker", "--scheduler-file", str(scheduler_file), "--nthreads", "1", "--no-dashboard",
                               "--name", name, "--local-directory", str(self.root / name)])
        from distributed import Client

        with Client(self.address, timeout="30s") as client:
            client.wait_for_workers(workers, timeout=START_TIMEOUT)

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = (self.root / f"{name}.log").open("wb")
        self.processes[name] = subprocess.Popen([str(DASK), *argv], stdout=log, stderr=subprocess.STDOUT,
                                                start_new_session=True, cwd=self.root)

    def _wait_for(self, condition, what: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} did not appear")
            time.sleep(0.2)

    def tree(self, name: str) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.processes[name].pid)
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []

    def observe(self) -> None:
        for name in self.processes:
            self.seen.update(p.pid for p in self.tree(name))

    def grading(self, name: str) -> bool:
        """Is worker ``name`` running a kernel right now (mid-grade)?"""
        return any("ipykernel" in " ".join(_cmdline(p)) for p in self.tree(name))

    def kill(self, name: str) -> None:
        self.observe()
        try:
            os.killpg(self.processes[name].pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.processes[name].wait(10)

    def stop(self) -> list[int]:
        """Kill every process group; return the pids that are still alive 15 s later (should be none)."""
        self.observe()
        for process in self.processes.values():
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and _alive(self.seen):
            time.sleep(0.2)
        survivors = _alive(self.seen)
        for pid in survivors:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        for process in self.processes.values():
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                pass
        return survivors


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def _alive(pids: set[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.Error:
            continue
    return alive


@pytest.fixture
def loopback_cluster(tmp_path):
    if not DASK.exists():
        pytest.skip("the dask command is not installed beside this Python")
    cluster = LoopbackCluster(tmp_path / "cluster")
    cluster.root.mkdir()
    try:
        cluster.start()
        yield cluster
    finally:
        survivors = cluster.stop()
    assert not survivors, f"processes left behind by the cluster: {survivors}"


def test_scheduler_run_equals_local_run_and_uses_both_workers(tmp_path, loopback_cluster, capsys):
    from graders.cli import main

    source = write_mixed_folder(tmp_path / "subs", names=("good", "sign_error", "not_json"))
    local = grade_batch(source, tmp_path / "local", batch_config(), jobs=1, force=False, stream=io.StringIO(), tty=False)

    argv = [str(source), "--out", str(tmp_path / "dask"), "--scheduler", loopback_cluster.address, "--seed", str(local.seed),
            "--cell-timeout", "6", "--timeout", "150", "--no-report"]
    assert main(argv) == 0
    assert "3 submissions" in capsys.readouterr().out

    columns = ("total", "1A", "1B", "1C", "1D", "2A", "2B", "2C", "status")
    local_rows = rows_by_id(tmp_path / "local" / "gradebook.csv")[1]
    dask_rows = rows_by_id(tmp_path / "dask" / "gradebook.csv")[1]
    assert {i: [r[c] for c in columns] for i, r in dask_rows.items()} == {i: [r[c] for c in columns] for i, r in local_rows.items()}
    manifest = json.loads((tmp_path / "dask" / "manifest.json").read_text())["submissions"]
    assert {entry["worker"] for entry in manifest.values()} == {"w1", "w2", ""}  # not_json is read by the client
    for item_id in dask_rows:
        assert {"results.json", "grading.json"} <= {p.name for p in (tmp_path / "dask" / item_id).iterdir()}
    # the similarity report is made by the client, from the submitted notebooks: the same on Dask as locally
    assert (tmp_path / "dask" / "similarity.csv").read_text() == (tmp_path / "local" / "similarity.csv").read_text()


def test_killing_a_worker_mid_run_still_gives_a_complete_gradebook(tmp_path, loopback_cluster):
    source = write_mixed_folder(tmp_path / "subs", names=("good", "hangs", "relu_after_last", "raises"))
    out = tmp_path / "out"
    done = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            grade_batch(source, out, batch_config(), jobs=2, force=False, runner=DaskRunner(loopback_cluster.address),
                        stream=io.StringIO(), tty=False)
        except BaseException as error:  # noqa: BLE001 - re-raised in the test thread
            failure.append(error)
        finally:
            done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not loopback_cluster.grading("w2") and time.monotonic() < deadline and not done.is_set():
        loopback_cluster.observe()
        time.sleep(0.2)
    assert loopback_cluster.grading("w2"), "w2 never started grading"
    loopback_cluster.kill("w2")
    assert done.wait(300) and not failure, failure

    _, rows = rows_by_id(out / "gradebook.csv")
    assert sorted(rows) == ["good", "hangs", "raises", "relu_after_last"]
    assert all(row["status"] == "graded" for row in rows.values()), rows
    assert rows["good"]["total"] == "20" and rows["hangs"]["2A"] == "5"
    assert not _alive({p.pid for p in loopback_cluster.tree("w2")})


def test_a_worker_with_another_harness_version_is_refused(capsys):
    from graders.batch import BatchUsageError
    from graders.cluster import accepted_workers, harness_version

    class FakeClient:
        def __init__(self, versions: dict[str, str]) -> None:
            self.versions = versions

        def run(self, function):
            return dict(self.versions)

    mine = harness_version()
    assert accepted_workers(FakeClient({"tcp://a:1": mine, "tcp://b:1": mine})) is None
    assert accepted_workers(FakeClient({"tcp://a:1": mine, "tcp://b:1": "0.0.1"})) == ["tcp://a:1"]
    assert "refusing Dask worker tcp://b:1: harness 0.0.1" in capsys.readouterr().err
    with pytest.raises(BatchUsageError, match="no Dask worker runs harness"):
        accepted_workers(FakeClient({"tcp://b:1": "0.0.1"}))
