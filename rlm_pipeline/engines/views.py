"""A bounded registry of named views, with names checked before use.

View names come from the model, so they are checked like any other untrusted
input: identifier-like, bounded in length and number, and the host's
``context`` view cannot be overwritten by a model operation.
"""

from __future__ import annotations

import re
from typing import Generic, TypeVar

from rlm_pipeline.errors import InputError

__all__ = [
    "CONTEXT_VIEW",
    "MAX_VIEWS",
    "MAX_VIEW_NAME_CHARS",
    "ViewRegistry",
    "check_columns",
    "check_view_name",
]

#: The view holding the user's table.
CONTEXT_VIEW = "context"
#: Most views one engine holds (host and model views together).
MAX_VIEWS = 256
MAX_VIEW_NAME_CHARS = 64

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

T = TypeVar("T")


def check_view_name(name: object) -> str:
    """Return ``name`` if it is a valid view name, else raise :class:`InputError`.

    Examples
    --------
    >>> check_view_name("billing_2024")
    'billing_2024'
    >>> check_view_name("x; DROP TABLE t")
    Traceback (most recent call last):
    ...
    rlm_pipeline.errors.InputError: invalid view name 'x; DROP TABLE t': use letters, digits and _ (not first), at most 64 characters
    """
    if (
        not isinstance(name, str)
        or len(name) > MAX_VIEW_NAME_CHARS
        or _NAME.fullmatch(name) is None
    ):
        shown = repr(name)[:80]
        msg = (
            f"invalid view name {shown}: use letters, digits and _ (not first), "
            f"at most {MAX_VIEW_NAME_CHARS} characters"
        )
        raise InputError(msg)
    return name


def check_columns(columns: object, schema: dict[str, str], view: str | None = None) -> list[str]:
    """Return ``columns`` if it is a list of columns of ``view``, else raise :class:`InputError`.

    The one column check of the package (the RLM tools turn its error into a
    :class:`~rlm_pipeline.errors.ToolError`).  The message is bounded: at most
    10 unknown names of at most 80 characters each, and the known columns cut
    to 500 characters.

    Examples
    --------
    >>> check_columns(["b"], {"a": "int64"}, "t")
    Traceback (most recent call last):
    ...
    rlm_pipeline.errors.InputError: unknown columns ['b'] in view 't'; columns: a
    >>> check_columns(["a"], {"a": "int64"})
    ['a']
    """
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        msg = f"columns must be a list of column names, got {str(columns)[:100]}"
        raise InputError(msg)
    unknown = [_cut(c, 80) for c in columns if c not in schema]
    if unknown:
        where = "" if view is None else f" in view {view!r}"
        msg = f"unknown columns {unknown[:10]}{where}; columns: {_cut(', '.join(schema), 500)}"
        raise InputError(msg)
    return columns


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ViewRegistry(Generic[T]):
    """Name -> plan, in registration order.

    Examples
    --------
    >>> reg: ViewRegistry[int] = ViewRegistry()
    >>> reg.put("context", 1, host=True)
    >>> reg.put("context", 2)
    Traceback (most recent call last):
    ...
    rlm_pipeline.errors.InputError: view 'context' holds the input table and cannot be replaced; choose another name
    """

    def __init__(self, max_views: int = MAX_VIEWS) -> None:
        self._views: dict[str, T] = {}
        self._max_views = max_views

    def names(self) -> list[str]:
        """Registered names, in registration order."""
        return list(self._views)

    def get(self, name: str) -> T:
        """The plan registered as ``name``; :class:`InputError` listing the known views if none."""
        try:
            return self._views[name]
        except (KeyError, TypeError):
            known = ", ".join(self._views) or "(none)"
            msg = f"unknown view {str(name)[:80]!r}; known views: {known}"
            raise InputError(msg) from None

    def __contains__(self, name: object) -> bool:
        return name in self._views

    def check_name(self, name: str, *, host: bool = False, replace: bool = True) -> None:
        """Raise :class:`InputError` if :meth:`put` would refuse ``name``; call before work."""
        check_view_name(name)
        existing = name in self._views
        for other in self._views:
            if other != name and other.lower() == name.lower():
                msg = f"view name {name!r} differs from view {other!r} only in case"
                raise InputError(msg)
        if name.lower() == CONTEXT_VIEW and not host:
            msg = (
                f"view {CONTEXT_VIEW!r} holds the input table and cannot be replaced; "
                "choose another name"
            )
            raise InputError(msg)
        if existing and not replace:
            msg = f"view {name!r} exists already"
            raise InputError(msg)
        if not existing and len(self._views) >= self._max_views:
            msg = f"too many views (limit {self._max_views}); reuse a name to replace a view"
            raise InputError(msg)

    def put(self, name: str, plan: T, *, host: bool = False, replace: bool = True) -> None:
        """Register ``plan`` as ``name``.

        Parameters
        ----------
        host
            The caller is the host, not the model: it may create ``context``.
        replace
            An existing view of that name may be replaced (never ``context``
            unless ``host``).
        """
        self.check_name(name, host=host, replace=replace)
        self._views.pop(name, None)
        self._views[name] = plan

    def pop(self, name: str) -> T:
        """Remove ``name`` and return its plan."""
        plan = self.get(name)
        del self._views[name]
        return plan

    def clear(self) -> None:
        """Forget every view."""
        self._views.clear()
