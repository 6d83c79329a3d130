"""Spark SQL functions: ``rlm_classify``, ``rlm_filter``, ``rlm_extract`` from ``spark.sql``.

:func:`register` adds the functions to a session (classic or Spark Connect), so
SQL written by hand, by a notebook cell or through the Thrift server of that
session can call the model::

    rp.spark.register(spark, llm=llm)
    spark.sql(\"\"\"
        SELECT ticket_id,
               rlm_classify(question, array('account', 'billing', 'technical')).label AS label
        FROM tickets\"\"\")

Each returns a struct whose ``error`` field is null or the reason the row has
no value (``empty_input``, ``input_too_long``, ``parse_error``,
``invalid_label``, ``missing_in_reply``, ``api_error``, ``budget_exceeded``),
so failed rows stay visible in SQL.  Every input row gets exactly one struct.

- ``rlm_classify(text, array('a', 'b', …))`` → ``struct<label: string, error: string>``,
  ``label`` one of the labels or null.
- ``rlm_filter(text, 'asks for a refund')`` → ``struct<value: boolean, error: string>``:
  whether the condition holds (``WHERE rlm_filter(q, '…').value`` keeps the rows
  where it does; a failed row has a null ``value``, so it is neither kept nor
  silently counted as false — look at ``error``).
- ``rlm_extract(text, 'amount:number, order_id:string')`` →
  ``struct<value: string, error: string>``: the checked object as JSON text,
  since a SQL function's result type is fixed when it is registered; read the
  fields with ``from_json(r.value, 'amount double, order_id string')``.

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

Like any Spark expression, the function runs each time a query that needs it
runs: cache the result (``CACHE TABLE``, ``df.cache()``) or set
``llm.cache_path`` so a second query answers from stored rows.

Examples
--------
>>> SQL_FUNCTIONS
('rlm_classify', 'rlm_filter', 'rlm_extract')
>>> _argument_key(["a", "b"]), _argument_key(None), _argument_key([]), _argument_key(" x ")
(('a', 'b'), None, None, 'x')
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
from collections.abc import Callable, Iterator
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

logger = logging.getLogger(__name__)

#: The functions :func:`register` adds.
SQL_FUNCTIONS = ("rlm_classify", "rlm_filter", "rlm_extract")

#: Each function's result: ``struct<NAME TYPE, error string>``.
_RESULTS = {
    "rlm_classify": ("label", "string"),
    "rlm_filter": ("value", "boolean"),
    "rlm_extract": ("value", "string"),
}
_ARROW_TYPES = {"string": pa.string(), "boolean": pa.bool_()}
#: The reason of a row whose second argument is null or empty.
_NO_ARGUMENT = {
    "rlm_classify": "invalid_label: the labels array is null or empty",
    "rlm_filter": "empty_input: the condition is null or blank",
    "rlm_extract": "parse_error: the fields are null or blank",
}
_BAD_ARGUMENT = {
    "rlm_classify": "invalid_label",
    "rlm_filter": "empty_input",
    "rlm_extract": "parse_error",
}


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
    """Register ``rlm_classify``, ``rlm_filter`` and ``rlm_extract`` in ``spark`` (classic or Connect).

    Parameters
    ----------
    spark
        The ``SparkSession`` whose SQL gets the functions.
    llm
        Endpoint and limits for each query as a whole (shared over the tasks).
    instructions
        Extra guidance sent with every ``rlm_classify`` / ``rlm_extract`` call.
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
    for label, number in (("batch_size", batch_size), ("max_row_tokens", max_row_tokens)):
        if isinstance(number, bool) or not isinstance(number, int) or number < 1:
            msg = f"{label} must be an integer >= 1, got {number!r}"
            raise InputError(msg)
    from pyspark.sql.pandas.functions import ArrowUDFType, arrow_udf
    from pyspark.sql.types import BooleanType, StringType, StructField, StructType

    from rlm_pipeline._quiet import known_warnings_filtered
    from rlm_pipeline.engines.spark_workers import check_workers, task_slots

    with known_warnings_filtered():
        check_workers(spark)
    slots = max(1, parallelism or task_slots(spark))
    if slots > llm.max_concurrency:  # more task slots than calls allowed at once
        logger.warning(
            "rlm SQL functions: %d task slots, max_concurrency=%d: each task gets one call at "
            "a time, and a query may run more calls at once than max_concurrency "
            "(pass parallelism= to say how many tasks run at once)",
            slots,
            llm.max_concurrency,
        )
        slots = llm.max_concurrency
    shared = llm.share(slots)
    if shared.cache_path and not os.path.isabs(shared.cache_path):
        shared = dataclasses.replace(shared, cache_path=os.path.abspath(shared.cache_path))
    options = _Options(shared, instructions, batch_size, max_row_tokens, truncate)
    reports = _accumulator(spark)
    add = reports.add if reports is not None else None
    sql_types = {"string": StringType, "boolean": BooleanType}
    for name, (value_name, value_type) in _RESULTS.items():
        result = StructType(
            [
                StructField(value_name, sql_types[value_type](), True),
                StructField("error", StringType(), True),
            ]
        )
        # (the stubs list no StructType return type)
        function = arrow_udf(_udf(name, options, add), result)  # type: ignore[call-overload]
        if function.evalType != ArrowUDFType.SCALAR_ITER:  # pragma: no cover - from type hints
            msg = f"{name}: expected an iterator Arrow UDF, got eval type {function.evalType}"
            raise RuntimeError(msg)
        spark.udf.register(name, function)
    return SqlFunctions(SQL_FUNCTIONS, slots, reports)


def _udf(
    name: str, options: _Options, report: Callable[[TaskReport], None] | None
) -> Callable[[Iterator[tuple[pa.Array, pa.Array]]], Iterator[pa.Array]]:
    """The UDF body (a closure: pickled by value, calling this module's helpers)."""

    def rlm_function(batches: Iterator[tuple[pa.Array, pa.Array]]) -> Iterator[pa.Array]:
        yield from answer_batches(name, batches, options, report)

    return rlm_function


def answer_batches(
    name: str,
    batches: Iterator[tuple[pa.Array, pa.Array]],
    options: _Options,
    report: Callable[[TaskReport], None] | None,
) -> Iterator[pa.Array]:
    """One task's work for function ``name``: a struct array ``(value, error)`` per batch.

    A batch is ``(texts, arguments)`` (labels, a condition, fields).  One
    client for the whole task and one memo per argument, so texts are
    deduplicated across its batches; the task's usage is reported when it ends.
    """
    from rlm_pipeline.llm.client import LLMClient
    from rlm_pipeline.ops.memo import Memo

    meter = UsageMeter()
    tally = Tally()
    memos: dict[Any, Memo] = {}
    loop = asyncio.new_event_loop()

    async def build() -> LLMClient:
        return LLMClient(options.llm, meter=meter)

    client = loop.run_until_complete(build())
    try:
        for texts, arguments in batches:
            results = loop.run_until_complete(
                _answer(
                    name, texts.to_pylist(), arguments.to_pylist(), options, client, memos, tally
                )
            )
            yield _struct(name, results)
    finally:
        loop.run_until_complete(client.aclose())
        loop.close()
        if report is not None:
            part = _partition_id()
            report(TaskReport(meter.snapshot(), {part: tally.cached_rows}))


async def _answer(
    name: str,
    texts: list[str | None],
    arguments: list[Any],
    options: _Options,
    client: Any,
    memos: dict[Any, Any],
    tally: Tally,
) -> list[RowResult]:
    """Results for one batch: rows grouped by their argument, groups answered at once."""
    from rlm_pipeline.ops.core import apply_texts
    from rlm_pipeline.ops.memo import Memo

    groups: dict[Any, list[int]] = {}
    for i, argument in enumerate(arguments):
        groups.setdefault(_argument_key(argument), []).append(i)
    results: list[RowResult] = [(None, _NO_ARGUMENT[name])] * len(texts)
    jobs = []
    keys = []
    for key, rows in groups.items():
        if key is None:
            continue
        try:
            spec = _spec(name, key, options)
        except (InputError, TypeError, ValueError) as exc:
            for i in rows:
                results[i] = (None, f"{_BAD_ARGUMENT[name]}: {exc}")
            continue
        memo = memos.setdefault(key, Memo())
        jobs.append(apply_texts([texts[i] for i in rows], client, spec, memo=memo, tally=tally))
        keys.append(rows)
    for rows, answered in zip(keys, await asyncio.gather(*jobs), strict=True):
        for i, result in zip(rows, answered, strict=True):
            results[i] = result
    return results


def _argument_key(argument: Any) -> Any:
    """A row's argument as a key: labels as a tuple, text stripped (None: none given)."""
    if isinstance(argument, str):
        return argument.strip() or None
    if not argument:
        return None
    return tuple(argument)


def _spec(name: str, key: Any, options: _Options) -> Any:
    """The operator spec of function ``name`` for one argument (labels, condition, fields)."""
    common: dict[str, Any] = {
        "batch_size": options.batch_size,
        "max_row_tokens": options.max_row_tokens,
        "truncate": options.truncate,
    }
    if name == "rlm_classify":
        return ClassifySpec("text", key, instructions=options.instructions, **common)
    if name == "rlm_filter":
        from rlm_pipeline.ops.filter_op import FilterSpec

        return FilterSpec("text", key, **common)
    from rlm_pipeline.ops.extract_op import ExtractSpec, check_fields, parse_fields

    fields = check_fields(parse_fields(key))
    return ExtractSpec("text", fields, instructions=options.instructions, **common)


def _struct(name: str, results: list[RowResult]) -> pa.Array:
    value_name, value_type = _RESULTS[name]
    raw = [v for v, _ in results]
    if name == "rlm_extract":  # the checked object, as JSON text (dates as YYYY-MM-DD)
        raw = [None if v is None else json.dumps(v, default=str, sort_keys=True) for v in raw]
    values = to_arrow(raw, _ARROW_TYPES[value_type])
    errors = to_arrow([e for _, e in results], pa.string())
    return pa.StructArray.from_arrays([values, errors], names=[value_name, "error"])


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
