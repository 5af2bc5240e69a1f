"""Typed configuration, built once at the boundary (CLI, TOML, API call) and passed as objects."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path


@dataclass(frozen=True)
class Limits:
    """Resource limits for one student kernel."""

    cell_timeout: float = 120.0
    """Seconds one student cell may run before it is interrupted."""
    total_timeout: float = 600.0
    """Seconds the whole notebook (all cells and probes) may take; a watchdog kills the kernel after it."""
    probe_timeout: float = 90.0
    """Seconds the grader's observation of one part may take inside the kernel."""
    memory_mb: int = 4096
    """Anonymous resident memory (RssAnon) of the kernel's process tree before it is killed."""
    max_processes: int = 256
    """Processes and threads the sandbox user may own (a fork bomb stops here)."""
    max_file_mb: int = 512
    """Largest file the kernel may write."""
    disk_mb: int = 1024
    """Everything the kernel may write (its folder, HOME, /tmp, /dev/shm) where namespaces give it a
    tmpfs of its own; counted with its memory by the watchdog, since that tmpfs is RAM."""
    max_open_files: int = 1024
    """Open file descriptors per process."""
    max_output_chars: int = 200_000
    """Characters of output kept per cell; the rest is dropped with a note."""
    max_output_total_chars: int = 5_000_000
    """Characters of output kept for the whole notebook."""
    threads: int = 1
    """torch / BLAS threads in the kernel (set so parallel graders do not oversubscribe)."""

    def scaled_for_workers(self, workers: int) -> "Limits":
        return replace(self, threads=max(1, (os.cpu_count() or 1) // max(1, workers)))


@dataclass(frozen=True)
class GradeConfig:
    """How to grade one submission."""

    assignment: str | None = None
    """Assignment id (one of :func:`graders.registry.assignment_ids`); detected from the notebook when None."""
    seed: int | None = None
    """Seed of the hidden inputs; drawn fresh and recorded in the results when None."""
    limits: Limits = field(default_factory=Limits)
    mnist_root: Path | None = None
    """A full MNIST to use instead of the provisioned one."""
    public_only: bool = False
    """Run only the public checks (a student's local check): no reference solution needed."""
    instructor: bool = False
    """Show hidden-check details and tracebacks in the report."""
    sandbox: bool = True
    """Confine the kernel (rlimits; as root also user, network and mount namespaces)."""
    kernel_name: str | None = None
    """Jupyter kernel to use; None runs the grader's own Python as an ipykernel."""
    write_report: bool = True
    """Write report.html beside results.json."""
    hide: tuple[str, ...] = ()
    """More directories the kernel must not see (the Gradescope autograder's source and results)."""
