"""The library's layering: no import cycle under pipeline/ (imports for type checkers aside)."""

from __future__ import annotations

import ast
from pathlib import Path

from ..helpers import REPO


def _module(path: Path) -> str:
    name = ".".join(path.relative_to(REPO).with_suffix("").parts)
    return name.removesuffix(".__init__")


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The project modules ``path`` imports, at module level or inside functions; imports
    made only for type checkers (``if TYPE_CHECKING:``) do not run and do not count."""
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and getattr(node.test, "id", getattr(node.test, "attr", "")) == "TYPE_CHECKING"
                   for n in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in found if m in modules} - {_module(path)}


def import_graph() -> dict[str, set[str]]:
    paths = sorted((REPO / "pipeline").rglob("*.py"))
    modules = {_module(p) for p in paths}
    return {_module(p): _imports(p, modules) for p in paths}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle in ``graph`` as its path of nodes (first node repeated at the end), or None."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return path[path.index(node):] + [node]
        if node in done:
            return None
        for nxt in sorted(graph[node]):
            if cycle := visit(nxt, [*path, node]):
                return cycle
        done.add(node)
        return None

    return next((c for m in sorted(graph) if (c := visit(m, []))), None)


def test_no_import_cycle_under_pipeline():
    graph = import_graph()
    assert "pipeline.core.config" in graph["pipeline.train.runner"]  # the walk sees imports
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_walk_finds_a_cycle_when_there_is_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_validating_params_imports_no_torch():
    """A typo in params.yaml is reported before torch loads (the architecture names are
    checked by the torch-free pipeline/core/archs.py)."""
    import subprocess
    import sys

    code = ("import sys; from pipeline.core.config import load_params; load_params(); "
            "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, check=True)
    assert done.stdout.strip() == "False"
