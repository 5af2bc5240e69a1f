"""Files the grader shares with a sandboxed kernel, handled as if the kernel were hostile.

The kernel can write some folders (its working directory, HOME, the probes' output folders)
and, from a background thread, can change them at any moment. The grader therefore never opens
a path in them *by name from the top*: it walks from a directory file descriptor it trusts, one
component at a time with ``O_NOFOLLOW``, refuses anything that is not a plain directory or a
regular file owned by whom it expects, and bounds every read before it happens. Folders the
kernel only reads are created by the grader inside folders the kernel cannot write, so there is
nothing to race.
"""

from __future__ import annotations

import io
import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy is imported where arrays are handled: the sandbox launcher uses this module too
    import numpy as np


_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_FILE_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


class UnsafeEntry(OSError):
    """A path component the kernel could have planted: a link, a device, a FIFO, a hard link."""


def safe_name(name: str) -> bool:
    """A file or folder name the grader will use: no separators, no dot-dot, short, plain."""
    return bool(_SAFE_NAME.match(name)) and ".." not in name


def open_directory(start: str | Path | int, parts: tuple[str, ...] = ()) -> int:
    """A file descriptor for ``start/parts…``, following no link on the way below ``start``.

    ``start`` is a directory the grader trusts (its own folder, ``/proc/PID/root`` of the sandbox's
    launcher, or an open descriptor of one, left open); every component under it is opened with
    ``O_NOFOLLOW``.
    """
    if isinstance(start, int):
        fd = os.dup(start)
    else:
        fd = os.open(start, _DIRECTORY_FLAGS & ~getattr(os, "O_NOFOLLOW", 0))
    try:
        for part in parts:
            if not part or part in (".", "..") or "/" in part:
                raise UnsafeEntry(f"refusing path component {part!r}")
            child = os.open(part, _DIRECTORY_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular_file(directory_fd: int, name: str, max_bytes: int, owner: int | None = None) -> bytes | None:
    """The bytes of ``name`` in the directory, or None when missing, too large or not a plain file.

    A symlink (``O_NOFOLLOW``), a FIFO or device (not regular), a hard link to a file elsewhere
    (``st_nlink`` > 1) and, when ``owner`` is given, a file of another owner are all refused.
    """
    if not safe_name(name):
        return None
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=directory_fd)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1 or info.st_size > max_bytes:
            return None
        if owner is not None and info.st_uid != owner:
            return None
        chunks, left = [], max_bytes + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        return data if len(data) <= max_bytes else None
    finally:
        os.close(fd)


def write_new_file(directory_fd: int, name: str, data: bytes, mode: int = 0o644, owner: int | None = None) -> None:
    """Create ``name`` (never an existing entry, never through a link), write ``data``, give it to ``owner``."""
    if not safe_name(name):
        raise UnsafeEntry(f"refusing file name {name!r}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(name, flags, mode, dir_fd=directory_fd)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if owner is not None:
            os.fchown(fd, owner, owner)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def make_directory(parent_fd: int, name: str, mode: int = 0o755, owner: int | None = None) -> int:
    """Create a new folder ``name`` under ``parent_fd`` and return its descriptor (chowned by descriptor)."""
    if not safe_name(name):
        raise UnsafeEntry(f"refusing folder name {name!r}")
    os.mkdir(name, mode, dir_fd=parent_fd)
    fd = os.open(name, _DIRECTORY_FLAGS, dir_fd=parent_fd)
    os.fchmod(fd, mode)
    if owner is not None:
        os.fchown(fd, owner, owner)
    return fd


def save_array_file(directory_fd: int, name: str, array: np.ndarray) -> None:
    """Write ``array`` as ``name.npy`` (no pickles) into a folder the kernel cannot write."""
    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    write_new_file(directory_fd, f"{name}.npy", buffer.getvalue())


@dataclass(frozen=True)
class ReadLimits:
    """How much the grader reads back from one probe before it refuses the rest."""

    values_bytes: int = 8 * 2**20
    """Size of ``values.json``."""
    arrays: int = 64
    """Number of arrays."""
    array_bytes: int = 80 * 2**20
    """Size of one array, as its header declares it and as the file is."""
    total_bytes: int = 160 * 2**20
    """All arrays of one probe together."""


def load_json_object(data: bytes | None) -> dict[str, Any] | None:
    """A JSON object from bytes, or None (bad UTF-8, bad JSON, nesting too deep, not an object)."""
    if data is None:
        return None
    try:
        value = json.loads(data.decode("utf-8", "replace"))
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def load_array(data: bytes, max_bytes: int) -> np.ndarray | None:
    """An ``.npy`` array from bytes, after checking its header: plain numeric dtype, declared size ≤ max."""
    import numpy as np

    stream = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(stream)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _order, dtype = reader(stream, max_header_size=4096)
    except (ValueError, OSError, TypeError, SyntaxError):
        return None
    if dtype.hasobject or dtype.kind not in "biufc" or len(shape) > 8:
        return None
    if int(np.prod(shape, dtype=np.int64)) * dtype.itemsize > max_bytes:
        return None
    stream.seek(0)
    try:
        return np.load(stream, allow_pickle=False)
    except (ValueError, OSError, EOFError):
        return None


def read_probe_output(directory_fd: int, limits: ReadLimits, owner: int | None) -> tuple[dict[str, Any] | None, dict[str, np.ndarray], list[str]]:
    """``values.json`` and the arrays it lists, bounded; the third item says what was refused and why."""
    values = load_json_object(read_regular_file(directory_fd, "values.json", limits.values_bytes, owner))
    if values is None:
        return None, {}, []
    listed = values.get("arrays", [])
    names = [n for n in listed if isinstance(n, str) and safe_name(n)] if isinstance(listed, list) else []
    arrays: dict[str, np.ndarray] = {}
    refused: list[str] = []
    total = 0
    for name in dict.fromkeys(names):
        if len(arrays) >= limits.arrays:
            refused.append(f"{name}: more than {limits.arrays} arrays")
            continue
        room = min(limits.array_bytes, limits.total_bytes - total)
        data = read_regular_file(directory_fd, f"{name}.npy", room + 4096, owner)
        array = load_array(data, room) if data is not None else None
        if array is None:
            refused.append(f"{name}: missing, not a plain numeric array, or larger than {room // 2**20} MB")
            continue
        arrays[name] = array
        total += array.nbytes
    return values, arrays, refused
