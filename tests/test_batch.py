"""Batch grading: a folder of mixed submissions and a Gradescope export in; gradebook, summary and per-submission files out.

The notebooks are tiny csci145-ps6 submissions that define only ``sigmoid_derivative`` (2A, 5
autograded points) and ``make_mlp`` (2B, 15 points), so that each grades in a few seconds; every
other part scores 0 ("not defined"). Budget for this file: about 100 s on 2 cores.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import nbformat
import pytest

from tests.conftest import fast_config, make_notebook, write_notebook
from graders.batch import CRASH_MESSAGE, MANIFEST_NAME, grade_batch
from graders.collect import (
    BatchInputError, METADATA_NAME, collect_submissions, extract_zip_safely, read_metadata, safe_id, submitters,
)
from graders.gradebook import MAX_ROW_ID, GradebookRow, read_gradebook, write_gradebook
from graders.progress import BatchProgress

ASSIGNMENT = "csci145-ps6"
SIGMOID = "import torch\ndef sigmoid_derivative(z):\n    s = torch.sigmoid(torch.as_tensor(z))\n    return s * (1 - s)"
SIGMOID_SIGN_ERROR = "import torch\ndef sigmoid_derivative(z):\n    s = torch.sigmoid(torch.as_tensor(z))\n    return s * (1 + s)"
MLP = """import torch.nn as nn
def make_mlp(num_layers, d, m, k):
    if num_layers == 1:
        return nn.Linear(d, k, bias=False)
    layers = [nn.Linear(d, m, bias=False), nn.ReLU()]
    for _ in range(num_layers - 2):
        layers += [nn.Linear(m, m, bias=False), nn.ReLU()]
    layers.append(nn.Linear(m, k, bias=False))
    return nn.Sequential(*layers)"""
MLP_RELU_AFTER_LAST = MLP.replace("    return nn.Sequential(*layers)", "    return nn.Sequential(*layers, nn.ReLU())").replace(
    "        return nn.Linear(d, k, bias=False)", "        return nn.Sequential(nn.Linear(d, k, bias=False), nn.ReLU())")
HANG = "import time\nwhile True:\n    time.sleep(1)"
KERNEL_DIES = "import os\nos._exit(1)"

SUBMISSIONS: dict[str, list[str]] = {
    "good": [SIGMOID, MLP],
    "section_b/good_too": [SIGMOID, MLP],
    "sign_error": [SIGMOID_SIGN_ERROR, MLP],
    "relu_after_last": [SIGMOID, MLP_RELU_AFTER_LAST],
    "raises": [SIGMOID, "1 / 0", MLP],
    "kernel_dies": [SIGMOID, KERNEL_DIES, MLP],
    "hangs": [SIGMOID, HANG],
}
"""Notebooks that run; the folder also holds three that cannot be graded (see :func:`write_mixed_folder`)."""


def batch_config(**overrides):
    """Short limits: a hanging cell is interrupted after 6 s; generous totals so CI load does not flip statuses."""
    return fast_config(cell_timeout=overrides.pop("cell_timeout", 6), total_timeout=overrides.pop("total_timeout", 150),
                       probe_timeout=overrides.pop("probe_timeout", 60), seed=overrides.pop("seed", None), **overrides)


def write_submission(folder: Path, name: str, cells: list[str]) -> Path:
    path = folder / f"{name}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_notebook(make_notebook(cells, assignment=ASSIGNMENT), path)


def write_mixed_folder(folder: Path, names: tuple[str, ...] | None = None) -> Path:
    """The 10 mixed submissions: 7 that run (correct, wrong, raising, crashing, hanging) and 3 that are not gradable."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, cells in SUBMISSIONS.items():
        if names is None or name in names:
            write_submission(folder, name, cells)
    if names is None or "not_json" in names:
        (folder / "not_json.ipynb").write_text("import torch\nprint('a script renamed to .ipynb')\n")
    if names is None:
        write_notebook(make_notebook([("markdown", "# only words")], assignment=ASSIGNMENT), folder / "no_code.ipynb")
        r_notebook = make_notebook(["x <- 1"])
        r_notebook.metadata["kernelspec"] = {"name": "ir", "display_name": "R", "language": "R"}
        write_notebook(r_notebook, folder / "r_kernel.ipynb")
        (folder / ".ipynb_checkpoints").mkdir()
        write_submission(folder / ".ipynb_checkpoints", "good-checkpoint", [SIGMOID, MLP])
    return folder


def rows_by_id(gradebook: Path) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    maxima, rows = read_gradebook(gradebook)
    return maxima, {row["id"]: row for row in rows}


# --------------------------------------------------------------------------------------- end to end
def test_mixed_folder_gives_complete_gradebook_summary_and_resumes(tmp_path):
    source = write_mixed_folder(tmp_path / "submissions")
    out = tmp_path / "submissions.graded"
    result = grade_batch(source, out, batch_config(), jobs=2, force=False, stream=io.StringIO(), tty=False)

    maxima, rows = rows_by_id(out / "gradebook.csv")
    assert maxima["id"] == MAX_ROW_ID and maxima["total"] == "90" and maxima["2A"] == "5" and maxima["2B"] == "15"
    assert set(rows) == {"good", "section_b__good_too", "sign_error", "relu_after_last", "raises", "kernel_dies", "hangs",
                         "not_json", "no_code", "r_kernel"}
    for ok in ("good", "section_b__good_too", "raises", "kernel_dies"):
        assert (rows[ok]["2A"], rows[ok]["2B"], rows[ok]["total"], rows[ok]["status"]) == ("5", "15", "20", "graded"), ok
    assert float(rows["sign_error"]["2A"]) < 5 and rows["sign_error"]["2B"] == "15"
    assert rows["relu_after_last"]["2A"] == "5" and float(rows["relu_after_last"]["2B"]) < 15
    assert (rows["hangs"]["2A"], rows["hangs"]["2B"], rows["hangs"]["status"]) == ("5", "0", "graded")
    for bad in ("not_json", "no_code", "r_kernel"):
        assert (rows[bad]["status"], rows[bad]["total"]) == ("invalid_submission", "0"), bad
    assert all(row["host"] and float(row["seconds"]) >= 0 for row in rows.values())

    for item_id in rows:
        assert (out / item_id / "results.json").is_file() and (out / item_id / "grading.json").is_file(), item_id
    graded = json.loads((out / "kernel_dies" / "grading.json").read_text())
    assert graded["execution"]["kernel_restarts"] == 1 and graded["seed"] == result.seed
    assert "not valid JSON" in json.loads((out / "not_json" / "results.json").read_text())["output"]

    summary = (out / "summary.html").read_text()
    assert "<svg" in summary and "<script" not in summary and "http://" not in summary and "https://" not in summary
    assert "sigmoid_derivative_matches_autograd" in summary and "the sign inside should be minus" in summary  # the catalogued mistake, counted
    assert 'href="not_json/' in summary and "Failing submissions" in summary

    # Resumable: nothing changed, nothing regraded; one notebook changed, only it is regraded, with the recorded seed.
    again = grade_batch(source, out, batch_config(), jobs=2, force=False, stream=io.StringIO(), tty=False)
    assert (again.graded, again.skipped, again.seed) == (0, 10, result.seed)
    assert rows_by_id(out / "gradebook.csv")[1] == rows
    write_submission(source, "sign_error", [SIGMOID, MLP])
    fixed = grade_batch(source, out, batch_config(), jobs=2, force=False, stream=io.StringIO(), tty=False)
    assert (fixed.graded, fixed.skipped) == (1, 9)
    assert rows_by_id(out / "gradebook.csv")[1]["sign_error"]["total"] == "20"
    assert json.loads((out / "sign_error" / "grading.json").read_text())["seed"] == result.seed


def test_gradescope_export_zip_reads_names_and_grades_every_folder(tmp_path):
    export = tmp_path / "assignment_4242_export"
    write_submission(export / "submission_1001", "csci145-ps6", [SIGMOID, MLP])
    (export / "submission_1001" / "notes.txt").write_text("not a notebook")
    write_submission(export / "submission_1001" / ".ipynb_checkpoints", "csci145-ps6-checkpoint", [SIGMOID_SIGN_ERROR])
    (export / "submission_1002").mkdir()
    (export / "submission_1002" / "hw.ipynb").write_text("{ not json")
    (export / "submission_1003").mkdir()
    (export / "submission_1003" / "solution.py").write_text("print(1)")
    (export / METADATA_NAME).write_text(GRADESCOPE_METADATA)
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(export.rglob("*")):
            zf.write(path, path.relative_to(tmp_path).as_posix())

    out = tmp_path / "graded"
    result = grade_batch(archive, out, batch_config(), jobs=2, force=False, stream=io.StringIO(), tty=False)

    assert result.kind == "gradescope-zip"
    _, rows = rows_by_id(out / "gradebook.csv")
    assert set(rows) == {"submission_1001", "submission_1002", "submission_1003"}
    group = rows["submission_1001"]
    assert group["name"] == "Ada <b>Lovelace</b>; Charles Babbage"
    assert group["email"] == "ada@example.edu; charles@example.edu"
    assert (group["total"], group["status"]) == ("20", "graded")  # the checkpoint copy (a sign error) was not graded
    chosen = json.loads((out / "submission_1001" / "results.json").read_text())["output"]
    assert chosen.count("Graded `csci145-ps6.ipynb`.") == 1  # the sentence Gradescope's run says (graders/choose.py)
    assert (rows["submission_1002"]["status"], rows["submission_1002"]["name"]) == ("invalid_submission", "Grace Hopper")
    assert rows["submission_1003"]["status"] == "invalid_submission"
    output = json.loads((out / "submission_1003" / "results.json").read_text())["output"]
    assert "No Jupyter notebook was found in your submission (solution.py)" in output and "`# %%`" in output
    summary = (out / "summary.html").read_text()
    assert "Ada &lt;b&gt;Lovelace&lt;/b&gt;" in summary and "<b>Lovelace" not in summary


GRADESCOPE_METADATA = """\
submission_1001:
  :submitters:
  - :name: Ada <b>Lovelace</b>
    :sid: '1815'
    :email: ada@example.edu
  - :name: Charles Babbage
    :sid: '1791'
    :email: charles@example.edu
  :created_at: 2026-03-01 12:00:00.123456789 -08:00
  :score: !ruby/object:BigDecimal 18:0.2e2
  :history: []
submission_1002:
  :submitters:
  - :name: Grace Hopper
    :sid: '1906'
    :email: grace@example.edu
  :created_at: 2026-03-02 09:30:00.000000000 -08:00
submission_1003:
  :submitters:
  - :name: Alan Turing
    :email: alan@example.edu
"""


def test_worker_killed_at_its_hard_limit_gives_a_crashed_row_and_no_leftover_process(tmp_path, monkeypatch):
    import psutil

    import graders.pool

    source = write_mixed_folder(tmp_path / "subs", names=("hangs", "good"))
    monkeypatch.setattr(graders.pool, "hard_timeout", lambda limits: 15.0)  # the hanging cell would run for 100 s
    seen: set[int] = set()
    running = threading.Event()
    running.set()

    def watch() -> None:
        while running.is_set():
            try:
                seen.update(p.pid for p in psutil.Process().children(recursive=True))
            except psutil.Error:
                pass
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    out = tmp_path / "out"
    grade_batch(source, out, batch_config(cell_timeout=100), jobs=1, force=False, stream=io.StringIO(), tty=False)
    running.clear()
    watcher.join()

    _, rows = rows_by_id(out / "gradebook.csv")
    assert rows["hangs"]["status"] == "crashed" and rows["hangs"]["total"] == "0"
    assert (rows["good"]["status"], rows["good"]["total"]) == ("graded", "20")  # by the replacement worker
    assert CRASH_MESSAGE in json.loads((out / "hangs" / "results.json").read_text())["output"]
    assert "hard limit" in json.loads((out / "hangs" / "grading.json").read_text())["instructor_detail"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie" for pid in seen):
        time.sleep(0.2)
    alive = [pid for pid in seen if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
    assert len(seen) >= 3 and not alive  # two workers and at least one kernel were seen, none survives


def test_force_regrades_and_a_crashed_row_is_retried(tmp_path):
    source = write_mixed_folder(tmp_path / "subs", names=("not_json",))
    out = tmp_path / "out"
    first = grade_batch(source, out, batch_config(seed=7), jobs=1, force=False, stream=io.StringIO(), tty=False)
    assert (first.graded, first.seed) == (1, 7)
    assert grade_batch(source, out, batch_config(seed=7), jobs=1, force=False, stream=io.StringIO(), tty=False).graded == 0
    assert grade_batch(source, out, batch_config(seed=7), jobs=1, force=True, stream=io.StringIO(), tty=False).graded == 1
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    manifest["submissions"]["not_json"]["row"]["status"] = "crashed"
    (out / MANIFEST_NAME).write_text(json.dumps(manifest))
    assert grade_batch(source, out, batch_config(seed=7), jobs=1, force=False, stream=io.StringIO(), tty=False).graded == 1
    assert grade_batch(source, out, batch_config(seed=8), jobs=1, force=False, stream=io.StringIO(), tty=False).graded == 1


# --------------------------------------------------------------------------------------- units
def test_zip_with_path_traversal_or_absolute_path_is_refused(tmp_path):
    for bad in ("../evil.ipynb", "/etc/evil.ipynb", "a/../../evil.ipynb", "C:/evil.ipynb"):
        archive = tmp_path / "bad.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            zf.writestr(bad, "{}")
        with pytest.raises(BatchInputError, match="unsafe path"):
            extract_zip_safely(archive, tmp_path / "x")
    assert not (tmp_path / "evil.ipynb").exists()


def test_zip_symlinks_and_other_files_are_skipped_and_oversize_notebooks_get_a_row(tmp_path, monkeypatch):
    import graders.collect

    archive = tmp_path / "subs.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        link = zipfile.ZipInfo("link.ipynb")
        link.external_attr = (0o120777 << 16)
        zf.writestr(link, "/etc/passwd")
        zf.writestr("run.sh", "rm -rf /")
        zf.writestr("__MACOSX/._a.ipynb", "junk")
        zf.writestr("big.ipynb", "x" * 5000)
        zf.writestr("a.ipynb", nbformat.writes(make_notebook([SIGMOID], assignment=ASSIGNMENT)))
    monkeypatch.setattr(graders.collect, "MAX_SUBMISSION_BYTES", 4096)
    batch = collect_submissions(archive)
    try:
        extracted = sorted(p.relative_to(batch.scratch).as_posix() for p in batch.scratch.rglob("*") if p.is_file())
        assert extracted == ["a.ipynb", "big.ipynb"]
        items = {item.id: item for item in batch.items}
        assert items["a"].path is not None and len(items["a"].sha256) == 64
        assert items["big"].path is None and "more than" in (items["big"].problem or "")
    finally:
        batch.cleanup()
    assert not batch.scratch.exists()


def test_cli_reports_an_unreadable_zip_in_one_line(tmp_path, capsys):
    from graders.cli import main

    (tmp_path / "subs.zip").write_bytes(b"PK\x03\x04 not really a zip")
    assert main([str(tmp_path / "subs.zip")]) == 2
    assert "not a" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([str(empty), "--out", str(tmp_path / "o")]) == 2
    assert "no .ipynb" in capsys.readouterr().err


def test_gradescope_metadata_with_ruby_tags_is_read(tmp_path):
    path = tmp_path / METADATA_NAME
    path.write_text(GRADESCOPE_METADATA)
    metadata = read_metadata(path)
    assert submitters(metadata["submission_1001"])["sid"] == "1815; 1791"
    assert submitters(metadata["submission_1003"]) == {"name": "Alan Turing", "email": "alan@example.edu", "sid": ""}
    assert submitters({"users": [{"name": "Per-folder", "email": "p@example.edu"}]})["name"] == "Per-folder"
    path.write_text(":\n  - [unbalanced")
    assert read_metadata(path) == {}


def test_ids_are_filesystem_safe_and_unique(tmp_path):
    assert safe_id("week 3/Ann's nb") == "week_3__Ann_s_nb"
    assert "/" not in safe_id("../../etc") and not safe_id("../../etc").startswith(".")
    for name in ("a b", "a_b"):
        write_submission(tmp_path, name, [SIGMOID])
    ids = [item.id for item in collect_submissions(tmp_path).items]
    assert len(ids) == len(set(ids)) == 2 and "a_b" in ids


def test_gradebook_has_a_row_of_maxima_and_zero_for_unreadable_notebooks(tmp_path):
    rows = [
        GradebookRow("b", "Bea", "b@x.edu", "csci145-ps6", 17.5, 90, {"2A": 2.5, "2B": 15}, {"2A": 5, "2B": 15}, "graded", 3.21, "h1"),
        GradebookRow("a", "", "", "unknown", 0, 0, {}, {}, "invalid_submission", 0.0, "h1"),
    ]
    write_gradebook(rows, tmp_path / "gradebook.csv")
    lines = (tmp_path / "gradebook.csv").read_text().splitlines()
    assert lines[0] == "id,name,email,total,2A,2B,status,seconds,host"
    assert lines[1] == f"{MAX_ROW_ID},,,90,5,15,,,"
    assert lines[2:] == ["a,,,0,0,0,invalid_submission,0.0,h1", "b,Bea,b@x.edu,17.5,2.5,15,graded,3.2,h1"]


def test_progress_is_a_bar_on_a_terminal_and_lines_otherwise():
    lines = io.StringIO()
    progress = BatchProgress(3, skipped=1, stream=lines, tty=False)
    progress.start()
    progress.update("alice", 20, 90, "graded", 4.0)
    progress.finish()
    text = lines.getvalue().splitlines()
    assert text[0] == "grading 2 of 3 submissions (1 already graded, skipped)"
    assert text[1].startswith("[1/2] alice: 20/90 graded in 4.0 s, ETA ")

    bar = io.StringIO()
    progress = BatchProgress(2, stream=bar, tty=True)
    progress.update("alice", 20, 90, "graded", 4.0)
    progress.update("bob", 10, 90, "crashed", 1.0)
    progress.finish()
    assert bar.getvalue().count("\r[") == 2 and "1/2 · mean 20.0/90" in bar.getvalue() and "ETA" in bar.getvalue()
    assert "2/2 · mean 15.0/90" in bar.getvalue() and "1 not graded cleanly" in bar.getvalue()


def test_batch_modules_do_not_import_dask():
    code = "import sys, graders.cli, graders.batch, graders.pool; assert not [m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')]"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


def test_default_out_dir_is_beside_the_input(tmp_path):
    from graders.batch import default_out_dir

    (tmp_path / "week3").mkdir()
    (tmp_path / "week3.zip").write_bytes(b"")
    assert default_out_dir(tmp_path / "week3") == tmp_path / "week3.graded"
    assert default_out_dir(tmp_path / "week3.zip") == tmp_path / "week3.graded"


def test_gradescope_export_with_metadata_in_each_folder_is_recognised(tmp_path):
    for number, name in ((1, "Ann"), (2, "Bo")):
        folder = tmp_path / "export" / f"submission_{number}"
        write_submission(folder, "hw", [SIGMOID])
        (folder / METADATA_NAME).write_text(f":submitters:\n- :name: {name}\n  :email: {name.lower()}@example.edu\n")
    batch = collect_submissions(tmp_path / "export")
    assert batch.kind == "gradescope"
    assert [(i.id, i.name, i.email) for i in batch.items] == [
        ("submission_1", "Ann", "ann@example.edu"), ("submission_2", "Bo", "bo@example.edu")]
