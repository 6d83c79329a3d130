"""The loop each Spark ``mapInArrow`` task runs, and what it reports to the driver.

A task builds its own :class:`~rlm_pipeline.llm.client.LLMClient` from the
picklable :class:`~rlm_pipeline.llm.config.LLM` in its own asyncio loop,
answers its Arrow batches through :func:`~rlm_pipeline.ops.pipeline.answer_chunks`
(dedup across the task's batches, a few batches at once, the row store first),
counts the rows with the one :class:`~rlm_pipeline.ops.stats.StatsCounter`,
and when it ends reports one :class:`TaskReport` (an accumulator's ``add`` on
Spark).

Examples
--------
>>> (TaskReport(cached={0: 2}) + TaskReport(cached={1: 3})).cached_rows
5
>>> (TaskReport(cached={0: 2}) + TaskReport(cached={0: 2})).cached_rows  # a retried attempt
2
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pyarrow as pa

from rlm_pipeline.llm.config import LLM, Budget
from rlm_pipeline.llm.usage import Usage, UsageMeter
from rlm_pipeline.ops.arrow_out import attach
from rlm_pipeline.ops.core import Tally
from rlm_pipeline.ops.spec_base import OpSpec
from rlm_pipeline.ops.stats import OpStats, StatsCounter

__all__ = ["ReportSum", "TaskReport", "task_function"]


@dataclass(frozen=True)
class TaskReport:
    """What one task attempt tells the driver.

    Attributes
    ----------
    usage
        What its client spent (summed over attempts: every call made is spent).
    cached
        ``{partition: rows}`` it answered from stored row answers; empty when
        the attempt did not finish.  Kept per partition like ``stats`` (a
        retried or speculative attempt replaces, not adds to, its count), so
        :attr:`cached_rows` never exceeds the rows counted.
    stats
        ``{partition: counts}`` of the rows it answered; empty when the attempt
        did not finish.  A re-run attempt of a partition replaces its counts.
    """

    usage: Usage = field(default_factory=Usage)
    cached: dict[int, int] = field(default_factory=dict)
    stats: dict[int, OpStats] = field(default_factory=dict)

    @property
    def cached_rows(self) -> int:
        """Rows answered from stored row answers, over the partitions (one attempt each)."""
        return sum(self.cached.values())

    def __add__(self, other: TaskReport) -> TaskReport:
        return TaskReport(
            usage=self.usage + other.usage,
            cached={**self.cached, **other.cached},
            stats={**self.stats, **other.stats},
        )


class ReportSum:
    """Accumulator parameter adding :class:`TaskReport` values (Spark's ``AccumulatorParam``)."""

    def zero(self, value: TaskReport) -> TaskReport:
        return TaskReport()

    def addInPlace(self, first: TaskReport, second: TaskReport) -> TaskReport:  # noqa: N802 - Spark's name
        return first + second


def task_function(
    spec: OpSpec, llm: LLM, budget: Budget | None, report: Callable[[TaskReport], None]
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The function each ``mapInArrow`` task runs (picklable; no client inside).

    ``report`` receives the task's :class:`TaskReport` when the task ends,
    also when it fails (its usage was spent).
    """

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from rlm_pipeline.llm.client import LLMClient
        from rlm_pipeline.ops.pipeline import answer_chunks

        meter = UsageMeter()
        tally = Tally()
        counter = StatsCounter(spec)
        finished = False
        loop = asyncio.new_event_loop()

        async def build() -> LLMClient:
            return LLMClient(llm, meter=meter, budget=budget)

        client = loop.run_until_complete(build())
        answers = answer_chunks(batches, batch_texts(spec), spec, client, tally=tally)
        try:
            while True:
                try:
                    batch, results = loop.run_until_complete(answers.__anext__())
                except StopAsyncIteration:
                    break
                counter.add(results)
                yield attach(batch, spec, results)
            finished = True
        finally:
            loop.run_until_complete(answers.aclose())
            loop.run_until_complete(client.aclose())
            loop.close()
            part = _partition_id()
            stats = {part: counter.stats()} if finished else {}
            cached = {part: tally.cached_rows} if finished else {}
            report(TaskReport(meter.snapshot(), cached, stats))

    return run


def _partition_id() -> int:
    """The Spark partition this task answers (0 outside Spark)."""
    from pyspark import TaskContext

    context = TaskContext.get()
    return context.partitionId() if context is not None else 0


def batch_texts(spec: OpSpec) -> Callable[[pa.RecordBatch], list[str | None]]:
    """The function reading ``spec.column`` of a record batch as text."""

    def texts(batch: pa.RecordBatch) -> list[str | None]:
        column = batch.column(batch.schema.get_field_index(spec.column))
        if not pa.types.is_string(column.type):
            column = column.cast(pa.string())
        return column.to_pylist()  # type: ignore[no-any-return]

    return texts
