"""Stage 1: SQL text -> one sqlglot tree (default dialect, PostgreSQL-flavoured).

Only the shape of the text is checked here: its length, that it tokenizes and
parses, that it is exactly one statement, and that it carries no comments (a
comment can hide a second statement from a reader).  What the tree may contain
is :mod:`rlm_pipeline.expr.check`'s business.
"""

from __future__ import annotations

import logging
from typing import Literal

import sqlglot
from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokenizer_core import TokenType

from rlm_pipeline.errors import ExpressionError
from rlm_pipeline.expr.limits import DEFAULT_LIMITS, Limits

__all__ = ["InputKind", "parse_sql"]

logger = logging.getLogger(__name__)

InputKind = Literal["where", "key", "select"]

_WHAT = {
    "where": "a boolean condition such as: status = 'open' AND amount > 10",
    "key": "a column or scalar expression such as: lower(country)",
    "select": "one read-only query such as: SELECT user_id, count(*) AS n FROM context GROUP BY user_id",
}


def parse_sql(sql: str, kind: InputKind, *, limits: Limits = DEFAULT_LIMITS) -> exp.Expr:
    """Parse one SQL text into a sqlglot tree, refusing anything but one statement.

    Parameters
    ----------
    sql
        The text written by the model or the user.
    kind
        What the text must be: ``"where"``, ``"key"`` or ``"select"``; only used
        to word the hints here.
    limits
        Size limits (``max_sql_chars`` is enforced here).

    Returns
    -------
    sqlglot.exp.Expr
        The parsed tree, not yet checked.

    Raises
    ------
    ExpressionError
        Empty or too long text, comments, a tokenizer or parser error, or more
        than one statement.

    Examples
    --------
    >>> parse_sql("amount > 10", "where").sql()
    'amount > 10'
    """
    if not isinstance(sql, str):
        raise ExpressionError(f"expected SQL text, got {type(sql).__name__}", hint=_WHAT[kind])
    text = sql.strip()
    if not text:
        raise ExpressionError("empty SQL", hint=f"write {_WHAT[kind]}")
    if len(text) > limits.max_sql_chars:
        raise ExpressionError(
            f"SQL is {len(text)} characters long; the limit is {limits.max_sql_chars}",
            fragment=text[:80],
            hint="split the work into smaller steps (filter first, then query the new view)",
        )
    try:
        tokens = Dialect.get_or_raise(None).tokenize(text)
    except TokenError as exc:
        raise ExpressionError(
            f"cannot read the SQL: {exc}",
            fragment=text[:80],
            hint="check quotes: strings use single quotes ('it''s'), identifiers double quotes",
        ) from exc
    for token in tokens:
        if token.comments:
            raise ExpressionError(
                "comments are not allowed",
                fragment=token.comments[0].strip()[:80],
                hint="remove -- and /* */ comments",
            )
    depth = deepest = 0
    for token in tokens:
        if token.token_type == TokenType.L_PAREN:
            depth += 1
            deepest = max(deepest, depth)
        elif token.token_type == TokenType.R_PAREN:
            depth -= 1
    if deepest > limits.max_depth // 2:
        raise ExpressionError(
            f"expression nested deeper than {limits.max_depth // 2} parentheses",
            fragment=text[:80],
            hint="simplify: use IN (...) instead of nested conditions, or filter in steps",
        )
    semicolons = [t for t in tokens if t.token_type == TokenType.SEMICOLON]
    if semicolons and not (len(semicolons) == 1 and tokens[-1] is semicolons[0]):
        raise ExpressionError(
            "only one statement is allowed",
            fragment=text[semicolons[0].start :][:80],
            hint=f"send {_WHAT[kind]}, without ';'",
        )
    try:
        statements = sqlglot.parse(text)
    except ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        fragment = (str(first.get("start_context", "")) + str(first.get("highlight", ""))).strip()
        description = str(first.get("description", exc)).split(". Line")[0]
        raise ExpressionError(
            f"SQL syntax error: {description}",
            fragment=fragment or text[:80],
            hint=f"write {_WHAT[kind]}",
        ) from exc
    except TokenError as exc:
        raise ExpressionError(
            "cannot parse the SQL", fragment=text[:80], hint=f"write {_WHAT[kind]}"
        ) from exc
    except RecursionError as exc:
        raise ExpressionError(
            "expression nested too deeply to parse",
            fragment=text[:80],
            hint="simplify: use IN (...) instead of long chains, or filter in steps",
        ) from exc
    trees = [s for s in statements if s is not None]
    if len(trees) != 1:
        raise ExpressionError(
            f"expected exactly one statement, got {len(trees)}",
            fragment=text[:80],
            hint=f"send {_WHAT[kind]}",
        )
    logger.debug("parsed %s: %s", kind, text[:200])
    return trees[0]
