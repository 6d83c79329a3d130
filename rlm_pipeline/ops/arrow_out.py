"""Output columns of the Spark tasks, built from Arrow buffers (workers stay pandas-free).

``pa.array`` of a Python list imports pandas to check whether the list is
"array-like"; in a Spark Python worker that is a needless ~0.5 s and tens of
MB.  :func:`to_arrow` builds strings, int64, float64 and booleans from
buffers; :func:`attach` appends an operator's value and error columns to a
record batch (one array per column of ``spec.output_fields()``, then the
error column).

Examples
--------
>>> batch = pa.RecordBatch.from_pydict({"q": ["a", "b"]})
>>> from rlm_pipeline.ops.spec import ClassifySpec
>>> attach(batch, ClassifySpec("q", ("x", "y")), [("x", None), (None, "empty_input")]).to_pydict()
{'q': ['a', 'b'], 'label': ['x', None], 'label_error': [None, 'empty_input']}
"""

from __future__ import annotations

import array
import sys
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from rlm_pipeline.ops.memo import RowResult
from rlm_pipeline.ops.spec_base import OpSpec, columns_of

__all__ = ["ARROW_TYPES", "attach", "to_arrow"]

#: Arrow type of each output kind (:data:`~rlm_pipeline.ops.spec_base.OUTPUT_KINDS`).
ARROW_TYPES = {
    "string": pa.string(),
    "integer": pa.int64(),
    "number": pa.float64(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
}


def attach(batch: pa.RecordBatch, spec: OpSpec, results: list[RowResult]) -> pa.RecordBatch:
    """``batch`` with the spec's value columns (``spec.output_fields()``) and error column appended."""
    arrays = [*batch.columns]
    schema = batch.schema
    for (name, kind), values in zip(spec.output_fields(), columns_of(spec, results), strict=True):
        arrays.append(to_arrow(values, ARROW_TYPES[kind]))
        schema = schema.append(pa.field(name, ARROW_TYPES[kind]))
    arrays.append(to_arrow([e for _, e in results], pa.string()))
    schema = schema.append(pa.field(spec.error_column, pa.string()))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def to_arrow(values: Sequence[Any], arrow_type: pa.DataType) -> pa.Array:
    """An Arrow array of Python values, built from buffers (no pandas import).

    Anything but strings, int64, float64 and booleans (or a value the buffers
    cannot hold) falls back to ``pa.array``.

    Examples
    --------
    >>> to_arrow(["a", None, "é"], pa.string()).to_pylist()
    ['a', None, 'é']
    >>> to_arrow([1, None], pa.int64()).equals(pa.array([1, None], pa.int64()))
    True
    """
    n = len(values)
    if sys.byteorder != "little":  # pragma: no cover - Arrow buffers are little-endian
        return pa.array(values, type=arrow_type)
    valid = [v is not None for v in values]
    null_count = n - sum(valid)
    validity = None if null_count == 0 else pa.py_buffer(_bitmap(valid))
    try:
        if pa.types.is_string(arrow_type):
            return _strings(values, validity, null_count)
        if pa.types.is_int64(arrow_type):
            data = pa.py_buffer(array.array("q", [0 if v is None else v for v in values]))
        elif pa.types.is_float64(arrow_type):
            data = pa.py_buffer(array.array("d", [0.0 if v is None else v for v in values]))
        elif pa.types.is_boolean(arrow_type):
            data = pa.py_buffer(_bitmap([bool(v) for v in values]))
        else:
            return pa.array(values, type=arrow_type)
    except (OverflowError, TypeError, AttributeError):
        return pa.array(values, type=arrow_type)
    return pa.Array.from_buffers(arrow_type, n, [validity, data], null_count=null_count)


def _strings(values: Sequence[Any], validity: pa.Buffer | None, null_count: int) -> pa.Array:
    encoded = [v.encode("utf-8") if v is not None else b"" for v in values]
    offsets = array.array("i", [0])
    total = 0
    for item in encoded:
        total += len(item)
        offsets.append(total)
    return pa.StringArray.from_buffers(
        len(values), pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded)), validity, null_count
    )


def _bitmap(bits: list[bool]) -> bytes:
    """Arrow's little-endian bit order: bit ``i`` is bit ``i % 8`` of byte ``i // 8``."""
    out = bytearray((len(bits) + 7) // 8)
    for i, bit in enumerate(bits):
        if bit:
            out[i >> 3] |= 1 << (i & 7)
    return bytes(out)
