"""A valid results.json for every submission, whatever it contains (issue 16.5, 17.7).

Hostile text (lone surrogates, NULs, terminal escapes, bare carriage returns, invalid UTF-8 bytes,
enormous strings, deeply nested JSON) must reach no file the grader writes in a form that breaks
it: results.json, grading.json, executed.ipynb, report.html, gradebook.csv, summary.html, the
terminal table, the Gradescope fallback. nbformat 3 notebooks and percent-format ``.py`` scripts
are graded; any other ``.py`` gets one message, once. Every results.json is validated against
the Gradescope JSON Schema of ``tests/test_autograder.py``.

Budget: about 5 s without a kernel; the three kernel-starting tests 10–40 s each.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import jsonschema
import nbformat
import pytest

from graders.autograder import FALLBACK_SCRIPT, autograder_config
from graders.choose import choose_notebook
from graders.checks import CheckResult, Outcome
from graders.grade import grade_submission, invalid_result, write_outputs
from graders.result import GradedObject, GradingResult
from graders.safetext import REPLACEMENT, TOO_DEEP, clean_data, clean_text, write_json_atomic, write_text_atomic
from graders.submission import _header_assignment, load_submission, parse_percent
from tests.conftest import fast_config
from tests.hostile_corpus import CORRECT_2A, notebook
from tests.test_autograder import GRADESCOPE_RESULTS_SCHEMA

HOSTILE = "\ud800\x00\x1b[2J\x07\rAll tests passed 90/90\udfff\x9b"
"""Every kind of trouble in one string: lone surrogates, NUL, a terminal escape, BEL, a bare CR, a C1 CSI."""


def strict_json(path: Path):
    """The file as strict JSON: UTF-8 (no surrogates), no NaN, parsed without Python's leniencies."""
    def refuse(constant):
        raise ValueError(constant)

    text = path.read_bytes().decode("utf-8")
    assert not any("\ud800" <= c <= "\udfff" for c in text)
    return json.loads(text, parse_constant=refuse)


def valid_results(out: Path) -> dict:
    path = out / "results.json" if out.is_dir() else out
    assert path.stat().st_size < 1_000_000 and not path.is_symlink()
    data = strict_json(path)
    jsonschema.validate(data, GRADESCOPE_RESULTS_SCHEMA)
    assert_clean(data)
    return data


def assert_clean(value) -> None:
    """No string in ``value`` holds a surrogate, a NUL or a control character other than tab and newline."""
    if isinstance(value, str):
        assert clean_text(value) == value, repr(value[:200])
    elif isinstance(value, dict):
        for key, item in value.items():
            assert_clean(key)
            assert_clean(item)
    elif isinstance(value, list):
        for item in value:
            assert_clean(item)


# ---------------------------------------------------------------------------------------------
# The choke points
# ---------------------------------------------------------------------------------------------
def test_clean_text_replaces_what_cannot_be_written_and_keeps_the_rest_readable():
    cleaned = clean_text("Ké 🐍 σ\t" + HOSTILE + "\nend")
    assert cleaned.startswith("Ké 🐍 σ\t") and cleaned.endswith("\nend") and "All tests passed 90/90" in cleaned
    assert cleaned.encode("utf-8").decode("utf-8") == cleaned
    assert "\x00" not in cleaned and "\x1b" not in cleaned and "\r" not in cleaned and REPLACEMENT in cleaned
    assert clean_text("a\r\nb") == "a\nb"
    assert len(clean_text("x" * 10_000, 100)) == 100 and clean_text("x" * 10_000, 100).endswith("(truncated)")
    lenient = clean_text("\x1b[31mred\x1b[0m\r50%\x00\ud800", lenient=True)  # notebook content: ANSI colours and \r stay
    assert lenient == f"\x1b[31mred\x1b[0m\r50%{REPLACEMENT}{REPLACEMENT}"


def test_clean_data_bounds_depth_and_makes_strict_json():
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    data = clean_data({"a\ud800": [float("nan"), float("inf"), 1.5, True, None], "deep": deep})
    assert data["a" + REPLACEMENT] == [None, None, 1.5, True, None]
    json.dumps(data, allow_nan=False).encode("utf-8")
    text = json.dumps(data, ensure_ascii=False)
    assert TOO_DEEP in text and text.count("[") < 100


def test_a_result_built_anywhere_is_clean_and_every_file_made_from_it_is_valid(tmp_path):
    from graders.gradebook import read_gradebook, row_from_result, write_gradebook
    from graders.summary_table import format_result

    config = replace(fast_config(), assignment="csci145-ps6", write_report=True)
    name = "sub\udcff\x00.ipynb"  # a file name with an invalid UTF-8 byte, as os.listdir gives it
    base = invalid_result(tmp_path / name, config, 1, "message " + HOSTILE + "x" * 200_000, 1.0, detail=HOSTILE)
    part = base.parts[0]
    check = CheckResult(name="c", part=part.id, description="d" + HOSTILE, outcome=Outcome.FAILED, score=float("nan"),
                        max_score=part.max_score, message=HOSTILE, expected=HOSTILE, got=HOSTILE * 3000, mistake=HOSTILE,
                        detail=HOSTILE)
    hostile_part = replace(part, checks=(check, *part.checks[1:]), warnings=(HOSTILE,), answer_markdown=HOSTILE,
                           graded_objects=(GradedObject("x", "bad\ud800name", "alias", HOSTILE),))
    result = replace(base, parts=(hostile_part, *base.parts[1:]), defined_names=(HOSTILE * 100,) * 10_000, status="graded")
    assert len(result.defined_names) == 2000 and all(len(n) <= 200 for n in result.defined_names)
    assert result.submission == f"sub{REPLACEMENT}{REPLACEMENT}.ipynb"
    assert len(result.messages[0]) <= 50_000 and result.parts[0].checks[0].got.endswith("(truncated)")
    out = tmp_path / "out"
    write_outputs(result, out, config)
    data = valid_results(out)
    assert "All tests passed 90/90" in data["tests"][0]["output"]  # readable, but on its own line, not over the score
    grading = strict_json(out / "grading.json")
    assert_clean(grading)
    again = GradingResult.from_dict(grading)  # batch grading reads it back
    assert again.parts[0].checks[0].message == result.parts[0].checks[0].message
    html = (out / "report.html").read_bytes().decode("utf-8")
    assert "\x00" not in html and "\x1b" not in html
    table = format_result(result, out)
    table.encode("utf-8")
    assert "\x1b" not in table and "\x00" not in table and "\r" not in table
    gradebook = tmp_path / "gradebook.csv"
    rows = [row_from_result(HOSTILE, result, name="=HYPERLINK(\"http://x\")" + HOSTILE, email="@" + HOSTILE)]
    write_gradebook(rows, gradebook)
    _, read = read_gradebook(gradebook)
    assert read[0]["name"].startswith("'=HYPERLINK") and read[0]["email"].startswith("'@") and "\x00" not in read[0]["id"]
    from graders.class_summary import write_class_summary

    write_class_summary(rows, {rows[0].id: result}, tmp_path / "summary.html")
    (tmp_path / "summary.html").read_bytes().decode("utf-8")


# ---------------------------------------------------------------------------------------------
# The atomic writer
# ---------------------------------------------------------------------------------------------
def test_the_atomic_writer_replaces_a_planted_symlink_and_never_follows_it(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").symlink_to(outside)
    (out / "grading.json").symlink_to(tmp_path / "does-not-exist")
    write_json_atomic(out / "results.json", {"score": 1, "text": HOSTILE})
    write_json_atomic(out / "grading.json", {"a": 1})
    assert outside.read_text() == "precious" and not (tmp_path / "does-not-exist").exists()
    assert not (out / "results.json").is_symlink() and strict_json(out / "results.json")["score"] == 1
    assert sorted(p.name for p in out.iterdir()) == ["grading.json", "results.json"]
    assert (out / "results.json").stat().st_mode & 0o777 == 0o644


def test_a_failure_half_way_leaves_the_old_file_and_no_partial_one(tmp_path, monkeypatch):
    target = tmp_path / "results.json"
    write_json_atomic(target, {"score": 5})
    before = target.read_bytes()

    def crash(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        write_text_atomic(target, json.dumps({"score": 0}) * 1000)
    assert target.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["results.json"]


# ---------------------------------------------------------------------------------------------
# Reading hostile files
# ---------------------------------------------------------------------------------------------
def hostile_notebook() -> nbformat.NotebookNode:
    """2A correct, then hostile text in sources, outputs, metadata, a heading, names and an exception."""
    nb = notebook([
        *CORRECT_2A,
        'raise Exception("\\ud800\\x00")',
        ("markdown", "## 2B \ud800 heading \x00 with NUL \x1b[2J MARKER-\xff-"),
        "globals()['bad\\ud800name\\x00'] = 1\nv\u00e9 = 2\nprint('\\ud800\\x00\\x07 printed')\n",
        "x = '\x00'  # a NUL in the source itself\n",
        "from IPython.display import display\ndisplay({'text/plain': '\\ud800\\x00', 'text/html': '<b>\\ud800</b>'}, raw=True)\n",
        "print('after')\n",
    ])
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", name="stdout", text="saved \ud800\x00 output")]
    nb.metadata["hostile\ud800"] = {"deep": json.loads("[" * 300 + "]" * 300)}
    return nb


def hostile_bytes() -> bytes:
    """The notebook as a file: JSON escapes for the surrogates and NULs, plus one byte that is not UTF-8."""
    raw = json.dumps(hostile_notebook(), ensure_ascii=False, indent=1).encode("utf-8", errors="surrogatepass")
    raw = raw.replace(b"\xed\xa0\x80", b"\\ud800")  # the surrogates as JSON escapes, as a real file holds them
    return raw.replace("MARKER-\xff-".encode(), b"MARKER-\xff-")  # an invalid UTF-8 byte (0xff) in a heading


def test_a_hostile_file_is_read_with_notes_and_nothing_unwritable_survives(tmp_path):
    path = tmp_path / "hostile.ipynb"
    path.write_bytes(hostile_bytes())
    submission = load_submission(path)
    text = json.dumps(submission.notebook, ensure_ascii=False) + json.dumps(submission.runnable, ensure_ascii=False)
    text.encode("utf-8")
    assert "\x00" not in text and "MARKER-\ufffd-" in text and "é" in text
    notes = " ".join(submission.notes)
    assert "1 byte that is not valid UTF-8" in notes and "replaced with \ufffd" in notes
    assert submission.runnable.cells[2].source == 'raise Exception("\\ud800\\x00")'  # escapes in source are code, kept


def test_deeply_nested_json_is_refused_with_one_sentence(tmp_path):
    path = tmp_path / "deep.ipynb"
    path.write_text('{"cells": [], "metadata": ' + "[" * 200_000 + "]" * 200_000 + "}")
    result = grade_submission(path, replace(fast_config(), assignment="csci145-ps6"), out_dir=tmp_path / "out")
    assert result.status == "invalid_submission" and "nested too deeply" in result.messages[0]
    valid_results(tmp_path / "out")


# ---------------------------------------------------------------------------------------------
# nbformat 3 and .py scripts
# ---------------------------------------------------------------------------------------------
def nbformat3_bytes() -> bytes:
    """An IPython 2 notebook: worksheets, heading cells, sources and outputs as lists of lines, pyout."""
    lines = CORRECT_2A[1].splitlines(keepends=True)
    cells = [
        {"cell_type": "heading", "level": 2, "metadata": {}, "source": ["2A · Sigmoid derivative"]},
        {"cell_type": "code", "collapsed": False, "input": lines, "language": "python", "metadata": {}, "prompt_number": 3,
         "outputs": [{"output_type": "stream", "stream": "stdout", "text": ["stale\n"]},
                     {"output_type": "pyout", "prompt_number": 3, "metadata": {}, "text": ["0.25"]}]},
    ]
    v3 = {"metadata": {"name": "hw6"}, "nbformat": 3, "nbformat_minor": 0, "worksheets": [{"metadata": {}, "cells": cells}]}
    return json.dumps(v3, indent=1).encode()


PERCENT_SCRIPT = (
    "# ---\n# jupyter:\n#   jupytext:\n#     formats: ipynb,py:percent\n#   nbgrade:\n#     assignment: csci145-ps6\n# ---\n\n"
    "# %% [markdown]\n# ## 2A · Sigmoid derivative\n#\n# The derivative is $\\sigma(1-\\sigma)$.\n\n"
    "# %%\n" + CORRECT_2A[1] + "\n\n"
    "# %% a titled cell\nvalue = sigmoid_derivative(0.0)\n# %pip install nothing  (a comment, not run)\nprint(value)\n\n"
    '#%% [md]\n"""\nA note in a string.\n"""\n'
)


def test_the_percent_parser_makes_markdown_and_code_cells():
    cells = parse_percent(PERCENT_SCRIPT)
    assert [kind for kind, _ in cells] == ["markdown", "code", "code", "markdown"]
    assert cells[0][1] == "## 2A · Sigmoid derivative\n\nThe derivative is $\\sigma(1-\\sigma)$."
    assert cells[1][1] == CORRECT_2A[1].rstrip("\n") and cells[3][1] == "A note in a string."
    assert _header_assignment(PERCENT_SCRIPT) == "csci145-ps6" and _header_assignment("# %%\nx = 1\n") is None
    assert _header_assignment("# ---\n# a: &a [*a]\n# ---\n") is None  # hostile YAML: one key is read, nothing walked
    assert parse_percent("import os\nprint(1)\n") is None
    assert parse_percent("# %%time is not a marker\nx = 1\n") is None
    assert parse_percent("setup = 1\n# %%\nx = 2\n") == [("code", "setup = 1"), ("code", "x = 2")]


def test_a_plain_py_file_gets_one_clear_message_once(tmp_path):
    path = tmp_path / "hw6.py"
    path.write_text("import numpy as np\n\ndef sigmoid_derivative(z):\n    return z\n")
    result = grade_submission(path, replace(fast_config(), assignment="csci145-ps6"), out_dir=tmp_path / "out")
    data = valid_results(tmp_path / "out")
    (message,) = result.messages
    assert result.status == "invalid_submission" and "renamed" not in message and "# %%" in message
    assert message.startswith("hw6.py is a Python script, not a Jupyter notebook")
    assert json.dumps(data, ensure_ascii=False).count("is a Python script") == 1 and len(data["tests"]) > 20
    grading = json.dumps(strict_json(tmp_path / "out" / "grading.json"), ensure_ascii=False)
    assert grading.count("is a Python script") == 1


def test_the_gradescope_autograder_picks_a_percent_script_and_explains_a_plain_one(tmp_path):
    submission = tmp_path / "submission"
    submission.mkdir()
    (submission / "hw6.py").write_text("import numpy as np\nprint(1)\n")
    (submission / "notes.txt").write_text("hello")
    choice = choose_notebook(submission, ("csci145-ps6",))
    assert choice.path is None and "`# %%`" in choice.message
    (submission / "hw6.py").write_text(PERCENT_SCRIPT)
    choice = choose_notebook(submission, ("csci145-ps6",))
    assert choice.path == submission / "hw6.py" and "percent format" in choice.message


def test_hostile_file_names_in_a_gradescope_submission_give_valid_results(tmp_path, capsys):
    from graders.gradescope_run import run_autograder

    root = tmp_path / "autograder"
    submission = root / "submission"
    submission.mkdir(parents=True)
    (submission / os.fsdecode(b"hw\xff\x1b[2J.ipynb")).write_bytes(b"not json \x00 \xff")
    (submission / os.fsdecode(b"notes\xfe\x00.txt".replace(b"\x00", b""))).write_text("hello")
    data = run_autograder(root, autograder_config("csci145-ps6"))
    written = valid_results(root / "results" / "results.json")
    assert written["score"] == data["score"] == 0 and "not valid JSON" in written["output"]
    assert "hw\ufffd\ufffd[2J.ipynb" in written["output"] and written["output"].count("not valid JSON") == 1
    stdout = capsys.readouterr().out
    assert "\x1b" not in stdout and "hw" in stdout


# ---------------------------------------------------------------------------------------------
# The Gradescope fallback (standard library only)
# ---------------------------------------------------------------------------------------------
PARTIAL = b'{"score": 90.0, "execution_time": 3.0, "output": "ok", "tests": [{"name": "1A \xc2\xb7 x", "sco'


@pytest.mark.parametrize("written", [
    "partial", "nan", "surrogate_escape", "string_score", "extra_key", "deep", "not_utf8", "symlink", "directory",
])
def test_the_fallback_replaces_whatever_invalid_file_the_harness_left(written, tmp_path):
    script = tmp_path / "fallback_results.py"
    script.write_text(FALLBACK_SCRIPT)
    config = tmp_path / "autograder_config.json"
    config.write_text(autograder_config("csci145-ps6").to_json())
    results = tmp_path / "results" / "results.json"
    results.parent.mkdir()
    good = {"score": 1, "execution_time": 1, "output": "o", "tests": [{"name": "1A · x", "score": 1, "max_score": 2}]}
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps(good))
    content = {
        "partial": PARTIAL,
        "nan": json.dumps({**good, "score": float("nan")}).encode(),
        "surrogate_escape": json.dumps({**good, "output": "\ud800"}).encode(),
        "string_score": json.dumps({**good, "score": "90"}).encode(),
        "extra_key": json.dumps({**good, "grade": "A"}).encode(),
        "deep": json.dumps({**good, "extra_data": {"x": "DEEP"}}).replace('"DEEP"', "[" * 5000 + "]" * 5000).encode(),
        "not_utf8": json.dumps(good).encode().replace(b'"o"', b'"\xff"'),
    }.get(written)
    if content is not None:
        results.write_bytes(content)
    elif written == "symlink":
        results.symlink_to(outside)
    else:
        results.mkdir()
    log = tmp_path / "log"
    log.write_bytes(b"Traceback \xff\xfe \x00 killed\n")
    run = subprocess.run([sys.executable, str(script), "--results", str(results), "--config", str(config), "--status", "124",
                          "--log", str(log), "--elapsed", "12"], capture_output=True, timeout=60)
    if written == "directory":  # os.replace cannot put a file over a directory: the shell's last resort does
        assert run.returncode != 0
        return
    assert run.returncode == 0, run.stderr.decode(errors="replace")
    data = valid_results(results)
    assert data["score"] == 0 and "time limit" in data["output"] and sum(t["max_score"] for t in data["tests"]) == 90
    assert json.loads(outside.read_text()) == good and not results.is_symlink()
    assert b"killed" in run.stdout and sorted(p.name for p in results.parent.iterdir()) == ["results.json"]


def test_the_fallback_keeps_a_valid_file(tmp_path):
    script = tmp_path / "fallback_results.py"
    script.write_text(FALLBACK_SCRIPT)
    results = tmp_path / "results.json"
    good = {"score": 3.5, "execution_time": 1, "output": "Ké 🐍", "visibility": "visible", "stdout_visibility": "hidden",
            "extra_data": {"seed": 1}, "tests": [{"name": "1A · x", "score": 3.5, "max_score": 5, "status": "passed",
                                                  "output": "", "tags": ["1A"], "visibility": "visible"}]}
    results.write_text(json.dumps(good, ensure_ascii=False), encoding="utf-8")
    before = results.read_bytes()
    run = subprocess.run([sys.executable, str(script), "--results", str(results), "--config", str(tmp_path / "missing"),
                          "--status", "0", "--log", "", "--elapsed", ""], capture_output=True, timeout=60)
    assert run.returncode == 0 and results.read_bytes() == before and run.stdout == b""


def fake_autograder_root(tmp_path: Path) -> Path:
    """/autograder with run_autograder, the fallback and the config as the zip holds them (no wheel needed)."""
    from graders.autograder import CONFIG_FILE, FALLBACK_FILE, run_script

    config = autograder_config("csci145-ps6")
    root = tmp_path / "autograder"
    (root / "source").mkdir(parents=True)
    (root / "submission").mkdir()
    (root / "submission" / "hw6.ipynb").write_text(json.dumps(notebook(["x = 1"])))
    (root / "source" / CONFIG_FILE).write_text(config.to_json())
    (root / "source" / FALLBACK_FILE).write_text(FALLBACK_SCRIPT)
    (root / "run_autograder").write_text(run_script(config))
    (root / "run_autograder").chmod(0o755)
    return root


def run_with_harness(tmp_path: Path, script: str) -> tuple[subprocess.CompletedProcess, Path]:
    """run_autograder in a fake /autograder whose harness is the shell ``script`` (Gradescope's view of it)."""
    root = fake_autograder_root(tmp_path)
    harness = tmp_path / "python"
    harness.write_text(script)
    harness.chmod(0o755)
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "NBGRADE_PYTHON": str(harness)}
    run = subprocess.run([str(root / "run_autograder")], env=env, capture_output=True, text=True, timeout=120, cwd=root)
    assert run.returncode == 0, run.stderr[-2000:]
    return run, root / "results" / "results.json"


def test_run_autograder_writes_valid_results_when_the_harness_dies_mid_write(tmp_path):
    run, results = run_with_harness(
        tmp_path, "#!/bin/sh\nprintf '%s' '{\"score\": 90, \"tests\": [{\"name\": \"1A' > \"$AUTOGRADER_ROOT/results/results.json\"\n"
                  "echo 'grader: killed while writing' >&2\nkill -9 $$\n")
    data = valid_results(results)
    assert data["score"] == 0 and "was killed" in data["output"] and "killed while writing" in run.stdout
    assert sum(t["max_score"] for t in data["tests"]) == 90


def test_run_autograder_replaces_complete_but_invalid_results(tmp_path):
    _run, results = run_with_harness(
        tmp_path, "#!/bin/sh\nprintf '%s' '{\"score\": NaN, \"execution_time\": 1, \"output\": \"\\ud800\", \"tests\": []}' "
                  "> \"$AUTOGRADER_ROOT/results/results.json\"\nexit 0\n")
    data = valid_results(results)
    assert data["score"] == 0 and "wrote no valid result" in data["output"]


# ---------------------------------------------------------------------------------------------
# Kernel-starting: hostile text through a real grading, nbformat 3, a percent script
# ---------------------------------------------------------------------------------------------
def graded(tmp_path: Path, name: str, data: bytes, **overrides):
    path = tmp_path / name
    path.write_bytes(data)
    out = tmp_path / (path.stem + ".graded")
    config = replace(fast_config(write_report=True, cell_timeout=30, total_timeout=120, probe_timeout=30), **overrides)
    return grade_submission(path, config, out_dir=out), out


def test_hostile_text_in_cells_outputs_exceptions_headings_and_names_still_gives_valid_files(tmp_path):
    from graders.summary_table import format_result

    result, out = graded(tmp_path, "hostile.ipynb", hostile_bytes())
    assert result.status == "graded", result.instructor_detail[-2000:]
    data = valid_results(out)
    assert result.part("2A").score == 5, data["output"]
    assert_clean(strict_json(out / "grading.json"))
    executed = nbformat.reads((out / "executed.ipynb").read_bytes().decode("utf-8"), as_version=4)
    assert any("after" in json.dumps(cell.get("outputs", [])) for cell in executed.cells)  # the run went on
    assert any("bad" in name and "name" in name for name in result.defined_names)
    assert_clean(list(result.defined_names))
    assert "1 byte that is not valid UTF-8" in data["output"]
    (out / "report.html").read_bytes().decode("utf-8")
    format_result(result, out).encode("utf-8")


def test_an_nbformat_3_notebook_is_converted_and_graded(tmp_path):
    result, out = graded(tmp_path, "hw6.ipynb", nbformat3_bytes(), assignment="csci145-ps6")
    data = valid_results(out)
    assert result.status == "graded" and result.part("2A").score == 5, data["output"]
    assert "nbformat 3" in data["output"] and "converted to nbformat 4" in data["output"]


def test_a_percent_format_script_is_graded_as_a_notebook(tmp_path):
    result, out = graded(tmp_path, "hw6.py", PERCENT_SCRIPT.encode())  # the assignment from the Jupytext header
    data = valid_results(out)
    assert result.status == "graded" and result.part("2A").score == 5, data["output"]
    assert "percent format" in data["output"] and result.execution.issues == ()
    executed = nbformat.reads((out / "executed.ipynb").read_text(encoding="utf-8"), as_version=4)
    assert any("0.25" in json.dumps(cell.get("outputs", [])) for cell in executed.cells)
