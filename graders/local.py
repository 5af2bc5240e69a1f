"""A student's local checks: ``from graders import check; check(PART)`` in the live notebook.

The same machinery as grading, run in-process against the student's live namespace: the
assignment's kernel-side probe (``graders/kernel/runtime.py`` + the probe text its package declares,
:meth:`graders.assignment.AssignmentSpec.probe_source`) calls the student's objects on freshly drawn inputs and
writes what came back into a temporary exchange directory; the part's *public* checks then judge
that data through :func:`graders.judge.judge_part` with no reference solution. Hidden checks are
listed but not run: they compare with the reference, which only the instructor has.

Nothing here changes the student's session: random-number states, ``torch`` grad mode and the
train/eval flags of their modules are restored after the probe ran. Figures are seen only when
they were drawn after ``graders.local`` was first imported (the first check cell), because the
recorder that sees them is installed then.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import inspect
import random
import secrets
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import nbformat

from graders.check_text import Audience, describe_check
from graders.checks import Rubric
from graders.execute import ExecutedNotebook
from graders.judge import JudgeContext, judge_part
from graders.kernel import kernel_source
from graders.observe import FigureRecord, Observations, PartObservation, read_part_directory, write_inputs
from graders.outcome import CheckResult
from graders.parts import assignment_markers
from graders.assignment import AssignmentSpec
from graders.registry import get_assignment, part_owners, sent_to_kernel
from graders.thresholds import thresholds_for

PROBE_CALL_TIMEOUT = 60.0
"""Seconds one call of the student's code may take inside a local probe."""
MAX_VALUES_BYTES = 8 * 1024 * 1024


class LocalCheckError(ValueError):
    """``check()`` was called in a way it cannot answer (unknown part, unknown assignment)."""


@dataclass(frozen=True)
class PartReport:
    """The public checks of one part, run on the live namespace, and the hidden ones not run."""

    part_id: str
    title: str
    results: tuple[CheckResult, ...]
    hidden: int
    """How many of the part's checks are hidden (run only when the notebook is graded)."""
    self_graded: bool


def check(part: str | None = None, *, assignment: str | None = None) -> None:
    """Run the public checks of ``part`` (all parts when None) on this notebook's objects, and print them.

    ``assignment`` is only needed when it cannot be told from the part id or the names defined.
    """
    namespace = user_namespace()
    try:
        reports = run_local_checks(namespace, part, assignment)
    except LocalCheckError as error:
        print(f"check: {error}")
        return
    print(format_reports(reports, figures_seen=bool(recorded_figures())))


def run_local_checks(namespace: dict[str, Any], part: str | None = None, assignment: str | None = None) -> list[PartReport]:
    """Observe and judge the public checks of ``part`` (or every part) against ``namespace``."""
    spec = resolve_assignment(namespace, part, assignment)
    rubric = spec.rubric
    part_ids = [part.upper()] if part else [p.id for p in rubric.parts]
    unknown = [p for p in part_ids if p not in {q.id for q in rubric.parts}]
    if unknown:
        raise LocalCheckError(f"{', '.join(unknown)} is not a part of {spec.id} (parts: {', '.join(p.id for p in rubric.parts)}).")
    hidden = session_inputs(spec.id)
    # a part whose checks read another part's observations (declared by their ``observes``) observes it too
    observed = tuple(dict.fromkeys(q for p in part_ids for q in (*spec.observed_with(p), p)))
    with tempfile.TemporaryDirectory(prefix="nbgrade-check-") as exchange:
        observations = observe_namespace(namespace, spec, observed, hidden, Path(exchange))
        return [judge_locally(rubric, pid, observations, hidden, namespace) for pid in part_ids]


# ---------------------------------------------------------------------------------------------
# Where the student's objects are, and which assignment they answer
# ---------------------------------------------------------------------------------------------
def user_namespace() -> dict[str, Any]:
    """The IPython user namespace; outside IPython, the globals of whoever called :func:`check`."""
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:
        shell = None
    if shell is not None:
        return shell.user_ns
    frame = inspect.currentframe()
    while frame is not None and frame.f_globals.get("__name__") == __name__:
        frame = frame.f_back
    return frame.f_globals if frame is not None else {}


def resolve_assignment(namespace: dict[str, Any], part: str | None, assignment: str | None) -> AssignmentSpec:
    """The assignment named, else the one the part id belongs to, else the one whose names are defined."""
    if assignment is None and part is not None:
        owners = part_owners()
        assignment = owners.get(part.upper())
        if assignment is None:
            raise LocalCheckError(f"unknown part {part!r}; parts are {', '.join(owners)}.")
    if assignment is None:
        scores = {a: sum(m in namespace for m in markers) for a, markers in assignment_markers().items()}
        assignment = max(scores, key=scores.get)
        if scores[assignment] == 0:
            first = next(iter(part_owners()), "PART")
            raise LocalCheckError(f"none of the assignment's names is defined yet: name a part, e.g. check(\"{first}\").")
    return get_assignment(assignment)


@functools.lru_cache(maxsize=4)
def session_inputs(assignment_id: str) -> dict[str, dict[str, Any]]:
    """Inputs drawn once per session from a fresh seed (grading draws its own, from another seed)."""
    from graders.mnist import ensure_mnist

    spec = get_assignment(assignment_id)
    return spec.hidden_inputs(secrets.randbelow(2**31), ensure_mnist().root)


# ---------------------------------------------------------------------------------------------
# Observe: the real kernel-side probes, run in-process on the live namespace
# ---------------------------------------------------------------------------------------------
def observe_namespace(
    namespace: dict[str, Any], spec: AssignmentSpec, part_ids: tuple[str, ...], hidden: dict[str, dict[str, Any]], exchange: Path
) -> Observations:
    """Run each part's probe against ``namespace``; read back what it wrote, as data."""
    source = kernel_source("runtime") + "\n" + spec.probe_source() + "\n"
    probe_ns: dict[str, Any] = {"__name__": "__nbgrade__", "USER_NS": namespace}
    exec(compile(source, f"<nbgrade local probes {spec.id}>", "exec"), probe_ns)  # noqa: S102 - our own kernel-side text
    probed = tuple(p for p in part_ids if f"probe_{p}" in probe_ns)
    inputs = sent_to_kernel(hidden, probed)
    parts: dict[str, PartObservation] = {}
    with preserved_session_state(namespace):
        for pid in probed:
            (exchange / "inputs").mkdir(exist_ok=True)
            write_inputs(exchange / "inputs" / pid, inputs[pid])
            outputs = exchange / "outputs" / pid
            probe_ns["run_probe"](namespace, str(exchange / "inputs" / pid), str(outputs), pid, probe_ns[f"probe_{pid}"],
                                  PROBE_CALL_TIMEOUT)
            parts[pid] = read_part_directory(pid, outputs)
    figures = [FigureRecord(None, str(r.get("suptitle", "")), tuple(r.get("axes", ())), tuple(r.get("texts", ())))
               for r in recorded_figures()]
    return Observations(parts, figures, probe_ns["defined_names"](namespace), local=True)


@contextlib.contextmanager
def preserved_session_state(namespace: dict[str, Any]) -> Iterator[None]:
    """Restore random states, grad mode and modules' train/eval flags that the probes may change."""
    python_state = random.getstate()
    numpy_state = _numpy_state()
    torch = sys.modules.get("torch")
    torch_state = torch.random.get_rng_state() if torch is not None else None
    grad_enabled = torch.is_grad_enabled() if torch is not None else None
    modes = _module_modes(namespace, torch)
    try:
        yield
    finally:
        random.setstate(python_state)
        if numpy_state is not None:
            sys.modules["numpy"].random.set_state(numpy_state)
        if torch is not None:
            torch.random.set_rng_state(torch_state)
            torch.set_grad_enabled(grad_enabled)
        for module, training in modes:
            module.training = training


def _numpy_state() -> Any:
    numpy = sys.modules.get("numpy")
    return numpy.random.get_state() if numpy is not None else None


def _module_modes(namespace: dict[str, Any], torch: Any) -> list[tuple[Any, bool]]:
    if torch is None:
        return []
    modules = [v for v in list(namespace.values()) if isinstance(v, torch.nn.Module)]
    return [(sub, sub.training) for module in modules for sub in module.modules()]


# ---------------------------------------------------------------------------------------------
# Figures drawn in this session (the grader's prelude records them in a graded kernel)
# ---------------------------------------------------------------------------------------------
PRELUDE_FIGURE_FUNCTIONS = ("figure_recorder", "_hook_matplotlib", "describe_figure")
"""The functions of the kernel prelude (``graders/kernel/prelude.py``) that record figures: a local check
records the student's figures with the very code a graded kernel runs."""
_RECORDED: list[Callable[[], list[dict[str, Any]]]] = []
"""The installed recorder's list of figure descriptions (empty until :func:`install_figure_recorder` ran)."""


def recorded_figures() -> list[dict[str, Any]]:
    return _RECORDED[0]() if _RECORDED else []


def prelude_figure_recorder(shell: Any) -> dict[str, Any]:
    """The prelude's figure-recording functions, compiled alone in a private namespace bound to ``shell``.

    Only these function definitions are taken from the prelude's text: the rest of it (seeds,
    output caps, the replaced ``input()``) belongs to a graded kernel, not to a student's session.
    """
    tree = ast.parse(kernel_source("prelude"))
    tree.body = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name in PRELUDE_FIGURE_FUNCTIONS]
    namespace: dict[str, Any] = {"__name__": "__nbgrade_figures__", "sys": sys, "get_ipython": lambda: shell}
    exec(compile(tree, "<nbgrade prelude figures>", "exec"), namespace)  # noqa: S102 - our own kernel-side text
    return namespace


def install_figure_recorder(shell: Any = None) -> None:
    """Record every figure this session shows, saves or closes from now on, as the prelude does in a graded kernel.

    The inline backend closes a figure as soon as it is shown, so the record is taken when
    matplotlib destroys a figure, and at the end of each cell for figures still open.
    """
    if _RECORDED:
        return
    try:
        import matplotlib  # noqa: F401 - the recorder hooks matplotlib's figure manager
        from IPython import get_ipython
    except ImportError:
        return
    shell = shell if shell is not None else get_ipython()
    if shell is None:
        return
    figures, hook_matplotlib = prelude_figure_recorder(shell)["figure_recorder"]()
    hook_matplotlib(None)
    _RECORDED.append(figures)


# ---------------------------------------------------------------------------------------------
# Judge: the public checks, with no reference solution
# ---------------------------------------------------------------------------------------------
def history_notebook(namespace: dict[str, Any]) -> ExecutedNotebook:
    """The session's executed inputs as a notebook, so messages can name the cell that defines a name."""
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(str(source)) for source in list(namespace.get("In", []))[1:]]
    return ExecutedNotebook(notebook, [], 0.0)


def judge_locally(rubric: Rubric, part_id: str, observations: Observations, hidden: dict, namespace: dict[str, Any]) -> PartReport:
    ctx = JudgeContext(part_id, observations, hidden, history_notebook(namespace), {}, None, thresholds_for(get_assignment(rubric.assignment)))
    results = judge_part(rubric, part_id, ctx, public_only=True)
    spec = rubric.part(part_id)
    public = tuple(r for r, c in zip(results, rubric.checks_for(part_id)) if c.public)
    return PartReport(part_id, spec.title, public, len(results) - len(public), bool(spec.self_graded_points))


# ---------------------------------------------------------------------------------------------
# Report: a short pass/fail list
# ---------------------------------------------------------------------------------------------
def format_reports(reports: list[PartReport], figures_seen: bool = True) -> str:
    lines: list[str] = []
    for report in reports:
        passed = sum(r.passed for r in report.results)
        if report.results:
            lines.append(f"{report.part_id} · {report.title}: {passed}/{len(report.results)} public checks passed")
        else:
            lines.append(f"{report.part_id} · {report.title}: no public checks")
        for result in report.results:
            lines.append(describe_check(result, Audience.NOTEBOOK))
        notes = []
        if report.hidden:
            notes.append(f"{report.hidden} more check{'s' if report.hidden > 1 else ''} (hidden) run when your notebook is graded")
        if report.self_graded:
            notes.append("the written part is self-graded against the solution")
        if notes:
            lines.append("  (" + "; ".join(notes) + ")")
    if not figures_seen and any("figure" in r.description for rep in reports for r in rep.results if not r.passed):
        lines.append("No figure has been recorded yet: figures are seen from the first `from graders import check` on; "
                     "re-run the cells that draw them, then check again.")
    return "\n".join(lines)


install_figure_recorder()
