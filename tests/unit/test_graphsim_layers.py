"""The Graph simulator's modules import one another without a circle.

Every import counts, at module level, inside a function or under ``TYPE_CHECKING``: a
circle hidden in a function body is still a circle a reader has to untangle. Importing
``pkg.mod`` also imports ``pkg``, so each import reaches the enclosing packages too.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

Graph = dict[str, set[str]]


def module_name(path: Path, root: Path) -> str:
    """The dotted name of a source file under ``root``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def with_parents(name: str, known: set[str]) -> set[str]:
    """``name`` and the packages that hold it, as far as they are modules of ours."""
    parts = name.split(".")
    return {".".join(parts[:n]) for n in range(1, len(parts) + 1)} & known


def imports_of(path: Path, root: Path, known: set[str]) -> set[str]:
    """The modules of the package that ``path`` imports, wherever the import statement stands."""
    own = module_name(path, root)
    here = own if path.name == "__init__.py" else own.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found |= with_parents(alias.name, known)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            found |= with_parents(base, known)
            for alias in node.names:
                found |= with_parents(f"{base}.{alias.name}", known)
    found.discard(own)
    return found


def import_graph(package_dir: Path, root: Path = ROOT) -> Graph:
    """Module -> the package's modules it imports."""
    paths = sorted(package_dir.rglob("*.py"))
    known = {module_name(p, root) for p in paths}
    return {module_name(p, root): imports_of(p, root, known) for p in paths}


def cycles(graph: Graph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_checker_finds_a_circle_and_passes_a_line():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_relative_imports_resolve_in_functions_and_type_checking_blocks(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "models").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "models" / "__init__.py").write_text("")
    (pkg / "models" / "store.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..state import S\n"
    )
    (pkg / "state.py").write_text("def f():\n    from .models import store\n")
    graph = import_graph(pkg, tmp_path)
    assert graph["pkg.state"] == {"pkg", "pkg.models", "pkg.models.store"}
    assert cycles(graph) == [["pkg.models.store", "pkg.state"]]


def test_the_simulator_has_no_import_cycle():
    graph = import_graph(ROOT / "devtools" / "graphsim")
    assert len(graph) > 20, "the simulator's modules were not found"
    assert cycles(graph) == []
