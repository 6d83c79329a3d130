"""Stage 3a: a checked scalar tree -> a Polars expression.

One :func:`functools.singledispatch` function over sqlglot node classes; its
fallback raises :class:`UnsupportedExpressionError` naming the node.  The
semantics are those pinned in docs/sql.md (three-valued logic, truncated
``%``, ``/`` always fractional with NULL for division by zero, ...).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import singledispatch
from typing import Any

import polars as pl
from sqlglot import exp

from rlm_pipeline.errors import UnsupportedExpressionError
from rlm_pipeline.expr.checked import Checked
from rlm_pipeline.expr.dtypes import BOOL, DATE, FLOAT, INT, NULL, STRING, TIMESTAMP
from rlm_pipeline.expr.patterns import parse_like
from rlm_pipeline.expr.scalar import type_of

__all__ = ["PolarsContext", "compile_expr", "compile_node", "polars_dtype"]

_DTYPES: dict[str, pl.DataType] = {
    STRING: pl.String(),
    INT: pl.Int64(),
    FLOAT: pl.Float64(),
    BOOL: pl.Boolean(),
    DATE: pl.Date(),
}


def polars_dtype(dtype: str) -> pl.DataType | None:
    """The Polars type for an engine-neutral type name, if it has a fixed one.

    Examples
    --------
    >>> polars_dtype("int64")
    Int64
    """
    return _DTYPES.get(dtype)


@dataclass(frozen=True)
class PolarsContext:
    """Where an expression is compiled.

    Attributes
    ----------
    subst
        Subtrees already computed as columns (after a GROUP BY): the subtree's
        SQL -> the column that holds it.
    """

    subst: Mapping[str, str] = field(default_factory=dict)


def compile_expr(checked: Checked) -> pl.Expr:
    """Compile a :class:`Checked` expression.

    Examples
    --------
    >>> from rlm_pipeline.expr import compile_where
    >>> import polars as pl
    >>> e = compile_expr(compile_where("a % 3 = -1", {"a": "int64"}))
    >>> pl.DataFrame({"a": [-7, 7, -4]}).filter(e)["a"].to_list()
    [-7, -4]
    """
    return compile_node(checked.tree, PolarsContext())


def compile_node(node: exp.Expr, ctx: PolarsContext) -> pl.Expr:
    """Compile one checked node, using ``ctx.subst`` for precomputed subtrees."""
    if ctx.subst:
        name = ctx.subst.get(node.sql())
        if name is not None:
            return pl.col(name)
    return _compile(node, ctx)


def _as(expr: pl.Expr, node: exp.Expr, target: str) -> pl.Expr:
    """Cast ``expr`` (the value of ``node``) to ``target`` when the types differ."""
    dtype = polars_dtype(target)
    if dtype is not None and type_of(node) != target:
        return expr.cast(dtype)
    return expr


def _c(node: exp.Expr, ctx: PolarsContext, key: str = "this") -> pl.Expr:
    child = node.args[key]
    if not isinstance(child, exp.Expr):
        raise UnsupportedExpressionError(f"malformed {type(node).__name__}", fragment=node.sql())
    return compile_node(child, ctx)


@singledispatch
def _compile(node: exp.Expr, ctx: PolarsContext) -> pl.Expr:
    raise UnsupportedExpressionError(
        f"the Polars compiler has no rule for {type(node).__name__}",
        fragment=node.sql()[:80],
        hint="rewrite the expression with the functions listed in docs/sql.md",
    )


@_compile.register
def _(node: exp.Column, ctx: PolarsContext) -> pl.Expr:
    return pl.col(str(node.meta["ref"]))


@_compile.register
def _(node: exp.Literal, ctx: PolarsContext) -> pl.Expr:
    return pl.lit(literal_value(node), dtype=polars_dtype(type_of(node)))


def literal_value(node: exp.Expr) -> object:
    """The Python value of a checked literal node (number, string, bool, date, None)."""
    if isinstance(node, exp.Paren):
        return literal_value(node.this)
    if isinstance(node, exp.Null):
        return None
    if isinstance(node, exp.Boolean):
        return bool(node.this)
    if isinstance(node, exp.Neg):
        value = literal_value(node.this)
        if isinstance(value, int | float):
            return -value
    if isinstance(node, exp.Cast) and type_of(node) == DATE and isinstance(node.this, exp.Literal):
        return dt.date.fromisoformat(node.this.this)
    if isinstance(node, exp.Literal):
        if node.is_string:
            return node.this
        return int(node.this) if type_of(node) == INT else float(node.this)
    raise UnsupportedExpressionError("not a literal", fragment=node.sql()[:80])


@_compile.register
def _(node: exp.Boolean, ctx: PolarsContext) -> pl.Expr:
    return pl.lit(bool(node.this), dtype=pl.Boolean)


@_compile.register
def _(node: exp.Null, ctx: PolarsContext) -> pl.Expr:
    return pl.lit(None)


@_compile.register
def _(node: exp.Paren, ctx: PolarsContext) -> pl.Expr:
    return _c(node, ctx)


@_compile.register
def _(node: exp.And, ctx: PolarsContext) -> pl.Expr:
    return _c(node, ctx).cast(pl.Boolean) & _c(node, ctx, "expression").cast(pl.Boolean)


@_compile.register
def _(node: exp.Or, ctx: PolarsContext) -> pl.Expr:
    return _c(node, ctx).cast(pl.Boolean) | _c(node, ctx, "expression").cast(pl.Boolean)


@_compile.register
def _(node: exp.Not, ctx: PolarsContext) -> pl.Expr:
    return ~_c(node, ctx).cast(pl.Boolean)


def _pair(node: exp.Expr, ctx: PolarsContext) -> tuple[pl.Expr, pl.Expr]:
    left, right = node.this, node.expression
    lt, rt = type_of(left), type_of(right)
    a, b = compile_node(left, ctx), compile_node(right, ctx)
    if {lt, rt} == {INT, FLOAT}:
        a, b = a.cast(pl.Float64), b.cast(pl.Float64)
    elif {lt, rt} == {DATE, TIMESTAMP}:
        a, b = a.cast(pl.Datetime("us")), b.cast(pl.Datetime("us"))
    return a, b


@_compile.register
def _(node: exp.EQ, ctx: PolarsContext) -> pl.Expr:
    a, b = _pair(node, ctx)
    return a == b


@_compile.register
def _(node: exp.NEQ, ctx: PolarsContext) -> pl.Expr:
    a, b = _pair(node, ctx)
    return a != b


@_compile.register
def _(node: exp.GT, ctx: PolarsContext) -> pl.Expr:
    a, b = _pair(node, ctx)
    return a > b


@_compile.register
def _(node: exp.GTE, ctx: PolarsContext) -> pl.Expr:
    a, b = _pair(node, ctx)
    return a >= b


@_compile.register
def _(node: exp.LT, ctx: PolarsContext) -> pl.Expr:
    a, b = _pair(node, ctx)
    return a < b


@_compile.register
def _(node: exp.LTE, ctx: PolarsContext) -> pl.Expr:
    a, b = _pair(node, ctx)
    return a <= b


@_compile.register
def _(node: exp.NullSafeEQ, ctx: PolarsContext) -> pl.Expr:
    a, b = _pair(node, ctx)
    return a.eq_missing(b)


@_compile.register
def _(node: exp.NullSafeNEQ, ctx: PolarsContext) -> pl.Expr:
    a, b = _pair(node, ctx)
    return a.ne_missing(b)


@_compile.register
def _(node: exp.Is, ctx: PolarsContext) -> pl.Expr:
    return _c(node, ctx).is_null()


@_compile.register
def _(node: exp.Between, ctx: PolarsContext) -> pl.Expr:
    low = exp.GTE(this=node.this, expression=node.args["low"])
    high = exp.LTE(this=node.this, expression=node.args["high"])
    return compile_node(low, ctx) & compile_node(high, ctx)


@_compile.register
def _(node: exp.In, ctx: PolarsContext) -> pl.Expr:
    values = [literal_value(item) for item in node.expressions]
    present = [v for v in values if v is not None]
    this = _c(node, ctx)
    kinds = {type_of(node.this)} | {type_of(i) for i in node.expressions}
    if FLOAT in kinds:
        this = this.cast(pl.Float64)
        present = [float(v) for v in present if isinstance(v, int | float)]
    elif TIMESTAMP in kinds:
        present = [
            dt.datetime.combine(v, dt.time()) if isinstance(v, dt.date) else v for v in present
        ]
    missing: bool | None = None if len(present) < len(values) else False
    if not present:
        return pl.when(this.is_null()).then(None).otherwise(pl.lit(missing, dtype=pl.Boolean))
    return (
        pl.when(this.is_null())
        .then(pl.lit(None, dtype=pl.Boolean))
        .when(this.is_in(present))
        .then(pl.lit(True))
        .otherwise(pl.lit(missing, dtype=pl.Boolean))
    )


@_compile.register
def _(node: exp.Like, ctx: PolarsContext) -> pl.Expr:
    pattern = parse_like(str(node.expression.this))
    return _c(node, ctx).str.contains(pattern.regex)


@_compile.register
def _(node: exp.RegexpLike, ctx: PolarsContext) -> pl.Expr:
    return _c(node, ctx).str.contains(str(node.expression.this))


def _numbers(node: exp.Expr, ctx: PolarsContext) -> tuple[pl.Expr, pl.Expr]:
    target = type_of(node)
    a = _as(_c(node, ctx), node.this, target)
    b = _as(_c(node, ctx, "expression"), node.expression, target)
    return a, b


@_compile.register
def _(node: exp.Add, ctx: PolarsContext) -> pl.Expr:
    a, b = _numbers(node, ctx)
    return a + b


@_compile.register
def _(node: exp.Sub, ctx: PolarsContext) -> pl.Expr:
    a, b = _numbers(node, ctx)
    return a - b


@_compile.register
def _(node: exp.Mul, ctx: PolarsContext) -> pl.Expr:
    a, b = _numbers(node, ctx)
    return a * b


@_compile.register
def _(node: exp.Div, ctx: PolarsContext) -> pl.Expr:
    a = _c(node, ctx).cast(pl.Float64)
    b = _c(node, ctx, "expression").cast(pl.Float64)
    return pl.when(b != 0).then(a / b).otherwise(pl.lit(None, dtype=pl.Float64))


@_compile.register
def _(node: exp.Mod, ctx: PolarsContext) -> pl.Expr:
    # SQL's remainder takes the sign of the dividend (Polars' % is floored).
    a, b = _numbers(node, ctx)
    truncated = (a.abs() % b.abs()) * a.sign()
    dtype = polars_dtype(type_of(node)) or pl.Float64()
    return pl.when(b != 0).then(truncated.cast(dtype)).otherwise(pl.lit(None, dtype=dtype))


@_compile.register
def _(node: exp.Neg, ctx: PolarsContext) -> pl.Expr:
    return -_c(node, ctx)


@_compile.register
def _(node: exp.DPipe, ctx: PolarsContext) -> pl.Expr:
    return pl.concat_str([_c(node, ctx), _c(node, ctx, "expression")], ignore_nulls=False)


@_compile.register
def _(node: exp.Concat, ctx: PolarsContext) -> pl.Expr:
    parts = [compile_node(p, ctx).cast(pl.String) for p in node.expressions]
    return pl.concat_str(parts, ignore_nulls=True)


@_compile.register
def _(node: exp.Lower, ctx: PolarsContext) -> pl.Expr:
    return _c(node, ctx).str.to_lowercase()


@_compile.register
def _(node: exp.Upper, ctx: PolarsContext) -> pl.Expr:
    return _c(node, ctx).str.to_uppercase()


@_compile.register
def _(node: exp.Length, ctx: PolarsContext) -> pl.Expr:
    return _c(node, ctx).str.len_chars().cast(pl.Int64)


@_compile.register
def _(node: exp.Trim, ctx: PolarsContext) -> pl.Expr:
    return _c(node, ctx).str.strip_chars(" ")


@_compile.register
def _(node: exp.Substring, ctx: PolarsContext) -> pl.Expr:
    start = int(node.args["start"].this)
    length = node.args.get("length")
    return _c(node, ctx).str.slice(start - 1, int(length.this) if length is not None else None)


@_compile.register
def _(node: exp.StrPosition, ctx: PolarsContext) -> pl.Expr:
    # 1-based position in characters, 0 when absent (str.find counts bytes).
    needle = str(node.args["substr"].this)
    this = _c(node, ctx)
    before = this.str.split(needle, inclusive=False).list.first().str.len_chars().cast(pl.Int64)
    return (
        pl.when(this.is_null())
        .then(pl.lit(None, dtype=pl.Int64))
        .when(this.str.contains(needle, literal=True))
        .then(before + 1)
        .otherwise(pl.lit(0, dtype=pl.Int64))
    )


@_compile.register
def _(node: exp.Replace, ctx: PolarsContext) -> pl.Expr:
    old = str(node.expression.this)
    new = str(node.args["replacement"].this)
    return _c(node, ctx).str.replace_all(old, new, literal=True)


@_compile.register
def _(node: exp.Abs, ctx: PolarsContext) -> pl.Expr:
    return _c(node, ctx).abs()


@_compile.register
def _(node: exp.Round, ctx: PolarsContext) -> pl.Expr:
    this = _c(node, ctx)
    if type_of(node) == INT:
        return this
    decimals = node.args.get("decimals")
    digits = int(decimals.this) if decimals is not None else 0
    return this.cast(pl.Float64).round(digits, mode="half_away_from_zero")


@_compile.register
def _(node: exp.Floor, ctx: PolarsContext) -> pl.Expr:
    this = _c(node, ctx)
    return this if type_of(node) == INT else this.cast(pl.Float64).floor()


@_compile.register
def _(node: exp.Ceil, ctx: PolarsContext) -> pl.Expr:
    this = _c(node, ctx)
    return this if type_of(node) == INT else this.cast(pl.Float64).ceil()


@_compile.register
def _(node: exp.Coalesce, ctx: PolarsContext) -> pl.Expr:
    target = type_of(node)
    values = [node.this, *node.expressions]
    return pl.coalesce([_as(compile_node(v, ctx), v, target) for v in values])


@_compile.register
def _(node: exp.Nullif, ctx: PolarsContext) -> pl.Expr:
    a, b = _pair(node, ctx)
    return pl.when(a == b).then(None).otherwise(_c(node, ctx))


@_compile.register
def _(node: exp.Case, ctx: PolarsContext) -> pl.Expr:
    target = type_of(node)
    dtype = polars_dtype(target)
    branches = node.args["ifs"]
    first = branches[0]
    chain: Any = pl.when(compile_node(first.this, ctx).cast(pl.Boolean)).then(
        _as(compile_node(first.args["true"], ctx), first.args["true"], target)
    )
    for branch in branches[1:]:
        chain = chain.when(compile_node(branch.this, ctx).cast(pl.Boolean)).then(
            _as(compile_node(branch.args["true"], ctx), branch.args["true"], target)
        )
    default = node.args.get("default")
    if default is not None:
        otherwise = _as(compile_node(default, ctx), default, target)
    else:
        otherwise = pl.lit(None, dtype=dtype) if dtype is not None else pl.lit(None)
    result: pl.Expr = chain.otherwise(otherwise)
    return result


@_compile.register
def _(node: exp.Cast, ctx: PolarsContext) -> pl.Expr:
    target = type_of(node)
    if isinstance(node.this, exp.Literal) and target == DATE:
        return pl.lit(literal_value(node), dtype=pl.Date)
    source = type_of(node.this)
    this = _c(node, ctx)
    if target == DATE:
        if source == STRING:
            return this.str.to_date("%Y-%m-%d", strict=True)
        if source == TIMESTAMP:
            return this.dt.date()
        return this.cast(pl.Date)
    if target == INT and source == STRING:
        return this.str.strip_chars(" ").cast(pl.Int64, strict=True)
    if target == FLOAT and source == STRING:
        return this.str.strip_chars(" ").cast(pl.Float64, strict=True)
    dtype = polars_dtype(target)
    if dtype is None or source == NULL:
        return this.cast(dtype) if dtype is not None else this
    return this.cast(dtype, strict=True)


@_compile.register
def _(node: exp.Extract, ctx: PolarsContext) -> pl.Expr:
    field_name = node.this.name.upper()
    value = compile_node(node.expression, ctx)
    part = {"YEAR": value.dt.year, "MONTH": value.dt.month, "DAY": value.dt.day}[field_name]
    return part().cast(pl.Int64)


@_compile.register
def _(node: exp.Count, ctx: PolarsContext) -> pl.Expr:
    arg = node.this
    if isinstance(arg, exp.Star):
        return pl.len().cast(pl.Int64)
    if isinstance(arg, exp.Distinct):
        value = compile_node(arg.expressions[0], ctx)
        return value.drop_nulls().n_unique().cast(pl.Int64)
    return compile_node(arg, ctx).count().cast(pl.Int64)


@_compile.register
def _(node: exp.Sum, ctx: PolarsContext) -> pl.Expr:
    value = _as(_c(node, ctx), node.this, type_of(node))
    dtype = polars_dtype(type_of(node))
    return pl.when(value.count() > 0).then(value.sum()).otherwise(pl.lit(None, dtype=dtype))


@_compile.register
def _(node: exp.Avg, ctx: PolarsContext) -> pl.Expr:
    return _c(node, ctx).cast(pl.Float64).mean()


@_compile.register
def _(node: exp.Min, ctx: PolarsContext) -> pl.Expr:
    return _c(node, ctx).min()


@_compile.register
def _(node: exp.Max, ctx: PolarsContext) -> pl.Expr:
    return _c(node, ctx).max()
