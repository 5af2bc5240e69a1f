"""The command line and what a new user meets first (issue 17, items 4, 5, 6, 8, 9).

Everything here runs without a kernel except the one test that grades a notebook against the
wrong assignment (about 30 s): the browser search runs on a fake file system, the batch stops
before any kernel starts, and the PDF warnings are checked with no browser at all.
"""

from __future__ import annotations

import fnmatch
import json
import re
import zipfile
from pathlib import Path

import nbformat
import pytest

from graders import cli
from graders.autograder import GRADESCOPE_DEFAULT_MEMORY_MB, autograder_config, instructor_readme
from graders.cli import main, with_command
from graders.kernel.naming import name_relates
from graders.parts import assignment_mismatch
from graders.pdf import BrowserHost, find_browser, output_warnings
from graders.registry import assignment_ids, get_assignment
from tests.conftest import REFERENCE_NOTEBOOKS, REPO, make_notebook, write_notebook

README = REPO / "README.md"
CONTRACT = REPO / "docs" / "contract.md"


def built_in_ids() -> tuple[str, ...]:
    """The assignments this project registers itself (its pyproject.toml), which README.md and docs/contract.md
    describe; a course's own distribution installed beside it is documented by that distribution."""
    from graders.bundle import harness_distribution

    return tuple(sorted(a for a, _ in harness_distribution().assignments))


def reference(assignment: str) -> nbformat.NotebookNode:
    return nbformat.read(str(REFERENCE_NOTEBOOKS / f"{assignment}.ipynb"), as_version=4)


# ---------------------------------------------------------------------------------------------
# 6. One command line
# ---------------------------------------------------------------------------------------------
def test_grade_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    listed = capsys.readouterr().out
    for command in ("grade", "pdf", "student", "gradescope", "data", "help"):
        assert re.search(rf"^\s+{command}\b", listed, re.M), command
    assert main(["help"]) == 0 and "gradescope" in capsys.readouterr().out
    assert main(["help", "pdf"]) == 0
    pdf_help = capsys.readouterr().out
    assert pdf_help.startswith("usage: grade pdf") and "--execute" in pdf_help and "--chromium" in pdf_help


def test_usage_errors_are_one_line_with_status_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["gradescope", "no-such-assignment", "-o", str(tmp_path / "a.zip")])
    assert exit_.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("grade gradescope: error:")
    assert main([str(tmp_path / "missing.ipynb")]) == 2
    assert capsys.readouterr().err == f"grade: error: {tmp_path / 'missing.ipynb'}: no such file or directory\n"


def test_a_path_is_graded_and_a_command_name_is_a_command_unless_a_folder_of_notebooks_has_its_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert with_command(["x.ipynb"]) == ["grade", "x.ipynb"]
    assert with_command(["--public", "x.ipynb"]) == ["grade", "--public", "x.ipynb"]
    assert with_command(["data"]) == ["data"]
    (tmp_path / "data" / "MNIST" / "raw").mkdir(parents=True)
    (tmp_path / "data" / "MNIST" / "raw" / "train-images-idx3-ubyte").write_bytes(b"\0" * 16)
    assert with_command(["data"]) == ["data"], "./data holding only MNIST: the data command"
    (tmp_path / "data" / "alice").mkdir()
    write_notebook(make_notebook(["x = 1"]), tmp_path / "data" / "alice" / "hw.ipynb")
    assert with_command(["data"]) == ["grade", "data"], "./data holding notebooks: graded"
    assert with_command(["pdf"]) == ["pdf"]


def test_a_class_folder_named_data_is_graded_as_a_batch(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    write_notebook(make_notebook(["x = 1"]), tmp_path / "data" / "alice.ipynb")
    seen = {}

    def fake_batch(path, options, config):
        seen.update(path=path, options=options, config=config)
        return 0

    monkeypatch.setattr(cli, "run_grade_batch", fake_batch)
    assert main(["data", "-j", "1", "--assignment", "csci145-ps6", "--force-assignment"]) == 0
    assert seen["path"] == Path("data") and seen["config"].assignment == "csci145-ps6"
    options = seen["options"]
    assert type(options).__name__ == "BatchOptions" and options.jobs == 1 and options.force_assignment
    with pytest.raises(Exception):
        options.jobs = 2  # frozen


def test_the_help_quotes_the_libraries_defaults_without_importing_them(capsys):
    from graders.autograder import GRADESCOPE_DEFAULT_TIMEOUT_MINUTES
    from graders.pdf import CHROMIUM_ENV

    main(["help", "pdf"])
    assert f"${CHROMIUM_ENV}" in capsys.readouterr().out
    main(["help", "gradescope"])
    assert f"(default {GRADESCOPE_DEFAULT_TIMEOUT_MINUTES})" in " ".join(capsys.readouterr().out.split())


def test_no_module_but_the_cli_parses_arguments():
    for module in ("pdf", "bundle", "batch", "autograder"):
        source = (REPO / "graders" / f"{module}.py").read_text()
        head = source.split("FALLBACK_SCRIPT = ")[0] if module == "autograder" else source
        assert "argparse" not in head and "def cli(" not in source, module


# ---------------------------------------------------------------------------------------------
# 5. --assignment never silently zeroes a submission
# ---------------------------------------------------------------------------------------------
def test_metadata_or_headings_of_another_assignment_contradict_the_given_one():
    csci = reference("csci145-ps6")
    declared = assignment_mismatch(csci, "ece685d-hw2")
    assert declared is not None and declared.detected == "csci145-ps6" and "metadata" in declared.evidence
    assert declared.message.startswith("WARNING") and "wrong assignment" in declared.message
    assert assignment_mismatch(csci, "csci145-ps6") is None
    csci.metadata.pop("nbgrade")
    by_names = assignment_mismatch(csci, "ece685d-hw2")
    assert by_names is not None and by_names.detected == "csci145-ps6" and "gaussian_kernel" in by_names.evidence
    assert assignment_mismatch(make_notebook(["x = 1"]), "ece685d-hw2") is None, "a notebook that says nothing"


def test_a_batch_with_a_contradicting_assignment_stops_before_grading(tmp_path, capsys):
    subs = tmp_path / "subs"
    subs.mkdir()
    for name in ("alice", "bob"):
        (subs / f"{name}.ipynb").write_bytes((REFERENCE_NOTEBOOKS / "csci145-ps6.ipynb").read_bytes())
    out = tmp_path / "out"
    assert main([str(subs), "--assignment", "ece685d-hw2", "--out", str(out), "-j", "1"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "contradicts 2 of 2 notebooks" in error and "--force-assignment" in error
    assert not out.exists(), "nothing written"


def test_a_notebook_graded_as_the_wrong_assignment_says_so_everywhere(tmp_path, capsys):
    notebook = write_notebook(make_notebook([("markdown", "## 1C · Gaussian kernel"),
                                             "def gaussian_kernel(X1, X2, sigma):\n    return X1 @ X2.T"],
                                            assignment="csci145-ps6"), tmp_path / "csci.ipynb")
    out = tmp_path / "csci.graded"
    assert main([str(notebook), "--assignment", "ece685d-hw2", "--out", str(out), "--no-report", "--seed", "1",
                 "--timeout", "120"]) == 0
    streams = capsys.readouterr()
    assert "WARNING: this notebook was graded as `ece685d-hw2`" in streams.err
    assert "WARNING: this notebook was graded as `ece685d-hw2`" in streams.out, "the terminal table"
    results = json.loads((out / "results.json").read_text())
    assert "its metadata declares `csci145-ps6`" in results["output"]


def test_discovery_binds_no_name_that_shares_nothing_with_the_contract():
    assert not name_relates("bce_loss", "gaussian_kernel")
    assert not name_relates("bce_hessian", "make_mlp") and not name_relates("bce_loss", "f")
    for contract, found in [("bce_loss", "bceLoss"), ("bce_loss", "loss_bce"), ("bce_loss", "bl"),
                            ("gaussian_kernel", "gauss_k"), ("gaussian_kernel", "gk"), ("histories", "history"),
                            ("MNISTTwoView", "TwoViewMNIST"), ("sigmoid_derivative", "dsigmoid"), ("make_mlp", "build_mlp"),
                            ("train_set", "trn"), ("test_set", "tst")]:
        assert name_relates(contract, found), (contract, found)


def test_an_object_discovered_under_an_unrelated_name_is_graded_with_a_warning():
    from types import SimpleNamespace

    from graders.judge import JudgeContext
    from graders.observe import Found

    def context(found: Found) -> JudgeContext:
        part = SimpleNamespace(status="ok", problem="", found=lambda contract: found)
        return JudgeContext("P3", SimpleNamespace(part=lambda pid: part), {}, None, {}, None, {})

    stranger = context(Found("bce_loss", "gaussian_kernel", "discovered", "`gaussian_kernel` is the only function of (w, X, y)"))
    assert stranger.require("bce_loss").found_as == "gaussian_kernel"
    assert stranger.warnings and "share nothing" in stranger.warnings[0]
    relative = context(Found("bce_loss", "bceLoss", "discovered", "`bceLoss` is the only function of (w, X, y)"))
    relative.require("bce_loss")
    assert relative.warnings == []


def test_the_naming_rule_runs_as_kernel_text():
    from graders.kernel import kernel_source

    namespace: dict = {}
    exec(compile(kernel_source("naming"), "naming", "exec"), namespace)  # what the kernel runtime will do
    assert namespace["name_relates"]("bce_loss", "bceLoss") and not namespace["name_relates"]("bce_loss", "gaussian_kernel")


# ---------------------------------------------------------------------------------------------
# 4. grade pdf: the browser students have, and a warning before a PDF they would regret
# ---------------------------------------------------------------------------------------------
def fake_host(platform: str, files: list[str], on_path: dict[str, str] | None = None, environ: dict[str, str] | None = None,
              home: str = "/home/student", playwright: str | None = None) -> BrowserHost:
    existing = {Path(f) for f in files}

    def glob(folder: Path, pattern: str) -> list[Path]:
        return sorted(p for p in existing if str(p).startswith(str(folder) + "/")
                      and fnmatch.fnmatch(str(p.relative_to(folder)), pattern))

    return BrowserHost(environ or {}, platform, Path(home), lambda name: (on_path or {}).get(name),
                       lambda path: path in existing, glob, lambda: playwright)


def test_the_browser_search_follows_the_documented_order():
    linux = ["/usr/bin/chromium", "/opt/google/chrome/chrome"]
    assert find_browser(None, fake_host("linux", linux, {"google-chrome": "/usr/bin/google-chrome"})) == "/usr/bin/google-chrome"
    assert find_browser(None, fake_host("linux", ["/opt/google/chrome/chrome"])) == "/opt/google/chrome/chrome"
    assert find_browser(None, fake_host("linux", ["/snap/bin/chromium"])) == "/snap/bin/chromium"
    assert find_browser("/my/chrome", fake_host("linux", linux + ["/my/chrome"])) == "/my/chrome"
    assert find_browser("/missing", fake_host("linux", linux)) is None, "an explicit browser is used or nothing is"
    assert find_browser(None, fake_host("linux", linux, environ={"NBGRADE_CHROMIUM": "/usr/bin/chromium"})) == "/usr/bin/chromium"


def test_browsers_are_found_where_macos_and_windows_install_them():
    edge = "/Applications/Microsoft Edge.app/Contents/MacOS/Microsoft Edge"
    assert find_browser(None, fake_host("darwin", [edge])) == edge
    chrome = "/Users/ana/Applications/Google Chrome.app/Contents/MacOS/Google Chrome"
    assert find_browser(None, fake_host("darwin", [chrome], home="/Users/ana")) == chrome
    local = "C:\\Users\\ana\\AppData\\Local"
    win_chrome = str(Path(local, "Google", "Chrome", "Application", "chrome.exe"))
    assert find_browser(None, fake_host("win32", [win_chrome], environ={"LOCALAPPDATA": local})) == win_chrome
    win_edge = str(Path("C:\\Program Files (x86)", "Microsoft", "Edge", "Application", "msedge.exe"))
    assert find_browser(None, fake_host("win32", [win_edge], environ={"PROGRAMFILES(X86)": "C:\\Program Files (x86)"})) == win_edge


def test_playwrights_own_chromium_is_found_newest_first():
    cache = "/home/student/.cache/ms-playwright"
    files = [f"{cache}/chromium-1091/chrome-linux/chrome", f"{cache}/chromium-1148/chrome-linux/chrome",
             f"{cache}/chromium_headless_shell-1148/chrome-linux/headless_shell"]
    assert find_browser(None, fake_host("linux", files)) == f"{cache}/chromium-1148/chrome-linux/chrome"
    mac = "/Users/ana/Library/Caches/ms-playwright/chromium-1148/chrome-mac/Chromium.app/Contents/MacOS/Chromium"
    assert find_browser(None, fake_host("darwin", [mac], home="/Users/ana")) == mac
    assert find_browser(None, fake_host("linux", ["/x/chrome"], playwright="/x/chrome")) == "/x/chrome", "Playwright's API last"
    assert find_browser(None, fake_host("linux", [])) is None


def test_a_notebook_without_saved_outputs_gets_a_loud_warning_and_the_html_is_still_written(tmp_path, capsys):
    blank = reference("csci145-ps6")
    for cell in blank.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    notebook = write_notebook(blank, tmp_path / "hw.ipynb")
    assert main(["pdf", str(notebook), "--chromium", str(tmp_path / "no-browser")]) == 1
    error = capsys.readouterr().err
    assert "WARNING: hw.ipynb has no saved outputs" in error and "grade pdf hw.ipynb --execute" in error
    assert error.count("=" * 78) == 2, "framed, so it is not missed"
    assert (tmp_path / "hw.html").is_file()


def test_a_notebook_with_outputs_but_no_figure_is_warned_when_parts_ask_for_figures():
    notebook = make_notebook(["print(1)"], assignment="csci145-ps6")
    notebook.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text="1\n")]
    (warning,) = output_warnings(notebook, "hw.ipynb", "csci145-ps6")
    assert "no figure" in warning.message and "1B, 1C, 2C" in warning.message
    assert output_warnings(reference("csci145-ps6"), "ref.ipynb", "csci145-ps6") == ()
    assert output_warnings(notebook, "hw.ipynb", None) == (), "outputs, and no assignment asking for figures"


# ---------------------------------------------------------------------------------------------
# 8. Memory and CPU: the same measured numbers everywhere
# ---------------------------------------------------------------------------------------------
def test_the_readme_the_zip_and_the_command_state_the_same_measured_memory(tmp_path, capsys):
    readme = README.read_text()
    assert "1536" not in readme and "1.5 GB" not in readme
    for assignment in built_in_ids():
        budget = get_assignment(assignment).budget
        run = budget.measured
        row = (f"| `{assignment}` | {budget.container_memory_mb} MB | {run.cpu:g} | {run.peak_mb} MB "
               f"| {run.seconds:g} s |")
        assert row in readme, row
        config = autograder_config(assignment)
        zip_readme = instructor_readme(config, "autograder.zip", "x.whl")
        assert f"**Memory: {budget.container_memory_mb} MB**" in zip_readme
        assert f"peaked at {run.peak_mb} MB" in zip_readme and "1.5 GB" not in zip_readme
        assert main(["gradescope", assignment, "-o", str(tmp_path / f"{assignment}.zip")]) == 0
        printed = capsys.readouterr().out
        assert f"memory {budget.container_memory_mb} MB" in printed and f"peaked at {run.peak_mb} MB" in printed
        with zipfile.ZipFile(tmp_path / f"{assignment}.zip") as archive:
            assert archive.read("README.md").decode() == instructor_readme(config, f"{assignment}.zip", _wheel(archive))
    assert all(b.container_memory_mb == GRADESCOPE_DEFAULT_MEMORY_MB for b in (get_assignment(a).budget for a in built_in_ids())), "as measured"


def _wheel(archive: zipfile.ZipFile) -> str:
    return next(name for name in archive.namelist() if name.endswith(".whl"))


# ---------------------------------------------------------------------------------------------
# 9. The project documents itself
# ---------------------------------------------------------------------------------------------
def test_the_readme_links_nothing_outside_the_repository():
    for doc in (README, CONTRACT, REPO / "benchmarks" / "README.md"):
        text = doc.read_text()
        assert "../shared" not in text and "CONTRACT.md" not in text, doc
        for target in re.findall(r"\]\(([^)#]+)", text):
            if not target.startswith(("http://", "https://", "mailto:")):
                assert (doc.parent / target).resolve().is_relative_to(REPO), (doc, target)
                assert (doc.parent / target).exists(), (doc, target)
    assert "](docs/contract.md)" in README.read_text()


def test_the_contract_states_every_parts_points_and_names():
    text = CONTRACT.read_text()
    assert built_in_ids() and set(built_in_ids()) <= set(assignment_ids()), "the project's own assignments are installed"
    for assignment in built_in_ids():
        rubric = get_assignment(assignment).rubric
        assert f"`{assignment}`" in text
        for part in rubric.parts:
            heading = re.search(rf"^### {part.id} · .*\((.+?)\)$", text, re.M)
            assert heading, part.id
            points = part.points + part.self_graded_points
            assert heading.group(1).startswith(f"{points:g} pts"), (part.id, heading.group(1), points)
            if part.self_graded_points and part.points:
                assert f"{part.points:g} autograded" in heading.group(1) and f"{part.self_graded_points:g} self-graded" in heading.group(1)
    for name in ("gaussian_kernel", "K_train", "make_mlp", "residual_mlp_gradients", "MNISTTwoView", "bce_hessian", "histories"):
        assert f"`{name}" in text, name


def test_grade_config_is_importable_from_the_package_as_the_readme_shows():
    from graders import GradeConfig, Limits, grade_submission

    assert callable(grade_submission) and GradeConfig(limits=Limits(memory_mb=1024)).limits.memory_mb == 1024
    assert "from graders import GradeConfig" in README.read_text()
