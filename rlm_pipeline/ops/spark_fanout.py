"""Spark adapter, the driver's plan: semantic sub-calls as ``mapInArrow`` tasks.

The stages live in their own modules: this one plans the job (partitions,
limits and budget shared out, the preflight, the accumulator, the checkpoint);
:mod:`rlm_pipeline.ops.spark_task` is the loop each task runs;
:mod:`rlm_pipeline.ops.arrow_out` builds the output columns.

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
- **usage**, the **row counts** (:class:`OpStats`: rows, answered, errors by
  kind, values) and the rows answered from stored row answers
  (``OpStats.cached_rows``) come back to the driver through one accumulator
  of :class:`~rlm_pipeline.ops.spark_task.TaskReport`, counted by the tasks
  as they answer, so no second Spark job runs to count the result.  Counts are kept per partition (a re-run attempt of a partition
  replaces, not adds to, its counts); usage is summed over attempts (every
  call made is spent) and added to the caller's meter.  Values are counted
  as Spark renders them as text (``true``, ``1.0E10``; the Polars adapter
  counts the same way, :func:`~rlm_pipeline.ops.stats.value_text`); llm_map
  keeps at most 1,000 distinct values per partition and in all.
- **a dead endpoint fails on the driver**: before any task starts, the driver
  sends one minimal request through the same client code
  (:meth:`~rlm_pipeline.llm.client.LLMClient.preflight`, counted in the usage;
  nothing when the response cache shows the endpoint answered it before), so
  a refused connection, a refused key or an unknown model raises
  :class:`~rlm_pipeline.errors.LLMEndpointError` with its one line; a task
  whose client's circuit breaker trips anyway fails the job, and the driver
  raises the same typed error (not a Python-worker traceback).
- the result of :func:`apply` is materialised once (``localCheckpoint(eager=True)``),
  so later actions on it never call the model again.  :func:`plan` is the lazy
  half (the ``mapInArrow`` frame and its accumulator, no job, no call), which
  ``rp.spark.*`` steps return (:class:`~rlm_pipeline.ops.spark_step.SparkStep`).
- **the workers' Python** is checked first, once per session: one tiny Spark job
  (:func:`~rlm_pipeline.engines.spark_workers.check_workers`) raises
  :class:`~rlm_pipeline.errors.SparkWorkerError` before any model call when the
  executors' Python cannot import rlm_pipeline.
- **progress**: with a ``progress`` callback, the accumulator is polled while the
  job runs (:class:`~rlm_pipeline.ops.progress.ReportWatcher`), so rows, errors,
  cached rows and usage move as tasks finish.  Every input row is in it exactly
  once, in input order.
- **workers stay pandas-free**: output columns are built from Arrow buffers
  (:mod:`rlm_pipeline.ops.arrow_out`), not with ``pa.array``.

Examples
--------
>>> from rlm_pipeline.ops.spec import ClassifySpec
>>> out_fields(ClassifySpec("q", ("a", "b")))
[('label', 'string'), ('label_error', 'string')]
"""

from __future__ import annotations

import dataclasses
import logging
import os
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

from rlm_pipeline._quiet import known_warnings_filtered
from rlm_pipeline.errors import EngineError, InputError
from rlm_pipeline.llm.breaker import DEFAULT_ENDPOINT, reraised
from rlm_pipeline.llm.config import LLM, Budget
from rlm_pipeline.llm.usage import UsageMeter
from rlm_pipeline.ops.core import RowProgress, reply_breaker_error
from rlm_pipeline.ops.spark_task import ReportSum, TaskReport, task_function
from rlm_pipeline.ops.spec_base import OpSpec, output_names
from rlm_pipeline.ops.stats import MAX_VALUES, OpStats, merge_stats

if TYPE_CHECKING:
    from pyspark import Accumulator
    from pyspark.sql import DataFrame

__all__ = ["MAX_VALUES", "apply", "out_fields", "plan"]

logger = logging.getLogger(__name__)

#: Spark SQL type of each output kind (:data:`~rlm_pipeline.ops.spec_base.OUTPUT_KINDS`).
_SPARK_TYPES = {
    "string": "string",
    "integer": "bigint",
    "number": "double",
    "boolean": "boolean",
    "date": "date",
}


def out_fields(spec: OpSpec) -> list[tuple[str, str]]:
    """The columns the operator adds, as (name, Spark SQL type): values, then the error column."""
    fields = [(name, _SPARK_TYPES[kind]) for name, kind in spec.output_fields()]
    return [*fields, (spec.error_column, "string")]


def apply(
    df: DataFrame,
    spec: OpSpec,
    llm: LLM,
    *,
    meter: UsageMeter | None = None,
    budget: Budget | None = None,
    progress: RowProgress | None = None,
    parallelism: int | None = None,
) -> tuple[DataFrame, OpStats]:
    """Run ``spec`` over a Spark DataFrame; the materialised result and the stats.

    Parameters
    ----------
    df
        Input; the spec's output columns (:func:`out_fields`) are replaced if present.
    spec
        The operator (:class:`~rlm_pipeline.ops.spec_base.OpSpec`).
    llm
        Endpoint and limits for the whole job (shared out over the tasks).
    meter
        The executors' usage is added here.
    budget
        Limits for this call, less what ``meter`` already shows spent.
    progress
        Called with ``(rows, rows_failed)`` as tasks finish (their reports are
        polled while the job runs: :class:`~rlm_pipeline.ops.progress.ReportWatcher`).
    parallelism
        Tasks that run at once; default the context's ``defaultParallelism``.
    """
    from pyspark.errors import PySparkException

    from rlm_pipeline.engines.spark_workers import check_workers
    from rlm_pipeline.ops.progress import ReportWatcher

    _check_classic(df, spec)
    meter = meter if meter is not None else UsageMeter()
    with known_warnings_filtered():
        check_workers(df.sparkSession)  # before any model call: can the workers import us?
    llm = _absolute_cache(llm)
    _preflight(llm, meter, budget)
    left = budget.less(meter.snapshot()) if budget is not None else None
    reports = None
    try:
        with known_warnings_filtered():  # PySpark's pandas-version FutureWarning (we use Arrow)
            mapped, reports = plan(df, spec, llm, budget=left, parallelism=parallelism)
            assert reports is not None  # a classic session (checked above)
            watched = reports
            with (
                ReportWatcher(lambda: watched.value, progress)
                if progress is not None
                else nullcontext()
            ):
                result = mapped.localCheckpoint(eager=True)
    except PySparkException as exc:
        raise _task_error(exc, spec, llm) from exc
    finally:  # what a failed or cancelled job's finished tasks spent goes on the meter too
        report: TaskReport | None = reports.value if reports is not None else None
        if report is not None:
            meter.add(report.usage)
    assert report is not None
    return result, _stats(report, spec)


def _check_classic(df: DataFrame, spec: OpSpec) -> None:
    """The text column is there, and the session is classic (Connect has no accumulators)."""
    from rlm_pipeline.engines.spark_workers import is_connect

    if spec.column not in df.columns:
        msg = f"column {spec.column!r} not found; columns: {df.columns}"
        raise InputError(msg)
    if is_connect(df.sparkSession):
        msg = (
            "on Spark Connect the answers cannot be counted (no accumulators): use the lazy "
            "step, df.transform(rp.spark.classify(...)) or rp.spark.llm_map(...)"
        )
        raise InputError(msg)


def plan(
    df: DataFrame,
    spec: OpSpec,
    llm: LLM,
    *,
    budget: Budget | None = None,
    parallelism: int | None = None,
) -> tuple[DataFrame, Accumulator[TaskReport] | None]:
    """The lazy ``mapInArrow`` frame for ``spec`` and the accumulator its tasks report to.

    No model call and no Spark job: the tasks run when an action runs the
    frame (each action runs them again; every run adds its usage to the
    accumulator, and a partition's row counts replace its earlier ones).
    Output columns ``df`` already has are replaced; ``budget`` is split
    evenly over the tasks.  On Spark Connect the accumulator is None (Connect
    has none) and the tasks report nothing.  On a streaming frame the limits
    and the budget are shared over the tasks one micro-batch runs at once
    (the budget then holds per micro-batch).
    """
    from rlm_pipeline.engines.spark_workers import task_slots

    if spec.column not in df.columns:
        msg = f"column {spec.column!r} not found; columns: {df.columns}"
        raise InputError(msg)
    llm = _absolute_cache(llm)
    drop = [c for c in output_names(spec) if c in df.columns]
    if drop:
        df = df.drop(*drop)
    slots = max(1, parallelism or task_slots(df.sparkSession))
    return _map(df, spec, llm, budget, slots)


def _task_error(exc: Exception, spec: OpSpec, llm: LLM) -> Exception:
    """The typed error for a failed Spark job: a task's tripped breaker, else ``EngineError``."""
    tripped = reraised(str(exc), llm.resolved_base_url() or DEFAULT_ENDPOINT)
    if tripped is not None:  # a task's circuit breaker tripped
        return tripped
    unusable = reply_breaker_error(str(exc))
    if unusable is not None:  # a task's reply breaker tripped: no usable reply
        return unusable
    msg = f"Spark failed while running {type(spec).__name__}: {str(exc).splitlines()[0]}"
    return EngineError(msg)


def _stats(report: TaskReport, spec: OpSpec) -> OpStats:
    """The tasks' counts merged (one attempt per partition)."""
    parts = [report.stats[key] for key in sorted(report.stats)]
    return merge_stats(parts, spec).with_usage(report.usage).with_cached_rows(report.cached_rows)


def _map(
    df: DataFrame, spec: OpSpec, llm: LLM, budget: Budget | None, slots: int
) -> tuple[DataFrame, Accumulator[TaskReport] | None]:
    """The mapped (lazy) frame and the accumulator its tasks report to (None on Connect)."""
    from pyspark.sql.types import StructField, StructType

    from rlm_pipeline.engines.spark_workers import is_connect

    connect = is_connect(df.sparkSession)
    if df.isStreaming:  # no RDD, no sort: `slots` tasks at most run at once per micro-batch
        parts = min(slots, llm.max_concurrency)
    elif connect:  # no RDDs: the partitions are fixed only when the budget must be split
        parts = slots
        if budget is not None or slots > llm.max_concurrency:
            parts = min(slots, llm.max_concurrency)
            df = _fewer_partitions(df, parts)
    else:
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
    reports = None
    if not connect:
        sc = df.sparkSession.sparkContext
        reports = sc.accumulator(TaskReport(), ReportSum())  # type: ignore[arg-type]
    fields = list(df.schema.fields) + [
        StructField(name, _spark_type(kind), True) for name, kind in out_fields(spec)
    ]
    task = task_function(
        spec, task_llm, task_budget, _no_report if reports is None else reports.add
    )
    return df.mapInArrow(task, StructType(fields)), reports


def _spark_type(kind: str) -> Any:
    """The Spark type for a type name of :data:`_SPARK_TYPES` (no JVM needed: Connect too)."""
    from pyspark.sql import types as T

    return {
        "string": T.StringType(),
        "bigint": T.LongType(),
        "double": T.DoubleType(),
        "boolean": T.BooleanType(),
        "date": T.DateType(),
    }[kind]


def _no_report(report: TaskReport) -> None:
    """Where the tasks report on Spark Connect (no accumulators there): nowhere."""




def _absolute_cache(llm: LLM) -> LLM:
    if llm.cache_path and not os.path.isabs(llm.cache_path):
        return dataclasses.replace(llm, cache_path=os.path.abspath(llm.cache_path))
    return llm


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
