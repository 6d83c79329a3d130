"""Bounded text renderings of views and rows for the root model.

Every tool result the root model sees goes through these helpers, so none can
carry more than :data:`MAX_RESULT_CHARS` characters however big the view is.
Rows are rendered as one JSON object per line, which models read well and
which is unambiguous to parse.

Examples
--------
>>> import pyarrow as pa
>>> print(rows_as_json_lines(pa.table({"n": [15]})))
{"n": 15}
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa

__all__ = [
    "MAX_CELL_CHARS",
    "MAX_RESULT_CHARS",
    "bound",
    "cut",
    "json_line",
    "jsonable",
    "rows_as_json_lines",
    "schema_line",
]

#: Upper bound of any tool result text, in characters.
MAX_RESULT_CHARS = 2000
#: Each cell shown to the model is cut to this many characters.
MAX_CELL_CHARS = 200


def cut(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, marked with an ellipsis when cut.

    Examples
    --------
    >>> cut("abcdef", 4)
    'abc…'
    """
    if len(text) <= limit:
        return text
    return text[: max(0, limit - 1)] + "…"


def bound(text: str, limit: int = MAX_RESULT_CHARS) -> str:
    """``text`` cut on a line boundary to at most ``limit`` characters.

    Examples
    --------
    >>> bound("a\\nb\\nc", 3)
    'a\\n…'
    """
    if len(text) <= limit:
        return text
    head = text[: limit - 2]
    if "\n" in head:
        head = head[: head.rindex("\n")]
    return head + "\n…"


def jsonable(value: Any) -> Any:
    """``value`` converted to something :func:`json.dumps` accepts.

    Examples
    --------
    >>> jsonable(dt.date(2023, 3, 1))
    '2023-03-01'
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, Iterable):
        return [jsonable(v) for v in value]
    return str(value)


def _cell(value: Any, cell_chars: int) -> Any:
    value = jsonable(value)
    if isinstance(value, str):
        return cut(value, cell_chars)
    if isinstance(value, list | dict):
        text = json.dumps(value, ensure_ascii=False)
        return value if len(text) <= cell_chars else cut(text, cell_chars)
    return value


_LINE_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def json_line(value: Any) -> str:
    """``value`` as one line of JSON: non-ASCII kept, but no character any reader takes
    for a line break (U+0085, U+2028, U+2029 are escaped).

    Examples
    --------
    >>> json_line({"t": "é"}), len(json_line({"t": chr(0x2028)}).splitlines())
    ('{"t": "é"}', 1)
    """
    return json.dumps(value, ensure_ascii=False).translate(_LINE_BREAKS)


def rows_as_json_lines(
    table: pa.Table, *, cell_chars: int = MAX_CELL_CHARS, limit: int = MAX_RESULT_CHARS
) -> str:
    """The rows of ``table`` as JSON lines, each cell cut, the whole bounded.

    Examples
    --------
    >>> print(rows_as_json_lines(pa.table({"a": [1, 2], "b": ["x", None]})))
    {"a": 1, "b": "x"}
    {"a": 2, "b": null}
    """
    lines: list[str] = []
    size = 0
    for row in table.to_pylist():
        line = json_line({k: _cell(v, cell_chars) for k, v in row.items()})
        size += len(line) + 1
        if size > limit:
            lines.append(f"… ({table.num_rows - len(lines)} more rows not shown)")
            break
        lines.append(line)
    return "\n".join(lines)


def schema_line(schema: Mapping[str, str], *, limit: int = 600) -> str:
    """Columns and types as one line, e.g. ``user_id (int64), question (string)``.

    Examples
    --------
    >>> schema_line({"user_id": "int64", "question": "string"})
    'user_id (int64), question (string)'
    """
    return cut(", ".join(f"{name} ({dtype})" for name, dtype in schema.items()), limit)
