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

Cascades (``classify`` and ``filter`` with ``cascade=rp.Cascade(proxy=small)``)
are the one exception to laziness: the step is a :class:`CascadeStep`, and
``df.transform(step)`` runs the Spark jobs at once.  The confidence threshold
comes from the proxy's answers over the whole frame (a calibration sample of
them is answered by the oracle too), so the oracle's pass cannot be planned
before the proxy's pass has run; the step runs the three passes
(:func:`rlm_pipeline.ops.cascade.run_cascade`: proxy, calibration, oracle for
the rows below the threshold) when it is applied, logs that it does, and
returns the materialised result with ``<output_column>_source`` and
``<output_column>_confidence`` (later actions make no model call).
``step.cascade`` then holds the report (escalated share, threshold, sample
agreement and its bound, cost with vs without).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rlm_pipeline.llm.config import LLM, Budget
from rlm_pipeline.llm.usage import Usage, UsageMeter
from rlm_pipeline.ops.cascade import Cascade
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

if TYPE_CHECKING:
    from rlm_pipeline.ops.cascade_report import CascadeReport
    from rlm_pipeline.ops.semantic import FilterStats
    from rlm_pipeline.ops.spark_task import TaskReport
    from rlm_pipeline.ops.stats import OpStats

__all__ = [
    "CascadeStep",
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


logger = logging.getLogger(__name__)


def _step(
    spec: OpSpec,
    llm: LLM,
    overwrite: bool,
    budget: Budget | None,
    cascade: Cascade | None = None,
) -> SparkStep:
    """The ``DataFrame -> DataFrame`` step running ``spec`` (see the module docstring):
    lazy, or a :class:`CascadeStep` with ``cascade``."""
    if cascade is not None:
        return CascadeStep(spec, llm, cascade, overwrite=overwrite, budget=budget)
    return SparkStep(spec, llm, overwrite=overwrite, budget=budget)


class CascadeStep(SparkStep):
    """A step with a cascade: applying it runs the jobs (see the module docstring for why).

    ``df.transform(step)`` runs :func:`rlm_pipeline.ops.api.run_op` with the
    cascade on ``df`` (``on_error`` given: :func:`rlm_pipeline.ops.semantic.run_filter`,
    the rows where the condition holds) and returns the materialised frame.
    After it, :attr:`usage` (both models, every application so far),
    :attr:`stats` and :attr:`cascade` (the last application's) are filled, and
    :attr:`filter_stats` for a filter.

    Examples
    --------
    >>> from rlm_pipeline.ops.spec import ClassifySpec
    >>> step = CascadeStep(ClassifySpec("q", ("a", "b")), LLM(), Cascade(LLM(model="small")))
    >>> step.cascade is None, step.usage.calls
    (True, 0)
    """

    def __init__(
        self,
        spec: OpSpec,
        llm: LLM,
        cascade: Cascade,
        *,
        on_error: str | None = None,
        overwrite: bool = False,
        budget: Budget | None = None,
    ) -> None:
        super().__init__(spec, llm, overwrite=overwrite, budget=budget)
        if not isinstance(cascade, Cascade):
            from rlm_pipeline.errors import InputError

            msg = f"cascade must be an rlm_pipeline.Cascade, got {type(cascade).__name__}"
            raise InputError(msg)
        self.cascade_config = cascade
        self.on_error = on_error
        self._meter = UsageMeter()
        self._stats: OpStats | None = None
        self._filter_stats: FilterStats | None = None

    def __call__(self, df: Any) -> Any:
        """The answered frame (runs the proxy, calibration and oracle passes now)."""
        from rlm_pipeline._lazy import require_spark

        require_spark()
        from rlm_pipeline.engines.load import engine_for
        from rlm_pipeline.engines.spark_workers import check_workers
        from rlm_pipeline.ops.api import run_op

        engine = engine_for(df, "spark")
        frame = engine.read(df)
        check_workers(frame.sparkSession)
        logger.info(
            "%s with a cascade (%s -> %s) runs its Spark jobs now, at transform: the threshold "
            "needs the proxy's answers first",
            self.spec.op_name,
            self.cascade_config.proxy.model,
            self.llm.model,
        )
        meter = UsageMeter()
        try:
            if self.on_error is None:
                out, stats = run_op(
                    frame,
                    self.spec,
                    self.llm,
                    engine="spark",
                    meter=meter,
                    budget=self.budget,
                    overwrite=self.overwrite,
                    cascade=self.cascade_config,
                )
            else:
                out, stats = self._filter(frame, meter)
        finally:
            self._meter.add(meter.snapshot())
        self._stats = stats
        return out

    def _filter(self, frame: Any, meter: UsageMeter) -> tuple[Any, OpStats]:
        """``run_filter`` with the cascade; the kept rows and the operator's stats."""
        from rlm_pipeline.ops.api import run_op
        from rlm_pipeline.ops.semantic import judge

        answered, stats = run_op(
            frame,
            self.spec,
            self.llm,
            engine="spark",
            meter=meter,
            budget=self.budget,
            overwrite=self.overwrite,
            warn=False,
            cascade=self.cascade_config,
        )
        self._stats = stats
        self._filter_stats = judge(stats, str(self.on_error), self.llm)  # raises with "raise"
        from rlm_pipeline.engines.load import engine_for

        kept = engine_for(answered, "spark").rows_where(
            answered,
            self.spec.output_column,
            failed=self.spec.error_column,
            failed_rows="keep" if self.on_error == "keep" else "drop",
        )
        return kept, stats

    def report(self) -> TaskReport:
        """Empty: a cascade's stats come from :func:`~rlm_pipeline.ops.api.run_op`, not the tasks."""
        from rlm_pipeline.ops.spark_task import TaskReport

        return TaskReport()

    @property
    def usage(self) -> Usage:
        """Both models' calls, tokens and cost, every application so far."""
        return self._meter.snapshot()

    @property
    def stats(self) -> OpStats | None:
        """Row counts of the last application (None before one), with ``cascade``."""
        return self._stats

    @property
    def cascade(self) -> CascadeReport | None:
        """The last application's cascade report (None before one)."""
        return None if self._stats is None else self._stats.cascade

    @property
    def filter_stats(self) -> FilterStats | None:
        """A filter's kept / dropped / failed rows of the last application (None otherwise)."""
        return self._filter_stats

    def __repr__(self) -> str:
        return (
            f"CascadeStep({type(self.spec).__name__} on {self.spec.column!r}, "
            f"proxy={self.cascade_config.proxy.model!r}, runs at transform, usage={self.usage})"
        )


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
    cascade: Cascade | None = None,
) -> SparkStep:
    """A lazy ``DataFrame -> DataFrame`` step that adds ``output_column`` and its error column.

    ``budget`` caps what one run of the step spends (rows left when it is
    reached get ``budget_exceeded``), split evenly over the tasks.  With
    ``cascade`` (:class:`~rlm_pipeline.ops.cascade.Cascade`) the step is a
    :class:`CascadeStep`: not lazy, it runs when applied (see the module
    docstring), and adds ``<output_column>_source`` / ``<output_column>_confidence``.
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
    return _step(spec, llm, overwrite, budget, cascade)


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
    cascade: Cascade | None = None,
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

    With ``cascade`` (:class:`~rlm_pipeline.ops.cascade.Cascade`) the step is
    a :class:`CascadeStep`: not lazy, it runs when applied (see the module
    docstring); ``on_error="raise"`` then raises
    :class:`~rlm_pipeline.errors.UnansweredRowsError` from ``df.transform``,
    and the kept rows carry ``filter_source`` / ``filter_confidence``.
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
    if cascade is not None:
        from rlm_pipeline.ops.filter_op import check_on_error

        return CascadeStep(spec, llm, cascade, on_error=check_on_error(on_error), budget=budget)
    return FilterStep(spec, llm, on_error, budget=budget)  # type: ignore[arg-type]
