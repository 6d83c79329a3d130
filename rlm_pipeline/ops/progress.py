"""A terminal progress bar for classify / llm_map runs (used by the CLI only).

Library code never prints: the operators report through a
``(rows_finished, rows_failed)`` callback.  :class:`ProgressBar` is such a
callback that draws a rich bar with rows done, calls, cached calls, rows
answered from stored row answers, errors, tokens and cost (read from the run's
:class:`~rlm_pipeline.llm.usage.UsageMeter`).  Both classes take the operators'
``add_cached(rows)`` report (:class:`~rlm_pipeline.ops.core.CachedRowsProgress`).

Examples
--------
>>> from rlm_pipeline.llm.usage import UsageMeter
>>> counter = RowCounter()
>>> counter(3, 1); counter(2, 0); counter.add_cached(2)
>>> counter.done, counter.failed, counter.cached
(5, 1, 2)
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any

from rlm_pipeline.llm.usage import UsageMeter

__all__ = ["ProgressBar", "RowCounter"]


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
    """

    def __init__(self, total: int | None, meter: UsageMeter, console: Any = None) -> None:
        super().__init__()
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

    def _draw(self) -> None:
        usage = self.meter.snapshot()
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
