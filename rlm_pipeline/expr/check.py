"""Stage 2: check a parsed tree against the allow list, the limits and the schema.

:data:`TREE_CHECKS` is a tuple of small pure functions ``(tree, kind, limits) ->
None`` that each raise on one kind of problem; they run first, on the raw tree.
Then the structure is checked and typed: a scalar with
:func:`rlm_pipeline.expr.scalar.check_expression`, a query with
:func:`rlm_pipeline.expr.check_query.check_query`.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable, Mapping

from sqlglot import exp

from rlm_pipeline.errors import ExpressionError, UnsupportedExpressionError
from rlm_pipeline.expr.checked import Checked, ExprKind
from rlm_pipeline.expr.dtypes import BOOL, NULL
from rlm_pipeline.expr.limits import DEFAULT_LIMITS, Limits
from rlm_pipeline.expr.parse import InputKind
from rlm_pipeline.expr.scalar import ScalarContext, check_expression, type_of

__all__ = [
    "TREE_CHECKS",
    "check_depth",
    "check_in_lists",
    "check_no_file_access",
    "check_scalar",
    "check_statement",
    "check_tree",
    "neutral_type",
    "unknown_name",
]

logger = logging.getLogger(__name__)

_STATEMENTS = frozenset(
    {
        "Drop",
        "Alter",
        "Command",
        "Pragma",
        "Set",
        "Use",
        "Transaction",
        "Commit",
        "Rollback",
        "Describe",
        "Show",
        "TruncateTable",
        "Attach",
        "Detach",
        "Grant",
        "Revoke",
        "Analyze",
        "Cache",
        "Uncache",
        "Refresh",
        "LoadData",
        "Kill",
        "Export",
        "Summarize",
        "Install",
        "Declare",
    }
)

TreeCheck = Callable[[exp.Expr, InputKind, Limits], None]

_FILE_FUNCTIONS = ("read_", "scan_", "glob", "parquet_", "csv", "json", "file", "pg_", "sqlite_")
_FILE_NODES: tuple[type[exp.Expr], ...] = (
    exp.ReadParquet,
    exp.ReadCSV,
    exp.Copy,
    exp.Into,
    exp.LoadData,
)


def unknown_name(
    what: str,
    name: str,
    known: list[str],
    *,
    fragment: str | None = None,
) -> ExpressionError:
    """An error for an unknown view or column, listing the known ones.

    Examples
    --------
    >>> str(unknown_name("column", "amout", ["amount", "id"]))
    "unknown column 'amout'; did you mean 'amount'? | near: amout | hint: use one of: amount, id"
    """
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if not close:
        close = [k for k in known if k.lower() == name.lower()][:1]
    guess = f"; did you mean {close[0]!r}?" if close else ""
    listed = ", ".join(known[:60]) + (" ..." if len(known) > 60 else "")
    return ExpressionError(
        f"unknown {what} {name!r}{guess}",
        fragment=fragment or name,
        hint=f"use one of: {listed}" if known else f"there are no {what}s",
    )


def check_statement(tree: exp.Expr, kind: InputKind, limits: Limits) -> None:
    """Refuse statements that are not what ``kind`` asks for (DDL, DML, SET, ...)."""
    is_query = isinstance(tree, exp.Query) or (
        isinstance(tree, exp.Subquery) and isinstance(tree.this, exp.Query)
    )
    statement = isinstance(tree, exp.DDL | exp.DML) or type(tree).__name__ in _STATEMENTS
    if statement or isinstance(tree, exp.Values):
        word = tree.key.upper()
        raise UnsupportedExpressionError(
            f"{word} statements are not allowed: only read-only queries and expressions",
            fragment=tree.sql()[:80] if not isinstance(tree, exp.Command) else str(tree.this),
            hint="use filter/partition with a condition, or the sql tool with one SELECT",
        )
    if kind == "select" and not is_query:
        raise ExpressionError(
            "expected a SELECT query",
            fragment=tree.sql()[:80],
            hint="write SELECT ... FROM view ...; use the filter tool for a bare condition",
        )
    if kind != "select" and is_query:
        raise UnsupportedExpressionError(
            "a query is not allowed here: write a single expression",
            fragment=tree.sql()[:80],
            hint="write a condition such as amount > 10; use the sql tool for SELECT",
        )


def check_no_file_access(tree: exp.Expr, kind: InputKind, limits: Limits) -> None:
    """Refuse file readers, COPY, SELECT INTO and table functions anywhere in the tree."""
    for node in tree.walk():
        name = node.name.lower() if isinstance(node, exp.Anonymous) else ""
        if isinstance(node, _FILE_NODES) or (name and name.startswith(_FILE_FUNCTIONS)):
            what = "SELECT INTO" if isinstance(node, exp.Into) else _fn_name(node)
            raise UnsupportedExpressionError(
                f"{what} is not allowed: SQL may only read the registered views",
                fragment=node.sql()[:80],
                hint="query the registered views by name, e.g. SELECT ... FROM context",
            )
        if isinstance(node, exp.Table) and not isinstance(node.this, exp.Identifier):
            raise UnsupportedExpressionError(
                f"table function {_fn_name(node.this)} is not allowed",
                fragment=node.sql()[:80],
                hint="FROM and JOIN may only name registered views or CTEs",
            )
        if isinstance(node, exp.UDTF | exp.Lateral | exp.Unnest):
            raise UnsupportedExpressionError(
                f"{node.key.upper()} is not allowed",
                fragment=node.sql()[:80],
                hint="FROM and JOIN may only name registered views or CTEs",
            )


def _fn_name(node: object) -> str:
    if isinstance(node, exp.Anonymous):
        return f"{node.name}()"
    if isinstance(node, exp.Func):
        return f"{node.sql_name().lower()}()"
    return type(node).__name__


def check_depth(tree: exp.Expr, kind: InputKind, limits: Limits) -> None:
    """Refuse trees nested deeper than ``limits.max_depth`` or larger than ``max_nodes``."""
    stack: list[tuple[exp.Expr, int]] = [(tree, 1)]
    nodes = 0
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if depth > limits.max_depth:
            raise ExpressionError(
                f"expression nested deeper than {limits.max_depth} levels",
                fragment=node.sql()[:80],
                hint="simplify: use IN (...) instead of long OR chains, or filter in steps",
            )
        if nodes > limits.max_nodes:
            raise ExpressionError(
                f"expression has more than {limits.max_nodes} parts",
                fragment=tree.sql()[:80],
                hint="simplify, or filter in several steps",
            )
        stack.extend((child, depth + 1) for child in node.iter_expressions())


def check_in_lists(tree: exp.Expr, kind: InputKind, limits: Limits) -> None:
    """Refuse IN lists longer than ``limits.max_in_items``."""
    for node in tree.find_all(exp.In):
        if len(node.expressions) > limits.max_in_items:
            raise ExpressionError(
                f"IN list has {len(node.expressions)} items; the limit is {limits.max_in_items}",
                fragment=node.sql()[:80],
                hint="filter in smaller steps, or JOIN with a view that holds the values",
            )


#: The checks every parsed tree goes through, in order.
TREE_CHECKS: tuple[TreeCheck, ...] = (
    check_statement,
    check_depth,
    check_in_lists,
    check_no_file_access,
)


def check_tree(tree: exp.Expr, kind: InputKind, limits: Limits = DEFAULT_LIMITS) -> None:
    """Run :data:`TREE_CHECKS` over a parsed tree.

    Examples
    --------
    >>> import sqlglot
    >>> check_tree(sqlglot.parse_one("a = 1"), "where")
    """
    for check in TREE_CHECKS:
        check(tree, kind, limits)


def _schema_resolver(schema: Mapping[str, str]) -> Callable[[exp.Column], tuple[str, str]]:
    known = list(schema)
    folded: dict[str, list[str]] = {}
    for name in known:
        folded.setdefault(name.lower(), []).append(name)

    def resolve(column: exp.Column) -> tuple[str, str]:
        if column.table:
            raise ExpressionError(
                f"qualified column {column.sql()} is not allowed here",
                fragment=column.sql(),
                hint=f"write the bare column name: {column.name}",
            )
        name = column.name
        if name not in schema:
            matches = folded.get(name.lower(), [])
            if len(matches) != 1 or column.this.quoted:
                raise unknown_name("column", name, known, fragment=column.sql())
            name = matches[0]
        column.set("this", exp.to_identifier(name, quoted=True))
        return name, neutral_type(schema[name])

    return resolve


def neutral_type(dtype: str) -> str:
    return dtype.strip().lower()


def check_scalar(
    sql: str,
    tree: exp.Expr,
    schema: Mapping[str, str],
    kind: ExprKind,
    *,
    limits: Limits = DEFAULT_LIMITS,
) -> Checked:
    """Check a parsed WHERE condition or partition key against a view's schema.

    Parameters
    ----------
    sql
        The original text (kept on the result).
    tree
        From :func:`rlm_pipeline.expr.parse.parse_sql`.
    schema
        Column name -> engine-neutral type.
    kind
        ``"where"`` or ``"key"``.
    limits
        Size limits.

    Returns
    -------
    Checked

    Examples
    --------
    >>> import sqlglot
    >>> check_scalar("a>1", sqlglot.parse_one("a>1"), {"a": "int64"}, "where").dtype
    'bool'
    """
    check_tree(tree, kind, limits)
    place = "a filter" if kind == "where" else "a partition key"
    ctx = ScalarContext(
        _schema_resolver(schema), aggregates=False, max_in_items=limits.max_in_items, where=place
    )
    checked = check_expression(tree, ctx)
    dtype = type_of(checked)
    if kind == "where" and dtype not in (BOOL, NULL):
        raise ExpressionError(
            f"a filter must be a boolean condition, got {dtype}",
            fragment=checked.sql()[:80],
            hint="compare it: e.g. amount > 10, name = 'x', flag IS NULL",
        )
    columns: list[str] = []
    for column in checked.find_all(exp.Column):
        ref = str(column.meta["ref"])
        if ref not in columns:
            columns.append(ref)
    logger.debug("checked %s %r -> %s", kind, sql[:200], dtype)
    return Checked(
        sql=sql, kind=kind, tree=checked, schema=dict(schema), columns=tuple(columns), dtype=dtype
    )
