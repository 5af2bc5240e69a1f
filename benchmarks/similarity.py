"""Time the similarity report on a synthetic class (default 500 submissions), with planted copies.

    .venv/bin/python benchmarks/similarity.py [--n 500] [--copies 10] [--partial 10] [--seed 0]

Each synthetic submission is the csci145-ps6 reference notebook with its identifiers renamed at
random, its code cells shuffled within each part, and about two lines in three rewritten as
random statements of random shape, about six in seven (so independent submissions differ the way
students' code does, while sharing a few lines of the reference with many classmates). Planted: full copies
of another submission (renamed, cells reordered, comments rewritten) and partial copies (one part
of another submission pasted into an otherwise independent one). The notebooks are written to a
temporary folder and the batch's own step (:func:`graders.similarity.batch_similarity`, on the
items :func:`graders.collect.collect_submissions` finds) is timed, reading and pages included.
Prints one table: time, pairs compared, planted copies found, other pairs reported.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import tempfile
import time
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from graders.collect import collect_submissions  # noqa: E402
from graders.similarity import batch_similarity  # noqa: E402

ASSIGNMENT = "csci145-ps6"
FUNCTIONS = ("np.mean", "torch.exp", "torch.stack", "len", "max", "np.sqrt", "helper", "torch.tensor", "sum", "abs")
OPERATORS = ("+", "-", "*", "/", "@", "**", "//")
KEYWORDS = {"def", "return", "for", "in", "if", "else", "with", "as", "import", "from", "class", "try", "except", "not",
            "and", "or", "None", "True", "False", "lambda", "while", "break", "del", "range", "print", "self", "super"}


def random_expression(rng: random.Random, names: list[str], depth: int) -> str:
    """A random expression: names, numbers, calls, operators, slices, nested up to ``depth``."""
    if depth == 0:
        return rng.choice([rng.choice(names), str(rng.randint(0, 999)), f"{rng.random():.3f}"])
    kind = rng.randrange(4)
    if kind == 0:
        return f"{random_expression(rng, names, depth - 1)} {rng.choice(OPERATORS)} {random_expression(rng, names, depth - 1)}"
    if kind == 1:
        arguments = ", ".join(random_expression(rng, names, depth - 1) for _ in range(rng.randint(1, 3)))
        return f"{rng.choice(FUNCTIONS)}({arguments})"
    if kind == 2:
        return f"{random_expression(rng, names, depth - 1)}[{rng.randint(0, 9)}:{rng.randint(10, 99)}]"
    return f"({random_expression(rng, names, depth - 1)})"


def rewrite(source: str, rng: random.Random, rewrite_fraction: float = 0.85) -> str:
    """Keep some lines of a reference cell, replace the others by random statements at the same indent."""
    names = [f"v{rng.randint(0, 99)}" for _ in range(6)]
    lines, depth = [], 0
    for line in source.split("\n"):
        stripped = line.strip()
        opened = sum(map(stripped.count, "([{")) - sum(map(stripped.count, ")]}"))
        simple = depth == 0 and opened == 0 and stripped and not stripped.endswith((":", "\\")) and not stripped.startswith("@")
        if simple and rng.random() < rewrite_fraction:  # a whole statement: the result still parses
            indent = line[: len(line) - len(line.lstrip())]
            line = f"{indent}{rng.choice(names)} = {random_expression(rng, names, rng.randint(1, 3))}"
        depth += opened
        lines.append(line)
    return "\n".join(lines)


def rename(source: str, rng: random.Random) -> str:
    """Rename every lower-case identifier that is not a keyword (consistently within the cell)."""
    mapping: dict[str, str] = {}

    def replace(match: re.Match[str]) -> str:
        word = match.group(0)
        if word in KEYWORDS or match.start() > 0 and source[match.start() - 1] == ".":
            return word
        return mapping.setdefault(word, f"{word[:2]}{rng.randint(0, 9999)}")
    return re.sub(r"\b[a-z_][a-z0-9_]*\b", replace, source)


def shuffled(notebook: nbformat.NotebookNode, rng: random.Random, transform) -> nbformat.NotebookNode:  # noqa: ANN001
    """The notebook with ``transform`` applied to each code cell, and the code cells of each part shuffled."""
    cells, block = [], []
    for cell in notebook.cells + [None]:
        if cell is None or cell.cell_type == "markdown":
            rng.shuffle(block)
            cells.extend(block)
            block = []
            if cell is not None:
                cells.append(cell)
        else:
            block.append(nbformat.v4.new_code_cell(transform(cell.source)))
    copy = nbformat.v4.new_notebook(metadata=notebook.metadata)
    copy.cells = cells
    return copy


def part_cells(notebook: nbformat.NotebookNode, heading: str) -> list[int]:
    """Indices of the code cells under the markdown heading that starts with ``heading``."""
    indices, inside = [], False
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "markdown" and cell.source.startswith("## "):
            inside = cell.source.startswith(heading)
        elif inside and cell.cell_type == "code":
            indices.append(index)
    return indices


def synthetic_class(n: int, copies: int, partial: int, seed: int) -> tuple[dict[str, nbformat.NotebookNode], dict[str, str]]:
    """``n`` notebooks (independent ones, then planted copies), and each planted copy's original."""
    rng = random.Random(seed)
    reference = nbformat.read(REPO / "reference" / "notebooks" / f"{ASSIGNMENT}.ipynb", as_version=4)
    independent = n - copies - partial
    notebooks = {f"s{i:04d}": shuffled(reference, rng, lambda s: rename(rewrite(s, rng), rng)) for i in range(independent)}
    planted: dict[str, str] = {}
    for i in range(copies):
        original = f"s{rng.randrange(independent):04d}"
        notebooks[f"copy{i:03d}"] = shuffled(notebooks[original], rng, lambda s: rename(re.sub(r"#.*", "# mine", s), rng))
        planted[f"copy{i:03d}"] = original
    for i in range(partial):
        original = rng.randrange(independent)
        donor, target = notebooks[f"s{original:04d}"], shuffled(reference, rng, lambda s: rename(rewrite(s, rng), rng))
        part = rng.choice(["## 1B", "## 1C", "## 2C"])
        for index, donated in zip(part_cells(target, part), part_cells(donor, part)):
            target.cells[index] = nbformat.v4.new_code_cell(rename(donor.cells[donated].source, rng))
        notebooks[f"part{i:03d}"] = target
        planted[f"part{i:03d}"] = f"s{original:04d}"
    return notebooks, planted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=500, help="submissions in the class (default 500)")
    parser.add_argument("--copies", type=int, default=10, help="planted full copies (default 10)")
    parser.add_argument("--partial", type=int, default=10, help="planted copies of one part (default 10)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    notebooks, planted = synthetic_class(args.n, args.copies, args.partial, args.seed)
    with tempfile.TemporaryDirectory(prefix="nbgrade-similarity-") as scratch:
        folder, out = Path(scratch) / "class", Path(scratch) / "out"
        folder.mkdir()
        out.mkdir()
        for name, notebook in notebooks.items():
            nbformat.write(notebook, str(folder / f"{name}.ipynb"))
        generated = time.perf_counter() - started
        started, cpu = time.perf_counter(), time.process_time()
        collected = collect_submissions(folder)
        report = batch_similarity(collected.items, {item.id: ASSIGNMENT for item in collected.items}, out)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    found = {frozenset((pair.a.id, pair.b.id)) for pair in report.pairs}
    family = {pair for pair in found if len({planted.get(one, one) for one in pair}) == 1}  # two copies of one original
    planted_pairs = {frozenset(pair) for pair in planted.items()}
    print("| submissions | wall s (all) | CPU s (all) | wall s (compare) | candidate pairs | reported | planted found "
          "| copies of one original | other reported |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| {report.submissions} | {seconds:.1f} | {cpu:.1f} | {report.seconds:.1f} | {report.candidates} | {len(report.pairs)} "
          f"| {len(found & planted_pairs)} / {len(planted_pairs)} | {len(family - planted_pairs)} | {len(found - family)} |")
    print(f"(class generated and written in {generated:.1f} s; 'all' = collecting, reading, fingerprinting, comparing, "
          f"writing similarity.csv and {min(len(report.pairs), report.config.max_pages)} pages; 'compare' = "
          "fingerprinting and comparing; CPU = this process's user + system time, steadier than wall time on a shared machine)")
    missed = planted_pairs - found
    if missed:
        print("missed:", ", ".join(sorted("/".join(sorted(pair)) for pair in missed)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
