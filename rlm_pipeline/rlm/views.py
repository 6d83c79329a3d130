"""What the RLM's tool handlers and ``recurse`` share: outcomes, view descriptions, checks.

A small leaf of :mod:`rlm_pipeline.rlm`: it imports no other tool module, so
``tools`` and ``recurse`` both build on it without importing each other.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rlm_pipeline.engines.views import check_columns as engine_check_columns
from rlm_pipeline.errors import InputError, ToolError
from rlm_pipeline.llm.usage import Usage
from rlm_pipeline.rlm.render import MAX_RESULT_CHARS, bound, cut, rows_as_json_lines, schema_line
from rlm_pipeline.rlm.scope import Scope

__all__ = [
    "INTERNAL_PREFIX",
    "MAX_RECURSE_PARTITIONS",
    "ToolOutcome",
    "check_columns",
    "check_view",
    "check_view_name",
    "describe_view",
    "on_engine",
    "visible_views",
]

#: Views whose name starts with this are the library's scratch views, hidden from the model.
INTERNAL_PREFIX = "_rlm"
#: ``recurse`` answers every partition, up to this many; beyond, a tool error before any
#: sub-call (see :mod:`rlm_pipeline.rlm.recurse`).
MAX_RECURSE_PARTITIONS = 64
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,62}$")


@dataclass
class ToolOutcome:
    """What one tool call produced: the text for the model plus figures for the trace."""

    text: str
    error: str | None = None
    rows_in: int | None = None
    rows_out: int | None = None
    sub_calls: int = 0
    #: This call's own spend when the tool counts it (its fan-out's requests); else the
    #: trace takes the run meter's difference over the call (other work may share it).
    usage: Usage | None = None
    final: bool = False
    value: Any = None
    explanation: str | None = None


async def on_engine(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a (blocking) engine call in a worker thread."""
    return await asyncio.to_thread(func, *args, **kwargs)


def check_view_name(name: str) -> None:
    """Refuse names that are not plain identifiers, ``context``, or internal ones.

    Examples
    --------
    >>> check_view_name("by_user")
    >>> check_view_name("context")
    Traceback (most recent call last):
    ...
    rlm_pipeline.errors.ToolError: the view name 'context' is reserved for the input table; pick another
    """
    if not _NAME.match(name):
        msg = f"invalid view name {cut(name, 80)!r}"
        raise ToolError(f"{msg}; use letters, digits and _ (start with a letter, ≤ 63 chars)")
    if name.lower() == "context":
        raise ToolError("the view name 'context' is reserved for the input table; pick another")


def visible_views(scope: Scope) -> list[str]:
    """Views the model may use (internal scratch views hidden)."""
    return [v for v in scope.engine.views() if not v.startswith(INTERNAL_PREFIX)]


def check_view(scope: Scope, view: str) -> None:
    """Raise :class:`ToolError` naming the known views if ``view`` does not exist."""
    views = visible_views(scope)
    if view not in views:
        known = ", ".join(views)
        raise ToolError(f"unknown view {cut(view, 80)!r}; views are: {cut(known, 500)}")


def check_columns(schema: dict[str, str], columns: list[str]) -> None:
    """Raise :class:`ToolError` listing the known columns if one is missing.

    The engines' check (:func:`rlm_pipeline.engines.views.check_columns`),
    its error turned into a tool error the model can correct.

    Examples
    --------
    >>> check_columns({"a": "Int64"}, ["a"])
    >>> check_columns({"a": "Int64"}, ["b"])
    Traceback (most recent call last):
    ...
    rlm_pipeline.errors.ToolError: unknown columns ['b']; columns: a
    """
    try:
        engine_check_columns(columns, schema)
    except InputError as exc:
        raise ToolError(str(exc)) from None


async def describe_view(scope: Scope, name: str, rows: int, *, preview: int) -> str:
    """Schema, row count and the first rows of a view, bounded."""
    schema = await on_engine(scope.engine.schema, name)
    head = f"view `{name}`: {rows} rows\ncolumns: {schema_line(schema)}"
    if rows == 0 or preview == 0:
        return head
    table = await on_engine(scope.engine.head, name, min(preview, rows), None)
    return bound(head + "\n" + rows_as_json_lines(table, limit=MAX_RESULT_CHARS - len(head) - 5))
