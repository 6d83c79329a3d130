"""Engine-neutral type names and the rules that combine them."""

from __future__ import annotations

__all__ = [
    "BOOL",
    "DATE",
    "FLOAT",
    "INT",
    "NULL",
    "NUMERIC",
    "ORDERABLE",
    "STRING",
    "TIMESTAMP",
    "unify",
]

STRING = "string"
INT = "int64"
FLOAT = "float64"
BOOL = "bool"
DATE = "date"
TIMESTAMP = "timestamp"
NULL = "null"

NUMERIC = frozenset({INT, FLOAT})
ORDERABLE = frozenset({STRING, INT, FLOAT, DATE, TIMESTAMP, BOOL})


def unify(left: str, right: str) -> str | None:
    """The type both values can be compared or combined as, or ``None``.

    Examples
    --------
    >>> unify("int64", "float64"), unify("null", "date"), unify("string", "int64")
    ('float64', 'date', None)
    """
    if left == NULL:
        return right
    if right == NULL or left == right:
        return left
    if left in NUMERIC and right in NUMERIC:
        return FLOAT
    return None
