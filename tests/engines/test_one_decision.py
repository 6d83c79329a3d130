"""Polars vs Spark is decided in ``engines/`` only: a guard over the package's syntax trees.

Outside ``rlm_pipeline/engines/`` no module may ask which engine a frame belongs to:
no ``is_spark_frame`` / ``infer_engine``, no ``isinstance`` against a pyspark class,
no ``type(x).__module__`` test, no ``engine.name == "spark"``.  Modules that are Spark
only (``spark.py``, ``ops/spark_*.py``) may use pyspark; they just never branch on the kind.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "rlm_pipeline"
ENGINES = PACKAGE / "engines"
DECIDERS = {"is_spark_frame", "infer_engine"}
KINDS = {"spark", "polars"}


def _pyspark_names(tree: ast.AST) -> set[str]:
    """Names bound by ``from pyspark... import X`` / ``import pyspark...`` anywhere in the module."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pyspark"):
            names |= {alias.asname or alias.name for alias in node.names}
        elif isinstance(node, ast.Import):
            names |= {
                (alias.asname or alias.name).split(".")[0]
                for alias in node.names
                if alias.name.startswith("pyspark")
            }
    return names


def _root_name(node: ast.AST) -> str | None:
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def kind_checks(source: str) -> list[tuple[int, str]]:
    """``(line, what)`` for every Polars-vs-Spark decision in ``source``.

    >>> kind_checks("from x import is_spark_frame\\nif is_spark_frame(df): pass")
    [(1, 'is_spark_frame'), (2, 'is_spark_frame')]
    >>> kind_checks("from pyspark.sql import DataFrame\\nisinstance(d, DataFrame)")
    [(2, 'isinstance(..., pyspark DataFrame)')]
    >>> kind_checks("if engine.name == 'spark': pass")
    [(1, "engine.name == 'spark'")]
    >>> kind_checks("type(d).__module__.startswith('pyspark')")
    [(1, 'type(...).__module__')]
    """
    tree = ast.parse(source)
    spark_names = _pyspark_names(tree)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in DECIDERS:
            found.append((node.lineno, node.id))
        elif isinstance(node, ast.Attribute) and node.attr in DECIDERS:
            found.append((node.lineno, node.attr))
        elif isinstance(node, ast.ImportFrom):
            found += [(node.lineno, a.name) for a in node.names if a.name in DECIDERS]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id == "isinstance" and len(node.args) == 2:
                classes = node.args[1]
                parts = classes.elts if isinstance(classes, ast.Tuple) else [classes]
                for part in parts:
                    root = _root_name(part)
                    if root in spark_names:
                        found.append((node.lineno, f"isinstance(..., pyspark {ast.unparse(part)})"))
        elif isinstance(node, ast.Attribute) and node.attr == "__module__":
            if isinstance(node.value, ast.Call) and getattr(node.value.func, "id", "") == "type":
                found.append((node.lineno, "type(...).__module__"))
        elif isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            named = any(isinstance(s, ast.Attribute) and s.attr == "name" for s in sides)
            kind = [s.value for s in sides if isinstance(s, ast.Constant) and s.value in KINDS]
            if named and kind:
                found.append((node.lineno, ast.unparse(node)))
    return sorted(found)


def test_no_engine_kind_check_outside_engines() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if ENGINES in path.parents:
            continue
        for line, what in kind_checks(path.read_text(encoding="utf-8")):
            offenders.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {what}")
    assert offenders == [], "decide Polars vs Spark in engines/ only:\n" + "\n".join(offenders)


def test_the_guard_sees_the_engines_own_decisions() -> None:
    """The one place that decides (engines/load.py, engines/kinds.py) is what the guard would flag."""
    load = (ENGINES / "load.py").read_text(encoding="utf-8")
    kinds = (ENGINES / "kinds.py").read_text(encoding="utf-8")
    assert any(what == "is_spark_frame" for _, what in kind_checks(load))
    assert any("pyspark DataFrame" in what for _, what in kind_checks(kinds))
