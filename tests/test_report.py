"""The HTML report, read as HTML: scores, parts, reference column, self-grade, what students may see.

The browser half (nothing runs, no request, the rubric sums and persists) is in
test_report_browser.py. The reference notebook is graded once per session (shared with the
browser and PDF tests); everything else is built small, without a kernel where possible.
"""

from __future__ import annotations

import base64
import re
from dataclasses import replace
from html.parser import HTMLParser

import nbformat
import pytest

from graders import render
from graders.config import GradeConfig
from graders.grade import invalid_result
from graders.report import build_page, read_self_grade, render_html_report, write_report
from tests.report_notebooks import (PWN, png_bytes, failing_notebook, graded_once, hostile_result, reference_notebook,
                                    write_hostile)

CSCI_PARTS = ("1A", "1B", "1C", "1D", "2A", "2B", "2C")


@pytest.fixture(scope="session")
def graded_reference(tmp_path_factory):
    return graded_once(tmp_path_factory, "reference", reference_notebook)


@pytest.fixture(scope="session")
def graded_failing(tmp_path_factory):
    return graded_once(tmp_path_factory, "failing", failing_notebook)


class Tags(HTMLParser):
    """Every start tag with its attributes, and the page's text."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def named(self, name: str) -> list[dict[str, str | None]]:
        return [attrs for tag, attrs in self.tags if tag == name]


def assert_nothing_active(html: str) -> Tags:
    """No script but the report's own two, no event handler, no frame, no remote URL."""
    page = Tags(html)
    scripts = page.named("script")
    assert [s.get("type") for s in scripts] == ["application/json", None], scripts
    nonce = scripts[1]["nonce"]
    assert f"script-src 'nonce-{nonce}'" in html and html.count(nonce) == 2
    for tag, attrs in page.tags:
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        assert tag not in {"iframe", "object", "embed", "svg", "base", "link", "form", "frame"}, tag
        assert "style" not in attrs or tag in {"th", "td"}, (tag, attrs)
    for img in page.named("img"):
        assert re.match(r"^data:image/(png|jpeg);base64,", img["src"] or ""), img
    for link in page.named("a"):
        assert (link.get("href") or "#").startswith(("#", "http://", "https://", "mailto:")), link
    assert [t for t, _ in page.tags].count("style") == 1
    assert [m for m in page.named("meta") if m.get("http-equiv") == "refresh"] == []
    return page


# ---------------------------------------------------------------------------------------------
# The reference notebook's report
# ---------------------------------------------------------------------------------------------
def test_reference_report_shows_scores_parts_and_reference_beside_student(graded_reference):
    result, out = graded_reference
    html = (out / "report.html").read_text()
    page = assert_nothing_active(html)
    assert result.max_score == 90 and result.status == "graded"
    assert f'id="auto-score">{result.score:g} / 90<' in html
    for part in result.parts:
        row = html.split(f'id="row-{part.id}"')[1].split("</tr>")[0]
        assert f"{part.score:g} / {part.max_score:g}" in row and f'badge st-{part.status}">{part.status}<' in row
    for pid in CSCI_PARTS:
        assert f'id="part-{pid}"' in html and f'href="#part-{pid}"' in html
    assert html.count('class="col-title">Reference solution<') == len(CSCI_PARTS)
    assert html.count('class="col-title">Your notebook<') == len(CSCI_PARTS)
    figures = [img for img in page.named("img") if img["src"].startswith("data:image/png")]
    assert len(figures) >= 8, "four figures in the student's notebook and four in the reference"
    assert html.count("<math") > 50
    assert "default-src 'none'" in html
    assert len(html) < 3_000_000
    assert "harness 0.1.0" in html and "Python 3." in html and "torch " in html and "seed</dt><dd>12345<" in html


def test_reference_report_self_graded_parts_have_answer_rubric_and_scaling_table(graded_reference):
    result, out = graded_reference
    html = (out / "report.html").read_text()
    for pid, points in (("1D", 5), ("2A", 5), ("2C", 0)):
        block = html.split(f'id="selfgrade-{pid}"')[1].split("</fieldset>")[0]
        assert block.count('type="radio"') == 5
        assert 'class="col-title">Your answer<' in block and 'class="col-title">Reference answer<' in block
        assert f'id="selfgrade-{pid}" data-part="{pid}" data-max="{points}"' in html
    one_d = html.split('id="selfgrade-1D"')[1].split("</fieldset>")[0]
    assert "Measured scaling of one training step" in one_d
    assert all(f"<td>{n}</td>" in one_d for n in (250, 500, 1000, 2000, 4000))
    two_a = html.split('id="selfgrade-2A"')[1].split("</fieldset>")[0]
    assert 'value="8" data-points="4.0"' in two_a, "8/10 of 5 self-graded points is 4"
    assert "Show that σ′(z) = σ(z)(1 − σ(z))." in two_a


def test_failing_report_names_each_mistake_and_the_crashed_cell(graded_failing):
    result, out = graded_failing
    html = (out / "report.html").read_text()
    assert_nothing_active(html)
    assert f'id="auto-score">{result.score:g} / 90<' in html and 0 < result.score < 90
    one_c = html.split('id="part-1C"')[1].split('id="part-1D"')[0]
    assert 'badge st-failed">failed<' in one_c
    assert "your kernel is exp(−‖x − x′‖²/σ²): the denominator should be 2σ²" in one_c
    assert "how the notebook ran" in html.lower() and "ValueError: this cell crashes on purpose" in html
    two_a = html.split('id="part-2A"')[1].split('id="part-2B"')[0]
    assert "Cells that did not run cleanly" in two_a and "cell 6" in two_a
    assert "ran out of time" in two_a, "the student's written answer is shown beside the reference"


# ---------------------------------------------------------------------------------------------
# Hostile content, student vs instructor mode, reference availability (no kernel needed)
# ---------------------------------------------------------------------------------------------
def test_hostile_notebook_and_result_are_shown_as_text(tmp_path):
    result, out = write_hostile(tmp_path)
    html = write_report(result, out).read_text()
    page = assert_nothing_active(html)
    text = "".join(page.text)
    for n in (1, 3, 7, 9, 11, 13, 14, 20, 23):
        assert f"{PWN}={n}" in text, f"payload {n} is shown as text"
    assert f'<script>{PWN}=1</script>' in text
    assert "text/html output, shown as text" in text and "application/javascript output, shown as text" in text
    assert "[image not embedded: tracker (https://evil.example/t.png)]" in text
    assert "image/png output not shown" in text
    badges = [attrs for _, attrs in page.tags if "st-passed" in (attrs.get("class") or "")]
    assert "PASSED 100 / 100" in text and badges == [], "a fake banner is text, not a badge"
    assert "output truncated" in text and len(html) < 1_000_000
    assert 'evil&#34;&gt;&lt;script&gt;' in html or "evil&quot;&gt;&lt;script&gt;" in html


def test_student_mode_hides_details_and_hidden_checks_instructor_mode_shows_them(tmp_path):
    result, out = write_hostile(tmp_path)
    notebook = nbformat.read(str(out / "executed.ipynb"), as_version=4)
    secrets = ("INSTRUCTOR-ONLY-DETAIL", "HIDDEN-CHECK-MESSAGE", "HIDDEN-DETAIL", "TRACEBACK-INSTRUCTOR-ONLY",
               "RESULT-INSTRUCTOR-DETAIL")
    student = render_html_report(result, notebook=notebook)
    assert not [s for s in secrets if s in student]
    assert "A hidden check: your instructor sees its details." in student
    assert "checked on inputs drawn at grading time" in student
    instructor = render_html_report(result, instructor=True, notebook=notebook)
    assert all(s in instructor for s in secrets)
    assert_nothing_active(instructor)


def test_public_mode_and_a_missing_reference_package_show_no_reference_column_and_say_why(tmp_path, monkeypatch):
    result, out = write_hostile(tmp_path)
    public = write_report(replace(result, public_only=True), out).read_text()
    assert "Reference solution" not in public and "Reference answer" not in public
    assert "Graded in public mode" in public
    monkeypatch.setattr("graders.report.reference_root", lambda spec: None)
    bundle = write_report(result, out).read_text()
    assert "Reference solution" not in bundle and "is not installed here" in bundle


def test_report_without_executed_notebook_or_for_an_invalid_submission(tmp_path):
    result = replace(hostile_result(), notebook_path=None)
    html = write_report(result, tmp_path).read_text()
    assert "The executed notebook is not available" in html
    bad = tmp_path / "bad.ipynb"
    bad.write_text("not json")
    invalid = invalid_result(bad, GradeConfig(assignment="csci145-ps6"), 3, "bad.ipynb is not a notebook: not JSON", 0.1)
    html = write_report(invalid, tmp_path / "invalid").read_text()
    assert "bad.ipynb is not a notebook: not JSON" in html and 'id="auto-score">0 / 90<' in html
    assert_nothing_active(html)


def test_prefilled_self_grade_is_printed_and_summed(tmp_path):
    result, out = write_hostile(tmp_path)
    export = tmp_path / "sg.json"
    export.write_text('{"format": "nbgrade-selfgrade/1", "self_graded": [{"part": "2A", "level": 8, "comment": "no <b>"}]}')
    page = build_page(result, prefill=read_self_grade(export))
    assert page.self_scored == 4.0
    html = render.template_environment().get_template("report.html.j2").render(page=page)
    assert 'value="8" data-points="4.0" checked' in html and "no &lt;b&gt;</textarea>" in html
    export.write_text('{"format": "something else"}')
    with pytest.raises(ValueError, match="not a self-grade"):
        read_self_grade(export)


# ---------------------------------------------------------------------------------------------
# render.py units
# ---------------------------------------------------------------------------------------------
def test_markdown_math_becomes_mathml_and_raw_html_becomes_text():
    html = render.render_markdown("# Title\n\n$\\text{a<b}$ and $$\\frac{1}{2\\sigma^2}$$ <b>x</b>\n\n"
                                  "\\begin{align}\na &= b\n\\end{align}", heading_shift=2)
    assert html.startswith("<h3>Title</h3>")
    assert "<mtext>a&lt;b</mtext>" in html and html.count("<math") == 3 and "<mtable" in html
    assert "&lt;b&gt;x&lt;/b&gt;" in html
    assert 'class="tex-source">\\begin{bad}' in render.render_markdown("$\\begin{bad}$")


def test_markdown_links_and_images_keep_only_safe_targets():
    png = base64.b64encode(png_bytes()).decode()
    html = render.render_markdown(f"[a](javascript:x) [b](https://ok.example) ![r](https://x/y.png) "
                                  f"![s](data:image/svg+xml;base64,PHN2Zz4=) ![p](data:image/png;base64,{png}) "
                                  f"![att](attachment:f.png)", attachments={"f.png": {"image/png": png}})
    assert '<a href="https://ok.example" rel="noopener noreferrer nofollow">b</a>' in html
    assert "javascript:" not in html.replace("[a](javascript:x)", "")
    assert "[image not embedded: r (https://x/y.png)]" in html
    assert html.count('<img src="data:image/png;base64,') == 2 and 'src="data:image/svg' not in html


def test_outputs_render_by_kind():
    out = nbformat.v4.new_output
    limits = render.RenderLimits(max_output_chars=100, max_output_lines=10)
    stream = render.render_output(out("stream", name="stdout", text="\x1b[31mred\x1b[0m\n10%\r50%\r100%\n"))
    assert stream.kind == "stream" and str(stream.html) == "red\n100%\n"
    frame = render.render_output(out("execute_result", data={"text/html": "<table>", "text/plain": "   a\n0  1"}))
    assert frame.kind == "text" and "0  1" in frame.html, "a DataFrame shows its text form"
    html_only = render.render_output(out("display_data", data={"text/html": "<b>x</b>", "text/plain": "<IPython.core.display.HTML object>"}))
    assert html_only.kind == "source" and str(html_only.html) == "&lt;b&gt;x&lt;/b&gt;"
    jpeg = render.render_output(out("display_data", data={"image/jpeg": base64.b64encode(b"\xff\xd8\xff\xe0fake").decode()}))
    assert jpeg.kind == "image" and 'src="data:image/jpeg;base64,' in jpeg.html
    error = render.render_output(out("error", ename="E", evalue="v", traceback=["\x1b[1m<E>\x1b[0m: v"]))
    assert error.kind == "error" and str(error.html) == "&lt;E&gt;: v"
    long = render.render_output(out("stream", name="stdout", text="".join(f"line {i}\n" for i in range(1000))), limits)
    assert "line 0\n" in long.html and "line 999\n" in long.html and "line 500\n" not in long.html
    assert long.note.startswith("output truncated:")


def test_truncate_text_keeps_short_text_whole():
    limits = render.RenderLimits(max_output_chars=50, max_output_lines=5)
    assert render.truncate_text("short\ntext\n", limits) == ("short\ntext\n", "")
    shown, note = render.truncate_text("x" * 1000, limits)
    assert len(shown) < 60 and "1,000 characters" in note
