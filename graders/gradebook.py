"""gradebook.csv: one row per submission of a batch, after a row with each part's maximum.

Columns: ``id, name, email, total, <part ids…>, status, seconds, host``. The row under the
header holds the maximum (autograded) points of each part and of the total, so that a
spreadsheet needs nothing else to compute percentages. ``status`` is one of :data:`STATUSES`.
"""

from __future__ import annotations

import csv
import enum
import io
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Iterable

from graders.result import GradingResult, ResultStatus
from graders.safetext import clean_value, write_text_atomic

class RowStatus(str, enum.Enum):
    """A submission's status in the gradebook: the result's, refined (see :data:`STATUSES`)."""

    GRADED = "graded"
    TIMED_OUT = "timed_out"
    INVALID_SUBMISSION = "invalid_submission"
    HARNESS_ERROR = "harness_error"
    CRASHED = "crashed"

    def __str__(self) -> str:
        return self.value


STATUSES = {
    RowStatus.GRADED: "graded (whatever the score)",
    RowStatus.TIMED_OUT: "graded, but the notebook ran out of its time budget",
    RowStatus.INVALID_SUBMISSION: "not a gradable notebook (not JSON, no code, no notebook in the submission …)",
    RowStatus.HARNESS_ERROR: "the grader failed on this submission",
    RowStatus.CRASHED: "the grading worker died or hung on this submission",
}
MAX_ROW_ID = "(max points)"
"""The ``id`` of the row of maxima (first row after the header)."""


@dataclass(frozen=True)
class GradebookRow:
    """One submission's line of the gradebook."""

    id: str
    name: str
    email: str
    assignment: str
    total: float
    max_total: float
    parts: dict[str, float] = field(default_factory=dict)
    """Autograded score of each part, by part id."""
    part_max: dict[str, float] = field(default_factory=dict)
    status: RowStatus = RowStatus.GRADED
    seconds: float = 0.0
    host: str = ""

    def __post_init__(self) -> None:
        # Names and emails come from the student (Gradescope's metadata), ids from file names:
        # clean them as results are cleaned (no lone surrogates, NULs or terminal escapes).
        for spec in fields(self):
            value = getattr(self, spec.name)
            cleaned = clean_value(value, 1000)
            if cleaned is not value:
                object.__setattr__(self, spec.name, cleaned)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "GradebookRow":
        values = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        if "status" in values:
            values["status"] = RowStatus(values["status"])
        return cls(**values)


def row_status(result: GradingResult, crashed: bool = False) -> RowStatus:
    """The gradebook status of a finished result (see :data:`STATUSES`)."""
    if crashed:
        return RowStatus.CRASHED
    if result.status != ResultStatus.GRADED:
        return RowStatus(str(result.status))
    return RowStatus.TIMED_OUT if result.execution.status == "timed_out" else RowStatus.GRADED


def row_from_result(
    item_id: str, result: GradingResult, *, name: str = "", email: str = "", host: str = "", crashed: bool = False,
) -> GradebookRow:
    return GradebookRow(
        id=item_id,
        name=name,
        email=email,
        assignment=result.assignment,
        total=round(result.score, 4),
        max_total=result.max_score,
        parts={p.id: round(p.score, 4) for p in result.parts},
        part_max={p.id: p.max_score for p in result.parts},
        status=row_status(result, crashed),
        seconds=round(float(result.duration), 2),
        host=host,
    )


def part_columns(rows: Iterable[GradebookRow]) -> dict[str, float]:
    """Part id → maximum points, in the order the parts first appear (rubric order)."""
    columns: dict[str, float] = {}
    for row in rows:
        for part_id, maximum in row.part_max.items():
            columns.setdefault(part_id, maximum)
    return columns


def write_gradebook(rows: list[GradebookRow], path: Path) -> None:
    """Write the CSV: header, the row of maxima, then one row per submission (sorted by id)."""
    columns = part_columns(rows)
    totals = {row.max_total for row in rows if row.part_max}
    header = ["id", "name", "email", "total", *columns, "status", "seconds", "host"]
    maxima = [MAX_ROW_ID, "", "", _number(max(totals)) if len(totals) == 1 else "", *(_number(m) for m in columns.values()), "", "", ""]
    handle = io.StringIO(newline="")
    writer = csv.writer(handle)
    writer.writerow(header)
    writer.writerow(maxima)
    for row in sorted(rows, key=lambda r: r.id):
        scores = [_part_cell(row, part_id) for part_id in columns]
        writer.writerow([_text_cell(row.id), _text_cell(row.name), _text_cell(row.email), _number(row.total), *scores,
                         row.status, f"{row.seconds:.1f}", _text_cell(row.host)])
    write_text_atomic(path, handle.getvalue())  # never half a gradebook, never through a planted symlink


def _text_cell(text: str) -> str:
    """A student's text as a spreadsheet shows it, never as a formula (``=HYPERLINK(…)`` → ``'=HYPERLINK(…)``)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _part_cell(row: GradebookRow, part_id: str) -> str:
    if part_id in row.parts:
        return _number(row.parts[part_id])
    return "0" if not row.part_max else ""  # an unreadable notebook scores 0; another assignment's part is blank


def _number(value: float) -> str:
    return f"{value:g}"


def read_gradebook(path: Path) -> tuple[dict[str, str], list[dict[str, str]]]:
    """(row of maxima, submission rows) as dicts keyed by column name."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return rows[0], rows[1:]
