"""Measure how both 1C variants scale with n (the table shown beside the 1D summary).

    python -m reference.scaling [--ns 250 500 1000 2000 4000] [--steps 10] [--output PATH]

writes ``reference/data/scaling_1d.json``: one row per (n, variant) with ``seconds_per_step``
(one full-batch gradient step over the n training images) and ``peak_memory_mb`` (rise of the
peak resident memory of a fresh process while the variant is set up and trained; for the
kernel variant this includes building the n×n kernel), plus the machine it ran on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import torch

from graders.mnist import ensure_mnist
from reference.csci145_ps6 import ScalingRow, measure_scaling

DEFAULT_OUTPUT = Path(__file__).parent / "data" / "scaling_1d.json"
DEFAULT_NS = (250, 500, 1000, 2000, 4000)


def machine_info() -> dict[str, object]:
    """Describe the machine measurements were taken on: CPUs, threads, versions, platform."""
    return {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
    }


def build_scaling_table(ns: Sequence[int], steps: int = 20, seed: int = 0) -> dict[str, object]:
    """Measure both variants for each n and assemble the JSON document."""
    mnist = ensure_mnist()
    usable = [n for n in ns if n <= mnist.n_train]
    return {
        "rows": measure_scaling(usable, seed=seed, steps=steps),
        "skipped_ns": [n for n in ns if n > mnist.n_train],
        "step": "median time of one full-batch gradient step over all n training images, one thread "
        "(pixel: SGD on Linear(784, 10); kernel: Adam on Linear(n, 10) applied to the n×n kernel)",
        "memory": "rise of peak resident set size (ru_maxrss) in a fresh process, after a warm-up; "
        "counts the float32 n×784 training matrix both variants hold",
        "steps_timed": steps,
        "seed": seed,
        "data_source": mnist.source,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
    }


def format_table(rows: Sequence[ScalingRow]) -> str:
    """Render rows as a plain-text table for the terminal."""
    lines = [f"{'n':>6} {'variant':>8} {'ms/step':>10} {'setup s':>9} {'peak MB':>9}"]
    for row in rows:
        lines.append(
            f"{row['n']:>6} {row['variant']:>8} {1000 * row['seconds_per_step']:>10.2f} "
            f"{row['setup_seconds']:>9.3f} {row['peak_memory_mb']:>9.1f}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m reference.scaling", description=__doc__.splitlines()[0])
    parser.add_argument("--ns", type=int, nargs="+", default=list(DEFAULT_NS))
    parser.add_argument("--steps", type=int, default=20, help="timed steps per measurement (median kept)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    document = build_scaling_table(args.ns, args.steps)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(document, indent=2) + "\n")
    print(format_table(document["rows"]))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
