"""Spark adapter: semantic sub-calls as ``mapInArrow`` tasks on the executors.

How a call runs:

- **tasks and limits**: one task per input partition (partitions are not
  merged with ``coalesce``: it may group non-adjacent partitions and lose the
  order).  Each task gets ``llm.share(n)`` with ``n`` = tasks that can run at
  once (``min(defaultParallelism, partitions)``); when ``n`` would exceed
  ``max_concurrency`` the input is first range-partitioned, in order, into
  ``max_concurrency`` partitions.  So the job as a whole never has more than
  ``max_concurrency`` requests in flight, and ``rpm``/``tpm`` hold
  (tasks pace evenly; a task that follows another in the same slot may add
  one request at the hand-over).  The budget left on the caller's meter is
  split evenly over all tasks (``Budget.share``), so the call never passes it.
- **in the task**: the task builds its own :class:`~rlm_pipeline.llm.client.LLMClient`
  from the picklable :class:`~rlm_pipeline.llm.config.LLM` in its own asyncio
  loop, dedups texts across the task's Arrow batches and answers a few batches
  at once (:mod:`rlm_pipeline.ops.pipeline`).  The response cache
  (``llm.cache_path``, made absolute on the driver) is opened by each executor;
  each task looks its distinct texts up in the stored row answers first and
  stores every checked answer, so a re-run with other partitioning (or a
  retried task) asks only rows no task has answered yet.
- **global dedup** (``global_dedup=True``): distinct texts are answered once for
  the whole table and joined back; row order is restored from a row id.
- **usage** (and the count of rows answered from stored row answers,
  ``OpStats.cached_rows``) comes back to the driver through accumulators; the
  usage is added to the caller's meter.
- the result is materialised once (``localCheckpoint(eager=True)``), so later
  actions on it never call the model again.  Every input row is in it exactly
  once, in input order.

Examples
--------
>>> from rlm_pipeline.ops.spec import ClassifySpec
>>> out_fields(ClassifySpec("q", ("a", "b")))
[('label', 'string'), ('label_error', 'string')]
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from rlm_pipeline.errors import EngineError, InputError
from rlm_pipeline.llm.config import LLM, Budget
from rlm_pipeline.llm.usage import Usage, UsageMeter
from rlm_pipeline.ops.core import CachedRowsProgress, RowProgress, RowResult, Tally
from rlm_pipeline.ops.spec import ClassifySpec, OpSpec
from rlm_pipeline.ops.stats import OpStats

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = ["apply", "out_fields", "task_function"]

logger = logging.getLogger(__name__)

_SPARK_TYPES = {"string": "string", "integer": "bigint", "number": "double", "boolean": "boolean"}
_ARROW_TYPES = {
    "string": pa.string(),
    "integer": pa.int64(),
    "number": pa.float64(),
    "boolean": pa.bool_(),
}
_ROW_ID = "__rlm_row_id"
_TEXT = "__rlm_text"


def _value_kind(spec: OpSpec) -> str:
    return "string" if isinstance(spec, ClassifySpec) else spec.output_type


def out_fields(spec: OpSpec) -> list[tuple[str, str]]:
    """The columns the operator adds, as (name, Spark SQL type)."""
    return [
        (spec.output_column, _SPARK_TYPES[_value_kind(spec)]),
        (spec.error_column, "string"),
    ]


class _UsageSum:
    """Accumulator parameter summing :class:`Usage` snapshots from tasks."""

    def zero(self, value: Usage) -> Usage:
        return Usage()

    def addInPlace(self, first: Usage, second: Usage) -> Usage:  # noqa: N802 - Spark's name
        return first + second


def task_function(
    spec: OpSpec,
    llm: LLM,
    budget: Budget | None,
    report: Callable[[Usage], None],
    report_cached: Callable[[int], None] | None = None,
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The function each ``mapInArrow`` task runs (picklable; no client inside).

    ``report`` receives the task's usage when the task ends (an accumulator's
    ``add`` on Spark); ``report_cached`` the rows it answered from stored row
    answers.
    """
    value_type = _ARROW_TYPES[_value_kind(spec)]

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from rlm_pipeline.llm.client import LLMClient
        from rlm_pipeline.ops.pipeline import answer_chunks

        meter = UsageMeter()
        tally = Tally()
        loop = asyncio.new_event_loop()

        async def build() -> LLMClient:
            return LLMClient(llm, meter=meter, budget=budget)

        client = loop.run_until_complete(build())
        answers = answer_chunks(batches, _batch_texts(spec), spec, client, tally=tally)
        try:
            while True:
                try:
                    batch, results = loop.run_until_complete(answers.__anext__())
                except StopAsyncIteration:
                    break
                yield _attach(batch, spec, results, value_type)
        finally:
            loop.run_until_complete(answers.aclose())
            loop.run_until_complete(client.aclose())
            loop.close()
            report(meter.snapshot())
            if report_cached is not None:
                report_cached(tally.cached_rows)

    return run


def _batch_texts(spec: OpSpec) -> Callable[[pa.RecordBatch], list[str | None]]:
    def texts(batch: pa.RecordBatch) -> list[str | None]:
        column = batch.column(batch.schema.get_field_index(spec.column))
        if not pa.types.is_string(column.type):
            column = column.cast(pa.string())
        return column.to_pylist()  # type: ignore[no-any-return]

    return texts


def _attach(
    batch: pa.RecordBatch, spec: OpSpec, results: list[RowResult], value_type: pa.DataType
) -> pa.RecordBatch:
    values = pa.array([v for v, _ in results], type=value_type)
    errors = pa.array([e for _, e in results], type=pa.string())
    schema = batch.schema.append(pa.field(spec.output_column, value_type)).append(
        pa.field(spec.error_column, pa.string())
    )
    return pa.RecordBatch.from_arrays([*batch.columns, values, errors], schema=schema)


def _remaining(budget: Budget, spent: Usage) -> Budget:
    """What is left of ``budget`` after ``spent``."""
    return Budget(
        max_calls=None if budget.max_calls is None else max(0, budget.max_calls - spent.calls),
        max_tokens=None
        if budget.max_tokens is None
        else max(0, budget.max_tokens - spent.total_tokens),
        max_cost_usd=None
        if budget.max_cost_usd is None
        else max(0.0, budget.max_cost_usd - spent.cost_usd),
    )


def _absolute_cache(llm: LLM) -> LLM:
    if llm.cache_path and not os.path.isabs(llm.cache_path):
        return dataclasses.replace(llm, cache_path=os.path.abspath(llm.cache_path))
    return llm


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _fewer_partitions(df: DataFrame, parts: int) -> DataFrame:
    """``df`` in ``parts`` partitions of contiguous rows, input order kept.

    Used when more tasks could run at once than ``max_concurrency`` allows
    (each task needs at least one request slot): range partitions over a
    monotonically increasing id keep the rows in order.
    """
    from pyspark.sql import functions as F

    order = "__rlm_order"
    return (
        df.withColumn(order, F.monotonically_increasing_id())
        .repartitionByRange(parts, order)
        .sortWithinPartitions(order)
        .drop(order)
    )


def _map(
    df: DataFrame,
    spec: OpSpec,
    llm: LLM,
    budget: Budget | None,
    slots: int,
) -> tuple[DataFrame, Any, Any]:
    """The mapped (lazy) frame, the usage accumulator and the cached-rows accumulator."""
    from pyspark.sql.types import StructField, StructType, _parse_datatype_string

    sc = df.sparkSession.sparkContext
    parts = max(1, df.rdd.getNumPartitions())
    if min(slots, parts) > llm.max_concurrency:
        df = _fewer_partitions(df, llm.max_concurrency)
        parts = llm.max_concurrency
    task_llm = llm.share(min(slots, parts))
    task_budget = budget.share(parts) if budget is not None else None
    logger.debug(
        "spark fan-out: %d tasks, per task concurrency %d rpm %s tpm %s",
        parts,
        task_llm.max_concurrency,
        task_llm.rpm,
        task_llm.tpm,
    )
    usage = sc.accumulator(Usage(), _UsageSum())  # type: ignore[arg-type]
    cached = sc.accumulator(0)
    fields = list(df.schema.fields) + [
        StructField(name, _parse_datatype_string(kind), True) for name, kind in out_fields(spec)
    ]
    task = task_function(spec, task_llm, task_budget, usage.add, cached.add)
    mapped = df.mapInArrow(task, StructType(fields))
    return mapped, usage, cached


def apply(
    df: DataFrame,
    spec: OpSpec,
    llm: LLM,
    *,
    meter: UsageMeter | None = None,
    budget: Budget | None = None,
    progress: RowProgress | None = None,
    global_dedup: bool = False,
    parallelism: int | None = None,
) -> tuple[DataFrame, OpStats]:
    """Run ``spec`` over a Spark DataFrame; the materialised result and the stats.

    Parameters
    ----------
    df
        Input; ``spec.output_column`` / ``spec.error_column`` are replaced if present.
    spec
        A :class:`~rlm_pipeline.ops.spec.ClassifySpec` or :class:`~rlm_pipeline.ops.spec.MapSpec`.
    llm
        Endpoint and limits for the whole job (shared out over the tasks).
    meter
        The executors' usage is added here.
    budget
        Limits for this call, less what ``meter`` already shows spent.
    progress
        Called once at the end with ``(rows, rows_failed)``.
    global_dedup
        Answer each distinct text once for the whole table (a ``distinct`` and
        a join) instead of once per task.
    parallelism
        Tasks that run at once; default the context's ``defaultParallelism``.
    """
    from pyspark.errors import PySparkException
    from pyspark.sql import functions as F

    if spec.column not in df.columns:
        msg = f"column {spec.column!r} not found; columns: {df.columns}"
        raise InputError(msg)
    meter = meter if meter is not None else UsageMeter()
    llm = _absolute_cache(llm)
    left = _remaining(budget, meter.snapshot()) if budget is not None else None
    drop = [c for c in (spec.output_column, spec.error_column) if c in df.columns]
    if drop:
        df = df.drop(*drop)
    try:
        slots = max(1, parallelism or df.sparkSession.sparkContext.defaultParallelism)
        if global_dedup:
            result, usage, cached = _apply_global(df, spec, llm, left, slots)
        else:
            mapped, usage, cached = _map(df, spec, llm, left, slots)
            result = mapped.localCheckpoint(eager=True)
        counts = (
            result.groupBy(
                F.col(_quote(spec.output_column)).cast("string").alias("v"),
                F.split(F.col(_quote(spec.error_column)), ":").getItem(0).alias("k"),
            )
            .count()
            .collect()
        )
    except PySparkException as exc:
        msg = f"Spark failed while running {type(spec).__name__}: {str(exc).splitlines()[0]}"
        raise EngineError(msg) from exc
    spent: Usage = usage.value
    meter.add(spent)
    stats = _stats(counts, spec).with_usage(spent).with_cached_rows(int(cached.value))
    if progress is not None:
        progress(stats.rows, stats.failed)
        if stats.cached_rows and isinstance(progress, CachedRowsProgress):
            progress.add_cached(stats.cached_rows)
    return result, stats


def _stats(counts: list[Any], spec: OpSpec) -> OpStats:
    rows = answered = 0
    errors: dict[str, int] = {}
    values: dict[str, int] = {}
    for value, kind, n in counts:
        rows += n
        if kind is None:
            answered += n
            if isinstance(spec, ClassifySpec) or len(values) < 1000:
                values[str(value)] = values.get(str(value), 0) + n
        else:
            errors[kind] = errors.get(kind, 0) + n
    return OpStats(rows=rows, answered=answered, errors=errors, values=values)


def _apply_global(
    df: DataFrame, spec: OpSpec, llm: LLM, budget: Budget | None, slots: int
) -> tuple[DataFrame, Any, Any]:
    """Answer distinct texts once, join back, restore the input order."""
    from pyspark.sql import functions as F

    text = F.col(_quote(spec.column)).cast("string")
    base = df.withColumn(_ROW_ID, F.monotonically_increasing_id()).withColumn(_TEXT, text)
    blank = F.col(_TEXT).isNull() | (F.trim(F.col(_TEXT)) == "")
    distinct = base.where(~blank).select(_TEXT).distinct()
    inner = dataclasses.replace(spec, column=_TEXT)
    answered, usage, cached = _map(distinct, inner, llm, budget, slots)
    answered = answered.localCheckpoint(eager=True)
    joined = base.join(answered, on=_TEXT, how="left")
    error = F.when(blank, F.lit("empty_input")).otherwise(F.col(_quote(spec.error_column)))
    result = (
        joined.withColumn(spec.error_column, error)
        .orderBy(_ROW_ID)
        .select(
            *[_quote(c) for c in df.columns], _quote(spec.output_column), _quote(spec.error_column)
        )
    )
    return result.localCheckpoint(eager=True), usage, cached
