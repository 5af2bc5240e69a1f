"""The student bundle: ``grade student ASSIGNMENT -o DIR`` writes what a student gets.

    DIR/
      ASSIGNMENT.ipynb        the template (problem statements, stubs, check cells)
      README.md               how to install the checks and use them
      nbgrade-ml/             an installable copy of the ``graders`` package (``pip install ./nbgrade-ml``), and of
                              the assignment's own package when another distribution declares it
      nbgrade-ml.tar.gz       the same as one file (Colab: upload it, ``!pip install nbgrade-ml.tar.gz``)

What stays with the instructor, and why the rest may go:

* **Secret, never in the bundle:** the ``reference`` package (solution code, written answers,
  executed solution notebooks, calibration data), every assignment's own reference package or
  module and the reference files it declares (:func:`secret_paths`), the instructor's tests and
  benchmarks.
* **Shipped:** the whole ``graders`` package, rubric modules included, and, for an assignment that
  another distribution declares, that assignment's top-level package (declaration, rubric, probes,
  template) with its entry point and its requirements. A rubric holds the
  hidden checks' code (their claims, tolerances and catalogues of known mistakes) but no
  solution: every check that needs one gets it through ``ctx.ref()``, which imports the
  assignment's ``reference_module`` only when grading, and reports "runs when your work is graded" where
  it is absent. The hidden *inputs* are drawn from a fresh seed at grading time, so seeing how
  they are drawn does not tell a student what they will be.

:func:`secret_leaks` is the proof the tests rely on: no reference function body, no reference
answer text and no reference notebook cell in anything the bundle holds (the ``reference`` package's
and the assignment's own secret files alike).
"""

from __future__ import annotations

import ast
import io
import json
import re
import shutil
import tarfile
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path

import nbformat

import graders
from graders.assignment import AssignmentSpec, find_module
from graders.registry import ENTRY_POINT_GROUP, entry_point, get_assignment

DISTRIBUTION = "nbgrade-ml"
PACKAGE_DIR = Path(graders.__file__).resolve().parent
REPO = PACKAGE_DIR.parent
PACKAGE_DATA = ["templates/*", "templates/**/*", "schemas/*", "assets/*"]
"""The ``graders`` package data globs, as in the project's pyproject.toml."""
SKIPPED = ("__pycache__", ".pyc", ".pyo", ".DS_Store")


class BundleError(Exception):
    """The bundle cannot be written (no template, target not empty): one line for the user."""


@dataclass(frozen=True)
class Distribution:
    """What the harness's own packaging says about itself."""

    name: str
    version: str
    requires_python: str
    requirements: tuple[str, ...]
    """Runtime dependencies (version ranges, never pins), without the optional extras."""
    assignments: tuple[tuple[str, str], ...] = ()
    """The ``nbgrade.assignments`` entry points (id, ``module:ASSIGNMENT``): how the copy finds the assignments."""
    packages: tuple[str, ...] = ()
    """Top-level packages shipped beside ``graders`` (an assignment's own, from another distribution)."""


@dataclass(frozen=True)
class Bundle:
    """Where :func:`write_bundle` put each piece."""

    root: Path
    template: Path
    package: Path
    archive: Path
    readme: Path


# ---------------------------------------------------------------------------------------------
# The harness's own metadata (shared with the Gradescope autograder)
# ---------------------------------------------------------------------------------------------
def harness_distribution() -> Distribution:
    """Name, version and dependencies: the checkout's pyproject.toml, else the installed metadata."""
    pyproject = REPO / "pyproject.toml"
    try:
        import tomllib  # Python 3.11+
    except ImportError:
        tomllib = None
    if pyproject.is_file() and tomllib is not None:
        project = tomllib.loads(pyproject.read_text())["project"]
        entries = project.get("entry-points", {}).get(ENTRY_POINT_GROUP, {})
        return Distribution(project["name"], project["version"], project.get("requires-python", ">=3.10"),
                            tuple(project.get("dependencies", ())), tuple(sorted(entries.items())))
    meta = metadata.metadata(DISTRIBUTION)
    requirements = tuple(r for r in (metadata.requires(DISTRIBUTION) or []) if "extra ==" not in r)
    entries = tuple(sorted((ep.name, ep.value) for ep in metadata.distribution(DISTRIBUTION).entry_points
                           if ep.group == ENTRY_POINT_GROUP))
    return Distribution(meta["Name"], meta["Version"], meta.get("Requires-Python") or ">=3.10", requirements, entries)


def requirement_name(requirement: str) -> str:
    """The project name a requirement names, normalised (``Foo_Bar>=1`` → ``foo-bar``)."""
    return re.split(r"[\s<>=!~;\[(@]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-").replace(".", "-")


def with_assignment(dist: Distribution, assignment_id: str, packages: tuple[str, ...] = ()) -> Distribution:
    """``dist`` plus what an assignment from another distribution needs: its entry point, its requirements, ``packages``.

    An assignment the harness registers itself changes nothing but the ``packages`` listed.
    """
    entry = entry_point(assignment_id)
    declared = dict(dist.assignments)
    extra = tuple(p for p in packages if p not in dist.packages)
    if declared.get(assignment_id) == entry.value:
        return replace(dist, packages=dist.packages + extra)
    declared[assignment_id] = entry.value
    requirements = list(dist.requirements)
    known = {requirement_name(r) for r in requirements} | {requirement_name(dist.name)}
    owner = getattr(entry, "dist", None)
    for requirement in (owner.requires or []) if owner is not None else []:
        name = requirement_name(requirement)
        if "extra ==" not in requirement and name not in known:
            requirements.append(requirement)
            known.add(name)
    return replace(dist, requirements=tuple(requirements), assignments=tuple(sorted(declared.items())),
                   packages=dist.packages + extra)


def package_files(package_dir: Path = PACKAGE_DIR) -> list[Path]:
    """Every file of a package directory except bytecode and editor litter, sorted."""
    return sorted(
        path for path in package_dir.rglob("*")
        if path.is_file() and not any(part in SKIPPED or part.endswith(SKIPPED) for part in path.relative_to(package_dir).parts)
    )


def top_level(module: str) -> str:
    return module.split(".")[0]


def module_location(name: str) -> Path | None:
    """The folder of package ``name``, or the file of module ``name`` (None: not importable here)."""
    spec = find_module(name)
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations))).resolve()
    return Path(spec.origin).resolve() if spec.origin and spec.origin not in ("built-in", "frozen") else None


def top_level_members(name: str, exclude: tuple[Path, ...] = ()) -> list[tuple[str, Path]]:
    """(path in an archive, file) of every file of the top-level package or module ``name``, minus ``exclude``.

    A file is excluded when it is one of ``exclude`` or lies in a folder among them.
    """
    location = module_location(name)
    if location is None:
        raise BundleError(f"{name} cannot be imported here: install the distribution that holds it")
    excluded = tuple(p.resolve() for p in exclude)

    def kept(path: Path) -> bool:
        path = path.resolve()
        return not any(path == e or path.is_relative_to(e) for e in excluded)

    if location.is_file():
        return [(location.name, location)] if kept(location) else []
    return [(f"{name}/{p.relative_to(location).as_posix()}", p) for p in package_files(location) if kept(p)]


def own_package(spec: AssignmentSpec) -> str | None:
    """The top-level package declaring the assignment, when it is not ``graders`` (another distribution's)."""
    name = top_level(spec.package)
    return None if name == PACKAGE_DIR.name else name


def secret_paths(spec: AssignmentSpec) -> tuple[Path, ...]:
    """What of an assignment must never reach a student: its reference module, notebook, answers, calibration.

    The reference module counts as its whole top-level package when that package is not the one
    declaring the assignment (``stat101_reference``), else as the module alone (its file or folder).
    """
    found: list[Path] = []
    if spec.reference_module:
        package = spec.reference_package
        location = module_location(spec.reference_module if package == top_level(spec.package) else package)
        if location is not None:
            found.append(location)
    for declared in (spec.reference_notebook, spec.reference_answers, spec.calibration):
        path = spec.reference_path(declared)
        if path is not None and path.exists():
            found.append(path.resolve())
    return tuple(dict.fromkeys(found))


# ---------------------------------------------------------------------------------------------
# Writing the bundle
# ---------------------------------------------------------------------------------------------
def template_path(assignment_id: str) -> Path:
    """The student template the assignment's package declares."""
    path = get_assignment(assignment_id).template
    if path is None or not path.is_file():
        raise BundleError(f"no student template {path} (run from a checkout of the project, or pass --template)")
    return path


def write_bundle(assignment_id: str, out_dir: Path, template: Path | None = None, force: bool = False) -> Bundle:
    """Write the template, an installable ``graders`` package and a README into ``out_dir``."""
    get_assignment(assignment_id)
    template = template or template_path(assignment_id)
    check_template(template, assignment_id)
    if out_dir.exists() and any(out_dir.iterdir()) and not force:
        raise BundleError(f"{out_dir} is not empty (use --force to overwrite)")
    out_dir.mkdir(parents=True, exist_ok=True)
    notebook = out_dir / f"{assignment_id}.ipynb"
    shutil.copyfile(template, notebook)
    spec = get_assignment(assignment_id)
    own = own_package(spec)
    extra = top_level_members(own, exclude=secret_paths(spec)) if own else []
    dist = with_assignment(harness_distribution(), assignment_id, (own,) if own else ())
    package = write_package(out_dir / DISTRIBUTION, dist, extra)
    archive = write_archive(package, out_dir / f"{DISTRIBUTION}.tar.gz")
    readme = out_dir / "README.md"
    readme.write_text(student_readme(assignment_id, notebook.name), encoding="utf-8")
    return Bundle(out_dir, notebook, package, archive, readme)


def check_template(path: Path, assignment_id: str) -> None:
    """Refuse a template for another assignment, or one that carries outputs (a run notebook)."""
    notebook = nbformat.read(str(path), as_version=4)
    declared = notebook.metadata.get("nbgrade", {}).get("assignment")
    if declared != assignment_id:
        raise BundleError(f"{path} declares assignment {declared!r}, not {assignment_id!r}")
    if any(cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"):
        raise BundleError(f"{path} has outputs: give students the clean template, not a run notebook")


def write_package(target: Path, dist: Distribution, extra: list[tuple[str, Path]] | None = None) -> Path:
    """A source tree ``pip`` can install: pyproject.toml, a copy of ``graders`` (no reference) and ``extra``.

    ``extra``: (path in the tree, file) of the other top-level packages ``dist.packages`` names.
    """
    if target.exists():
        shutil.rmtree(target)
    members = [(f"graders/{p.relative_to(PACKAGE_DIR).as_posix()}", p) for p in package_files()] + list(extra or [])
    for name, source in members:
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, destination)
    data = {package: tuple(sorted(name.split("/", 1)[1] for name, _ in extra or []
                                  if name.startswith(f"{package}/") and not name.endswith(".py")))
            for package in dist.packages}
    (target / "pyproject.toml").write_text(student_pyproject(dist, data), encoding="utf-8")
    return target


def student_pyproject(dist: Distribution, package_data: dict[str, tuple[str, ...]] | None = None) -> str:
    """``package_data``: for each of ``dist.packages``, its data files (relative to it) to install."""
    dependencies = "".join(f'    "{r}",\n' for r in dist.requirements)
    data = ", ".join(f'"{glob}"' for glob in PACKAGE_DATA)
    include = ", ".join(f'"{glob}"' for glob in ("graders*", *(g for p in dist.packages for g in (p, f"{p}.*"))))
    other_data = "".join(f"{package} = [{', '.join(json.dumps(f) for f in files)}]\n"
                         for package, files in (package_data or {}).items() if files)
    return (
        '[build-system]\nrequires = ["setuptools>=68", "wheel"]\nbuild-backend = "setuptools.build_meta"\n\n'
        f'[project]\nname = "{dist.name}"\nversion = "{dist.version}"\n'
        'description = "Public checks for the problem set (the student copy: no reference solutions)"\n'
        f'requires-python = "{dist.requires_python}"\ndependencies = [\n{dependencies}]\n\n'
        '[project.scripts]\ngrade = "graders.cli:main"\n\n'
        f'[project.entry-points."{ENTRY_POINT_GROUP}"]\n'
        + "".join(f'{name} = "{value}"\n' for name, value in dist.assignments) + "\n"
        f'[tool.setuptools.packages.find]\ninclude = [{include}]\n\n'
        f"[tool.setuptools.package-data]\ngraders = [{data}]\n{other_data}"
    )


def write_archive(package: Path, target: Path) -> Path:
    """The package as an sdist-shaped ``.tar.gz`` (one top directory), reproducible byte for byte."""
    top = f"{package.name}"
    with open(target, "wb") as raw:
        with tarfile.open(fileobj=raw, mode="w:gz", format=tarfile.PAX_FORMAT) as archive:
            for path in sorted(p for p in package.rglob("*") if p.is_file()):
                info = tarfile.TarInfo(f"{top}/{path.relative_to(package).as_posix()}")
                data = path.read_bytes()
                info.size, info.mode, info.mtime = len(data), 0o644, 0
                archive.addfile(info, io.BytesIO(data))
    return target


def student_readme(assignment_id: str, notebook: str) -> str:
    spec = get_assignment(assignment_id)
    title, first = spec.title, spec.part_ids[0]
    return f"""# {title}: your notebook and its checks

`{notebook}` is your answer sheet: the problem statements, a stub for every name the grader
looks for, and a check cell after each part. Keep the names; replace the stubs with your code.

## Install the checks (once)

    python -m pip install ./{DISTRIBUTION}            # on your machine, from this folder

On Google Colab, upload `{DISTRIBUTION}.tar.gz` (Files panel) and run `!pip install {DISTRIBUTION}.tar.gz`.
It installs the `grade` command and the `graders` package: PyTorch, torchvision, scikit-learn,
Jupyter's nbclient and a few small libraries. No solution is included.

## Check your work

* In the notebook: `from graders import check; check("{first}")` runs the *public* checks of one
  part on the objects you defined (`check()` runs all parts) and prints what passed, what did
  not and a hint. Parts that train nothing take a second or two.
* In a terminal: `grade --public {notebook}` runs the whole notebook from top to bottom the way
  the grader does (in a fresh kernel, offline) and writes `{Path(notebook).stem}.graded/report.html`.

Public checks test what can be tested without the solution: types, shapes, agreement with
autograd or with the problem's own formula, self-consistency. Hidden checks (comparisons with
the reference solution, accuracy on digits the grader holds back, inputs drawn at grading time)
run only when you submit; the report lists them as "runs when your submission is graded".

## Submit

1. Kernel → Restart & Run All, and fix what fails.
2. `grade pdf {notebook}` makes the PDF with your outputs for the written (self-graded) assignment.
3. Upload `{notebook}` itself to the autograded Gradescope assignment. Any file name works; if
   you upload several notebooks, the autograder says which one it graded.
"""


# ---------------------------------------------------------------------------------------------
# The proof that nothing secret left: used by the tests and by `grade student --verify`
# ---------------------------------------------------------------------------------------------
MIN_SECRET_LINE = 30
"""Characters a line of reference prose needs before its presence in the bundle counts as a leak."""
CODE_WINDOW = 3
"""Consecutive lines of reference code (or data) that count as a leak when the bundle has them in a row."""


def reference_root() -> Path | None:
    from importlib.util import find_spec

    spec = find_spec("reference")
    return Path(next(iter(spec.submodule_search_locations))) if spec and spec.submodule_search_locations else None


def function_bodies(source: str) -> set[str]:
    """The normalised body of every function with two statements or more (or one long one)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    bodies = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = [s for s in node.body if not (isinstance(s, ast.Expr) and isinstance(getattr(s, "value", None), ast.Constant))]
            module = ast.Module(body=body, type_ignores=[])
            if len(body) >= 2 or len(ast.unparse(module)) >= MIN_SECRET_LINE * 2:
                bodies.add(ast.dump(module))
    return bodies


def _normalised_lines(text: str, minimum: int) -> list[str]:
    lines = []
    for raw in text.splitlines():
        line = re.sub(r"\s+", " ", raw).strip()
        if len(line) >= minimum and not re.match(r"^(import |from \S+ import |#|\"\"\"|\'\'\')", line):
            lines.append(line)
    return lines


def prose_lines(text: str) -> set[str]:
    """Lines of prose long enough to identify their source."""
    return set(_normalised_lines(text, MIN_SECRET_LINE))


def code_windows(text: str) -> set[tuple[str, ...]]:
    """Every run of CODE_WINDOW consecutive non-trivial lines (imports, comments and short lines skipped)."""
    lines = _normalised_lines(text, 12)
    return {tuple(lines[i : i + CODE_WINDOW]) for i in range(len(lines) - CODE_WINDOW + 1)}


def bundle_texts(root: Path) -> dict[Path, str]:
    """Every file of the bundle as text (the archive's members included)."""
    texts = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.suffixes[-2:] == [".tar", ".gz"]:
            with tarfile.open(path) as archive:
                for member in archive.getmembers():
                    handle = archive.extractfile(member)
                    if handle is not None:
                        texts[path / member.name] = handle.read().decode("utf-8", "replace")
        else:
            texts[path] = path.read_bytes().decode("utf-8", "replace")
    return texts


@dataclass(frozen=True)
class SecretText:
    """What identifies one reference file: its bytes, function bodies, code runs and prose lines."""

    text: str
    bodies: frozenset[str]
    windows: frozenset[tuple[str, ...]]
    prose: frozenset[str]


def secret_text(source: Path) -> SecretText:
    text = source.read_bytes().decode("utf-8", "replace")
    if source.suffix == ".ipynb":
        cells = nbformat.reads(text, as_version=4).cells
        code = "\n".join(c.source for c in cells if c.cell_type == "code")
        prose = "\n".join(c.source for c in cells if c.cell_type == "markdown")
        return SecretText(text, frozenset(function_bodies(code)), frozenset(code_windows(code)), frozenset(prose_lines(prose)))
    if source.suffix == ".py":
        return SecretText(text, frozenset(function_bodies(text)), frozenset(code_windows(text)), frozenset())
    if source.suffix == ".md":
        return SecretText(text, frozenset(), frozenset(), frozenset(prose_lines(text)))
    return SecretText(text, frozenset(), frozenset(code_windows(text)), frozenset())


def secret_sources(reference: Path | None = None, assignment_id: str | None = None) -> list[tuple[str, Path]]:
    """(label, file) of every secret file to look for: the ``reference`` package's, and the assignment's own."""
    roots: list[tuple[str, Path]] = []
    reference = reference or reference_root()
    if reference is not None:
        roots.append(("reference", reference))
    if assignment_id is not None:
        roots.extend((path.name, path) for path in secret_paths(get_assignment(assignment_id)))
    sources: dict[Path, str] = {}
    for label, root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
        for path in files:
            sources.setdefault(path.resolve(), label if path == root else f"{label}/{path.relative_to(root).as_posix()}")
    return [(label, path) for path, label in sources.items()]


def secret_leaks(root: Path, reference: Path | None = None, assignment_id: str | None = None) -> list[str]:
    """What of the reference material appears in the bundle at ``root`` (empty: nothing).

    The reference material is the ``reference`` package (``reference``, else the installed one) and,
    with ``assignment_id``, that assignment's own secret files (:func:`secret_paths`: its reference
    module or package, notebook, answers, calibration), wherever its distribution keeps them.

    A leak is a reference file's exact content, a reference function's body (compared as syntax
    trees, so reformatting does not hide it), CODE_WINDOW consecutive lines of reference code or
    data, or a line of the reference's prose (answers, solution-notebook markdown).
    """
    sources = secret_sources(reference, assignment_id)
    if not sources:
        raise BundleError("no reference material is installed here: nothing to compare the bundle with")
    secret_names = {"reference"} | {label.split("/", 1)[0] for label, _ in sources if "/" in label}  # secret folders
    texts = bundle_texts(root)
    leaks = [f"{p.relative_to(root)} is a reference file" for p in texts if secret_names & set(p.relative_to(root).parts)]
    contents = set(texts.values())
    bodies = set().union(*(function_bodies(t) for p, t in texts.items() if p.suffix == ".py"))
    notebooks = [nbformat.reads(t, as_version=4) for p, t in texts.items() if p.suffix == ".ipynb"]
    bodies |= set().union(set(), *(function_bodies("\n".join(c.source for c in nb.cells if c.cell_type == "code")) for nb in notebooks))
    windows = set().union(*(code_windows(t) for t in texts.values()))
    prose = set().union(*(prose_lines(t) for t in texts.values()))
    for where, source in sources:
        secret = secret_text(source)
        if secret.text in contents:
            leaks.append(f"{where}: the whole file")
        leaks.extend(f"{where}: a function body" for _ in secret.bodies & bodies)
        leaks.extend(f"{where}: code {' / '.join(w)[:90]!r}" for w in sorted(secret.windows & windows))
        leaks.extend(f"{where}: text {line[:80]!r}" for line in sorted(secret.prose & prose))
    return leaks
