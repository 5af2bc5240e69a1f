"""What a student's local checks and public grading say (issue 17, "Students"), on made-up objects.

Everything here runs in-process: ``run_local_checks`` calls the real kernel-side probes on a
namespace of plain Python objects, and the terminal table and report are built from results
made without a kernel. Each test names the item of issue 17 it pins down.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

from graders.checks import CheckResult, Outcome
from graders.judge import PUBLIC_COPY_NOTE
from graders.local import format_reports, run_local_checks, session_inputs
from graders.result import ExecutionSummary, GradingResult, PartResult
from graders.registry import get_assignment
from graders.assignments.csci145_ps6.rubric import kernel_mistakes, sigmoid_mistakes
from graders.assignments.ece685d_hw2.rubric import PARAM_NAMES, _case_arrays, autograd_bce, autograd_residual_gradients, bce_mistakes, residual_mistakes

REPO = Path(__file__).resolve().parents[1]


def as_array(value) -> np.ndarray:
    return np.asarray(value.detach().numpy() if isinstance(value, torch.Tensor) else value, dtype=np.float64)


def results_of(namespace: dict, part: str) -> dict[str, CheckResult]:
    (report,) = run_local_checks(namespace, part)
    return {r.name: r for r in report.results}


# ---------------------------------------------------------------------------------------------
# 1. A local check catches what grading deducts wherever the statement alone decides it
# ---------------------------------------------------------------------------------------------
def sigma_squared_kernel(X1, X2, sigma):
    X1, X2 = torch.as_tensor(X1, dtype=torch.float64), torch.as_tensor(X2, dtype=torch.float64)
    return torch.exp(-torch.cdist(X1, X2) ** 2 / sigma**2)


def test_item1_check_1C_flags_a_kernel_divided_by_sigma_squared_and_names_it():
    result = results_of({"gaussian_kernel": sigma_squared_kernel}, "1C")["kernel_matches_reference"]
    assert result.outcome is Outcome.FAILED and result.max_score == 7
    assert "your kernel is exp(−‖x − x′‖²/σ²): the denominator should be 2σ²" in result.message
    assert result.mistake and result.mistake.startswith("your kernel is exp(−‖x − x′‖²/σ²)")
    text = format_reports(run_local_checks({"gaussian_kernel": sigma_squared_kernel}, "1C"))
    assert "✗ gaussian_kernel computes the stated exp(−‖x1_i − x2_j‖² / (2σ²))" in text


def test_item1_check_1C_flags_K_train_built_with_the_wrong_kernel():
    rng = np.random.default_rng(1)
    X_train = rng.random((60, 20))
    namespace = {"X_train": X_train, "sigma": 1.5, "K_train": sigma_squared_kernel(X_train, X_train, 1.5).numpy()}
    result = results_of(namespace, "1C")["K_train_matches_gaussian_kernel_of_training_images"]
    assert result.outcome is Outcome.FAILED and result.max_score == 3
    assert "`X_train`" in result.message and "the denominator should be 2σ²" in result.message
    right = {**namespace, "K_train": np.exp(-((X_train[:, None] - X_train[None]) ** 2).sum(-1) / (2 * 1.5**2))}
    assert results_of(right, "1C")["K_train_matches_gaussian_kernel_of_training_images"].passed


@pytest.mark.parametrize("mistake", list(kernel_mistakes(np.zeros((2, 3)), np.zeros((2, 3)), 1.0)))
def test_item1_every_kernel_mistake_is_named_by_check_1C(mistake):
    def student(X1, X2, sigma):
        return kernel_mistakes(as_array(X1), as_array(X2), sigma)[mistake]()

    result = results_of({"gaussian_kernel": student}, "1C")["kernel_matches_reference"]
    assert result.outcome is Outcome.FAILED and result.mistake == mistake and mistake in result.message


@pytest.mark.parametrize("mistake", list(sigmoid_mistakes(np.zeros(3))))
def test_item1_every_sigmoid_mistake_is_named_by_check_2A(mistake):
    result = results_of({"sigmoid_derivative": lambda z: sigmoid_mistakes(as_array(z))[mistake]()}, "2A")
    assert result["sigmoid_derivative_matches_autograd"].mistake == mistake


@pytest.mark.parametrize("function, mistake", [(f, m) for f, entries in bce_mistakes(np.zeros(2), np.zeros((3, 2)), np.zeros(3)).items()
                                                for m in entries])
def test_item1_every_bce_mistake_is_named_by_check_P3(function, mistake):
    def right(name):
        return lambda w, X, y: autograd_bce(as_array(w).reshape(-1), as_array(X), as_array(y).reshape(-1))[name]

    namespace = {name: right(name) for name in ("bce_loss", "bce_gradient", "bce_hessian")}
    namespace[function] = lambda w, X, y: bce_mistakes(as_array(w).reshape(-1), as_array(X), as_array(y).reshape(-1))[function][mistake]()
    assert results_of(namespace, "P3")[f"{function}_matches_autograd"].mistake == mistake


def residual_catalogue() -> tuple[dict[str, tuple[dict, dict]], list[str]]:
    """The catalogue's gradients for this session's P1 inputs, computed here (the probe forbids autograd)."""
    inputs = session_inputs("ece685d-hw2")["P1"]
    cases = {}
    for case, spec in enumerate(inputs["cases"]):
        X, Y, params = _case_arrays(inputs, case)
        catalogue = residual_mistakes(X, Y, params, spec["activation"])
        values = {name: {text: make() for text, make in entries.items()} for name, entries in catalogue.items()}
        cases[hashlib.sha1(np.ascontiguousarray(X).tobytes()).hexdigest()] = (values, autograd_residual_gradients(X, Y, params, spec["activation"]))
    names = sorted({text for values, _ in cases.values() for entries in values.values() for text in entries})
    return cases, names


def test_item1_every_residual_mistake_is_named_by_check_P1():
    cases, names = residual_catalogue()
    missed = []
    for mistake in names:
        def student(X, Y, params, g, g_prime, mistake=mistake):
            values, right = cases[hashlib.sha1(np.ascontiguousarray(as_array(X)).tobytes()).hexdigest()]
            return {k: values[k].get(mistake, right[k]) for k in PARAM_NAMES}

        named = {r.mistake for r in run_local_checks({"residual_mlp_gradients": student}, "P1")[0].results if not r.passed}
        if mistake not in named:
            missed.append(mistake)
    assert not missed


def test_item1_only_checks_the_statement_cannot_decide_are_hidden_and_points_are_unchanged():
    hidden = {(a, c.name) for a in ("csci145-ps6", "ece685d-hw2") for c in get_assignment(a).rubric.checks if not c.public}
    assert hidden == {("csci145-ps6", "logreg_accuracy_on_held_back")}  # held-back digits exist only at grading
    rubric = get_assignment("csci145-ps6").rubric
    points = {c.name: c.points for c in rubric.checks}
    assert points["kernel_matches_reference"] == 7 and points["K_train_matches_gaussian_kernel_of_training_images"] == 3
    assert {p.id: p.points for p in rubric.parts} == {"1A": 10, "1B": 20, "1C": 25, "1D": 0, "2A": 5, "2B": 15, "2C": 15}


# ---------------------------------------------------------------------------------------------
# 2. Public grading never shows a hidden check as a failure
# ---------------------------------------------------------------------------------------------
def public_result() -> GradingResult:
    """1B graded publicly: every public check passed, the held-back accuracy check did not run."""
    from graders.judge import JudgeContext, judge_part
    from graders.observe import Observations

    rubric = get_assignment("csci145-ps6").rubric
    ctx = JudgeContext("1B", Observations(parts={}), {}, None, {}, None, {})
    checks = []
    for spec, result in zip(rubric.checks_for("1B"), judge_part(rubric, "1B", ctx, public_only=True)):
        checks.append(result if not spec.public else CheckResult(spec.name, "1B", spec.description, Outcome.PASSED, spec.points, spec.points))
    part = PartResult("1B", "Logistic regression", sum(c.score for c in checks), 20, 0, tuple(checks))
    return GradingResult("csci145-ps6", "CSCI 145 Problem Set 6", "my.ipynb", "", 7, "now", 1.0, {}, (part,),
                         ExecutionSummary("completed", 1.0, 3), public_only=True)


def test_item2_terminal_lists_hidden_checks_as_running_at_grading_with_public_points():
    from graders.summary_table import format_result

    text = format_result(public_result())
    assert "14 of 14" in text and "passed" in text
    assert "· logreg_accuracy_on_held_back: runs at grading (6 points)" in text
    assert "total 14 of 14 public points; 6 more points run at grading" in text
    assert not re.search(r"partial|failed|✗", text), text


def test_item2_report_shows_hidden_checks_as_running_at_grading_not_failed():
    from graders.report import render_html_report

    html = render_html_report(public_result())
    part = html.split('id="part-1B"')[1]
    assert "runs at grading" in part and "14 of 14 public points" in part
    body = html.split("<body", 1)[1]
    assert "badge st-partial" not in body and "badge st-failed" not in body and "✗" not in body
    assert 'id="auto-score">14 of 14 public points<' in html


# ---------------------------------------------------------------------------------------------
# 3. The student bundle says what it is
# ---------------------------------------------------------------------------------------------
def test_item3_without_the_reference_grade_runs_public_checks_and_says_so_first(tmp_path, monkeypatch, capsys):
    import graders.grade
    from graders.cli import main

    monkeypatch.setattr(graders.grade, "reference_available", lambda assignment: False)
    path = tmp_path / "my.ipynb"
    path.write_text("not a notebook")
    assert main([str(path), "--assignment", "csci145-ps6", "--no-report"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].strip() == f"! {PUBLIC_COPY_NOTE}", out[:3]
    assert "Unknown assignment" not in "\n".join(out) and "The grader failed" not in "\n".join(out)


# ---------------------------------------------------------------------------------------------
# 10. No check says "exact" or "correct" about wrong values
# ---------------------------------------------------------------------------------------------
def test_item10_large_z_check_says_finite_and_defers_the_formula_to_the_autograd_check():
    wrong = {"sigmoid_derivative": lambda z: torch.sigmoid(torch.as_tensor(z)) * (1 + torch.sigmoid(torch.as_tensor(z)))}
    results = results_of(wrong, "2A")
    stable = results["sigmoid_derivative_stable_at_large_inputs"]
    assert stable.passed and "finite" in stable.description and "exact" not in stable.description
    assert "judged by the autograd check" in stable.description
    assert any("not σ(z)(1 − σ(z))" in w for w in stable.warnings)
    assert not results["sigmoid_derivative_matches_autograd"].passed
    for assignment in ("csci145-ps6", "ece685d-hw2"):
        for spec in get_assignment(assignment).rubric.checks:
            assert not re.search(r"\b(exact|exactly right|correct)\b", spec.description), spec.description


# ---------------------------------------------------------------------------------------------
# 11. A mistake hint speaks to what the student did
# ---------------------------------------------------------------------------------------------
def test_item11_catalogue_hints_state_what_the_code_does_not_ask_a_question():
    for text in [*kernel_mistakes(np.zeros((2, 3)), np.zeros((2, 3)), 1.0), *sigmoid_mistakes(np.zeros(3))]:
        assert text.startswith("your ") and "?" not in text, text
    assert "your kernel is exp(−‖x − x′‖²/σ²): the denominator should be 2σ², not σ²" in kernel_mistakes(np.zeros((1, 1)), np.zeros((1, 1)), 1.0)
    source = (REPO / "graders" / "assignments" / "csci145_ps6" / "rubric.py").read_text()
    hints = re.findall(r'mistake=f?"([^"]*)"', source)
    assert hints and not [h for h in hints if h.rstrip().endswith("?")]


# ---------------------------------------------------------------------------------------------
# 12. Reference material agrees with itself
# ---------------------------------------------------------------------------------------------
def reference_outputs() -> str:
    nb = nbformat.read(str(REPO / "reference" / "notebooks" / "csci145-ps6.ipynb"), as_version=4)
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


def test_item12_1D_answer_shows_one_table_of_measurements_and_matches_the_notebook():
    answer = (REPO / "reference" / "answers" / "csci145-ps6" / "1D.md").read_text()
    assert "ms / step" not in answer, "the measured table is the report's (reference/data/scaling_1d.json), not repeated in the answer"
    printed = reference_outputs()
    linear = re.search(r"train accuracy (0\.\d+), test accuracy (0\.\d+)", printed)
    kernel = re.search(r"loss [\d.]+ -> [\d.]+; train accuracy (0\.\d+), test accuracy (0\.\d+)", printed)
    assert linear and kernel
    assert linear.group(2) in answer and kernel.group(2) in answer, "the answer quotes the notebook's own accuracies"
    assert "0.86 test" not in answer


def test_item12_reference_notebook_timings_agree_with_the_scaling_table():
    import json

    scaling = json.loads((REPO / "reference" / "data" / "scaling_1d.json").read_text())
    table = {(r["n"], r["variant"]): 1e3 * r["seconds_per_step"] for r in scaling["rows"]}
    rows = re.findall(r"^\s*(\d+)\s+([\d.]+)\s+([\d.]+)\s+[\d.]+\s+[\d.]+\s*$", reference_outputs(), re.M)
    assert rows
    for n, pixel, kernel in rows:
        for variant, printed in (("pixel", float(pixel)), ("kernel", float(kernel))):
            measured = table[(int(n), variant)]
            assert measured / 4 <= printed <= measured * 4 + 1, (n, variant, printed, measured)


# ---------------------------------------------------------------------------------------------
# 13. Results that satisfy the contract but an expert would doubt carry a warning (no deduction)
# ---------------------------------------------------------------------------------------------
def test_item13_identical_depth_histories_are_warned_not_deducted():
    same = [2.0, 1.5, 1.2, 1.0]
    results = results_of({"train_losses": {d: same for d in (1, 2, 3)}, "test_losses": {d: [x + 0.1 for x in same] for d in (1, 2, 3)}}, "2C")
    present = results["depth_histories_present"]
    assert present.passed and any("identical training losses" in w for w in present.warnings)
    fine = results_of({"train_losses": {d: [2.0, 1.5 - d / 10, 1.0 - d / 10] for d in (1, 2, 3)},
                       "test_losses": {d: [2.1, 1.7, 1.4] for d in (1, 2, 3)}}, "2C")
    assert all(not r.warnings for r in fine.values())


def test_item13_a_barely_falling_logreg_loss_is_warned():
    flat = results_of({"logreg_losses": list(np.linspace(2.30, 2.25, 100))}, "1B")["logreg_losses_has_100_decreasing"]
    assert flat.passed and any("barely falls" in w for w in flat.warnings)
    good = results_of({"logreg_losses": list(2.3 * np.exp(-np.arange(100) / 30) + 0.2)}, "1B")["logreg_losses_has_100_decreasing"]
    assert good.passed and not good.warnings


def test_item13_an_oscillating_gradient_descent_and_a_slow_newton_are_warned():
    steps = np.arange(20)
    gd = list(100 * np.exp(-steps / 10) * (1 + 0.3 * (steps % 2)))
    newton = list(np.linspace(100, 80, 20))
    histories = {m: {"loss": loss, "accuracy": [0.95] * 20, "time": list(np.cumsum(np.full(20, 1e-3)))}
                 for m, loss in (("gd", gd), ("newton", newton), ("newton_diag", list(np.linspace(100, 30, 20))))}
    result = results_of({"histories": histories}, "P3")["loss_decreases_for_each_method"]
    assert result.passed
    assert any("gradient-descent loss rises" in w for w in result.warnings)
    assert any("Newton's method ends at a higher loss" in w for w in result.warnings)


def test_item12_a_written_part_worth_no_points_is_never_not_scored_yet(tmp_path):
    """2C's observation is self-graded for 0 points: scoring 1D alone leaves nothing pending."""
    from graders.pdf import CHROMIUM_ARGS, find_chromium
    from graders.report import render_html_report

    chromium = find_chromium()
    if chromium is None:
        pytest.skip("chromium is not installed")
    playwright_api = pytest.importorskip("playwright.sync_api")
    parts = (PartResult("1D", "Summary", 0, 0, 5, (), answer_markdown="The pixel model is faster."),
             PartResult("2C", "Empirical comparison", 0, 15, 0, (), answer_markdown="Depth 3 overfits."))
    result = GradingResult("csci145-ps6", "CSCI 145 Problem Set 6", "my.ipynb", "", 7, "now", 1.0, {}, parts,
                           ExecutionSummary("completed", 1.0, 3), public_only=True)
    page_path = tmp_path / "report.html"
    page_path.write_text(render_html_report(result), encoding="utf-8")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=list(CHROMIUM_ARGS))
        page = browser.new_page()
        page.goto(page_path.resolve().as_uri())
        assert page.locator("#self-pending").inner_text().strip() == "1 of 1 self-graded part(s) not scored yet."
        page.check('input[name="sg-1D"][value="10"]')
        assert page.locator("#self-pending").inner_text().strip() == "All self-graded parts scored."
        browser.close()
