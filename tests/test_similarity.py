"""The similarity report: copies are found with their parts, independent and template-only work is not.

A small class is built in memory from the reference solution, the student template and an
independently written solution (no kernel, no grading): a disguised copy (renamed variables,
reordered cells, rewritten comments, reformatted), a partial copy of one part, and template-only
submissions. The batch step is exercised on a folder of such notebooks with hand-made results.
"""

from __future__ import annotations

import csv
import re

import nbformat
import pytest
from nbformat import NotebookNode

from graders.similarity import (
    SIMILARITY_CSV, SimilarityConfig, SimilarityReport, code_document, similarity_report, template_notebook,
)
from tests.conftest import REFERENCE_NOTEBOOKS, make_notebook, write_notebook
from tests.test_rubric_csci145 import ALT_SOLUTION

ASSIGNMENT = "csci145-ps6"
CODED_PARTS = {"1A", "1B", "1C", "1D", "2A", "2B", "2C"}
RENAMES = {
    "mnist": "digits", "perm": "order", "train_set": "training", "test_set": "testing", "images": "imgs",
    "labels": "ys", "optimizer": "opt", "loss_fn": "criterion", "batches": "stream", "accuracy": "acc_of",
    "show_predictions": "plot_preds", "sq_dists": "d2", "X_train": "Xtr", "X_test": "Xte", "kernel_losses": "klosses",
    "seconds_per_step": "time_step", "widths": "dims", "layers": "mods", "mean_loss": "avg_loss", "depth": "L",
    "model": "net", "shown": "picked", "predictions": "preds", "X1": "A", "X2": "B", "z": "t",
}


def reference() -> NotebookNode:
    return nbformat.read(REFERENCE_NOTEBOOKS / f"{ASSIGNMENT}.ipynb", as_version=4)


def template() -> NotebookNode:
    notebook = template_notebook(ASSIGNMENT)
    assert notebook is not None
    return notebook


def independent() -> NotebookNode:
    return make_notebook(ALT_SOLUTION, assignment=ASSIGNMENT)


def disguise(source: str, salt: int = 0) -> str:
    """Rename variables, rewrite comments and reformat (2-space indents, spaced-out lines)."""
    for old, new in RENAMES.items():
        source = re.sub(rf"\b{old}\b", f"{new}{salt or ''}", source)
    lines = []
    for number, line in enumerate(source.split("\n")):
        code = re.sub(r"\s+#.*$", "", line) if '"' not in line.split("#")[-1] else line
        indent = len(code) - len(code.lstrip(" "))
        code = " " * (indent // 2) + code.lstrip(" ")
        lines.append(code + (f"  # step {number}, my own words" if number % 3 == 0 and code.strip() else ""))
        if number % 4 == 3:
            lines.append("")
    return "\n".join(lines)


def sections(notebook: NotebookNode) -> list[list[NotebookNode]]:
    """The cells split at each part heading (the first list is everything before the first one)."""
    split: list[list[NotebookNode]] = [[]]
    for cell in notebook.cells:
        if cell.cell_type == "markdown" and cell.source.startswith("## "):
            split.append([])
        split[-1].append(cell)
    return split


def disguised_copy(notebook: NotebookNode) -> NotebookNode:
    """Every part of ``notebook`` copied: problem 2 before problem 1, code cells within a part reversed, disguised."""
    head, *parts = sections(notebook)
    parts = parts[4:] + parts[:4]
    cells = list(head)
    for part in parts:
        markdown = [c for c in part if c.cell_type == "markdown"]
        code = [nbformat.v4.new_code_cell(disguise(c.source, 1)) for c in part if c.cell_type == "code"][::-1]
        cells.extend(markdown[:1] + code + markdown[1:])
    copy = nbformat.v4.new_notebook(metadata=notebook.metadata)
    copy.cells = cells
    return copy


def with_part_from(base: NotebookNode, part: str, donor: NotebookNode) -> NotebookNode:
    """``base`` whose code cells under ``part``'s heading are replaced by the donor's (disguised)."""
    donor_code = [c for section in sections(donor) if section and section[0].source.startswith(f"## {part}")
                  for c in section if c.cell_type == "code"]
    cells, inside = [], False
    for cell in base.cells:
        if cell.cell_type == "markdown" and cell.source.startswith("## "):
            inside = cell.source.startswith(f"## {part}")
            cells.append(cell)
            if inside:
                cells.extend(nbformat.v4.new_code_cell(disguise(c.source, 2)) for c in donor_code)
            continue
        if not (inside and cell.cell_type == "code" and "check(" not in cell.source):
            cells.append(cell)
    copy = nbformat.v4.new_notebook(metadata=base.metadata)
    copy.cells = cells
    return copy


def template_touched() -> NotebookNode:
    """The template with its comments rewritten and a print added: still nothing of the student's own."""
    notebook = template()
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.source = re.sub(r"#.*", "# TODO", cell.source)
    return notebook


def class_notebooks() -> dict[str, NotebookNode]:
    return {
        "alice": reference(),
        "bob": independent(),
        "carol": disguised_copy(reference()),
        "dave": with_part_from(template(), "1C", reference()),
        "erin": template(),
        "frank": template_touched(),
    }


def report_of(notebooks: dict[str, NotebookNode], archive: dict[str, NotebookNode] | None = None,
              config: SimilarityConfig = SimilarityConfig()) -> SimilarityReport:
    documents = [code_document(nb, name, name.title()) for name, nb in notebooks.items()]
    documents += [code_document(nb, name, origin="archive") for name, nb in (archive or {}).items()]
    return similarity_report(documents, config)


def pairs_of(report: SimilarityReport) -> dict[frozenset[str], tuple[str, ...]]:
    return {frozenset((pair.a.id, pair.b.id)): tuple(share.part for share in pair.parts) for pair in report.pairs}


@pytest.fixture(scope="module")
def class_report() -> SimilarityReport:
    return report_of(class_notebooks())


def test_the_disguised_copy_is_reported_with_every_part(class_report):
    pairs = pairs_of(class_report)
    assert CODED_PARTS <= set(pairs[frozenset(("alice", "carol"))]) <= CODED_PARTS | {"preamble"}
    best = class_report.pairs[0]
    assert {best.a.id, best.b.id} == {"alice", "carol"}
    assert best.score > 0.9 and best.regions >= 7


def test_the_partial_copy_is_reported_with_its_part_only(class_report):
    pairs = pairs_of(class_report)
    assert pairs[frozenset(("alice", "dave"))] == ("1C",)
    assert pairs[frozenset(("carol", "dave"))] == ("1C",)  # carol copied alice, so her 1C is the same code


def test_independent_and_template_only_submissions_are_not_reported(class_report):
    assert set(pairs_of(class_report)) == {frozenset(p) for p in (("alice", "carol"), ("alice", "dave"), ("carol", "dave"))}


def test_template_code_is_excluded_before_comparing():
    """Without excluding the template, two template-only submissions are identical."""
    notebooks = {"erin": template(), "frank": template_touched()}
    assert not report_of(notebooks).pairs
    bare = similarity_report([code_document(nb, name) for name, nb in notebooks.items()], templates={})
    assert pairs_of(bare) == {frozenset(("erin", "frank")): pairs_of(bare)[frozenset(("erin", "frank"))]}


def test_code_most_of_the_class_shares_is_excluded():
    """A solution that most of a large class has (a handout, say) is not evidence between any two of them."""
    notebooks = {f"s{n}": with_part_from(template(), "1C", reference()) for n in range(10)}
    notebooks["bob"] = independent()
    assert not report_of(notebooks).pairs


def test_compare_with_finds_a_planted_archive_copy():
    archive = {"2025/keith": independent(), "2025/lena": reference()}
    notebooks = {"bob2": disguised_copy(independent()), "erin": template(), "dave": with_part_from(template(), "2B", reference())}
    report = report_of(notebooks, archive)
    pairs = pairs_of(report)
    assert set(pairs) == {frozenset(("bob2", "2025/keith")), frozenset(("dave", "2025/lena"))}
    assert all(pair.a.origin == "class" and pair.b.origin == "archive" for pair in report.pairs)
    assert pairs[frozenset(("dave", "2025/lena"))] == ("2B",)
    assert report.archive == 2 and report.submissions == 3


def test_a_pair_of_archive_notebooks_is_never_reported():
    report = report_of({"erin": template()}, {"old1": reference(), "old2": disguised_copy(reference())})
    assert not report.pairs


PWN = "window.__pwned"


def test_the_batch_step_writes_the_csv_the_summary_section_and_inert_side_by_side_pages(tmp_path):
    """What grade_batch runs at its end (BatchRun.write_outputs), on collected items with hand-made results."""
    from graders.batch import SUMMARY_NAME, BatchRun, Manifest, write_result_files
    from graders.collect import collect_submissions
    from graders.grade import invalid_result
    from graders.gradebook import row_from_result
    from tests.conftest import fast_config

    hostile = f'note = "</pre><script>{PWN} = 1</script><img src=x onerror=alert(1)>"  # <script>{PWN} = 2</script>\n'
    notebooks = class_notebooks()
    for name in ("alice", "carol"):
        notebooks[name].cells.insert(2, nbformat.v4.new_code_cell(hostile * 3))
    folder, archive, out = tmp_path / "class", tmp_path / "2025", tmp_path / "class.graded"
    for directory in (folder, archive, out):
        directory.mkdir()
    for name, notebook in notebooks.items():
        write_notebook(notebook, folder / f"{name}.ipynb")
    write_notebook(independent(), archive / "keith.ipynb")  # bob's notebook, found online

    config = fast_config(assignment=ASSIGNMENT)
    collected = collect_submissions(folder)
    run = BatchRun(collected, out, config, Manifest(seed=1), force=True)
    run.archives = [(archive, collect_submissions(archive).items)]
    for item in collected.items:
        result = invalid_result(item.path, config, 1, "not graded in this test", 0.0)
        write_result_files(result, out / item.id, config)
        run.rows[item.id] = row_from_result(item.id, result, host="test")
    run.write_outputs()

    with (out / SIMILARITY_CSV).open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert {frozenset((r["a_id"], r["b_id"])) for r in rows} == {
        frozenset(p) for p in (("alice", "carol"), ("alice", "dave"), ("carol", "dave"), ("bob", "2025/keith"))}
    assert run.similar_pairs == 4
    for row in rows:
        assert 0.0 <= float(row["similarity"]) <= 1.0 and int(row["regions"]) >= 1 and row["parts"]
    dave = next(r for r in rows if "dave" in (r["a_id"], r["b_id"]) and "alice" in (r["a_id"], r["b_id"]))
    assert dave["parts"].startswith("1C (") and ";" not in dave["parts"]
    archived = next(r for r in rows if r["b_origin"] == "archive")
    assert (archived["a_id"], archived["b_id"]) == ("bob", "2025/keith")

    summary = (out / SUMMARY_NAME).read_text()
    assert "Similar submissions" in summary and "never a verdict" in summary
    pages = [out / row["page"] for row in rows]
    for page in pages:
        assert page.is_file() and f'href="{page.relative_to(out).as_posix()}"' in summary
    for html in [summary, *(page.read_text() for page in pages)]:
        assert "<script" not in html.lower() and "<img" not in html.lower()
    copy_page = (out / next(r["page"] for r in rows if {r["a_id"], r["b_id"]} == {"alice", "carol"})).read_text()
    assert "Content-Security-Policy" in copy_page and "default-src 'none'" in copy_page
    assert "&lt;script&gt;" + PWN in copy_page and 'class="line m1"' in copy_page


def test_renaming_reformatting_and_comments_do_not_change_the_normalised_code():
    from graders.similarity import normalise

    one = normalise("def kernel(X, s):\n    # squared distances\n    d = (X ** 2).sum(1)\n    return torch.exp(-d / s)  # done\n")
    two = normalise("def k2(A,sig):\n  d2=(A**2).sum(1)   ;\n\n  return torch.exp(  -d2/sig )\n")
    assert one[0].replace(";", "") == two[0].replace(";", "") == "defF(V,V):V=(V**2).V(1)returnV.V(-V/V)"
    assert one[1].tolist()[:1] == [0] and one[1].tolist()[-1] == 3  # each character knows its source line


def test_magics_and_cells_the_tokenizer_rejects_are_still_compared():
    kernel_cell = next(c.source for c in reference().cells if c.source.startswith("def gaussian_kernel"))
    broken = "%matplotlib inline\n!pip install torch\n" + kernel_cell + "\nprint((K_train"  # unclosed: Pygments fallback
    notebooks = {name: make_notebook([("markdown", "## 1C · Kernel"), disguise(broken, salt)], assignment=ASSIGNMENT)
                 for salt, name in enumerate(("gus", "hal"))}
    notebooks["erin"] = template()
    assert pairs_of(report_of(notebooks)) == {frozenset(("gus", "hal")): ("1C",)}


def test_a_failing_similarity_step_leaves_the_grades_and_says_why(tmp_path, monkeypatch):
    import graders.similarity
    from graders.batch import SUMMARY_NAME, BatchRun, Manifest
    from graders.collect import collect_submissions
    from tests.conftest import fast_config

    def broken(*args, **kwargs):
        raise MemoryError("synthetic")

    folder, out = tmp_path / "class", tmp_path / "out"
    folder.mkdir()
    out.mkdir()
    write_notebook(template(), folder / "erin.ipynb")
    monkeypatch.setattr(graders.similarity, "batch_similarity", broken)
    run = BatchRun(collect_submissions(folder), out, fast_config(), Manifest(seed=1), force=True)
    run.write_outputs()
    assert "The similarity report could not be made: MemoryError: synthetic" in (out / SUMMARY_NAME).read_text()
    assert (out / "gradebook.csv").is_file() and not (out / SIMILARITY_CSV).exists()
