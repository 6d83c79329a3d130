"""Spark SQL functions: ``rlm_classify``, ``rlm_filter``, ``rlm_extract`` from ``spark.sql``.

:func:`register` adds the functions to a session (classic or Spark Connect), so
SQL written by hand, by a notebook cell or through the Thrift server of that
session can call the model::

    rp.spark.register(spark, llm=llm, extract={"rlm_extract_refund": "amount number, order_id string"})
    spark.sql(\"\"\"
        SELECT ticket_id,
               rlm_classify(question, array('account', 'billing', 'technical')).label AS label,
               rlm_extract_refund(question).amount AS amount
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
- **typed extract**: ``register(..., extract={"rlm_extract_refund": "amount number,
  order_id string"})`` registers ``rlm_extract_refund(text)`` →
  ``struct<amount: double, order_id: string, error: string>``, one typed field
  per declared field (``string``; ``integer`` → bigint; ``number`` → double;
  ``boolean``; ``date``; an enum ``a|b`` → string), all null when ``error`` is
  set.  A SQL function's result type is fixed when it is registered, so the
  fields are given at :func:`register`, one function per field set.
- ``rlm_extract(text, 'amount number, order_id string')`` (the fields in the
  query, any set) → ``struct<value: string, error: string>``: the checked
  object as JSON text, read with ``from_json(r.value, 'amount double, order_id
  string')``.  DESIGN.md writes this form with a typed struct; Spark cannot
  type a result from an argument's value, so the typed struct is the
  registered form above.

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
whole stays within them.

**Budget** (``budget=``, with ``tasks=``): as for the lazy transforms, each
task gets an even share, ``budget.share(tasks)``, enforced by its client (a
call that would pass the share is not sent; its rows get ``budget_exceeded``).
The function cannot learn how many tasks a query runs, so you say it:
``tasks`` is the most partitions a query evaluates the function over; a task
of a partition numbered ``tasks`` or more gets no share (its rows not in the
response cache get ``budget_exceeded`` naming ``tasks``), so the shares never
add up to more than the budget.  It holds for each function in each query
stage (every query starts again from the whole budget; a query calling two
functions, or a retried task, may spend a share again).

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
>>> _typed_fields("rlm_extract_refund", "amount number, order_id string")
(('amount', 'number'), ('order_id', 'string'))
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import re
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from rlm_pipeline.errors import InputError
from rlm_pipeline.llm.config import LLM, Budget
from rlm_pipeline.llm.usage import Usage, UsageMeter
from rlm_pipeline.ops.arrow_out import ARROW_TYPES, to_arrow
from rlm_pipeline.ops.core import Tally
from rlm_pipeline.ops.memo import RowResult
from rlm_pipeline.ops.spark_task import ReportSum, TaskReport
from rlm_pipeline.ops.spec import DEFAULT_BATCH_SIZE, DEFAULT_MAX_ROW_TOKENS, ClassifySpec
from rlm_pipeline.ops.stats import EMPTY_INPUT

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
#: The reason of a row whose second argument is null or empty.
_NO_ARGUMENT = {
    "rlm_classify": "invalid_label: the labels array is null or empty",
    "rlm_filter": "empty_input: the condition is null or blank",
    "rlm_extract": "parse_error: the fields are null or blank",
}
_BAD_ARGUMENT = {
    "rlm_classify": "invalid_label",
    "rlm_filter": EMPTY_INPUT,
    "rlm_extract": "parse_error",
}
#: A SQL function name :func:`register` accepts for a typed extract function.
_FUNCTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


@dataclass(frozen=True)
class _Options:
    """What every call of the registered functions shares (picklable)."""

    llm: LLM
    instructions: str | None
    batch_size: int
    max_row_tokens: int
    truncate: bool
    budget: Budget | None = None  # one task's share
    tasks: int | None = None  # partitions 0 .. tasks-1 get a share, the others none


class SqlFunctions:
    """What :func:`register` registered, and what the functions spent since.

    Attributes
    ----------
    names
        The SQL function names registered (the three generic ones, then the
        typed extract functions).
    typed
        ``{name: Spark SQL result type}`` of each typed extract function, e.g.
        ``{'rlm_extract_refund': 'struct<amount:double,order_id:string,error:string>'}``.
    parallelism
        Tasks the limits were shared over.
    budget, tasks
        The budget of each query's function (None: none) and the tasks it is
        shared over.
    """

    def __init__(
        self,
        names: tuple[str, ...],
        parallelism: int,
        reports: Any,
        typed: dict[str, str] | None = None,
        budget: Budget | None = None,
        tasks: int | None = None,
    ) -> None:
        self.names = names
        self.typed = dict(typed or {})
        self.parallelism = parallelism
        self.budget = budget
        self.tasks = tasks
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
    extract: Mapping[str, Any] | None = None,
    budget: Budget | None = None,
    tasks: int | None = None,
) -> SqlFunctions:
    """Register ``rlm_classify``, ``rlm_filter``, ``rlm_extract`` (and typed extract functions).

    Parameters
    ----------
    spark
        The ``SparkSession`` whose SQL gets the functions (classic or Connect).
    llm
        Endpoint and limits for each query as a whole (shared over the tasks).
    instructions
        Extra guidance sent with every classify / extract call.
    batch_size
        Rows per model call (1 for small local models).
    max_row_tokens, truncate
        Longest cell sent (estimated tokens); longer ones get ``input_too_long``
        or, with ``truncate=True``, are cut.
    parallelism
        Tasks that run at once (default: the session's default parallelism).
    extract
        ``{function name: fields}``: one typed function ``name(text)`` per
        entry, returning ``struct<field type, …, error string>``.  Fields as
        for ``rp.extract``: ``'amount number, order_id string'``,
        ``'amount:number, status:open|closed'`` or ``{'amount': 'number'}``.
        A field may not be called ``error`` (the struct's reason field).
    budget
        Calls / tokens / cost each function may spend in one query, shared
        evenly over ``tasks`` tasks (see the module docstring).
    tasks
        With ``budget``: the most partitions a query evaluates a function over
        (e.g. ``df.rdd.getNumPartitions()`` of the table); required then.

    Returns
    -------
    SqlFunctions
        The names registered, the typed result types, and ``usage`` (classic
        sessions) of the calls made.

    Raises
    ------
    InputError
        A bad option, function name or field list (before anything is registered).
    SparkWorkerError
        The workers' Python cannot import rlm_pipeline (checked before any call).

    Examples
    --------
    >>> fns = rp.spark.register(spark, llm=llm, extract={"rlm_refund": "amount number"})  # doctest: +SKIP
    >>> fns.typed  # doctest: +SKIP
    {'rlm_refund': 'struct<amount:double,error:string>'}
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
    task_budget = _task_budget(budget, tasks)
    llm.require_price(budget)  # a cost budget needs a priced model (refused here, not in tasks)
    typed = {
        name: _typed_spec(name, fields, instructions, batch_size, max_row_tokens, truncate)
        for name, fields in _typed_entries(extract)
    }
    from pyspark.sql.pandas.functions import ArrowUDFType, arrow_udf

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
    options = _Options(
        shared, instructions, batch_size, max_row_tokens, truncate, task_budget, tasks
    )
    reports = _accumulator(spark)
    add = reports.add if reports is not None else None
    functions: list[tuple[str, Any, Any]] = []
    for name, (value_name, value_type) in _RESULTS.items():
        result = _struct_type([(value_name, value_type)])
        functions.append((name, _udf(name, options, add), result))
    for name, spec in typed.items():
        functions.append((name, _typed_udf(spec, options, add), _struct_type(spec.output_fields())))
    for name, body, result in functions:
        function: Any = arrow_udf(body, result)
        if function.evalType != ArrowUDFType.SCALAR_ITER:  # pragma: no cover - from type hints
            msg = f"{name}: expected an iterator Arrow UDF, got eval type {function.evalType}"
            raise RuntimeError(msg)
        spark.udf.register(name, function)
    types = {
        name: _struct_type(spec.output_fields()).simpleString() for name, spec in typed.items()
    }
    return SqlFunctions(
        (*SQL_FUNCTIONS, *typed), slots, reports, types, budget if tasks else None, tasks
    )


def _task_budget(budget: Budget | None, tasks: int | None) -> Budget | None:
    """One task's share of ``budget`` (checked with ``tasks``)."""
    if budget is None:
        if tasks is not None:
            msg = "tasks= is only used with budget=; pass a budget or drop tasks"
            raise InputError(msg)
        return None
    if not isinstance(budget, Budget):
        msg = f"budget must be an rlm_pipeline.Budget, got {type(budget).__name__}"
        raise InputError(msg)
    if tasks is None:
        msg = (
            "budget= needs tasks=: the most partitions a query runs the functions over "
            "(e.g. df.rdd.getNumPartitions()), so each task gets budget/tasks"
        )
        raise InputError(msg)
    if isinstance(tasks, bool) or not isinstance(tasks, int) or tasks < 1:
        msg = f"tasks must be an integer >= 1, got {tasks!r}"
        raise InputError(msg)
    return budget.share(tasks)


def _typed_entries(extract: Mapping[str, Any] | None) -> list[tuple[str, Any]]:
    """``extract``'s entries, names checked (identifiers, not a generic function's name)."""
    if extract is None:
        return []
    if not isinstance(extract, Mapping):
        msg = (
            "extract must be a dict of SQL function name -> fields, e.g. "
            f"{{'rlm_extract_refund': 'amount number, order_id string'}}; got {type(extract).__name__}"
        )
        raise InputError(msg)
    seen: set[str] = set()
    for name in extract:
        if not isinstance(name, str) or not _FUNCTION_NAME.match(name):
            msg = (
                f"extract: function name {name!r} must be an identifier (letters, digits, _; "
                "not starting with a digit; at most 64 characters)"
            )
            raise InputError(msg)
        if name.lower() in SQL_FUNCTIONS or name.lower() in seen:
            msg = f"extract: function name {name!r} is taken (SQL names ignore case)"
            raise InputError(msg)
        seen.add(name.lower())
    return list(extract.items())


def _typed_fields(name: str, fields: Any) -> tuple[tuple[str, Any], ...]:
    """The checked fields of typed function ``name`` (no field may be called ``error``)."""
    from rlm_pipeline.ops.extract_op import check_fields

    try:
        checked = check_fields(fields)
    except InputError as exc:
        msg = f"extract: {name}: {exc}"
        raise InputError(msg) from exc
    lowered = [field.lower() for field, _ in checked]
    if "error" in lowered:
        msg = f"extract: {name}: a field may not be called 'error' (the struct's reason field)"
        raise InputError(msg)
    if len(set(lowered)) != len(lowered):
        msg = f"extract: {name}: field names must differ ignoring case (SQL ignores case)"
        raise InputError(msg)
    return checked


def _typed_spec(
    name: str,
    fields: Any,
    instructions: str | None,
    batch_size: int,
    max_row_tokens: int,
    truncate: bool,
) -> Any:
    """The :class:`~rlm_pipeline.ops.extract_op.ExtractSpec` typed function ``name`` runs."""
    from rlm_pipeline.ops.extract_op import ExtractSpec

    return ExtractSpec(
        "text",
        _typed_fields(name, fields),
        instructions=instructions,
        batch_size=batch_size,
        max_row_tokens=max_row_tokens,
        truncate=truncate,
    )


def _struct_type(fields: Any) -> Any:
    """``struct<name type, …, error string>`` for ``(name, output kind)`` pairs."""
    from pyspark.sql import types as T

    kinds = {
        "string": T.StringType,
        "integer": T.LongType,
        "number": T.DoubleType,
        "boolean": T.BooleanType,
        "date": T.DateType,
    }
    return T.StructType(
        [T.StructField(field, kinds[kind](), True) for field, kind in fields]
        + [T.StructField("error", T.StringType(), True)]
    )


def _udf(
    name: str, options: _Options, report: Callable[[TaskReport], None] | None
) -> Callable[[Iterator[tuple[pa.Array, pa.Array]]], Iterator[pa.Array]]:
    """The UDF body (a closure: pickled by value, calling this module's helpers)."""

    def rlm_function(batches: Iterator[tuple[pa.Array, pa.Array]]) -> Iterator[pa.Array]:
        yield from answer_batches(name, batches, options, report)

    return rlm_function


def _typed_udf(
    spec: Any, options: _Options, report: Callable[[TaskReport], None] | None
) -> Callable[[Iterator[pa.Array]], Iterator[pa.Array]]:
    """The body of a typed extract function (one argument: the text)."""

    def rlm_typed_extract(batches: Iterator[pa.Array]) -> Iterator[pa.Array]:
        yield from answer_batches(spec, ((texts, None) for texts in batches), options, report)

    return rlm_typed_extract


def answer_batches(
    name: Any,
    batches: Iterator[tuple[pa.Array, pa.Array | None]],
    options: _Options,
    report: Callable[[TaskReport], None] | None,
) -> Iterator[pa.Array]:
    """One task's work for function ``name``: a struct array ``(value…, error)`` per batch.

    ``name`` is a generic function's name, then a batch is ``(texts,
    arguments)`` (labels, a condition, fields); or a typed extract function's
    spec, then a batch is ``(texts, None)``.  One client for the whole task
    and one memo per argument, so texts are deduplicated across its batches;
    up to :data:`~rlm_pipeline.ops.pipeline.CHUNKS_IN_FLIGHT` batches are
    answered at once while the next one is read (as in the lazy steps' tasks),
    so the calls in flight do not drain at each batch's end; the task's usage
    is reported when it ends.
    """
    from rlm_pipeline.llm.client import LLMClient

    meter = UsageMeter()
    tally = Tally()
    part = _partition_id()
    budget, refused = _budget_for(options, part)
    loop = asyncio.new_event_loop()

    async def build() -> LLMClient:
        return LLMClient(options.llm, meter=meter, budget=budget)

    client = loop.run_until_complete(build())
    answers = _answers(name, batches, options, client, tally)
    try:
        while True:
            try:
                results = loop.run_until_complete(answers.__anext__())
            except StopAsyncIteration:
                break
            if refused is not None:
                results = [_refused(result, refused) for result in results]
            yield _struct(name, results)
    finally:
        loop.run_until_complete(answers.aclose())
        loop.run_until_complete(client.aclose())
        loop.close()
        if report is not None:
            report(TaskReport(meter.snapshot(), {part: tally.cached_rows}))


async def _answers(
    name: Any,
    batches: Iterator[tuple[pa.Array, pa.Array | None]],
    options: _Options,
    client: Any,
    tally: Tally,
) -> AsyncGenerator[list[RowResult], None]:
    """Each batch's results, in order; the next batch is read (in a thread) meanwhile."""
    from rlm_pipeline.ops.core import apply_texts
    from rlm_pipeline.ops.memo import Memo
    from rlm_pipeline.ops.pipeline import CHUNKS_IN_FLIGHT

    memos: dict[Any, Memo] = {}
    pending: deque[asyncio.Task[list[RowResult]]] = deque()
    try:
        while True:
            batch = await asyncio.to_thread(next, batches, None)
            if batch is None:
                break
            texts, arguments = batch
            rows = texts.to_pylist()
            job: Awaitable[list[RowResult]]
            if isinstance(name, str):
                keys = arguments.to_pylist() if arguments is not None else [None] * len(rows)
                job = _answer(name, rows, keys, options, client, memos, tally)
            else:  # a typed extract function: one spec for every row
                memo = memos.setdefault(None, Memo())
                job = apply_texts(rows, client, name, memo=memo, tally=tally)
            pending.append(asyncio.ensure_future(job))
            while pending and (pending[0].done() or len(pending) > CHUNKS_IN_FLIGHT):
                yield await pending.popleft()
        while pending:
            yield await pending.popleft()
    finally:
        for task in pending:
            task.cancel()


def _budget_for(options: _Options, part: int) -> tuple[Budget | None, str | None]:
    """This task's budget, and the reason its rows get when its partition has no share."""
    if options.budget is None or options.tasks is None:
        return None, None
    if part < options.tasks:
        return options.budget, None
    reason = (
        f"budget_exceeded: partition {part} is past tasks={options.tasks}, the tasks the "
        "budget is shared over (pass a larger tasks= to register, or fewer partitions)"
    )
    return Budget(max_calls=0), reason  # no call: no tokens, no cost


def _refused(result: RowResult, reason: str) -> RowResult:
    """A row of a task with no budget share: its reason says why (cached answers stay)."""
    value, error = result
    if error is not None and error.startswith("budget_exceeded"):
        return None, reason
    return value, error


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


def _struct(name: Any, results: list[RowResult]) -> pa.Array:
    """The result structs of one batch: generic ``(value, error)`` or typed ``(fields…, error)``."""
    errors = to_arrow([e for _, e in results], pa.string())
    if not isinstance(name, str):  # a typed extract function's spec: one array per field
        from rlm_pipeline.ops.spec_base import columns_of

        fields = name.output_fields()
        arrays = [
            to_arrow(values, ARROW_TYPES[kind])
            for (_, kind), values in zip(fields, columns_of(name, results), strict=True)
        ]
        return pa.StructArray.from_arrays(
            [*arrays, errors], names=[*(field for field, _ in fields), "error"]
        )
    value_name, value_type = _RESULTS[name]
    raw = [v for v, _ in results]
    if name == "rlm_extract":  # the checked object, as JSON text (dates as YYYY-MM-DD)
        raw = [None if v is None else json.dumps(v, default=str, sort_keys=True) for v in raw]
    values = to_arrow(raw, ARROW_TYPES[value_type])
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
