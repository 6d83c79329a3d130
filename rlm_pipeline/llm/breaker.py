"""Circuit breaker: a client whose endpoint fails for one systemic cause stops within seconds.

Per-row failures are the operators' business (``api_error`` rows, re-asked by
a later run).  Some failures are no row's fault: nothing listens at the base
URL, the key is refused, the model does not exist.  Retrying each of 5,000
rows through seven tries of backoff then only hides the cause behind
thousands of identical nulls.  The breaker of each
:class:`~rlm_pipeline.llm.client.LLMClient` tells the two apart.

It is **armed** from the client's creation until its first successful (2xx)
reply, and while armed it **trips** on:

- a **connection failure** (refused, DNS, TLS, any other connect error, a
  connect timeout) that persists over :data:`CONNECT_TRIES` tries — quick
  retries (backoff capped at :data:`CONNECT_MAX_DELAY_S`; about 1.5 s in all
  with the default policy).  While one call retries the connection, the
  client's other calls wait for its verdict instead of connecting themselves;
- **HTTP 401, 403 or 404** (unknown model, or a wrong base URL path), and a
  429 whose body says the quota is exhausted (``insufficient_quota``), at once;
- the **same 5xx on every reply**, once at least :data:`SERVER_ERROR_CALLS`
  distinct calls got it over at least :data:`SERVER_ERROR_SPAN_S` seconds of
  retries (a server failing 75% of requests answers some of the ~100 tries
  that fit in that window at the default concurrency, so it does not trip).

Tripped, it holds one :class:`~rlm_pipeline.errors.LLMEndpointError` naming
the endpoint, the cause and a hint; the client raises it (a fresh copy) for
every pending and later call without sending anything.  After the first
success the breaker is disarmed: later failures are isolated ones, retried as
before and reported per row — except a server that **stops answering
mid-run**: when :data:`LOST_CALLS` distinct calls in a row (no reply of any
kind in between) fail to connect or lose their connection (refused, reset),
over at least :data:`LOST_SPAN_S` seconds, it trips too
(:meth:`Breaker.connection_lost`), so the remaining rows of a large run do not
each spend seven tries of backoff on a dead server.

No endpoint at all (no ``base_url``, no ``OPENAI_BASE_URL`` and no
``OPENAI_API_KEY``) trips it on the first call, before any traffic
(:func:`missing_endpoint`).

Examples
--------
>>> breaker = Breaker("http://127.0.0.1:8000/v1", "sim-1")
>>> breaker.on_status(500, "", call=0) is None  # one 500 is no verdict
True
>>> err = breaker.on_status(401, "Incorrect API key", call=1)
>>> print(err)
HTTP 401 from http://127.0.0.1:8000/v1: the API key was refused — check OPENAI_API_KEY (or api_key=)
>>> breaker.check()
Traceback (most recent call last):
...
rlm_pipeline.errors.LLMEndpointError: HTTP 401 from http://127.0.0.1:8000/v1: the API key was refused — check OPENAI_API_KEY (or api_key=)
"""

from __future__ import annotations

import os
import re
import socket
import ssl
import time

import httpx2

from rlm_pipeline.errors import LLMEndpointError
from rlm_pipeline.llm.config import LLM

__all__ = [
    "CONNECT_MAX_DELAY_S",
    "CONNECT_TRIES",
    "DEFAULT_ENDPOINT",
    "LOST_CALLS",
    "LOST_SPAN_S",
    "SERVER_ERROR_CALLS",
    "SERVER_ERROR_SPAN_S",
    "Breaker",
    "connect_error",
    "is_connect_failure",
    "missing_endpoint",
    "reraised",
    "status_error",
]

#: The endpoint the openai client uses when neither ``base_url`` nor ``OPENAI_BASE_URL`` is set.
DEFAULT_ENDPOINT = "https://api.openai.com/v1"
#: Tries (the first and quick retries) before a connection failure trips the breaker.
CONNECT_TRIES = 3
#: Longest wait between those tries.
CONNECT_MAX_DELAY_S = 1.0
#: Distinct calls that must all get the same 5xx (and nothing else) before it trips.
SERVER_ERROR_CALLS = 8
#: ... over at least this many seconds (so a short blip is retried, not fatal).
SERVER_ERROR_SPAN_S = 2.0
#: Distinct calls in a row that must fail to connect, after a success, before it trips.
LOST_CALLS = 8
#: ... over at least this many seconds.
LOST_SPAN_S = 2.0
#: Longest piece of the server's own error text quoted in a message.
_DETAIL_CHARS = 160


class Breaker:
    """The circuit breaker of one client (see the module docstring).

    Parameters
    ----------
    endpoint
        The base URL (named in the messages).
    model
        The model name (named in the 403/404 messages).

    Attributes
    ----------
    armed
        True until the first successful reply.
    tripped
        The error every call raises once the breaker tripped, else None.
    """

    def __init__(self, endpoint: str, model: str) -> None:
        self.endpoint = endpoint
        self.model = model
        self.armed = True
        self.tripped: LLMEndpointError | None = None
        self._status: int | None = None
        self._first_at = 0.0
        self._calls: set[int] = set()
        self._lost_at = 0.0  # first connection failure since the last reply
        self._lost_calls: set[int] = set()

    def check(self) -> None:
        """Raise the breaker's error (a fresh copy) if it tripped."""
        if self.tripped is not None:
            raise self.tripped.again()

    def trip(self, error: LLMEndpointError) -> LLMEndpointError:
        """Trip with ``error`` (the first error wins); return the error to raise."""
        if self.tripped is None:
            self.tripped = error
        return self.tripped.again()

    def success(self) -> None:
        """A reply came back 2xx: the endpoint works, disarm (see :meth:`connection_lost`)."""
        self.armed = False
        self._reset()
        self._lost_calls.clear()

    def connection_lost(self, cause: BaseException, *, call: int) -> LLMEndpointError | None:
        """A try of call ``call`` could not connect, or lost its connection, after a success.

        Returns the error when :data:`LOST_CALLS` distinct calls in a row did
        so over at least :data:`LOST_SPAN_S` seconds (the server stopped
        answering mid-run); None otherwise (and while armed: the client's gate
        handles connection failures before the first reply).

        Examples
        --------
        >>> breaker = Breaker("http://127.0.0.1:9/v1", "m")
        >>> breaker.success()
        >>> breaker.connection_lost(ConnectionRefusedError(111, "refused"), call=0) is None
        True
        """
        if self.armed:
            return None
        now = time.monotonic()
        if not self._lost_calls:
            self._lost_at = now
        self._lost_calls.add(call)
        span = now - self._lost_at
        if len(self._lost_calls) < LOST_CALLS or span < LOST_SPAN_S:
            return None
        base = connect_error(self.endpoint, cause)
        msg = (
            f"{self.endpoint} stopped answering mid-run ({len(self._lost_calls)} calls in a row "
            f"could not connect over {span:.1f}s): {base}"
        )
        return self.trip(LLMEndpointError(msg, endpoint=self.endpoint, cause="connection_lost"))

    def other(self) -> None:
        """An outcome that is neither success nor a systemic sign (a 400, a read timeout)."""
        self._reset()

    def on_status(self, status: int, detail: str, *, call: int) -> LLMEndpointError | None:
        """Account one HTTP error reply of call number ``call``; the error if it trips the breaker."""
        self._lost_calls.clear()  # the server answered
        if not self.armed:
            return None
        error = status_error(self.endpoint, self.model, status, detail)
        if error is not None:
            return self.trip(error)
        if status < 500:
            self.other()
            return None
        now = time.monotonic()
        if status != self._status:
            self._reset()
            self._status = status
            self._first_at = now
        if len(self._calls) < SERVER_ERROR_CALLS:
            self._calls.add(call)
        span = now - self._first_at
        if len(self._calls) >= SERVER_ERROR_CALLS and span >= SERVER_ERROR_SPAN_S:
            msg = (
                f"HTTP {status} from {self.endpoint} on every call ({len(self._calls)}+ calls "
                f"over {span:.1f}s): the server is failing — check its logs{_quote(detail)}"
            )
            return self.trip(
                LLMEndpointError(msg, endpoint=self.endpoint, cause="server_error", status=status)
            )
        return None

    def _reset(self) -> None:
        self._status = None
        self._calls.clear()


def status_error(endpoint: str, model: str, status: int, detail: str) -> LLMEndpointError | None:
    """The endpoint error an HTTP status means by itself (401, 403, 404, exhausted quota), or None.

    Examples
    --------
    >>> print(status_error("http://127.0.0.1:9/v1", "x", 404, ""))
    HTTP 404 from http://127.0.0.1:9/v1: unknown model 'x'? (GET http://127.0.0.1:9/v1/models lists what the server serves; or the base URL path is wrong)
    >>> status_error("http://127.0.0.1:9/v1", "x", 400, "") is None
    True
    """
    if status == 401:
        msg = f"HTTP 401 from {endpoint}: the API key was refused — check OPENAI_API_KEY (or api_key=)"
        cause = "unauthorized"
    elif status == 403:
        msg = (
            f"HTTP 403 from {endpoint}: access to model {model!r} denied — check the key's "
            f"permissions (OPENAI_API_KEY or api_key=){_quote(detail)}"
        )
        cause = "forbidden"
    elif status == 404:
        msg = (
            f"HTTP 404 from {endpoint}: unknown model {model!r}? (GET {endpoint.rstrip('/')}/models "
            "lists what the server serves; or the base URL path is wrong)"
        )
        cause = "not_found"
    elif status == 429 and "insufficient_quota" in detail:
        msg = f"HTTP 429 from {endpoint}: the account's quota is exhausted — check its billing"
        cause = "quota"
    else:
        return None
    return LLMEndpointError(msg, endpoint=endpoint, cause=cause, status=status)


def is_connect_failure(exc: BaseException) -> bool:
    """Whether an openai connection error failed to *connect* (not a read timeout or a dropped reply).

    Examples
    --------
    >>> import openai
    >>> request = httpx2.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
    >>> failed = openai.APIConnectionError(request=request)
    >>> failed.__cause__ = httpx2.ConnectError("refused", request=request)
    >>> is_connect_failure(failed)
    True
    >>> slow = openai.APITimeoutError(request=request)
    >>> slow.__cause__ = httpx2.ReadTimeout("slow", request=request)
    >>> is_connect_failure(slow)
    False
    """
    return any(isinstance(e, httpx2.ConnectError | httpx2.ConnectTimeout) for e in _chain(exc))


def connect_error(endpoint: str, exc: BaseException, *, attempts: int = 1) -> LLMEndpointError:
    """The endpoint error for a connection failure, with the cause named and a hint.

    Examples
    --------
    >>> import openai
    >>> request = httpx2.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
    >>> failed = openai.APIConnectionError(request=request)
    >>> failed.__cause__ = ConnectionRefusedError(111, "Connection refused")
    >>> print(connect_error("http://127.0.0.1:9/v1", failed))
    connection refused at http://127.0.0.1:9/v1 — is the server running?
    """
    chain = _chain(exc)
    host = httpx2.URL(endpoint).host if "://" in endpoint else endpoint
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        msg, cause = (
            f"connection refused at {endpoint} — is the server running?",
            "connection_refused",
        )
    elif any(isinstance(e, socket.gaierror) for e in chain):
        msg = f"cannot resolve host {host!r} of {endpoint} (DNS) — check the base URL"
        cause = "dns"
    elif any(isinstance(e, ssl.SSLError) for e in chain):
        reason = next(e for e in chain if isinstance(e, ssl.SSLError))
        msg = (
            f"TLS handshake with {endpoint} failed ({_one_line(str(reason), 120)}) — "
            "http:// vs https://, or the server's certificate?"
        )
        cause = "tls"
    elif any(isinstance(e, httpx2.ConnectTimeout | TimeoutError) for e in chain):
        msg = f"connecting to {endpoint} timed out — is the host reachable?"
        cause = "connect_timeout"
    else:
        last = chain[-1] if chain else exc
        msg = f"cannot connect to {endpoint}: {_one_line(str(last) or type(last).__name__, 160)}"
        cause = "connect"
    return LLMEndpointError(msg, endpoint=endpoint, cause=cause, attempts=attempts)


def missing_endpoint(config: LLM) -> LLMEndpointError | None:
    """The error for a config that names no endpoint and has no key, else None.

    With neither ``base_url`` nor ``OPENAI_BASE_URL`` the client would send to
    api.openai.com, which needs a key: without ``api_key`` or
    ``OPENAI_API_KEY`` nothing can work.
    """
    if config.resolved_base_url() is not None:
        return None
    if config.api_key or os.environ.get("OPENAI_API_KEY"):
        return None
    msg = (
        "no model endpoint configured: set OPENAI_API_KEY (for api.openai.com), or "
        "OPENAI_BASE_URL / base_url= (--base-url) for another OpenAI-compatible server"
    )
    return LLMEndpointError(msg, endpoint=DEFAULT_ENDPOINT, cause="no_endpoint")


def reraised(text: str, endpoint: str) -> LLMEndpointError | None:
    """The endpoint error named in ``text`` (a remote traceback, e.g. a Spark task's), if any.

    Spark hands a Python worker's exception to the driver as text; this
    rebuilds the one-line error from the traceback's last
    ``LLMEndpointError: ...`` line.

    Examples
    --------
    >>> text = "Traceback ...\\nrlm_pipeline.errors.LLMEndpointError: HTTP 401 from http://127.0.0.1:9/v1: bad key\\n"
    >>> err = reraised(text, "http://127.0.0.1:9/v1")
    >>> str(err), err.cause, err.status
    ('HTTP 401 from http://127.0.0.1:9/v1: bad key', 'unauthorized', 401)
    >>> reraised("ValueError: nope", "http://127.0.0.1:9/v1") is None
    True
    """
    found = re.findall(r"LLMEndpointError: ([^\r\n]+)", text)
    if not found:
        return None
    return LLMEndpointError(found[-1].strip(), endpoint=endpoint)


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and its causes / contexts, outermost first (cycles cut)."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not e for e in seen) and len(seen) < 16:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _one_line(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _quote(detail: str) -> str:
    """The server's own words, as a short suffix (empty when it said nothing)."""
    flat = _one_line(detail, _DETAIL_CHARS)
    return f" (server said: {flat})" if flat else ""
