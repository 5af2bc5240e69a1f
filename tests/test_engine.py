"""The execute and observe stages: units, one live kernel taken through its deaths, the sandbox
launcher on its own, and the issue-4 end-to-end cases through the ``grade`` command.

Budget: about 60 s with ``-n 2`` (one kernel restarted three times, one notebook graded by the
command, the launcher run twice without a kernel; the rest is pure Python).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest

from graders import cli
from graders.config import Limits
from graders.execute import (
    CappedClient,
    KernelSession,
    OutputTail,
    Workspace,
    describe_exit,
    execute_notebook,
    processes_of,
    text_size,
)
from graders.hostfs import ReadLimits
from graders.observe import read_part_directory
from graders.sandbox import SandboxSpec, is_root
from graders.submission import InvalidSubmission, decode, load_submission, neutralise_source
from tests.conftest import REPO, make_notebook, write_notebook
from tests.hostile_corpus import CORRECT_2A, namespaces_available, valid_results

LINUX = sys.platform.startswith("linux")


# ---------------------------------------------------------------------------------------------
# Submission: what is neutralised, how odd files are read
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("source", "runs", "note"),
    [
        ("!pip install torch", "pass  # grader: shell command not run", "`!pip install torch` was not run"),
        ("%pip install numpy==1.0", "pass  # grader: %pip not run", "`%pip install numpy==1.0` was not run"),
        ("%%bash\nrm -rf ~", "pass  # grader: cell magic %%bash not run", "the %%bash cell was not run"),
        ("%cd /content/drive", "pass  # grader: %cd not run", "`%cd /content/drive` was not run"),
        ("%timeit -n 3 f()", "f()", None),
        ("%time x = f()", "x = f()", None),
        ("%%timeit -n 10 setup()\nbody()", "setup()\nbody()", "%%timeit was run once"),
        ("%matplotlib notebook", "pass  # grader: %matplotlib notebook not run", "replaced by the inline backend"),
        ("%matplotlib inline", "%matplotlib inline", None),
        ("from google.colab import drive\ndrive.mount('/content/drive')",
         "from google.colab import drive\ndrive.mount('/content/drive')", "Google Drive is not mounted"),
        ("name = input('?')", "name = input('?')", "input() returns an empty string"),
        ("if True:\n    !ls\n    x = 1", "if True:\n    pass  # grader: shell command not run\n    x = 1", "`!ls` was not run"),
        ("y = (x\n     %3)", "y = (x\n     %3)", None),
        ("%%writefile helper.py\ndef f():\n    return 1", "%%writefile helper.py\ndef f():\n    return 1", None),
    ],
)
def test_neutralise_source(source, runs, note):
    got, notes = neutralise_source(source)
    assert got == runs
    assert (note is None and notes == []) or (note is not None and any(note in n for n in notes)), notes


def test_a_failing_extension_magic_is_guarded_so_the_cell_goes_on():
    got, notes = neutralise_source("%load_ext tensorboard\nx = 1")
    assert got.splitlines()[0].startswith("try: __import__('IPython').get_ipython().run_line_magic('load_ext', 'tensorboard')")
    assert got.splitlines()[-1] == "x = 1" and notes == []
    compile(got, "<cell>", "exec")


@pytest.mark.parametrize(
    ("encoded", "encoding"),
    [("é".encode("utf-8"), "utf-8"), (b"\xef\xbb\xbf" + "é".encode(), "utf-8-sig"), ("é".encode("utf-16"), "utf-16"),
     ("é".encode("utf-32"), "utf-32"), ("é“".encode("cp1252"), "cp1252"), (b"\x81\x8d\xe9", "latin-1")],
)
def test_decode_tries_boms_then_utf8_then_windows_then_latin1(encoded, encoding):
    text, used = decode(encoded)
    assert used == encoding and text.endswith(("é", "“", "\xe9"))


def test_saved_outputs_and_counts_never_reach_the_kernel(tmp_path):
    nb = make_notebook(["x = 1", "print(x)"])
    for count, cell in zip((9, 2), nb.cells):
        cell.execution_count = count
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="All tests passed\n")]
    nb.cells[1].attachments = {"a.png": {"image/png": "AAAA"}}
    submission = load_submission(write_notebook(nb, tmp_path / "nb.ipynb"))
    assert all(c.outputs == [] and c.execution_count is None for c in submission.runnable.cells)
    assert "attachments" not in submission.runnable.cells[1]
    assert submission.notebook.cells[0].outputs  # the submitted notebook keeps them, for the report


def test_hand_edited_cells_are_repaired(tmp_path):
    data = {"cells": [{"cell_type": "code", "source": None}, {"cell_type": "code", "source": ["a = ", "1"]}, 5,
                      {"cell_type": "alien", "source": "z"}]}
    path = tmp_path / "odd.ipynb"
    path.write_text(json.dumps(data))
    cells = load_submission(path).runnable.cells
    assert [(c.cell_type, c.source) for c in cells] == [("code", ""), ("code", "a = 1"), ("raw", "z")]


def test_a_non_python_notebook_is_refused_unless_its_code_is_python(tmp_path):
    nb = make_notebook(["import numpy as np\nx = np.ones(3)"])
    nb.metadata["kernelspec"] = {"name": "julia-1.9", "language": "julia", "display_name": "Julia"}
    assert "julia language, but its code is Python" in load_submission(write_notebook(nb, tmp_path / "a.ipynb")).notes[0]
    nb.cells[0].source = "using LinearAlgebra\nx = ones(3)\nprint(x)"
    with pytest.raises(InvalidSubmission, match="julia language; this assignment is graded in Python"):
        load_submission(write_notebook(nb, tmp_path / "b.ipynb"))


# ---------------------------------------------------------------------------------------------
# Execute: units
# ---------------------------------------------------------------------------------------------
def test_text_size_counts_text_without_serialising():
    assert text_size({"name": "stdout", "text": "abc"}) == 17  # keys and names count: all of it is kept
    assert text_size({"data": {"image/png": "x" * 1000, "text/plain": ["ab", "c"]}, "metadata": {}}) == 1034
    deep: dict = {"d": "x"}
    for _ in range(40):
        deep = {"d": deep}
    assert text_size(deep) > 10**12  # nested past the limit: too large to keep, without walking it all


@pytest.mark.parametrize(
    ("code", "words"),
    [(-signal.SIGSEGV, "segmentation fault"), (-signal.SIGKILL, "was killed (SIGKILL)"), (3, "exit code 3"),
     (-signal.SIGXCPU, "CPU time"), (None, "died")],
)
def test_describe_exit(code, words):
    assert words in describe_exit(code)


def test_capped_client_keeps_the_first_characters_then_one_note():
    nb = make_notebook(["print(1)"])
    # 14 characters of every stream message are its keys and name ("name", "stdout", "text") and 16 its cost as an
    # output (STREAM_COST): 10 are left for text
    client = CappedClient(nb, None, Limits(max_output_chars=40, max_output_total_chars=200))  # type: ignore[arg-type]
    client.reset_execution_trackers()
    client.clear_before_next_output = False  # set by nbclient when a cell starts executing
    outs: list = []
    for text in ("123456", "7890abcdef", "more"):
        message = {"msg_type": "stream", "parent_header": {"msg_id": "m"}, "header": {"msg_type": "stream"},
                   "content": {"name": "stdout", "text": text}}
        client.output(outs, message, None, 0)
    texts = [o.get("text") for o in outs]
    assert "".join(texts[:2]) == "1234567890" and texts[-1].strip() == "[grader] output truncated: this cell printed too much."
    assert client.truncated_cells == {0} and len(outs) == 3


def test_output_tail_keeps_only_the_last_bytes():
    tail = OutputTail(keep=10)
    for _ in range(1000):
        os.write(tail.write_fd, b"0123456789abcdef")
    tail.close()
    assert tail.text() == "6789abcdef"


# ---------------------------------------------------------------------------------------------
# Observe: only data comes back
# ---------------------------------------------------------------------------------------------
def test_pickled_and_oversized_files_are_not_read(tmp_path):
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(tmp_path / "plain.npy", np.arange(3.0))
    (tmp_path / "values.json").write_text(json.dumps({"arrays": ["objects", "plain", "missing"]}))
    obs = read_part_directory("2A", tmp_path)
    assert obs.array("objects") is None and obs.array("missing") is None
    assert obs.array("plain").tolist() == [0.0, 1.0, 2.0]
    assert "objects" in obs.problem
    small = read_part_directory("2A", tmp_path, ReadLimits(array_bytes=10))
    assert small.array("plain") is None
    (tmp_path / "values.json").write_text('["not", "a", "dict"]')
    assert read_part_directory("2A", tmp_path).status == "error"


# ---------------------------------------------------------------------------------------------
# One live kernel through its deaths (the session restarts it; reasons come from the exit status)
# ---------------------------------------------------------------------------------------------
@pytest.mark.skipif(not LINUX, reason="signals and /proc")
def test_a_kernel_that_dies_is_reported_with_the_reason_and_restarted(mnist_root):
    nb = make_notebook([
        "import os\nos._exit(3)",
        "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)",
        "import ctypes\nctypes.string_at(0)",
        "import time\ntime.sleep(60)",
        "alive = 1",
    ])
    workspace = Workspace.create(mnist_root, slot=3900 + os.getpid() % 90)
    session = KernelSession(nb, workspace, Limits(cell_timeout=30, total_timeout=60), mnist_root, seed=1)
    try:
        session.start()
        reasons = []
        for index in range(3):
            run = session.run_cell(index, timeout=20)
            assert run.status == "killed" and not session.alive
            again = session.run_cell(4, timeout=5)  # a dead session answers at once, never hangs
            assert again.status == "killed" and again.duration < 1
            reasons.append(run.evalue)
            session.restart()
        assert "exit code 3" in reasons[0] and "SIGKILL" in reasons[1] and "segmentation fault" in reasons[2]
        assert session.run_cell(4, timeout=10).status == "ok"
        session.deadline = 0  # the watchdog enforces the total budget even while a cell sleeps
        run = session.run_cell(3, timeout=30)
        assert run.status == "killed" and "total time budget" in run.evalue and run.duration < 10
    finally:
        session.shutdown()
        uid = workspace.uid
        workspace.cleanup()
    if uid is not None:
        assert processes_of(None, uid) == []


# ---------------------------------------------------------------------------------------------
# The sandbox launcher on its own (no kernel): what a confined process can see and do
# ---------------------------------------------------------------------------------------------
PROBE = """
import json, os, resource, socket
seen = {"uid": os.getuid(), "root": sorted(os.listdir("/")), "cwd": os.getcwd(),
        "nproc": resource.getrlimit(resource.RLIMIT_NPROC)[0], "fsize": resource.getrlimit(resource.RLIMIT_FSIZE)[0]}
for name, path in {"repo": REPO, "reference": REPO + "/reference", "tests": REPO + "/tests", "private": PRIVATE}.items():
    seen[name] = os.path.exists(path)
try:
    socket.create_connection(("1.1.1.1", 80), timeout=2)
    seen["network"] = True
except OSError:
    seen["network"] = False
seen["mnist"] = sorted(os.listdir(os.path.join(os.getcwd(), "data")))
print(json.dumps(seen))
"""


@pytest.mark.skipif(not LINUX, reason="namespaces are Linux-only")
def test_the_launcher_confines_a_process(mnist_root):
    workspace = Workspace.create(mnist_root, slot=3990 + os.getpid() % 9)
    try:
        session = KernelSession(make_notebook([]), workspace, Limits(max_processes=100, max_file_mb=7), mnist_root, seed=0)
        spec = session._sandbox_spec()
        spec_path = workspace.private / "spec.json"
        spec.write(spec_path)
        code = PROBE.replace("REPO", repr(str(REPO))).replace("PRIVATE", repr(str(workspace.private)))
        done = subprocess.run([sys.executable, "-m", "graders.sandbox", str(spec_path), "--", sys.executable, "-c", code],
                              cwd=REPO, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        seen = json.loads(done.stdout.strip().splitlines()[-1])
        applied = json.loads((workspace.private / "spec.applied.json").read_text())
        assert SandboxSpec.read(spec_path) == spec
    finally:
        workspace.cleanup()
    assert seen["cwd"] == str(workspace.workdir) and seen["fsize"] == 7 * 2**20 and seen["mnist"] == ["MNIST"]
    if namespaces_available():
        assert applied["new_root"] and applied["network_isolated"], applied
        assert not seen["network"] and not any(seen[k] for k in ("reference", "tests", "private"))
        assert set(seen["root"]) <= {"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc", "dev", "proc", "sys", "tmp",
                                     *{Path(p).parts[1] for p in spec.expose}, Path(spec.sandbox_root).parts[1]}
    if is_root():
        assert seen["uid"] == spec.uid and seen["nproc"] == 100


# ---------------------------------------------------------------------------------------------
# Issue 4, end to end through the `grade` command
# ---------------------------------------------------------------------------------------------
def test_grade_runs_past_a_crash_a_hang_and_a_kernel_death(tmp_path, capsys):
    nb = make_notebook([
        *CORRECT_2A,
        "undefined_name + 1",
        "after_crash = 1",
        "import os\nos._exit(1)",
        "after_death = 1",
        "while True:\n    pass",
        "after_hang = 1",
    ], assignment="csci145-ps6")
    path = write_notebook(nb, tmp_path / "student.ipynb")
    assert cli.main([str(path), "--seed", "7", "--cell-timeout", "4", "--no-report"]) == 0
    out = tmp_path / "student.graded"
    data = valid_results(out)
    grading = json.loads((out / "grading.json").read_text())
    issues = {i["cell"]: i for i in grading["execution"]["issues"]}
    assert issues[2]["status"] == "error" and "NameError: name 'undefined_name' is not defined" in issues[2]["summary"]
    assert issues[4]["status"] == "killed" and "exit code 1" in issues[4]["summary"] and issues[6]["status"] == "timeout"
    assert {"after_crash", "after_hang", "after_death"} <= set(grading["defined_names"])
    assert grading["execution"]["kernel_restarts"] == 1
    assert data["score"] == 5
    assert "Cell 3: error: NameError" in data["output"] and "re-run without that cell" in data["output"]
    assert "2A" in capsys.readouterr().out


def test_grade_on_a_file_that_is_not_a_notebook_exits_0_with_a_zero(tmp_path):
    path = tmp_path / "essay.ipynb"
    path.write_text("Dear grader, please find my answers below.")
    assert cli.main([str(path), "--assignment", "csci145-ps6", "--no-report"]) == 0
    data = valid_results(tmp_path / "essay.graded")
    assert data["score"] == 0 and "not a Jupyter notebook" in data["output"]
    assert all("Not graded" in test["output"] and "not a Jupyter notebook" not in test["output"] for test in data["tests"])


def test_grade_on_a_missing_file_exits_2_with_one_line(tmp_path, capsys):
    assert cli.main([str(tmp_path / "nowhere.ipynb")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nowhere.ipynb" in err and "Traceback" not in err
