"""The class summary page of a batch: what the class got right, what it got wrong, and what broke.

Built from the gradebook rows and each submission's ``grading.json`` (never from anything the
students ran), rendered by ``templates/class_summary.html.j2`` with autoescaping on. The page is
self-contained: inline CSS and SVG, no script, no network; it links to each submission's own
report by relative path.
"""

from __future__ import annotations

import datetime as _dt
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from graders.gradebook import STATUSES, GradebookRow, RowStatus
from graders.outcome import Outcome
from graders.result import GradingResult

if TYPE_CHECKING:
    from graders.similarity import SimilarityReport

HISTOGRAM_BINS = 10
TOP_MISTAKES = 15
TOP_SLOWEST = 10
TOP_SIMILAR = 20
"""Pairs of alike notebooks listed on the page (similarity.csv has them all)."""
FAILING_FRACTION = 0.5
"""A graded submission below this fraction of the maximum is listed among the failing ones."""
SVG_WIDTH, SVG_HEIGHT, SVG_MARGIN = 560, 180, 24


@dataclass(frozen=True)
class HistogramBar:
    low: float
    high: float
    count: int
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class CheckRate:
    part: str
    name: str
    description: str
    passed: int
    total: int

    @property
    def percent(self) -> float:
        return 100.0 * self.passed / self.total if self.total else 0.0


@dataclass(frozen=True)
class MistakeCount:
    part: str
    check: str
    mistake: str
    count: int


@dataclass(frozen=True)
class ListedSubmission:
    """A row of the slowest / failing tables."""

    id: str
    name: str
    total: float
    max_total: float
    status: str
    seconds: float
    reason: str
    link: str | None


@dataclass
class AssignmentSummary:
    """Everything the page says about the submissions of one assignment."""

    id: str
    title: str
    count: int
    max_total: float
    mean: float
    median: float
    bars: list[HistogramBar]
    checks: list[CheckRate]
    mistakes: list[MistakeCount]


@dataclass
class ClassSummary:
    generated: str
    seed: int | None
    count: int
    statuses: dict[str, int]
    assignments: list[AssignmentSummary] = field(default_factory=list)
    slowest: list[ListedSubmission] = field(default_factory=list)
    failing: list[ListedSubmission] = field(default_factory=list)
    everyone: list[ListedSubmission] = field(default_factory=list)
    status_meanings: dict[str, str] = field(default_factory=dict)
    similarity: SimilarityReport | None = None
    """The batch's similarity report (None when none was made)."""
    similarity_note: str = ""
    """Why there is no similarity report, when it failed."""
    top_similar: int = TOP_SIMILAR


def build_class_summary(rows: list[GradebookRow], results: dict[str, GradingResult | None], out_dir: Path, seed: int | None = None,
                        similarity: SimilarityReport | str | None = None) -> ClassSummary:
    """The page's content; ``similarity`` is the batch's similarity report, or why it could not be made."""
    listed = {row.id: listed_submission(row, results.get(row.id), out_dir) for row in rows}
    summary = ClassSummary(
        generated=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        seed=seed,
        count=len(rows),
        statuses=dict(Counter(row.status for row in rows).most_common()),
        slowest=[listed[r.id] for r in sorted(rows, key=lambda r: -r.seconds)[:TOP_SLOWEST]],
        failing=[listed[r.id] for r in rows if is_failing(r)],
        everyone=[listed[r.id] for r in rows],
        status_meanings=STATUSES,
        similarity=None if isinstance(similarity, str) else similarity,
        similarity_note=similarity if isinstance(similarity, str) else "",
    )
    for assignment in dict.fromkeys(row.assignment for row in rows if row.part_max):
        members = [row for row in rows if row.assignment == assignment]
        graded = [results[row.id] for row in members if results.get(row.id) is not None]
        summary.assignments.append(assignment_summary(assignment, members, graded))  # type: ignore[arg-type]
    return summary


def assignment_summary(assignment: str, rows: list[GradebookRow], results: list[GradingResult]) -> AssignmentSummary:
    totals = [row.total for row in rows]
    max_total = max(row.max_total for row in rows)
    return AssignmentSummary(
        id=assignment,
        title=results[0].assignment_title if results else assignment,
        count=len(rows),
        max_total=max_total,
        mean=statistics.fmean(totals),
        median=statistics.median(totals),
        bars=histogram(totals, max_total),
        checks=check_rates(results),
        mistakes=frequent_mistakes(results),
    )


def histogram(totals: list[float], max_total: float, bins: int = HISTOGRAM_BINS) -> list[HistogramBar]:
    """Equal-width bins over [0, max]; the last bin includes the maximum. Geometry for the inline SVG."""
    width = (max_total or 1.0) / bins
    counts = [0] * bins
    for total in totals:
        counts[min(bins - 1, max(0, int(total / width)))] += 1
    tallest = max(counts) or 1
    bar_width = (SVG_WIDTH - 2 * SVG_MARGIN) / bins
    plot_height = SVG_HEIGHT - 2 * SVG_MARGIN
    bars = []
    for index, count in enumerate(counts):
        height = plot_height * count / tallest
        bars.append(HistogramBar(round(index * width, 2), round((index + 1) * width, 2), count,
                                 SVG_MARGIN + index * bar_width, SVG_MARGIN + plot_height - height, bar_width - 2, height))
    return bars


def check_rates(results: list[GradingResult]) -> list[CheckRate]:
    """Per check (in rubric order), how many submissions passed it."""
    passed: Counter[tuple[str, str]] = Counter()
    seen: dict[tuple[str, str], tuple[str, int]] = {}
    for result in results:
        for check in result.checks:
            key = (check.part, check.name)
            description, count = seen.get(key, (check.description, 0))
            seen[key] = (description, count + 1)
            passed[key] += check.outcome is Outcome.PASSED
    return [CheckRate(part, name, description, passed[(part, name)], total) for (part, name), (description, total) in seen.items()]


def frequent_mistakes(results: list[GradingResult], top: int = TOP_MISTAKES) -> list[MistakeCount]:
    """The catalogued mistakes (``CheckResult.mistake``) named most often, with how many submissions made them."""
    counts: Counter[tuple[str, str, str]] = Counter()
    for result in results:
        named = {(c.part, c.name, c.mistake) for c in result.checks if c.mistake and not c.passed}
        counts.update(named)
    return [MistakeCount(part, check, mistake, n) for (part, check, mistake), n in counts.most_common(top)]


def is_failing(row: GradebookRow) -> bool:
    return row.status != RowStatus.GRADED or (row.max_total > 0 and row.total < FAILING_FRACTION * row.max_total)


def listed_submission(row: GradebookRow, result: GradingResult | None, out_dir: Path) -> ListedSubmission:
    link = next((f"{row.id}/{name}" for name in ("report.html", "results.json") if (out_dir / row.id / name).is_file()), None)
    return ListedSubmission(row.id, row.name, row.total, row.max_total, row.status, row.seconds, failing_reason(row, result), link)


def failing_reason(row: GradebookRow, result: GradingResult | None) -> str:
    """One line: the result's own message, else the first cell problem, else how many checks failed."""
    if result is None:
        return "no grading.json"
    if result.messages:
        return result.messages[0]
    if result.execution.status == "timed_out":
        return "the notebook ran out of its time budget"
    issues = result.execution.issues
    failed = [c for c in result.checks if not c.passed]
    if issues:
        return f"cell {issues[0].cell + 1}: {issues[0].summary}" + (f"; {len(failed)} checks failed" if failed else "")
    return f"{len(failed)} of {len(result.checks)} checks failed" if failed else ""


def render_class_summary(summary: ClassSummary) -> str:
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    environment = Environment(
        loader=FileSystemLoader(str(Path(__file__).parent / "templates")),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return environment.get_template("class_summary.html.j2").render(s=summary, svg=(SVG_WIDTH, SVG_HEIGHT, SVG_MARGIN))


def write_class_summary(rows: list[GradebookRow], results: dict[str, GradingResult | None], path: Path, seed: int | None = None,
                        similarity: SimilarityReport | str | None = None) -> None:
    from graders.safetext import write_text_atomic

    write_text_atomic(path, render_class_summary(build_class_summary(rows, results, path.parent, seed, similarity)))
