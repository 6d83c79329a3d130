"""Async pacing limiters for requests per minute and tokens per minute.

:class:`RateLimiter` hands out start times on a schedule (the "generic cell
rate" idea): each acquisition of ``cost`` units books the next free slot and
pushes the schedule ``cost / rate`` seconds further; the caller sleeps until its
slot.  With ``burst=1`` requests are evenly spaced, so any 60 s window holds at
most ``rpm`` request starts; a larger ``burst`` lets that many units through at
once after an idle spell.

A limiter belongs to one event loop's client, so bookings need no lock (they
happen between two awaits).  Spark tasks each get a share of the job's limit
(:meth:`rlm_pipeline.llm.config.LLM.share`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from rlm_pipeline.errors import InputError

__all__ = ["RateLimiter"]

logger = logging.getLogger(__name__)


class RateLimiter:
    """Pace work to ``per_minute`` units per minute.

    Parameters
    ----------
    per_minute
        Units (requests or tokens) allowed per minute.
    burst
        Units that may start at once after an idle spell (at least 1).
    clock
        Monotonic clock in seconds; injectable for tests.

    Examples
    --------
    >>> import asyncio
    >>> limiter = RateLimiter(per_minute=6000)
    >>> asyncio.run(limiter.acquire()) >= 0.0
    True
    """

    def __init__(
        self,
        per_minute: float,
        *,
        burst: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_minute <= 0:
            msg = f"per_minute must be > 0, got {per_minute}"
            raise InputError(msg)
        if burst < 1:
            msg = f"burst must be >= 1, got {burst}"
            raise InputError(msg)
        self.per_minute = float(per_minute)
        self.burst = float(burst)
        self._seconds_per_unit = 60.0 / self.per_minute
        self._clock = clock
        # Theoretical arrival time: when the schedule is next free.
        self._tat = clock()

    def reserve(self, cost: float = 1.0) -> float:
        """Book ``cost`` units and return how many seconds to wait before starting.

        Never blocks.  A cost larger than ``burst`` is allowed (it waits for its
        slot, then pushes later callers back by ``cost / rate``).
        """
        now = self._clock()
        allowance = (self.burst - 1.0) * self._seconds_per_unit
        start = max(now, self._tat - allowance)
        self._tat = max(now, self._tat) + cost * self._seconds_per_unit
        return start - now

    async def acquire(self, cost: float = 1.0) -> float:
        """Wait until ``cost`` units may start; return the seconds waited."""
        wait = self.reserve(cost)
        if wait > 0:
            logger.debug("rate limit: waiting %.3fs for %g units", wait, cost)
            await asyncio.sleep(wait)
        return wait

    def adjust(self, delta: float) -> None:
        """Correct an earlier booking by ``delta`` units (positive: used more than booked).

        Used by the tokens-per-minute limiter once the server reports the real
        token count.  A refund never moves the schedule into the past.
        """
        now = self._clock()
        self._tat = max(now, self._tat + delta * self._seconds_per_unit)
