"""The import graph keeps the architecture of docs/architecture.md: no cycles, and the office side
never needs the operator's key-handling package.

The graph is read from the source (every ``import`` statement, at module level or inside a function,
since a lazy import is a dependency all the same), not from what happens to be imported at run time.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "mobility"
OPERATOR = "mobility.anonymize"
# Stages that run at the statistics office, which never holds the key: they must not reach the operator
# package, directly or through anything they import. Shared modules (config, schemas, lake, spark,
# reference, errors, progress) are on both sides, so the same holds for them.
OFFICE_SIDE = ("mobility.residence", "mobility.aggregate", "mobility.release", "mobility.privacy_budget",
               "mobility.publish", "mobility.report", "mobility.estimate")
SHARED = ("mobility.config", "mobility.schemas", "mobility.lake", "mobility.spark", "mobility.reference",
          "mobility.errors", "mobility.progress", "mobility.faults", "mobility.cluster_errors")


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((SRC / PACKAGE).rglob("*.py"))}


def _targets(node: ast.AST, here: str, is_package: bool, known: set[str]) -> set[str]:
    """The project modules an import statement depends on (a name imported from a package that is
    itself a module counts as that module)."""
    found: set[str] = set()
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
        if node.level:  # relative: resolve against this module's package
            base = here.split(".") if is_package else here.split(".")[:-1]
            base = base[:len(base) - node.level + 1]
            module = ".".join(base + ([node.module] if node.module else []))
        else:
            module = node.module or ""
        names = [f"{module}.{alias.name}" if f"{module}.{alias.name}" in known else module for alias in node.names]
    else:
        return found
    for name in names:
        while name and name not in known:  # `import mobility.a.b` of a module, or a name inside one
            name = name.rpartition(".")[0]
        if name.startswith(PACKAGE) and name != here:
            found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    graph = {}
    for name, path in found.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        graph[name] = set().union(*(_targets(node, name, path.name == "__init__.py", known)
                                    for node in ast.walk(tree)))
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def reaches(graph: dict[str, set[str]], start: str, target_prefix: str) -> list[str] | None:
    """A chain of imports from ``start`` to a module under ``target_prefix``, or None."""
    seen, queue = {start: [start]}, [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph.get(v, ())):
            if w not in seen:
                seen[w] = seen[v] + [w]
                if w == target_prefix or w.startswith(target_prefix + "."):
                    return seen[w]
                queue.append(w)
    return None


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_the_graph_reads_every_module_and_finds_known_edges():
    graph = import_graph()
    assert len(graph) > 60
    # edges the pipeline cannot work without: if these are not found, the reader is broken
    assert "mobility.privacy_budget.boundary" in graph["mobility.release.flows"]
    assert "mobility.lake" in graph["mobility.residence.job"]
    assert "mobility.anonymize.pseudonymize" in graph["mobility.anonymize.datasets"] | graph["mobility.anonymize.job"]


def test_no_import_cycle_among_the_modules():
    assert cycles(import_graph()) == []


@pytest.mark.parametrize("side", [OFFICE_SIDE, SHARED], ids=["office side", "shared"])
def test_office_side_never_reaches_the_operator_package(side):
    graph = import_graph()
    chains = {name: chain for name in graph if _under(name, side)
              if (chain := reaches(graph, name, OPERATOR)) is not None}
    assert chains == {}, "\n".join(" -> ".join(c) for c in chains.values())


def test_the_cycle_finder_and_the_reach_finder_can_fail():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"mobility.anonymize.job"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert reaches(graph, "d", OPERATOR) == ["d", "mobility.anonymize.job"]
    assert reaches(graph, "a", OPERATOR) is None
