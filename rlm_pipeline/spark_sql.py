"""Spark SQL functions: ``rlm_classify(text, array(labels…))`` callable from ``spark.sql``.

:func:`register` adds the functions to a session (classic or Spark Connect), so
SQL written by hand, by a notebook cell or through the Thrift server of that
session can call the model::

    rp.spark.register(spark, llm=llm)
    spark.sql(\"\"\"
        SELECT ticket_id,
               rlm_classify(question, array('account', 'billing', 'technical')).label AS label
        FROM tickets\"\"\")

``rlm_classify(text, labels)`` returns ``struct<label: string, error: string>``:
``label`` is one of ``labels`` or null, and ``error`` is null or the reason a
row has no label (``empty_input``, ``input_too_long``, ``parse_error``,
``invalid_label``, ``missing_in_reply``, ``api_error``, ``budget_exceeded``),
so failed rows stay visible in SQL.  Every input row gets exactly one struct.

How it runs: an Arrow UDF over batches of rows (``arrow_udf``, iterator form:
no pandas in the workers).  Each Spark task builds one client from the
picklable :class:`~rlm_pipeline.llm.config.LLM` for all its batches, dedups
texts across them, sends ``batch_size`` rows per call with the client's
concurrency, and goes through the response cache (``llm.cache_path``: rows
answered before are not sent again) — the same row machinery as
``rp.spark.classify`` (:func:`~rlm_pipeline.ops.core.apply_texts`,
:class:`~rlm_pipeline.ops.spark_task.TaskReport`).  ``max_concurrency``,
``rpm`` and ``tpm`` are shared out over the tasks that run at once
(``parallelism``, default the session's default parallelism), so a query as a
whole stays within them.  A query cannot be given a call/token/cost budget:
the function does not know how many tasks a query runs.

Before registering, one tiny Spark job checks that the workers' Python can
import rlm_pipeline (:func:`~rlm_pipeline.engines.spark_workers.check_workers`).
Only ``rlm_classify`` is registered today; ``rlm_filter`` and ``rlm_extract``
follow with the filter and extract operators.

Like any Spark expression, the function runs each time a query that needs it
runs: cache the result (``CACHE TABLE``, ``df.cache()``) or set
``llm.cache_path`` so a second query answers from stored rows.

Examples
--------
>>> SQL_FUNCTIONS
('rlm_classify',)
>>> _labels_key(["a", "b"]), _labels_key(None), _labels_key([])
(('a', 'b'), None, None)
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from rlm_pipeline.errors import InputError
from rlm_pipeline.llm.config import LLM
from rlm_pipeline.llm.usage import Usage, UsageMeter
from rlm_pipeline.ops.arrow_out import to_arrow
from rlm_pipeline.ops.core import Tally
from rlm_pipeline.ops.memo import RowResult
from rlm_pipeline.ops.spark_task import ReportSum, TaskReport
from rlm_pipeline.ops.spec import DEFAULT_BATCH_SIZE, DEFAULT_MAX_ROW_TOKENS, ClassifySpec

__all__ = ["SQL_FUNCTIONS", "SqlFunctions", "register"]

#: The functions :func:`register` adds.
SQL_FUNCTIONS = ("rlm_classify",)

_NO_LABELS = "invalid_label: the labels array is null or empty"


@dataclass(frozen=True)
class _Options:
    """What every call of the registered functions shares (picklable)."""

    llm: LLM
    instructions: str | None
    batch_size: int
    max_row_tokens: int
    truncate: bool


class SqlFunctions:
    """What :func:`register` registered, and what the functions spent since.

    Attributes
    ----------
    names
        The SQL function names registered.
    parallelism
        Tasks the limits were shared over.
    """

    def __init__(self, names: tuple[str, ...], parallelism: int, reports: Any) -> None:
        self.names = names
        self.parallelism = parallelism
        self._reports = reports

    @property
    def usage(self) -> Usage | None:
        """Calls, tokens and cost of every finished task so far (None on Spark Connect).

        Read from an accumulator the tasks add to when they end; Spark Connect
        sessions have no accumulators.
        """
        if self._reports is None:
            return None
        report: TaskReport = self._reports.value
        return report.usage

    @property
    def cached_rows(self) -> int | None:
        """Rows answered from stored row answers so far (None on Spark Connect)."""
        if self._reports is None:
            return None
        report: TaskReport = self._reports.value
        return report.cached_rows

    def __repr__(self) -> str:
        return f"SqlFunctions({', '.join(self.names)}; limits shared over {self.parallelism} tasks)"


def register(
    spark: Any,
    *,
    llm: LLM,
    instructions: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_row_tokens: int = DEFAULT_MAX_ROW_TOKENS,
    truncate: bool = False,
    parallelism: int | None = None,
) -> SqlFunctions:
    """Register ``rlm_classify`` in ``spark`` (classic or Spark Connect session).

    Parameters
    ----------
    spark
        The ``SparkSession`` whose SQL gets the functions.
    llm
        Endpoint and limits for each query as a whole (shared over the tasks).
    instructions
        Extra guidance sent with every ``rlm_classify`` call.
    batch_size
        Rows per model call (1 for small local models).
    max_row_tokens, truncate
        Longest cell sent (estimated tokens); longer ones get ``input_too_long``
        or, with ``truncate=True``, are cut.
    parallelism
        Tasks that run at once (default: the session's default parallelism).

    Returns
    -------
    SqlFunctions
        The names registered and ``usage`` (classic sessions) of the calls made.

    Raises
    ------
    SparkWorkerError
        The workers' Python cannot import rlm_pipeline (checked before any call).
    """
    from rlm_pipeline._lazy import require_spark

    require_spark()
    if not isinstance(llm, LLM):
        msg = f"llm must be an rlm_pipeline.LLM, got {type(llm).__name__}"
        raise InputError(msg)
    if batch_size < 1 or max_row_tokens < 1:
        raise InputError("batch_size and max_row_tokens must be >= 1")
    from pyspark.sql.pandas.functions import ArrowUDFType, arrow_udf
    from pyspark.sql.types import StringType, StructField, StructType

    from rlm_pipeline._quiet import known_warnings_filtered
    from rlm_pipeline.engines.spark_workers import check_workers, task_slots

    with known_warnings_filtered():
        check_workers(spark)
    slots = max(1, parallelism or task_slots(spark))
    shared = llm.share(slots)
    if shared.cache_path and not os.path.isabs(shared.cache_path):
        shared = dataclasses.replace(shared, cache_path=os.path.abspath(shared.cache_path))
    options = _Options(shared, instructions, batch_size, max_row_tokens, truncate)
    reports = _accumulator(spark)
    add = reports.add if reports is not None else None
    result = StructType(
        [StructField("label", StringType(), True), StructField("error", StringType(), True)]
    )
    # (the stubs list no StructType return type)
    function = arrow_udf(_classify_udf(options, add), result)  # type: ignore[call-overload]
    if function.evalType != ArrowUDFType.SCALAR_ITER:  # pragma: no cover - read from type hints
        msg = f"rlm_classify: expected an iterator Arrow UDF, got eval type {function.evalType}"
        raise RuntimeError(msg)
    spark.udf.register("rlm_classify", function)
    return SqlFunctions(SQL_FUNCTIONS, slots, reports)


def _classify_udf(
    options: _Options, report: Callable[[TaskReport], None] | None
) -> Callable[[Iterator[tuple[pa.Array, pa.Array]]], Iterator[pa.Array]]:
    """The UDF body (a closure: pickled by value, calling this module's helpers)."""

    def rlm_classify(batches: Iterator[tuple[pa.Array, pa.Array]]) -> Iterator[pa.Array]:
        yield from answer_batches(batches, options, report)

    return rlm_classify


def answer_batches(
    batches: Iterator[tuple[pa.Array, pa.Array]],
    options: _Options,
    report: Callable[[TaskReport], None] | None,
) -> Iterator[pa.Array]:
    """One task's work: a struct array ``(label, error)`` per ``(texts, labels)`` batch.

    One client and one memo per label set for the whole task, so texts are
    deduplicated across its batches; the task's usage is reported when it ends.
    """
    from rlm_pipeline.llm.client import LLMClient
    from rlm_pipeline.ops.memo import Memo

    meter = UsageMeter()
    tally = Tally()
    memos: dict[tuple[str, ...], Memo] = {}
    loop = asyncio.new_event_loop()

    async def build() -> LLMClient:
        return LLMClient(options.llm, meter=meter)

    client = loop.run_until_complete(build())
    try:
        for texts, labels in batches:
            results = loop.run_until_complete(
                _answer(texts.to_pylist(), labels.to_pylist(), options, client, memos, tally)
            )
            yield _struct(results)
    finally:
        loop.run_until_complete(client.aclose())
        loop.close()
        if report is not None:
            part = _partition_id()
            report(TaskReport(meter.snapshot(), {part: tally.cached_rows}))


async def _answer(
    texts: list[str | None],
    labels: list[Sequence[str] | None],
    options: _Options,
    client: Any,
    memos: dict[tuple[str, ...], Any],
    tally: Tally,
) -> list[RowResult]:
    """Results for one batch: rows grouped by their label set, groups answered at once."""
    from rlm_pipeline.ops.core import apply_texts
    from rlm_pipeline.ops.memo import Memo

    groups: dict[tuple[str, ...] | None, list[int]] = {}
    for i, row_labels in enumerate(labels):
        groups.setdefault(_labels_key(row_labels), []).append(i)
    results: list[RowResult] = [(None, _NO_LABELS)] * len(texts)
    jobs = []
    keys = []
    for key, rows in groups.items():
        if key is None:
            continue
        try:
            spec = ClassifySpec(
                "text",
                key,
                instructions=options.instructions,
                batch_size=options.batch_size,
                max_row_tokens=options.max_row_tokens,
                truncate=options.truncate,
            )
        except (InputError, TypeError) as exc:
            for i in rows:
                results[i] = (None, f"invalid_label: {exc}")
            continue
        memo = memos.setdefault(key, Memo())
        jobs.append(apply_texts([texts[i] for i in rows], client, spec, memo=memo, tally=tally))
        keys.append(rows)
    for rows, answered in zip(keys, await asyncio.gather(*jobs), strict=True):
        for i, result in zip(rows, answered, strict=True):
            results[i] = result
    return results


def _labels_key(labels: Sequence[str] | None) -> tuple[str, ...] | None:
    """A row's label set as a key (None: no labels given)."""
    if not labels:
        return None
    return tuple(labels)


def _struct(results: list[RowResult]) -> pa.Array:
    values = to_arrow([v for v, _ in results], pa.string())
    errors = to_arrow([e for _, e in results], pa.string())
    return pa.StructArray.from_arrays([values, errors], names=["label", "error"])


def _partition_id() -> int:
    from pyspark import TaskContext

    context = TaskContext.get()
    return context.partitionId() if context is not None else 0


def _accumulator(spark: Any) -> Any:
    """A :class:`TaskReport` accumulator on a classic session; None on Spark Connect."""
    from rlm_pipeline.engines.spark_workers import is_connect

    if is_connect(spark):
        return None
    return spark.sparkContext.accumulator(TaskReport(), ReportSum())
