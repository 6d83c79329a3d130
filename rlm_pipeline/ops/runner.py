"""Run a coroutine from synchronous code, also when an event loop is already running.

The public operators are synchronous.  Called from plain code they use
``asyncio.run``; called from inside a running loop (a notebook, an async web
handler) they run the coroutine in a worker thread with its own loop, since
one thread cannot run two loops.

Examples
--------
>>> async def two() -> int:
...     return 2
>>> run_sync(two)
2
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["run_sync"]

T = TypeVar("T")


def run_sync(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run the coroutine made by ``make()`` to completion and return its result.

    ``make`` is a factory (not a coroutine object) so that the coroutine is
    created inside the thread and loop that runs it.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="rlm-ops") as pool:
        return pool.submit(lambda: asyncio.run(make())).result()
