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

**Staggered start.**  A fresh limiter does not let its first booking through at
once: it starts its schedule at ``now + u × cost / rate``, with ``u`` drawn
uniformly from [0, 1) (``start_offset``, by default from ``rng``).  For a
request limiter that is ``u`` intervals, so a single limiter's first request
waits at most one interval.  Why: when Spark runs N tasks, each with its own
client and a limiter of rate r/N, unstaggered limiters would send N first
requests at the same instant, passing the job's rate r.  With random offsets
the first requests spread over one interval (N/r): over any stretch of whole
intervals from the start, the N limiters start exactly r requests per unit
of time on average, and the expected count in any window is r × its length.
A ``burst`` above 1 deliberately lets that many units through at once and
absorbs the offset.
"""

from __future__ import annotations

import asyncio
import logging
import random
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
    rng
        Draws the start offset when ``start_offset`` is None (a fresh
        ``random.Random()`` by default).
    start_offset
        Fraction of the first booking's duration (``cost / rate``) that the
        first booking waits, in [0, 1); 0 lets it through at once.  Drawn
        uniformly when None (see the module notes).

    Examples
    --------
    >>> import asyncio
    >>> limiter = RateLimiter(per_minute=6000)  # 10 ms apart
    >>> 0.0 <= asyncio.run(limiter.acquire()) < 0.01
    True
    >>> round(RateLimiter(per_minute=60, start_offset=0.25).reserve(), 3)  # 1/4 of 1 s
    0.25
    """

    def __init__(
        self,
        per_minute: float,
        *,
        burst: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        start_offset: float | None = None,
    ) -> None:
        if per_minute <= 0:
            msg = f"per_minute must be > 0, got {per_minute}"
            raise InputError(msg)
        if burst < 1:
            msg = f"burst must be >= 1, got {burst}"
            raise InputError(msg)
        if start_offset is None:
            start_offset = (rng if rng is not None else random.Random()).random()
        if not 0.0 <= start_offset < 1.0:
            msg = f"start_offset must be in [0, 1), got {start_offset}"
            raise InputError(msg)
        self.per_minute = float(per_minute)
        self.burst = float(burst)
        self.start_offset = float(start_offset)
        self._seconds_per_unit = 60.0 / self.per_minute
        self._clock = clock
        # Theoretical arrival time: when the schedule is next free.
        self._tat = clock()
        self._fresh = True

    def reserve(self, cost: float = 1.0) -> float:
        """Book ``cost`` units and return how many seconds to wait before starting.

        Never blocks.  A cost larger than ``burst`` is allowed (it waits for its
        slot, then pushes later callers back by ``cost / rate``).
        """
        now = self._clock()
        if self._fresh:  # staggered start: see the module notes
            self._fresh = False
            self._tat = max(now, self._tat) + self.start_offset * cost * self._seconds_per_unit
        allowance = (self.burst - 1.0) * self._seconds_per_unit
        start = max(now, self._tat - allowance)
        self._tat = max(now, self._tat) + cost * self._seconds_per_unit
        return max(0.0, start - now)

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
