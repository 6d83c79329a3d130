"""A terminal progress bar for classify / llm_map runs (used by the CLI only).

Library code never prints: the operators report through a
``(rows_finished, rows_failed)`` callback.  :class:`ProgressBar` is such a
callback that draws a rich bar with rows done, calls, cached calls, rows
answered from stored row answers, errors, tokens and cost (read from the run's
:class:`~rlm_pipeline.llm.usage.UsageMeter`, plus the executors' usage shown
while a Spark action runs).
Both classes take the operators' ``add_cached(rows)`` report
(:class:`~rlm_pipeline.ops.core.CachedRowsProgress`).

On Spark the rows are answered in executor tasks, whose counts reach the
driver through an accumulator of
:class:`~rlm_pipeline.ops.spark_task.TaskReport` as each task ends.
:class:`ReportWatcher` polls that accumulator in a thread while a Spark action
runs and feeds the callback the new rows, failures and cached rows (and keeps
the usage seen so far), so a bar moves as tasks complete, not only at the end.

Examples
--------
>>> from rlm_pipeline.llm.usage import UsageMeter
>>> counter = RowCounter()
>>> counter(3, 1); counter(2, 0); counter.add_cached(2)
>>> counter.done, counter.failed, counter.cached
(5, 1, 2)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from rlm_pipeline.llm.usage import Usage, UsageMeter

if TYPE_CHECKING:
    from rlm_pipeline.ops.core import RowProgress
    from rlm_pipeline.ops.spark_task import TaskReport

__all__ = ["ProgressBar", "ReportWatcher", "RowCounter"]

logger = logging.getLogger(__name__)


class RowCounter:
    """A thread-safe progress callback that only counts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.done = 0
        self.failed = 0
        self.cached = 0

    def __call__(self, rows: int, failed: int) -> None:
        with self._lock:
            self.done += rows
            self.failed += failed

    def add_cached(self, rows: int) -> None:
        """``rows`` of the finished rows came from stored row answers (no call)."""
        with self._lock:
            self.cached += rows


class ProgressBar(RowCounter):
    """A rich progress bar fed by the row callback and a usage meter.

    Parameters
    ----------
    total
        Rows expected (None when unknown).
    meter
        The run's meter, read on every update.
    console
        A ``rich.console.Console`` (default: stderr).

    While a Spark action runs, the executors' usage is not on ``meter`` yet:
    a :class:`ReportWatcher` passes what the finished tasks reported to
    :meth:`show_usage`, which is shown added to the meter's.
    """

    def __init__(self, total: int | None, meter: UsageMeter, console: Any = None) -> None:
        super().__init__()
        self._live = Usage()
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.meter = meter
        self._progress = Progress(
            TextColumn("classify"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[usage]}"),
            TimeElapsedColumn(),
            console=console if console is not None else Console(stderr=True),
            transient=False,
        )
        self._task = self._progress.add_task("rows", total=total, usage="")

    def __call__(self, rows: int, failed: int) -> None:
        super().__call__(rows, failed)
        self._draw()

    def add_cached(self, rows: int) -> None:
        """Count rows served from stored answers and redraw."""
        super().add_cached(rows)
        self._draw()

    def show_usage(self, usage: Usage, *, redraw: bool = True) -> None:
        """Show ``usage`` (not on the meter yet) added to the meter's; ``Usage()`` clears it."""
        with self._lock:
            self._live = usage
        if redraw:
            self._draw()

    def _draw(self) -> None:
        usage = self.meter.snapshot() + self._live
        text = (
            f"calls {usage.calls} · cached {usage.cached_calls} calls, {self.cached:,} rows · "
            f"errors {self.failed} · tokens {usage.total_tokens:,} · ${usage.cost_usd:.4f}"
        )
        self._progress.update(self._task, completed=self.done, usage=text)

    def __enter__(self) -> ProgressBar:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()


class ReportWatcher:
    """Feeds a progress callback from a Spark job's task reports while an action runs.

    ``read()`` returns the reports so far (an accumulator's ``value`` on the
    driver, which Spark updates as each task ends).  A thread polls it every
    ``interval_s`` and calls ``progress(new_rows, new_failed)`` (and
    ``progress.add_cached(new_cached)`` / ``progress.show_usage(usage)`` when
    the callback has them) with what changed since the last poll;
    :attr:`usage` is the usage reported so far.  Leaving the ``with`` block
    polls once more, so the callback has seen every finished task's rows, and
    clears the shown usage without redrawing (the caller then adds the
    report's usage to its meter).  A retried task's counts replace its first
    attempt's (reports are kept per partition), so the rows never run past
    the input; a partition counted twice is never reported twice.

    Examples
    --------
    >>> from rlm_pipeline.ops.spark_task import TaskReport
    >>> from rlm_pipeline.ops.stats import OpStats
    >>> reports, counter = [TaskReport()], RowCounter()
    >>> with ReportWatcher(lambda: reports[-1], counter, interval_s=60) as watch:
    ...     reports.append(TaskReport(stats={0: OpStats(rows=5, answered=4)}, cached={0: 2}))
    >>> counter.done, counter.failed, counter.cached
    (5, 1, 2)
    """

    def __init__(
        self,
        read: Callable[[], TaskReport],
        progress: RowProgress,
        *,
        interval_s: float = 0.5,
    ) -> None:
        self._read = read
        self._progress = progress
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._rows = 0
        self._failed = 0
        self._cached = 0
        self.usage = Usage()

    def poll(self) -> None:
        """Report what changed since the last poll."""
        with self._lock:
            report = self._read()
            rows = sum(part.rows for part in report.stats.values())
            failed = sum(part.failed for part in report.stats.values())
            cached = report.cached_rows
            new_rows, new_failed = rows - self._rows, failed - self._failed
            new_cached = cached - self._cached
            self._rows, self._failed, self._cached = rows, failed, cached
            self.usage = report.usage
            if new_rows or new_failed:
                self._progress(new_rows, new_failed)
            add_cached = getattr(self._progress, "add_cached", None)
            if new_cached and add_cached is not None:
                add_cached(new_cached)
            show_usage = getattr(self._progress, "show_usage", None)
            if show_usage is not None:
                show_usage(report.usage)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self.poll()
            except Exception:  # noqa: BLE001 - progress must never break the job
                logger.debug("progress poll failed", exc_info=True)

    def __enter__(self) -> ReportWatcher:
        self._thread = threading.Thread(target=self._run, name="rlm-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.poll()
        show_usage = getattr(self._progress, "show_usage", None)
        if show_usage is not None:
            show_usage(Usage(), redraw=False)
