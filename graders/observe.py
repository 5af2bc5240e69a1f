"""Observe: ask the kernel for data about the student's objects, and read it back as data only.

After the student's cells have run, the grader writes each part's hidden inputs as ``.npy``
files into a fresh exchange directory, then runs that part's probe in the kernel (its own cell,
its own time limit). The probe writes ``values.json`` and ``.npy`` files. Here they are read with
``allow_pickle=False`` and size limits; nothing the student produced is unpickled, evaluated or
imported in the grader process.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from graders.execute import ExecutedNotebook, KernelSession
from graders.kernel import kernel_source

MAX_VALUES_BYTES = 8 * 1024 * 1024
MAX_ARRAY_FILE_BYTES = 80 * 1024 * 1024


@dataclass(frozen=True)
class Found:
    """How a contract name was resolved in the student's namespace."""

    contract: str
    found_as: str | None
    how: str
    reason: str


@dataclass
class PartObservation:
    """What one part's probe reported."""

    part: str
    values: dict[str, Any]
    directory: Path | None
    status: str = "ok"
    """``ok``; ``timeout``, ``killed`` or ``error`` when the probe cell itself did not finish."""
    problem: str = ""

    def array(self, key: str) -> np.ndarray | None:
        if self.directory is None or key not in self.values.get("arrays", []):
            return None
        path = self.directory / f"{key}.npy"
        if not path.is_file() or path.stat().st_size > MAX_ARRAY_FILE_BYTES:
            return None
        try:
            return np.load(path, allow_pickle=False)
        except (ValueError, OSError):
            return None

    def found(self, contract: str) -> Found:
        info = self.values.get("found", {}).get(contract)
        if not isinstance(info, dict):
            return Found(contract, None, "missing", f"`{contract}` was not looked for")
        return Found(contract, _str_or_none(info.get("found_as")), str(info.get("how")), str(info.get("reason", ""))[:300])

    def error(self, key: str) -> dict[str, str] | None:
        error = self.values.get("errors", {}).get(key)
        return {k: str(v) for k, v in error.items()} if isinstance(error, dict) else None

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)[:100]


@dataclass(frozen=True)
class FigureRecord:
    """Structure of one matplotlib figure the notebook drew, and the cell that drew it."""

    cell: int | None
    suptitle: str
    axes: tuple[dict[str, Any], ...]
    texts: tuple[str, ...] = ()

    @property
    def image_axes(self) -> list[dict[str, Any]]:
        return [ax for ax in self.axes if ax.get("images", 0) > 0]


@dataclass
class Observations:
    """Everything observed about one submission."""

    parts: dict[str, PartObservation]
    figures: list[FigureRecord] = field(default_factory=list)
    defined_names: list[dict[str, str]] = field(default_factory=list)
    image_outputs: dict[int, int] = field(default_factory=dict)
    """Cell index → number of image outputs it produced in this run."""

    def part(self, part_id: str) -> PartObservation:
        return self.parts.get(part_id) or PartObservation(part_id, {}, None, "error", "not observed")


@dataclass(frozen=True)
class ProbePlan:
    """What to observe for one assignment: kernel-side probe source and the hidden inputs per part."""

    source: str
    """Kernel-side code defining ``probe_<PART>(P)`` functions."""
    inputs: dict[str, dict[str, Any]]
    """Part id → name → ndarray (written as .npy) or JSON-able value (written into params.json)."""


def write_inputs(exchange: Path, part: str, inputs: dict[str, Any], uid: int | None) -> None:
    directory = exchange / "inputs" / part
    directory.mkdir(parents=True, exist_ok=True)
    params = {}
    for name, value in inputs.items():
        if isinstance(value, np.ndarray):
            np.save(directory / f"{name}.npy", value, allow_pickle=False)
        else:
            params[name] = value
    (directory / "params.json").write_text(json.dumps(params))
    if uid is not None:
        import os

        for path in [exchange / "inputs", directory, *directory.iterdir()]:
            os.chown(path, uid, uid)


def probe_cell(exchange: Path, part: str, probe_source: str, call_timeout: float) -> str:
    """Source of the cell that runs one part's probe in a private namespace in the kernel."""
    code = kernel_source("runtime") + "\n" + probe_source + "\n"
    call = f"run_probe(USER_NS, {str(exchange)!r}, {part!r}, probe_{part}, {float(call_timeout)!r})"
    return (
        f"exec(compile({code + call!r}, '<grader probe {part}>', 'exec'), "
        "{'__name__': '__nbgrade__', 'USER_NS': get_ipython().user_ns})"
    )


def meta_cell(exchange: Path) -> str:
    """Source of the cell that reports figures and the names the notebook defined."""
    code = kernel_source("runtime") + (
        "\nimport json as _j\n"
        f"with open({str(exchange / 'meta.json')!r}, 'w') as _h:\n"
        "    _j.dump({'figures': FIGURES(), 'names': defined_names(USER_NS)}, _h, default=str)\n"
    )
    return (
        f"exec(compile({code!r}, '<grader meta>', 'exec'), "
        "{'__name__': '__nbgrade__', 'USER_NS': get_ipython().user_ns, "
        "'FIGURES': globals().get('__nbgrade_figures', lambda: [])})"
    )


def observe(
    session: KernelSession, executed: ExecutedNotebook, plan: ProbePlan, probe_timeout: float
) -> Observations:
    """Run every part's probe in the live kernel and read back what it wrote."""
    exchange = session.workspace.new_exchange()
    session.deadline = time.monotonic() + probe_timeout * (len(plan.inputs) + 1) + 30
    parts: dict[str, PartObservation] = {}
    for part, inputs in plan.inputs.items():
        parts[part] = _observe_part(session, exchange, part, inputs, plan.source, probe_timeout)
    meta = _read_meta(session, exchange, probe_timeout)
    by_source = cells_by_source_hash(executed.notebook)
    figures = [_figure(record, by_source) for record in meta.get("figures", []) if isinstance(record, dict)]
    names = [n for n in meta.get("names", []) if isinstance(n, dict)]
    return Observations(parts, figures, names, image_outputs(executed))


def _observe_part(
    session: KernelSession, exchange: Path, part: str, inputs: dict[str, Any], source: str, timeout: float
) -> PartObservation:
    if session.client is None:
        return PartObservation(part, {}, None, "killed", "the kernel was not running")
    write_inputs(exchange, part, inputs, session.workspace.uid)
    run = session.run_code(probe_cell(exchange, part, source, call_timeout=timeout * 0.8), timeout=timeout)
    directory = exchange / "outputs" / part
    values = _read_json(directory / "values.json")
    if run.status == "ok" and values is not None:
        return PartObservation(part, values, directory)
    problem = {
        "timeout": f"your code did not finish within {timeout:g} s when the grader called it",
        "killed": run.evalue or "the kernel died while the grader called your code",
    }.get(run.status, f"{run.ename}: {run.evalue}"[:300])
    if run.status == "killed":
        _restart_for_next(session)
    return PartObservation(part, values or {}, directory if values else None, run.status if run.status != "ok" else "error", problem)


def _restart_for_next(session: KernelSession) -> None:
    """A probe killed the kernel: later parts report that the kernel was not running."""
    session.shutdown()


def _read_meta(session: KernelSession, exchange: Path, timeout: float) -> dict[str, Any]:
    if session.client is None:
        return {}
    session.run_code(meta_cell(exchange), timeout=timeout)
    return _read_json(exchange / "meta.json") or {}


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        if not path.is_file() or path.stat().st_size > MAX_VALUES_BYTES:
            return None
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def cells_by_source_hash(notebook: Any) -> dict[str, int]:
    """sha1 of each code cell's source (as the kernel saw it) → the first cell index with it."""
    import hashlib

    found: dict[str, int] = {}
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            found.setdefault(hashlib.sha1(cell.source.encode("utf-8", "replace")).hexdigest()[:16], index)
    return found


def _figure(record: dict[str, Any], by_source: dict[str, int]) -> FigureRecord:
    axes = tuple(ax for ax in record.get("axes", []) if isinstance(ax, dict))
    return FigureRecord(
        by_source.get(str(record.get("cell_hash"))),
        str(record.get("suptitle", "")),
        axes,
        tuple(str(t) for t in record.get("texts", [])),
    )


def image_outputs(executed: ExecutedNotebook) -> dict[int, int]:
    counts: dict[int, int] = {}
    for index, cell in enumerate(executed.notebook.cells):
        n = sum(1 for out in cell.get("outputs", []) if "image/png" in out.get("data", {}))
        if n:
            counts[index] = n
    return counts


def cells_defining(notebook: Any, name: str) -> list[int]:
    """Indices of cells whose source assigns or defines ``name`` (for messages about missing names)."""
    pattern = re.compile(
        rf"^\s*(?:def|class)\s+{re.escape(name)}\b|^\s*(?:[\w\s,]*,\s*)?{re.escape(name)}\s*(?:,[\w\s,]*)?(?::[^=\n]*)?=(?!=)",
        re.M,
    )
    return [i for i, cell in enumerate(notebook.cells) if cell.cell_type == "code" and pattern.search(cell.source)]
