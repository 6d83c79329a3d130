"""Engine types -> the neutral type names the expression checker understands.

Neutral names: ``string``, ``int64``, ``float64``, ``bool``, ``date``,
``timestamp``.  Anything else (lists, structs, binary, ...) is reported as
``other:<engine type>`` so the checker can reject it with a readable message.
"""

from __future__ import annotations

from typing import Any

import polars as pl

__all__ = ["NEUTRAL_TYPES", "neutral_polars_type", "neutral_spark_type"]

NEUTRAL_TYPES = ("string", "int64", "float64", "bool", "date", "timestamp")

_SPARK_NAMES = {
    "StringType": "string",
    "VarcharType": "string",
    "CharType": "string",
    "ByteType": "int64",
    "ShortType": "int64",
    "IntegerType": "int64",
    "LongType": "int64",
    "FloatType": "float64",
    "DoubleType": "float64",
    "DecimalType": "float64",
    "BooleanType": "bool",
    "DateType": "date",
    "TimestampType": "timestamp",
    "TimestampNTZType": "timestamp",
}


def neutral_polars_type(dtype: pl.DataType | type[pl.DataType]) -> str:
    """Neutral name of a Polars dtype.

    Examples
    --------
    >>> neutral_polars_type(pl.Int32), neutral_polars_type(pl.Datetime("us"))
    ('int64', 'timestamp')
    """
    if dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Categorical | pl.Enum):
        return "string"
    if dtype == pl.Boolean:
        return "bool"
    if dtype == pl.Date:
        return "date"
    if isinstance(dtype, pl.Datetime) or dtype == pl.Datetime:
        return "timestamp"
    if dtype.is_integer():
        return "int64"
    if dtype.is_float() or dtype.is_decimal():
        return "float64"
    return f"other:{dtype}"


def neutral_spark_type(data_type: Any) -> str:
    """Neutral name of a Spark ``DataType`` (matched by class name: no pyspark import).

    Examples
    --------
    >>> class LongType: ...
    >>> neutral_spark_type(LongType())
    'int64'
    """
    kind = type(data_type).__name__
    name = _SPARK_NAMES.get(kind)
    if name is not None:
        return name
    simple = getattr(data_type, "simpleString", None)
    return f"other:{simple() if callable(simple) else kind}"
