"""The package layout keeps its promises: no import cycles, modules of one concept each.

docs/architecture.md draws the layers; these tests keep the code true to it.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "algoperf"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, known: set[str]) -> set[str]:
    """algoperf modules ``path`` imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found |= {n for n in names if n in known}
    return found


def import_graph() -> dict[str, set[str]]:
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    known = set(paths)
    graph = {name: _imports(path, known) - {name} for name, path in paths.items()}
    # A package's __init__ importing its own modules is not a cycle of concepts.
    return {m: {d for d in deps if not m.startswith(d + ".") and not d.startswith(m + ".")} for m, deps in graph.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_between_modules():
    assert cycles(import_graph()) == []


# Modules still over the limit, each with what it holds; split them as they are next touched.
# The test fails when one of these is split (shrink the list) or another module grows past it.
OVERSIZED = {
    "algoperf/spec.py": "the whole AlgoPerf interface in one file, as AlgoPerf states it",
    "algoperf/environment.py": "algoperf env: node facts, cluster gathering, comparison, printing",
    "algoperf/scoring/command.py": "algoperf score: inputs, rules, output",
    "algoperf/tracking/store.py": "MLflow experiments, runs, tags and artifacts",
    "algoperf/tracking/observer.py": "the live MLflow observer and its sender thread",
}
MAX_LINES = 400


def test_modules_stay_under_400_lines():
    long = {str(p.relative_to(PACKAGE.parent)) for p in PACKAGE.rglob("*.py") if len(p.read_text().splitlines()) > MAX_LINES}
    assert long - set(OVERSIZED) == set(), "split these modules (one concept each)"
    assert set(OVERSIZED) - long == set(), "these are short now: remove them from OVERSIZED"
