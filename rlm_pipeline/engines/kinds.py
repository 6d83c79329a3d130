"""Which engine a frame belongs to: the one place that asks "is this a Spark frame?".

Never imports pyspark unless the object comes from it, so Polars-only code
(and a base install without the ``spark`` extra) can ask.
"""

from __future__ import annotations

from typing import Any

__all__ = ["is_spark_frame"]


def is_spark_frame(data: Any) -> bool:
    """True for a Spark ``DataFrame`` (classic or Connect); never imports pyspark otherwise.

    Examples
    --------
    >>> import polars as pl
    >>> is_spark_frame(pl.DataFrame({"x": [1]})), is_spark_frame("t.parquet")
    (False, False)
    """
    if not type(data).__module__.startswith("pyspark.sql"):
        return False
    from pyspark.sql import DataFrame

    return isinstance(data, DataFrame)
