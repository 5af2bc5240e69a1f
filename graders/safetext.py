"""Text that came from a notebook or a kernel, made safe to write; files written atomically.

A student who has read the grader can put anything in a notebook: lone surrogates (``"\\ud800"``,
which no UTF-8 file can hold), NUL and other control characters (terminal escapes, carriage
returns that overwrite a line), enormous strings, JSON nested thousands of levels deep. Two
choke points keep every file the grader writes valid:

* :func:`clean_text` / :func:`clean_data` / :func:`clean_value`: what cannot be encoded (lone
  surrogates) and what a terminal or a CSV reader would act on (C0/C1 controls, ``DEL``, a bare
  ``\\r``) become U+FFFD; tab and newline stay; the rest stays readable. :class:`GradingResult`
  applies :func:`clean_value` to itself when it is built, so every report, gradebook and table
  made from a result gets clean text.
* :func:`write_bytes_atomic` (and the JSON / text wrappers): a temporary file created with
  ``O_EXCL | O_NOFOLLOW`` in the destination's directory, fsync'ed, then ``os.replace``'d over
  the destination. A reader never sees a partial file, a crash leaves the old file (or none),
  and a symlink planted at the destination is replaced, never followed.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import os
import re
import secrets
from pathlib import Path
from typing import Any

REPLACEMENT = "\ufffd"
TRUNCATED = "\n… (truncated)"
TOO_DEEP = "… (nested too deeply)"
MAX_DEPTH = 64
"""JSON nested deeper than this (from a notebook or the kernel) is replaced by :data:`TOO_DEEP`."""

_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
"""Lone surrogates (every surrogate in a Python str is lone), and controls other than tab, newline and CR."""
_UNSTORABLE = re.compile("[\x00-\x07\x0b\x0e-\x1a\x1c-\x1f\ud800-\udfff]")
"""For notebooks (lenient): what UTF-8 cannot hold or a renderer chokes on; tab, newline, CR, backspace, form feed
and ESC stay (progress bars, form feeds in source, ANSI colours in tracebacks that the report renders)."""


def clean_text(text: Any, limit: int | None = None, lenient: bool = False) -> str:
    """``text`` with unencodable and control characters replaced by U+FFFD, cut to ``limit`` characters.

    ``lenient`` (for notebook content, not for messages): only what cannot be stored or rendered.
    """
    if not isinstance(text, str):
        text = str(text)
    elif type(text) is not str:
        text = str.__str__(text)
    if limit is not None and len(text) > limit:
        text = text[: max(0, limit - len(TRUNCATED))] + TRUNCATED
    if lenient:
        return _UNSTORABLE.sub(REPLACEMENT, text)
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _UNSAFE.sub(REPLACEMENT, text)


_LINE_BREAKS = re.compile("[\r\n\x0b\x0c\x1c-\x1e\x85\u2028\u2029]+")
LINE_BREAK_MARK = " ⏎ "


def one_line(text: str) -> str:
    """``text`` on one line: every run of line breaks (Unicode's too) becomes a visible mark."""
    return _LINE_BREAKS.sub(LINE_BREAK_MARK, text)


def is_clean(text: str, lenient: bool = False) -> bool:
    if lenient:
        return _UNSTORABLE.search(text) is None
    return "\r" not in text and _UNSAFE.search(text) is None


def clean_data(value: Any, limit: int | None = None, max_depth: int = MAX_DEPTH, lenient: bool = False,
               _depth: int = 0) -> Any:
    """A JSON-ready copy of ``value``: clean strings (keys strictly), finite numbers, at most ``max_depth`` levels.

    ``lenient`` for a notebook's content (see :func:`clean_text`).
    """
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, str):
        return clean_text(value, limit, lenient)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if _depth >= max_depth:
        return TOO_DEEP
    if isinstance(value, dict):
        return {clean_text(key, 1000): clean_data(item, limit, max_depth, lenient, _depth + 1) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_data(item, limit, max_depth, lenient, _depth + 1) for item in value]
    return clean_text(value, limit, lenient)


def needs_cleaning(value: Any, max_depth: int = MAX_DEPTH, lenient: bool = False, _depth: int = 0) -> bool:
    """Whether :func:`clean_data` would change a string of ``value`` or cut it for depth."""
    if isinstance(value, str):
        return not is_clean(value, lenient)
    if isinstance(value, (dict, list, tuple)):
        if _depth >= max_depth:
            return True
        if isinstance(value, dict):
            return any(not is_clean(str(k)) or needs_cleaning(v, max_depth, lenient, _depth + 1) for k, v in value.items())
        return any(needs_cleaning(item, max_depth, lenient, _depth + 1) for item in value)
    return False


MAX_ITEMS = 5000
"""Longest sequence kept in a result (defined names, notes, cell issues)."""


def clean_value(value: Any, limit: int | None = None, _depth: int = 0) -> Any:
    """``value`` with every string in it cleaned, dataclasses, tuples, lists and dicts rebuilt only when needed.

    Returns ``value`` itself when nothing changed, so cleaning clean data costs one scan.
    """
    if isinstance(value, enum.Enum):
        return value
    if isinstance(value, str):
        cleaned = clean_text(value, limit)
        return value if cleaned == value and type(value) is str else cleaned
    if _depth >= MAX_DEPTH:
        return TOO_DEEP
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {}
        for spec in dataclasses.fields(value):
            if not spec.init:
                continue
            item = getattr(value, spec.name)
            cleaned = clean_value(item, limit, _depth + 1)
            if cleaned is not item:
                changes[spec.name] = cleaned
        return dataclasses.replace(value, **changes) if changes else value
    if isinstance(value, (tuple, list)):
        items = [clean_value(item, limit, _depth + 1) for item in value[:MAX_ITEMS]]
        if len(value) <= MAX_ITEMS and all(a is b for a, b in zip(items, value)):
            return value
        return tuple(items) if isinstance(value, tuple) else items
    if isinstance(value, dict):
        pairs = [(clean_value(k, 1000, _depth + 1), clean_value(v, limit, _depth + 1)) for k, v in value.items()]
        if all(a is k and b is v for (a, b), (k, v) in zip(pairs, value.items())):
            return value
        return dict(pairs)
    return value  # numbers and the like are the grader's own; JSON writers turn non-finite ones into null


# ---------------------------------------------------------------------------------------------
# Atomic writers
# ---------------------------------------------------------------------------------------------
def write_bytes_atomic(path: Path | str, data: bytes, mode: int = 0o644) -> Path:
    """Write ``data`` to ``path`` atomically; a symlink at ``path`` is replaced, never followed."""
    path = Path(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        scratch = path.with_name(f".{path.name[:100]}.{secrets.token_hex(8)}.tmp")
        try:
            fd = os.open(scratch, flags, 0o600)
            break
        except FileExistsError:
            continue
    else:  # pragma: no cover - 100 collisions of 64 random bits
        raise FileExistsError(f"no free temporary name beside {path}")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(scratch, path)
    except BaseException:
        try:
            os.unlink(scratch)
        except OSError:
            pass
        raise
    _fsync_directory(path.parent)
    return path


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_text_atomic(path: Path | str, text: str, mode: int = 0o644) -> Path:
    """UTF-8 text, written atomically; characters UTF-8 cannot hold become U+FFFD rather than an empty file."""
    return write_bytes_atomic(path, text.encode("utf-8", errors="replace"), mode)


def json_text(data: Any, indent: int | None = 1, limit: int | None = None) -> str:
    """Strict JSON (no NaN, no lone surrogates, bounded depth) for ``data``, non-ASCII kept readable."""
    return json.dumps(clean_data(data, limit), indent=indent, ensure_ascii=False, allow_nan=False)


def write_json_atomic(path: Path | str, data: Any, indent: int | None = 1, mode: int = 0o644) -> Path:
    return write_bytes_atomic(path, json_text(data, indent).encode("utf-8"), mode)
