"""Finding an endpoint's structured-output mode: one probe, the other calls follow it.

While the mode of an endpoint and model is not known
(:func:`~rlm_pipeline.llm.structured.known_mode`), the first structured call
*leads*: it tries ``json_schema``, then ``json_object``, then ``text`` as the
endpoint refuses them.  The other calls wait for it, but at most
``grace_s`` per try of the probe: servers refuse a ``response_format`` they
lack at once, so a try not refused by then was most likely accepted and they
go in its mode instead of idling for a whole model latency.  A later refusal
costs each call sent meanwhile one refused try (it then falls back on its own).

The mode that worked is remembered per process and schema kind
(:func:`~rlm_pipeline.llm.structured.remember_mode`,
:func:`~rlm_pipeline.llm.structured.schema_kind`): each kind has its own
probe, so a server refusing the RLM's loose action schema in ``json_schema``
does not move the strict sub-call schemas off it.

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
from rlm_pipeline.llm.structured import (
    SchemaKind,
    StructuredMode,
    known_mode,
    next_mode,
    remember_mode,
)

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
        # Per schema kind: resolved when the probing call ends; the mode it is trying;
        # how many refusals it met.
        self._done: dict[SchemaKind, asyncio.Future[None]] = {}
        self._mode: dict[SchemaKind, StructuredMode] = {}
        self._rejections: dict[SchemaKind, int] = {}

    async def run(
        self, send: Callable[[StructuredMode], Awaitable[T]], kind: SchemaKind = "strict"
    ) -> T:
        """``send(mode)`` in the endpoint's mode for ``kind``, falling back while it raises :class:`FormatRejected`."""
        mode = known_mode(self.base_url, self.model, kind)
        if mode is not None:
            return await self._send_from(mode, send, kind, lead=False)
        current = self._done.get(kind)
        if current is None or current.done():
            done = self._done[kind] = asyncio.get_running_loop().create_future()
            self._mode[kind] = "json_schema"
            try:
                return await self._send_from("json_schema", send, kind, lead=True)
            finally:
                done.set_result(None)
        return await self._send_from(await self._follow(current, kind), send, kind, lead=False)

    async def _follow(self, done: asyncio.Future[None], kind: SchemaKind) -> StructuredMode:
        """The mode to send in: the known one, or the probe's once its try outlasts the grace."""
        while not done.done():
            rejections = self._rejections.get(kind, 0)
            await asyncio.wait({done}, timeout=self.grace_s)
            if self._rejections.get(kind, 0) == rejections:
                break  # no rejection within the grace: most likely accepted
        return known_mode(self.base_url, self.model, kind) or self._mode.get(kind, "json_schema")

    async def _send_from(
        self,
        mode: StructuredMode,
        send: Callable[[StructuredMode], Awaitable[T]],
        kind: SchemaKind,
        *,
        lead: bool,
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
                    "%s (%s) rejected response_format %s for a %s schema (HTTP %d); "
                    "falling back to %s",
                    self.base_url,
                    self.model,
                    current,
                    kind,
                    exc.status,
                    fallback,
                )
                current = fallback
                if lead:
                    self._mode[kind] = fallback
                    self._rejections[kind] = self._rejections.get(kind, 0) + 1
                continue
            if known_mode(self.base_url, self.model, kind) != current:
                remember_mode(self.base_url, self.model, current, kind)
            return result
