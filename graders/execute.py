"""Execute: run a student's notebook with nbclient in a confined kernel, and never judge it.

:func:`execute_notebook` runs the submitted cells one by one through a
:class:`graders.kernel_session.KernelSession`: a cell that raises does not stop the run; a cell
that exceeds its timeout is interrupted; a kernel that dies is restarted once and the notebook
re-run with the fatal cell skipped; the session's watchdog ends the run when the notebook's time
budget is spent. The pieces live in their own modules: the folders and the sandbox uid in
:mod:`graders.workspace`, process accounting in :mod:`graders.processes`, the kernel, its
watchdog and the prelude in :mod:`graders.kernel_session`.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field

from nbformat import NotebookNode

from graders.config import Limits
from graders.kernel_session import (  # re-exported: the names callers have always imported from here
    TIMEOUT_ENAME,
    TRUNCATION_NOTE,
    CappedClient,
    CellRun,
    CellStatus,
    KernelSession,
    KillReason,
    OutputTail,
    text_size,
)
from graders.processes import describe_exit, kill_processes, processes_of, read_private_kb
from graders.workspace import Workspace, claim_uid, hidden_directories, python_installation

__all__ = [
    "TIMEOUT_ENAME", "CappedClient", "CellRun", "CellStatus", "ExecutedNotebook", "ExecutionStatus", "KernelSession",
    "KillReason", "OutputTail", "Workspace", "claim_uid", "describe_exit", "execute_notebook", "hidden_directories",
    "kill_processes", "processes_of", "python_installation", "read_private_kb", "student_code_cells", "text_size",
]


class ExecutionStatus(str, enum.Enum):
    """How the whole run ended; the value is what results and reports write."""

    COMPLETED = "completed"
    TIMED_OUT = "timed_out"
    """The notebook's total time budget ran out."""

    def __str__(self) -> str:
        return self.value


@dataclass
class ExecutedNotebook:
    """The notebook after execution (outputs capped) and what happened to each cell."""

    notebook: NotebookNode
    runs: list[CellRun]
    duration: float
    status: ExecutionStatus = ExecutionStatus.COMPLETED
    restarts: int = 0
    notes: list[str] = field(default_factory=list)


def execute_notebook(session: KernelSession, limits: Limits) -> ExecutedNotebook:
    """Run every code cell; restart once after a fatal cell and re-run without it."""
    started = time.monotonic()
    session.deadline = started + limits.total_timeout
    code_cells = student_code_cells(session.notebook)
    fatal: dict[int, CellRun] = {}
    notes: list[str] = []
    while True:
        runs, died = _run_cells(session, code_cells, fatal, limits)
        if died is None or len(fatal) >= 1 or time.monotonic() > session.deadline:
            break
        fatal[died.index] = died
        notes.append(
            f"The kernel died in cell {died.index + 1} ({died.evalue}); it was restarted and the notebook "
            "re-run without that cell."
        )
        session.restart()
    ran_out = time.monotonic() > session.deadline or _budget_killed(runs)
    status = ExecutionStatus.TIMED_OUT if ran_out else ExecutionStatus.COMPLETED
    if died is not None and len(fatal) >= 1:
        notes.append(f"The kernel died again in cell {died.index + 1} ({died.evalue}); the cells after it were not run.")
    notes.extend(_truncation_notes(session, limits))
    return ExecutedNotebook(session.notebook, runs, time.monotonic() - started, status, len(fatal), notes)


def _truncation_notes(session: KernelSession, limits: Limits) -> list[str]:
    """Which cells lost output, to the grader's cap or to the kernel's (which leaves its note in the output)."""
    cells = set(session.client.truncated_cells) if session.client is not None else set()
    for index, cell in enumerate(session.notebook.cells):
        if any(TRUNCATION_NOTE in str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
               for o in cell.get("outputs", [])):
            cells.add(index)
    cells = sorted(cells)
    if not cells:
        return []
    listed = ", ".join(str(i + 1) for i in cells[:10]) + (" …" if len(cells) > 10 else "")
    return [f"Cell{'s' if len(cells) > 1 else ''} {listed} printed more than {limits.max_output_chars:,} characters "
            "(or the notebook more than {:,}); the rest of the output was not kept.".format(limits.max_output_total_chars)]


def student_code_cells(notebook: NotebookNode) -> list[int]:
    return [i for i, c in enumerate(notebook.cells) if c.cell_type == "code" and c.source.strip()]


def _budget_killed(runs: list[CellRun]) -> bool:
    return any(r.status == CellStatus.KILLED and r.killed_for is KillReason.TIME_BUDGET for r in runs)


def _run_cells(
    session: KernelSession, code_cells: list[int], fatal: dict[int, CellRun], limits: Limits
) -> tuple[list[CellRun], CellRun | None]:
    """Run ``code_cells`` in order, the fatal ones excepted; the run that killed the kernel, if any."""
    runs: list[CellRun] = []
    for position, index in enumerate(code_cells):
        if index in fatal:
            first = fatal[index]
            runs.append(CellRun(index, first.status, first.duration, first.ename,
                                f"{first.evalue}; skipped when the notebook was re-run"))
            continue
        if time.monotonic() >= session.deadline:
            runs.extend(CellRun(i, CellStatus.SKIPPED, evalue="not run: the notebook's time budget was used up") for i in code_cells[position:])
            break
        run = session.run_cell(index, limits.cell_timeout)
        runs.append(run)
        if run.status == CellStatus.KILLED:
            rest = code_cells[position + 1 :]
            runs.extend(CellRun(i, CellStatus.SKIPPED, evalue=f"not run: the kernel had died in cell {index + 1}") for i in rest)
            return runs, (None if run.killed_for is KillReason.TIME_BUDGET else run)
        if run.status == CellStatus.TIMEOUT and session.stop_if_unresponsive("the kernel did not respond after a cell timed out"):
            run.evalue = f"{run.evalue}; the kernel did not respond to the interrupt and was restarted"
            rest = code_cells[position + 1 :]
            runs.extend(CellRun(i, CellStatus.SKIPPED, evalue="not run: the kernel hung") for i in rest)
            return runs, run
    return runs, None
