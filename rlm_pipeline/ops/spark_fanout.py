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
- **usage**, the **row counts** (:class:`OpStats`: rows, answered, errors by
  kind, values) and the rows answered from stored row answers
  (``OpStats.cached_rows``) come back to the driver through accumulators,
  counted by the tasks as they answer, so no second Spark job runs to count
  the result.  Counts are kept per partition (a re-run attempt of a partition
  replaces, not adds to, its counts); usage is summed over attempts (every
  call made is spent) and added to the caller's meter.  Values are counted
  as Spark renders them as text (``true``, ``1.0E10``); llm_map keeps at most
  1,000 distinct values per partition and in all.
- **a dead endpoint fails on the driver**: before any task starts, the driver
  sends one minimal request through the same client code
  (:meth:`~rlm_pipeline.llm.client.LLMClient.preflight`, counted in the usage;
  nothing when the response cache shows the endpoint answered it before), so
  a refused connection, a refused key or an unknown model raises
  :class:`~rlm_pipeline.errors.LLMEndpointError` with its one line; a task
  whose client's circuit breaker trips anyway fails the job, and the driver
  raises the same typed error (not a Python-worker traceback).
- the result is materialised once (``localCheckpoint(eager=True)``), so later
  actions on it never call the model again.  Every input row is in it exactly
  once, in input order.
- **workers stay pandas-free**: output columns are built from Arrow buffers,
  not with ``pa.array`` (whose list conversion imports pandas).

Examples
--------
>>> from rlm_pipeline.ops.spec import ClassifySpec
>>> out_fields(ClassifySpec("q", ("a", "b")))
[('label', 'string'), ('label_error', 'string')]
"""

from __future__ import annotations

import array
import asyncio
import dataclasses
import decimal
import logging
import math
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from rlm_pipeline.errors import EngineError, InputError
from rlm_pipeline.llm.breaker import DEFAULT_ENDPOINT, reraised
from rlm_pipeline.llm.config import LLM, Budget
from rlm_pipeline.llm.usage import Usage, UsageMeter
from rlm_pipeline.ops.core import CachedRowsProgress, RowProgress, RowResult, Tally
from rlm_pipeline.ops.spec import ClassifySpec, OpSpec
from rlm_pipeline.ops.stats import OpStats

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = ["MAX_VALUES", "apply", "out_fields", "spark_text", "task_function", "to_arrow"]

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
_ROWS = "__rlm_rows"
#: llm_map stats count at most this many distinct values.
MAX_VALUES = 1000


@dataclasses.dataclass(frozen=True)
class _Accumulators:
    """Where a fan-out's tasks report: usage, rows from stored answers, row counts."""

    usage: Any
    cached: Any
    stats: Any


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


class _StatsByPartition:
    """Accumulator parameter merging ``{partition: OpStats}`` (a partition's last report wins)."""

    def zero(self, value: dict[int, OpStats]) -> dict[int, OpStats]:
        return {}

    def addInPlace(  # noqa: N802 - Spark's name
        self, first: dict[int, OpStats], second: dict[int, OpStats]
    ) -> dict[int, OpStats]:
        first.update(second)
        return first


class _Counts:
    """Row counts of one task, as the final ``groupBy`` over the result would give them."""

    def __init__(self, spec: OpSpec) -> None:
        self.kind = _value_kind(spec)
        self.capped = not isinstance(spec, ClassifySpec)
        self.rows = 0
        self.answered = 0
        self.errors: Counter[str] = Counter()
        self.values: Counter[str] = Counter()

    def add(self, results: list[RowResult], weights: list[int] | None) -> None:
        for i, (value, error) in enumerate(results):
            n = 1 if weights is None else weights[i]
            self.rows += n
            if error is not None:
                self.errors[error.split(":", 1)[0]] += n
                continue
            self.answered += n
            key = spark_text(value, self.kind)
            if not self.capped or key in self.values or len(self.values) < MAX_VALUES:
                self.values[key] += n

    def stats(self) -> OpStats:
        return OpStats(
            rows=self.rows,
            answered=self.answered,
            errors=dict(self.errors),
            values=dict(self.values),
        )


def _merge_counts(parts: dict[int, OpStats], spec: OpSpec) -> OpStats:
    """One :class:`OpStats` from the tasks' counts, in partition order."""
    capped = not isinstance(spec, ClassifySpec)
    rows = answered = 0
    errors: Counter[str] = Counter()
    values: Counter[str] = Counter()
    for key in sorted(parts):
        part = parts[key]
        rows += part.rows
        answered += part.answered
        errors.update(part.errors)
        for value, n in part.values.items():
            if not capped or value in values or len(values) < MAX_VALUES:
                values[value] += n
    return OpStats(rows=rows, answered=answered, errors=dict(errors), values=dict(values))


def spark_text(value: Any, kind: str) -> str:
    """``value`` as Spark's ``CAST(... AS STRING)`` writes it (Java's number format).

    Doubles use the shortest repr in Java's layout; Java before 19 prints a few
    values (subnormals such as ``4.9E-324``) with one digit more or less.

    Examples
    --------
    >>> spark_text(True, "boolean"), spark_text(1e10, "number"), spark_text(0.5, "number")
    ('true', '1.0E10', '0.5')
    >>> spark_text(float("nan"), "number"), spark_text(-0.0001, "number")
    ('NaN', '-1.0E-4')
    """
    if value is None:
        return "None"
    if kind == "boolean" and isinstance(value, bool):
        return "true" if value else "false"
    if kind == "number" and isinstance(value, int | float) and not isinstance(value, bool):
        return _java_double(float(value))
    return str(value)


def _java_double(x: float) -> str:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0.0:
        return "-0.0" if math.copysign(1.0, x) < 0 else "0.0"
    if 1e-3 <= abs(x) < 1e7:
        text = repr(x)
        return text if "." in text else text + ".0"
    sign, digits, exponent = decimal.Decimal(repr(x)).as_tuple()
    shown = "".join(map(str, digits)).rstrip("0") or "0"
    power = len(digits) - 1 + int(exponent)
    mantissa = shown[0] + "." + (shown[1:] or "0")
    return ("-" if sign else "") + f"{mantissa}E{power}"


def to_arrow(values: Sequence[Any], arrow_type: pa.DataType) -> pa.Array:
    """An Arrow array of Python values, built from buffers (no pandas import).

    ``pa.array`` of a list imports pandas to check whether the list is
    "array-like"; in a Spark Python worker that is a needless ~0.5 s and tens
    of MB.  Strings, int64, float64 and booleans are built from Arrow buffers;
    anything else (or a value the buffers cannot hold) falls back to ``pa.array``.

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
            encoded = [v.encode("utf-8") if v is not None else b"" for v in values]
            offsets = array.array("i", [0])
            total = 0
            for item in encoded:
                total += len(item)
                offsets.append(total)
            return pa.StringArray.from_buffers(
                n, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded)), validity, null_count
            )
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


def _bitmap(bits: list[bool]) -> bytes:
    """Arrow's little-endian bit order: bit ``i`` is bit ``i % 8`` of byte ``i // 8``."""
    out = bytearray((len(bits) + 7) // 8)
    for i, bit in enumerate(bits):
        if bit:
            out[i >> 3] |= 1 << (i & 7)
    return bytes(out)


def task_function(
    spec: OpSpec,
    llm: LLM,
    budget: Budget | None,
    report: Callable[[Usage], None],
    report_cached: Callable[[int], None] | None = None,
    report_stats: Callable[[dict[int, OpStats]], None] | None = None,
    weight_column: str | None = None,
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The function each ``mapInArrow`` task runs (picklable; no client inside).

    ``report`` receives the task's usage when the task ends (an accumulator's
    ``add`` on Spark); ``report_cached`` the rows it answered from stored row
    answers; ``report_stats`` ``{partition id: OpStats}`` of the rows it
    answered, each row counted ``weight_column`` times when that is given.
    """
    value_type = _ARROW_TYPES[_value_kind(spec)]

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from rlm_pipeline.llm.client import LLMClient
        from rlm_pipeline.ops.pipeline import answer_chunks

        meter = UsageMeter()
        tally = Tally()
        counts = _Counts(spec)
        finished = False
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
                weights = None
                if weight_column is not None:
                    weights = batch.column(batch.schema.get_field_index(weight_column))
                    weights = weights.to_pylist()
                counts.add(results, weights)
                yield _attach(batch, spec, results, value_type)
            finished = True
        finally:
            loop.run_until_complete(answers.aclose())
            loop.run_until_complete(client.aclose())
            loop.close()
            report(meter.snapshot())
            if report_cached is not None:
                report_cached(tally.cached_rows)
            if report_stats is not None and finished:
                report_stats({_partition_id(): counts.stats()})

    return run


def _partition_id() -> int:
    """The Spark partition this task answers (0 outside Spark)."""
    from pyspark import TaskContext

    context = TaskContext.get()
    return context.partitionId() if context is not None else 0


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
    values = to_arrow([v for v, _ in results], value_type)
    errors = to_arrow([e for _, e in results], pa.string())
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
    weight_column: str | None = None,
) -> tuple[DataFrame, _Accumulators]:
    """The mapped (lazy) frame and the accumulators its tasks report to."""
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
    acc = _Accumulators(
        usage=sc.accumulator(Usage(), _UsageSum()),  # type: ignore[arg-type]
        cached=sc.accumulator(0),
        stats=sc.accumulator({}, _StatsByPartition()),  # type: ignore[arg-type]
    )
    fields = list(df.schema.fields) + [
        StructField(name, _parse_datatype_string(kind), True) for name, kind in out_fields(spec)
    ]
    task = task_function(
        spec,
        task_llm,
        task_budget,
        acc.usage.add,
        acc.cached.add,
        acc.stats.add,
        weight_column=weight_column,
    )
    mapped = df.mapInArrow(task, StructType(fields))
    return mapped, acc


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

    if spec.column not in df.columns:
        msg = f"column {spec.column!r} not found; columns: {df.columns}"
        raise InputError(msg)
    meter = meter if meter is not None else UsageMeter()
    llm = _absolute_cache(llm)
    _preflight(llm, meter, budget)
    left = _remaining(budget, meter.snapshot()) if budget is not None else None
    drop = [c for c in (spec.output_column, spec.error_column) if c in df.columns]
    if drop:
        df = df.drop(*drop)
    try:
        slots = max(1, parallelism or df.sparkSession.sparkContext.defaultParallelism)
        if global_dedup:
            result, acc = _apply_global(df, spec, llm, left, slots)
        else:
            mapped, acc = _map(df, spec, llm, left, slots)
            result = mapped.localCheckpoint(eager=True)
    except PySparkException as exc:
        tripped = reraised(str(exc), llm.resolved_base_url() or DEFAULT_ENDPOINT)
        if tripped is not None:  # a task's circuit breaker tripped
            raise tripped from exc
        msg = f"Spark failed while running {type(spec).__name__}: {str(exc).splitlines()[0]}"
        raise EngineError(msg) from exc
    spent: Usage = acc.usage.value
    meter.add(spent)
    stats = (
        _merge_counts(acc.stats.value, spec)
        .with_usage(spent)
        .with_cached_rows(int(acc.cached.value))
    )
    if progress is not None:
        progress(stats.rows, stats.failed)
        if stats.cached_rows and isinstance(progress, CachedRowsProgress):
            progress.add_cached(stats.cached_rows)
    return result, stats


def _preflight(llm: LLM, meter: UsageMeter, budget: Budget | None) -> None:
    """Check the endpoint from the driver before any task starts (see the module docstring).

    A few quick tries at most (a 5xx is retried twice, then left to the
    tasks); only :class:`~rlm_pipeline.errors.LLMEndpointError` (and the
    client's own checks, e.g. a cost budget for an unpriced model) is raised.
    """
    from rlm_pipeline.llm.client import LLMClient
    from rlm_pipeline.llm.retry import RetryPolicy
    from rlm_pipeline.ops.runner import run_sync

    retry = RetryPolicy(max_retries=min(2, llm.max_retries))

    async def check() -> None:
        async with LLMClient(llm, meter=meter, budget=budget, retry=retry) as client:
            await client.preflight()

    run_sync(check)


def _apply_global(
    df: DataFrame, spec: OpSpec, llm: LLM, budget: Budget | None, slots: int
) -> tuple[DataFrame, _Accumulators]:
    """Answer distinct texts once, join back, restore the input order.

    Each distinct text (blank ones too: they are answered ``empty_input``
    without a call) carries its number of rows, so the tasks count the rows
    of the whole table.
    """
    from pyspark.sql import functions as F

    text = F.col(_quote(spec.column)).cast("string")
    base = df.withColumn(_ROW_ID, F.monotonically_increasing_id()).withColumn(_TEXT, text)
    blank = F.col(_TEXT).isNull() | (F.trim(F.col(_TEXT)) == "")
    distinct = base.groupBy(_TEXT).agg(F.count(F.lit(1)).alias(_ROWS))
    inner = dataclasses.replace(spec, column=_TEXT)
    answered, acc = _map(distinct, inner, llm, budget, slots, weight_column=_ROWS)
    answered = answered.localCheckpoint(eager=True).drop(_ROWS)
    joined = base.join(answered, on=_TEXT, how="left")
    error = F.when(blank, F.lit("empty_input")).otherwise(F.col(_quote(spec.error_column)))
    result = (
        joined.withColumn(spec.error_column, error)
        .orderBy(_ROW_ID)
        .select(
            *[_quote(c) for c in df.columns], _quote(spec.output_column), _quote(spec.error_column)
        )
    )
    return result.localCheckpoint(eager=True), acc
