"""Engines: one narrow :class:`Engine` protocol, a Polars and a Spark implementation.

``open_engine(data)`` picks the engine from the data and registers it as view
``context``.  Importing this package never imports pyspark.

Examples
--------
>>> import polars as pl
>>> from rlm_pipeline.engines import open_engine
>>> open_engine(pl.DataFrame({"x": [1, 2]})).count("context")
2
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rlm_pipeline._lazy import lazy_attributes

__all__ = ["Engine", "PolarsEngine", "SparkEngine", "ValueCounts", "open_engine", "truncate_cells"]

_LAZY = {
    "Engine": "rlm_pipeline.engines.base",
    "PolarsEngine": "rlm_pipeline.engines.polars",
    "SparkEngine": "rlm_pipeline.engines.spark",
    "open_engine": "rlm_pipeline.engines.load",
    "truncate_cells": "rlm_pipeline.engines.cells",
    "ValueCounts": "rlm_pipeline.engines.reads",
}

if TYPE_CHECKING:
    from rlm_pipeline.engines.base import Engine
    from rlm_pipeline.engines.cells import truncate_cells
    from rlm_pipeline.engines.load import open_engine
    from rlm_pipeline.engines.polars import PolarsEngine
    from rlm_pipeline.engines.reads import ValueCounts
    from rlm_pipeline.engines.spark import SparkEngine


__getattr__, __dir__ = lazy_attributes("rlm_pipeline.engines", _LAZY, globals(), __all__)
