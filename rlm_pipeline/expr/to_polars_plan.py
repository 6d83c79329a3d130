"""Stage 3a': a checked SELECT -> a Polars lazy plan, built clause by clause.

Sources are renamed to ``alias\\x1fcolumn`` so joined views never clash; joins
are equi-joins (``nulls_equal=False``, as in SQL); aggregates are computed in
one ``group_by().agg()`` and the SELECT list is then evaluated over the
grouped frame with each group key and aggregate replaced by its column.

Row order: SQL gives none without ORDER BY, but a view's order is what a
partition into chunks numbers, so joins, GROUP BY and DISTINCT keep the order
of their input (``maintain_order``; first appearance for groups): the same
query over the same ordered input gives the same rows in the same order at
every run.  This costs little and changes no result, only its order.
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl
from sqlglot import exp

from rlm_pipeline.errors import ExpressionError, UnsupportedExpressionError
from rlm_pipeline.expr.check_query import ref_name
from rlm_pipeline.expr.checked import CheckedQuery
from rlm_pipeline.expr.dtypes import FLOAT, INT
from rlm_pipeline.expr.estimate import join_keys
from rlm_pipeline.expr.scalar import AGGREGATES, type_of
from rlm_pipeline.expr.to_polars import PolarsContext, compile_node, polars_dtype

__all__ = ["compile_query"]

_HOW = {"": "inner", "LEFT": "left", "RIGHT": "right", "FULL": "full"}


def compile_query(checked: CheckedQuery, frames: Mapping[str, pl.LazyFrame]) -> pl.LazyFrame:
    """Build the lazy plan of a checked query over ``frames`` (view -> LazyFrame).

    Examples
    --------
    >>> from rlm_pipeline.expr import compile_select
    >>> q = compile_select("SELECT a + 1 AS b FROM t WHERE a > 1", {"t": {"a": "int64"}})
    >>> compile_query(q, {"t": pl.LazyFrame({"a": [1, 2, 3]})}).collect()["b"].to_list()
    [3, 4]
    """
    missing = [v for v in checked.views_used if v not in frames]
    if missing:
        raise ExpressionError(
            f"no frame for view(s) {', '.join(missing)}",
            hint=f"registered: {', '.join(sorted(frames))}",
        )
    return _query(checked.tree, frames, {})


def _query(
    node: exp.Expr, views: Mapping[str, pl.LazyFrame], ctes: Mapping[str, pl.LazyFrame]
) -> pl.LazyFrame:
    ctes = dict(ctes)
    with_ = node.args.get("with_")
    if with_ is not None:
        for cte in with_.expressions:
            ctes[cte.alias] = _query(cte.this, views, ctes)
    if isinstance(node, exp.Union):
        return _union(node, views, ctes)
    if isinstance(node, exp.Select):
        return _select(node, views, ctes)
    raise UnsupportedExpressionError(
        f"the Polars planner has no rule for {type(node).__name__}", fragment=node.sql()[:80]
    )


def _finish(frame: pl.LazyFrame, node: exp.Expr, names: list[str]) -> pl.LazyFrame:
    """DISTINCT, ORDER BY, OFFSET/LIMIT and the final column list."""
    if node.args.get("distinct"):
        frame = frame.unique(subset=names, keep="first", maintain_order=True)
    order = node.args.get("order")
    if order is not None:
        by: list[str] = []
        for i, ordered in enumerate(order.expressions):
            by.append(str(ordered.this.meta.get("output") or f"__order{i}"))
        frame = frame.sort(
            by,
            descending=[bool(o.args.get("desc")) for o in order.expressions],
            nulls_last=[not o.args.get("nulls_first") for o in order.expressions],
            maintain_order=True,
        )
    frame = frame.select(names)
    offset = node.args.get("offset")
    limit = node.args.get("limit")
    if offset is not None or limit is not None:
        start = int(offset.expression.this) if offset is not None else 0
        length = int(limit.expression.this) if limit is not None else None
        frame = frame.slice(start, length)
    return frame


def _union(
    node: exp.Expr, views: Mapping[str, pl.LazyFrame], ctes: Mapping[str, pl.LazyFrame]
) -> pl.LazyFrame:
    schema: dict[str, str] = node.meta["schema"]
    names = list(schema)
    parts = []
    for side in (node.this, node.expression):
        frame = _query(side, views, ctes)
        side_names = list(side.meta["schema"])
        columns = []
        for name, side_name in zip(names, side_names, strict=True):
            column = pl.col(side_name)
            dtype = polars_dtype(schema[name])
            if dtype is not None and side.meta["schema"][side_name] != schema[name]:
                column = column.cast(dtype)
            columns.append(column.alias(name))
        parts.append(frame.select(columns))
    frame = pl.concat(parts, how="vertical_relaxed")
    if node.args.get("distinct"):
        frame = frame.unique(keep="first", maintain_order=True)
    return _finish(frame, node, names)


def _source(
    node: exp.Expr, views: Mapping[str, pl.LazyFrame], ctes: Mapping[str, pl.LazyFrame]
) -> pl.LazyFrame:
    alias = node.alias
    if isinstance(node, exp.Subquery):
        frame = _query(node.this, views, ctes)
    elif "cte" in node.meta:
        frame = ctes[str(node.meta["cte"])]
    else:
        frame = views[str(node.meta["view"])]
    columns: list[str] = node.meta["columns"]
    return frame.select([pl.col(c).alias(ref_name(alias, c)) for c in columns])


def _join_keys(join: exp.Expr) -> tuple[list[pl.Expr], list[pl.Expr]]:
    """The key pairs of a checked equi-join (:func:`~rlm_pipeline.expr.estimate.join_keys`)
    compiled; an integer key met by a float key is compared as a float on both sides."""
    left_keys: list[pl.Expr] = []
    right_keys: list[pl.Expr] = []
    for a, b in zip(*join_keys(join), strict=True):
        left, right = compile_node(a, PolarsContext()), compile_node(b, PolarsContext())
        if {type_of(a), type_of(b)} == {INT, FLOAT}:
            left, right = left.cast(pl.Float64), right.cast(pl.Float64)
        left_keys.append(left)
        right_keys.append(right)
    return left_keys, right_keys


def _aggregates(nodes: list[exp.Expr]) -> list[exp.Expr]:
    found: dict[str, exp.Expr] = {}
    for node in nodes:
        for agg in node.find_all(*AGGREGATES):
            found.setdefault(agg.sql(), agg)
    return list(found.values())


def _select(
    node: exp.Expr, views: Mapping[str, pl.LazyFrame], ctes: Mapping[str, pl.LazyFrame]
) -> pl.LazyFrame:
    frame = _source(node.args["from_"].this, views, ctes)
    for join in node.args.get("joins") or []:
        right = _source(join.this, views, ctes)
        left_on, right_on = _join_keys(join)
        how = _HOW[(join.args.get("side") or "").upper()]
        frame = frame.join(
            right,
            left_on=left_on,
            right_on=right_on,
            how=how,  # type: ignore[arg-type]
            coalesce=False,
            nulls_equal=False,
            maintain_order="left_right",
        )
    where = node.args.get("where")
    if where is not None:
        frame = frame.filter(compile_node(where.this, PolarsContext()))

    items = [(item.alias, item.this) for item in node.expressions]
    order = node.args.get("order")
    hidden = [
        (f"__order{i}", o.this)
        for i, o in enumerate(order.expressions if order else [])
        if "output" not in o.this.meta
    ]
    having = node.args.get("having")
    ctx = PolarsContext()
    if node.meta.get("aggregating"):
        groups = list(node.args["group"].expressions) if node.args.get("group") else []
        everything = [v for _, v in items + hidden] + ([having.this] if having is not None else [])
        aggs = _aggregates(everything)
        subst = {g.sql(): f"__key{i}" for i, g in enumerate(groups)}
        subst.update({a.sql(): f"__agg{j}" for j, a in enumerate(aggs)})
        keys = [compile_node(g, ctx).alias(f"__key{i}") for i, g in enumerate(groups)]
        values = [compile_node(a, ctx).alias(f"__agg{j}") for j, a in enumerate(aggs)]
        if keys and values:
            frame = frame.group_by(keys, maintain_order=True).agg(values)
        elif keys:
            frame = frame.select(keys).unique(keep="first", maintain_order=True)
        else:
            frame = frame.select(values)
        ctx = PolarsContext(subst)
        if having is not None:
            frame = frame.filter(compile_node(having.this, ctx))
    columns = []
    for name, value in items + hidden:
        column = compile_node(value, ctx)
        dtype = polars_dtype(type_of(value))
        columns.append((column.cast(dtype) if dtype is not None else column).alias(name))
    # with_columns broadcasts constants to the frame's height (select would not)
    frame = frame.with_columns(columns).select([name for name, _ in items + hidden])
    return _finish(frame, node, [name for name, _ in items])
