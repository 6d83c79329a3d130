"""Stage 3b: a checked tree -> Spark SQL text.

The checked tree is rewritten so each function means in Spark what docs/sql.md
says, then generated with sqlglot's ``spark`` dialect with every identifier
back-quoted.  Only nodes the checker lets through reach this module, and each
has a rule or a tested default spelling here.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlglot import exp

from rlm_pipeline.expr.checked import Checked, CheckedQuery
from rlm_pipeline.expr.dtypes import FLOAT, INT
from rlm_pipeline.expr.rewrite import Rule, rewrite
from rlm_pipeline.expr.scalar import type_of

__all__ = ["SPARK_RULES", "generate", "pinned_rules"]

_ARITHMETIC = (exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod, exp.Neg)


def _cast(node: exp.Expr, sql_type: str) -> exp.Expr:
    return exp.Cast(this=node, to=exp.DataType.build(sql_type))


def _number(node: exp.Expr) -> exp.Expr:
    if not isinstance(node, exp.Literal) or node.is_string:
        return node
    if type_of(node) == FLOAT:
        return _cast(node, "DOUBLE")
    if type_of(node) == INT and isinstance(node.parent, _ARITHMETIC):
        return _cast(node, "BIGINT")
    return node


def _like(node: exp.Expr) -> exp.Expr:
    return exp.Escape(this=node, expression=exp.Literal.string("\\"))


def _divide(node: exp.Expr) -> exp.Expr:
    divisor = exp.Nullif(this=node.expression, expression=exp.Literal.number(0))
    return type(node)(this=node.this, expression=divisor)


def _bigint(node: exp.Expr) -> exp.Expr:
    return _cast(node, "BIGINT")


def _float_only(node: exp.Expr) -> exp.Expr:
    if type_of(node) == INT:
        return exp.Paren(this=node.this)
    return _cast(node, "DOUBLE")


def _round(node: exp.Expr) -> exp.Expr:
    if type_of(node) == INT:
        return exp.Paren(this=node.this)
    return node


def pinned_rules() -> dict[type[exp.Expr], Rule]:
    """Rewrites every SQL target needs (division by zero, literal types, LIKE escape).

    Examples
    --------
    >>> sorted(c.__name__ for c in pinned_rules())[:3]
    ['Ceil', 'Div', 'Escape']
    """
    return {
        exp.Literal: _number,
        exp.Like: _like,
        exp.Div: _divide,
        exp.Mod: _divide,
        exp.Floor: _float_only,
        exp.Ceil: _float_only,
        exp.Round: _round,
        exp.Escape: lambda n: n,
    }


def _concat(node: exp.Expr) -> exp.Expr:
    # pinned: concat() skips NULLs (PostgreSQL); Spark's CONCAT would return NULL.
    return exp.Anonymous(this="CONCAT_WS", expressions=[exp.Literal.string(""), *node.expressions])


def _dpipe(node: exp.Expr) -> exp.Expr:
    return exp.Anonymous(this="CONCAT", expressions=[node.this, node.expression])


#: Spark-specific spellings on top of :func:`pinned_rules`.
SPARK_RULES: dict[type[exp.Expr], Rule] = {
    **pinned_rules(),
    exp.Concat: _concat,
    exp.DPipe: _dpipe,
    exp.Length: _bigint,
    exp.StrPosition: _bigint,
    exp.Extract: _bigint,
}


def _views(mapping: Mapping[str, str]) -> Rule:
    def rename(node: exp.Expr) -> exp.Expr:
        view = node.meta.get("view")
        if not isinstance(node, exp.Table) or view is None or view not in mapping:
            return node
        out = node.copy()
        out.set("this", exp.to_identifier(mapping[str(view)], quoted=True))
        return out

    return rename


def generate(checked: Checked | CheckedQuery, view_names: Mapping[str, str] | None = None) -> str:
    """Spark SQL for a checked expression or query.

    Parameters
    ----------
    checked
        From ``compile_where`` / ``compile_key`` / ``compile_select``.
    view_names
        Registered view -> Spark temp view name (queries only).

    Examples
    --------
    >>> from rlm_pipeline.expr import compile_where
    >>> generate(compile_where("a / 2 > 1.5", {"a": "int64"}))
    '`a` / NULLIF(CAST(2 AS BIGINT), 0) > CAST(1.5 AS DOUBLE)'
    """
    rules = dict(SPARK_RULES)
    if isinstance(checked, CheckedQuery) and view_names:
        rules[exp.Table] = _views(view_names)
    tree = rewrite(checked.tree, rules)
    return tree.sql(dialect="spark", identify=True)
