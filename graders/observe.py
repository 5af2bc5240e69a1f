"""Observe: ask the kernel for data about the student's objects, and read it back as data only.

After the student's cells have run, the grader writes each part's hidden inputs as ``.npy``
files into a fresh exchange directory, then runs that part's probe in the kernel (its own cell,
its own time limit). The probe writes ``values.json`` and ``.npy`` files. Here they are read with
``allow_pickle=False`` and size limits; nothing the student produced is unpickled, evaluated or
imported in the grader process.

When the grader's call into the student's code kills or hangs the kernel, that part scores what
its probe could record, and the kernel is restarted and the student's cells re-run once (within
what is left of the notebook's time budget) so that the later parts are still graded; each later
part's message says what happened when that was not possible.
"""

from __future__ import annotations

import enum
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from graders.execute import ExecutedNotebook
from graders.hostfs import ReadLimits, make_directory, open_directory, read_probe_output, save_array_file, write_new_file
from graders.kernel import kernel_source
from graders.kernel_session import CellRun, CellStatus, KernelSession
from graders.safetext import one_line

WARM_UP_SECONDS = 60.0
"""Time the probes' own imports (torch, torchvision) may take in the kernel, outside every part's limit."""


@dataclass(frozen=True)
class Found:
    """How a contract name was resolved in the student's namespace."""

    contract: str
    found_as: str | None
    how: str
    reason: str


class ObservationStatus(str, enum.Enum):
    """Whether a part's probe cell finished (``ok``), and how it did not."""

    OK = "ok"
    TIMEOUT = "timeout"
    KILLED = "killed"
    ERROR = "error"

    def __str__(self) -> str:
        return self.value


@dataclass
class PartObservation:
    """What one part's probe reported: its JSON values and the arrays it saved, read and bounded at once."""

    part: str
    values: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    status: ObservationStatus = ObservationStatus.OK
    """Not ``ok`` when the probe cell itself did not finish."""
    problem: str = ""
    secret: bool = False
    """Its inputs were data the sandbox must not see: its errors are quoted most narrowly."""

    def array(self, key: str) -> np.ndarray | None:
        return self.arrays.get(key)

    def found(self, contract: str) -> Found:
        info = self.values.get("found", {}).get(contract)
        if not isinstance(info, dict):
            return Found(contract, None, "missing", f"`{contract}` was not looked for")
        found_as = _str_or_none(info.get("found_as"))  # names the notebook chose while a probe ran: narrowed like errors
        return Found(contract, quotable(found_as, 64) if found_as else None, quotable(str(info.get("how")), 20),
                     quotable(str(info.get("reason", "")), 300))

    def error(self, key: str) -> dict[str, str] | None:
        """What the student's code raised when a probe called it, narrowed to what a message may quote.

        The call ran on hidden inputs, and the code may have put them in its exception to read them
        back from the report: long runs without a space are elided and the lengths capped, so a
        message can name what went wrong but cannot carry data out.
        """
        error = self.values.get("errors", {}).get(key)
        if not isinstance(error, dict):
            return None
        if self.secret:  # the held-back digits were in reach: the class if it is Python's or a library's, a few words
            kind = str(error.get("type", ""))
            return {"type": kind if kind in _KNOWN_EXCEPTIONS else "an exception of the notebook's own class",
                    "message": quotable(str(error.get("message", "")), 80, run=12, single_line=True)}
        limits = {"type": 40, "message": 300, "traceback": 4000}
        return {k: quotable(str(error.get(k, "")), limits.get(k, 300)) for k in ("type", "message", "traceback")
                if k in error}

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)


_KNOWN_EXCEPTIONS = frozenset({
    name for name, value in vars(__import__("builtins")).items() if isinstance(value, type) and issubclass(value, BaseException)
} | {"CallFailed", "ProbeTimeout", "Timeout", "TooLarge", "NotADict", "AutogradUnavailable", "LinAlgError"})
"""Exception classes a message may name even after secret inputs were in reach (not the notebook's own)."""


def quotable(text: str, limit: int, run: int = 32, single_line: bool = False) -> str:
    """``text`` with every run of more than ``run`` non-space characters cut to its start, then capped."""
    text = one_line(text) if single_line else text
    return re.sub(rf"\S{{{run + 1},}}", lambda match: match.group(0)[: run // 2] + "…", text)[:limit]


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
    notes: list[str] = field(default_factory=list)
    """Sentences for the student about the observation itself (kernel restarted, patches undone)."""
    local: bool = False
    """Observed in the student's own session (a local check): no cell outputs to confirm figures with."""

    def part(self, part_id: str) -> PartObservation:
        return self.parts.get(part_id) or PartObservation(part_id, {}, {}, ObservationStatus.ERROR, "not observed")


@dataclass(frozen=True)
class ProbePlan:
    """What to observe for one assignment: kernel-side probe source and the hidden inputs per part."""

    source: str
    """Kernel-side code defining ``probe_<PART>(P)`` functions."""
    inputs: dict[str, dict[str, Any]]
    """Part id → name → ndarray (written as .npy) or JSON-able value (written into params.json)."""
    secret: tuple[str, ...] = ()
    """Parts whose inputs are data the sandbox must never see (held-back digits): probed last, so
    that nothing the notebook took from them can come back in a later part's messages, and their
    errors are quoted only as much as a message needs (see :meth:`PartObservation.error`)."""

    def order(self) -> list[str]:
        return [p for p in self.inputs if p not in self.secret] + [p for p in self.inputs if p in self.secret]


def write_inputs(directory: Path, inputs: dict[str, Any]) -> None:
    """Write one part's hidden inputs into a new folder the kernel can read but not write.

    Arrays become ``NAME.npy`` (no pickles), everything else ``params.json``. The folder's parent
    is the grader's, so the kernel cannot have planted anything there.
    """
    parent = open_directory(directory.parent)
    try:
        fd = make_directory(parent, directory.name, 0o755)
    finally:
        os.close(parent)
    try:
        params = {}
        for name, value in inputs.items():
            if isinstance(value, np.ndarray):
                save_array_file(fd, name, value)
            else:
                params[name] = value
        write_new_file(fd, "params.json", json.dumps(params).encode())
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Exchange:
    """One observation's folders: hidden inputs the grader hands over, and results the probes write.

    ``inputs`` is the grader's folder (read-only to the kernel). ``outputs`` holds a folder per part
    that the kernel's uid may write; it lives in the running kernel's own filesystem (its tmpfs, in
    the new root), so the grader creates it, and reads it back, walking from that kernel's root
    (``/proc/LAUNCHER/root``) with :mod:`graders.hostfs`: no link, device, FIFO or oversized file the
    notebook planted is followed or loaded. After a restart the next kernel gets its own.
    """

    session: KernelSession
    inputs: Path
    outputs: Path
    limits: ReadLimits = ReadLimits()

    @classmethod
    def create(cls, session: KernelSession) -> "Exchange":
        workspace = session.workspace
        number = str(workspace.new_exchange_number())
        exchange = cls(session, workspace.sandbox_root / "inputs" / number, workspace.sandbox_root / "out" / number)
        parent = open_directory(exchange.inputs.parent)
        try:
            os.close(make_directory(parent, number, 0o755))
        finally:
            os.close(parent)
        return exchange

    @property
    def uid(self) -> int | None:
        return self.session.workspace.uid if self.session.sandbox else None

    def _outputs_fd(self) -> int:
        """The outputs folder in the running kernel's filesystem (made on first use there)."""
        view = self.session.view_root()
        if view is None:
            raise FileNotFoundError("no kernel is running")
        parent = open_directory(view, self.outputs.parent.parts[1:])
        try:
            try:
                return open_directory(parent, (self.outputs.name,))
            except FileNotFoundError:
                return make_directory(parent, self.outputs.name, 0o755)
        finally:
            os.close(parent)

    def part_inputs(self, part: str, inputs: dict[str, Any]) -> Path:
        write_inputs(self.inputs / part, inputs)
        return self.inputs / part

    def part_outputs(self, part: str) -> Path:
        """A new folder for one part's results, the kernel's to write."""
        fd = self._outputs_fd()
        try:
            os.close(make_directory(fd, part, 0o700, owner=self.uid))
        finally:
            os.close(fd)
        return self.outputs / part

    def read(self, part: str) -> tuple[dict[str, Any] | None, dict[str, np.ndarray], list[str]]:
        try:
            folder = self._outputs_fd()
        except OSError:
            return None, {}, []
        try:
            fd = open_directory(folder, (part,))
        except OSError:
            return None, {}, []
        finally:
            os.close(folder)
        try:
            return read_probe_output(fd, self.limits, self.uid)
        finally:
            os.close(fd)


TAMPERED_PROBLEM = ("your notebook replaced or changed the grader's own state in the kernel (the module the grader "
                    "keeps in sys.modules, or its functions), so nothing observed in it can be trusted")


def read_part_directory(part: str, directory: Path, limits: ReadLimits = ReadLimits()) -> PartObservation:
    """A part's results from a folder on this machine (students' local checks, tests)."""
    try:
        fd = open_directory(directory)
    except OSError:
        return PartObservation(part, {}, {}, ObservationStatus.ERROR, "the check could not read what your objects returned")
    try:
        values, arrays, refused = read_probe_output(fd, limits, None)
    finally:
        os.close(fd)
    if values is None:
        return PartObservation(part, {}, {}, ObservationStatus.ERROR, "the check could not read what your objects returned")
    return PartObservation(part, values, arrays, problem=_refused_note(refused))


def _refused_note(refused: list[str]) -> str:
    return ("the grader refused some of what the probe wrote: " + "; ".join(refused[:5]))[:500] if refused else ""


def runtime_source(state_name: str, pin: tuple[int, ...] = ()) -> str:
    """The probes' toolkit, told where this kernel's prelude keeps its state and which objects it must be."""
    return (kernel_source("runtime").replace('_STATE_NAME = "_nbgrade"', f"_STATE_NAME = {state_name!r}", 1)
            .replace("_STATE_PIN = ()", f"_STATE_PIN = {tuple(pin)!r}", 1) + "\n" + kernel_source("naming"))


def probe_cell(inputs: Path, outputs: Path, part: str, probe_source: str, call_timeout: float,
               state_name: tuple[str, tuple[int, ...]]) -> str:
    """Source of the cell that runs one part's probe in a private namespace in the kernel."""
    code = runtime_source(*state_name) + "\n" + probe_source + "\n"
    call = f"run_probe(USER_NS, {str(inputs)!r}, {str(outputs)!r}, {part!r}, probe_{part}, {float(call_timeout)!r})"
    return _private_exec(code + call, f"<grader probe {part}>")


def _private_exec(code: str, filename: str) -> str:
    """A cell that runs ``code`` in a fresh namespace, immune to the student shadowing exec/compile/get_ipython."""
    return (
        "import builtins as _nbgrade_builtins\n"
        f"_nbgrade_builtins.exec(_nbgrade_builtins.compile({code!r}, {filename!r}, 'exec'), "
        "{'__name__': '__nbgrade__', 'USER_NS': __import__('IPython').get_ipython().user_ns})\n"
        "del _nbgrade_builtins"
    )


def warm_up_cell(probe_source: str, state_name: tuple[str, tuple[int, ...]]) -> str:
    """Source of a cell that imports what the probes need (torch …) before any part's time limit starts."""
    return _private_exec(runtime_source(*state_name) + "\n" + probe_source + "\n", "<grader warm-up>")


def meta_cell(outputs: Path, state_name: tuple[str, tuple[int, ...]]) -> str:
    """Source of the cell that reports figures and the names the notebook defined."""
    code = runtime_source(*state_name) + (
        "\n_figures = getattr(_STATE, 'figures', lambda: [])\n"
        f"with open({str(outputs / 'values.json')!r}, 'w') as _h:\n"
        "    _json.dump({'figures': [] if TAMPERED else _figures(), 'names': defined_names(USER_NS), 'restored': RESTORED[:50], "
        "'tampered': TAMPERED}, _h, default=str)\n"
    )
    return _private_exec(code, "<grader meta>")


def observe(
    session: KernelSession, executed: ExecutedNotebook, plan: ProbePlan, probe_timeout: float
) -> Observations:
    """Run every part's probe in the live kernel and read back what it wrote.

    The figures and defined names are read first (no student code is called for them), then one
    probe per part; a kernel that a probe kills or hangs is recovered once for the later parts.
    """
    exchange = Exchange.create(session)
    session.deadline = time.monotonic() + probe_timeout * (len(plan.inputs) + 1) + 30 + WARM_UP_SECONDS
    recovery = KernelRecovery(session, executed, warm_up_cell(plan.source, (session.state_name, session.state_pin)))
    first = next(iter(plan.order()), "the first part")
    meta = {}
    if recovery.ensure_running(first):
        recovery.warm_up()
        meta = _read_meta(session, exchange, probe_timeout)
    parts: dict[str, PartObservation] = {}
    for part in plan.order():
        inputs = plan.inputs[part]
        if not recovery.ensure_running(part):
            parts[part] = PartObservation(part, {}, {}, ObservationStatus.KILLED, recovery.problem)
            continue
        try:
            parts[part] = _observe_part(session, exchange, part, inputs, plan.source, probe_timeout)
        except OSError as error:  # its folders vanished with a kernel that died between the check and the call
            parts[part] = PartObservation(part, {}, {}, ObservationStatus.KILLED,
                                          f"the kernel stopped before the grader could call your code ({error.strerror})")
        parts[part].secret = part in plan.secret
        recovery.check_after(part, parts[part])
    by_source = cells_by_source_hash(executed.notebook)
    figures = [_figure(record, by_source) for record in meta.get("figures", []) if isinstance(record, dict)]
    names = [n for n in meta.get("names", []) if isinstance(n, dict)]
    notes = [*_restored_note(meta, parts), *recovery.notes]
    if meta.get("tampered"):
        notes.insert(0, _sentence(TAMPERED_PROBLEM) + "; no figure it recorded counts.")
    return Observations(parts, figures, names, image_outputs(executed), notes)


def _observe_part(
    session: KernelSession, exchange: Exchange, part: str, inputs: dict[str, Any], source: str, timeout: float
) -> PartObservation:
    cell = probe_cell(exchange.part_inputs(part, inputs), exchange.part_outputs(part), part, source,
                      call_timeout=timeout * 0.8, state_name=(session.state_name, session.state_pin))
    run = session.run_code(cell, timeout=timeout)
    values, arrays, refused = exchange.read(part) if session.alive else (None, {}, [])
    if values is not None and values.get("tampered"):
        return PartObservation(part, {}, {}, ObservationStatus.ERROR, TAMPERED_PROBLEM)
    if run.status == CellStatus.OK and values is not None:
        return PartObservation(part, values, arrays, problem=_refused_note(refused))
    problem = {
        CellStatus.TIMEOUT: f"your code did not finish within {timeout:g} s when the grader called it",
        CellStatus.KILLED: f"the kernel died while the grader called your code ({run.evalue})",
        CellStatus.OK: "the grader's call to your code wrote no result (did the notebook replace json, open or the exchange files?)",
    }.get(run.status, f"{run.ename}: {run.evalue}"[:300])
    status = ObservationStatus(str(run.status)) if run.status in (CellStatus.TIMEOUT, CellStatus.KILLED) else ObservationStatus.ERROR
    return PartObservation(part, values or {}, arrays if values else {}, status, problem)


class KernelRecovery:
    """Keeps a kernel available for the probes: restart it and re-run the student's cells, once.

    Re-running is allowed what is left of the notebook's total time budget after the first run
    (the cells already ran once within it), and runs on a copy of the notebook so the outputs
    shown in the report stay those of the graded run.
    """

    def __init__(self, session: KernelSession, executed: ExecutedNotebook, warm_up_source: str = "pass") -> None:
        self.session = session
        self.executed = executed
        self.warm_up_source = warm_up_source
        self.cause = ""
        """Why the kernel stopped (empty while it runs)."""
        self.problem = ""
        """The one-line message for parts that could not be observed."""
        self.replayed = False
        self.notes: list[str] = []

    def warm_up(self) -> None:
        """Import what the probes use, so that no part's time limit pays for it."""
        run = self.session.run_code(self.warm_up_source, timeout=WARM_UP_SECONDS)
        if run.status == CellStatus.TIMEOUT:
            self.session.stop_if_unresponsive("the kernel did not respond while the grader prepared its checks")
        if not self.session.alive and not self.cause:
            self.cause = f"the kernel stopped while the grader prepared its checks ({run.summary})"

    def check_after(self, part: str, observation: PartObservation) -> None:
        """After a probe that timed out or died: make sure a hung kernel is stopped, and remember why."""
        if observation.status == ObservationStatus.TIMEOUT and self.session.alive:
            self.session.stop_if_unresponsive("the kernel did not respond after the grader's call timed out")
        if not self.session.alive and not self.cause:
            what = "did not return" if observation.status == ObservationStatus.TIMEOUT else "killed the kernel"
            self.cause = f"the grader's call to your code for {part} {what}"

    def ensure_running(self, next_part: str) -> bool:
        """True when a kernel is running with the student's cells run in it (re-running them if needed)."""
        if self.session.alive:
            return True
        if not self.cause:
            self.cause = f"the kernel was not running after your notebook ran ({self.session.exit_description()})"
        if self.replayed:
            self.problem = f"not graded: {self.cause} (the kernel had already been restarted once to grade the parts before)"
            if not any(self.cause in note for note in self.notes):
                self.notes.append(_sentence(self.problem) + ".")
            return False
        self.replayed = True
        outcome = self._replay()
        if outcome is None:
            self.warm_up()
            self.notes.append(f"{_sentence(self.cause)}; the kernel was restarted and your cells re-run once so that "
                              f"the remaining parts ({next_part} onwards) could be graded.")
            self.cause = ""
            return True
        self.problem = f"not graded: {self.cause}, and re-running your notebook to grade the remaining parts failed ({outcome})"
        self.notes.append(_sentence(self.problem) + ".")
        return False

    def _replay(self) -> str | None:
        """Restart and re-run the cells that ran (ok or with an error); None on success, else why not."""
        session, limits = self.session, self.session.limits
        budget = limits.total_timeout - self.executed.duration
        if budget < 5:
            return "no time was left in the notebook's time budget"
        probes_deadline = session.deadline
        started = time.monotonic()
        try:
            session.restart(notebook=_without_outputs(self.executed.notebook))
        except Exception as error:  # noqa: BLE001 - a kernel that cannot start: the parts say so
            return f"the kernel could not be restarted: {str(error)[:120]}"
        session.deadline = started + budget
        for run in self.executed.runs:
            if run.status not in (CellStatus.OK, CellStatus.ERROR):
                continue
            again: CellRun = session.run_cell(run.index, limits.cell_timeout)
            if again.status in (CellStatus.KILLED, CellStatus.TIMEOUT):
                return f"cell {run.index + 1} {again.summary}"
        session.deadline = probes_deadline + (time.monotonic() - started)
        return None


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _without_outputs(notebook: Any) -> Any:
    import nbformat

    copy = nbformat.from_dict(json.loads(json.dumps(notebook)))
    for cell in copy.cells:
        if cell.get("cell_type") == "code":
            cell.outputs = []
    return copy


def _restored_note(meta: dict[str, Any], parts: dict[str, PartObservation]) -> list[str]:
    restored = [str(name) for name in meta.get("restored", []) if isinstance(name, str)]
    for observation in parts.values():
        restored += [str(name) for name in observation.values.get("restored", []) if isinstance(name, str)]
    restored = list(dict.fromkeys(restored))
    if not restored:
        return []
    return [f"Your notebook replaced {', '.join(restored[:8])}{' …' if len(restored) > 8 else ''}; the grader put "
            "the originals back before calling your code."]


def _read_meta(session: KernelSession, exchange: Exchange, timeout: float) -> dict[str, Any]:
    try:  # the kernel may have died a moment ago (in the warm-up, or from a thread of the notebook)
        outputs = exchange.part_outputs("_meta")
    except OSError:
        return {}
    session.run_code(meta_cell(outputs, (session.state_name, session.state_pin)), timeout=timeout)
    values, _arrays, _refused = exchange.read("_meta") if session.alive else (None, {}, [])
    return values or {}


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


MIN_FIGURE_PIXELS = 64
"""A displayed PNG narrower or lower than this is no figure (a 1×1 image shown to vouch for a forged record)."""


def image_outputs(executed: ExecutedNotebook) -> dict[int, int]:
    """Cell index → figure-sized PNG images the grader saw the cell display in this run."""
    counts: dict[int, int] = {}
    for index, cell in enumerate(executed.notebook.cells):
        n = sum(1 for out in cell.get("outputs", []) if _figure_sized(out.get("data", {}).get("image/png")))
        if n:
            counts[index] = n
    return counts


def _figure_sized(data: Any) -> bool:
    """Whether base64 PNG data declares at least MIN_FIGURE_PIXELS × MIN_FIGURE_PIXELS (its IHDR header)."""
    import base64
    import binascii
    import struct

    if not isinstance(data, str):
        return False
    try:
        head = base64.b64decode("".join(data[:64].split()) + "=" * 4, validate=False)[:24]
    except (binascii.Error, ValueError):
        return False
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return False
    width, height = struct.unpack(">II", head[16:24])
    return width >= MIN_FIGURE_PIXELS and height >= MIN_FIGURE_PIXELS and _has_content(data)


def _has_content(data: str) -> bool:
    """Not one flat colour: a blank image shown to vouch for a forged figure record draws nothing."""
    import base64
    import io

    try:
        from PIL import Image, ImageStat
    except ImportError:  # Pillow comes with matplotlib and torchvision; without it, the header alone decides
        return True
    try:
        with Image.open(io.BytesIO(base64.b64decode(data))) as image:
            if image.width * image.height > 50_000_000:
                return False
            image.draft("L", (256, 256))
            grey = image.convert("L")
            grey.thumbnail((128, 128))
            return ImageStat.Stat(grey).stddev[0] >= 2.0
    except Exception:  # noqa: BLE001 - not a readable PNG: no figure
        return False


def cells_defining(notebook: Any, name: str) -> list[int]:
    """Indices of cells whose source assigns or defines ``name`` (for messages about missing names)."""
    pattern = re.compile(
        rf"^\s*(?:def|class)\s+{re.escape(name)}\b|^\s*(?:[\w\s,]*,\s*)?{re.escape(name)}\s*(?:,[\w\s,]*)?(?::[^=\n]*)?=(?!=)",
        re.M,
    )
    return [i for i, cell in enumerate(notebook.cells) if cell.cell_type == "code" and pattern.search(cell.source)]
