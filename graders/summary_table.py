"""The terminal table ``grade`` prints: one row per part, then each failed check's one-line message."""

from __future__ import annotations

import sys
from pathlib import Path

from graders.check_text import Audience, describe_check
from graders.result import GradingResult, PartResult
from graders.safetext import LINE_BREAK_MARK, one_line


def ran_checks(part: PartResult) -> list:
    """The part's checks that ran (in public mode, hidden checks run only at grading)."""
    return [c for c in part.checks if c.ran]


def shown_points(part: PartResult) -> tuple[float, float]:
    """(score, maximum) over the checks that ran: in public mode, the public points only."""
    return part.score, sum(c.max_score for c in ran_checks(part))


def shown_status(part: PartResult) -> str:
    """The part's status judged only on checks that ran: a check that did not run is never a failure."""
    if not any(not c.ran for c in part.checks):
        return part.status
    if part.max_score == 0:
        return "self-graded"
    ran = ran_checks(part)
    if not ran:
        return "at grading"
    if all(c.passed for c in ran):
        return "passed"
    return "partial" if any(c.passed for c in ran) else "failed"


def public_totals(result: GradingResult) -> tuple[float, float, float]:
    """(public score, public points, points of checks that run only at grading)."""
    public = sum(shown_points(p)[1] for p in result.parts)
    return result.score, public, result.max_score - public


def _check_lines(text: str) -> list[str]:
    """A check's lines, each indented under its part: a line break inside a message joins, never starts a row."""
    lines: list[str] = []
    for line in text.replace("\r", " ").split("\n"):
        if not line.strip():
            continue
        if lines and not line.startswith("        "):
            lines[-1] += LINE_BREAK_MARK + line.strip()
        else:
            lines.append(one_line(line))
    return lines


def format_result(result: GradingResult, out_dir: Path | None = None) -> str:
    lines = [f"{result.assignment_title} — {result.submission}  (seed {result.seed}, {result.duration:.1f} s)"]
    lines.extend(f"  ! {one_line(message)}" for message in result.messages)
    public = result.public_only
    lines.append(f"  {'part':<5} {'public points':>14}  status" if public else f"  {'part':<5} {'points':>9}  status")
    for part in result.parts:
        extra = f"  (+{part.self_graded_points:g} self-graded)" if part.self_graded_points else ""
        score, maximum = shown_points(part)
        if public:
            shown = f"{score:g} of {maximum:g}" if maximum else "—"
            lines.append(f"  {part.id:<5} {shown:>14}  {shown_status(part)}{extra}")
        else:
            lines.append(f"  {part.id:<5} {part.score:>4g}/{part.max_score:<4g}  {part.status}{extra}")
        lines.extend(line for check in part.checks for line in _check_lines(describe_check(check, Audience.TERMINAL)))
        for warning in part.warnings:
            lines.append(f"        ⚠ {one_line(warning)[:160]}")
    for issue in result.execution.issues[:10]:
        lines.append(f"  cell {issue.cell + 1}: {issue.status}: {one_line(issue.summary)[:140]}")
    for note in result.execution.notes[:10]:
        lines.append(f"  note: {one_line(note)[:160]}")
    if public:
        score, points, later = public_totals(result)
        lines.append(f"  total {score:g} of {points:g} public points" + (f"; {later:g} more points run at grading" if later else ""))
    else:
        lines.append(f"  total {result.score:g} / {result.max_score:g} autograded")
    if out_dir is not None:
        lines.append(f"  written: {out_dir / 'results.json'}" + (f", {out_dir / 'report.html'}" if (out_dir / "report.html").exists() else ""))
    return "\n".join(lines)


def print_result(result: GradingResult, out_dir: Path | None = None) -> None:
    text = format_result(result, out_dir)
    encoding = sys.stdout.encoding or "utf-8"
    print(text.encode(encoding, errors="replace").decode(encoding))
