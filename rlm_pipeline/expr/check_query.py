"""Check a SELECT (or UNION) over named views; resolve every name; pin its shape.

The checked query is rebuilt from the allowed parts only, so a clause nobody
checked can never reach an engine.  Its canonical form:

* every table has an alias and ``meta["view"]`` (a registered view) or
  ``meta["cte"]``; every column is qualified by its source alias and carries
  ``meta["ref"]`` (``alias\\x1fcolumn``, the name the Polars plan uses);
* every output column is aliased (``*`` expanded), names are unique;
* GROUP BY holds expressions (ordinals and output aliases are replaced);
* ORDER BY items are output ordinals (``meta["output"]`` = name) or hidden
  expressions, each with explicit NULLS FIRST/LAST (NULL sorts as the smallest
  value unless the query says otherwise).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlglot import exp

from rlm_pipeline.errors import ExpressionError, UnsupportedExpressionError
from rlm_pipeline.expr.check import check_tree, neutral_type, unknown_name
from rlm_pipeline.expr.checked import CheckedQuery
from rlm_pipeline.expr.dtypes import BOOL, NULL, unify
from rlm_pipeline.expr.limits import DEFAULT_LIMITS, Limits
from rlm_pipeline.expr.scalar import AGGREGATES, ScalarContext, check_expression, type_of

__all__ = ["REF_SEP", "check_query", "check_select", "ref_name"]

logger = logging.getLogger(__name__)

REF_SEP = "\x1f"

_SELECT_ARGS = (
    "with_",
    "expressions",
    "distinct",
    "from_",
    "joins",
    "where",
    "group",
    "having",
    "order",
    "limit",
    "offset",
)
_UNION_ARGS = ("with_", "this", "expression", "distinct", "order", "limit", "offset")

Schema = dict[str, str]


def ref_name(alias: str, column: str) -> str:
    """The internal column name of ``alias.column`` in a Polars plan."""
    return f"{alias}{REF_SEP}{column}"


@dataclass
class _Scope:
    views: Mapping[str, Schema]
    ctes: dict[str, Schema]
    limits: Limits
    used: set[str]
    sources: dict[str, Schema] = field(default_factory=dict)

    def child(self) -> _Scope:
        return _Scope(self.views, dict(self.ctes), self.limits, self.used)


def _frag(node: exp.Expr | None) -> str:
    return node.sql()[:120] if node is not None else ""


def _reject_extra(node: exp.Expr, allowed: tuple[str, ...]) -> None:
    for key, value in node.args.items():
        if key not in allowed and value not in (None, False, []):
            word = key.rstrip("_").upper()
            raise UnsupportedExpressionError(
                f"{word} is not allowed in a query",
                fragment=_frag(node),
                hint="use SELECT, FROM, JOIN ... ON, WHERE, GROUP BY, HAVING, ORDER BY, LIMIT, "
                "WITH, UNION [ALL]",
            )


def check_query(
    node: exp.Expr,
    views: Mapping[str, Schema],
    limits: Limits,
) -> tuple[exp.Query, Schema, set[str]]:
    """Check a parsed query; returns (canonical tree, output schema, views used).

    Examples
    --------
    >>> import sqlglot
    >>> from rlm_pipeline.expr.limits import DEFAULT_LIMITS
    >>> tree, schema, used = check_query(
    ...     sqlglot.parse_one("SELECT a FROM t"), {"t": {"a": "int64"}}, DEFAULT_LIMITS)
    >>> tree.sql(), schema, used
    ('SELECT "t"."a" AS "a" FROM "t" AS "t"', {'a': 'int64'}, {'t'})
    """
    scope = _Scope(views, {}, limits, set())
    tree, schema = _query(node, scope)
    return tree, schema, scope.used


def _query(node: exp.Expr, scope: _Scope) -> tuple[exp.Query, Schema]:
    if isinstance(node, exp.Subquery) and isinstance(node.this, exp.Query):
        _reject_extra(node, ("this", "alias"))
        return _query(node.this, scope)
    if isinstance(node, exp.Union):
        return _union(node, scope)
    if isinstance(node, exp.Select):
        return _select(node, scope)
    word = "INTERSECT/EXCEPT" if isinstance(node, exp.SetOperation) else type(node).__name__
    raise UnsupportedExpressionError(
        f"{word} is not allowed",
        fragment=_frag(node),
        hint="write SELECT ... FROM view ...; combine queries with UNION [ALL] only",
    )


def _with(node: exp.Expr, scope: _Scope) -> exp.With | None:
    with_ = node.args.get("with_")
    if with_ is None:
        return None
    if with_.args.get("recursive"):
        raise UnsupportedExpressionError(
            "WITH RECURSIVE is not allowed",
            fragment=_frag(with_),
            hint="use plain WITH name AS (SELECT ...)",
        )
    ctes = []
    for cte in with_.expressions:
        name = cte.alias
        if not name or cte.args["alias"].columns:
            raise UnsupportedExpressionError(
                "a CTE needs a plain name: WITH name AS (SELECT ...)",
                fragment=_frag(cte),
                hint="alias columns inside the SELECT",
            )
        if name in scope.views or name in scope.ctes:
            raise ExpressionError(
                f"CTE name {name!r} is already a view or CTE",
                fragment=_frag(cte),
                hint="choose a new name for the CTE",
            )
        tree, schema = _query(cte.this, scope.child())
        scope.ctes[name] = schema
        ctes.append(
            exp.CTE(this=tree, alias=exp.TableAlias(this=exp.to_identifier(name, quoted=True)))
        )
    return exp.With(expressions=ctes)


def _limit(node: exp.Expr, key: str) -> exp.Expr | None:
    clause = node.args.get(key)
    if clause is None:
        return None
    value = clause.expression
    if not (isinstance(value, exp.Literal) and not value.is_string and value.this.isdigit()):
        raise ExpressionError(
            f"{key.upper()} must be a non-negative integer literal",
            fragment=_frag(clause),
            hint=f"write {key.upper()} 10",
        )
    if clause.args.get("offset") is not None or clause.args.get("expressions"):
        raise UnsupportedExpressionError(
            f"this {key.upper()} form is not allowed",
            fragment=_frag(clause),
            hint="write LIMIT n OFFSET m",
        )
    number = exp.Literal.number(int(value.this))
    return exp.Limit(expression=number) if key == "limit" else exp.Offset(expression=number)


def _union(node: exp.Expr, scope: _Scope) -> tuple[exp.Query, Schema]:
    _reject_extra(node, _UNION_ARGS)
    with_ = _with(node, scope)
    left, left_schema = _query(node.this, scope.child())
    right, right_schema = _query(node.expression, scope.child())
    if len(left_schema) != len(right_schema):
        raise ExpressionError(
            f"UNION sides have {len(left_schema)} and {len(right_schema)} columns",
            fragment=_frag(node),
            hint="select the same number of columns on both sides",
        )
    schema: Schema = {}
    for (name, lt), rt in zip(left_schema.items(), right_schema.values(), strict=True):
        common = unify(lt, rt)
        if common is None:
            raise ExpressionError(
                f"UNION column {name!r} is {lt} on one side and {rt} on the other",
                fragment=_frag(node),
                hint="CAST both sides to one type",
            )
        schema[name] = common
    out = exp.Union(this=left, expression=right, distinct=bool(node.args.get("distinct")))
    out.meta["schema"] = dict(schema)
    if with_ is not None:
        out.set("with_", with_)
    _order(node, out, schema, items=[], hidden_ok=False, resolve=None)
    for key in ("limit", "offset"):
        out.set(key, _limit(node, key))
    return out, schema


# ---- SELECT -----------------------------------------------------------------


def _table(node: exp.Expr, scope: _Scope) -> tuple[exp.Expr, str, Schema]:
    """Check one FROM/JOIN source; returns (canonical node, alias, schema)."""
    if isinstance(node, exp.Subquery):
        alias = node.alias
        if not alias:
            raise ExpressionError(
                "a subquery in FROM needs an alias",
                fragment=_frag(node),
                hint="write FROM (SELECT ...) AS name",
            )
        _reject_extra(node, ("this", "alias"))
        tree, schema = _query(node.this, scope.child())
        out = exp.Subquery(
            this=tree, alias=exp.TableAlias(this=exp.to_identifier(alias, quoted=True))
        )
        out.meta["columns"] = list(schema)
        return out, alias, schema
    if not isinstance(node, exp.Table):
        raise UnsupportedExpressionError(
            f"{type(node).__name__} is not allowed in FROM",
            fragment=_frag(node),
            hint="FROM a view name or (SELECT ...) AS x",
        )
    _reject_extra(node, ("this", "alias"))
    if node.args.get("alias") is not None and node.args["alias"].columns:
        raise UnsupportedExpressionError(
            "column aliases on a table are not allowed",
            fragment=_frag(node),
            hint="alias columns in the SELECT list",
        )
    name = node.name
    table = exp.Table(this=exp.to_identifier(name, quoted=True))
    if name in scope.ctes:
        schema = scope.ctes[name]
        table.meta["cte"] = name
    else:
        known = {**{v: v for v in scope.views}}
        if name not in known:
            folded = [v for v in scope.views if v.lower() == name.lower()]
            if len(folded) != 1 or node.this.quoted:
                raise unknown_name(
                    "view", name, sorted(scope.views) + sorted(scope.ctes), fragment=_frag(node)
                )
            name = folded[0]
            table.set("this", exp.to_identifier(name, quoted=True))
        schema = dict(scope.views[name])
        table.meta["view"] = name
        scope.used.add(name)
    alias = node.alias or name
    table.set("alias", exp.TableAlias(this=exp.to_identifier(alias, quoted=True)))
    table.meta["columns"] = list(schema)
    return table, alias, schema


def _resolver(scope: _Scope) -> ScalarContext:
    sources = scope.sources

    def resolve(column: exp.Column) -> tuple[str, str]:
        name = column.name
        if column.table:
            alias = column.table
            if alias not in sources:
                folded = [a for a in sources if a.lower() == alias.lower()]
                if len(folded) != 1:
                    raise unknown_name("table alias", alias, list(sources), fragment=column.sql())
                alias = folded[0]
            candidates = [alias]
        else:
            candidates = [a for a, cols in sources.items() if name in cols]
            if not candidates:
                candidates = [
                    a for a, cols in sources.items() if any(c.lower() == name.lower() for c in cols)
                ]
            if len(candidates) > 1:
                raise ExpressionError(
                    f"column {name!r} is ambiguous",
                    fragment=column.sql(),
                    hint="qualify it: " + " or ".join(f"{a}.{name}" for a in candidates),
                )
        known = [f"{a}.{c}" if len(sources) > 1 else c for a, cols in sources.items() for c in cols]
        if not candidates:
            raise unknown_name("column", name, known, fragment=column.sql())
        alias = candidates[0]
        columns = sources[alias]
        if name not in columns:
            folded = [c for c in columns if c.lower() == name.lower()]
            if len(folded) != 1 or column.this.quoted:
                raise unknown_name("column", name, [c for c in columns], fragment=column.sql())
            name = folded[0]
        column.set("this", exp.to_identifier(name, quoted=True))
        column.set("table", exp.to_identifier(alias, quoted=True))
        return ref_name(alias, name), columns[name]

    return ScalarContext(resolve, aggregates=False, max_in_items=scope.limits.max_in_items)


def _ctx(base: ScalarContext, *, aggregates: bool, where: str) -> ScalarContext:
    return ScalarContext(
        base.resolve, aggregates=aggregates, max_in_items=base.max_in_items, where=where
    )


def _join(join: exp.Expr, scope: _Scope, left_aliases: set[str]) -> exp.Join:
    _reject_extra(join, ("this", "on", "side", "kind"))
    side = (join.args.get("side") or "").upper()
    kind = (join.args.get("kind") or "").upper()
    if kind not in ("", "INNER", "OUTER") or join.args.get("on") is None:
        raise UnsupportedExpressionError(
            "only [INNER|LEFT|RIGHT|FULL] JOIN ... ON is allowed (no comma joins, CROSS, NATURAL or USING)",
            fragment=_frag(join),
            hint="write JOIN other ON a.key = other.key",
        )
    source, alias, schema = _table(join.this, scope)
    if alias in scope.sources:
        raise ExpressionError(
            f"table alias {alias!r} is used twice",
            fragment=_frag(join),
            hint="give each joined view its own alias: JOIN v AS v2",
        )
    scope.sources[alias] = schema
    on = check_expression(join.args["on"], _ctx(_resolver(scope), aggregates=False, where="ON"))
    conjuncts = list(on.flatten()) if isinstance(on, exp.And) else [on]
    for part in conjuncts:
        plain = part.unnest() if isinstance(part, exp.Paren) else part
        sides = None
        if isinstance(plain, exp.EQ):
            sides = (_aliases(plain.this), _aliases(plain.expression))
        ok = (
            sides is not None
            and all(sides)
            and (
                (sides[0] <= left_aliases and sides[1] == {alias})
                or (sides[1] <= left_aliases and sides[0] == {alias})
            )
        )
        if not ok:
            raise UnsupportedExpressionError(
                "JOIN ... ON must be equalities between the joined view and the views before it",
                fragment=_frag(part),
                hint="write ON a.k = b.k [AND a.k2 = b.k2]; put other conditions in WHERE",
            )
    out = exp.Join(this=source, on=on)
    if side:
        out.set("side", side)
    out.meta["alias"] = alias
    return out


def _aliases(node: exp.Expr) -> set[str]:
    return {str(c.meta["ref"]).split(REF_SEP)[0] for c in node.find_all(exp.Column)}


def _output_name(item: exp.Expr, index: int) -> str:
    if isinstance(item, exp.Alias):
        return item.alias
    if isinstance(item, exp.Column):
        return item.name
    if isinstance(item, exp.Func) and not isinstance(item, exp.Anonymous):
        return item.sql_name().lower()
    return f"_col{index}"


def _expand(items: list[exp.Expr], scope: _Scope) -> list[exp.Expr]:
    out: list[exp.Expr] = []
    for item in items:
        if isinstance(item, exp.Star):
            for alias, cols in scope.sources.items():
                out.extend(exp.column(c, alias, quoted=True) for c in cols)
        elif isinstance(item, exp.Column) and isinstance(item.this, exp.Star):
            alias = item.table
            if alias not in scope.sources:
                raise unknown_name("table alias", alias, list(scope.sources), fragment=_frag(item))
            out.extend(exp.column(c, alias, quoted=True) for c in scope.sources[alias])
        else:
            out.append(item)
    return out


def _select(node: exp.Expr, scope: _Scope) -> tuple[exp.Query, Schema]:
    _reject_extra(node, _SELECT_ARGS)
    scope = scope.child()
    out, base = _select_sources(node, scope)
    names, values, groups, having = _select_items(node, scope, base)
    aggregating = (
        bool(groups) or having is not None or any(v.find(*AGGREGATES) is not None for v in values)
    )
    output = _output_schema(node, names, values)
    group_sql = {g.sql() for g in groups}
    if aggregating:
        for value in [*values, *([having] if having is not None else [])]:
            _check_grouped(value, group_sql)
    out.set(
        "expressions",
        [
            exp.Alias(this=v, alias=exp.to_identifier(n, quoted=True))
            for n, v in zip(names, values, strict=True)
        ],
    )
    if groups:
        out.set("group", exp.Group(expressions=groups))
    if having is not None:
        out.set("having", exp.Having(this=having))
    distinct = _distinct(node, out)

    def resolve_order(expr: exp.Expr) -> exp.Expr:
        checked = check_expression(expr, _ctx(base, aggregates=aggregating, where="ORDER BY"))
        if aggregating:
            _check_grouped(checked, group_sql)
        return checked

    _order(node, out, output, items=values, hidden_ok=distinct is None, resolve=resolve_order)
    for key in ("limit", "offset"):
        out.set(key, _limit(node, key))
    out.meta["schema"] = dict(output)
    out.meta["aggregating"] = aggregating
    return out, output


def _select_sources(node: exp.Expr, scope: _Scope) -> tuple[exp.Select, ScalarContext]:
    """WITH, FROM, JOINs and WHERE of a SELECT: the new SELECT so far and its resolver."""
    with_ = _with(node, scope)
    from_ = node.args.get("from_")
    if from_ is None:
        raise ExpressionError(
            "a query needs FROM", fragment=_frag(node), hint="write SELECT ... FROM context"
        )
    source, alias, schema = _table(from_.this, scope)
    scope.sources[alias] = schema
    joins = []
    for join in node.args.get("joins") or []:
        joins.append(_join(join, scope, set(scope.sources)))
    base = _resolver(scope)
    out = exp.Select(from_=exp.From(this=source))
    if with_ is not None:
        out.set("with_", with_)
    if joins:
        out.set("joins", joins)
    where = node.args.get("where")
    if where is not None:
        cond = check_expression(where.this, _ctx(base, aggregates=False, where="WHERE"))
        _expect_bool(cond, "WHERE")
        out.set("where", exp.Where(this=cond))
    return out, base


def _select_items(
    node: exp.Expr, scope: _Scope, base: ScalarContext
) -> tuple[list[str], list[exp.Expr], list[exp.Expr], exp.Expr | None]:
    """Output names, checked output values, GROUP BY keys and HAVING of a SELECT."""
    raw_items = _expand(list(node.expressions), scope)
    names = [_output_name(item, i) for i, item in enumerate(raw_items)]
    raw_values = [item.this if isinstance(item, exp.Alias) else item for item in raw_items]
    group_raw = list(node.args["group"].expressions) if node.args.get("group") else []
    if node.args.get("group") is not None:
        _reject_extra(node.args["group"], ("expressions",))
    groups = [
        check_expression(
            _group_target(g, names, raw_values, scope),
            _ctx(base, aggregates=False, where="GROUP BY"),
        )
        for g in group_raw
    ]
    values = [check_expression(v, _ctx(base, aggregates=True, where="SELECT")) for v in raw_values]
    having = None
    if node.args.get("having") is not None:
        having = check_expression(
            node.args["having"].this, _ctx(base, aggregates=True, where="HAVING")
        )
        _expect_bool(having, "HAVING")
    return names, values, groups, having


def _output_schema(node: exp.Expr, names: list[str], values: list[exp.Expr]) -> Schema:
    """Output column -> type; a name given twice is an error."""
    output: Schema = {}
    for name, value in zip(names, values, strict=True):
        if name in output:
            raise ExpressionError(
                f"duplicate output column {name!r}",
                fragment=_frag(node)[:80],
                hint="give each output column its own alias: expr AS name",
            )
        output[name] = type_of(value)
    return output


def _distinct(node: exp.Expr, out: exp.Select) -> exp.Expr | None:
    """Copy a plain DISTINCT onto ``out`` (DISTINCT ON refused); the node's DISTINCT or None."""
    distinct = node.args.get("distinct")
    if distinct is not None:
        if distinct.args.get("on") is not None:
            raise UnsupportedExpressionError(
                "DISTINCT ON is not allowed", fragment=_frag(distinct), hint="use GROUP BY"
            )
        out.set("distinct", exp.Distinct())
    return distinct


def _expect_bool(node: exp.Expr, where: str) -> None:
    if type_of(node) not in (BOOL, NULL):
        raise ExpressionError(
            f"{where} needs a boolean condition, got {type_of(node)}",
            fragment=_frag(node),
            hint="compare it, e.g. x > 0",
        )


def _group_target(
    node: exp.Expr, names: list[str], values: list[exp.Expr], scope: _Scope
) -> exp.Expr:
    if isinstance(node, exp.Literal) and not node.is_string and node.this.isdigit():
        index = int(node.this)
        if not 1 <= index <= len(values):
            raise ExpressionError(
                f"GROUP BY {index} is not a select position",
                fragment=_frag(node),
                hint=f"use 1 to {len(values)}",
            )
        return values[index - 1]
    if isinstance(node, exp.Column) and not node.table and node.name in names:
        is_source = any(node.name in cols for cols in scope.sources.values())
        if not is_source:
            return values[names.index(node.name)]
    if isinstance(node, exp.Literal | exp.Null | exp.Boolean):
        raise ExpressionError(
            "GROUP BY a constant is not allowed",
            fragment=_frag(node),
            hint="group by columns or expressions",
        )
    return node


def _check_grouped(node: exp.Expr, group_sql: set[str]) -> None:
    if node.sql() in group_sql or isinstance(node, AGGREGATES):
        return
    if isinstance(node, exp.Column):
        raise ExpressionError(
            f"column {node.sql()} must be in GROUP BY or inside an aggregate",
            fragment=node.sql(),
            hint="add it to GROUP BY, or wrap it: min(x), max(x), count(x)",
        )
    for child in node.iter_expressions():
        _check_grouped(child, group_sql)


def _order(
    node: exp.Expr,
    out: exp.Expr,
    output: Schema,
    *,
    items: list[exp.Expr],
    hidden_ok: bool,
    resolve: object,
) -> None:
    order = node.args.get("order")
    if order is None:
        return
    names = list(output)
    item_sql = [i.sql() for i in items]
    ordered_out = []
    for ordered in order.expressions:
        if not isinstance(ordered, exp.Ordered) or ordered.args.get("with_fill"):
            raise UnsupportedExpressionError(
                "this ORDER BY form is not allowed",
                fragment=_frag(ordered),
                hint="ORDER BY expr [ASC|DESC] [NULLS FIRST|LAST]",
            )
        desc = bool(ordered.args.get("desc"))
        nulls_first = bool(ordered.args.get("nulls_first"))
        target = ordered.this
        position: int | None = None
        if isinstance(target, exp.Literal) and not target.is_string and target.this.isdigit():
            position = int(target.this)
            if not 1 <= position <= len(names):
                raise ExpressionError(
                    f"ORDER BY {position} is not an output position",
                    fragment=_frag(ordered),
                    hint=f"use 1 to {len(names)}",
                )
        elif isinstance(target, exp.Column) and not target.table and target.name in names:
            position = names.index(target.name) + 1
        elif callable(resolve):
            checked = resolve(target)
            if checked.sql() in item_sql:
                position = item_sql.index(checked.sql()) + 1
            elif not hidden_ok:
                raise ExpressionError(
                    "with DISTINCT, ORDER BY must use output columns",
                    fragment=_frag(ordered),
                    hint="order by a selected column",
                )
            else:
                item = exp.Ordered(this=checked, desc=desc, nulls_first=nulls_first)
                ordered_out.append(item)
                continue
        else:
            raise ExpressionError(
                "after UNION, ORDER BY must name output columns or positions",
                fragment=_frag(ordered),
                hint=f"order by one of: {', '.join(names)}",
            )
        literal = exp.Literal.number(position)
        literal.meta["output"] = names[position - 1]
        ordered_out.append(exp.Ordered(this=literal, desc=desc, nulls_first=nulls_first))
    out.set("order", exp.Order(expressions=ordered_out))


def check_select(
    sql: str,
    tree: exp.Expr,
    views: Mapping[str, Mapping[str, str]],
    *,
    limits: Limits = DEFAULT_LIMITS,
) -> CheckedQuery:
    """Check a parsed SELECT against the registered views.

    Parameters
    ----------
    sql
        The original text.
    tree
        From :func:`rlm_pipeline.expr.parse.parse_sql`.
    views
        View name -> (column name -> engine-neutral type).
    limits
        Size limits.

    Returns
    -------
    CheckedQuery

    Examples
    --------
    >>> import sqlglot
    >>> q = check_select("", sqlglot.parse_one("SELECT a FROM t"), {"t": {"a": "int64"}})
    >>> q.views_used
    ('t',)
    """
    check_tree(tree, "select", limits)
    if isinstance(tree, exp.Subquery):
        tree = tree.this
    neutral = {name: {c: neutral_type(t) for c, t in cols.items()} for name, cols in views.items()}
    checked, schema, used = check_query(tree, neutral, limits)
    logger.debug("checked select %r over %s", sql[:200], sorted(used))
    return CheckedQuery(
        sql=sql, tree=checked, views=neutral, views_used=tuple(sorted(used)), schema=schema
    )
