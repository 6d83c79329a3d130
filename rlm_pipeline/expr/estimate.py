"""What a checked query will cost, found before it runs: join sizes and view scans.

Valid SQL can still be expensive.  Two static or nearly static checks run
before an engine computes a query the model wrote:

- :func:`plan_scans` counts how many times the query reads registered views
  once every CTE (and every view, by its own weight) is expanded: a chain of
  CTEs that each read the previous one twice reads ``context`` 2^30 times in
  30 lines, and the plans of both engines grow with that number.
- :func:`join_probes` gives, for each join (innermost queries first, joins in
  FROM order), one small aggregate query whose single value is the exact row
  count of that join: each side is grouped by its join keys (one aggregate per
  side, computed by the engine) and the key counts are multiplied and summed,
  ``SUM(COALESCE(l.n, 1) * COALESCE(r.n, 1))`` over ``l [side] JOIN r`` on the
  keys -- an inner join counts matched pairs, an outer one adds its unmatched
  rows once.  A probe's left side is the query's FROM with the joins before
  this one, so a join is probed only after the joins it builds on have been
  found small enough.  WHERE conditions on one side only are applied to that
  side when every join of the SELECT is an inner join (as the engines push
  them down); other conditions are left out (the estimate is then an upper
  bound).

Examples
--------
>>> from rlm_pipeline.expr import compile_select
>>> views = {"t": {"k": "int64", "v": "string"}}
>>> q = compile_select("SELECT a.v FROM t a JOIN t b ON a.k = b.k WHERE b.v = 'x'", views)
>>> [p.joined for p in join_probes(q)]
['t']
>>> plan_scans(q, {"t": 1})
2
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from sqlglot import exp

from rlm_pipeline.expr.check_query import REF_SEP
from rlm_pipeline.expr.checked import CheckedQuery
from rlm_pipeline.expr.limits import Limits

__all__ = ["PROBE_LIMITS", "JoinProbe", "join_keys", "join_probes", "plan_scans"]

#: Size limits for probe queries: built from the checked query, they may be longer.
PROBE_LIMITS = Limits(max_sql_chars=400_000, max_depth=256, max_nodes=100_000)


@dataclass(frozen=True)
class JoinProbe:
    """One join of a query and the aggregate query that counts its output rows.

    Attributes
    ----------
    joined
        The view (or CTE / subquery alias) the join adds.
    on
        The join condition, as SQL (for messages).
    sql
        ``SELECT SUM(...) AS "rows" FROM (left keys) l JOIN (right keys) r ON ...``:
        one row, one column, the exact number of rows of the join (NULL: none).
    """

    joined: str
    on: str
    sql: str


def _aliases(node: exp.Expr) -> set[str]:
    out = set()
    for column in node.find_all(exp.Column):
        ref = column.meta.get("ref")
        out.add(str(ref).split(REF_SEP)[0] if ref is not None else column.table)
    return out


def _post_order(node: exp.Expr) -> Iterator[exp.Select]:
    """Every SELECT under ``node``, each after the ones it reads (its CTEs, subqueries)."""
    with_ = node.args.get("with_")
    if with_ is not None:
        for cte in with_.expressions:
            yield from _post_order(cte.this)
    for key, value in node.args.items():
        if key == "with_":
            continue
        for child in value if isinstance(value, list) else [value]:
            if isinstance(child, exp.Expr):
                yield from _post_order(child)
    if isinstance(node, exp.Select):
        yield node


def _visible_ctes(node: exp.Expr) -> list[exp.CTE]:
    """The CTEs a SELECT can read: the WITH clauses of it and its ancestors, outermost first."""
    chain = []
    current: exp.Expr | None = node
    while current is not None:
        with_ = current.args.get("with_")
        if with_ is not None:
            chain.append(list(with_.expressions))
        current = current.parent
    return [cte for ctes in reversed(chain) for cte in ctes]


def join_keys(join: exp.Expr) -> tuple[list[exp.Expr], list[exp.Expr]]:
    """(left key expressions, right key expressions) of a checked equi-join.

    Each equality of the ON clause is one key pair; its side that reads the joined
    view's alias is the right key.  The one splitter of a join condition: the join
    probes and the Polars planner both use it.

    Examples
    --------
    >>> from rlm_pipeline.expr import compile_select
    >>> q = compile_select("SELECT a.v FROM t a JOIN t b ON b.k = a.k AND a.v = b.v",
    ...                    {"t": {"k": "int64", "v": "string"}})
    >>> left, right = join_keys(q.tree.args["joins"][0])
    >>> [_aliases(e) for e in left], [_aliases(e) for e in right]
    ([{'a'}, {'a'}], [{'b'}, {'b'}])
    """
    alias = str(join.meta["alias"])
    on = join.args["on"]
    parts = list(on.flatten()) if isinstance(on, exp.And) else [on]
    left: list[exp.Expr] = []
    right: list[exp.Expr] = []
    for part in parts:
        eq = part.unnest() if isinstance(part, exp.Paren) else part
        a, b = eq.this, eq.expression
        if _aliases(a) == {alias}:
            a, b = b, a
        left.append(a)
        right.append(b)
    return left, right


def _conjuncts(node: exp.Expr | None) -> list[exp.Expr]:
    if node is None:
        return []
    return list(node.flatten()) if isinstance(node, exp.And) else [node]


def _grouped(
    source: exp.Expr, joins: list[exp.Expr], keys: list[exp.Expr], where: list[exp.Expr]
) -> exp.Select:
    items = [
        exp.Alias(this=k.copy(), alias=exp.to_identifier(f"k{i}", quoted=True))
        for i, k in enumerate(keys)
    ]
    count = exp.Alias(this=exp.Count(this=exp.Star()), alias=exp.to_identifier("n", quoted=True))
    select = exp.Select(expressions=[*items, count], from_=exp.From(this=source.copy()))
    if joins:
        select.set("joins", [j.copy() for j in joins])
    if where:
        select.set("where", exp.Where(this=exp.and_(*[w.copy() for w in where])))
    select.set("group", exp.Group(expressions=[k.copy() for k in keys]))
    return select


def _factor(side: str) -> exp.Expr:
    rows = exp.Coalesce(
        this=exp.column("n", side, quoted=True), expressions=[exp.Literal.number(1)]
    )
    return exp.Cast(this=rows, to=exp.DataType.build("DOUBLE"))


def join_probes(checked: CheckedQuery) -> list[JoinProbe]:
    """The probe queries of every join of ``checked``, in the order to run them.

    Each probe reads only registered views and the query's own CTEs; compile it
    with ``compile_select(probe.sql, views, limits=PROBE_LIMITS)``.

    Examples
    --------
    >>> from rlm_pipeline.expr import compile_select
    >>> q = compile_select("SELECT count(*) AS n FROM t a JOIN t b ON a.k = b.k",
    ...                    {"t": {"k": "int64"}})
    >>> print(join_probes(q)[0].sql[:60])
    SELECT SUM(CAST(COALESCE("l"."n", 1) AS DOUBLE) * CAST(COALE
    """
    probes: list[JoinProbe] = []
    for select in _post_order(checked.tree):
        joins = list(select.args.get("joins") or [])
        if not joins:
            continue
        source = select.args["from_"].this
        inner = all(not (j.args.get("side") or "") for j in joins)
        where = _conjuncts(select.args["where"].this) if select.args.get("where") else []
        pushable = [w for w in where if inner and w.find(exp.Query) is None]
        ctes = _visible_ctes(select)
        left_aliases = {source.alias}
        for index, join in enumerate(joins):
            alias = str(join.meta["alias"])
            lkeys, rkeys = join_keys(join)
            lwhere = [w for w in pushable if _aliases(w) and _aliases(w) <= left_aliases]
            rwhere = [w for w in pushable if _aliases(w) == {alias}]
            left = _grouped(source, joins[:index], lkeys, lwhere)
            right = _grouped(join.this, [], rkeys, rwhere)
            on = exp.and_(
                *[
                    exp.EQ(
                        this=exp.column(f"k{i}", "l", quoted=True),
                        expression=exp.column(f"k{i}", "r", quoted=True),
                    )
                    for i in range(len(lkeys))
                ]
            )
            total = exp.Sum(this=exp.Mul(this=_factor("l"), expression=_factor("r")))
            probe = exp.Select(
                expressions=[exp.Alias(this=total, alias=exp.to_identifier("rows", quoted=True))],
                from_=exp.From(
                    this=exp.Subquery(
                        this=left, alias=exp.TableAlias(this=exp.to_identifier("l", quoted=True))
                    )
                ),
            )
            joined = exp.Join(
                this=exp.Subquery(
                    this=right, alias=exp.TableAlias(this=exp.to_identifier("r", quoted=True))
                ),
                on=on,
            )
            side = join.args.get("side")
            if side:
                joined.set("side", side)
            probe.set("joins", [joined])
            if ctes:
                probe.set("with_", exp.With(expressions=[c.copy() for c in ctes]))
            name = join.this.name if isinstance(join.this, exp.Table) else alias
            probes.append(JoinProbe(joined=name, on=join.args["on"].sql(), sql=probe.sql()))
            left_aliases.add(alias)
    return probes


def plan_scans(checked: CheckedQuery, weights: Mapping[str, int]) -> int:
    """How many times ``checked`` reads registered views once CTEs are expanded.

    ``weights`` gives each view's own count (1 for a view that is a table or a
    materialised result; a view defined by a query counts its own scans).

    Examples
    --------
    >>> from rlm_pipeline.expr import compile_select
    >>> sql = ("WITH a AS (SELECT x FROM t UNION ALL SELECT x FROM t), "
    ...        "b AS (SELECT x FROM a UNION ALL SELECT x FROM a) SELECT x FROM b")
    >>> plan_scans(compile_select(sql, {"t": {"x": "int64"}}), {"t": 1})
    4
    """
    return _scans(checked.tree, weights, {})


def _scans(node: exp.Expr, weights: Mapping[str, int], ctes: Mapping[str, int]) -> int:
    scope = dict(ctes)
    with_ = node.args.get("with_")
    if with_ is not None:
        for cte in with_.expressions:
            scope[cte.alias] = _scans(cte.this, weights, scope)
    if isinstance(node, exp.Table):
        if "cte" in node.meta:
            return scope.get(str(node.meta["cte"]), 1)
        return max(1, int(weights.get(str(node.meta.get("view", node.name)), 1)))
    total = 0
    for key, value in node.args.items():
        if key == "with_":
            continue
        for child in value if isinstance(value, list) else [value]:
            if isinstance(child, exp.Expr):
                total += _scans(child, weights, scope)
    return total
