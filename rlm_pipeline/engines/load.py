"""Open an engine over the user's data: pick the engine (once, here), read the data, register ``context``.

Accepted data: a Polars ``DataFrame``/``LazyFrame``, a Parquet file, directory
or glob, a CSV file, a JSON Lines file (``.jsonl``/``.ndjson``), a pyarrow
``Table``, a pandas ``DataFrame`` or a Spark ``DataFrame``.  Files are checked
cheaply before an engine reads them (see :mod:`rlm_pipeline.engines.sources`);
the readers live in :mod:`rlm_pipeline.engines.frames` (``to_polars`` and
``to_spark`` are re-exported here).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from rlm_pipeline._lazy import require_spark
from rlm_pipeline.engines.frames import to_polars, to_spark
from rlm_pipeline.engines.kinds import is_spark_frame
from rlm_pipeline.engines.polars import PolarsEngine
from rlm_pipeline.engines.views import CONTEXT_VIEW
from rlm_pipeline.errors import InputError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from rlm_pipeline.engines.base import Engine

__all__ = ["EngineName", "engine_for", "infer_engine", "open_engine", "to_polars", "to_spark"]

logger = logging.getLogger(__name__)

EngineName = Literal["polars", "spark"]


def engine_for(
    data: Any,
    engine: EngineName | str | None = None,
    *,
    spark: SparkSession | Callable[[], SparkSession] | None = None,
) -> Engine:
    """A new, empty engine for ``data``: **the** place that decides Polars vs Spark.

    Every entry resolves its engine here once (``rp.classify``/``llm_map`` via
    :func:`rlm_pipeline.ops.api.run_op`, ``rp.spark.*``, the Polars namespace,
    the CLI, the jobs, validation, and ``RLM`` through :func:`open_engine`);
    later steps ask the engine (``Engine.read``, ``Engine.map_frame``,
    ``Engine.open_child``), never the data's type again.

    Parameters
    ----------
    data
        The table (see :mod:`rlm_pipeline.engines.frames` for what is accepted).
    engine
        ``"polars"`` or ``"spark"``; ``None`` infers it (:func:`infer_engine`).
    spark
        The session for the Spark engine, or a function returning one (called
        only when Spark is chosen); defaults to the DataFrame's session, then
        the active session.

    Raises
    ------
    InputError
        Unknown engine, or no SparkSession for ``engine="spark"``.

    Examples
    --------
    >>> import polars as pl
    >>> engine_for(pl.DataFrame({"q": ["a"]})).name
    'polars'
    """
    chosen = infer_engine(data) if engine is None else engine
    if chosen == "polars":
        return PolarsEngine()
    if chosen == "spark":
        require_spark()
        from rlm_pipeline.engines.spark import SparkEngine

        return SparkEngine(_session_for(data, spark))
    msg = f"engine must be 'polars' or 'spark', got {engine!r}"
    raise InputError(msg)


def open_engine(
    data: Any,
    engine: EngineName | str | None = None,
    *,
    spark: SparkSession | Callable[[], SparkSession] | None = None,
) -> Engine:
    """An engine holding ``data`` as view ``context`` (:func:`engine_for`, then ``read``).

    Parameters
    ----------
    data
        The table (see the module docstring for what is accepted).
    engine
        ``"polars"`` or ``"spark"``; ``None`` infers it: a Spark DataFrame gives
        Spark, everything else Polars.
    spark
        The session for the Spark engine (or a function making one); defaults
        to the DataFrame's session, then the active session.

    Raises
    ------
    InputError
        Unknown engine or data kind, missing or unreadable files, no active
        SparkSession for ``engine="spark"``.

    Examples
    --------
    >>> import polars as pl
    >>> eng = open_engine(pl.DataFrame({"q": ["a", None]}))
    >>> eng.name, eng.schema("context"), eng.count("context")
    ('polars', {'q': 'string'}, 2)
    """
    opened = engine_for(data, engine, spark=spark)
    opened.register(CONTEXT_VIEW, opened.read(data))
    return opened


def infer_engine(data: Any) -> EngineName:
    """``"spark"`` for a Spark DataFrame, else ``"polars"`` (never imports pyspark).

    Examples
    --------
    >>> infer_engine("tickets.parquet")
    'polars'
    """
    return "spark" if is_spark_frame(data) else "polars"


def _session_for(
    data: Any, spark: SparkSession | Callable[[], SparkSession] | None
) -> SparkSession:
    if is_spark_frame(data):
        session: SparkSession = data.sparkSession
        return session
    if callable(spark):
        made: SparkSession = spark()
        return made
    if spark is not None:
        return spark
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is None:
        msg = "engine='spark' needs a SparkSession: pass spark=... or start one first"
        raise InputError(msg)
    return active
