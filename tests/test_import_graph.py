"""The package's import graph stays a DAG, and the engines reach ops only through its leaves.

The graph is built with ``ast`` from every module of ``rlm_pipeline``: imports at
module level *and* inside functions (and under ``TYPE_CHECKING``) all count, since
a function-level import is a dependency that merely runs later.  A cycle means two
modules cannot be understood, tested or moved apart; the engines importing the
operators' internals is the knot the engine seam (``Engine.map_llm(..., fanout=)``)
exists to avoid.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import rlm_pipeline

PACKAGE = "rlm_pipeline"
ROOT = Path(rlm_pipeline.__file__).parent
#: What ``engines/`` may import from ``ops/``: the leaf modules of the operators' types
#: (``OpSpec``, ``OpStats``), which import no other ops module but each other.
OPS_LEAVES = frozenset({"rlm_pipeline.ops.spec_base", "rlm_pipeline.ops.stats"})


def _modules() -> dict[str, tuple[Path, bool]]:
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        found[".".join(parts)] = (path, is_package)
    return found


MODULES = _modules()


def _owner(name: str) -> str | None:
    """The module of ours ``name`` refers to (a module, or an attribute of one)."""
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name if name in MODULES else None


def _imported(module: str, is_package: bool, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module or ""
    for alias in node.names:
        yield f"{source}.{alias.name}"  # a submodule, or an attribute of ``source``


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of the package it imports (anywhere in its body)."""
    graph: dict[str, set[str]] = {}
    for module, (path, is_package) in MODULES.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for name in _imported(module, is_package, node):
                    owner = _owner(name) if name.split(".")[0] == PACKAGE else None
                    if owner is not None and owner != module:
                        deps.add(owner)
        graph[module] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_graph_sees_function_level_imports() -> None:
    graph = import_graph()
    # rlm/tools imports recurse only inside a function, ops/fanout the adapters likewise.
    assert "rlm_pipeline.rlm.recurse" in graph["rlm_pipeline.rlm.tools"]
    assert "rlm_pipeline.ops.polars_fanout" in graph["rlm_pipeline.ops.fanout"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles() -> None:
    found = cycles(import_graph())
    assert found == [], "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_engines_import_only_the_ops_leaves() -> None:
    graph = import_graph()
    wrong = sorted(
        f"{module} imports {dep}"
        for module, deps in graph.items()
        if module.startswith("rlm_pipeline.engines")
        for dep in deps
        if dep.startswith("rlm_pipeline.ops") and dep not in OPS_LEAVES
    )
    assert wrong == [], "engines reach into ops internals:\n" + "\n".join(wrong)


def test_the_ops_leaves_are_leaves() -> None:
    graph = import_graph()
    for leaf in OPS_LEAVES:
        inner = {
            d for d in graph[leaf] if d.startswith(("rlm_pipeline.ops", "rlm_pipeline.engines"))
        }
        assert inner <= OPS_LEAVES, f"{leaf} imports {sorted(inner - OPS_LEAVES)}"
