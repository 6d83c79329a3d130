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
retries while the others wait for its verdict), not the full backoff.

Structured calls (:meth:`LLMClient.json`) to an endpoint whose structured-output
mode is not known yet are led by one *probe*: the first call tries the modes in
order and the others wait for it, but at most :data:`PROBE_GRACE_S` per try of
the probe.  Servers refuse a ``response_format`` they lack at once, so a try
not refused by then was most likely accepted: the others go in its mode
instead of idling for a whole model latency.  A later refusal costs each call
sent meanwhile one refused try (it then falls back on its own).

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
import json
import logging
import random
from types import TracebackType
from typing import Any

import httpx2
import openai

from rlm_pipeline.errors import (
    BudgetExceededError,
    InputError,
    LLMEndpointError,
    LLMError,
    LLMRateLimitError,
    LLMResponseParseError,
    LLMTimeoutError,
)
from rlm_pipeline.llm.breaker import (
    CONNECT_MAX_DELAY_S,
    CONNECT_TRIES,
    DEFAULT_ENDPOINT,
    Breaker,
    connect_error,
    is_connect_failure,
    missing_endpoint,
)
from rlm_pipeline.llm.budget import BudgetGuard, Reservation, shared_guard
from rlm_pipeline.llm.cache import ResponseCache, chat_key, json_key
from rlm_pipeline.llm.config import LLM, Budget
from rlm_pipeline.llm.ratelimit import RateLimiter
from rlm_pipeline.llm.reply import ChatReply, ToolCall
from rlm_pipeline.llm.retry import RetryPolicy, parse_retry_after, retry_delay, should_retry
from rlm_pipeline.llm.structured import (
    StructuredMode,
    build_request,
    is_format_rejection,
    known_mode,
    next_mode,
    parse_json_object,
    remember_mode,
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
    "ChatReply",
    "LLMClient",
    "ToolCall",
]

logger = logging.getLogger(__name__)

#: Reply allowance booked for budget and tpm projections when ``max_tokens`` is not given
#: (structured requests: the prompt's token count when larger); sent as ``max_tokens``
#: when a token / priced cost budget or ``tpm`` depends on it.
DEFAULT_REPLY_TOKENS = 256
#: The same allowance for plain chat / tool-call replies (the RLM root's turns): a tool
#: call with SQL and an explanation must not be cut.
DEFAULT_CHAT_REPLY_TOKENS = 1024
#: Longest wait for a TCP connection (capped by the config's ``timeout_s``).
DEFAULT_CONNECT_TIMEOUT_S = 10.0
#: How long calls wait on the structured-mode probe's current try before going in its mode.
PROBE_GRACE_S = 0.02
#: The request :meth:`LLMClient.preflight` sends (with ``max_tokens=1``).
PREFLIGHT_MESSAGES: list[dict[str, Any]] = [{"role": "user", "content": "Reply with OK."}]
#: Cache key version of the preflight request.
PREFLIGHT_VERSION = "preflight-1"


class _FormatRejected(Exception):
    """The endpoint refused our ``response_format`` (internal: triggers the fallback)."""

    def __init__(self, status: int, detail: str) -> None:
        self.status = status
        self.detail = detail
        super().__init__(f"HTTP {status}: {detail[:200]}")


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
        if isinstance(budget, BudgetGuard):
            if meter is not None and meter is not budget.meter:
                msg = "meter and budget guard disagree: pass the guard's meter or none"
                raise InputError(msg)
            self.meter = budget.meter
            self.guard: BudgetGuard | None = budget
        else:
            self.meter = meter if meter is not None else UsageMeter()
            self.guard = shared_guard(budget, self.meter) if budget is not None else None
        if self.guard is not None:
            config.require_price(self.guard.budget)
        self.retry = retry if retry is not None else RetryPolicy(max_retries=config.max_retries)
        self._rng = rng if rng is not None else random.Random()
        self._price = config.price()
        base_url = config.resolved_base_url()
        self._endpoint = (base_url or DEFAULT_ENDPOINT, config.model)
        # The circuit breaker (see the module docstring), the call retrying the
        # connection for all (resolved with its verdict), and a future resolved
        # when the breaker trips (wakes the calls sleeping in a backoff).
        self._breaker = Breaker(self._endpoint[0], config.model)
        self._unconfigured = missing_endpoint(config)
        self._reconnecting: asyncio.Future[None] | None = None
        self._connect_fails = 0
        self._tripped: asyncio.Future[None] | None = None
        self._call_ids = itertools.count()
        timeout = httpx2.Timeout(
            config.timeout_s, connect=min(config.timeout_s, DEFAULT_CONNECT_TIMEOUT_S)
        )
        self._owns_http = http_client is None
        if http_client is None:
            # Requests in flight are bounded by our semaphore, so the lean transport
            # needs no pool of its own; the limits and TLS settings also apply to the
            # transports httpx mounts for proxy environment variables.
            http_client = httpx2.AsyncClient(
                timeout=timeout,
                transport=LeanTransport(max_idle=config.max_concurrency),
                limits=httpx2.Limits(
                    max_connections=config.max_concurrency + 4,
                    max_keepalive_connections=config.max_concurrency,
                ),
                follow_redirects=True,
                verify=shared_ssl_context(),
            )
        self._http = http_client
        self._openai = openai.AsyncOpenAI(
            api_key=config.resolved_api_key(),
            base_url=base_url,
            timeout=timeout,
            max_retries=0,
            http_client=http_client,
        )
        self._semaphore = asyncio.Semaphore(config.max_concurrency)
        # Each limiter starts its schedule at a random point of its first interval,
        # so the fresh clients of many Spark tasks (each with rpm / N) do not all
        # send their first request at once (see RateLimiter).
        self._rpm = RateLimiter(config.rpm, rng=self._rng) if config.rpm is not None else None
        self._tpm = RateLimiter(config.tpm, rng=self._rng) if config.tpm is not None else None
        self._cache = ResponseCache(config.cache_path) if config.cache_path else None
        # The structured-mode probe (see the module docstring): done when its call
        # ends, the mode it is trying, and a count of its rejected tries.
        self._probe: asyncio.Future[None] | None = None
        self._probe_mode: StructuredMode = "json_schema"
        self._probe_rejections = 0
        self._probe_grace_s = probe_grace_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    # ------------------------------------------------------------------ public

    @property
    def usage(self) -> Usage:
        """What this client's meter has recorded so far."""
        return self.meter.snapshot()

    @property
    def cache(self) -> ResponseCache | None:
        """The response cache, when ``config.cache_path`` is set."""
        return self._cache

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
        tools
            OpenAI function-tool schemas offered to the model.
        tool_choice
            ``"auto"``, ``"required"``, ``"none"`` or a specific tool.
        max_tokens
            Reply length limit (also bounds the budget projection).  With a
            token or cost budget, or ``tpm``, a limit is always sent: this one
            or :data:`DEFAULT_REPLY_TOKENS`, cut to what the budget has left.
        prompt_version
            Part of the cache key; bump it to invalidate cached replies.

        Returns
        -------
        ChatReply
            Content, tool calls (raw JSON arguments) and token counts.

        Raises
        ------
        LLMEndpointError
            The circuit breaker tripped (see the module docstring): connection
            refused, DNS or TLS failure, 401/403/404 or the same 5xx on every
            call before any success, or no endpoint configured.  Raised at once
            by every later call of this client.
        LLMError
            At once for other 4xx (400, 422); after the last retry for 429
            (:class:`LLMRateLimitError`), timeouts (:class:`LLMTimeoutError`),
            5xx and connection errors.
        BudgetExceededError
            When the projected spend would pass the budget (nothing is sent).
        """
        key = None
        if self._cache is not None:
            key = chat_key(
                self.config,
                messages,
                tools=tools,
                tool_choice=tool_choice,
                max_tokens=max_tokens,
                prompt_version=prompt_version,
            )
            hit = self._cache.get(key)
            if hit is not None:
                self.meter.record(input_tokens=0, output_tokens=0, cost_usd=0.0, cached=True)
                return hit
        reply, sent_limit = await self._request(
            messages,
            tools=tools,
            tool_choice=tool_choice,
            response_format=None,
            max_tokens=max_tokens,
        )
        if (
            key is not None
            and self._cache is not None
            and _cacheable(reply, max_tokens, sent_limit)
        ):
            self._cache.put(key, reply)
        return reply

    async def json(
        self,
        messages: list[dict[str, Any]],
        schema: dict[str, Any],
        *,
        name: str,
        max_tokens: int | None = None,
        prompt_version: str | None = None,
        validate: bool = True,
    ) -> tuple[dict[str, Any], ChatReply]:
        """Ask for a JSON object matching ``schema``; return it parsed and validated.

        Tries ``response_format`` ``json_schema``, then ``json_object`` with the
        schema, then the schema in the system prompt, as the endpoint allows
        (see :mod:`rlm_pipeline.llm.structured`).  Only a reply that validates is
        cached; parse failures are not retried here.

        Parameters
        ----------
        messages
            OpenAI chat messages.
        schema
            JSON Schema of the reply object.
        name
            Schema name sent with ``json_schema`` (letters, digits, ``_``, ``-``).
        max_tokens, prompt_version
            As in :meth:`chat`.
        validate
            Check the object against ``schema`` with jsonschema (the default).
            Pass False when the caller checks every reply itself (as the
            operators do, row by row): the reply must still hold a JSON object,
            and the caller must then drop a cached reply it rejects
            (:meth:`ResponseCache.delete` with the same :func:`json_key`).
            A cache hit is not validated either.

        Returns
        -------
        tuple[dict, ChatReply]
            The validated object and the reply it came from.

        Raises
        ------
        LLMResponseParseError
            The reply held no JSON object or (when validating) it did not
            match; ``.raw`` has the text.
        LLMError, BudgetExceededError
            As in :meth:`chat`.
        """
        # Compiled once per schema; fails early on a bad schema even when not validating.
        validator = schema_validator(schema)
        key = None
        if self._cache is not None:
            key = json_key(
                self.config,
                messages,
                schema,
                name=name,
                max_tokens=max_tokens,
                prompt_version=prompt_version,
            )
            hit = self._cache.get(key)
            if hit is not None:
                try:
                    value = parse_json_object(hit.content)
                    if validate:
                        check_schema(value, validator, raw=hit.content or "")
                except LLMResponseParseError:
                    logger.warning("response cache: stored reply %s no longer validates", key[:12])
                else:
                    self.meter.record(input_tokens=0, output_tokens=0, cost_usd=0.0, cached=True)
                    return value, hit
        reply, sent_limit = await self._structured(messages, schema, name, max_tokens)
        raw = reply.content or ""
        try:
            value = parse_json_object(reply.content)
            if validate:
                check_schema(value, validator, raw=raw)
        except LLMResponseParseError as exc:
            if reply.finish_reason != "length":
                raise
            wanted = max_tokens or max(DEFAULT_REPLY_TOKENS, estimate_message_tokens(messages))
            if sent_limit is not None and sent_limit < wanted and self.guard is not None:
                # The budget, not the model, cut this reply: it is a budget stop.
                raise self.guard.exhausted() from exc
            msg = f"reply cut at the {sent_limit}-token limit (finish_reason 'length')"
            raise LLMResponseParseError(msg, raw=exc.raw) from exc
        if (
            key is not None
            and self._cache is not None
            and _cacheable(reply, max_tokens, sent_limit)
        ):
            self._cache.put(key, reply)
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
        if self._cache is not None:
            key = chat_key(
                self.config, PREFLIGHT_MESSAGES, max_tokens=1, prompt_version=PREFLIGHT_VERSION
            )
            if self._cache.get(key) is not None:
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
        if self._cache is not None:
            self._cache.close()

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

    async def _structured(
        self,
        messages: list[dict[str, Any]],
        schema: dict[str, Any],
        name: str,
        max_tokens: int | None,
    ) -> tuple[ChatReply, int | None]:
        base_url, model = self._endpoint
        mode = known_mode(base_url, model)
        if mode is not None:
            return await self._structured_from(mode, messages, schema, name, max_tokens)
        if self._probe is None or self._probe.done():
            probe = self._probe = asyncio.get_running_loop().create_future()
            self._probe_mode = "json_schema"
            try:
                return await self._structured_from(
                    "json_schema", messages, schema, name, max_tokens, probe=True
                )
            finally:
                probe.set_result(None)
        return await self._structured_from(
            await self._wait_for_probe(self._probe), messages, schema, name, max_tokens
        )

    async def _wait_for_probe(self, probe: asyncio.Future[None]) -> StructuredMode:
        """The mode to send in: the known one, or the probe's once its try outlasts the grace."""
        while not probe.done():
            rejections = self._probe_rejections
            await asyncio.wait({probe}, timeout=self._probe_grace_s)
            if self._probe_rejections == rejections:
                break  # no rejection within the grace: most likely accepted
        base_url, model = self._endpoint
        return known_mode(base_url, model) or self._probe_mode

    async def _structured_from(
        self,
        mode: StructuredMode,
        messages: list[dict[str, Any]],
        schema: dict[str, Any],
        name: str,
        max_tokens: int | None,
        *,
        probe: bool = False,
    ) -> tuple[ChatReply, int | None]:
        base_url, model = self._endpoint
        current = mode
        while True:
            wire_messages, response_format = build_request(current, messages, schema, name)
            try:
                sent = await self._request(
                    wire_messages,
                    tools=None,
                    tool_choice=None,
                    response_format=response_format,
                    max_tokens=max_tokens,
                    structured=True,
                )
            except _FormatRejected as exc:
                fallback = next_mode(current)
                if fallback is None:  # pragma: no cover - text mode sends no response_format
                    msg = f"endpoint rejected every structured-output mode: {exc}"
                    raise LLMError(msg, status=exc.status) from exc
                logger.info(
                    "%s (%s) rejected response_format %s (HTTP %d); falling back to %s",
                    base_url,
                    model,
                    current,
                    exc.status,
                    fallback,
                )
                current = fallback
                if probe:
                    self._probe_mode = fallback
                    self._probe_rejections += 1
                continue
            if known_mode(base_url, model) != current:
                remember_mode(base_url, model, current)
            return sent

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
    ) -> tuple[ChatReply, int | None]:
        """Send one request; return the reply and the ``max_tokens`` sent (None: none sent).

        The reply allowance is the caller's ``max_tokens``, else
        :data:`DEFAULT_REPLY_TOKENS` (for a structured request: the prompt's
        size if larger), cut to what the budget has left after the prompt.  It is booked with the budget guard and the tpm limiter and,
        whenever a booking depends on it (a token or priced cost limit, a tpm
        limit) or the caller gave one, sent as ``max_tokens``: the reply cannot
        be longer than what was booked.
        """
        self._check_loop()
        if self._unconfigured is not None:
            self._breaker.trip(self._unconfigured)
        self._breaker.check()  # tripped: nothing is reserved or sent
        prompt_tokens = estimate_message_tokens(messages, tools)
        if max_tokens is not None:
            reply_tokens = max_tokens
        elif structured:
            # A structured reply answers the rows in its prompt (a batch of 64
            # labels is ~500 tokens): book up to the prompt's size, not 256.
            reply_tokens = max(DEFAULT_REPLY_TOKENS, prompt_tokens)
        else:
            reply_tokens = DEFAULT_CHAT_REPLY_TOKENS
        reservation: Reservation | None = None
        bounded = max_tokens is not None or self._tpm is not None
        if self.guard is not None:
            reservation = self.guard.reserve_request(
                prompt_tokens=prompt_tokens, reply_tokens=reply_tokens, price=self._price
            )
            if reservation.reply_tokens is not None:
                reply_tokens = reservation.reply_tokens
            bounded = bounded or self.guard.limits_reply(self._price)
        projected = prompt_tokens + reply_tokens
        sent_limit = reply_tokens if bounded else None
        if max_tokens is not None and sent_limit is not None and sent_limit < max_tokens:
            logger.debug("budget: reply limit cut from %d to %d tokens", max_tokens, sent_limit)
        params: dict[str, Any] = {
            "model": self.config.model,
            "messages": messages,
            "temperature": self.config.temperature,
        }
        if tools:
            params["tools"] = tools
        if tool_choice is not None:
            params["tool_choice"] = tool_choice
        if response_format is not None:
            params["response_format"] = response_format
        if sent_limit is not None:
            params["max_tokens"] = sent_limit
        try:
            reply = await self._send(params, prompt_tokens, projected)
        finally:
            if reservation is not None and self.guard is not None:
                self.guard.release(reservation)
        if reply.finish_reason == "length":
            logger.debug("reply cut at the %s-token limit", sent_limit)
        return reply, sent_limit

    async def _send(
        self, params: dict[str, Any], prompt_tokens: int, projected_tokens: int
    ) -> ChatReply:
        policy = self.retry
        tries = policy.max_retries + 1
        attempt = 0
        call = next(self._call_ids)
        leading = False  # this call retries the connection for the client
        try:
            while True:
                await self._wait_for_reconnect(leading)
                try:
                    async with self._semaphore:
                        if self._reconnecting is not None and not leading:
                            continue  # another call began retrying the connection meanwhile
                        self._breaker.check()  # tripped while this call waited for a slot
                        attempt += 1
                        if self._rpm is not None:
                            await self._rpm.acquire()
                        if self._tpm is not None:
                            await self._tpm.acquire(projected_tokens)
                        # The low-level post skips the SDK's per-call TypedDict transform
                        # and pydantic model building (≈ 2 ms of CPU per call): ``params``
                        # is JSON-ready already, and we read the few reply fields we use.
                        # Headers, auth, base_url, timeouts and the status -> exception
                        # mapping are still the openai client's.
                        response = await self._openai.post(
                            "/chat/completions",
                            cast_to=httpx2.Response,
                            body=params,
                            options={"security": {"bearer_auth": True}},
                        )
                except openai.APIStatusError as exc:
                    leading = self._reached(leading)
                    status = exc.status_code
                    if "response_format" in params:
                        detail = _error_text(exc)
                        if is_format_rejection(status, detail):
                            self._breaker.other()
                            raise _FormatRejected(status, detail) from exc
                    tripped = self._breaker.on_status(status, _error_text(exc), call=call)
                    if tripped is not None:
                        self.meter.record_failure()
                        self._wake()
                        tripped.attempts = attempt
                        raise tripped from exc
                    if not should_retry(status):
                        logger.debug("not retrying HTTP %d (try %d)", status, attempt)
                        self.meter.record_failure()
                        msg = f"HTTP {status} from {self._endpoint[0]}: {_error_text(exc)[:300]}"
                        raise LLMError(msg, status=status, attempts=attempt) from exc
                    if attempt >= tries:
                        self.meter.record_failure()
                        error_cls = LLMRateLimitError if status == 429 else LLMError
                        msg = f"{status} after {attempt} tries: {_error_text(exc)[:200]}"
                        raise error_cls(msg, status=status, attempts=attempt) from exc
                    delay = retry_delay(
                        attempt, parse_retry_after(exc.response.headers), self._rng, policy
                    )
                    logger.debug(
                        "retrying HTTP %d in %.3fs (try %d of %d)", status, delay, attempt, tries
                    )
                    await self._pause(delay)
                    continue
                except openai.APIConnectionError as exc:
                    if self._breaker.armed and is_connect_failure(exc):
                        leading = await self._connect_failed(exc, leading)
                        continue
                    self._breaker.other()
                    timed_out = isinstance(exc, openai.APITimeoutError)
                    what = "timeout" if timed_out else "connection error"
                    if attempt >= tries or not should_retry(exc):
                        self.meter.record_failure()
                        error_cls = LLMTimeoutError if timed_out else LLMError
                        msg = f"{what} after {attempt} tries ({self._endpoint[0]})"
                        raise error_cls(msg, attempts=attempt) from exc
                    delay = retry_delay(attempt, None, self._rng, policy)
                    logger.debug("retrying %s in %.3fs (try %d of %d)", what, delay, attempt, tries)
                    await self._pause(delay)
                    continue
                except openai.OpenAIError as exc:
                    self.meter.record_failure()
                    msg = f"model call failed: {exc}"
                    raise LLMError(msg, attempts=attempt) from exc
                leading = self._reached(leading)
                self._breaker.success()
                return self._reply_from(response, prompt_tokens, projected_tokens)
        finally:
            if leading:
                self._end_reconnect()

    # ---------------------------------------------------------------- breaker

    async def _wait_for_reconnect(self, leading: bool) -> None:
        """Before a try: wait while another call retries the connection; raise if tripped."""
        while not leading and self._reconnecting is not None:
            await asyncio.wait({self._reconnecting})
        self._breaker.check()

    async def _connect_failed(self, exc: openai.APIConnectionError, leading: bool) -> bool:
        """A try could not connect, and the endpoint never answered: retry quickly, or trip.

        The first call to fail leads: it retries (up to :data:`CONNECT_TRIES`
        tries in all, fewer when the retry policy allows fewer) while every
        other call waits for its verdict, so a dead endpoint sees a handful of
        connection attempts, not one per call.  Returns whether this call leads.

        Raises
        ------
        LLMEndpointError
            The connection kept failing (the breaker trips).
        """
        self._breaker.check()  # tripped meanwhile (by the call that led before)
        if self._reconnecting is not None and not leading:
            return False  # another call leads: wait for it at the top of the loop
        if self._reconnecting is None:
            self._reconnecting = asyncio.get_running_loop().create_future()
            self._connect_fails = 0
        try:
            self._connect_fails += 1
            if self._connect_fails >= min(CONNECT_TRIES, self.retry.max_retries + 1):
                self.meter.record_failure()
                error = self._breaker.trip(
                    connect_error(self._endpoint[0], exc, attempts=self._connect_fails)
                )
                logger.debug("circuit breaker tripped: %s", error)
                self._wake()
                raise error from exc
            delay = min(
                retry_delay(self._connect_fails, None, self._rng, self.retry), CONNECT_MAX_DELAY_S
            )
            logger.debug(
                "cannot connect to %s; retrying in %.3fs (try %d of %d)",
                self._endpoint[0],
                delay,
                self._connect_fails,
                CONNECT_TRIES,
            )
            await self._pause(delay)
        except BaseException:
            self._end_reconnect()  # never leave the others waiting on a call that is gone
            raise
        return True

    def _reached(self, leading: bool) -> bool:
        """A try got an HTTP reply: the endpoint is reachable, the waiting calls may go."""
        if leading:
            self._end_reconnect()
        return False

    def _end_reconnect(self) -> None:
        waiter, self._reconnecting = self._reconnecting, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake(self) -> None:
        """The breaker tripped: wake every call that waits or sleeps, so each raises at once."""
        self._end_reconnect()
        if self._tripped is not None and not self._tripped.done():
            self._tripped.set_result(None)

    async def _pause(self, delay: float) -> None:
        """Sleep ``delay`` seconds of backoff, or less if the breaker trips meanwhile."""
        if self._tripped is None:
            self._tripped = asyncio.get_running_loop().create_future()
        if not self._tripped.done():
            await asyncio.wait({self._tripped}, timeout=delay)
        self._breaker.check()

    def _reply_from(
        self, response: httpx2.Response, prompt_tokens: int, projected_tokens: int
    ) -> ChatReply:
        """Our :class:`ChatReply` from the raw JSON of a chat completion.

        Reads ``choices[0].message`` (``content``, ``tool_calls``),
        ``choices[0].finish_reason`` and ``usage`` and nothing else; a body that
        is not a JSON object is a :class:`LLMResponseParseError` (nothing is
        recorded for it but a failed call).
        """
        try:
            completion = json.loads(response.content)
        except (ValueError, RecursionError) as exc:
            self.meter.record_failure()
            msg = "reply body is not JSON"
            raise LLMResponseParseError(msg, raw=_body_text(response)) from exc
        if not isinstance(completion, dict):
            self.meter.record_failure()
            msg = "reply body is not a JSON object"
            raise LLMResponseParseError(msg, raw=_body_text(response))
        choices = completion.get("choices")
        choice = choices[0] if isinstance(choices, list) and choices else None
        if not isinstance(choice, dict):
            choice = None
        message = choice.get("message") if choice is not None else None
        if not isinstance(message, dict):
            message = None
        content = message.get("content") if message is not None else None
        if content is not None and not isinstance(content, str):
            content = json.dumps(content)
        tool_calls = _tool_calls(message.get("tool_calls") if message is not None else None)
        usage = completion.get("usage")
        counts = _usage_counts(usage) if isinstance(usage, dict) else None
        if counts is not None:
            input_tokens, output_tokens = counts
        else:
            logger.debug("reply carries no usage; recording estimated tokens")
            input_tokens = prompt_tokens
            output_tokens = estimate_tokens(content or "")
        self.meter.record(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost_usd=self._price.cost(input_tokens, output_tokens),
        )
        if self._tpm is not None:
            self._tpm.adjust(input_tokens + output_tokens - projected_tokens)
        if choice is None or message is None:
            raise LLMResponseParseError("reply has no choices", raw=_body_text(response))
        finish_reason = choice.get("finish_reason")
        return ChatReply(
            content=content,
            tool_calls=tool_calls,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cached=False,
            finish_reason=finish_reason if isinstance(finish_reason, str) else None,
        )


def _cacheable(reply: ChatReply, asked: int | None, sent: int | None) -> bool:
    """Whether ``reply`` may be stored under a key made with the caller's ``asked`` limit.

    A reply cut by a limit the caller did not ask for (the budget's cut or the
    default allowance) is not stored: the same request with more budget left
    would get a longer reply.
    """
    return reply.finish_reason != "length" or (asked is not None and sent == asked)


def _tool_calls(raw: Any) -> list[ToolCall]:
    """The function calls of a reply message (entries without a function are skipped)."""
    calls: list[ToolCall] = []
    if not isinstance(raw, list):
        return calls
    for call in raw:
        if not isinstance(call, dict):
            continue
        function = call.get("function")
        if not isinstance(function, dict):
            continue
        arguments = function.get("arguments")
        if arguments is None:
            arguments = ""
        elif not isinstance(arguments, str):  # some servers send an object; keep it as JSON text
            arguments = json.dumps(arguments)
        calls.append(
            ToolCall(
                id=str(call.get("id") or ""),
                name=str(function.get("name") or ""),
                arguments=arguments,
            )
        )
    return calls


def _usage_counts(usage: dict[str, Any]) -> tuple[int, int] | None:
    """``(prompt_tokens, completion_tokens)`` from a reply's usage, or None if unreadable."""
    prompt = usage.get("prompt_tokens")
    completion = usage.get("completion_tokens")
    if isinstance(prompt, bool) or isinstance(completion, bool):
        return None
    if not isinstance(prompt, int | float) or not isinstance(completion, int | float):
        return None
    return int(prompt), int(completion)


def _body_text(response: httpx2.Response) -> str:
    """The start of a response body as text (for error messages)."""
    try:
        return response.text[:1000]
    except (httpx2.ResponseNotRead, UnicodeDecodeError):
        return ""


def _error_text(exc: openai.APIStatusError) -> str:
    """The error's message and body as one string (for logs and rejection checks)."""
    try:
        body = exc.response.text
    except (httpx2.ResponseNotRead, UnicodeDecodeError):
        body = ""
    return f"{exc.message} {body}".strip()
