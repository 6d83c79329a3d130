"""The results of checking: SQL that passed every check, ready to compile."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from sqlglot import exp

__all__ = ["Checked", "CheckedQuery", "ExprKind"]

ExprKind = Literal["where", "key"]


@dataclass(frozen=True, eq=False)
class Checked:
    """A checked scalar expression (a WHERE condition or a partition key).

    Build it with :func:`rlm_pipeline.expr.compile_where` or
    :func:`rlm_pipeline.expr.compile_key`; never by hand.

    Attributes
    ----------
    sql
        The text as written.
    kind
        ``"where"`` (a boolean condition) or ``"key"`` (any scalar).
    tree
        The checked and normalised sqlglot tree (semantics pinned, see docs/sql.md).
    schema
        The schema it was checked against: column name -> engine-neutral type.
    columns
        The columns it reads, in order of first use.
    dtype
        The engine-neutral type of its result (``"bool"`` for a WHERE condition).
    """

    sql: str
    kind: ExprKind
    tree: exp.Expr
    schema: Mapping[str, str]
    columns: tuple[str, ...]
    dtype: str


@dataclass(frozen=True, eq=False)
class CheckedQuery:
    """A checked read-only SELECT over named views.

    Build it with :func:`rlm_pipeline.expr.compile_select`; never by hand.

    Attributes
    ----------
    sql
        The text as written.
    tree
        The checked and normalised sqlglot tree (``*`` expanded, output columns
        aliased, semantics pinned).
    views
        The view schemas it was checked against: view -> column -> type.
    views_used
        The registered views it reads, sorted.
    schema
        The output schema: column name -> engine-neutral type, in output order.
    """

    sql: str
    tree: exp.Query
    views: Mapping[str, Mapping[str, str]]
    views_used: tuple[str, ...]
    schema: Mapping[str, str]

    @property
    def columns(self) -> tuple[str, ...]:
        """The output column names, in order."""
        return tuple(self.schema)
