"""Read the user's data as one engine's native frame (Polars ``LazyFrame`` or Spark ``DataFrame``).

Accepted data: a Polars ``DataFrame``/``LazyFrame``, a Parquet file, directory
or glob, a CSV file, a JSON Lines file (``.jsonl``/``.ndjson``), a pyarrow
``Table``, a pandas ``DataFrame`` or a Spark ``DataFrame``.  Files are checked
cheaply before an engine reads them (see :mod:`rlm_pipeline.engines.sources`).
The engines call these from ``Engine.read``; which engine reads is decided in
:mod:`rlm_pipeline.engines.load`.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from typing import TYPE_CHECKING, Any, cast

import polars as pl
import pyarrow as pa

from rlm_pipeline.engines.cells import normalize_arrow
from rlm_pipeline.engines.kinds import is_spark_frame
from rlm_pipeline.engines.sources import FileSource, is_path_like, resolve_source
from rlm_pipeline.errors import InputError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame as SparkDataFrame
    from pyspark.sql import SparkSession

__all__ = ["EXPECTED", "MAX_ORDERED_FILES", "to_polars", "to_spark"]

logger = logging.getLogger(__name__)

#: Most Parquet files Spark reads in name order (one scan per file); above it, one scan.
MAX_ORDERED_FILES = 64
#: What the readers accept (for error messages).
EXPECTED = (
    "a Polars DataFrame/LazyFrame, a Parquet file/directory/glob, a CSV or JSON Lines file, "
    "a pyarrow Table, a pandas DataFrame or a Spark DataFrame"
)


def to_polars(data: Any) -> pl.LazyFrame:
    """Read ``data`` as a Polars LazyFrame (files are scanned lazily).

    Raises
    ------
    InputError
        Unsupported data or unreadable files.
    """
    if isinstance(data, pl.LazyFrame):
        return data
    if isinstance(data, pl.DataFrame):
        return data.lazy()
    if is_path_like(data):
        return _scan(resolve_source(data))
    table = _as_arrow(data)
    if table is None and is_spark_frame(data):
        logger.info("collecting a Spark DataFrame to the driver for the Polars engine")
        table = data.toArrow()
    if table is None:
        msg = f"cannot read {type(data).__name__}: expected {EXPECTED}"
        raise InputError(msg)
    return pl.DataFrame(normalize_arrow(table)).lazy()


def to_spark(data: Any, session: SparkSession) -> SparkDataFrame:
    """Read ``data`` as a Spark DataFrame in ``session``.

    Raises
    ------
    InputError
        Unsupported data or unreadable files.
    """
    if is_spark_frame(data):
        return cast("SparkDataFrame", data)
    if is_path_like(data):
        return _read_spark(resolve_source(data), session)
    if isinstance(data, pl.LazyFrame):
        data = data.collect()
    table = data.to_arrow() if isinstance(data, pl.DataFrame) else _as_arrow(data)
    if table is None:
        msg = f"cannot read {type(data).__name__}: expected {EXPECTED}"
        raise InputError(msg)
    try:
        return session.createDataFrame(normalize_arrow(table))
    except Exception as exc:  # noqa: BLE001 - pyspark raises many kinds; convert at the boundary
        msg = f"Spark cannot hold this table: {_first_line(exc)}"
        raise InputError(msg) from exc


def _as_arrow(data: Any) -> pa.Table | None:
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(data, pandas.DataFrame):
        try:
            return pa.Table.from_pandas(data, preserve_index=False)
        except (pa.ArrowException, ValueError, TypeError) as exc:
            msg = f"cannot convert the pandas DataFrame: {_first_line(exc)}"
            raise InputError(msg) from exc
    return None


def _scan(source: FileSource) -> pl.LazyFrame:
    location = source.polars_location
    try:
        if source.kind == "parquet":
            frame = pl.scan_parquet(location, hive_partitioning=source.is_dir or None)
        elif source.kind == "csv":
            frame = pl.scan_csv(location, try_parse_dates=True, infer_schema_length=10_000)
        else:
            frame = pl.scan_ndjson(location, infer_schema_length=10_000)
        frame.collect_schema()
    except (pl.exceptions.PolarsError, pa.ArrowException, OSError) as exc:
        msg = f"cannot read {source.location}: {_first_line(exc)}"
        raise InputError(msg) from exc
    return frame


def _read_spark(source: FileSource, session: SparkSession) -> SparkDataFrame:
    from pyspark.errors import PySparkException

    reader = session.read
    try:
        if source.kind == "parquet":
            return _read_spark_parquet(source, session)
        if source.kind == "csv":
            return (
                reader.option("header", True)
                .option("inferSchema", True)
                .option("escape", '"')
                .option("encoding", "UTF-8")
                .option("multiLine", True)  # a quoted cell may hold newlines (as in Polars)
                .csv(source.location)
            )
        frame = reader.json(source.location)
        order = _json_key_order(source.files[0])
        columns = [c for c in order if c in frame.columns]
        return frame.select(columns + [c for c in frame.columns if c not in order])
    except PySparkException as exc:
        msg = f"Spark cannot read {source.location}: {_first_line(exc)}"
        raise InputError(msg) from exc


def _read_spark_parquet(source: FileSource, session: SparkSession) -> SparkDataFrame:
    """Parquet in file-name order, like Polars.

    Spark packs a dataset's files largest first, so one scan does not keep the
    files' order; up to :data:`MAX_ORDERED_FILES` files are read one by one and
    unioned in name order instead (Hive ``key=value`` folders still become columns).
    """
    if len(source.files) == 1 or len(source.files) > MAX_ORDERED_FILES:
        if len(source.files) > 1:
            logger.info("%d Parquet files: Spark reads them in its own order", len(source.files))
        return session.read.parquet(source.location)
    reader = session.read
    if source.is_dir:
        reader = reader.option("basePath", source.location)
    first = reader.parquet(source.files[0])
    typed = reader.schema(first.schema)  # the files share one schema (checked): infer it once
    frames = [first] + [typed.parquet(path) for path in source.files[1:]]
    return functools.reduce(lambda a, b: a.unionByName(b), frames)


def _json_key_order(path: str) -> list[str]:
    """Keys of the first JSON object in a JSON Lines file (Spark sorts them; Polars does not)."""
    with open(path, encoding="utf-8-sig") as handle:
        for line in handle:
            if line.strip():
                try:
                    first = json.loads(line)
                except json.JSONDecodeError as exc:
                    msg = f"{path} line 1 is not JSON: {exc.msg}"
                    raise InputError(msg) from exc
                return list(first) if isinstance(first, dict) else []
    return []


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__
