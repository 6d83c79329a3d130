"""Differential testing: the same SQL on Polars, Spark and DuckDB (the oracle).

``assert_same_rows(spark, tables, sql, kind)`` compiles ``sql`` with our
compiler, runs it on Polars (``to_polars_*``), on Spark (``to_spark_sql`` over
temp views) and on DuckDB (the checked tree written in DuckDB's dialect with
the pinned semantics of docs/sql.md), and asserts the three sorted row lists
are equal.  The engines' conformance suite imports it.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, Literal

import duckdb
import polars as pl
import pyarrow as pa
from sqlglot import exp

from rlm_pipeline.expr import (
    Checked,
    CheckedQuery,
    compile_key,
    compile_select,
    compile_where,
    to_polars_expr,
    to_polars_query,
    to_spark_sql,
)
from rlm_pipeline.expr.dtypes import FLOAT, INT
from rlm_pipeline.expr.rewrite import Rule, rewrite
from rlm_pipeline.expr.scalar import type_of
from rlm_pipeline.expr.to_spark import pinned_rules

__all__ = [
    "arrow_schema",
    "assert_same_rows",
    "assert_same_values",
    "duckdb_sql",
    "normalize_rows",
    "run_all",
]

_counter = itertools.count()


def arrow_schema(table: pa.Table) -> dict[str, str]:
    """Engine-neutral schema of an Arrow table."""
    out: dict[str, str] = {}
    for field in table.schema:
        t = field.type
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            out[field.name] = "string"
        elif pa.types.is_integer(t):
            out[field.name] = "int64"
        elif pa.types.is_floating(t):
            out[field.name] = "float64"
        elif pa.types.is_boolean(t):
            out[field.name] = "bool"
        elif pa.types.is_date(t):
            out[field.name] = "date"
        elif pa.types.is_timestamp(t):
            out[field.name] = "timestamp"
        else:
            out[field.name] = str(t)
    return out


# ---- DuckDB: the oracle ------------------------------------------------------


def _duck_cast(node: exp.Expr) -> exp.Expr:
    # DuckDB rounds float -> integer casts; the pinned meaning truncates.
    if type_of(node) == INT and type_of(node.this) == FLOAT:
        trunc = exp.Anonymous(this="TRUNC", expressions=[node.this])
        return exp.Cast(this=trunc, to=node.args["to"])
    if type_of(node) in (INT, FLOAT) and type_of(node.this) == "string":
        trimmed = exp.Anonymous(this="TRIM", expressions=[node.this])
        return exp.Cast(this=trimmed, to=node.args["to"])
    return node


def _duck_concat(node: exp.Expr) -> exp.Expr:
    return exp.Anonymous(this="CONCAT", expressions=list(node.expressions))


def _duck_regexp(node: exp.Expr) -> exp.Expr:
    return exp.Anonymous(this="REGEXP_MATCHES", expressions=[node.this, node.expression])


def _duck_strpos(node: exp.Expr) -> exp.Expr:
    return exp.Anonymous(this="STRPOS", expressions=[node.this, node.args["substr"]])


def duckdb_sql(checked: Checked | CheckedQuery, names: Mapping[str, str] | None = None) -> str:
    """The checked tree as DuckDB SQL with the pinned semantics."""
    rules: dict[type[exp.Expr], Rule] = {
        **pinned_rules(),
        exp.Concat: _duck_concat,
        exp.RegexpLike: _duck_regexp,
        exp.StrPosition: _duck_strpos,
    }
    base_cast = rules.get(exp.Cast)

    def cast(node: exp.Expr) -> exp.Expr:
        node = base_cast(node) if base_cast else node
        return _duck_cast(node)

    rules[exp.Cast] = cast
    if names:

        def table(node: exp.Expr) -> exp.Expr:
            view = node.meta.get("view")
            if view is None or view not in names:
                return node
            out = node.copy()
            out.set("this", exp.to_identifier(names[str(view)], quoted=True))
            return out

        rules[exp.Table] = table
    return rewrite(checked.tree, rules).sql(dialect="duckdb", identify=True)


# ---- comparing rows ----------------------------------------------------------


def _norm(value: Any) -> Any:
    if isinstance(value, Decimal):
        value = float(value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        number = float(value)
        if math.isnan(number):
            return ("nan",)
        if number == 0:
            return 0.0
        return float(f"{number:.9g}")
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=None)
    return value


def normalize_rows(rows: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
    """Rows with numbers rounded to 9 significant digits, sorted NULL-safely."""
    normal = [tuple(_norm(v) for v in row) for row in rows]
    return sorted(normal, key=lambda row: [(v is None, type(v).__name__, repr(v)) for v in row])


def _spark_rows(df: Any) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in df.collect()]


_spark_views: dict[tuple[int, int], tuple[pa.Table, str]] = {}


def _register_spark(spark: Any, tables: Mapping[str, pa.Table]) -> dict[str, str]:
    """Register each table once per session as a temp view (cached by identity)."""
    names: dict[str, str] = {}
    for name, table in tables.items():
        key = (id(spark), id(table))
        cached = _spark_views.get(key)
        if cached is None or cached[0] is not table:
            temp = f"rlm_test_{next(_counter)}"
            spark.createDataFrame(table).createOrReplaceTempView(temp)
            cached = _spark_views[key] = (table, temp)
        names[name] = cached[1]
    return names


def _duck_connect(tables: Mapping[str, pa.Table]) -> tuple[Any, dict[str, str]]:
    con = duckdb.connect()
    names: dict[str, str] = {}
    for name, table in tables.items():
        temp = f"duck_{next(_counter)}"
        con.register(temp, table)
        names[name] = temp
    return con, names


def run_all(
    spark: Any,
    tables: Mapping[str, pa.Table],
    sql: str,
    kind: Literal["where", "select"] = "where",
) -> dict[str, list[tuple[Any, ...]]]:
    """Run ``sql`` on the three engines; returns engine -> normalized sorted rows."""
    if kind == "where":
        if len(tables) != 1:
            raise ValueError("a WHERE runs over exactly one table")
        (table,) = tables.values()
        checked = compile_where(sql, arrow_schema(table))
        polars_rows = pl.from_arrow(table).lazy().filter(to_polars_expr(checked)).collect().rows()
        (spark_name,) = _register_spark(spark, tables).values()
        spark_df = spark.table(spark_name).filter(to_spark_sql(checked))
        spark_rows = _spark_rows(spark_df)
        con, names = _duck_connect(tables)
        (duck_name,) = names.values()
        duck_rows = con.execute(
            f'SELECT * FROM "{duck_name}" WHERE {duckdb_sql(checked)}'
        ).fetchall()
    else:
        views = {name: arrow_schema(t) for name, t in tables.items()}
        query = compile_select(sql, views)
        frames = {name: pl.from_arrow(t).lazy() for name, t in tables.items()}
        polars_rows = to_polars_query(query, frames).collect().rows()  # type: ignore[arg-type]
        spark_names = _register_spark(spark, tables)
        spark_rows = _spark_rows(spark.sql(to_spark_sql(query, spark_names)))
        con, names = _duck_connect(tables)
        duck_rows = con.execute(duckdb_sql(query, names)).fetchall()
    con.close()
    return {
        "polars": normalize_rows(polars_rows),
        "spark": normalize_rows(spark_rows),
        "duckdb": normalize_rows(duck_rows),
    }


def assert_same_rows(
    spark: Any,
    tables: Mapping[str, pa.Table],
    sql: str,
    kind: Literal["where", "select"] = "where",
) -> list[tuple[Any, ...]]:
    """Assert Polars, Spark and DuckDB return the same rows for ``sql``.

    Parameters
    ----------
    spark
        A SparkSession (the ``spark`` fixture).
    tables
        View name -> Arrow table; for ``kind="where"`` exactly one.
    sql
        A WHERE condition (``kind="where"``) or a SELECT (``kind="select"``).

    Returns
    -------
    list[tuple]
        The (normalized, sorted) rows all three agreed on.
    """
    got = run_all(spark, tables, sql, kind)
    assert got["polars"] == got["duckdb"], f"Polars != DuckDB for {sql!r}:\n{got}"
    assert got["spark"] == got["duckdb"], f"Spark != DuckDB for {sql!r}:\n{got}"
    return got["duckdb"]


def assert_same_values(
    spark: Any,
    table: pa.Table,
    expressions: Sequence[str],
    *,
    key: str,
    engines: Sequence[str] = ("polars", "spark", "duckdb"),
) -> dict[str, list[tuple[Any, ...]]]:
    """Evaluate many scalar expressions per row, in one query per engine.

    Each expression is checked as a partition key (any scalar) and projected
    next to the ``key`` column; the per-row values must agree on ``engines``.
    Returns engine -> rows ``(key, value_1, ..., value_n)``.
    """
    schema = arrow_schema(table)
    checked = [compile_key(sql, schema) for sql in expressions]
    names = [f"v{i}" for i in range(len(checked))]
    out: dict[str, list[tuple[Any, ...]]] = {}
    if "polars" in engines:
        frame = pl.from_arrow(table)
        assert isinstance(frame, pl.DataFrame)
        projected = frame.select(
            pl.col(key), *(to_polars_expr(c).alias(n) for c, n in zip(checked, names, strict=True))
        )
        out["polars"] = normalize_rows(projected.rows())
    if "spark" in engines:
        (view,) = _register_spark(spark, {"t": table}).values()
        items = ", ".join(
            f"{to_spark_sql(c)} AS `{n}`" for c, n in zip(checked, names, strict=True)
        )
        out["spark"] = normalize_rows(
            _spark_rows(spark.sql(f"SELECT `{key}`, {items} FROM `{view}`"))
        )
    if "duckdb" in engines:
        con, duck_names = _duck_connect({"t": table})
        items = ", ".join(f'{duckdb_sql(c)} AS "{n}"' for c, n in zip(checked, names, strict=True))
        rows = con.execute(f'SELECT "{key}", {items} FROM "{duck_names["t"]}"').fetchall()
        con.close()
        out["duckdb"] = normalize_rows(rows)
    reference = out[engines[-1]]
    for engine in engines:
        for column, name in enumerate(["key", *expressions]):
            got = [row[column] for row in out[engine]]
            want = [row[column] for row in reference]
            assert got == want, f"{engine} != {engines[-1]} for {name!r}: {got} vs {want}"
    return out
