"""SQL text for identifiers and literals, built by sqlglot (never by string pasting).

For SQL the library writes itself (the simulator's scripted plans, examples):
what the model writes is parsed and checked by :mod:`rlm_pipeline.expr.check`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlglot import exp

__all__ = ["ident", "sql_literal"]


def ident(name: str) -> str:
    """``name`` as an SQL identifier, quoted only when needed.

    Examples
    --------
    >>> ident("user_id"), ident("my col"), ident('we"ird')
    ('user_id', '"my col"', '"we""ird"')
    """
    return exp.to_identifier(name).sql()


def sql_literal(value: Any) -> str:
    """A Python scalar as an SQL literal.

    Examples
    --------
    >>> sql_literal(12345), sql_literal("O'Brien"), sql_literal(None), sql_literal(True)
    ('12345', "'O''Brien'", 'NULL', 'TRUE')
    >>> sql_literal(dt.date(2024, 1, 2))
    "CAST('2024-01-02' AS DATE)"
    """
    if isinstance(value, dt.datetime):
        return exp.cast(exp.Literal.string(value.isoformat(sep=" ")), "TIMESTAMP").sql()
    if isinstance(value, dt.date):
        return exp.cast(exp.Literal.string(value.isoformat()), "DATE").sql()
    return exp.convert(value).sql()
