"""Keep results bounded and uniform: cut long cells, normalise Arrow types."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["DEFAULT_CELL_CHARS", "normalize_arrow", "truncate_cells"]

#: Characters kept per text cell in ``head`` results.
DEFAULT_CELL_CHARS = 200
_ELLIPSIS = "…"


def normalize_arrow(table: pa.Table) -> pa.Table:
    """Cast ``large_string``/``string_view`` to ``string`` and ``large_binary``/``binary_view``
    to ``binary``, so both engines hand out the same Arrow types.

    Examples
    --------
    >>> t = pa.table({"s": pa.array(["a"], pa.large_string())})
    >>> normalize_arrow(t).schema.field("s").type
    DataType(string)
    """
    fields = []
    changed = False
    for field in table.schema:
        typ = field.type
        if pa.types.is_large_string(typ) or pa.types.is_string_view(typ):
            typ = pa.string()
        elif pa.types.is_large_binary(typ) or pa.types.is_binary_view(typ):
            typ = pa.binary()
        changed = changed or typ != field.type
        fields.append(pa.field(field.name, typ, field.nullable))
    return table.cast(pa.schema(fields)) if changed else table


def truncate_cells(table: pa.Table, limit: int = DEFAULT_CELL_CHARS) -> pa.Table:
    """Cut every text cell to at most ``limit`` characters (``…`` marks a cut).

    Nested and binary columns are rendered as text first, so no cell of the
    result is longer than ``limit`` characters when shown.

    Examples
    --------
    >>> t = truncate_cells(pa.table({"s": ["abcdef", "ab", None]}), 4)
    >>> t.column("s").to_pylist()
    ['abc…', 'ab', None]
    """
    if limit < 1:
        msg = f"limit must be >= 1, got {limit}"
        raise ValueError(msg)
    table = normalize_arrow(table)
    columns = []
    for field, column in zip(table.schema, table.columns, strict=True):
        typ = field.type
        if pa.types.is_string(typ):
            columns.append(_cut(column, limit))
        elif pa.types.is_binary(typ) or pa.types.is_nested(typ):
            rendered = pa.array(
                [None if v is None else str(v) for v in column.to_pylist()], pa.string()
            )
            columns.append(_cut(pa.chunked_array([rendered]), limit))
        else:
            columns.append(column)
    return pa.table(columns, names=table.column_names)


def _cut(column: pa.ChunkedArray, limit: int) -> pa.ChunkedArray:
    too_long = pc.greater(pc.utf8_length(column), limit)
    cut = pc.binary_join_element_wise(
        pc.utf8_slice_codeunits(column, 0, limit - 1), pa.scalar(_ELLIPSIS), ""
    )
    result = pc.if_else(too_long, cut, column)
    return result if isinstance(result, pa.ChunkedArray) else pa.chunked_array([result])
