"""The report in a real browser (Debian's chromium through Playwright): offline, inert, interactive.

Each page is opened from disk with every request recorded: the page itself is the only one.
The reference report's rubric must sum live, survive a reload and export; the hostile report
must execute nothing (a payload would set ``window.__pwned``) and log no error.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from graders.pdf import find_chromium
from tests.report_notebooks import PWN, write_hostile
from tests.test_report import graded_failing, graded_reference  # noqa: F401 - session fixtures

pytestmark = pytest.mark.browser

CHROMIUM = find_chromium()
if CHROMIUM is None:
    pytest.skip("Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True)

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    from graders.pdf import CHROMIUM_ARGS

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=list(CHROMIUM_ARGS))
        yield launched
        launched.close()


class Visit:
    """A page opened from disk, with every request, console error, page error and dialog recorded."""

    def __init__(self, browser, path: Path, viewport=DESKTOP, context=None) -> None:
        self.context = context or browser.new_context(viewport=viewport, accept_downloads=True)
        self.page = self.context.new_page()
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type in ("error", "warning") else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.url = path.resolve().as_uri()
        self.page.goto(self.url)

    def assert_clean(self) -> None:
        assert self.requests and set(self.requests) == {self.url}, self.requests
        assert self.errors == [] and self.dialogs == []

    def text(self, selector: str) -> str:
        return self.page.locator(selector).inner_text().strip()


def png_width(data: bytes) -> int:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">I", data[16:20])[0]


def test_reference_report_offline_rubric_sums_persists_and_exports(browser, graded_reference, tmp_path):
    result, out = graded_reference
    visit = Visit(browser, out / "report.html")
    page = visit.page
    auto = f"{result.score:g}"
    assert visit.text("#auto-score") == f"{auto} / 90"
    assert visit.text("#total-score") == f"{auto} / 100"
    page.check('input[name="sg-1D"][value="8"]')
    assert "needs a comment" in visit.text('.sg-status[data-part="1D"]')
    assert visit.text("#total-score") == f"{result.score + 4:g} / 100"
    page.fill("#comment-1D", "I did not measure memory.")
    assert "Self-graded 8/10 = 4 of 5 points." == visit.text('.sg-status[data-part="1D"]')
    page.check('input[name="sg-2A"][value="10"]')
    assert visit.text("#self-score") == "9 / 10" and visit.text("#total-score") == f"{result.score + 9:g} / 100"
    assert visit.text('.sg-cell[data-part="2A"]') == "5 / 5"
    page.reload()
    assert page.is_checked('input[name="sg-1D"][value="8"]') and page.is_checked('input[name="sg-2A"][value="10"]')
    assert page.input_value("#comment-1D") == "I did not measure memory."
    assert visit.text("#total-score") == f"{result.score + 9:g} / 100"
    page.check('input[name="sg-2C"][value="5"]')
    page.fill("#comment-2C", "missed the overfitting of depth 3")
    with page.expect_download() as download:
        page.click("#export-json")
    exported = json.loads(Path(download.value.path()).read_text())
    assert exported["format"] == "nbgrade-selfgrade/1" and exported["complete"] is True
    assert {e["part"]: e["points"] for e in exported["self_graded"]} == {"1D": 4, "2A": 5, "2C": 0}
    assert exported["total"] == {"score": result.score + 9, "max": 100}
    with page.expect_download() as download:
        page.click("#export-csv")
    csv = Path(download.value.path()).read_text()
    assert "1D,self-graded,8,4,5,I did not measure memory." in csv and csv.splitlines()[-1] == f"total,,,{result.score + 9:g},100,"
    visit.assert_clean()
    assert png_width(page.screenshot(path=str(tmp_path / "reference-desktop.png"), full_page=True)) == 1280
    visit.context.close()


def test_reference_report_fits_a_phone(browser, graded_reference, tmp_path):
    result, out = graded_reference
    visit = Visit(browser, out / "report.html", viewport=PHONE)
    overflow = visit.page.evaluate("document.documentElement.scrollWidth")
    assert overflow <= PHONE["width"], "nothing scrolls sideways on a phone"
    columns = visit.page.evaluate("getComputedStyle(document.querySelector('.compare')).gridTemplateColumns")
    assert len(columns.split()) == 1, "student and reference stack on a phone"
    assert png_width(visit.page.screenshot(path=str(tmp_path / "reference-phone.png"), full_page=True)) == 390
    visit.assert_clean()
    visit.context.close()


def test_failing_report_shows_the_right_scores(browser, graded_failing):
    result, out = graded_failing
    visit = Visit(browser, out / "report.html")
    for part in result.parts:
        row = visit.page.locator(f"#row-{part.id}")
        assert f"{part.score:g} / {part.max_score:g}" in row.inner_text()
        assert row.locator(".badge").inner_text() == part.status
    assert visit.text("#total-score") == f"{result.score:g} / 100"
    assert visit.page.locator("#part-1C li.ko").count() == sum(not c.passed for c in result.part("1C").checks)
    visit.assert_clean()
    visit.context.close()


def test_hostile_report_executes_nothing_and_fetches_nothing(browser, tmp_path):
    from graders.report import write_report

    result, out = write_hostile(tmp_path)
    path = write_report(result, out)
    for viewport in (DESKTOP, PHONE):
        visit = Visit(browser, path, viewport=viewport)
        page = visit.page
        assert page.evaluate(f"typeof {PWN}") == "undefined"
        assert page.locator("iframe, object, embed, svg, base, link").count() == 0
        assert page.locator("#part-1A .st-passed").count() == 0
        body = page.inner_text("body")
        assert f"<script>{PWN}=1</script>" in body and f'onerror="{PWN}=8"' in body
        assert visit.text("#total-score") == "0 / 8"
        assert page.locator("a[href^='javascript'], a[href^='data']").count() == 0
        page.mouse.move(200, 400)
        page.mouse.wheel(0, 3000)
        assert page.evaluate(f"typeof {PWN}") == "undefined"
        visit.assert_clean()
        page.screenshot(path=str(tmp_path / f"hostile-{viewport['width']}.png"), full_page=True)
        visit.context.close()
