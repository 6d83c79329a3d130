"""Check one scalar expression tree and rewrite it into its pinned form.

Every node is checked against the allow list, typed (engine-neutral types,
:mod:`rlm_pipeline.expr.dtypes`) and rewritten so that each engine computes the
same thing (docs/sql.md): ILIKE becomes ``lower(x) LIKE lower(pattern)``,
LIKE/regexp patterns take their canonical spelling, a simple ``CASE x WHEN``
becomes a searched CASE, ``date_part``/``year()`` become ``EXTRACT``, a string
literal compared with a date becomes a date literal.

The checked node carries ``meta["type"]``; a column carries ``meta["ref"]``
(the name the Polars compiler reads).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from sqlglot import exp

from rlm_pipeline.errors import ExpressionError, UnsupportedExpressionError
from rlm_pipeline.expr.dtypes import (
    BOOL,
    DATE,
    FLOAT,
    INT,
    NULL,
    NUMERIC,
    ORDERABLE,
    STRING,
    TIMESTAMP,
    unify,
)
from rlm_pipeline.expr.patterns import canonical_regex, parse_like

__all__ = [
    "AGGREGATES",
    "FUNCTION_NAMES",
    "ScalarContext",
    "check_expression",
    "type_of",
]

#: Functions the model may call, as documented in docs/sql.md.
FUNCTION_NAMES: tuple[str, ...] = (
    "abs",
    "avg",
    "cast",
    "ceil",
    "coalesce",
    "concat",
    "count",
    "date_part",
    "day",
    "extract",
    "floor",
    "length",
    "lower",
    "max",
    "min",
    "month",
    "nullif",
    "position",
    "regexp_like",
    "replace",
    "round",
    "strpos",
    "substr",
    "substring",
    "sum",
    "trim",
    "upper",
    "year",
)

AGGREGATES: tuple[type[exp.Expr], ...] = (exp.Count, exp.Sum, exp.Avg, exp.Min, exp.Max)

_EXTRACT_FIELDS = ("YEAR", "MONTH", "DAY")
_MAX_INT = 2**63 - 1

Resolver = Callable[[exp.Column], tuple[str, str]]


@dataclass(frozen=True)
class ScalarContext:
    """What a scalar check needs to know about where the expression sits.

    Attributes
    ----------
    resolve
        Column -> (reference name for the compiler, engine-neutral type); raises
        :class:`ExpressionError` for unknown columns.
    aggregates
        Whether aggregate functions are allowed here.
    max_in_items
        Most items in one IN list.
    where
        A few words naming the place, for messages ("a filter", "GROUP BY").
    """

    resolve: Resolver
    aggregates: bool
    max_in_items: int
    where: str = "this expression"
    in_aggregate: bool = False


def type_of(node: exp.Expr) -> str:
    """The engine-neutral type recorded on a checked node."""
    return str(node.meta.get("type", NULL))


def _typed(node: exp.Expr, dtype: str) -> exp.Expr:
    node.meta["type"] = dtype
    return node


def _frag(node: exp.Expr) -> str:
    try:
        return node.sql()[:120]
    except Exception:  # noqa: BLE001 - a fragment is best effort
        return type(node).__name__


def _unsupported(node: exp.Expr, what: str | None = None) -> UnsupportedExpressionError:
    name = what or _node_name(node)
    return UnsupportedExpressionError(
        f"{name} is not allowed",
        fragment=_frag(node),
        hint="use only the functions and operators of the allow list: "
        + ", ".join(FUNCTION_NAMES)
        + "; operators = <> < <= > >= + - * / % || AND OR NOT IN BETWEEN LIKE ILIKE IS NULL CASE",
    )


def _node_name(node: exp.Expr) -> str:
    if isinstance(node, exp.Anonymous):
        return f"function {node.name}()"
    if isinstance(node, exp.Func):
        return f"function {node.sql_name()}()"
    return f"{type(node).__name__} ({_frag(node)[:40]})"


def _type_error(node: exp.Expr, message: str, hint: str) -> ExpressionError:
    return ExpressionError(message, fragment=_frag(node), hint=hint)


def check_expression(node: exp.Expr, ctx: ScalarContext) -> exp.Expr:
    """Check and pin one scalar expression; returns a new, typed tree.

    Parameters
    ----------
    node
        A parsed scalar expression (not modified).
    ctx
        Column resolution and placement rules.

    Returns
    -------
    sqlglot.exp.Expr
        The pinned tree; every node has ``meta["type"]``.

    Raises
    ------
    ExpressionError
        Unknown column, wrong argument types, bad pattern.
    UnsupportedExpressionError
        A node or function outside the allow list.

    Examples
    --------
    >>> import sqlglot
    >>> ctx = ScalarContext(lambda c: (c.name, "string"), aggregates=False, max_in_items=10)
    >>> check_expression(sqlglot.parse_one("name ILIKE 'A%'"), ctx).sql()
    "LOWER(name) LIKE 'a%'"
    """
    handler = _HANDLERS.get(type(node))
    if handler is None:
        raise _unsupported(node)
    return handler(node, ctx)


def _child(node: exp.Expr, key: str, ctx: ScalarContext) -> exp.Expr:
    value = node.args.get(key)
    if not isinstance(value, exp.Expr):
        raise _type_error(node, f"{_node_name(node)} is missing an argument", "check the syntax")
    return check_expression(value, ctx)


def _only_args(node: exp.Expr, *keys: str) -> None:
    for key, value in node.args.items():
        if key not in keys and value not in (None, False, []):
            raise _unsupported(node, f"{_node_name(node)} with {key.upper()}")


def _expect(node: exp.Expr, child: exp.Expr, allowed: frozenset[str] | set[str], what: str) -> None:
    dtype = type_of(child)
    if dtype != NULL and dtype not in allowed:
        raise _type_error(
            node,
            f"{_node_name(node)} needs {what}, got {dtype} ({_frag(child)[:60]})",
            f"pass {what}; convert with CAST(x AS VARCHAR|BIGINT|DOUBLE|DATE)",
        )


# ---- leaves ---------------------------------------------------------------


def _column(node: exp.Expr, ctx: ScalarContext) -> exp.Expr:
    assert isinstance(node, exp.Column)
    if node.args.get("db") or node.args.get("catalog"):
        raise _unsupported(node, "a column name with more than one qualifier")
    if isinstance(node.this, exp.Star):
        raise _unsupported(node, "* here")
    out = node.copy()
    ref, dtype = ctx.resolve(out)
    out.meta["ref"] = ref
    return _typed(out, dtype)


def _literal(node: exp.Expr, ctx: ScalarContext) -> exp.Expr:
    assert isinstance(node, exp.Literal)
    if node.is_string:
        return _typed(node.copy(), STRING)
    text = node.this
    try:
        if text.isdigit():
            if int(text) > _MAX_INT:
                raise _type_error(node, "integer literal out of range", "use a smaller number")
            return _typed(node.copy(), INT)
        float(text)
    except ValueError as exc:
        raise _type_error(node, "bad number", "write numbers like 42 or 4.2") from exc
    return _typed(node.copy(), FLOAT)


def _boolean(node: exp.Expr, ctx: ScalarContext) -> exp.Expr:
    return _typed(node.copy(), BOOL)


def _null(node: exp.Expr, ctx: ScalarContext) -> exp.Expr:
    return _typed(node.copy(), NULL)


def _paren(node: exp.Expr, ctx: ScalarContext) -> exp.Expr:
    inner = _child(node, "this", ctx)
    return _typed(exp.Paren(this=inner), type_of(inner))


# ---- logic and comparison -------------------------------------------------


def _connector(node: exp.Expr, ctx: ScalarContext) -> exp.Expr:
    left, right = _child(node, "this", ctx), _child(node, "expression", ctx)
    for side in (left, right):
        _expect(node, side, {BOOL}, "boolean operands")
    return _typed(type(node)(this=left, expression=right), BOOL)


def _not(node: exp.Expr, ctx: ScalarContext) -> exp.Expr:
    inner = _child(node, "this", ctx)
    _expect(node, inner, {BOOL}, "a boolean operand")
    return _typed(exp.Not(this=inner), BOOL)


def _date_literal(value: exp.Expr) -> exp.Expr | None:
    """A string literal holding an ISO date, as a DATE literal; else None."""
    if isinstance(value, exp.Literal) and value.is_string:
        try:
            day = dt.date.fromisoformat(value.this)
        except ValueError:
            return None
        if len(value.this) != 10:
            return None
        return _typed(
            exp.Cast(this=exp.Literal.string(day.isoformat()), to=exp.DataType.build("DATE")), DATE
        )
    return None


def _coerce_pair(
    node: exp.Expr,
    left: exp.Expr,
    right: exp.Expr,
) -> tuple[exp.Expr, exp.Expr, str]:
    """Make two operands comparable: string literal vs date -> date literal."""
    lt, rt = type_of(left), type_of(right)
    if lt in (DATE, TIMESTAMP) and rt == STRING and (lit := _date_literal(right)) is not None:
        right, rt = lit, DATE
    elif rt in (DATE, TIMESTAMP) and lt == STRING and (lit := _date_literal(left)) is not None:
        left, lt = lit, DATE
    common = unify(lt, rt)
    if common is None and {lt, rt} == {DATE, TIMESTAMP}:
        common = TIMESTAMP
    if common is None or (common not in ORDERABLE and common != NULL):
        raise _type_error(
            node,
            f"cannot compare {lt} with {rt}",
            "compare values of the same type; convert with CAST(x AS VARCHAR|BIGINT|DOUBLE|DATE)"
            + ("; write dates as DATE '2024-01-31'" if DATE in (lt, rt) else ""),
        )
    return left, right, common


def _comparison(node: exp.Expr, ctx: ScalarContext) -> exp.Expr:
    left, right = _child(node, "this", ctx), _child(node, "expression", ctx)
    left, right, _ = _coerce_pair(node, left, right)
    return _typed(type(node)(this=left, expression=right), BOOL)


def _is(node: exp.Expr, ctx: ScalarContext) -> exp.Expr:
    if not isinstance(node.expression, exp.Null):
        raise _unsupported(node, "IS other than IS NULL / IS NOT NULL")
    inner = _child(node, "this", ctx)
    return _typed(exp.Is(this=inner, expression=exp.Null()), BOOL)


def _between(node: exp.Expr, ctx: ScalarContext) -> exp.Expr:
    _only_args(node, "this", "low", "high")
    this = _child(node, "this", ctx)
    low, high = _child(node, "low", ctx), _child(node, "high", ctx)
    this, low, _ = _coerce_pair(node, this, low)
    this, high, _ = _coerce_pair(node, this, high)
    return _typed(exp.Between(this=this, low=low, high=high), BOOL)


def _in_item(node: exp.Expr, item: exp.Expr, ctx: ScalarContext) -> exp.Expr:
    plain = item.this if isinstance(item, exp.Paren) else item
    literal = (
        isinstance(plain, exp.Literal | exp.Boolean | exp.Null)
        or (
            isinstance(plain, exp.Neg)
            and isinstance(plain.this, exp.Literal)
            and not plain.this.is_string
        )
        or (isinstance(plain, exp.Cast) and isinstance(plain.this, exp.Literal))
    )
    if not literal:
        raise _type_error(
            node,
            f"IN lists may only hold literal values, not {_frag(item)[:60]}",
            "write x IN (1, 2, 3) or x IN ('a', 'b'); compare with other columns using = and OR",
        )
    return check_expression(plain, ctx)


def _in(node: exp.Expr, ctx: ScalarContext) -> exp.Expr:
    if node.args.get("query") is not None:
        raise UnsupportedExpressionError(
            "IN (SELECT ...) subqueries are not allowed",
            fragment=_frag(node),
            hint="use a CTE and JOIN it, or list the values: x IN (1, 2, 3)",
        )
    _only_args(node, "this", "expressions")
    items = node.expressions
    if len(items) > ctx.max_in_items:
        raise ExpressionError(
            f"IN list has {len(items)} items; the limit is {ctx.max_in_items}",
            fragment=_frag(node)[:80],
            hint="filter in smaller steps, or JOIN with a view that holds the values",
        )
    this = _child(node, "this", ctx)
    checked = []
    for item in items:
        value = _in_item(node, item, ctx)
        this, value, _ = _coerce_pair(node, this, value)
        checked.append(value)
    return _typed(exp.In(this=this, expressions=checked), BOOL)


def _string_pattern(node: exp.Expr, value: object, what: str) -> str:
    if not (isinstance(value, exp.Literal) and value.is_string):
        raise _type_error(
            node,
            f"the {what} pattern must be a string literal",
            f"write x {what} 'pattern' with a constant pattern",
        )
    return str(value.this)


def _like(node: exp.Expr, ctx: ScalarContext, escape: str = "\\") -> exp.Expr:
    _only_args(node, "this", "expression")
    what = "ILIKE" if isinstance(node, exp.ILike) else "LIKE"
    pattern = parse_like(_string_pattern(node, node.expression, what), escape)
    this = _child(node, "this", ctx)
    _expect(node, this, {STRING}, "a string")
    if isinstance(node, exp.ILike):
        this = _typed(exp.Lower(this=this), STRING)
        pattern = pattern.lower()
    literal = _typed(exp.Literal.string(pattern.canonical), STRING)
    out = _typed(exp.Like(this=this, expression=literal), BOOL)
    out.meta["like"] = pattern
    return out


def _escape(node: exp.Expr, ctx: ScalarContext) -> exp.Expr:
    inner = node.this
    if not isinstance(inner, exp.Like | exp.ILike):
        raise _unsupported(node, "ESCAPE outside LIKE")
    escape = _string_pattern(node, node.expression, "ESCAPE")
    return _like(inner, ctx, escape)


def _regexp(node: exp.Expr, ctx: ScalarContext) -> exp.Expr:
    _only_args(node, "this", "expression")
    pattern = canonical_regex(_string_pattern(node, node.expression, "regexp_like"))
    this = _child(node, "this", ctx)
    _expect(node, this, {STRING}, "a string")
    literal = _typed(exp.Literal.string(pattern), STRING)
    return _typed(exp.RegexpLike(this=this, expression=literal), BOOL)


# ---- arithmetic and strings ----------------------------------------------


def _arithmetic(node: exp.Expr, ctx: ScalarContext) -> exp.Expr:
    left, right = _child(node, "this", ctx), _child(node, "expression", ctx)
    for side in (left, right):
        _expect(node, side, NUMERIC, "numbers")
    common = unify(type_of(left), type_of(right)) or FLOAT
    if isinstance(node, exp.Div):
        return _typed(exp.Div(this=left, expression=right), FLOAT)
    return _typed(type(node)(this=left, expression=right), common if common != NULL else INT)


def _neg(node: exp.Expr, ctx: ScalarContext) -> exp.Expr:
    inner = _child(node, "this", ctx)
    _expect(node, inner, NUMERIC, "a number")
    return _typed(exp.Neg(this=inner), type_of(inner) if type_of(inner) != NULL else INT)


def _dpipe(node: exp.Expr, ctx: ScalarContext) -> exp.Expr:
    left, right = _child(node, "this", ctx), _child(node, "expression", ctx)
    for side in (left, right):
        _expect(node, side, {STRING}, "strings (CAST other types AS VARCHAR)")
    return _typed(exp.DPipe(this=left, expression=right), STRING)


def _concat(node: exp.Expr, ctx: ScalarContext) -> exp.Expr:
    _only_args(node, "expressions", "safe", "coalesce")
    parts = [check_expression(e, ctx) for e in node.expressions]
    if not parts:
        raise _type_error(node, "concat() needs arguments", "write concat(a, b, ...)")
    for part in parts:
        _expect(node, part, {STRING}, "strings (CAST other types AS VARCHAR)")
    return _typed(exp.Concat(expressions=parts), STRING)


def _string_fn(node: exp.Expr, ctx: ScalarContext) -> exp.Expr:
    _only_args(node, "this")
    inner = _child(node, "this", ctx)
    _expect(node, inner, {STRING}, "a string")
    result = INT if isinstance(node, exp.Length) else STRING
    return _typed(type(node)(this=inner), result)


def _trim(node: exp.Expr, ctx: ScalarContext) -> exp.Expr:
    if node.args.get("expression") is not None or node.args.get("position") is not None:
        raise _unsupported(node, "TRIM with characters or LEADING/TRAILING (only trim(x))")
    return _string_fn(node, ctx)


def _int_literal(node: exp.Expr, value: object, what: str, minimum: int) -> int:
    if isinstance(value, exp.Literal) and not value.is_string and value.this.isdigit():
        number = int(value.this)
        if number >= minimum:
            return number
    raise _type_error(
        node,
        f"{what} must be an integer literal >= {minimum}",
        f"write a constant {what} such as {max(minimum, 1)}",
    )


def _substring(node: exp.Expr, ctx: ScalarContext) -> exp.Expr:
    _only_args(node, "this", "start", "length")
    this = _child(node, "this", ctx)
    _expect(node, this, {STRING}, "a string")
    start = _int_literal(node, node.args.get("start"), "the substring start (1-based)", 1)
    args: dict[str, exp.Expr] = {"this": this, "start": _typed(exp.Literal.number(start), INT)}
    if node.args.get("length") is not None:
        length = _int_literal(node, node.args["length"], "the substring length", 0)
        args["length"] = _typed(exp.Literal.number(length), INT)
    return _typed(exp.Substring(**args), STRING)


def _strpos(node: exp.Expr, ctx: ScalarContext) -> exp.Expr:
    _only_args(node, "this", "substr")
    this = _child(node, "this", ctx)
    _expect(node, this, {STRING}, "a string")
    needle = node.args.get("substr")
    if not (isinstance(needle, exp.Literal) and needle.is_string and needle.this):
        raise _type_error(
            node,
            "the text to find must be a non-empty string literal",
            "write strpos(col, 'text') or position('text' IN col)",
        )
    return _typed(exp.StrPosition(this=this, substr=_typed(needle.copy(), STRING)), INT)


def _replace(node: exp.Expr, ctx: ScalarContext) -> exp.Expr:
    _only_args(node, "this", "expression", "replacement")
    this = _child(node, "this", ctx)
    _expect(node, this, {STRING}, "a string")
    old, new = node.expression, node.args.get("replacement")
    ok = isinstance(old, exp.Literal) and old.is_string and old.this
    if not ok or not (isinstance(new, exp.Literal) and new.is_string):
        raise _type_error(
            node,
            "replace() needs a non-empty search literal and a replacement literal",
            "write replace(col, 'old', 'new')",
        )
    assert isinstance(old, exp.Literal) and isinstance(new, exp.Literal)
    return _typed(
        exp.Replace(
            this=this, expression=_typed(old.copy(), STRING), replacement=_typed(new.copy(), STRING)
        ),
        STRING,
    )


# ---- numbers --------------------------------------------------------------


def _abs(node: exp.Expr, ctx: ScalarContext) -> exp.Expr:
    _only_args(node, "this")
    inner = _child(node, "this", ctx)
    _expect(node, inner, NUMERIC, "a number")
    return _typed(exp.Abs(this=inner), type_of(inner) if type_of(inner) != NULL else INT)


def _round(node: exp.Expr, ctx: ScalarContext) -> exp.Expr:
    _only_args(node, "this", "decimals")
    inner = _child(node, "this", ctx)
    _expect(node, inner, NUMERIC, "a number")
    args: dict[str, exp.Expr] = {"this": inner}
    if node.args.get("decimals") is not None:
        digits = _int_literal(node, node.args["decimals"], "the number of decimals", 0)
        if digits > 15:
            raise _type_error(node, "round() to more than 15 decimals", "use 0 to 15 decimals")
        args["decimals"] = _typed(exp.Literal.number(digits), INT)
    return _typed(exp.Round(**args), type_of(inner) if type_of(inner) != NULL else FLOAT)


def _floor_ceil(node: exp.Expr, ctx: ScalarContext) -> exp.Expr:
    _only_args(node, "this")
    inner = _child(node, "this", ctx)
    _expect(node, inner, NUMERIC, "a number")
    return _typed(type(node)(this=inner), type_of(inner) if type_of(inner) != NULL else FLOAT)


# ---- NULL handling, CASE, CAST ---------------------------------------------


def _unify_all(node: exp.Expr, values: list[exp.Expr]) -> str:
    common = NULL
    for value in values:
        joined = unify(common, type_of(value))
        if joined is None:
            raise _type_error(
                node,
                f"{_node_name(node)} mixes {common} and {type_of(value)}",
                "make every branch the same type with CAST(x AS VARCHAR|BIGINT|DOUBLE|DATE)",
            )
        common = joined
    return common


def _coalesce(node: exp.Expr, ctx: ScalarContext) -> exp.Expr:
    _only_args(node, "this", "expressions")
    values = [_child(node, "this", ctx)] + [check_expression(e, ctx) for e in node.expressions]
    return _typed(exp.Coalesce(this=values[0], expressions=values[1:]), _unify_all(node, values))


def _nullif(node: exp.Expr, ctx: ScalarContext) -> exp.Expr:
    left, right = _child(node, "this", ctx), _child(node, "expression", ctx)
    left, right, _ = _coerce_pair(node, left, right)
    return _typed(exp.Nullif(this=left, expression=right), type_of(left))


def _case(node: exp.Expr, ctx: ScalarContext) -> exp.Expr:
    _only_args(node, "this", "ifs", "default")
    subject = node.args.get("this")
    checked_subject = check_expression(subject, ctx) if subject is not None else None
    ifs: list[exp.Expr] = []
    results: list[exp.Expr] = []
    for branch in node.args.get("ifs") or []:
        if not isinstance(branch, exp.If):
            raise _unsupported(branch)
        cond = _child(branch, "this", ctx)
        if checked_subject is not None:
            left, right, _ = _coerce_pair(node, checked_subject.copy(), cond)
            cond = _typed(exp.EQ(this=left, expression=right), BOOL)
        _expect(node, cond, {BOOL}, "boolean WHEN conditions")
        value = _child(branch, "true", ctx)
        results.append(value)
        ifs.append(exp.If(this=cond, true=value))
    if not ifs:
        raise _type_error(node, "CASE needs at least one WHEN", "write CASE WHEN c THEN v END")
    default = node.args.get("default")
    checked_default = check_expression(default, ctx) if default is not None else None
    if checked_default is not None:
        results.append(checked_default)
    out = exp.Case(ifs=ifs, default=checked_default)
    return _typed(out, _unify_all(node, results))


_CAST_TARGETS: dict[str, tuple[str, frozenset[str]]] = {
    # neutral target -> (canonical SQL type, allowed source types)
    INT: ("BIGINT", frozenset({INT, FLOAT, STRING, BOOL})),
    FLOAT: ("DOUBLE", frozenset({INT, FLOAT, STRING})),
    STRING: ("VARCHAR", frozenset({STRING, INT, BOOL, DATE})),
    DATE: ("DATE", frozenset({DATE, STRING, TIMESTAMP})),
    BOOL: ("BOOLEAN", frozenset({BOOL})),
}

_TYPE_NAMES = {
    exp.DataType.Type.INT: INT,
    exp.DataType.Type.BIGINT: INT,
    exp.DataType.Type.SMALLINT: INT,
    exp.DataType.Type.TINYINT: INT,
    exp.DataType.Type.DOUBLE: FLOAT,
    exp.DataType.Type.FLOAT: FLOAT,
    exp.DataType.Type.VARCHAR: STRING,
    exp.DataType.Type.TEXT: STRING,
    exp.DataType.Type.NVARCHAR: STRING,
    exp.DataType.Type.CHAR: STRING,
    exp.DataType.Type.DATE: DATE,
    exp.DataType.Type.BOOLEAN: BOOL,
}


def _cast(node: exp.Expr, ctx: ScalarContext) -> exp.Expr:
    _only_args(node, "this", "to")
    to = node.args.get("to")
    target = _TYPE_NAMES.get(to.this) if isinstance(to, exp.DataType) else None
    if target is None:
        raise _type_error(
            node,
            f"CAST to {_frag(to) if to else '?'} is not allowed",
            "CAST to VARCHAR, BIGINT, DOUBLE, DATE or BOOLEAN",
        )
    sql_type, sources = _CAST_TARGETS[target]
    raw = node.this
    if target == DATE and isinstance(raw, exp.Literal) and raw.is_string:
        literal = _date_literal(raw)
        if literal is None:
            raise _type_error(node, f"bad date literal {raw.sql()}", "write DATE 'YYYY-MM-DD'")
        return literal
    inner = _child(node, "this", ctx)
    if type_of(inner) != NULL and type_of(inner) not in sources:
        hint = "CAST(x AS VARCHAR) is allowed from strings, integers, booleans and dates"
        if target == STRING and type_of(inner) == FLOAT:
            hint = "engines print floats differently: round() and CAST to BIGINT first, or compare numbers"
        raise _type_error(node, f"cannot CAST {type_of(inner)} to {sql_type}", hint)
    return _typed(exp.Cast(this=inner, to=exp.DataType.build(sql_type)), target)


# ---- dates ----------------------------------------------------------------


def _extract_field(node: exp.Expr, field: str, value: exp.Expr, ctx: ScalarContext) -> exp.Expr:
    field = field.upper()
    if field not in _EXTRACT_FIELDS:
        raise _type_error(node, f"cannot extract {field}", "extract YEAR, MONTH or DAY")
    inner = check_expression(value, ctx)
    _expect(node, inner, {DATE, TIMESTAMP}, "a date")
    return _typed(exp.Extract(this=exp.Var(this=field), expression=inner), INT)


def _extract(node: exp.Expr, ctx: ScalarContext) -> exp.Expr:
    field = node.this
    name = field.name if isinstance(field, exp.Var | exp.Identifier | exp.Column) else ""
    if isinstance(field, exp.Literal) and field.is_string:
        name = field.this
    return _extract_field(node, name, node.expression, ctx)


def _date_fn(node: exp.Expr, ctx: ScalarContext) -> exp.Expr:
    return _extract_field(node, type(node).__name__, node.this, ctx)


def _anonymous(node: exp.Expr, ctx: ScalarContext) -> exp.Expr:
    assert isinstance(node, exp.Anonymous)
    if node.name.lower() == "date_part" and len(node.expressions) == 2:
        field, value = node.expressions
        if isinstance(field, exp.Literal) and field.is_string:
            return _extract_field(node, field.this, value, ctx)
        raise _type_error(node, "date_part needs a field literal", "write date_part('year', d)")
    raise _unsupported(node, f"unknown function {node.name}()")


# ---- aggregates -----------------------------------------------------------


def _aggregate(node: exp.Expr, ctx: ScalarContext) -> exp.Expr:
    name = type(node).__name__.lower()
    if not ctx.aggregates:
        raise UnsupportedExpressionError(
            f"aggregate {name}() is not allowed in {ctx.where}",
            fragment=_frag(node),
            hint="aggregate with the sql tool: SELECT ..., count(*) FROM view GROUP BY ...",
        )
    if ctx.in_aggregate:
        raise _type_error(node, "aggregates cannot be nested", "aggregate once, or use a CTE")
    inner_ctx = ScalarContext(
        ctx.resolve,
        aggregates=False,
        max_in_items=ctx.max_in_items,
        where="an aggregate's argument",
        in_aggregate=True,
    )
    if isinstance(node, exp.Count):
        return _count(node, inner_ctx)
    _only_args(node, "this")
    if isinstance(node.this, exp.Distinct):
        raise _unsupported(node, f"{name}(DISTINCT ...) (only count(DISTINCT x))")
    inner = _child(node, "this", inner_ctx)
    if isinstance(node, exp.Sum | exp.Avg):
        _expect(node, inner, NUMERIC, "a number")
        result = FLOAT if isinstance(node, exp.Avg) or type_of(inner) == FLOAT else INT
    else:
        _expect(node, inner, ORDERABLE - {BOOL}, "a number, string or date")
        result = type_of(inner)
    return _typed(type(node)(this=inner), result)


def _count(node: exp.Expr, ctx: ScalarContext) -> exp.Expr:
    _only_args(node, "this", "big_int")
    arg = node.this
    if arg is None or isinstance(arg, exp.Star):
        return _typed(exp.Count(this=exp.Star()), INT)
    if isinstance(arg, exp.Distinct):
        if len(arg.expressions) != 1 or arg.args.get("on") is not None:
            raise _unsupported(node, "count(DISTINCT ...) of more than one value")
        inner = check_expression(arg.expressions[0], ctx)
        return _typed(exp.Count(this=exp.Distinct(expressions=[inner])), INT)
    return _typed(exp.Count(this=check_expression(arg, ctx)), INT)


_Handler = Callable[[exp.Expr, ScalarContext], exp.Expr]

_HANDLERS: dict[type[exp.Expr], _Handler] = {
    exp.Column: _column,
    exp.Literal: _literal,
    exp.Boolean: _boolean,
    exp.Null: _null,
    exp.Paren: _paren,
    exp.And: _connector,
    exp.Or: _connector,
    exp.Not: _not,
    exp.EQ: _comparison,
    exp.NEQ: _comparison,
    exp.GT: _comparison,
    exp.GTE: _comparison,
    exp.LT: _comparison,
    exp.LTE: _comparison,
    exp.NullSafeEQ: _comparison,
    exp.NullSafeNEQ: _comparison,
    exp.Is: _is,
    exp.Between: _between,
    exp.In: _in,
    exp.Like: _like,
    exp.ILike: _like,
    exp.Escape: _escape,
    exp.RegexpLike: _regexp,
    exp.Add: _arithmetic,
    exp.Sub: _arithmetic,
    exp.Mul: _arithmetic,
    exp.Div: _arithmetic,
    exp.Mod: _arithmetic,
    exp.Neg: _neg,
    exp.DPipe: _dpipe,
    exp.Concat: _concat,
    exp.Lower: _string_fn,
    exp.Upper: _string_fn,
    exp.Length: _string_fn,
    exp.Trim: _trim,
    exp.Substring: _substring,
    exp.StrPosition: _strpos,
    exp.Replace: _replace,
    exp.Abs: _abs,
    exp.Round: _round,
    exp.Floor: _floor_ceil,
    exp.Ceil: _floor_ceil,
    exp.Coalesce: _coalesce,
    exp.Nullif: _nullif,
    exp.Case: _case,
    exp.Cast: _cast,
    exp.Extract: _extract,
    exp.Year: _date_fn,
    exp.Month: _date_fn,
    exp.Day: _date_fn,
    exp.Anonymous: _anonymous,
    exp.Count: _aggregate,
    exp.Sum: _aggregate,
    exp.Avg: _aggregate,
    exp.Min: _aggregate,
    exp.Max: _aggregate,
}
