"""Polars adapter: move rows from a frame to the operators and the answers back.

All model traffic happens in one asyncio loop with one
:class:`~rlm_pipeline.llm.client.LLMClient`, whose ``max_concurrency`` bounds
the calls in flight.  Identical texts are asked once per run, and with
``llm.cache_path`` set, texts answered by an earlier run (whatever its batch or
slice size) are not asked at all (:class:`~rlm_pipeline.ops.memo.RowStore`);
the stats' ``cached_rows`` counts them.

- A ``DataFrame`` is answered in one go and a ``DataFrame`` comes back.
- A ``LazyFrame`` is streamed in slices of ``slice_rows`` rows
  (``collect_batches``), a few slices in flight at once; the answered slices
  are concatenated and returned as a ``LazyFrame`` over the result held in
  memory.  Memory for the *input* stays bounded, but the output is in memory.
- :func:`classify_to_parquet` streams a source of any size to a Parquet file,
  slice by slice, with bounded memory: use it (or the CLI) for data bigger
  than memory.

Examples
--------
>>> import polars as pl
>>> from rlm_pipeline.ops.spec import ClassifySpec
>>> frame = pl.DataFrame({"q": [None, " "]})  # blank rows are never sent
>>> out, stats = apply(frame, ClassifySpec("q", ("a", "b")), LLM(base_url="http://127.0.0.1:9/v1"))
>>> out["label_error"].to_list(), stats.rows
(['empty_input', 'empty_input'], 2)
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Iterator
from functools import partial
from typing import TYPE_CHECKING, TypeVar

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from rlm_pipeline.errors import EngineError, InputError
from rlm_pipeline.llm.config import LLM, Budget
from rlm_pipeline.llm.usage import UsageMeter
from rlm_pipeline.ops.core import OpsClient, RowProgress, RowResult, Tally, apply_texts
from rlm_pipeline.ops.pipeline import answer_chunks
from rlm_pipeline.ops.runner import run_sync
from rlm_pipeline.ops.spec_base import OpSpec, columns_of, output_names
from rlm_pipeline.ops.stats import OpStats, StatsCounter

if TYPE_CHECKING:
    from rlm_pipeline.llm.client import LLMClient

__all__ = [
    "DEFAULT_SLICE_ROWS",
    "apply",
    "apply_async",
    "apply_with_client",
    "classify_to_parquet",
    "output_schema",
    "output_series",
]

logger = logging.getLogger(__name__)

#: Rows per slice when streaming a LazyFrame.
DEFAULT_SLICE_ROWS = 50_000

_DTYPES: dict[str, pl.DataType] = {
    "string": pl.String(),
    "integer": pl.Int64(),
    "number": pl.Float64(),
    "boolean": pl.Boolean(),
    "date": pl.Date(),
}

F = TypeVar("F", pl.DataFrame, pl.LazyFrame)


def output_series(spec: OpSpec, results: list[RowResult]) -> list[pl.Series]:
    """The columns the operator adds, typed: its value columns, then the error column."""
    columns = [
        pl.Series(name, values, dtype=_DTYPES[kind])
        for (name, kind), values in zip(
            spec.output_fields(), columns_of(spec, results), strict=True
        )
    ]
    columns.append(pl.Series(spec.error_column, [e for _, e in results], dtype=pl.String))
    return columns


def output_schema(spec: OpSpec) -> dict[str, pl.DataType]:
    """Name -> Polars type of every column the operator adds (value columns, then the error column).

    Examples
    --------
    >>> from rlm_pipeline.ops.spec import MapSpec
    >>> output_schema(MapSpec("q", "count the words", output_type="integer"))
    {'value': Int64, 'value_error': String}
    """
    return {series.name: series.dtype for series in output_series(spec, [])}


def _texts(frame: pl.DataFrame, spec: OpSpec) -> list[str | None]:
    if spec.column not in frame.columns:
        msg = f"column {spec.column!r} not found; columns: {frame.columns}"
        raise InputError(msg)
    series = frame.get_column(spec.column)
    if series.dtype != pl.String:
        series = series.cast(pl.String, strict=False)
    return series.to_list()


def _attach(frame: pl.DataFrame, spec: OpSpec, results: list[RowResult]) -> pl.DataFrame:
    return frame.with_columns(output_series(spec, results))


def _check_columns(columns: list[str], spec: OpSpec) -> None:
    if spec.column not in columns:
        msg = f"column {spec.column!r} not found; columns: {columns}"
        raise InputError(msg)
    for name in output_names(spec):
        if name in columns:
            logger.info("column %r exists and will be replaced", name)


async def _answer_slices(
    slices: Iterator[pl.DataFrame],
    spec: OpSpec,
    client: OpsClient,
    progress: RowProgress | None,
    tally: Tally,
) -> AsyncIterator[tuple[pl.DataFrame, list[RowResult]]]:
    """Answer slices in order, reading the next slice while earlier ones are in flight."""
    texts_of = partial(_texts, spec=spec)
    async for item in answer_chunks(slices, texts_of, spec, client, progress=progress, tally=tally):
        yield item


def _slices(frame: pl.LazyFrame, slice_rows: int) -> Iterator[pl.DataFrame]:
    try:
        yield from frame.collect_batches(chunk_size=slice_rows, maintain_order=True)
    except pl.exceptions.PolarsError as exc:
        msg = f"Polars failed while reading the input: {str(exc).splitlines()[0]}"
        raise EngineError(msg) from exc


async def apply_async(
    frame: F,
    spec: OpSpec,
    client: OpsClient,
    *,
    progress: RowProgress | None = None,
    slice_rows: int = DEFAULT_SLICE_ROWS,
) -> tuple[F, OpStats]:
    """Async twin of :func:`apply` with a client you own (for code already in a loop).

    Returns the same kind of frame it got, with the spec's output columns
    (:func:`output_series`) added (replaced when present), every row once, in order.
    The returned stats have no usage (read it from your client's meter).
    """
    tally = Tally()
    if isinstance(frame, pl.DataFrame):
        _check_columns(frame.columns, spec)
        texts = _texts(frame, spec)
        results = await apply_texts(texts, client, spec, progress=progress, tally=tally)
        counter = StatsCounter(spec)
        counter.add(results)
        return _attach(frame, spec, results), counter.stats().with_cached_rows(tally.cached_rows)
    if not isinstance(frame, pl.LazyFrame):
        msg = f"expected a Polars DataFrame or LazyFrame, got {type(frame).__name__}"
        raise InputError(msg)
    _check_columns(frame.collect_schema().names(), spec)
    parts: list[pl.DataFrame] = []
    counter = StatsCounter(spec)
    slices = _slices(frame, slice_rows)
    async for chunk, results in _answer_slices(slices, spec, client, progress, tally):
        parts.append(_attach(chunk, spec, results))
        counter.add(results)
    if parts:
        out = pl.concat(parts, how="vertical", rechunk=False)
    else:
        out = pl.DataFrame(schema=frame.collect_schema()).with_columns(output_series(spec, []))
    return out.lazy(), counter.stats().with_cached_rows(tally.cached_rows)


async def apply_with_client(
    frame: pl.DataFrame | pl.LazyFrame,
    spec: OpSpec,
    client: OpsClient,
    *,
    progress: RowProgress | None = None,
) -> tuple[pl.DataFrame, OpStats]:
    """Answer ``frame`` through ``client`` in the running loop; a ``DataFrame`` back.

    For callers that must keep every model call under one client's limits (the
    RLM run: its sub-runs and their fan-outs share one semaphore and one rpm/tpm
    limiter).  A ``LazyFrame`` is collected in a worker thread first, so the
    loop's other tasks keep running while Polars reads; input and output are
    held in memory.

    Raises
    ------
    InputError
        ``spec.column`` is not in the frame.
    EngineError
        Polars failed to read the input.
    """
    if isinstance(frame, pl.LazyFrame):
        _check_columns(frame.collect_schema().names(), spec)
        try:
            frame = await asyncio.to_thread(frame.collect)
        except pl.exceptions.PolarsError as exc:
            msg = f"Polars failed while reading the input: {str(exc).splitlines()[0]}"
            raise EngineError(msg) from exc
    return await apply_async(frame, spec, client, progress=progress)


def _client(llm: LLM, meter: UsageMeter, budget: Budget | None) -> LLMClient:
    from rlm_pipeline.llm.client import LLMClient

    return LLMClient(llm, meter=meter, budget=budget)


def apply(
    frame: F,
    spec: OpSpec,
    llm: LLM,
    *,
    meter: UsageMeter | None = None,
    budget: Budget | None = None,
    progress: RowProgress | None = None,
    slice_rows: int = DEFAULT_SLICE_ROWS,
) -> tuple[F, OpStats]:
    """Run ``spec`` over a Polars frame; return the frame with the new columns and the stats.

    Parameters
    ----------
    frame
        A ``DataFrame`` (answered in one go) or a ``LazyFrame`` (streamed in
        slices; a ``LazyFrame`` over the in-memory result is returned).
    spec
        The operator (:class:`~rlm_pipeline.ops.spec_base.OpSpec`).
    llm
        Endpoint and limits; one client is built for this call.
    meter
        Usage is recorded here too (a fresh meter when None).
    budget
        Limits for this call, checked against ``meter`` (so spend already on
        the meter counts).  When hit, answered rows are kept and the rest get
        ``budget_exceeded``.
    progress
        Called with ``(rows_finished, rows_failed)`` increments.
    slice_rows
        Rows per slice when streaming a LazyFrame.
    """
    meter = meter if meter is not None else UsageMeter()
    before = meter.snapshot()

    async def run() -> tuple[F, OpStats]:
        async with _client(llm, meter, budget) as client:
            return await apply_async(frame, spec, client, progress=progress, slice_rows=slice_rows)

    out, stats = run_sync(run)
    return out, stats.with_usage(meter.snapshot() - before)


def classify_to_parquet(
    source: pl.LazyFrame,
    spec: OpSpec,
    llm: LLM,
    path: str | os.PathLike[str],
    *,
    meter: UsageMeter | None = None,
    budget: Budget | None = None,
    progress: RowProgress | None = None,
    slice_rows: int = DEFAULT_SLICE_ROWS,
) -> OpStats:
    """Stream ``source`` through ``spec`` into the Parquet file ``path`` with bounded memory.

    Slices are written as they are answered, in input order.  The file is
    written in place; callers wanting atomicity write to a temporary name and
    rename (the CLI does).
    """
    meter = meter if meter is not None else UsageMeter()
    before = meter.snapshot()
    _check_columns(source.collect_schema().names(), spec)

    async def run() -> OpStats:
        counter = StatsCounter(spec)
        writer: pq.ParquetWriter | None = None
        tally = Tally()
        try:
            async with _client(llm, meter, budget) as client:
                slices = _slices(source, slice_rows)
                async for chunk, results in _answer_slices(slices, spec, client, progress, tally):
                    table = _attach(chunk, spec, results).to_arrow()
                    if writer is None:
                        writer = pq.ParquetWriter(os.fspath(path), table.schema)
                    writer.write_table(table)
                    counter.add(results)
            if writer is None:  # no rows: still write a file with the right columns
                empty = _attach(source.head(0).collect(), spec, [])
                pq.write_table(empty.to_arrow(), os.fspath(path))
        except (OSError, pa.ArrowException) as exc:
            msg = f"cannot write {os.fspath(path)!r}: {exc}"
            raise InputError(msg) from exc
        finally:
            if writer is not None:
                writer.close()
        return counter.stats().with_cached_rows(tally.cached_rows)

    stats = run_sync(run)
    return stats.with_usage(meter.snapshot() - before)
