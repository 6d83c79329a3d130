"""The calls of one client around its circuit breaker: who retries the connection, who waits.

While the endpoint never answered, the first call whose try cannot connect
*leads*: it retries quickly (up to
:data:`~rlm_pipeline.llm.breaker.CONNECT_TRIES` tries in all) while every other
call waits for its verdict, so a dead endpoint sees a handful of connection
attempts, not one per call.  When the breaker trips, every waiting call and
every call sleeping in a backoff is woken and raises at once.

Examples
--------
>>> import asyncio, random
>>> from rlm_pipeline.llm.breaker import Breaker
>>> from rlm_pipeline.llm.retry import RetryPolicy
>>> from rlm_pipeline.llm.usage import UsageMeter
>>> gate = BreakerGate(Breaker("http://127.0.0.1:9/v1", "m"), RetryPolicy(), random.Random(0),
...                    UsageMeter())
>>> asyncio.run(gate.pause(0.0))  # a backoff of nothing; the breaker has not tripped
>>> gate.reached(leading=False)
False
"""

from __future__ import annotations

import asyncio
import logging
import random

from rlm_pipeline.llm.breaker import CONNECT_MAX_DELAY_S, CONNECT_TRIES, Breaker, connect_error
from rlm_pipeline.llm.retry import RetryPolicy, retry_delay
from rlm_pipeline.llm.usage import UsageMeter

__all__ = ["BreakerGate"]

logger = logging.getLogger(__name__)


class BreakerGate:
    """Coordinates the calls of one client (one event loop) around ``breaker``.

    Parameters
    ----------
    breaker
        The client's circuit breaker.
    retry
        The client's retry policy (bounds the quick connection tries).
    rng
        Jitter for the connection retries.
    meter
        A failed call is recorded here when the connection trips the breaker.
    """

    def __init__(
        self, breaker: Breaker, retry: RetryPolicy, rng: random.Random, meter: UsageMeter
    ) -> None:
        self.breaker = breaker
        self._retry = retry
        self._rng = rng
        self._meter = meter
        self._reconnecting: asyncio.Future[None] | None = None  # resolved with the leader's verdict
        self._connect_fails = 0
        self._tripped: asyncio.Future[None] | None = None  # resolved when the breaker trips

    def others_reconnecting(self, leading: bool) -> bool:
        """Whether another call is retrying the connection (this one should wait)."""
        return self._reconnecting is not None and not leading

    async def wait_turn(self, leading: bool) -> None:
        """Before a try: wait while another call retries the connection; raise if tripped."""
        while not leading and self._reconnecting is not None:
            await asyncio.wait({self._reconnecting})
        self.breaker.check()

    async def connect_failed(self, cause: BaseException, leading: bool) -> bool:
        """A try could not connect, and the endpoint never answered: retry quickly, or trip.

        Returns whether this call leads the connection retries (False: another
        call does; wait for it with :meth:`wait_turn`).

        Raises
        ------
        LLMEndpointError
            The connection kept failing (the breaker trips).
        """
        self.breaker.check()  # tripped meanwhile (by the call that led before)
        if self.others_reconnecting(leading):
            return False
        if self._reconnecting is None:
            self._reconnecting = asyncio.get_running_loop().create_future()
            self._connect_fails = 0
        try:
            self._connect_fails += 1
            if self._connect_fails >= min(CONNECT_TRIES, self._retry.max_retries + 1):
                self._meter.record_failure()
                error = self.breaker.trip(
                    connect_error(self.breaker.endpoint, cause, attempts=self._connect_fails)
                )
                logger.debug("circuit breaker tripped: %s", error)
                self.wake()
                raise error from cause
            delay = min(
                retry_delay(self._connect_fails, None, self._rng, self._retry), CONNECT_MAX_DELAY_S
            )
            logger.debug(
                "cannot connect to %s; retrying in %.3fs (try %d of %d)",
                self.breaker.endpoint,
                delay,
                self._connect_fails,
                CONNECT_TRIES,
            )
            await self.pause(delay)
        except BaseException:
            self.end_reconnect()  # never leave the others waiting on a call that is gone
            raise
        return True

    def reached(self, leading: bool) -> bool:
        """A try connected (an HTTP reply, a read timeout, a reset): the waiting calls may go.

        Returns the call's new ``leading`` (False).
        """
        if leading:
            self.end_reconnect()
            self._connect_fails = 0
        return False

    def end_reconnect(self) -> None:
        """Release the calls waiting on the connection retries."""
        waiter, self._reconnecting = self._reconnecting, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def wake(self) -> None:
        """The breaker tripped: wake every call that waits or sleeps, so each raises at once."""
        self.end_reconnect()
        if self._tripped is not None and not self._tripped.done():
            self._tripped.set_result(None)

    async def pause(self, delay: float) -> None:
        """Sleep ``delay`` seconds of backoff, or less if the breaker trips meanwhile.

        Raises at once when the breaker tripped before (nothing to sleep for).
        """
        self.breaker.check()
        if self._tripped is None:
            self._tripped = asyncio.get_running_loop().create_future()
        if not self._tripped.done():
            await asyncio.wait({self._tripped}, timeout=delay)
        self.breaker.check()
