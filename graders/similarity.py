"""Which submissions look copied: a similarity report across a class and against an archive.

Similarity is evidence for a person to weigh, never a verdict: the report lists pairs of notebooks
whose code is suspiciously alike, with the matching code side by side, so an instructor can look.

How a pair is found (winnowing, Schleimer, Wilkerson & Aiken 2003, with ``copydetect``'s
normalisation scheme and winnowing):

1. only code cells are read, from the submitted notebooks (nothing is executed); each cell's
   Python tokens are normalised as copydetect does — comments and layout dropped, every
   identifier ``V``, function and class names ``F`` and ``O``, strings ``S`` — so renaming
   variables, reformatting and rewriting comments change nothing (the stdlib tokenizer does the
   tokenizing, five times faster than copydetect's Pygments filter, which remains the fallback
   for a cell it cannot read);
2. each normalised cell is hashed as character k-grams (a deterministic 64-bit hash, so a class
   always gets the same report), and winnowing keeps a few of them (the fingerprints); no k-gram
   straddles two cells, so reordering cells changes nothing;
3. fingerprints of the assignment's student template, and those found in more than a fraction of
   the class (the code everyone was given, or writes the same way), are dropped;
4. an inverted index (a sparse notebooks × fingerprints matrix) yields the pairs that share
   fingerprints, and only those are compared, so 500 notebooks are not 125,000 full comparisons;
5. a pair's matching code is mapped back to cells, hence to the parts (:mod:`graders.parts`) and
   lines that the side-by-side page highlights.

A pair is reported when enough of either notebook's own code matches the other, or enough of one
part's (:class:`SimilarityConfig`); its score is the larger of the two shares.
"""

from __future__ import annotations

import builtins
import csv
import io
import keyword
import re
import time
import tokenize
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
from nbformat import NotebookNode

from graders.collect import BatchItem

SIMILARITY_CSV = "similarity.csv"
PAGES_DIR = "similarity"
PREAMBLE = "preamble"
"""The part name of code cells that come before any part heading (imports, set-up)."""
CSV_FIELDS = ("a_id", "a_name", "b_id", "b_name", "b_origin", "similarity", "share_a", "share_b",
              "parts", "regions", "page")


@dataclass(frozen=True)
class SimilarityConfig:
    """The knobs of the comparison; the defaults suit notebooks of a few hundred lines."""

    noise: int = 25
    """k-gram length in filtered characters (an identifier is one character): shorter matches are noise."""
    guarantee: int = 35
    """A match at least this long is always found (winnowing window = guarantee - noise + 1)."""
    report_threshold: float = 0.5
    """A pair is reported when this fraction of either notebook's own code matches the other …"""
    part_threshold: float = 0.6
    """… or this fraction of one part's own code (in either notebook) does."""
    min_matched: int = 80
    """Filtered characters of matching code a pair needs at least (about four lines)."""
    min_part_matched: int = 60
    """Filtered characters of matching code a part needs to be named among the parts concerned."""
    common_fraction: float = 0.3
    """Code found in more than this fraction of the class is treated as given (like the template) …"""
    common_min: int = 4
    """… provided that is more than this many submissions (a copy ring in a small class is not 'common')."""
    min_shared: int = 3
    """Fingerprints two notebooks must share to be compared at all (a match of ``min_part_matched``
    characters holds at least ``min_part_matched / noise`` of them, rounded up)."""
    max_pages: int = 200
    """Side-by-side pages written (the best pairs); the CSV lists every reported pair."""


@dataclass(frozen=True)
class CodeCell:
    """One code cell: its index in the notebook, the part it is under, its source."""

    index: int
    part: str
    source: str


@dataclass(frozen=True)
class CodeDocument:
    """The code of one notebook, as compared: a class submission or an archive notebook."""

    id: str
    name: str
    origin: str
    """``class`` for a submission of the batch, ``archive`` for a ``--compare-with`` notebook."""
    assignment: str | None
    cells: tuple[CodeCell, ...]
    link: str | None = None
    """Relative link to the submission's report, from the folder of the summary page."""


@dataclass(frozen=True, eq=False)
class Fingerprinted:
    """A document after normalising and winnowing: what the comparison works on."""

    document: CodeDocument
    filtered: str
    cell_starts: tuple[int, ...]
    """Where each cell starts in ``filtered`` (one more entry: its length)."""
    lines: np.ndarray
    """Per filtered character, the line (0-based, within its cell) of the source it comes from."""
    parts: np.ndarray
    """Per filtered character, the index in ``part_names`` of its cell's part."""
    part_names: tuple[str, ...]
    hashes: np.ndarray
    """The fingerprints (template and common ones removed), one entry per occurrence …"""
    starts: np.ndarray
    """… and the filtered position where each one's k-gram starts."""
    own: np.ndarray
    """Mask of the filtered characters covered by the fingerprints: the notebook's own code, as compared."""
    keys: np.ndarray
    """The distinct fingerprints, sorted."""

    def cell_of(self, position: int) -> int:
        """Index into ``document.cells`` of the cell holding filtered position ``position``."""
        return int(np.searchsorted(self.cell_starts, position, side="right")) - 1


@dataclass(frozen=True)
class Region:
    """A run of matching code in one cell: lines ``first``..``last`` (0-based, inclusive)."""

    number: int
    """The same number marks the matching region of the other notebook."""
    cell: int
    """Index into ``CodeDocument.cells``."""
    first: int
    last: int


@dataclass(frozen=True)
class PartShare:
    """How much of one part's own code matches, in each notebook of a pair."""

    part: str
    a: float
    b: float
    matched: int


@dataclass(frozen=True)
class SimilarPair:
    """Two notebooks whose code is alike, with the evidence."""

    a: CodeDocument
    b: CodeDocument
    share_a: float
    """Fraction of a's own (non-template, non-common) code that matches b."""
    share_b: float
    matched: int
    """Filtered characters of matching code in a."""
    parts: tuple[PartShare, ...]
    """The parts concerned, most alike first."""
    regions_a: tuple[Region, ...]
    regions_b: tuple[Region, ...]

    @property
    def score(self) -> float:
        """The similarity in [0, 1]: the larger share (a notebook mostly contained in the other scores high)."""
        return max(self.share_a, self.share_b)

    @property
    def regions(self) -> int:
        """Matching code regions (numbered runs of matching lines in a)."""
        return len({region.number for region in self.regions_a})

    @property
    def part_ids(self) -> str:
        return ", ".join(share.part for share in self.parts)


@dataclass(frozen=True)
class SimilarityReport:
    """Every reported pair (best first) and what was compared."""

    pairs: tuple[SimilarPair, ...]
    submissions: int
    archive: int
    candidates: int
    """Pairs that shared fingerprints and were compared in full."""
    seconds: float
    config: SimilarityConfig
    notes: tuple[str, ...] = ()

    def page(self, rank: int) -> str | None:
        """Relative path of the side-by-side page of ``pairs[rank]`` (None past ``max_pages``)."""
        return f"{PAGES_DIR}/pair-{rank + 1:04d}.html" if rank < self.config.max_pages else None


# ----------------------------------------------------------------------------- reading notebooks
def code_document(notebook: NotebookNode, id: str, name: str = "", origin: str = "class",
                  assignment: str | None = None, link: str | None = None) -> CodeDocument:
    """The code cells of ``notebook``, each with the part whose heading it is under.

    The assignment is the one given (the grader's), else the notebook's metadata or markers.
    """
    from graders.parts import assign_cells, detect_assignment
    from graders.registry import assignment_ids

    assignment = assignment if assignment in assignment_ids() else detect_assignment(notebook)
    part_of = {index: part for part, indices in assign_cells(notebook, part_ids(assignment)).items() for index in indices}
    cells = tuple(CodeCell(index, part_of.get(index, PREAMBLE), cell.source)
                  for index, cell in enumerate(notebook.cells)
                  if cell.cell_type == "code" and cell.source.strip())
    return CodeDocument(id, name, origin, assignment, cells, link)


def part_ids(assignment: str | None) -> tuple[str, ...]:
    """The assignment's part ids, from its rubric (none for an unknown assignment)."""
    if assignment is None:
        return ()
    from graders.report import rubric_parts

    return tuple(part.id for part in rubric_parts(assignment))


def read_document(path: Path, id: str, name: str = "", origin: str = "class",
                  assignment: str | None = None, link: str | None = None) -> CodeDocument | None:
    """:func:`code_document` of the notebook at ``path``; None when it cannot be read as one."""
    from graders.submission import InvalidSubmission, read_notebook

    try:
        notebook = read_notebook(path)
    except (InvalidSubmission, OSError, ValueError):
        return None
    return code_document(notebook, id, name, origin, assignment, link)


def template_notebook(assignment: str) -> NotebookNode | None:
    """The student template the assignment's package declares, if this installation has it."""
    from graders.registry import UnknownAssignment, get_assignment
    from graders.submission import InvalidSubmission, read_notebook

    try:
        path = get_assignment(assignment).template
    except UnknownAssignment:
        return None
    try:
        return read_notebook(path) if path is not None and path.is_file() else None
    except (InvalidSubmission, OSError, ValueError):
        return None


# ----------------------------------------------------------------------------- fingerprints
_MAGIC = re.compile(r"^[ \t]*[%!?].*$", re.MULTILINE)
_SKIPPED_TOKENS = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                   tokenize.ENCODING, tokenize.ENDMARKER}
_BUILTINS = frozenset(dir(builtins))
_BASE = np.uint64(1_000_003)


def normalise(source: str) -> tuple[str, np.ndarray]:
    """A cell's tokens as one string: comments and layout gone, identifiers ``V``, function and class
    names ``F`` and ``O``, strings ``S`` (copydetect's scheme); and, per character, its source line.

    The stdlib tokenizer is used (five times faster than Pygments on notebook code); IPython magics
    and shell lines are blanked first; a cell it cannot read falls back to copydetect's Pygments filter.
    """
    text: list[str] = []
    lines: list[int] = []
    previous = ""
    try:
        for token in python_tokens(_MAGIC.sub("", source)):
            piece = token_text(token, previous)
            if piece:
                text.append(piece)
                lines.extend([token.start[0] - 1] * len(piece))
                previous = token.string
    except (tokenize.TokenError, SyntaxError):
        return pygments_normalised(source)
    return "".join(text), np.asarray(lines, dtype=np.int32)


def python_tokens(source: str) -> Iterator[tokenize.TokenInfo]:
    """The significant tokens of ``source``; an f-string (Python ≥ 3.12 splits it) counts as one string."""
    start, end = getattr(tokenize, "FSTRING_START", None), getattr(tokenize, "FSTRING_END", None)
    depth = 0
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == start:
            depth += 1
            if depth == 1:
                yield token._replace(type=tokenize.STRING)
        elif token.type == end:
            depth -= 1
        elif depth == 0 and token.type not in _SKIPPED_TOKENS:
            yield token


def token_text(token: tokenize.TokenInfo, previous: str) -> str:
    """What one token contributes to the normalised text."""
    if token.type == tokenize.NAME:
        if keyword.iskeyword(token.string) or token.string in _BUILTINS and previous != ".":
            return token.string  # keywords and builtins (len, range, print) are kept; attributes are names
        return {"def": "F", "class": "O"}.get(previous, "V")
    if token.type == tokenize.STRING:
        return "S"
    return token.string.strip()


def pygments_normalised(source: str) -> tuple[str, np.ndarray]:
    """copydetect's own filter (Pygments), for a cell the stdlib tokenizer rejects; lines from its offset table."""
    from copydetect.utils import filter_code

    filtered, offsets = filter_code(source, "cell.py", "python")
    if not len(offsets):
        return filtered, np.zeros(len(filtered), dtype=np.int32)
    positions = np.arange(len(filtered))
    rows = np.minimum(np.searchsorted(offsets[:, 0], positions), len(offsets) - 1)
    newlines = np.flatnonzero(np.frombuffer(source.encode("utf-32-le"), dtype=np.uint32) == 10)
    return filtered, np.searchsorted(newlines, positions + offsets[rows, 1], side="right").astype(np.int32)


def kgram_hashes(text: str, k: int) -> np.ndarray:
    """A 64-bit hash of every k-gram of a normalised cell (none when it is shorter than k).

    Deterministic (a polynomial hash, then the splitmix64 finaliser), unlike copydetect's use of
    Python's ``hash``, which changes from process to process: the same class gives the same report.
    """
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    count = len(codes) - k + 1
    if count <= 0:
        return np.zeros(0, dtype=np.int64)
    hashes = np.zeros(count, dtype=np.uint64)
    for offset in range(k):
        hashes = hashes * _BASE + codes[offset:offset + count]
    hashes ^= hashes >> np.uint64(30)
    hashes *= np.uint64(0xBF58476D1CE4E5B9)
    hashes ^= hashes >> np.uint64(27)
    hashes *= np.uint64(0x94D049BB133111EB)
    hashes ^= hashes >> np.uint64(31)
    return hashes.view(np.int64)


def all_kgram_hashes(sources: Iterable[str], k: int) -> set[int]:
    """Every k-gram hash of each source (normalised separately): given code to exclude, e.g. the template."""
    hashes: set[int] = set()
    for source in sources:
        hashes.update(kgram_hashes(normalise(source)[0], k).tolist())
    return hashes


def fingerprint(document: CodeDocument, config: SimilarityConfig, excluded: set[int]) -> Fingerprinted:
    """Normalise each cell, winnow each cell's k-gram hashes (kept apart: cell order is irrelevant); drop ``excluded``."""
    from copydetect.utils import winnow

    pieces = [normalise(cell.source) for cell in document.cells]
    starts = np.cumsum([0] + [len(text) for text, _ in pieces])
    chosen: list[np.ndarray] = []
    where: list[np.ndarray] = []
    for (text, _), base in zip(pieces, starts.tolist()):
        hashes = kgram_hashes(text, config.noise)
        if len(hashes):  # a k-gram never straddles two cells
            selected, index = winnow(hashes, config.guarantee - config.noise + 1, remove_duplicates=False)
            chosen.append(selected)
            where.append(index + base)
    part_names = tuple(dict.fromkeys(cell.part for cell in document.cells))
    cell_parts = [part_names.index(cell.part) for cell in document.cells]
    printed = Fingerprinted(
        document, "".join(text for text, _ in pieces), tuple(int(s) for s in starts),
        np.concatenate([lines for _, lines in pieces]) if pieces else np.zeros(0, dtype=np.int32),
        np.repeat(np.asarray(cell_parts, dtype=np.int32), np.diff(starts)), part_names,
        np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64),
        np.concatenate(where) if where else np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool), np.zeros(0, dtype=np.int64))
    return without(printed, excluded, config.noise)


def members(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """``np.isin(values, sorted_set)`` for a sorted set: a binary search (faster on these small arrays)."""
    if not len(sorted_set):
        return np.zeros(len(values), dtype=bool)
    where = np.minimum(np.searchsorted(sorted_set, values), len(sorted_set) - 1)
    return sorted_set[where] == values


def coverage(printed: Fingerprinted, k: int, hashes: np.ndarray | None = None) -> np.ndarray:
    """Boolean mask over the filtered text: the characters inside the k-grams of ``hashes`` (sorted; default: all)."""
    starts = printed.starts if hashes is None else printed.starts[members(printed.hashes, hashes)]
    edges = np.zeros(len(printed.filtered) + 1, dtype=np.int32)
    np.add.at(edges, starts, 1)
    np.add.at(edges, np.minimum(starts + k, len(printed.filtered)), -1)
    return np.cumsum(edges[:-1]) > 0


def without(printed: Fingerprinted, hashes: set[int], k: int) -> Fingerprinted:
    """The same fingerprints less ``hashes`` (the template's, the class's common code), own-code mask updated."""
    keep = ~np.isin(printed.hashes, np.fromiter(hashes, dtype=np.int64, count=len(hashes))) if hashes else np.ones(len(printed.hashes), dtype=bool)
    kept = replace(printed, hashes=printed.hashes[keep], starts=printed.starts[keep])
    return replace(kept, own=coverage(kept, k), keys=np.unique(kept.hashes))


def common_hashes(printed: Sequence[Fingerprinted], config: SimilarityConfig) -> set[int]:
    """Fingerprints in more than ``common_fraction`` (and more than ``common_min``) of these notebooks."""
    frequency: Counter[int] = Counter()
    for one in printed:
        frequency.update(one.keys.tolist())
    limit = max(config.common_min, config.common_fraction * len(printed))
    return {value for value, count in frequency.items() if count > limit}


def candidate_pairs(printed: Sequence[Fingerprinted], config: SimilarityConfig) -> list[tuple[int, int]]:
    """Pairs (i < j) sharing at least ``min_shared`` fingerprints, of the same assignment, not both archive.

    The inverted index is a sparse notebooks × fingerprints matrix; its product with its transpose
    counts the fingerprints every pair shares, without looking at the pairs that share none.
    """
    from scipy.sparse import csr_matrix

    keys = [one.keys for one in printed]
    vocabulary, columns = np.unique(np.concatenate(keys) if keys else np.zeros(0, dtype=np.int64), return_inverse=True)
    rows = np.repeat(np.arange(len(keys)), [len(k) for k in keys])
    index = csr_matrix((np.ones(len(columns), dtype=np.int32), (rows, columns)), shape=(len(keys), len(vocabulary)))
    shared = (index @ index.T).tocoo()
    return sorted((int(i), int(j)) for i, j, count in zip(shared.row, shared.col, shared.data)
                  if i < j and count >= config.min_shared and comparable(printed[i].document, printed[j].document))


def comparable(a: CodeDocument, b: CodeDocument) -> bool:
    """A class submission against another or against the archive, for the same assignment (or an unknown one)."""
    if a.origin == "archive" and b.origin == "archive":
        return False
    return a.assignment is None or b.assignment is None or a.assignment == b.assignment


def without_common(printed: list[Fingerprinted], config: SimilarityConfig) -> list[Fingerprinted]:
    """Drop, per assignment, the fingerprints common to the class (archive notebooks do not vote)."""
    groups: dict[str | None, list[Fingerprinted]] = defaultdict(list)
    for one in printed:
        if one.document.origin == "class":
            groups[one.document.assignment].append(one)
    common = {assignment: common_hashes(members, config) for assignment, members in groups.items()}
    everywhere = set().union(*common.values()) if common else set()
    return [without(one, common.get(one.document.assignment, everywhere), config.noise) for one in printed]


# ----------------------------------------------------------------------------- comparing a pair
def compare(a: Fingerprinted, b: Fingerprinted, config: SimilarityConfig) -> SimilarPair | None:
    """The evidence that ``a`` and ``b`` share code, or None when they share too little to report."""
    shared = np.intersect1d(a.keys, b.keys, assume_unique=True)
    k = config.noise
    matched_a, matched_b = coverage(a, k, shared), coverage(b, k, shared)
    if min(int(matched_a.sum()), int(matched_b.sum())) < config.min_matched:
        return None
    share_a = float(matched_a.sum() / max(1, a.own.sum()))
    share_b = float(matched_b.sum() / max(1, b.own.sum()))
    shares = part_shares(a, b, matched_a, matched_b)
    strong = tuple(s for s in shares if s.matched >= config.min_part_matched and max(s.a, s.b) >= config.part_threshold)
    if max(share_a, share_b) < config.report_threshold and not strong:
        return None
    parts = strong or tuple(s for s in shares if s.matched >= config.min_part_matched)
    regions_a, regions_b = paired_regions(a, b, shared, matched_a, matched_b)
    return SimilarPair(a.document, b.document, round(share_a, 3), round(share_b, 3), int(matched_a.sum()),
                       parts, regions_a, regions_b)


def part_sums(printed: Fingerprinted, mask: np.ndarray) -> dict[str, int]:
    """Per part, how many characters of ``mask`` fall in its cells."""
    counts = np.bincount(printed.parts[mask], minlength=len(printed.part_names))
    return {name: int(count) for name, count in zip(printed.part_names, counts)}


def part_shares(a: Fingerprinted, b: Fingerprinted, matched_a: np.ndarray, matched_b: np.ndarray) -> tuple[PartShare, ...]:
    """Per part (of either notebook), the fraction of its own code that matches, most alike first."""
    own_a, own_b = part_sums(a, a.own), part_sums(b, b.own)
    hit_a, hit_b = part_sums(a, matched_a), part_sums(b, matched_b)

    def fraction(hit: dict[str, int], own: dict[str, int], part: str) -> float:
        return round(hit.get(part, 0) / own[part], 3) if own.get(part) else 0.0

    shares = [PartShare(part, fraction(hit_a, own_a, part), fraction(hit_b, own_b, part), max(hit_a.get(part, 0), hit_b.get(part, 0)))
              for part in dict.fromkeys([*own_a, *own_b])]
    return tuple(sorted(shares, key=lambda s: -round(max(s.a, s.b), 2)))  # ties: in a's notebook order


def runs(mask: np.ndarray, cell_starts: tuple[int, ...]) -> list[tuple[int, int]]:
    """The [start, end) runs of True in ``mask``, split where a cell starts."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.astype(np.int8), [0]))))
    spans = []
    for start, end in zip(edges[0::2].tolist(), edges[1::2].tolist()):
        cuts = [s for s in cell_starts if start < s < end]
        bounds = [start, *cuts, end]
        spans.extend(zip(bounds[:-1], bounds[1:]))
    return spans


def paired_regions(a: Fingerprinted, b: Fingerprinted, shared: np.ndarray, matched_a: np.ndarray,
                   matched_b: np.ndarray) -> tuple[tuple[Region, ...], tuple[Region, ...]]:
    """Matching runs of both notebooks as line regions, a run of b numbered like the run of a it matches most."""
    runs_a, runs_b = runs(matched_a, a.cell_starts), runs(matched_b, b.cell_starts)
    run_of_a = run_index(a, shared, runs_a)
    votes: dict[int, Counter[int]] = defaultdict(Counter)
    for value, run_b in run_index(b, shared, runs_b).items():
        for number_b in run_b:
            votes[number_b].update(run_of_a.get(value, ()))
    regions_a = tuple(line_region(a, number + 1, span) for number, span in enumerate(runs_a))
    regions_b = tuple(line_region(b, votes[number].most_common(1)[0][0] + 1 if votes[number] else 0, span)
                      for number, span in enumerate(runs_b))
    return regions_a, regions_b


def run_index(printed: Fingerprinted, shared: np.ndarray, spans: list[tuple[int, int]]) -> dict[int, list[int]]:
    """Shared fingerprint → the runs (indices into ``spans``) where its k-grams start."""
    starts = np.array([s for s, _ in spans], dtype=np.int64)
    chosen = members(printed.hashes, shared)
    found: dict[int, list[int]] = defaultdict(list)
    for value, position in zip(printed.hashes[chosen].tolist(), printed.starts[chosen].tolist()):
        found[value].append(int(np.searchsorted(starts, position, side="right")) - 1)
    return found


def line_region(printed: Fingerprinted, number: int, span: tuple[int, int]) -> Region:
    """The lines of its cell that a filtered [start, end) run covers."""
    return Region(number, printed.cell_of(span[0]), int(printed.lines[span[0]]), int(printed.lines[span[1] - 1]))


# ----------------------------------------------------------------------------- the report
def similarity_report(documents: Sequence[CodeDocument], config: SimilarityConfig = SimilarityConfig(),
                      templates: dict[str, Sequence[str]] | None = None) -> SimilarityReport:
    """Compare every class document with the others and with the archive ones; report the alike pairs.

    ``templates`` maps an assignment to the code cells every student was given (default: the code
    cells of ``student_template/ASSIGNMENT.ipynb``); that code is never evidence.
    """
    started = time.monotonic()
    ordered = sorted(documents, key=lambda d: d.origin != "class")  # class first: a pair's a is a submission
    if templates is None:
        templates = template_sources({d.assignment for d in ordered if d.assignment})
    given = {assignment: all_kgram_hashes(sources, config.noise) for assignment, sources in templates.items()}
    printed = without_common([fingerprint(d, config, given.get(d.assignment or "", set())) for d in ordered], config)
    candidates = candidate_pairs(printed, config)
    pairs = [pair for i, j in candidates if (pair := compare(printed[i], printed[j], config)) is not None]
    pairs.sort(key=lambda p: (-p.score, -max((max(s.a, s.b) for s in p.parts), default=0.0), p.a.id, p.b.id))
    notes = tuple(f"no student template found for {a}: only code common to the class is excluded"
                  for a in sorted({d.assignment for d in ordered if d.assignment}) if a not in templates)
    return SimilarityReport(tuple(pairs), sum(d.origin == "class" for d in ordered), sum(d.origin == "archive" for d in ordered),
                            len(candidates), round(time.monotonic() - started, 2), config, notes)


def template_sources(assignments: Iterable[str]) -> dict[str, list[str]]:
    """The code cells of each assignment's student template (assignments without one are left out)."""
    sources = {}
    for assignment in sorted(assignments):
        notebook = template_notebook(assignment)
        if notebook is not None:
            sources[assignment] = [cell.source for cell in notebook.cells if cell.cell_type == "code"]
    return sources


# ----------------------------------------------------------------------------- outputs
def write_similarity(report: SimilarityReport, out_dir: Path) -> Path:
    """``out_dir/similarity.csv`` (every reported pair) and a side-by-side page per pair, up to ``max_pages``."""
    pages = out_dir / PAGES_DIR
    if pages.is_dir():
        for old in pages.glob("pair-*.html"):
            old.unlink()
    for rank, pair in enumerate(report.pairs):
        page = report.page(rank)
        if page is not None:
            (out_dir / page).parent.mkdir(parents=True, exist_ok=True)
            (out_dir / page).write_text(render_pair_page(pair, rank), encoding="utf-8")
    path = out_dir / SIMILARITY_CSV
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(CSV_FIELDS)
        writer.writerows(csv_row(pair, report.page(rank)) for rank, pair in enumerate(report.pairs))
    return path


def csv_row(pair: SimilarPair, page: str | None) -> list[str]:
    """One line of similarity.csv; parts as ``Q3 (0.97/1.00); Q4 (…)`` (share of each notebook's part)."""
    parts = "; ".join(f"{s.part} ({s.a:.2f}/{s.b:.2f})" for s in pair.parts)
    return [pair.a.id, pair.a.name, pair.b.id, pair.b.name, pair.b.origin, f"{pair.score:.3f}", f"{pair.share_a:.3f}",
            f"{pair.share_b:.3f}", parts, str(pair.regions), page or ""]


@dataclass(frozen=True)
class LineView:
    number: int
    text: str
    region: int
    """The matching region this line is in (0: none)."""


@dataclass(frozen=True)
class CellView:
    index: int
    part: str
    lines: tuple[LineView, ...]

    @property
    def matched(self) -> bool:
        return any(line.region for line in self.lines)


@dataclass(frozen=True)
class SideView:
    document: CodeDocument
    share: float
    cells: tuple[CellView, ...]


def side_view(document: CodeDocument, share: float, regions: tuple[Region, ...]) -> SideView:
    """The notebook's code cells, line by line, each line marked with its matching region."""
    marks: dict[tuple[int, int], int] = {}
    for region in regions:
        for line in range(region.first, region.last + 1):
            marks.setdefault((region.cell, line), region.number)
    cells = tuple(CellView(cell.index, cell.part, tuple(LineView(n + 1, text, marks.get((number, n), 0))
                                                       for n, text in enumerate(cell.source.split("\n"))))
                  for number, cell in enumerate(document.cells))
    return SideView(document, share, cells)


def render_pair_page(pair: SimilarPair, rank: int) -> str:
    """The side-by-side page: autoescaped (student code is untrusted text), no script, a CSP that forbids any."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    environment = Environment(loader=FileSystemLoader(str(Path(__file__).parent / "templates")),
                              autoescape=select_autoescape(default=True, default_for_string=True),
                              undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    sides = (side_view(pair.a, pair.share_a, pair.regions_a), side_view(pair.b, pair.share_b, pair.regions_b))
    return environment.get_template("similarity_pair.html.j2").render(pair=pair, rank=rank + 1, sides=sides)


# ----------------------------------------------------------------------------- the batch's step
def class_documents(items: Iterable[BatchItem], assignments: dict[str, str], out_dir: Path) -> list[CodeDocument]:
    """The batch's submissions as documents (the grader's assignment, a link to each report)."""
    documents = []
    for item in items:
        if item.path is None:
            continue
        link = f"{item.id}/report.html" if (out_dir / item.id / "report.html").is_file() else None
        document = read_document(item.path, item.id, item.name, "class", assignments.get(item.id), link)
        if document is not None:
            documents.append(document)
    return documents


def archive_documents(archives: Sequence[tuple[Path, Sequence[BatchItem]]]) -> list[CodeDocument]:
    """The ``--compare-with`` notebooks, each id prefixed by its folder's (or zip's) name, made unique."""
    documents, labels = [], Counter[str]()
    for path, items in archives:
        label = path.stem if path.is_file() else path.name
        labels[label] += 1
        prefix = label if labels[label] == 1 else f"{label}-{labels[label]}"
        for item in items:
            if item.path is not None:
                document = read_document(item.path, f"{prefix}/{item.id}", item.name, "archive")
                if document is not None:
                    documents.append(document)
    return documents


def batch_similarity(items: Iterable[BatchItem], assignments: dict[str, str], out_dir: Path,
                     archives: Sequence[tuple[Path, Sequence[BatchItem]]] = (), config: SimilarityConfig = SimilarityConfig()) -> SimilarityReport:
    """What the batch runs at its end, in the client, over the submitted notebooks (nothing re-executed).

    ``assignments`` maps a submission id to the assignment it was graded as; ``archives`` pairs each
    ``--compare-with`` folder with the notebooks collected from it. Writes
    ``out_dir/similarity.csv`` and the side-by-side pages; returns the report for the summary page.
    """
    documents = class_documents(items, assignments, out_dir) + archive_documents(archives)
    report = similarity_report(documents, config)
    write_similarity(report, out_dir)
    return report
