"""A bottom-up tree rewriter shared by the SQL generators."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from sqlglot import exp

__all__ = ["Rule", "rewrite"]

Rule = Callable[[exp.Expr], exp.Expr]


def rewrite(tree: exp.Expr, rules: Mapping[type[exp.Expr], Rule]) -> exp.Expr:
    """Apply ``rules`` (node class -> function) to a copy of ``tree``, children first.

    Each rule sees a node whose children were already rewritten and returns the
    node to put in its place; nodes a rule creates are not rewritten again.

    Examples
    --------
    >>> import sqlglot
    >>> rules = {exp.Lower: lambda n: exp.Upper(this=n.this)}
    >>> rewrite(sqlglot.parse_one("lower(lower(a))"), rules).sql()
    'UPPER(UPPER(a))'
    """
    root = tree.copy()
    holder = exp.Paren(this=root)
    for node in reversed(list(root.dfs())):
        rule = rules.get(type(node))
        if rule is None:
            continue
        parent, key, index = node.parent, node.arg_key, node.index
        replacement = rule(node)
        if replacement is not node and parent is not None and key:
            for name, value in node.meta.items():
                replacement.meta.setdefault(name, value)
            parent.set(key, replacement, index)
    result: exp.Expr = holder.this
    result.pop()
    return result
