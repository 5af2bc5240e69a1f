"""Judge: run each registered claim against the observations, in the grader process.

Reference solutions are imported here and only here (and never in public-only mode). A check
that raises :class:`CheckFailure` fails with its message; a check that raises anything else is
*errored*, scores zero and keeps the traceback as instructor detail. Nothing fails open.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np

from graders.assignment import ObservedKey
from graders.checks import CheckFailure, CheckSpec, Rubric, fail, not_run
from graders.execute import ExecutedNotebook
from graders.kernel.naming import name_relates
from graders.kernel_session import CellRun
from graders.observe import FigureRecord, Found, Observations, PartObservation, cells_defining
from graders.outcome import CheckResult, Outcome
from graders.result import GradedObject


@dataclass
class JudgeContext:
    """What a check body can see: observations, hidden inputs, the reference, and a warning pad."""

    part_id: str
    observations: Observations
    hidden: dict[str, dict[str, Any]]
    """Part id → the hidden inputs the grader drew (and kept) for it."""
    executed: ExecutedNotebook
    part_cells: dict[str, list[int]]
    reference: Any
    """The assignment's reference module, or None in public-only mode."""
    thresholds: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    check: CheckSpec | None = None
    """The check running now: its ``observes`` declaration is what it may read."""
    undeclared: list[str] = field(default_factory=list)
    """Keys the running check read without declaring them (an authoring bug, told to the instructor)."""

    # -------------------------------------------------------------- access
    @property
    def obs(self) -> PartObservation:
        return self.obs_of(self.part_id)

    def obs_of(self, part_id: str) -> PartObservation:
        observation = self.observations.part(part_id)
        return WatchedObservation(observation, self) if self.check is not None else observation

    def note_read(self, part_id: str, key: str) -> None:
        """Remember a read the running check did not declare (see :mod:`graders.assignment`)."""
        check = self.check
        if check is None or key in RESERVED_KEYS:
            return
        declared = (ObservedKey.parse(text, check.part) for text in check.observes)
        if not any(d.part == part_id and d.matcher().match(key) for d in declared):
            note = f"{part_id}:{key}"
            if note not in self.undeclared:
                self.undeclared.append(note)

    def inputs(self, part_id: str | None = None) -> dict[str, Any]:
        return self.hidden.get(part_id or self.part_id, {})

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    def ref(self) -> Any:
        if self.reference is None:
            not_run("this check compares with the reference solution; it runs when your work is graded")
        return self.reference

    # -------------------------------------------------------------- requirements
    def require(self, contract: str, part_id: str | None = None) -> Found:
        """The student's object for ``contract``, or a NOT_RUN saying why it could not be graded."""
        obs = self.obs_of(part_id or self.part_id)
        if obs.status != "ok":
            not_run(f"the grader could not inspect `{contract}`: {obs.problem}")
        found = obs.found(contract)
        if found.found_as is None:
            not_run(self.missing_message(contract, found))
        if found.how == "discovered" and not name_relates(contract, found.found_as):
            self.warn(f"`{found.found_as}` was graded as `{contract}` because {found.reason}, although the two names "
                      f"share nothing: if it is not your `{contract}`, define `{contract}` under that name.")
        return found

    def missing_message(self, contract: str, found: Found) -> str:
        text = f"`{contract}` is not defined in your notebook"
        if found.how == "ambiguous":
            text = f"`{contract}` is not defined, and {found.reason.split(';')[0]}"
        if found.how == "placeholder":
            return f"`{contract}` is still None, the template's placeholder: assign your own object to it."
        crashed = self.crashed_cells_defining(contract)
        if crashed:
            run = crashed[0]
            text += f" (cell {run.index + 1}, which defines it, raised {run.summary})"
        else:
            names = sorted(n["name"] for n in self.observations.defined_names)[:25]
            if names:
                text += f". Names your notebook defines: {', '.join(names)}"
        return text + "."

    def crashed_cells_defining(self, name: str) -> list[CellRun]:
        defining = set(cells_defining(self.executed.notebook, name))
        return [r for r in self.executed.runs if r.index in defining and r.status != "ok"]

    def array(self, key: str, what: str, part_id: str | None = None) -> np.ndarray:
        """An array the probe saved, or a NOT_RUN explaining the error the student's code raised."""
        obs = self.obs_of(part_id or self.part_id)
        value = obs.array(key)
        if value is not None:
            return value
        error = obs.error(key)
        if error:
            not_run(f"calling {what} raised {error.get('type')}: {error.get('message')}", detail=error.get("traceback"))
        not_run(f"{what} produced no array the grader could read")

    def require_threshold(self, key: str, value: float, what: str, mistake: str | None = None) -> None:
        """Fail unless ``value`` reaches the calibrated threshold ``key``, printed beside it."""
        threshold = self.thresholds[key]
        if value < threshold.value:
            fail(f"{what} is {value:.3f}, below {threshold.describe()}.",
                 expected=f"≥ {threshold.value:.2f}", got=f"{value:.3f}", mistake=mistake)

    def call_error(self, key: str, part_id: str | None = None) -> dict[str, str] | None:
        return self.obs_of(part_id or self.part_id).error(key)

    def find_figures(self, satisfies: Callable[[list[FigureRecord]], bool]) -> bool:
        """Whether the figures this part displayed satisfy ``satisfies``.

        A figure counts only where the grader itself saw the notebook display an image: a cell of
        this part (under its heading) with at least as many image outputs as figures recorded for
        it. What the kernel reports about a figure describes it; it never proves one was drawn.
        A notebook without part headings has all of its cells counted as every part's.
        """
        cells = set(self.part_cells.get(self.part_id, []))
        shown = displayed_figures(self.observations)
        mine = [f for f in shown if not cells or f.cell in cells]
        if satisfies(mine):
            return True
        elsewhere = [f for f in shown if f not in mine]
        if elsewhere and satisfies(elsewhere):
            where = ", ".join(str(f.cell + 1) for f in elsewhere if f.cell is not None)
            self.warn(f"a figure like this was drawn in cell {where}, outside the cells under the {self.part_id} "
                      "heading; a figure earns points in its own part only.")
        unshown = [f for f in self.observations.figures if f not in shown]
        if unshown and satisfies(unshown):
            self.warn("a figure like this was drawn but never displayed as an image (its cell raised before showing it, "
                      "or it was closed unshown); a figure counts only when the notebook shows it.")
        return False


def displayed_figures(observations: Observations) -> list[FigureRecord]:
    """The recorded figures whose cell really displayed that many images (all of them in a local check)."""
    if observations.local:
        return list(observations.figures)
    shown, used = [], {}
    for figure in observations.figures:
        if figure.cell is None:
            continue
        used[figure.cell] = used.get(figure.cell, 0) + 1
        if used[figure.cell] <= observations.image_outputs.get(figure.cell, 0):
            shown.append(figure)
    return shown


class WatchedObservation(PartObservation):
    """A part's observation as a check sees it: every keyed read is compared with the check's ``observes``."""

    def __init__(self, observation: PartObservation, ctx: JudgeContext) -> None:
        super().__init__(observation.part, observation.values, observation.arrays, observation.status, observation.problem)
        self._ctx = ctx

    def array(self, key: str) -> np.ndarray | None:
        self._ctx.note_read(self.part, key)
        return super().array(key)

    def error(self, key: str) -> dict[str, str] | None:
        self._ctx.note_read(self.part, key)
        return super().error(key)

    def get(self, key: str, default: Any = None) -> Any:
        self._ctx.note_read(self.part, key)
        return super().get(key, default)


RESERVED_KEYS = frozenset({"found", "errors", "arrays"})
"""Keys every probe writes through its toolkit (objects found, call errors, saved arrays): not declared."""


def run_check(spec: CheckSpec, ctx: JudgeContext) -> CheckResult:
    """Run one claim; map its ending to a closed :class:`Outcome`."""
    ctx.warnings, ctx.check, ctx.undeclared = [], spec, []
    try:
        result = _run_body(spec, ctx)
    finally:
        ctx.check = None
    if ctx.undeclared:  # instructor-only: the check works, but its declaration is incomplete
        note = (f"authoring bug: {spec.name} read {', '.join(ctx.undeclared)} without declaring it in `observes` "
                "(docs/authoring.md)")
        result = replace(result, detail=f"{result.detail}\n{note}" if result.detail else note)
    return result


def _run_body(spec: CheckSpec, ctx: JudgeContext) -> CheckResult:
    base = dict(
        name=spec.name,
        part=spec.part,
        description=spec.description,
        max_score=spec.points,
        hidden_inputs=spec.hidden_inputs,
        visibility=spec.visibility,
    )
    try:
        spec.body(ctx)
    except CheckFailure as failure:
        return CheckResult(
            **base,
            outcome=failure.outcome,
            score=0.0,
            message=failure.message + _graded_as_note(failure.message, ctx.obs),
            expected=failure.expected,
            got=failure.got,
            mistake=failure.mistake or (spec.hint if failure.outcome is Outcome.FAILED else None),
            warnings=tuple(ctx.warnings),
            detail=failure.detail,
        )
    except Exception as error:  # noqa: BLE001 - a grader bug must not crash grading
        return CheckResult(
            **base,
            outcome=Outcome.ERRORED,
            score=0.0,
            message="The grader could not evaluate this check; your instructor has the details.",
            detail="".join(traceback.format_exception(type(error), error, error.__traceback__))[-6000:],
        )
    return CheckResult(**base, outcome=Outcome.PASSED, score=spec.points, warnings=tuple(ctx.warnings))


def _graded_as_note(message: str, obs: PartObservation) -> str:
    """Say which object stood in for a contract name the message mentions (alias or discovery)."""
    notes = []
    for contract, info in (obs.values.get("found") or {}).items():
        if isinstance(info, dict) and info.get("how") in ("alias", "discovered") and f"{contract}" in message:
            notes.append(f" (graded `{info.get('found_as')}` as `{contract}`: {info.get('reason')})")
    return "".join(notes[:2])


AT_GRADING_MESSAGE = "Runs at grading: a hidden check, not run by the public checks (neither passed nor failed)."
"""What a hidden check says in public mode: it did not run, so it neither passed nor failed."""


PUBLIC_COPY_NOTE = ("This copy grades public checks only (it holds no reference solutions): hidden checks run when you "
                    "submit; `grade --public NOTEBOOK` does the same on purpose.")
"""The one line ``grade`` says, first, where the assignment's ``reference_module`` cannot be imported (the student bundle)."""


def judge_part(rubric: Rubric, part_id: str, ctx: JudgeContext, public_only: bool) -> list[CheckResult]:
    results = []
    for spec in rubric.checks_for(part_id):
        if public_only and not spec.public:
            results.append(
                CheckResult(
                    name=spec.name, part=spec.part, description=spec.description, outcome=Outcome.AT_GRADING,
                    score=0.0, max_score=spec.points,
                    message=AT_GRADING_MESSAGE,
                    hidden_inputs=spec.hidden_inputs, visibility=spec.visibility,
                )
            )
            continue
        results.append(run_check(spec, ctx))
    return results


def graded_objects(obs: PartObservation) -> tuple[GradedObject, ...]:
    found = obs.values.get("found", {}) if isinstance(obs.values.get("found"), dict) else {}
    return tuple(
        GradedObject(
            contract_name=str(name),
            found_as=info.get("found_as") if isinstance(info, dict) else None,
            how=str(info.get("how", "missing")) if isinstance(info, dict) else "missing",
            reason=str(info.get("reason", ""))[:300] if isinstance(info, dict) else "",
        )
        for name, info in list(found.items())[:20]
    )


def relative_error(got: np.ndarray, expected: np.ndarray) -> float:
    """‖got − expected‖ / ‖expected‖ in float64 (absolute when the reference is zero)."""
    got = np.asarray(got, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if got.shape != expected.shape:
        return float("inf")
    if not np.all(np.isfinite(got)):
        return float("inf")
    scale = np.linalg.norm(expected)
    diff = np.linalg.norm(got - expected)
    return float(diff / scale) if scale > 0 else float(diff)


def name_mistake(
    got: np.ndarray, candidates: dict[str, Callable[[], np.ndarray]], rtol: float
) -> str | None:
    """The first catalogued wrong formula that reproduces what the student returned."""
    for description, make in candidates.items():
        try:
            wrong = make()
        except Exception:  # noqa: BLE001 - a catalogue entry that cannot apply is skipped
            continue
        if np.shape(wrong) == np.shape(got) and relative_error(got, wrong) <= rtol:
            return description
    return None


def shape_text(array: np.ndarray | tuple) -> str:
    shape = array.shape if hasattr(array, "shape") else tuple(array)
    return "×".join(str(s) for s in shape) if len(shape) else "scalar"
