"""1D's reference table: how both models' training step scales with n, as the reference measured it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from graders.assignment import ReferenceTable

SCALING_FILE = Path("data") / "scaling_1d.json"
"""Written by ``reference/scaling.py``, relative to the reference package."""


def scaling_table(reference_root: Path) -> ReferenceTable | None:
    """Time per step and memory of the pixel and kernel models for each n (None without the measurement)."""
    path = reference_root / SCALING_FILE
    if not path.is_file():
        return None
    scaling: dict[str, Any] = json.loads(path.read_text())
    by_n: dict[int, dict[str, dict[str, float]]] = {}
    for row in scaling.get("rows", []):
        by_n.setdefault(int(row["n"]), {})[str(row["variant"])] = row

    def cell(n: int, variant: str, key: str, scale: float, digits: int) -> str:
        value = by_n[n].get(variant, {}).get(key)
        return f"{value * scale:.{digits}f}" if isinstance(value, (int, float)) else "—"

    rows = tuple(
        (str(n), cell(n, "pixel", "seconds_per_step", 1e3, 1), cell(n, "kernel", "seconds_per_step", 1e3, 1),
         cell(n, "kernel", "setup_seconds", 1, 2), cell(n, "pixel", "peak_memory_mb", 1, 1),
         cell(n, "kernel", "peak_memory_mb", 1, 1))
        for n in sorted(by_n)
    )
    machine = scaling.get("machine", {})
    note = (f"Measured by the reference solution ({scaling.get('step', 'one full-batch step')}); memory: "
            f"{scaling.get('memory', 'peak resident memory')}. Machine: {machine.get('cpu_count', '?')} cores, torch "
            f"{machine.get('torch_version', '?')}. Absolute numbers depend on the machine; the trends do not.")
    return ReferenceTable("Measured scaling of one training step", ("n", "pixel: ms / step", "kernel: ms / step",
                          "kernel: set-up incl. K (s)", "pixel: peak MB", "kernel: peak MB"), rows, note)
