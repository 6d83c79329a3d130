"""Size limits applied to model-written SQL before anything is compiled."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_IN_ITEMS",
    "DEFAULT_MAX_NODES",
    "DEFAULT_MAX_SQL_CHARS",
    "Limits",
]

DEFAULT_MAX_SQL_CHARS = 20_000
DEFAULT_MAX_IN_ITEMS = 1_000
DEFAULT_MAX_DEPTH = 64
DEFAULT_MAX_NODES = 5_000


@dataclass(frozen=True)
class Limits:
    """Bounds on the size of one SQL text.

    Parameters
    ----------
    max_sql_chars
        Longest SQL text accepted, in characters.
    max_in_items
        Most items in one ``IN (...)`` list.
    max_depth
        Deepest nesting of the syntax tree.
    max_nodes
        Most nodes in the syntax tree.

    Examples
    --------
    >>> Limits(max_in_items=10).max_in_items
    10
    """

    max_sql_chars: int = DEFAULT_MAX_SQL_CHARS
    max_in_items: int = DEFAULT_MAX_IN_ITEMS
    max_depth: int = DEFAULT_MAX_DEPTH
    max_nodes: int = DEFAULT_MAX_NODES


DEFAULT_LIMITS = Limits()
