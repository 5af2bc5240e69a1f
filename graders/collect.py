"""Collecting the submissions of a batch: a folder of notebooks, a zip of them, or a Gradescope export.

A Gradescope "Download submissions" export is a folder (usually zipped) with one
``submission_<n>/`` folder per submission and a ``submission_metadata.yml`` that maps each folder
to its submitters (Ruby-style keys: ``:submitters:`` → ``:name:``, ``:email:``, ``:sid:``). Some
tools write one ``submission_metadata.yml`` inside each submission folder instead; both are read.

Every submission becomes a :class:`BatchItem` with a stable id (the Gradescope folder name, or the
notebook's path relative to the folder) that names its output directory. A submission that
cannot be graded (no notebook in its folder, a notebook too large to extract) still becomes an
item, with a ``problem`` sentence, so it still gets a row in the gradebook.
"""

from __future__ import annotations

import re
import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

from graders.choose import choose_notebook
from graders.submission import MAX_SUBMISSION_BYTES, file_sha256

METADATA_NAME = "submission_metadata.yml"
MAX_ZIP_MEMBERS = 20_000
"""A zip with more entries than this is refused (a class export has a few per student)."""
MAX_ZIP_TOTAL_BYTES = 4 * 2**30
"""Total uncompressed size of the entries we extract from a zip (zip-bomb guard)."""
MAX_METADATA_BYTES = 20 * 2**20
"""Largest submission_metadata.yml read."""
MAX_ZIP_OTHER_BYTES = 2**30
"""Files of a zip other than notebooks and metadata are extracted until they add up to this many bytes."""
OVERSIZE_MARKER = b"nbgrade: oversize "
"""Written instead of a zipped notebook over the size limit, so its submission still gets a row."""
_SKIPPED_DIRS = {"__MACOSX", ".ipynb_checkpoints", "__pycache__"}


class BatchInputError(Exception):
    """The batch input cannot be read (not a folder or zip, unsafe zip, nothing to grade): exit 2."""


@dataclass(frozen=True)
class BatchItem:
    """One submission of a batch, before grading."""

    id: str
    """Stable, filesystem-safe id; names ``DIR/<id>/`` and the gradebook row."""
    path: Path | None
    """The notebook to grade (None when the submission has none)."""
    source: str
    """Where it came from, relative to the batch input (for messages)."""
    name: str = ""
    """Submitter name(s) when known (Gradescope export), ``; ``-separated for groups."""
    email: str = ""
    sid: str = ""
    sha256: str = ""
    """Content hash of the notebook (empty when there is none)."""
    problem: str | None = None
    """Why this submission cannot be graded, for the student (None when it can)."""
    choice: str = ""
    """Which file of a submission folder is graded and why (:class:`graders.choose.ChosenNotebook`)."""


@dataclass
class CollectedBatch:
    """The items of a batch and the temporary directory that holds an extracted zip."""

    items: list[BatchItem]
    kind: str
    """``folder``, ``zip``, ``gradescope`` (folder) or ``gradescope-zip``."""
    scratch: Path | None = None
    notes: list[str] = field(default_factory=list)

    def cleanup(self) -> None:
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)


def collect_submissions(source: Path, exclude: Path | None = None) -> CollectedBatch:
    """The submissions under ``source`` (folder, zip or Gradescope export), sorted by id.

    ``exclude`` is a directory never searched (the batch's own output when it lies inside).
    """
    if source.is_file() and zipfile.is_zipfile(source):
        scratch = Path(tempfile.mkdtemp(prefix="nbgrade-batch-"))
        try:
            extract_zip_safely(source, scratch)
            batch = collect_folder(scratch, None)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        batch.kind = "zip" if batch.kind == "folder" else batch.kind + "-zip"
        batch.scratch = scratch
        return batch
    if source.is_dir():
        return collect_folder(source, exclude)
    raise BatchInputError(f"{source}: not a folder, a .zip of notebooks or a Gradescope export")


def collect_folder(root: Path, exclude: Path | None) -> CollectedBatch:
    export_root = find_export_root(root)
    if export_root is not None:
        items = collect_gradescope(export_root)
        kind = "gradescope"
    else:
        items = [_notebook_item(path, path.relative_to(root)) for path in notebooks_under(root, exclude)]
        kind = "folder"
    if not items:
        raise BatchInputError(f"{root}: no .ipynb notebooks found")
    return CollectedBatch(unique_ids(items), kind)


# ------------------------------------------------------------------------------------ folders
def notebooks_under(root: Path, exclude: Path | None = None) -> list[Path]:
    """Every ``.ipynb`` under ``root``, recursively, without checkpoints, hidden folders or ``exclude``."""
    found = []
    excluded = exclude.resolve() if exclude is not None else None
    for path in sorted(root.rglob("*.ipynb")):
        relative = path.relative_to(root).parts
        if any(part in _SKIPPED_DIRS or part.startswith(".") for part in relative[:-1]):
            continue
        if excluded is not None and (path.resolve() == excluded or excluded in path.resolve().parents):
            continue
        if path.is_file() and not path.is_symlink():
            found.append(path)
    return found


def _notebook_item(path: Path, relative: Path, **who: str) -> BatchItem:
    item_id = safe_id(str(relative.with_suffix("")))
    size = declared_size(path)
    if size > MAX_SUBMISSION_BYTES:
        return BatchItem(item_id, None, relative.as_posix(), problem=_too_large(relative.name, size), **who)
    return BatchItem(item_id, path, relative.as_posix(), sha256=file_sha256(path), **who)


def declared_size(path: Path) -> int:
    """The notebook's size, or the size recorded by an oversize marker left by zip extraction."""
    size = path.stat().st_size
    if size < 64:
        head = path.read_bytes()
        if head.startswith(OVERSIZE_MARKER) and head[len(OVERSIZE_MARKER):].isdigit():
            return int(head[len(OVERSIZE_MARKER):])
    return size


def _too_large(name: str, size: int) -> str:
    return (f"{name} is {size / 2**20:.0f} MB, more than the {MAX_SUBMISSION_BYTES // 2**20} MB a notebook may have: "
            "clear large outputs (Kernel → Restart & Clear Output) and resubmit.")


def safe_id(text: str) -> str:
    """A filesystem-safe id: path separators become ``__``, other odd characters ``_``."""
    text = text.replace("\\", "/").strip("/")
    text = "__".join(part for part in text.split("/") if part)
    text = re.sub(r"[^A-Za-z0-9._@+-]", "_", text).lstrip(".")
    return text[:120] or "submission"


def unique_ids(items: list[BatchItem]) -> list[BatchItem]:
    """Sorted by id; a repeated id gets ``-2``, ``-3`` … so no two items share an output folder."""
    seen: dict[str, int] = {}
    unique = []
    for item in sorted(items, key=lambda i: (i.id.lower(), i.source)):
        count = seen.get(item.id.lower(), 0) + 1
        seen[item.id.lower()] = count
        unique.append(item if count == 1 else replace(item, id=f"{item.id}-{count}"))
    return unique


# ------------------------------------------------------------------------------------ Gradescope
def find_export_root(root: Path, depth: int = 2) -> Path | None:
    """The folder of a Gradescope export at or just under ``root`` (zips often wrap it in one folder)."""
    if (root / METADATA_NAME).is_file():
        return root
    subdirs = _subdirs(root)
    with_metadata = [d for d in subdirs if (d / METADATA_NAME).is_file()]
    if len(with_metadata) >= 2 or (len(with_metadata) == 1 and not _subdirs(with_metadata[0])):
        return root  # one metadata file inside each submission folder
    if with_metadata:
        return with_metadata[0]
    if depth > 0 and len(subdirs) == 1:
        return find_export_root(subdirs[0], depth - 1)
    return None


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and p.name not in _SKIPPED_DIRS and not p.name.startswith("."))


def collect_gradescope(export_root: Path) -> list[BatchItem]:
    """One item per submission folder, with the submitters named in the metadata."""
    metadata = read_metadata(export_root / METADATA_NAME) if (export_root / METADATA_NAME).is_file() else {}
    folders = {p.name for p in _subdirs(export_root)}
    folders |= {key for key in metadata if isinstance(key, str) and "/" not in key and ".." not in key}
    items = []
    for folder in sorted(folders):
        record = metadata.get(folder)
        own = export_root / folder / METADATA_NAME
        if record is None and own.is_file():
            record = read_metadata(own)
        items.append(gradescope_item(export_root, folder, submitters(record)))
    return items


def gradescope_item(export_root: Path, folder: str, who: dict[str, str]) -> BatchItem:
    """The submission in ``export_root/folder``: its notebook chosen as Gradescope's run chooses it (:mod:`graders.choose`)."""
    choice = choose_notebook(export_root / folder, _assignment_ids())
    if choice.path is None:
        return BatchItem(safe_id(folder), None, folder, problem=choice.message, **who)
    item = _notebook_item(choice.path, choice.path.relative_to(export_root), **who)
    return replace(item, id=safe_id(folder), choice=choice.message)


def _assignment_ids() -> tuple[str, ...]:
    """A batch detects each notebook's assignment: a submission's notebook may answer any of them."""
    from graders.registry import assignment_ids

    return tuple(assignment_ids())


def submitters(record: Any) -> dict[str, str]:
    """``name``, ``email`` and ``sid`` of a metadata record (group members joined with ``; ``)."""
    people = _field(record, "submitters") or _field(record, "users") or []
    if isinstance(people, dict):
        people = [people]
    found: dict[str, list[str]] = {"name": [], "email": [], "sid": []}
    for person in people if isinstance(people, list) else []:
        for key in found:
            value = _field(person, key)
            if value not in (None, ""):
                found[key].append(str(value))
    return {key: "; ".join(values) for key, values in found.items()}


def _field(record: Any, key: str) -> Any:
    """A value under ``key``, ``:key`` (Ruby symbol, as Gradescope writes) or ``:key:``."""
    if not isinstance(record, dict):
        return None
    for variant in (key, f":{key}", f":{key}:"):
        if variant in record:
            return record[variant]
    return None


def read_metadata(path: Path) -> dict:
    """Parse a Gradescope ``submission_metadata.yml``; {} (with no crash) when it is unreadable."""
    if path.stat().st_size > MAX_METADATA_BYTES:
        return {}
    try:
        import yaml
    except ImportError:  # PyYAML is a declared dependency; a broken install still grades
        return {}
    try:
        data = yaml.load(path.read_text(encoding="utf-8", errors="replace"), Loader=_metadata_loader())
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def _metadata_loader() -> type:
    """A safe loader that reads Ruby-tagged values (``!ruby/object:…``) as plain data and dates as text."""
    import yaml

    class MetadataLoader(yaml.SafeLoader):
        pass

    def plain(loader: yaml.SafeLoader, _suffix: str, node: yaml.Node) -> Any:
        if isinstance(node, yaml.MappingNode):
            return loader.construct_mapping(node, deep=True)
        if isinstance(node, yaml.SequenceNode):
            return loader.construct_sequence(node, deep=True)
        return loader.construct_scalar(node)

    MetadataLoader.add_multi_constructor("!", plain)
    MetadataLoader.add_multi_constructor("tag:", plain)
    MetadataLoader.add_constructor("tag:yaml.org,2002:timestamp", lambda loader, node: loader.construct_scalar(node))
    return MetadataLoader


# ------------------------------------------------------------------------------------ zips
def extract_zip_safely(archive: Path, target: Path) -> None:
    """Extract the submitted files and Gradescope metadata of ``archive`` into ``target``.

    In a Gradescope export every file is extracted, so that a submission folder offers
    :func:`graders.choose.choose_notebook` what Gradescope's run would see (a ``# %%`` script, a
    renamed notebook); files other than notebooks only up to :data:`MAX_ZIP_OTHER_BYTES` together.
    Refuses absolute paths and ``..``; skips symlinks, checkpoints and (outside an export) other
    files; caps entry count and total size. A notebook over the size limit
    is written as an empty marker so that its submission still gets a row saying why it was not graded.
    """
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            if len(members) > MAX_ZIP_MEMBERS:
                raise BatchInputError(f"{archive.name}: {len(members)} entries, more than the {MAX_ZIP_MEMBERS} allowed")
            total = other = 0
            others = MAX_ZIP_OTHER_BYTES if any(_is_metadata(m.filename) for m in members) else 0
            for member, relative in _wanted_members(members):
                destination = target.joinpath(*relative.parts)
                limit = MAX_METADATA_BYTES if relative.name == METADATA_NAME else MAX_SUBMISSION_BYTES
                kept = relative.suffix == ".ipynb" or relative.name == METADATA_NAME
                if not kept and (not others or member.file_size > limit or other + member.file_size > others):
                    continue  # another file (a script, a renamed notebook) is extracted only while it is small
                if member.file_size > limit:
                    _write_oversize_marker(destination, member.file_size)
                    continue
                other += 0 if kept else member.file_size
                total += member.file_size
                if total > MAX_ZIP_TOTAL_BYTES:
                    raise BatchInputError(f"{archive.name}: more than {MAX_ZIP_TOTAL_BYTES // 2**30} GB uncompressed")
                _extract_member(zf, member, destination, limit)
    except zipfile.BadZipFile as error:
        raise BatchInputError(f"{archive.name}: not a readable zip ({error})") from None


def _is_metadata(name: str) -> bool:
    return PurePosixPath(name.replace("\\", "/")).name == METADATA_NAME


def _wanted_members(members: list[zipfile.ZipInfo]) -> Iterator[tuple[zipfile.ZipInfo, PurePosixPath]]:
    for member in members:
        if member.is_dir() or stat.S_ISLNK(member.external_attr >> 16):
            continue
        relative = safe_member_path(member.filename)
        if any(part in _SKIPPED_DIRS or part.startswith(".") for part in relative.parts[:-1]):
            continue
        yield member, relative


def safe_member_path(name: str) -> PurePosixPath:
    """The entry's path, refused when it would leave the extraction folder."""
    cleaned = name.replace("\\", "/")
    path = PurePosixPath(cleaned)
    if cleaned.startswith("/") or re.match(r"^[A-Za-z]:", cleaned) or ".." in path.parts or not path.parts:
        raise BatchInputError(f"unsafe path in zip: {name!r} (absolute or leaving the archive)")
    return path


def _extract_member(zf: zipfile.ZipFile, member: zipfile.ZipInfo, destination: Path, limit: int) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with zf.open(member) as source, destination.open("wb") as sink:
        for block in iter(lambda: source.read(1 << 20), b""):
            written += len(block)
            if written > limit:
                raise BatchInputError(f"{member.filename}: larger than its declared size")
            sink.write(block)


def _write_oversize_marker(destination: Path, size: int) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    destination.write_bytes(OVERSIZE_MARKER + str(size).encode())
