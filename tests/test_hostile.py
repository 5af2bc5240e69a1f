"""Hostile and malformed submissions: the grader survives them, contains them and stays fair.

For each notebook the grader must exit normally within its limits, write a valid results.json,
give the hostile part 0 (or contain it), grade every other part normally (each notebook carries a
correct 2A worth 5 points), tell the student in one sentence what happened, and touch nothing
outside its sandbox. The corpus is generated in ``tests/hostile_corpus.py``.

Budget: about 80 s with ``-n 2`` on an idle 2-core machine (each kernel-running test grades one notebook).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from graders.config import GradeConfig, Limits
from graders.grade import grade_submission
from graders.sandbox import is_root
from tests.conftest import REPO, fast_config, write_notebook
from tests.hostile_corpus import (
    CORRECT_2A,
    FAKE_VERDICT,
    PeakMemory,
    bomb_cells,
    cell_index,
    check_messages,
    environment_cells,
    executed_outputs,
    issue_for,
    liar_cells,
    malformed_files,
    namespaces_available,
    notebook,
    part_scores,
    probe_hanger_cells,
    probe_killer_cells,
    quirky_valid_file,
    resource_cells,
    tampering_cells,
    valid_results,
    with_stale_outputs,
)

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="the sandbox and memory checks need Linux")
REPORT_MODULE = importlib.util.find_spec("graders.report") is not None


def config(**limits: object) -> GradeConfig:
    """Short limits (tests) with a report when the report module exists."""
    base = fast_config(cell_timeout=limits.pop("cell_timeout", 20), total_timeout=limits.pop("total_timeout", 120),
                       probe_timeout=limits.pop("probe_timeout", 20), write_report=REPORT_MODULE)
    return replace(base, limits=replace(base.limits, **limits))


def grade(nb_or_bytes, tmp_path: Path, cfg: GradeConfig, name: str = "submission.ipynb"):
    path = tmp_path / name
    if isinstance(nb_or_bytes, bytes):
        path.write_bytes(nb_or_bytes)
    else:
        write_notebook(nb_or_bytes, path)
    out = tmp_path / (path.stem + ".graded")
    return grade_submission(path, cfg, out_dir=out), out


def assert_only_2a(result, **also: float) -> None:
    """2A (and the parts in ``also``) full marks; every other part exactly 0."""
    expected = {"2A": 5.0, **also}
    scores = part_scores(result)
    assert scores == {p: expected.get(p, 0.0) for p in scores}, (
        scores, result.execution, {p: check_messages(result, p)[:300] for p in expected})


def assert_report_inert(out: Path) -> None:
    """report.html, when written, carries the student's text escaped: nothing of it runs."""
    if not REPORT_MODULE:
        return
    html = (out / "report.html").read_text()
    assert '<script>alert("owned")</script>' not in html and "<script>alert('owned')</script>" not in html


# ---------------------------------------------------------------------------------------------
# Malformed files
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(malformed_files()))
def test_malformed_file_gets_a_valid_zero_with_one_clear_sentence(name, tmp_path):
    cfg = replace(config(), assignment="csci145-ps6")
    result, out = grade(malformed_files()[name], tmp_path, cfg, name)
    data = valid_results(out)
    assert result.status == "invalid_submission" and data["score"] == 0 and len(data["tests"]) > 0
    (message,) = result.messages
    assert name in message and "\n" not in message and len(message) < 300
    assert all(check.message != message for check in result.checks)  # said once, not once per check
    assert json.dumps(data).count(name) == json.dumps(data["output"]).count(name)
    expected = {"not_json": "not valid JSON", "json_list": "not a Jupyter notebook", "json_not_notebook": "not a Jupyter notebook",
                "empty_file": "empty", "empty_notebook": "nothing to grade", "script_renamed": "Python script renamed",
                "r_kernel": "R language", "binary": "not valid JSON"}[name.removesuffix(".ipynb")]
    assert expected in message


def test_a_100_mb_file_is_refused_without_being_read(tmp_path):
    path = tmp_path / "huge.ipynb"
    with path.open("wb") as handle:
        handle.truncate(100 * 2**20)  # sparse: nothing is written to disk
    try:
        with PeakMemory() as memory:
            result = grade_submission(path, replace(config(), assignment="csci145-ps6"), out_dir=tmp_path / "out")
    finally:
        path.unlink()
    assert result.status == "invalid_submission" and "100 MB" in result.messages[0] and "clear" in result.messages[0]
    assert memory.growth < 50, f"the grader read the file: +{memory.growth:.0f} MB"
    valid_results(tmp_path / "out")


def test_a_notebook_with_every_quirk_is_graded(tmp_path):
    """nbformat 3, UTF-16 with a BOM, an R kernelspec over Python code, no assignment metadata."""
    result, out = grade(quirky_valid_file(), tmp_path, replace(config(), assignment="csci145-ps6"))
    valid_results(out)
    assert_only_2a(result)
    notes = " ".join(result.execution.notes)
    assert "read as utf-16" in notes and "R language" in notes


# ---------------------------------------------------------------------------------------------
# Resources
# ---------------------------------------------------------------------------------------------
def test_exits_hangs_and_floods_are_contained_and_the_grader_stays_small(tmp_path, capfd):
    nb = notebook(resource_cells())
    cfg = config(cell_timeout=6, total_timeout=150, max_output_chars=50_000)
    for module in ("reference.csci145_ps6", "graders.report"):  # the grader's own imports are not what is measured
        if importlib.util.find_spec(module):
            importlib.import_module(module)
    with PeakMemory() as memory:
        result, out = grade(nb, tmp_path, cfg)
    data = valid_results(out)
    assert_only_2a(result)

    suicide = cell_index(nb, "os._exit(3)")
    assert result.execution.kernel_restarts == 1
    assert issue_for(result, suicide).startswith("killed: the kernel process exited (exit code 3)")
    assert any(f"died in cell {suicide + 1}" in note and "re-run without that cell" in note for note in result.execution.notes)
    assert "SystemExit" in issue_for(result, cell_index(nb, "sys.exit()"))
    assert "SystemExit" in issue_for(result, cell_index(nb, "raise SystemExit(3)"))
    for marker in ("infinite loop", "sleeping forever"):
        assert issue_for(result, cell_index(nb, marker)).startswith("timeout: did not finish within its time limit (6 s")
    flooded = [cell_index(nb, m) + 1 for m in ("1 GB in five", "100 MB of lines", "53 MB image")]
    truncation = next(note for note in result.execution.notes if "printed more than 50,000 characters" in note)
    assert all(str(cell) in truncation for cell in flooded), truncation
    assert "after_floods" in result.defined_names

    # the grader's memory, its own stdout and its files stay small whatever the notebook printed
    assert memory.growth < 150, f"grader RssAnon grew by {memory.growth:.0f} MB"
    assert len(capfd.readouterr().out) < 100_000
    assert (out / "executed.ipynb").stat().st_size < 2_000_000
    assert FAKE_VERDICT not in json.dumps(data) and data["score"] == 5
    assert_report_inert(out)


def test_memory_and_fork_bombs_are_stopped_and_the_rest_still_graded(tmp_path, monkeypatch):
    import graders.grade
    from graders.processes import processes_of
    from graders.workspace import Workspace

    workspaces: list[Workspace] = []

    class Recorded(Workspace):
        @classmethod
        def create(cls, *args, **kwargs):
            workspaces.append(Workspace.create(*args, **kwargs))
            return workspaces[-1]

    monkeypatch.setattr(graders.grade, "Workspace", Recorded)
    nb = notebook(bomb_cells())
    result, out = grade(nb, tmp_path, config(cell_timeout=30, total_timeout=150, memory_mb=1500, max_processes=64))
    valid_results(out)
    assert_only_2a(result)
    memory, fork = cell_index(nb, "128 MB a step"), cell_index(nb, "os.fork()")
    assert issue_for(result, memory).startswith("killed: the kernel used more than 1500 MB of memory and was stopped")
    assert issue_for(result, fork).startswith("killed: the notebook started more than 16 processes and was stopped")
    assert issue_for(result, fork + 1).startswith("skipped")
    notes = " ".join(result.execution.notes)
    assert f"died again in cell {fork + 1}" in notes and "re-run once so that the remaining parts" in notes
    assert "after_memory_bomb" in result.defined_names
    if workspaces[0].uid is not None:
        assert processes_of(None, workspaces[0].uid) == [], "processes of the sandbox survived grading"


# ---------------------------------------------------------------------------------------------
# The grader's own calls into student code
# ---------------------------------------------------------------------------------------------
def test_a_probe_that_kills_the_kernel_costs_only_its_part(tmp_path):
    result, out = grade(notebook(probe_killer_cells()), tmp_path, config())
    valid_results(out)
    assert_only_2a(result, **{"2C": 15.0})
    assert "the kernel died while the grader called your code (the kernel was killed (SIGKILL))" in check_messages(result, "2B")
    assert any("for 2B killed the kernel" in note and "2C onwards" in note for note in result.execution.notes)


def test_a_probe_that_hangs_and_ignores_interrupts_costs_only_its_part(tmp_path):
    result, out = grade(notebook(probe_hanger_cells()), tmp_path, config(probe_timeout=6))
    valid_results(out)
    assert part_scores(result) == {p: 15.0 if p == "2C" else 0.0 for p in part_scores(result)}
    assert "did not finish within 6 s when the grader called it" in check_messages(result, "2A")
    assert any("for 2A did not return" in note and "2B onwards" in note for note in result.execution.notes)


# ---------------------------------------------------------------------------------------------
# Tampering and environment
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def canary(tmp_path_factory) -> Path:
    """A world-writable directory on the grading machine that no sandbox may write into."""
    directory = Path("/tmp") / f"nbgrade-canary-{os.getpid()}-{tmp_path_factory.getbasetemp().name}"
    directory.mkdir(exist_ok=True)
    directory.chmod(stat.S_IRWXU | stat.S_IRWXG | stat.S_IRWXO)
    yield directory
    for child in directory.iterdir():
        child.unlink()
    directory.rmdir()


def test_tampering_liars_and_monkeypatches_earn_nothing_and_touch_nothing(tmp_path, canary):
    submissions = tmp_path / "submissions"
    submissions.mkdir()
    submissions.chmod(0o777)  # even a folder anyone may write to stays out of reach
    cells = [*environment_cells(), *tampering_cells(submissions, canary, REPO), *liar_cells()]
    nb = with_stale_outputs(notebook([*CORRECT_2A, *cells]))
    result, out = grade(nb, submissions, config())

    data = valid_results(out)
    assert data["score"] == 5 and result.score == 5
    assert_only_2a(result)
    assert sorted(p.name for p in submissions.iterdir()) == ["submission.graded", "submission.ipynb"]
    assert sorted(p.name for p in out.iterdir()) == sorted(["executed.ipynb", "grading.json", "results.json"]
                                                          + (["report.html"] if REPORT_MODULE else []))
    writes = json.loads(executed_outputs(out, cell_index(nb, "WRITES = {}")).split("WRITES ", 1)[1])
    assert writes["results.json"] == writes["~/results.json"] == "written"  # inside the sandbox: harmless
    reads = json.loads(executed_outputs(out, cell_index(nb, "READS = {}")).split("READS ", 1)[1])
    if namespaces_available():  # the kernel sees a new root: nothing of the grading machine is there
        assert list(canary.iterdir()) == []
        assert writes["/results.json"] != "written" and writes["/autograder/results/results.json"] != "written"
        assert all(not value.startswith("read") for value in reads.values()), reads
        assert reads["network"] != "connected"
    if is_root():
        assert reads["kill parent"] == "PermissionError"

    env = executed_outputs(out, cell_index(nb, "input('Your name: ')"))
    assert "INPUT ''" in env and "drive.mount() skipped" in env
    assert "MNIST" in executed_outputs(out, cell_index(nb, "/content/data"))
    notes = " ".join(result.execution.notes)
    for expected in ("`!pip install torch==0.0.1` was not run", "`%pip install nothing-at-all` was not run",
                     "`%cd /content/drive/MyDrive` was not run", "`%matplotlib notebook` was replaced",
                     "input() returns an empty string", "Google Drive is not mounted",
                     "torch.allclose", "json.dump", "builtins.open", "the grader put the originals back"):
        assert expected in notes, expected

    lies = {part: check_messages(result, part) for part in ("1A", "1B", "1C", "2B", "2C")}
    assert "differs from the" in lies["1C"] and "not symmetric" in lies["1C"]
    assert "not an nn.Module" in lies["2B"] and "not a dict" in lies["2C"]

    executed = json.loads((out / "executed.ipynb").read_text())["cells"]
    assert all(FAKE_VERDICT not in json.dumps(c.get("outputs", [])) for c in executed)  # stale outputs are never carried over
    counts = [c["execution_count"] for c in executed if c["cell_type"] == "code"]
    assert counts == sorted(counts)
    assert_report_inert(out)
