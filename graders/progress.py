"""Batch progress: a one-line bar (count, scores so far, ETA) on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO

BAR_WIDTH = 24


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class BatchProgress:
    """Counts finished submissions and prints their scores as they arrive.

    The ETA is the remaining count times the observed time per finished submission (wall clock
    of this run, so it already accounts for the number of workers); it is shown once one
    submission has finished.
    """

    def __init__(self, total: int, skipped: int = 0, stream: TextIO | None = None, tty: bool | None = None) -> None:
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self.total = total
        self.done = 0
        self.skipped = skipped
        self.scores: list[float] = []
        self.max_score = 0.0
        self.problems = 0
        self.started = time.monotonic()

    def start(self) -> None:
        todo = self.total - self.skipped
        note = f" ({self.skipped} already graded, skipped)" if self.skipped else ""
        self._line(f"grading {todo} of {self.total} submissions{note}")

    def update(self, item_id: str, score: float, max_score: float, status: str, seconds: float) -> None:
        self.done += 1
        self.scores.append(score)
        self.max_score = max(self.max_score, max_score)
        self.problems += status != "graded"
        if self.tty:
            self._bar(item_id, score, max_score, status)
        else:
            self._line(f"[{self.done}/{self.total - self.skipped}] {item_id}: {score:g}/{max_score:g} {status} "
                       f"in {seconds:.1f} s{self._eta_text()}")

    def finish(self) -> None:
        if self.tty and self.done:
            self.stream.write("\n")
            self.stream.flush()

    @property
    def eta(self) -> float | None:
        if not self.done:
            return None
        remaining = self.total - self.skipped - self.done
        return (time.monotonic() - self.started) / self.done * remaining

    def _eta_text(self) -> str:
        eta = self.eta
        return f", ETA {format_duration(eta)}" if eta is not None and self.done < self.total - self.skipped else ""

    def _bar(self, item_id: str, score: float, max_score: float, status: str) -> None:
        todo = max(1, self.total - self.skipped)
        filled = int(BAR_WIDTH * self.done / todo)
        mean = sum(self.scores) / len(self.scores)
        problems = f" · {self.problems} not graded cleanly" if self.problems else ""
        text = (f"\r[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {self.done}/{todo} · mean {mean:.1f}/{self.max_score:g}"
                f" · last {item_id[:24]} {score:g} {status}{problems}{self._eta_text()}")
        self.stream.write(text[:160] + "\x1b[K")
        self.stream.flush()

    def _line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()
