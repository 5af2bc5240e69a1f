"""The harness's modules form an acyclic import graph, and each imports on its own.

Every import that runs counts, wherever it is written: at module level or inside a function (a
lazy import still ties the two modules together). An import under ``if TYPE_CHECKING:`` never
runs and only names a type for an annotation, so it is not an edge (``python -X importtime``
would not see it either). A cycle means two modules that cannot be read, tested or moved one
without the other.
"""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "graders"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def harness_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of ``tree`` except those under ``if TYPE_CHECKING:`` (type-only imports)."""
    nodes, stack = [], [tree]
    while stack:
        node = stack.pop()
        nodes.append(node)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                stack.extend(child.orelse)
                continue
            stack.append(child)
    return nodes


def imported_modules(path: Path, module: str, known: set[str]) -> set[str]:
    """The harness modules ``path`` imports where the import runs (relative imports resolved)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        for name in names:
            while name and name not in known:  # ``import graders.kernel.naming`` also imports its parents
                name = name.rpartition(".")[0]
            if name and name != module and name != "graders":
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = harness_modules()
    return {name: imported_modules(path, name, set(modules)) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_import_graph_finds_a_planted_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_relative_and_nested_imports_are_resolved(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("from .outcome import Outcome\ndef f():\n    import graders.kernel.naming\n"
                      "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from graders.judge import JudgeContext\n")
    known = {"graders.outcome", "graders.kernel", "graders.kernel.naming", "graders.judge", "graders.m"}
    assert imported_modules(source, "graders.m", known) == {"graders.outcome", "graders.kernel.naming"}


def test_no_import_cycle_among_harness_modules() -> None:
    assert cycles(import_graph()) == []


OPTIONAL = {"graders.cluster": "distributed"}
"""Modules that need an optional dependency (``pip install .[cluster]``)."""
KERNEL_SIDE = {"graders.kernel.prelude"}
"""Sent to the kernel as text and run there (it needs IPython's running shell), never imported by the grader."""


@pytest.mark.parametrize("module", sorted(set(harness_modules()) - KERNEL_SIDE))
def test_each_module_imports_in_a_fresh_interpreter(module: str) -> None:
    needs = OPTIONAL.get(module)
    if needs and importlib.util.find_spec(needs) is None:
        pytest.skip(f"{module} needs {needs}")
    done = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
