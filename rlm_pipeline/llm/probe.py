"""Finding an endpoint's structured-output mode: one probe, the other calls follow it.

While the mode of an endpoint and model is not known
(:func:`~rlm_pipeline.llm.structured.known_mode`), the first structured call
*leads*: it tries ``json_schema``, then ``json_object``, then ``text`` as the
endpoint refuses them.  The other calls wait for it, but at most
``grace_s`` per try of the probe: servers refuse a ``response_format`` they
lack at once, so a try not refused by then was most likely accepted and they
go in its mode instead of idling for a whole model latency.  A later refusal
costs each call sent meanwhile one refused try (it then falls back on its own).

The mode that worked is remembered per process
(:func:`~rlm_pipeline.llm.structured.remember_mode`).

Examples
--------
>>> import asyncio
>>> from rlm_pipeline.llm.structured import forget_modes
>>> async def send(mode):
...     if mode != "text":
...         raise FormatRejected(400, "response_format is not supported")
...     return mode
>>> forget_modes()
>>> asyncio.run(StructuredProbe("http://127.0.0.1:9/v1", "doc-model").run(send))
'text'
>>> forget_modes()
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from rlm_pipeline.errors import LLMError
from rlm_pipeline.llm.structured import StructuredMode, known_mode, next_mode, remember_mode

__all__ = ["PROBE_GRACE_S", "FormatRejected", "StructuredProbe"]

logger = logging.getLogger(__name__)

#: How long calls wait on the structured-mode probe's current try before going in its mode.
PROBE_GRACE_S = 0.02

T = TypeVar("T")


class FormatRejected(Exception):
    """The endpoint refused our ``response_format`` (raised by a send to trigger the fallback)."""

    def __init__(self, status: int, detail: str) -> None:
        self.status = status
        self.detail = detail
        super().__init__(f"HTTP {status}: {detail[:200]}")


class StructuredProbe:
    """The structured-mode probe of one endpoint and model (one per client).

    Parameters
    ----------
    base_url
        The endpoint, as the mode table knows it.
    model
        The model name.
    grace_s
        How long the other calls wait on each try of the probe.
    """

    def __init__(self, base_url: str, model: str, grace_s: float = PROBE_GRACE_S) -> None:
        self.base_url = base_url
        self.model = model
        self.grace_s = grace_s
        self._done: asyncio.Future[None] | None = None  # resolved when the probing call ends
        self._mode: StructuredMode = "json_schema"  # the mode the probe is trying
        self._rejections = 0

    async def run(self, send: Callable[[StructuredMode], Awaitable[T]]) -> T:
        """``send(mode)`` in the endpoint's mode, falling back while it raises :class:`FormatRejected`."""
        mode = known_mode(self.base_url, self.model)
        if mode is not None:
            return await self._send_from(mode, send, lead=False)
        if self._done is None or self._done.done():
            done = self._done = asyncio.get_running_loop().create_future()
            self._mode = "json_schema"
            try:
                return await self._send_from("json_schema", send, lead=True)
            finally:
                done.set_result(None)
        return await self._send_from(await self._follow(self._done), send, lead=False)

    async def _follow(self, done: asyncio.Future[None]) -> StructuredMode:
        """The mode to send in: the known one, or the probe's once its try outlasts the grace."""
        while not done.done():
            rejections = self._rejections
            await asyncio.wait({done}, timeout=self.grace_s)
            if self._rejections == rejections:
                break  # no rejection within the grace: most likely accepted
        return known_mode(self.base_url, self.model) or self._mode

    async def _send_from(
        self, mode: StructuredMode, send: Callable[[StructuredMode], Awaitable[T]], *, lead: bool
    ) -> T:
        current = mode
        while True:
            try:
                result = await send(current)
            except FormatRejected as exc:
                fallback = next_mode(current)
                if fallback is None:  # pragma: no cover - text mode sends no response_format
                    msg = f"endpoint rejected every structured-output mode: {exc}"
                    raise LLMError(msg, status=exc.status) from exc
                logger.info(
                    "%s (%s) rejected response_format %s (HTTP %d); falling back to %s",
                    self.base_url,
                    self.model,
                    current,
                    exc.status,
                    fallback,
                )
                current = fallback
                if lead:
                    self._mode = fallback
                    self._rejections += 1
                continue
            if known_mode(self.base_url, self.model) != current:
                remember_mode(self.base_url, self.model, current)
            return result
