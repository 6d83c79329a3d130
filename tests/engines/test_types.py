from __future__ import annotations

import polars as pl
import pytest

from rlm_pipeline.engines.types import neutral_polars_type, neutral_spark_type


@pytest.mark.parametrize(
    ("dtype", "name"),
    [
        (pl.String, "string"),
        (pl.Categorical(), "string"),
        (pl.Int8, "int64"),
        (pl.UInt32, "int64"),
        (pl.Int64, "int64"),
        (pl.Float32, "float64"),
        (pl.Decimal(10, 2), "float64"),
        (pl.Boolean, "bool"),
        (pl.Date, "date"),
        (pl.Datetime("ms", "UTC"), "timestamp"),
        (pl.List(pl.Int64), "other:List(Int64)"),
        (pl.Binary, "other:Binary"),
    ],
)
def test_polars_types(dtype: pl.DataType, name: str) -> None:
    assert neutral_polars_type(dtype) == name


@pytest.mark.spark
def test_spark_types() -> None:
    from pyspark.sql import types as T

    cases = {
        T.StringType(): "string",
        T.IntegerType(): "int64",
        T.LongType(): "int64",
        T.ShortType(): "int64",
        T.DoubleType(): "float64",
        T.FloatType(): "float64",
        T.DecimalType(10, 2): "float64",
        T.BooleanType(): "bool",
        T.DateType(): "date",
        T.TimestampType(): "timestamp",
        T.TimestampNTZType(): "timestamp",
        T.ArrayType(T.LongType()): "other:array<bigint>",
        T.BinaryType(): "other:binary",
    }
    for data_type, name in cases.items():
        assert neutral_spark_type(data_type) == name
