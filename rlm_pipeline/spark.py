"""Spark-native entry points, shaped for ``DataFrame.transform``, and SQL functions.

Examples
--------
>>> import rlm_pipeline as rp
>>> step = rp.spark.classify("question", ["billing", "other"], llm=rp.LLM())
>>> callable(step), step.usage.calls
(True, 0)

``df.transform(step)`` returns a new Spark DataFrame with ``label`` and
``label_error`` — lazily, like any Spark transform: the model calls run in
``mapInArrow`` tasks on the executors when an action (``write``,
``collect``, ``count``, ``show``) runs the plan, each task with its share of
the limits.  After the action, ``step.usage`` (calls, tokens, cost of every
run so far) and ``step.stats`` (rows, answered, errors by reason, values, of
the last run) are filled from the tasks' accumulator (classic sessions; Spark
Connect has none).  Spark runs a plan again for every action that needs it
(a second action, a self-join, the sampling job of an ``orderBy``), which
would call the model again for the same rows, so the returned frame is
persisted (``MEMORY_AND_DISK``, lazily: the first action fills it); call
``out.unpersist()`` when done.  Blocks lost with an executor are recomputed,
with model calls, unless ``llm.cache_path`` is set (then from stored answers).  ``with step.typed_errors(): out.write...`` turns a model
failure in the tasks (endpoint down, key refused, unusable replies) into the
library's one-line error.  For a materialised result with stats at once,
use :func:`rlm_pipeline.classify` on the Spark DataFrame.

Checked before any model call: the arguments when the step is built
(``labels`` given as one string raises ``TypeError``, a bad ``batch_size``
``InputError``); when it is applied, the text column, an ``output_column`` the
input already has (``InputError`` unless ``overwrite=True``), and whether the
workers' Python can import rlm_pipeline (one small Spark job per session,
:class:`~rlm_pipeline.errors.SparkWorkerError`).  ``budget=`` caps each run's
spend, split evenly over the tasks.  Cells longer than ``max_row_tokens`` get
``input_too_long`` (or are cut, with ``truncate=True``).

:func:`register` adds ``rlm_classify(text, array(labels))`` to a session's SQL
(see :mod:`rlm_pipeline.spark_sql`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rlm_pipeline.llm.config import LLM, Budget
from rlm_pipeline.ops.multi_steps import aggregate, join, top_k
from rlm_pipeline.ops.spark_step import SparkStep
from rlm_pipeline.ops.spec import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_ROW_TOKENS,
    ClassifySpec,
    MapSpec,
    OpSpec,
    OutputType,
    check_labels,
)

__all__ = [
    "SparkStep",
    "aggregate",
    "classify",
    "extract",
    "filter",
    "join",
    "llm_map",
    "register",
    "top_k",
]


def _step(spec: OpSpec, llm: LLM, overwrite: bool, budget: Budget | None) -> SparkStep:
    """The lazy ``DataFrame -> DataFrame`` step running ``spec`` (see the module docstring)."""
    return SparkStep(spec, llm, overwrite=overwrite, budget=budget)


def register(spark: Any, *, llm: LLM, **options: Any) -> Any:
    """Register the SQL functions in ``spark``: see :func:`rlm_pipeline.spark_sql.register`."""
    from rlm_pipeline.spark_sql import register as register_sql

    return register_sql(spark, llm=llm, **options)


def classify(
    column: str,
    labels: Sequence[str],
    *,
    llm: LLM,
    instructions: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    output_column: str = "label",
    overwrite: bool = False,
    max_row_tokens: int = DEFAULT_MAX_ROW_TOKENS,
    truncate: bool = False,
    budget: Budget | None = None,
) -> SparkStep:
    """A lazy ``DataFrame -> DataFrame`` step that adds ``output_column`` and its error column.

    ``budget`` caps what one run of the step spends (rows left when it is
    reached get ``budget_exceeded``), split evenly over the tasks.
    """
    spec = ClassifySpec(
        column=column,
        labels=check_labels(labels),
        instructions=instructions,
        batch_size=batch_size,
        output_column=output_column,
        max_row_tokens=max_row_tokens,
        truncate=truncate,
    )
    return _step(spec, llm, overwrite, budget)


def llm_map(
    column: str,
    instruction: str,
    *,
    llm: LLM,
    output_type: OutputType = "string",
    batch_size: int = DEFAULT_BATCH_SIZE,
    output_column: str = "value",
    overwrite: bool = False,
    max_row_tokens: int = DEFAULT_MAX_ROW_TOKENS,
    truncate: bool = False,
    budget: Budget | None = None,
) -> SparkStep:
    """A lazy ``DataFrame -> DataFrame`` step that adds ``output_column`` and its error column."""
    spec = MapSpec(
        column=column,
        instruction=instruction,
        output_type=output_type,
        batch_size=batch_size,
        output_column=output_column,
        max_row_tokens=max_row_tokens,
        truncate=truncate,
    )
    return _step(spec, llm, overwrite, budget)


def extract(
    column: str,
    fields: dict[str, Any],
    *,
    llm: LLM,
    instructions: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    overwrite: bool = False,
    max_row_tokens: int = DEFAULT_MAX_ROW_TOKENS,
    truncate: bool = False,
    budget: Budget | None = None,
) -> SparkStep:
    """A lazy ``DataFrame -> DataFrame`` step adding one column per field and ``extract_error``.

    See :func:`rlm_pipeline.extract` for the types and the reasons.
    """
    from rlm_pipeline.ops.extract_op import ExtractSpec

    spec = ExtractSpec(
        column=column,
        fields=fields,  # type: ignore[arg-type]  # checked and frozen by the spec
        instructions=instructions,
        batch_size=batch_size,
        max_row_tokens=max_row_tokens,
        truncate=truncate,
    )
    return _step(spec, llm, overwrite, budget)


def filter(  # noqa: A001 - rp.spark.filter, beside rp.filter
    column: str,
    condition: str,
    *,
    llm: LLM,
    on_error: str = "raise",
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_row_tokens: int = DEFAULT_MAX_ROW_TOKENS,
    truncate: bool = False,
    budget: Budget | None = None,
) -> SparkStep:
    """A lazy ``DataFrame -> DataFrame`` step keeping the rows where ``condition`` holds.

    Lazy like the other steps: ``df.transform(step)`` makes no model call; an
    action answers the rows and keeps those where the condition holds
    (input columns only; ``filter_error`` too with ``on_error="keep"``).
    Rows without an answer follow ``on_error``: ``"raise"`` (default) makes
    the action fail on the first such row — run actions inside
    ``with step.typed_errors():`` to get
    :class:`~rlm_pipeline.errors.UnansweredRowsError` (else Spark's error
    carries the same text); ``"keep"`` keeps them, ``"drop"`` drops them.
    After an action, ``step.filter_stats`` counts kept / dropped / failed
    rows.  For the counts in the error (all rows answered first), use
    :func:`rlm_pipeline.filter` on the Spark DataFrame.
    """
    from rlm_pipeline.ops.filter_op import FilterSpec
    from rlm_pipeline.ops.semantic import FilterStep

    spec = FilterSpec(
        column=column,
        condition=condition,
        batch_size=batch_size,
        max_row_tokens=max_row_tokens,
        truncate=truncate,
    )
    return FilterStep(spec, llm, on_error, budget=budget)  # type: ignore[arg-type]
