"""One check result as text (graders.check_text), for Gradescope, the notebook and the terminal table."""

from __future__ import annotations

from graders import gradescope
from graders.check_text import Audience, describe_check
from graders.outcome import CheckResult, Outcome

FAILED = CheckResult(
    name="kernel_matches_reference", part="1C", description="gaussian_kernel computes the stated kernel",
    outcome=Outcome.FAILED, score=0.0, max_score=7.0,
    message="gaussian_kernel(X1 5×3, X2 7×3, sigma) is not the stated kernel: the denominator should be 2σ², not σ².\nsecond line",
    expected="5×7 matrix", got="5×7 matrix", mistake="the denominator should be 2σ², not σ²",
    warnings=("a warning",), detail="Traceback: secret", hidden_inputs=True,
)
PASSED = CheckResult(name="k_ok", part="1C", description="K_train is valid", outcome=Outcome.PASSED, score=4.0, max_score=4.0,
                     warnings=("K_train is nearly constant",))
AT_GRADING = CheckResult(name="logreg_accuracy_on_held_back", part="1B", description="accuracy", outcome=Outcome.AT_GRADING,
                         score=0.0, max_score=6.0, message="Runs at grading")
NOT_RUN = CheckResult(name="sigma_check", part="1C", description="sigma", outcome=Outcome.NOT_RUN, score=0.0, max_score=3.0,
                      message="`sigma` is not defined in your notebook.", mistake="define sigma")


def test_gradescope_text_says_everything_but_the_instructor_detail() -> None:
    text = describe_check(FAILED, Audience.GRADESCOPE)
    assert text.splitlines()[:2] == ["✗ gaussian_kernel computes the stated kernel", FAILED.message.splitlines()[0]]
    for line in ("Expected: 5×7 matrix", "Got: 5×7 matrix", "Likely mistake: the denominator should be 2σ², not σ²",
                 "Warning: a warning", "(checked on inputs drawn at grading time)"):
        assert line in text.splitlines()
    assert "secret" not in text
    assert describe_check(FAILED, Audience.INSTRUCTOR).endswith("Instructor detail:\nTraceback: secret")
    assert gradescope.check_output(FAILED) == text
    assert gradescope.check_output(FAILED, instructor=True) == describe_check(FAILED, Audience.INSTRUCTOR)


def test_gradescope_text_of_a_passed_check_keeps_its_warnings() -> None:
    assert describe_check(PASSED, Audience.GRADESCOPE) == "✓ K_train is valid\nWarning: K_train is nearly constant"


def test_notebook_text_marks_the_outcome_and_hints_only_what_the_message_does_not_say() -> None:
    text = describe_check(FAILED, Audience.NOTEBOOK)
    assert text.splitlines()[0] == "  ✗ gaussian_kernel computes the stated kernel"
    assert "      expected: 5×7 matrix" in text and "      got: 5×7 matrix" in text
    assert "hint:" not in text  # the mistake is already in the message
    assert describe_check(NOT_RUN, Audience.NOTEBOOK).splitlines() == [
        "  – sigma", "      `sigma` is not defined in your notebook.", "      hint: define sigma"]
    assert describe_check(PASSED, Audience.NOTEBOOK) == "  ✓ K_train is valid\n      note: K_train is nearly constant"


def test_terminal_text_is_one_line_per_failure_and_nothing_for_a_pass() -> None:
    assert describe_check(PASSED, Audience.TERMINAL) == ""
    assert describe_check(AT_GRADING, Audience.TERMINAL) == "        · logreg_accuracy_on_held_back: runs at grading (6 points)"
    lines = describe_check(FAILED, Audience.TERMINAL).splitlines()
    assert lines == [f"        ✗ kernel_matches_reference: {FAILED.message.splitlines()[0][:160]}"]
    assert describe_check(NOT_RUN, Audience.TERMINAL).splitlines()[1] == "          likely mistake: define sigma"


def test_every_outcome_has_a_notebook_mark() -> None:
    for outcome in Outcome:
        result = CheckResult(name="c", part="1A", description="d", outcome=outcome, score=0.0, max_score=1.0, message="m")
        assert describe_check(result, Audience.NOTEBOOK).startswith("  ")
