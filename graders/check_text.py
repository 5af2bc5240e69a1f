"""One check result as text, for each place a person reads it.

Gradescope's test output, the lines ``check()`` prints in a student's notebook and the rows of
``grade``'s terminal table all say the same things about a check (its outcome, the message, what
was expected and what came back, the likely mistake, the warnings); only the wording of the labels
and how much fits differ by audience. They are written here and nowhere else.
"""

from __future__ import annotations

import enum

from graders.outcome import CheckResult, Outcome


class Audience(enum.Enum):
    """Who reads the text, and so how much of the result it carries."""

    GRADESCOPE = "gradescope"
    """A student's test output on Gradescope: everything but the instructor detail."""
    INSTRUCTOR = "instructor"
    """Gradescope's output with the instructor detail (tracebacks, hidden inputs) appended."""
    NOTEBOOK = "notebook"
    """What ``check()`` prints under one check in the student's notebook (indented lines)."""
    TERMINAL = "terminal"
    """One row of ``grade``'s terminal table: only checks that failed or did not run, on one line each."""


MARKS = {Outcome.PASSED: "✓", Outcome.FAILED: "✗", Outcome.ERRORED: "!", Outcome.TIMED_OUT: "⏱", Outcome.NOT_RUN: "–",
         Outcome.AT_GRADING: "·"}
"""The mark before a check in the notebook's list."""
TERMINAL_WIDTH = 160
"""Characters of a message or mistake one terminal row shows."""


def describe_check(result: CheckResult, audience: Audience) -> str:
    """The text describing ``result`` for ``audience`` (empty for a passed check in the terminal table)."""
    if audience is Audience.TERMINAL:
        return "\n".join(_terminal_lines(result))
    if audience is Audience.NOTEBOOK:
        return "\n".join(_notebook_lines(result))
    return "\n".join(line for line in _gradescope_lines(result, audience is Audience.INSTRUCTOR) if line)


def _gradescope_lines(result: CheckResult, instructor: bool) -> list[str]:
    if result.passed:
        lines = [f"✓ {result.description}"]
    else:
        lines = [f"✗ {result.description}", result.message]
        lines += _labelled(result, expected="Expected: ", got="Got: ")
        if result.mistake:
            lines.append(f"Likely mistake: {result.mistake}")
    lines.extend(f"Warning: {w}" for w in result.warnings)
    if result.hidden_inputs:
        lines.append("(checked on inputs drawn at grading time)")
    if instructor and result.detail:
        lines.append("Instructor detail:\n" + result.detail)
    return lines


def _notebook_lines(result: CheckResult) -> list[str]:
    lines = [f"  {MARKS[result.outcome]} {result.description}"]
    if result.passed:
        return lines + [f"      note: {w}" for w in result.warnings]
    lines.append(f"      {result.message}")
    lines += [f"      {line}" for line in _labelled(result, expected="expected: ", got="got: ")]
    if result.mistake and result.mistake not in result.message:
        lines.append(f"      hint: {result.mistake}")
    return lines


def _terminal_lines(result: CheckResult) -> list[str]:
    if not result.ran:
        return [f"        · {result.name}: runs at grading ({result.max_score:g} points)"]
    if result.passed:
        return []
    message = (result.message.splitlines()[0] if result.message else result.outcome.value)[:TERMINAL_WIDTH]
    lines = [f"        ✗ {result.name}: {message}"]
    if result.mistake and result.mistake not in message:
        lines.append(f"          likely mistake: {result.mistake[:TERMINAL_WIDTH]}")
    return lines


def _labelled(result: CheckResult, *, expected: str, got: str) -> list[str]:
    return [label + value for label, value in ((expected, result.expected), (got, result.got)) if value]
