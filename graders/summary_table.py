"""The terminal table ``grade`` prints: one row per part, then each failed check's one-line message."""

from __future__ import annotations

import sys
from pathlib import Path

from graders.result import GradingResult


def format_result(result: GradingResult, out_dir: Path | None = None) -> str:
    lines = [f"{result.assignment_title} — {result.submission}  (seed {result.seed}, {result.duration:.1f} s)"]
    lines.extend(f"  ! {message}" for message in result.messages)
    lines.append(f"  {'part':<5} {'points':>9}  status")
    for part in result.parts:
        extra = f"  (+{part.self_graded_points:g} self-graded)" if part.self_graded_points else ""
        lines.append(f"  {part.id:<5} {part.score:>4g}/{part.max_score:<4g}  {part.status}{extra}")
        for check in part.checks:
            if not check.passed:
                message = check.message.splitlines()[0] if check.message else check.outcome.value
                lines.append(f"        ✗ {check.name}: {message[:160]}")
                if check.mistake:
                    lines.append(f"          likely mistake: {check.mistake[:160]}")
        for warning in part.warnings:
            lines.append(f"        ⚠ {warning[:160]}")
    for issue in result.execution.issues[:10]:
        lines.append(f"  cell {issue.cell + 1}: {issue.status}: {issue.summary[:140]}")
    for note in result.execution.notes[:10]:
        lines.append(f"  note: {note[:160]}")
    lines.append(f"  total {result.score:g} / {result.max_score:g} autograded")
    if out_dir is not None:
        lines.append(f"  written: {out_dir / 'results.json'}" + (f", {out_dir / 'report.html'}" if (out_dir / "report.html").exists() else ""))
    return "\n".join(lines)


def print_result(result: GradingResult, out_dir: Path | None = None) -> None:
    text = format_result(result, out_dir)
    encoding = sys.stdout.encoding or "utf-8"
    print(text.encode(encoding, errors="replace").decode(encoding))
