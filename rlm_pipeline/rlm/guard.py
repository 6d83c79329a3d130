"""Each tool call of a run as cancellable engine work, under ``tool_timeout_s``.

:func:`guarded` runs one tool call as a child :class:`~rlm_pipeline.engines.work.Work`
of the run's work.  For the tools that run model-written engine work (``peek``,
``filter``, ``partition``, ``sql``) it also holds the call to the run's
``tool_timeout_s``: on expiry the call's Spark jobs are cancelled by their tag
and its Polars queries stopped (a worker process killed, or an in-process query
cancelled: see :mod:`rlm_pipeline.engines.work`), the engine threads are
given :data:`CANCEL_GRACE_S` to return, and the model gets a tool error naming
the limit.  ``classify``, ``llm_map`` and ``recurse`` spend their time in model
calls, bounded by the budget and the run's ``timeout_s``.

When the run itself is cancelled (its ``timeout_s``), the call's work is
cancelled with it.

Examples
--------
>>> import asyncio
>>> from rlm_pipeline.engines.work import Work, WorkLimits, work_scope
>>> async def slow():
...     await asyncio.sleep(5)
>>> async def main():
...     with work_scope(Work("run", limits=WorkLimits(tool_timeout_s=0.05))):
...         await guarded("sql", slow())
>>> asyncio.run(main())
Traceback (most recent call last):
...
rlm_pipeline.errors.ResourceLimitError: the sql call ran past tool_timeout_s = 0.05 s and its engine work was cancelled: make it smaller (filter the views first, aggregate before joining) or split it into steps
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from rlm_pipeline.engines.work import Work, current_work, work_scope
from rlm_pipeline.errors import ResourceLimitError

__all__ = ["CANCEL_GRACE_S", "ENGINE_TOOLS", "cancel_run", "guarded"]

T = TypeVar("T")

#: Tools whose time is engine work, held to ``tool_timeout_s``.
ENGINE_TOOLS = frozenset({"peek", "filter", "partition", "sql"})
#: After a cancel, how long the engine threads get to return before the caller goes on.
CANCEL_GRACE_S = 10.0


async def guarded(tool: str, call: Awaitable[T]) -> T:
    """Await ``call`` (one tool call) as a child work of the current one, within its limit."""
    work = Work(tool, parent=current_work())
    limit = work.limits.tool_timeout_s if tool in ENGINE_TOOLS else None
    with work_scope(work):
        timer = asyncio.timeout(limit)
        try:
            async with timer:
                return await call
        except TimeoutError:
            if not timer.expired():
                raise
            reason = f"tool_timeout_s = {limit:g} s"
            work.cancel(reason)
            await asyncio.to_thread(work.wait_idle, CANCEL_GRACE_S)
            raise ResourceLimitError(
                f"the {tool} call ran past {reason} and its engine work was cancelled: make it "
                "smaller (filter the views first, aggregate before joining) or split it into "
                "steps",
                limit="tool_timeout_s",
            ) from None
        except asyncio.CancelledError:
            work.cancel("cancelled with the run")
            raise


async def cancel_run(work: Work, reason: str) -> bool:
    """Cancel the run's engine work and wait (at most :data:`CANCEL_GRACE_S`) for its threads;
    ``True`` if they all returned."""
    work.cancel(reason)
    return await asyncio.to_thread(work.wait_idle, CANCEL_GRACE_S)
