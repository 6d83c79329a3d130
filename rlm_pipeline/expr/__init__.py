"""Safe SQL expressions: parse -> check -> compile to Polars and to Spark.

The root model writes three kinds of SQL: a WHERE condition, a partition key
and a read-only SELECT over named views.  Each goes through the same stages:

1. :mod:`~rlm_pipeline.expr.parse` - sqlglot, default dialect, exactly one statement;
2. :mod:`~rlm_pipeline.expr.check` - an allow list of nodes and functions, the
   schema, size limits; then semantics are pinned (``docs/sql.md``) so every
   engine computes the same thing;
3. :mod:`~rlm_pipeline.expr.to_polars` / :mod:`~rlm_pipeline.expr.to_spark` -
   a ``pl.Expr`` / ``pl.LazyFrame`` plan, or Spark SQL text over temp views.

Nothing the model writes is evaluated as code; rejected SQL raises
:class:`~rlm_pipeline.errors.ExpressionError` (or its child
:class:`~rlm_pipeline.errors.UnsupportedExpressionError`) with the offending
fragment and a hint.

Schema types are engine-neutral strings: ``"string"``, ``"int64"``,
``"float64"``, ``"bool"``, ``"date"``, ``"timestamp"``; other type names are
accepted and passed through (such columns can be selected and compared for
NULL, nothing more).

Examples
--------
>>> import polars as pl
>>> from rlm_pipeline import expr
>>> where = expr.compile_where("amount > 10 AND lower(status) = 'open'",
...                            {"amount": "int64", "status": "string"})
>>> df = pl.DataFrame({"amount": [5, 20, None], "status": ["OPEN", "Open", "open"]})
>>> df.filter(expr.to_polars_expr(where)).height
1
>>> expr.to_spark_sql(where)
"`amount` > 10 AND LOWER(`status`) = 'open'"
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from rlm_pipeline.expr.checked import Checked, CheckedQuery
from rlm_pipeline.expr.limits import DEFAULT_LIMITS, Limits

if TYPE_CHECKING:
    import polars as pl

__all__ = [
    "DEFAULT_LIMITS",
    "Checked",
    "CheckedQuery",
    "Limits",
    "compile_key",
    "compile_select",
    "compile_where",
    "to_polars_expr",
    "to_polars_query",
    "to_spark_sql",
]


def compile_where(
    sql: str, schema: Mapping[str, str], *, limits: Limits = DEFAULT_LIMITS
) -> Checked:
    """Parse and check a boolean WHERE condition over one view's columns.

    Parameters
    ----------
    sql
        The condition, e.g. ``"user_id IN (1, 2) AND question ILIKE '%refund%'"``.
    schema
        The view's columns: name -> engine-neutral type (``"string"``, ``"int64"``, ...).
    limits
        Size limits (text length, IN-list size, nesting depth).

    Returns
    -------
    Checked
        Ready for :func:`to_polars_expr` and :func:`to_spark_sql`.

    Raises
    ------
    ExpressionError
        Syntax error, unknown column (the message lists the known ones), wrong
        argument types, not a boolean, limits exceeded.
    UnsupportedExpressionError
        A construct or function outside the allow list (see docs/sql.md).

    Examples
    --------
    >>> compile_where("a > 1", {"a": "int64"}).columns
    ('a',)
    """
    from rlm_pipeline.expr.check import check_scalar
    from rlm_pipeline.expr.parse import parse_sql

    tree = parse_sql(sql, "where", limits=limits)
    return check_scalar(sql, tree, schema, "where", limits=limits)


def compile_key(sql: str, schema: Mapping[str, str], *, limits: Limits = DEFAULT_LIMITS) -> Checked:
    """Parse and check a partition key: a column or a scalar expression.

    Parameters
    ----------
    sql
        The key, e.g. ``"user_id"`` or ``"extract(year FROM created)"``.
    schema
        The view's columns: name -> engine-neutral type.
    limits
        Size limits.

    Returns
    -------
    Checked
        ``.dtype`` is the key's engine-neutral type.

    Raises
    ------
    ExpressionError, UnsupportedExpressionError
        As for :func:`compile_where`; aggregates are rejected too.

    Examples
    --------
    >>> compile_key("lower(country)", {"country": "string"}).dtype
    'string'
    """
    from rlm_pipeline.expr.check import check_scalar
    from rlm_pipeline.expr.parse import parse_sql

    tree = parse_sql(sql, "key", limits=limits)
    return check_scalar(sql, tree, schema, "key", limits=limits)


def compile_select(
    sql: str,
    views: Mapping[str, Mapping[str, str]],
    *,
    limits: Limits = DEFAULT_LIMITS,
) -> CheckedQuery:
    """Parse and check a read-only SELECT over the registered views.

    Allowed: CTEs, joins between views (equality ``ON`` conditions), WHERE,
    GROUP BY, HAVING, ORDER BY, LIMIT/OFFSET, DISTINCT, CASE, UNION [ALL],
    derived tables, and the functions of docs/sql.md.

    Parameters
    ----------
    sql
        The query, e.g. ``"SELECT label, count(*) AS n FROM labelled GROUP BY label"``.
    views
        Every registered view: view name -> (column name -> engine-neutral type).
    limits
        Size limits.

    Returns
    -------
    CheckedQuery
        With ``.views_used`` (the views it reads) and ``.schema`` (output columns).

    Raises
    ------
    ExpressionError
        Unknown view (lists the views) or column, syntax error, limits.
    UnsupportedExpressionError
        DDL/DML, table functions, file readers, unknown functions, ...

    Examples
    --------
    >>> q = compile_select("SELECT a, count(*) AS n FROM t GROUP BY a", {"t": {"a": "string"}})
    >>> q.views_used, dict(q.schema)
    (('t',), {'a': 'string', 'n': 'int64'})
    """
    from rlm_pipeline.expr.check_query import check_select
    from rlm_pipeline.expr.parse import parse_sql

    tree = parse_sql(sql, "select", limits=limits)
    return check_select(sql, tree, views, limits=limits)


def to_polars_expr(checked: Checked) -> pl.Expr:
    """Compile a checked WHERE condition or partition key to a Polars expression.

    Parameters
    ----------
    checked
        From :func:`compile_where` or :func:`compile_key`.

    Returns
    -------
    polars.Expr
        Uses SQL three-valued logic; ``lf.filter(expr)`` keeps rows where it is true.

    Raises
    ------
    UnsupportedExpressionError
        A node this compiler does not handle (names the node).

    Examples
    --------
    >>> import polars as pl
    >>> e = to_polars_expr(compile_where("a IS NULL OR a > 1", {"a": "int64"}))
    >>> pl.DataFrame({"a": [None, 1, 2]}).filter(e)["a"].to_list()
    [None, 2]
    """
    from rlm_pipeline.expr.to_polars import compile_expr

    return compile_expr(checked)


def to_polars_query(
    checked_query: CheckedQuery, frames: Mapping[str, pl.LazyFrame]
) -> pl.LazyFrame:
    """Build a Polars lazy plan for a checked SELECT.

    Parameters
    ----------
    checked_query
        From :func:`compile_select`.
    frames
        Registered view name -> LazyFrame; must hold every name in ``views_used``.

    Returns
    -------
    polars.LazyFrame
        Columns named and ordered as ``checked_query.schema``.

    Raises
    ------
    ExpressionError
        A view in ``views_used`` is missing from ``frames``.
    UnsupportedExpressionError
        A node this compiler does not handle.

    Examples
    --------
    >>> import polars as pl
    >>> q = compile_select("SELECT a, count(*) AS n FROM t GROUP BY a ORDER BY a",
    ...                    {"t": {"a": "string"}})
    >>> to_polars_query(q, {"t": pl.LazyFrame({"a": ["x", "y", "x"]})}).collect().rows()
    [('x', 2), ('y', 1)]
    """
    from rlm_pipeline.expr.to_polars_plan import compile_query

    return compile_query(checked_query, frames)


def to_spark_sql(
    checked: Checked | CheckedQuery, view_names: Mapping[str, str] | None = None
) -> str:
    """Generate Spark SQL text for a checked expression or query.

    Parameters
    ----------
    checked
        A :class:`Checked` (gives an expression for ``df.filter(F.expr(...))``
        or ``selectExpr``) or a :class:`CheckedQuery` (gives a full query for
        ``spark.sql(...)``).
    view_names
        Registered view name -> Spark temp view name, for queries; views not
        in the mapping keep their own name.  Ignored for expressions.

    Returns
    -------
    str
        Spark SQL with every identifier back-quoted.

    Examples
    --------
    >>> q = compile_select("SELECT a FROM t WHERE a LIKE 'x%'", {"t": {"a": "string"}})
    >>> to_spark_sql(q, {"t": "rlm_view_1"})
    "SELECT `t`.`a` AS `a` FROM `rlm_view_1` AS `t` WHERE `t`.`a` LIKE 'x%' ESCAPE '\\\\\\\\'"
    """
    from rlm_pipeline.expr.to_spark import generate

    return generate(checked, view_names)
