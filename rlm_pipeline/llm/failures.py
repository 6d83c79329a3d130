"""The boundary with the openai SDK: its exceptions become one :class:`TryFailed`.

:func:`mapped_errors` wraps one HTTP try (httpx's ``map_httpcore_exceptions``
pattern): an ``openai`` status, connection or other error leaves it as a
:class:`TryFailed` carrying what the retry loop decides on (status, detail,
``Retry-After``, timeout or connect failure), with the SDK's exception as its
``__cause__``.  :func:`final_error` is the one place that turns a failed try
into the error the caller sees.

Examples
--------
>>> import httpx2, openai
>>> request = httpx2.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
>>> try:
...     with mapped_errors():
...         raise openai.APITimeoutError(request=request)
... except TryFailed as exc:
...     failed = exc
>>> print(failed.status, failed.kind, failed.retryable)
None timeout True
>>> print(final_error(failed, attempts=3, endpoint="http://127.0.0.1:9/v1"))
timeout after 3 tries (http://127.0.0.1:9/v1)
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import httpx2
import openai

from rlm_pipeline.errors import LLMError, LLMRateLimitError, LLMTimeoutError
from rlm_pipeline.llm.breaker import is_connect_failure
from rlm_pipeline.llm.retry import parse_retry_after, should_retry

__all__ = ["TryFailed", "final_error", "is_tools_refusal", "mapped_errors"]

#: A 5xx body saying the server does not take ``tools`` (llama.cpp's server without
#: ``--jinja``: "tools param requires --jinja flag").
TOOLS_REFUSED_5XX = re.compile(
    r"--jinja|\b(?:tools?|tool_choice)\b[^.]{0,40}\b(?:not supported|unsupported|requires)\b",
    re.IGNORECASE,
)


class TryFailed(Exception):
    """One HTTP try failed (internal to the client: the retry loop decides what follows).

    Attributes
    ----------
    status
        The HTTP status, or None when no reply came.
    detail
        The error's message and body (for logs, rejection checks and the final error).
    retry_after
        Seconds the server asked to wait (``Retry-After``), or None.
    kind
        ``"status"`` (an HTTP error reply), ``"timeout"`` (no reply in time),
        ``"connection"`` (no reply: refused, reset, ...) or ``"other"``.
    connect
        The try could not connect at all (refused, DNS, TLS, connect timeout).
    retryable
        Whether another try may help (:func:`~rlm_pipeline.llm.retry.should_retry`).
    """

    def __init__(
        self,
        *,
        status: int | None = None,
        detail: str = "",
        retry_after: float | None = None,
        kind: str = "other",
        connect: bool = False,
        retryable: bool = False,
    ) -> None:
        self.status = status
        self.detail = detail
        self.retry_after = retry_after
        self.kind = kind
        self.connect = connect
        self.retryable = retryable
        super().__init__(f"HTTP {status}: {detail[:200]}" if status is not None else detail)


@contextmanager
def mapped_errors() -> Iterator[None]:
    """Re-raise the openai SDK's errors inside the block as :class:`TryFailed`."""
    try:
        yield
    except openai.APIStatusError as exc:
        raise TryFailed(
            status=exc.status_code,
            kind="status",
            detail=_error_text(exc),
            retry_after=parse_retry_after(exc.response.headers),
            retryable=should_retry(exc.status_code),
        ) from exc
    except openai.APIConnectionError as exc:
        timed_out = isinstance(exc, openai.APITimeoutError)
        raise TryFailed(
            detail="timeout" if timed_out else "connection error",
            kind="timeout" if timed_out else "connection",
            connect=is_connect_failure(exc),
            retryable=should_retry(exc),
        ) from exc
    except openai.OpenAIError as exc:
        raise TryFailed(detail=f"model call failed: {exc}") from exc


def final_error(failed: TryFailed, *, attempts: int, endpoint: str) -> LLMError:
    """The error a call raises after its last try (or a try not worth repeating).

    A status not worth a retry (400, 422, ...) names the endpoint; a retried
    status says how many tries (a 429 gives :class:`LLMRateLimitError`); a
    timeout gives :class:`LLMTimeoutError`.

    Examples
    --------
    >>> print(final_error(TryFailed(status=500, detail="boom", retryable=True), attempts=7, endpoint="e"))
    500 after 7 tries: boom
    >>> print(final_error(TryFailed(status=400, detail="bad"), attempts=1, endpoint="e"))
    HTTP 400 from e: bad
    """
    status = failed.status
    if status is not None:
        if not failed.retryable:
            msg = f"HTTP {status} from {endpoint}: {failed.detail[:300]}"
            return LLMError(msg, status=status, attempts=attempts)
        error_cls = LLMRateLimitError if status == 429 else LLMError
        msg = f"{status} after {attempts} tries: {failed.detail[:200]}"
        return error_cls(msg, status=status, attempts=attempts)
    if failed.kind in ("timeout", "connection"):
        error_cls = LLMTimeoutError if failed.kind == "timeout" else LLMError
        return error_cls(f"{failed.detail} after {attempts} tries ({endpoint})", attempts=attempts)
    return LLMError(failed.detail, attempts=attempts)


def is_tools_refusal(status: int | None, detail: str) -> bool:
    """Whether a 5xx reply says plainly that the server does not take ``tools``.

    Such a reply to a request carrying ``tools`` is final (no retry: the same
    request gets the same answer); the RLM loop then switches protocol.

    Examples
    --------
    >>> is_tools_refusal(500, "tools param requires --jinja flag")
    True
    >>> is_tools_refusal(500, "tools: internal error"), is_tools_refusal(400, "--jinja")
    (False, False)
    """
    return status is not None and 500 <= status < 600 and bool(TOOLS_REFUSED_5XX.search(detail))


def _error_text(exc: openai.APIStatusError) -> str:
    """The error's message and body as one string (for logs and rejection checks)."""
    try:
        body = exc.response.text
    except (httpx2.ResponseNotRead, UnicodeDecodeError):
        body = ""
    return f"{exc.message} {body}".strip()
