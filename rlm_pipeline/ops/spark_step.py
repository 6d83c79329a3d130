"""A lazy Spark step: ``df.transform(step)`` plans the model calls, an action runs them.

:class:`SparkStep` is what ``rp.spark.classify`` / ``rp.spark.llm_map`` (and
the other row-wise operators) return.  Applying it to a DataFrame checks the
input (the text column, the output columns, the workers' Python: see
:func:`~rlm_pipeline.engines.spark_workers.check_workers`) and returns the
``mapInArrow`` plan of :func:`rlm_pipeline.ops.spark_fanout.plan` — no model
call yet, like any Spark transform.  The calls run when an action
(``write``, ``collect``, ``count``, ``show``…) runs the plan; the tasks report
their usage and row counts to an accumulator, which the step reads:
:attr:`SparkStep.usage` (every call made, all actions so far) and
:attr:`SparkStep.stats` (the rows of the last action).

The frame is returned persisted (``MEMORY_AND_DISK``; persisting is lazy as
well, the first action fills it), because Spark would otherwise run the tasks
again for every action that needs them — a second ``count``, a self-join, even
the sampling job of an ``orderBy`` — and call the model again for the same
rows.  Call ``out.unpersist()`` when done.  If cached blocks are lost (an
executor removed), Spark recomputes them and the model is called again for
those rows, unless ``llm.cache_path`` is set: the recomputation then answers
them from stored answers with no call.  Each task gets its share
of the limits (``max_concurrency``, ``rpm``, ``tpm``; a ``budget`` split over
the tasks), exactly as the eager :func:`rlm_pipeline.classify` on Spark.

On Spark Connect there are no accumulators: the step runs the same way, and
``usage`` / ``stats`` stay empty.

Examples
--------
>>> from rlm_pipeline.llm.config import LLM
>>> from rlm_pipeline.ops.spec import ClassifySpec
>>> step = SparkStep(ClassifySpec("question", ("billing", "other")), LLM())
>>> step.usage.calls, step.stats is None
(0, True)
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from rlm_pipeline.errors import InputError, RLMPipelineError
from rlm_pipeline.llm.config import LLM, Budget
from rlm_pipeline.llm.usage import Usage
from rlm_pipeline.ops.spec_base import OpSpec, check_output_columns, check_run_args

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from rlm_pipeline.engines.base import Engine
    from rlm_pipeline.ops.spark_task import TaskReport
    from rlm_pipeline.ops.stats import OpStats

__all__ = ["SparkStep"]

logger = logging.getLogger(__name__)


class SparkStep:
    """A lazy ``DataFrame -> DataFrame`` step whose usage and stats are read after the action.

    Parameters
    ----------
    spec
        The operator (its column, output columns, batch size, ...).
    llm
        Endpoint and limits for the whole job (shared out over the tasks).
    overwrite
        Replace output columns the input already has (else ``InputError``).
    budget
        Calls / tokens / cost for one action, split evenly over the tasks.
    """

    def __init__(
        self, spec: OpSpec, llm: LLM, *, overwrite: bool = False, budget: Budget | None = None
    ) -> None:
        check_run_args(llm, overwrite)
        self.spec = spec
        self.llm = llm
        self.overwrite = overwrite
        self.budget = budget
        self._runs: list[Any] = []  # one accumulator per DataFrame the step was applied to

    def __call__(self, df: Any) -> Any:
        """The planned frame: ``df`` plus the output columns (no model call until an action)."""
        from rlm_pipeline._lazy import require_spark

        require_spark()
        from rlm_pipeline.engines.load import engine_for
        from rlm_pipeline.engines.spark_workers import check_workers
        from rlm_pipeline.ops import spark_fanout

        engine = engine_for(df, "spark", spark=_session)
        df = engine.read(df)
        if self.spec.column not in df.columns:
            msg = f"column {self.spec.column!r} not found; columns: {df.columns}"
            raise InputError(msg)
        check_output_columns(df.columns, self.spec, overwrite=self.overwrite)
        check_workers(df.sparkSession)
        mapped, reports = spark_fanout.plan(df, self.spec, self.llm, budget=self.budget)
        self._runs.append(reports)
        if not mapped.isStreaming:  # each micro-batch is answered once by the stream itself
            from pyspark import StorageLevel

            # Lazy too: the first action fills it.  A sort's sampling job, a second action
            # or a self-join then read the answers instead of asking the model again.
            mapped = mapped.persist(StorageLevel.MEMORY_AND_DISK)
        return self.finish(engine, mapped)

    def finish(self, engine: Engine, planned: Any) -> Any:
        """The frame handed back for ``planned`` (the answered plan): as is; a subclass may
        add lazy steps through ``engine`` (the filter keeps its rows: ``Engine.rows_where``)."""
        return planned

    def report(self) -> TaskReport:
        """What the tasks of the last planned frame reported so far (empty before an action)."""
        from rlm_pipeline.ops.spark_task import TaskReport

        if not self._runs or self._runs[-1] is None:
            return TaskReport()
        report: TaskReport = self._runs[-1].value
        return report

    @property
    def usage(self) -> Usage:
        """Every call the step's tasks made, over all frames and actions so far."""
        total = Usage()
        for reports in self._runs:
            if reports is not None:
                total = total + reports.value.usage
        return total

    @property
    def stats(self) -> OpStats | None:
        """Row counts of the last action over the last planned frame (None before one)."""
        from rlm_pipeline.ops.stats import merge_stats

        report = self.report()
        if not report.stats:
            return None
        parts = [report.stats[key] for key in sorted(report.stats)]
        merged = merge_stats(parts, self.spec)
        return merged.with_usage(report.usage).with_cached_rows(report.cached_rows)

    def failure_summary(self) -> str | None:
        """One line on the rows left without a value by the last action (None when none)."""
        from rlm_pipeline.ops.stats import failure_summary

        stats = self.stats
        if stats is None:
            return None
        return failure_summary(
            self.spec.op_name, stats, self.spec.output_column, cached=bool(self.llm.cache_path)
        )

    def typed_error(self, exc: BaseException) -> RLMPipelineError | None:
        """The library's one-line error a failed Spark action carries from this step's tasks.

        A task whose endpoint failed for good (circuit breaker) or whose first
        replies were all unusable (reply breaker) fails the action; Spark
        hands the Python error over as text.  This rebuilds the typed error
        (:class:`~rlm_pipeline.errors.LLMEndpointError`,
        :class:`~rlm_pipeline.errors.LLMResponseParseError`), or None.
        """
        from rlm_pipeline.llm.breaker import DEFAULT_ENDPOINT, reraised
        from rlm_pipeline.ops.core import reply_breaker_error

        text = str(exc)
        tripped = reraised(text, self.llm.resolved_base_url() or DEFAULT_ENDPOINT)
        if tripped is not None:
            return tripped
        return reply_breaker_error(text)

    @contextmanager
    def typed_errors(self) -> Iterator[None]:
        """Run actions in this block: a model failure in the tasks is raised as one typed line.

        Examples
        --------
        ``with step.typed_errors(): out.write.parquet(path)``
        """
        try:
            yield
        except RLMPipelineError:
            raise
        except Exception as exc:
            typed = self.typed_error(exc)
            if typed is None:
                raise
            raise typed from exc

    def __repr__(self) -> str:
        return f"SparkStep({type(self.spec).__name__} on {self.spec.column!r}, usage={self.usage})"


def _session() -> SparkSession:
    """The session a non-Spark input is read into: the active one, else a new local one."""
    from pyspark.sql import SparkSession

    return SparkSession.builder.getOrCreate()
