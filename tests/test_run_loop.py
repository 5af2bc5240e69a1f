"""The run loop of graders/execute.py on a stand-in session (no kernel): statuses and kill reasons are types.

Why a cell's kernel was killed is a :class:`KillReason`, never text read back from a message: a
cell whose error *says* "time budget" is not taken for the watchdog's kill.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import nbformat

from graders.config import Limits
from graders.execute import ExecutionStatus, execute_notebook
from graders.kernel_session import CellRun, CellStatus, KillReason


@dataclass
class StandInSession:
    """Plays back one scripted :class:`CellRun` per code cell; counts restarts."""

    script: dict[int, CellRun]
    notebook: nbformat.NotebookNode = field(default_factory=lambda: nbformat.v4.new_notebook())
    deadline: float = float("inf")
    client: None = None
    restarts: int = 0

    def __post_init__(self) -> None:
        self.notebook.cells = [nbformat.v4.new_code_cell(f"x = {i}") for i in range(len(self.script))]

    def run_cell(self, index: int, timeout: float) -> CellRun:
        run = self.script[index]
        if self.restarts and run.status == CellStatus.KILLED:
            return CellRun(index, CellStatus.OK)
        return run

    def stop_if_unresponsive(self, reason: str) -> bool:
        return False

    def restart(self) -> None:
        self.restarts += 1


def killed(index: int, reason: KillReason | None, text: str) -> CellRun:
    return CellRun(index, CellStatus.KILLED, 0.1, "DeadKernel", text, killed_for=reason)


def test_a_kill_for_the_time_budget_ends_the_run_without_a_restart():
    session = StandInSession({0: CellRun(0, CellStatus.OK), 1: killed(1, KillReason.TIME_BUDGET, "out of time"), 2: CellRun(2, CellStatus.OK)})
    executed = execute_notebook(session, Limits())
    assert executed.status == ExecutionStatus.TIMED_OUT and session.restarts == 0
    assert [r.status for r in executed.runs] == [CellStatus.OK, CellStatus.KILLED, CellStatus.SKIPPED]


def test_a_death_whose_message_mentions_the_time_budget_is_still_a_death():
    session = StandInSession({0: killed(0, None, "segfault while checking the time budget"), 1: CellRun(1, CellStatus.OK)})
    executed = execute_notebook(session, Limits())
    assert executed.status == ExecutionStatus.COMPLETED and session.restarts == 1
    assert "restarted" in executed.notes[0] and executed.restarts == 1


def test_statuses_are_written_as_their_plain_values():
    session = StandInSession({0: killed(0, KillReason.MEMORY, "too much memory")})
    executed = execute_notebook(session, Limits())
    assert json.dumps([executed.status, executed.runs[0].status]) == '["completed", "killed"]'
    assert executed.runs[0].evalue == "too much memory; skipped when the notebook was re-run"
    assert f"{CellStatus.TIMEOUT}" == "timeout" and str(ExecutionStatus.TIMED_OUT) == "timed_out"
