"""The async model client: limits, retries, cache, budget and usage around ``openai.AsyncOpenAI``.

One :class:`LLMClient` per asyncio event loop (it refuses to be used from a
second loop).  Each request goes through, in order:

1. the response cache (a hit sends nothing and counts as a cached call);
2. the budget guard (reserves the projected spend or raises
   :class:`~rlm_pipeline.errors.BudgetExceededError` without sending); when the
   budget limits tokens or cost, or ``tpm`` is set, the reply allowance booked
   (the caller's ``max_tokens`` or :data:`DEFAULT_REPLY_TOKENS`, cut to what the
   budget has left after the prompt) is sent as ``max_tokens``, so a long reply
   cannot pass the budget (a reply cut there has ``finish_reason`` "length";
   from :meth:`LLMClient.json` it is a parse error unless it still parses);
3. per try: the concurrency semaphore, the rpm and tpm limiters, the HTTP call
   (the openai client's own retries are off — :mod:`rlm_pipeline.llm.retry`
   decides);
4. usage recorded from the server's ``usage`` numbers, reply cached.

A circuit breaker (:mod:`rlm_pipeline.llm.breaker`) watches the tries until the
first successful reply: when the endpoint fails for one systemic cause
(connection refused, DNS, TLS, HTTP 401/403/404, the same 5xx on every call) it
trips, and this call and every pending and later one raise
:class:`~rlm_pipeline.errors.LLMEndpointError` at once, sending nothing more.
Connection failures before the first reply get a few quick tries (one call
retries while the others wait for its verdict), not the full backoff; after
it, a server that stops answering mid-run (many calls in a row cannot
connect) trips the breaker too.  A 5xx saying the server does not take
``tools`` (llama.cpp without ``--jinja``) is final for a request carrying
them, not retried.

Structured calls (:meth:`LLMClient.json`) to an endpoint whose structured-output
mode is not known yet are led by one *probe* (:mod:`rlm_pipeline.llm.probe`).

The jobs live in their own modules: the response cache and its keys
(:mod:`~rlm_pipeline.llm.replies`), the structured-mode probe
(:mod:`~rlm_pipeline.llm.probe`), the reply allowance
(:mod:`~rlm_pipeline.llm.allowance`), the openai SDK's errors mapped at the
boundary (:mod:`~rlm_pipeline.llm.failures`), reading a completion
(:mod:`~rlm_pipeline.llm.completion`), the calls around the circuit breaker
(:mod:`~rlm_pipeline.llm.gate`); this module holds the one retry loop
(:meth:`LLMClient._send`).

Examples
--------
>>> import asyncio
>>> from rlm_pipeline.llm.config import LLM
>>> async def main() -> None:
...     async with LLMClient(LLM(model="m", base_url="http://127.0.0.1:9/v1")) as client:
...         print(client.usage.calls)
>>> asyncio.run(main())
0
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections.abc import Callable
from functools import partial
from types import TracebackType
from typing import Any

import httpx2
import openai
from jsonschema.protocols import Validator

from rlm_pipeline.errors import (
    BudgetExceededError,
    InputError,
    LLMEndpointError,
    LLMError,
    LLMResponseParseError,
)
from rlm_pipeline.llm.allowance import (
    DEFAULT_CHAT_REPLY_TOKENS,
    DEFAULT_REPLY_TOKENS,
    Allowance,
    reply_allowance,
    wanted_reply_tokens,
)
from rlm_pipeline.llm.breaker import DEFAULT_ENDPOINT, Breaker, missing_endpoint
from rlm_pipeline.llm.budget import BudgetGuard, Reservation, shared_guard
from rlm_pipeline.llm.cache import ResponseCache
from rlm_pipeline.llm.completion import NotJSON, read_completion
from rlm_pipeline.llm.config import LLM, Budget
from rlm_pipeline.llm.failures import TryFailed, final_error, is_tools_refusal, mapped_errors
from rlm_pipeline.llm.gate import BreakerGate
from rlm_pipeline.llm.probe import PROBE_GRACE_S, FormatRejected, StructuredProbe
from rlm_pipeline.llm.ratelimit import RateLimiter
from rlm_pipeline.llm.replies import CachedReplies
from rlm_pipeline.llm.reply import ChatReply, ToolCall
from rlm_pipeline.llm.retry import RetryPolicy, retry_delay
from rlm_pipeline.llm.structured import (
    StructuredMode,
    build_request,
    is_format_rejection,
    parse_json_object,
    schema_kind,
    schema_validator,
)
from rlm_pipeline.llm.structured import validate as check_schema
from rlm_pipeline.llm.tokens import estimate_message_tokens, estimate_tokens
from rlm_pipeline.llm.transport import LeanTransport, shared_ssl_context
from rlm_pipeline.llm.usage import Usage, UsageMeter

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT_S",
    "DEFAULT_ENDPOINT",
    "DEFAULT_CHAT_REPLY_TOKENS",
    "DEFAULT_REPLY_TOKENS",
    "PREFLIGHT_MESSAGES",
    "PREFLIGHT_VERSION",
    "PROBE_GRACE_S",
    "Accept",
    "ChatReply",
    "LLMClient",
    "ToolCall",
]

logger = logging.getLogger(__name__)

#: Longest wait for a TCP connection (capped by the config's ``timeout_s``).
DEFAULT_CONNECT_TIMEOUT_S = 10.0
#: The request :meth:`LLMClient.preflight` sends (with ``max_tokens=1``).
PREFLIGHT_MESSAGES: list[dict[str, Any]] = [{"role": "user", "content": "Reply with OK."}]
#: Cache key version of the preflight request.
PREFLIGHT_VERSION = "preflight-1"

#: A caller's check of a parsed structured reply (see :meth:`LLMClient.json`).
Accept = Callable[[dict[str, Any]], bool]


class LLMClient:
    """Async chat client with bounded concurrency, retries, cache, budget and usage.

    Parameters
    ----------
    config
        Endpoint, limits, retries, cache file and prices.
    meter
        Where usage is recorded; a fresh one when None.  Share one meter between
        clients to total their usage.
    budget
        Limits checked before each non-cached request: a
        :class:`~rlm_pipeline.llm.config.Budget` (checked against ``meter``), or
        a :class:`~rlm_pipeline.llm.budget.BudgetGuard` shared with other clients
        (its meter is then used; passing a different ``meter`` is an error).
        Clients given the same ``meter`` and an equal ``Budget`` share one guard,
        so their in-flight requests cannot jointly overshoot.  A cost limit
        for a model without a price raises :class:`~rlm_pipeline.errors.InputError`
        here (:meth:`~rlm_pipeline.llm.config.LLM.require_price`).
    http_client
        An ``httpx2.AsyncClient`` to send through (not closed by :meth:`aclose`).
        By default the client builds one over a
        :class:`~rlm_pipeline.llm.transport.LeanTransport` keeping up to
        ``max_concurrency`` idle connections.
    retry
        Backoff policy; by default ``RetryPolicy(max_retries=config.max_retries)``.
    rng
        Random source for backoff jitter.
    probe_grace_s
        How long other structured calls wait on the structured-mode probe's
        current try before going in its mode (see the module docstring).

    Examples
    --------
    >>> import asyncio
    >>> from rlm_pipeline.llm.config import LLM
    >>> client = LLMClient(LLM(model="m", base_url="http://127.0.0.1:9/v1"), budget=Budget(max_calls=0))
    >>> try:
    ...     asyncio.run(client.chat([{"role": "user", "content": "hi"}]))
    ... except Exception as exc:
    ...     print(type(exc).__name__)
    BudgetExceededError
    """

    def __init__(
        self,
        config: LLM,
        *,
        meter: UsageMeter | None = None,
        budget: Budget | BudgetGuard | None = None,
        http_client: httpx2.AsyncClient | None = None,
        retry: RetryPolicy | None = None,
        rng: random.Random | None = None,
        probe_grace_s: float = PROBE_GRACE_S,
    ) -> None:
        self.config = config
        self.meter, self.guard = _meter_and_guard(config, meter, budget)
        self.retry = retry if retry is not None else RetryPolicy(max_retries=config.max_retries)
        self._rng = rng if rng is not None else random.Random()
        self._price = config.price()
        base_url = config.resolved_base_url()
        self._endpoint = (base_url or DEFAULT_ENDPOINT, config.model)
        # The circuit breaker (see the module docstring) and the gate that
        # coordinates the calls around it (one retries the connection for all).
        self._breaker = Breaker(self._endpoint[0], config.model)
        self._gate = BreakerGate(self._breaker, self.retry, self._rng, self.meter)
        self._unconfigured = missing_endpoint(config)
        self._call_ids = itertools.count()
        self._owns_http = http_client is None
        self._http = http_client if http_client is not None else _http_client(config)
        self._openai = openai.AsyncOpenAI(
            api_key=config.resolved_api_key(),
            base_url=base_url,
            timeout=_timeout(config),
            max_retries=0,
            http_client=self._http,
        )
        self._semaphore = asyncio.Semaphore(config.max_concurrency)
        # Each limiter starts its schedule at a random point of its first interval,
        # so the fresh clients of many Spark tasks (each with rpm / N) do not all
        # send their first request at once (see RateLimiter).
        self._rpm = RateLimiter(config.rpm, rng=self._rng) if config.rpm is not None else None
        self._tpm = RateLimiter(config.tpm, rng=self._rng) if config.tpm is not None else None
        self._replies = CachedReplies.of(config)
        self._probe = StructuredProbe(self._endpoint[0], config.model, probe_grace_s)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    # ------------------------------------------------------------------ public

    @property
    def usage(self) -> Usage:
        """What this client's meter has recorded so far."""
        return self.meter.snapshot()

    @property
    def cache(self) -> ResponseCache | None:
        """The response cache file, when ``config.cache_path`` is set (row answers live there too)."""
        return self._replies.store

    async def chat(
        self,
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        max_tokens: int | None = None,
        prompt_version: str | None = None,
    ) -> ChatReply:
        """Send one chat request (or answer it from the cache).

        Parameters
        ----------
        messages
            OpenAI chat messages.
        tools, tool_choice
            OpenAI function-tool schemas offered to the model, and ``"auto"``,
            ``"required"``, ``"none"`` or a specific tool.
        max_tokens
            Reply length limit (also bounds the budget projection); with a token
            or cost budget, or ``tpm``, one is always sent (:mod:`~rlm_pipeline.llm.allowance`).
        prompt_version
            Part of the cache key; bump it to invalidate cached replies.

        Returns
        -------
        ChatReply
            Content, tool calls (raw JSON arguments) and token counts.

        Raises
        ------
        LLMEndpointError
            The circuit breaker tripped (see the module docstring), now or before.
        LLMError
            At once for other 4xx; after the last retry for 429 (:class:`LLMRateLimitError`),
            timeouts (:class:`LLMTimeoutError`), 5xx and connection errors.
        BudgetExceededError
            The projected spend would pass the budget (nothing is sent).
        """
        key = self._replies.chat_key(
            messages,
            tools=tools,
            tool_choice=tool_choice,
            max_tokens=max_tokens,
            prompt_version=prompt_version,
        )
        hit = self._replies.get(key)
        if hit is not None:
            self._served()
            return hit
        reply, allowance = await self._request(
            messages,
            tools=tools,
            tool_choice=tool_choice,
            response_format=None,
            max_tokens=max_tokens,
        )
        self._replies.put(key, reply, asked=max_tokens, sent=allowance.sent)
        return reply

    async def json(
        self,
        messages: list[dict[str, Any]],
        schema: dict[str, Any],
        *,
        name: str,
        max_tokens: int | None = None,
        prompt_version: str | None = None,
        accept: Accept | None = None,
    ) -> tuple[dict[str, Any], ChatReply]:
        """Ask for a JSON object matching ``schema``; return it parsed and checked.

        ``response_format`` ``json_schema``, else ``json_object``, else the schema
        in the system prompt, as the endpoint allows (:mod:`rlm_pipeline.llm.probe`).
        Only a reply that passed the check is cached; parse failures are not retried.

        Parameters
        ----------
        messages, max_tokens, prompt_version
            As in :meth:`chat`.
        schema
            JSON Schema of the reply object.
        name
            Schema name sent with ``json_schema`` (letters, digits, ``_``, ``-``).
        accept
            The caller's check of the parsed object, in place of jsonschema's (the
            operators check every row themselves); called on every object read,
            cached or fresh, last on the one returned.  A reply it rejects is
            returned but never cached; a cached reply it rejects is asked again.

        Returns
        -------
        tuple[dict, ChatReply]
            The object and the reply it came from.

        Raises
        ------
        LLMResponseParseError
            No JSON object, or (without ``accept``) one not matching ``schema``
            (``.raw`` has the text).
        LLMError, BudgetExceededError
            As in :meth:`chat`.
        """
        # Compiled once per schema; fails early on a bad schema even with ``accept``.
        validator = schema_validator(schema)
        key = self._replies.json_key(
            messages, schema, name=name, max_tokens=max_tokens, prompt_version=prompt_version
        )
        hit = self._replies.get(key)
        if hit is not None and self.config.logprobs is not None and hit.logprobs is None:
            hit = None  # stored without log-probabilities (asked without them): ask again
        if hit is not None and key is not None:
            value = _stored_value(hit, key, validator, accept)
            if value is not None:
                self._served()
                return value, hit
        send = partial(self._structured_try, messages, schema, name, max_tokens)
        reply, allowance = await self._probe.run(send, schema_kind(schema))
        value = self._reply_value(reply, allowance, validator if accept is None else None)
        if accept is None or accept(value):
            self._replies.put(key, reply, asked=max_tokens, sent=allowance.sent)
        return value, reply

    async def preflight(self) -> bool:
        """Check the endpoint with one minimal request (a 1-token chat) before a large run.

        Only a systemic failure (the circuit breaker trips: unreachable,
        key refused, unknown model, no endpoint configured) is raised; any
        other outcome — a reply, a 400, a 5xx after this client's retries, a
        budget stop — passes, and the run itself deals with it.  The call is
        recorded in the meter like any other.  With a response cache holding
        a reply to this same request (the endpoint answered it before),
        nothing is sent or recorded.

        Returns
        -------
        bool
            Whether a request was sent.

        Raises
        ------
        LLMEndpointError
            The endpoint fails for a systemic cause.

        Examples
        --------
        >>> import asyncio
        >>> from rlm_pipeline.errors import LLMEndpointError
        >>> from rlm_pipeline.llm.config import LLM
        >>> from rlm_pipeline.llm.retry import RetryPolicy
        >>> async def main() -> None:
        ...     llm = LLM(model="m", base_url="http://127.0.0.1:9/v1")
        ...     async with LLMClient(llm, retry=RetryPolicy(base_delay_s=0.01)) as client:
        ...         await client.preflight()
        >>> try:
        ...     asyncio.run(main())
        ... except LLMEndpointError as exc:
        ...     print(exc)
        connection refused at http://127.0.0.1:9/v1 — is the server running?
        """
        key = self._replies.chat_key(
            PREFLIGHT_MESSAGES, max_tokens=1, prompt_version=PREFLIGHT_VERSION
        )
        if self._replies.contains(key):
            return False
        try:
            await self.chat(PREFLIGHT_MESSAGES, max_tokens=1, prompt_version=PREFLIGHT_VERSION)
        except LLMEndpointError:
            raise
        except (LLMError, BudgetExceededError) as exc:
            logger.debug("preflight of %s passed with: %s", self._endpoint[0], exc)
        return True

    async def aclose(self) -> None:
        """Close the HTTP client (when this client built it) and the cache."""
        if self._closed:
            return
        self._closed = True
        if self._owns_http:
            await self._openai.close()
        self._replies.close()

    async def __aenter__(self) -> LLMClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # ------------------------------------------------------------- structured

    async def _structured_try(
        self,
        messages: list[dict[str, Any]],
        schema: dict[str, Any],
        name: str,
        max_tokens: int | None,
        mode: StructuredMode,
    ) -> tuple[ChatReply, Allowance]:
        """One structured request in ``mode`` (raises :class:`FormatRejected` if refused)."""
        wire_messages, response_format = build_request(mode, messages, schema, name)
        return await self._request(
            wire_messages,
            tools=None,
            tool_choice=None,
            response_format=response_format,
            max_tokens=max_tokens,
            structured=True,
        )

    def _reply_value(
        self, reply: ChatReply, allowance: Allowance, validator: Validator | None
    ) -> dict[str, Any]:
        """The JSON object of a fresh structured reply (checked against ``validator`` if given).

        A reply cut at its length limit that does not parse is a budget stop
        when the budget set the limit, else a parse error naming the limit.
        """
        try:
            value = parse_json_object(reply.content)
            if validator is not None:
                check_schema(value, validator, raw=reply.content or "")
        except LLMResponseParseError as exc:
            exc.reply = reply  # its tokens were spent (callers counting their own calls read them)
            if reply.finish_reason != "length":
                raise
            if allowance.cut_by_budget and self.guard is not None:
                raise self.guard.exhausted() from exc  # the budget, not the model, cut it
            msg = f"reply cut at the {allowance.sent}-token limit (finish_reason 'length')"
            raise LLMResponseParseError(msg, raw=exc.raw, reply=reply) from exc
        return value

    def _served(self) -> None:
        """Record a reply served from the cache."""
        self.meter.record(input_tokens=0, output_tokens=0, cost_usd=0.0, cached=True)

    # ---------------------------------------------------------------- sending

    def _check_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            msg = "an LLMClient serves one event loop; build one client per loop"
            raise InputError(msg)
        if self._closed:
            msg = "this LLMClient is closed"
            raise InputError(msg)

    async def _request(
        self,
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None,
        tool_choice: str | dict[str, Any] | None,
        response_format: dict[str, Any] | None,
        max_tokens: int | None,
        structured: bool = False,
    ) -> tuple[ChatReply, Allowance]:
        """Send one request; return the reply and its reply allowance.

        The allowance (:mod:`rlm_pipeline.llm.allowance`) is booked with the
        budget guard and the tpm limiter and, whenever a booking depends on it
        (a token or priced cost limit, a tpm limit) or the caller gave
        ``max_tokens``, sent as ``max_tokens``: the reply cannot be longer than
        what was booked.
        """
        self._check_loop()
        if self._unconfigured is not None:
            self._breaker.trip(self._unconfigured)
        self._breaker.check()  # tripped: nothing is reserved or sent
        prompt_tokens = estimate_message_tokens(messages, tools)
        wanted = wanted_reply_tokens(
            prompt_tokens=prompt_tokens, max_tokens=max_tokens, structured=structured
        )
        reservation: Reservation | None = None
        bounded = max_tokens is not None or self._tpm is not None
        if self.guard is not None:
            reservation = self.guard.reserve_request(
                prompt_tokens=prompt_tokens, reply_tokens=wanted, price=self._price
            )
            bounded = bounded or self.guard.limits_reply(self._price)
        allowance = reply_allowance(
            wanted=wanted,
            budget_cut=reservation.reply_tokens if reservation is not None else None,
            bounded=bounded,
        )
        if max_tokens is not None and allowance.cut_by_budget:
            logger.debug("budget: reply limit cut from %d to %s tokens", max_tokens, allowance.sent)
        params = _params(self.config, messages, tools, tool_choice, response_format, allowance)
        try:
            reply = await self._send(params, prompt_tokens, prompt_tokens + allowance.booked)
        finally:
            if reservation is not None and self.guard is not None:
                self.guard.release(reservation)
        if reply.finish_reason == "length":
            logger.debug("reply cut at the %s-token limit", allowance.sent)
        return reply, allowance

    async def _send(
        self, params: dict[str, Any], prompt_tokens: int, projected_tokens: int
    ) -> ChatReply:
        """The retry loop: tries until a reply, a final error or a tripped breaker."""
        attempt = 0
        call = next(self._call_ids)
        leading = False  # this call retries the connection for the client
        try:
            while True:
                await self._gate.wait_turn(leading)
                try:
                    async with self._semaphore:
                        if self._gate.others_reconnecting(leading):
                            continue  # another call began retrying the connection meanwhile
                        self._breaker.check()  # tripped while this call waited for a slot
                        attempt += 1
                        await self._pace(projected_tokens)
                        with mapped_errors():
                            try:
                                response = await self._post(params)
                            except asyncio.CancelledError:
                                self._spent_unanswered(prompt_tokens, projected_tokens)
                                raise
                except TryFailed as failed:
                    if failed.connect and self._breaker.armed:
                        leading = await self._gate.connect_failed(
                            failed.__cause__ or failed, leading
                        )
                        continue
                    if not failed.connect:
                        # Connected (an HTTP status, a read timeout, a reset): this call
                        # no longer retries the connection for the others.
                        leading = self._gate.reached(leading)
                    await self._gate.pause(self._after_failure(failed, attempt, call, params))
                    continue
                leading = self._gate.reached(leading)
                self._breaker.success()
                return self._reply_from(response, prompt_tokens, projected_tokens)
        finally:
            if leading:
                self._gate.end_reconnect()

    def _spent_unanswered(self, prompt_tokens: int, projected_tokens: int) -> None:
        """A request cancelled in flight (it may have been answered): one call, its booked tokens.

        So the meter never shows less than the server may bill, and a budget over
        several tasks (one cancelled with its siblings) cannot be passed by them.
        """
        reply_tokens = max(0, projected_tokens - prompt_tokens)
        self.meter.record(
            input_tokens=prompt_tokens,
            output_tokens=reply_tokens,
            cost_usd=self._price.cost(prompt_tokens, reply_tokens),
        )

    async def _pace(self, projected_tokens: int) -> None:
        """Wait for the rpm and tpm limiters (inside a concurrency slot)."""
        if self._rpm is not None:
            await self._rpm.acquire()
        if self._tpm is not None:
            await self._tpm.acquire(projected_tokens)

    async def _post(self, params: dict[str, Any]) -> httpx2.Response:
        # The low-level post skips the SDK's per-call TypedDict transform and
        # pydantic model building (≈ 2 ms of CPU per call): ``params`` is
        # JSON-ready already, and we read the few reply fields we use.  Headers,
        # auth, base_url, timeouts and the status -> exception mapping are still
        # the openai client's.
        return await self._openai.post(
            "/chat/completions",
            cast_to=httpx2.Response,
            body=params,
            options={"security": {"bearer_auth": True}},
        )

    def _after_failure(
        self, failed: TryFailed, attempt: int, call: int, params: dict[str, Any]
    ) -> float:
        """What follows a failed try: the backoff before the next one, or the error raised.

        Raises
        ------
        FormatRejected
            The endpoint refused the ``response_format`` (the probe falls back).
        LLMEndpointError
            The circuit breaker tripped.
        LLMError
            The try is not worth repeating, or it was the last (:func:`final_error`).
        """
        cause = failed.__cause__
        status = failed.status
        if status is not None:
            if "response_format" in params and is_format_rejection(status, failed.detail):
                self._breaker.other()
                raise FormatRejected(status, failed.detail) from cause
            if "tools" in params and is_tools_refusal(status, failed.detail):
                self._breaker.other()  # the server answers; it does not take tools
                self.meter.record_failure()
                raise final_error(failed, attempts=attempt, endpoint=self._endpoint[0]) from cause
            tripped = self._breaker.on_status(status, failed.detail, call=call)
            if tripped is not None:
                self.meter.record_failure()
                self._gate.wake()
                tripped.attempts = attempt
                raise tripped from cause
        elif failed.kind == "connection" or failed.connect:
            lost = self._breaker.connection_lost(cause or failed, call=call)
            if lost is not None:  # the server stopped answering mid-run
                self.meter.record_failure()
                self._gate.wake()
                lost.attempts = attempt
                raise lost from cause
            self._breaker.other()
        elif failed.kind != "other":
            self._breaker.other()
        tries = self.retry.max_retries + 1
        if not failed.retryable or attempt >= tries:
            logger.debug("not retrying %s (try %d of %d)", failed, attempt, tries)
            self.meter.record_failure()
            raise final_error(failed, attempts=attempt, endpoint=self._endpoint[0]) from cause
        delay = retry_delay(attempt, failed.retry_after, self._rng, self.retry)
        what = f"HTTP {status}" if status is not None else failed.kind
        logger.debug("retrying %s in %.3fs (try %d of %d)", what, delay, attempt, tries)
        return delay

    def _reply_from(
        self, response: httpx2.Response, prompt_tokens: int, projected_tokens: int
    ) -> ChatReply:
        """Our :class:`ChatReply` from a chat completion (:func:`read_completion`), usage recorded.

        A body that is not a JSON object is a :class:`LLMResponseParseError`
        (nothing is recorded for it but a failed call); a reply without usage
        numbers is recorded with estimated tokens.
        """
        try:
            done = read_completion(response.content)
        except NotJSON as exc:
            self.meter.record_failure()
            raise LLMResponseParseError(str(exc), raw=_body_text(response)) from exc
        if done.usage is not None:
            input_tokens, output_tokens = done.usage
        else:
            logger.debug("reply carries no usage; recording estimated tokens")
            input_tokens = prompt_tokens
            output_tokens = estimate_tokens(done.content or "")
        cached_tokens = min(done.cached_tokens, input_tokens)  # provider's prompt cache
        self.meter.record(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost_usd=self._price.cost(input_tokens, output_tokens, cached_tokens),
            cached_tokens=cached_tokens,
        )
        if self._tpm is not None:
            self._tpm.adjust(input_tokens + output_tokens - projected_tokens)
        reply = ChatReply(
            content=done.content,
            tool_calls=done.tool_calls,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cached=False,
            finish_reason=done.finish_reason,
            logprobs=done.logprobs,
            cached_tokens=cached_tokens,
        )
        if not done.has_message:
            raise LLMResponseParseError("reply has no choices", raw=_body_text(response), reply=reply)
        return reply


def _meter_and_guard(
    config: LLM, meter: UsageMeter | None, budget: Budget | BudgetGuard | None
) -> tuple[UsageMeter, BudgetGuard | None]:
    """The client's meter and budget guard (see :class:`LLMClient`'s ``budget``)."""
    guard: BudgetGuard | None
    if isinstance(budget, BudgetGuard):
        if meter is not None and meter is not budget.meter:
            msg = "meter and budget guard disagree: pass the guard's meter or none"
            raise InputError(msg)
        meter, guard = budget.meter, budget
    else:
        meter = meter if meter is not None else UsageMeter()
        guard = shared_guard(budget, meter) if budget is not None else None
    if guard is not None:
        config.require_price(guard.budget)
    return meter, guard


def _timeout(config: LLM) -> httpx2.Timeout:
    return httpx2.Timeout(
        config.timeout_s, connect=min(config.timeout_s, DEFAULT_CONNECT_TIMEOUT_S)
    )


def _http_client(config: LLM) -> httpx2.AsyncClient:
    """The client's own HTTP client over a :class:`LeanTransport`.

    Requests in flight are bounded by the client's semaphore, so the lean
    transport needs no pool of its own; the limits and TLS settings also apply
    to the transports httpx mounts for proxy environment variables.
    """
    return httpx2.AsyncClient(
        timeout=_timeout(config),
        transport=LeanTransport(max_idle=config.max_concurrency),
        limits=httpx2.Limits(
            max_connections=config.max_concurrency + 4,
            max_keepalive_connections=config.max_concurrency,
        ),
        follow_redirects=True,
        verify=shared_ssl_context(),
    )


def _params(
    config: LLM,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None,
    tool_choice: str | dict[str, Any] | None,
    response_format: dict[str, Any] | None,
    allowance: Allowance,
) -> dict[str, Any]:
    """The request body."""
    params: dict[str, Any] = {
        "model": config.model,
        "messages": messages,
        "temperature": config.temperature,
    }
    if tools:
        params["tools"] = tools
    if tool_choice is not None:
        params["tool_choice"] = tool_choice
    if response_format is not None:
        params["response_format"] = response_format
    if allowance.sent is not None:
        params["max_tokens"] = allowance.sent
    if config.logprobs is not None:
        params["logprobs"] = True
        params["top_logprobs"] = config.logprobs
    return params


def _stored_value(
    hit: ChatReply, key: str, validator: Validator, accept: Accept | None
) -> dict[str, Any] | None:
    """The object of a cached structured reply, or None when it no longer passes the check."""
    try:
        value = parse_json_object(hit.content)
        if accept is None:
            check_schema(value, validator, raw=hit.content or "")
    except LLMResponseParseError:
        logger.warning("response cache: stored reply %s no longer validates", key[:12])
        return None
    if accept is not None and not accept(value):
        logger.debug("response cache: stored reply %s rejected by the caller", key[:12])
        return None
    return value


def _body_text(response: httpx2.Response) -> str:
    """The start of a response body as text (for error messages)."""
    try:
        return response.text[:1000]
    except (httpx2.ResponseNotRead, UnicodeDecodeError):
        return ""
