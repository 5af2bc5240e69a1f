"""``grade pdf``: the PDF read back with poppler-utils (pdftotext, pdfimages) and pypdf.

Each part must start a page with its id at the top and be named in the outline; figures must
be embedded; printed values must be searchable text; hostile markup must come out as text with
no request made; a 10 MB output must not make a huge PDF. Without Chromium the command writes
the HTML and exits 1; a file that is not a notebook is a usage error (exit 2).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest

from graders.cli import main
from graders.pdf import PdfRequest, find_chromium, render_pdf
from tests.conftest import REFERENCE_NOTEBOOKS, make_notebook, write_notebook
from tests.report_notebooks import PWN, hostile_notebook
from tests.test_report import graded_reference  # noqa: F401 - session fixture (graded once per session)

pytestmark = pytest.mark.browser
CSCI_PARTS = ("1A", "1B", "1C", "1D", "2A", "2B", "2C")


@pytest.fixture
def pdf_tools() -> None:
    """Skip (saying what to install) where Debian's chromium or poppler-utils is missing."""
    if find_chromium() is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    if shutil.which("pdftotext") is None or shutil.which("pdfimages") is None:
        pytest.skip("poppler-utils is not installed (apt-get install poppler-utils)")


def cli(argv: list[str]) -> int:
    """``grade pdf ARGV``, as the command line runs it."""
    return main(["pdf", *argv])


def pages_text(pdf: Path) -> list[str]:
    """The text of each page (pdftotext ends every page with a form feed)."""
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    return text.split("\f")[:-1]


def first_line(page: str) -> str:
    return next((line.strip() for line in page.splitlines() if line.strip()), "")


def image_count(pdf: Path) -> int:
    listing = subprocess.run(["pdfimages", "-list", str(pdf)], capture_output=True, text=True, check=True).stdout
    return len(listing.splitlines()) - 2


def outline_titles(pdf: Path) -> list[str]:
    from pypdf import PdfReader

    def walk(items) -> list[str]:
        titles: list[str] = []
        for item in items:
            titles.extend(walk(item) if isinstance(item, list) else [item.title])
        return titles

    return walk(PdfReader(str(pdf)).outline)


def copy_reference(name: str, directory: Path) -> Path:
    target = directory / f"{name}.ipynb"
    shutil.copy(REFERENCE_NOTEBOOKS / f"{name}.ipynb", target)
    return target


@pytest.mark.parametrize("assignment, parts, printed", [
    ("csci145-ps6", CSCI_PARTS, "4000 MNIST images; train_set: 1000, test_set: 100"),
    ("ece685d-hw2", ("P1", "P2", "P3"), None),
])
def test_reference_pdf_has_a_page_per_part_outline_figures_and_values(pdf_tools, tmp_path, assignment, parts, printed):
    notebook = copy_reference(assignment, tmp_path)
    outcome = render_pdf(PdfRequest(notebook))
    pdf = notebook.with_suffix(".pdf")
    assert outcome.path == pdf and pdf.read_bytes()[:5] == b"%PDF-"
    assert outcome.blocked_requests == ()
    pages = pages_text(pdf)
    assert len(pages) >= len(parts) + 1
    tops = [first_line(page) for page in pages]
    for pid in parts:
        assert any(top.startswith(f"{pid} · ") for top in tops), f"{pid} heads a page: {tops}"
    titles = outline_titles(pdf)
    assert all(any(t.startswith(f"{pid} · ") for t in titles) for pid in parts), titles
    assert all(f"page {n} of {len(pages)}" in page for n, page in enumerate(pages, 1)), "page numbers in the footer"
    source = nbformat.read(str(notebook), as_version=4)
    figures = sum("image/png" in o.get("data", {}) for c in source.cells for o in c.get("outputs", []))
    assert figures > 0 and image_count(pdf) >= figures
    if printed:
        assert printed in "".join(pages)
    assert outcome.size_bytes < 5_000_000


def test_hostile_notebook_pdf_shows_markup_as_text_and_requests_nothing(pdf_tools, tmp_path):
    notebook = write_notebook(hostile_notebook(), tmp_path / "hostile.ipynb")
    outcome = render_pdf(PdfRequest(notebook, tmp_path / "out" / "hostile.pdf"))
    assert outcome.blocked_requests == ()
    text = " ".join(" ".join(pages_text(outcome.path)).split())
    assert f"<script>{PWN}=1</script>" in text and f"{PWN}=9" in text
    assert "text/html output, shown as text" in text and "output truncated" in text
    assert "1A · Loading MNIST" in text


def test_ten_megabyte_output_gives_a_pdf_of_a_few_megabytes(pdf_tools, tmp_path):
    nb = make_notebook([("markdown", "## 1A · Loading MNIST"), "print('x')"], assignment="csci145-ps6")
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text=("0123456789" * 99 + "\n") * 10_000)]
    notebook = write_notebook(nb, tmp_path / "huge.ipynb")
    assert notebook.stat().st_size > 10_000_000
    outcome = render_pdf(PdfRequest(notebook))
    assert outcome.size_bytes < 3_000_000
    assert "output truncated" in " ".join(pages_text(outcome.path))


def test_report_is_appended_with_the_self_grade_filled_in(pdf_tools, graded_reference, tmp_path):
    result, out = graded_reference
    notebook = copy_reference("csci145-ps6", tmp_path)
    shutil.copytree(out, tmp_path / "csci145-ps6.graded")
    export = tmp_path / "selfgrade.json"
    export.write_text(json.dumps({"format": "nbgrade-selfgrade/1", "self_graded": [
        {"part": "1D", "level": 8, "comment": "no memory numbers"}, {"part": "2A", "level": 10, "comment": ""}]}))
    assert cli([str(notebook), "-o", str(tmp_path / "with-report.pdf"), "--report", "--self-grade", str(export)]) == 0
    pages = pages_text(tmp_path / "with-report.pdf")
    start = next(n for n, page in enumerate(pages) if first_line(page).endswith("self-grade report"))
    report = " ".join(" ".join(pages[start:]).split())
    assert start >= len(CSCI_PARTS) + 1, "the report comes after the notebook"
    assert f"Total {result.score + 9:g} / 100" in report and "no memory numbers" in report
    assert "REFERENCE SOLUTION" in report.upper()


def test_execute_runs_the_notebook_in_the_sandbox_before_printing(pdf_tools, tmp_path):
    nb = make_notebook([("markdown", "## 2A · Sigmoid derivative"), "print('six times seven is', 6 * 7)"],
                       assignment="csci145-ps6")
    notebook = write_notebook(nb, tmp_path / "unrun.ipynb")
    assert cli([str(notebook), "--execute", "--timeout", "60"]) == 0
    text = " ".join(pages_text(tmp_path / "unrun.pdf"))
    assert "six times seven is 42" in text and "outputs from running the notebook in the grading sandbox" in text


def test_without_chromium_the_html_is_written_and_the_exit_status_is_1(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("NBGRADE_CHROMIUM", raising=False)
    notebook = copy_reference("csci145-ps6", tmp_path)
    assert cli([str(notebook), "--chromium", str(tmp_path / "no-such-chromium")]) == 1
    message = capsys.readouterr().err
    assert message.count("\n") == 1 and "apt-get install chromium" in message
    html = (tmp_path / "csci145-ps6.html").read_text()
    assert "@media print" in html and '<section class="nb-part" id="nb-1A">' in html
    assert not (tmp_path / "csci145-ps6.pdf").exists()


@pytest.mark.parametrize("content", ["this is not json", json.dumps({"cells": "nope"})])
def test_a_file_that_is_not_a_notebook_is_a_usage_error(tmp_path, capsys, content):
    bad = tmp_path / "bad.ipynb"
    bad.write_text(content)
    assert cli([str(bad)]) == 2
    message = capsys.readouterr().err
    assert message.startswith("grade pdf: error: ") and message.count("\n") == 1
    assert cli([str(tmp_path / "missing.ipynb")]) == 2
