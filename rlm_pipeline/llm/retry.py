"""Retry decisions for model calls: pure, unit-testable, in the style of openai-python.

Two questions, answered separately:

* :func:`should_retry` — is this outcome (an HTTP status or an exception) worth
  another try?  429, 408, 409, every 5xx, connection errors and timeouts are;
  400/401/403/404/422 and everything else are not.
* :func:`retry_delay` — how long to wait before try number ``attempt + 1``:
  capped exponential backoff with jitter, or the server's ``Retry-After``
  (itself capped) when it sent one.

The client (:mod:`rlm_pipeline.llm.client`) owns the loop; this module never
sleeps, never sends and never logs.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass

import httpx2
import openai

from rlm_pipeline.errors import InputError
from rlm_pipeline.llm.config import DEFAULT_MAX_RETRIES

__all__ = [
    "DEFAULT_BASE_DELAY_S",
    "DEFAULT_JITTER",
    "DEFAULT_MAX_DELAY_S",
    "DEFAULT_MAX_RETRY_AFTER_S",
    "RETRYABLE_STATUSES",
    "RetryPolicy",
    "parse_retry_after",
    "retry_delay",
    "should_retry",
]

#: First backoff delay in seconds (doubled on each further try).
DEFAULT_BASE_DELAY_S = 0.5
#: Largest backoff delay in seconds.
DEFAULT_MAX_DELAY_S = 8.0
#: Largest ``Retry-After`` we honour; longer server requests are cut to this.
DEFAULT_MAX_RETRY_AFTER_S = 60.0
#: Fraction of the backoff delay that jitter may remove (0.25 → 75–100 % of it).
DEFAULT_JITTER = 0.25
#: Statuses below 500 that are worth retrying (every 5xx is too).
RETRYABLE_STATUSES = frozenset({408, 409, 429})


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry.

    Parameters
    ----------
    max_retries
        Retries after the first try (so ``max_retries + 1`` tries in all).
    base_delay_s
        Backoff before the first retry; doubles on each further retry.
    max_delay_s
        Cap on the backoff delay.
    max_retry_after_s
        Cap on a server's ``Retry-After``.
    jitter
        Fraction in ``[0, 1]`` of the delay that is randomly removed.

    Examples
    --------
    >>> RetryPolicy(max_retries=2, base_delay_s=0.01).max_retries
    2
    """

    max_retries: int = DEFAULT_MAX_RETRIES
    base_delay_s: float = DEFAULT_BASE_DELAY_S
    max_delay_s: float = DEFAULT_MAX_DELAY_S
    max_retry_after_s: float = DEFAULT_MAX_RETRY_AFTER_S
    jitter: float = DEFAULT_JITTER

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            msg = f"max_retries must be >= 0, got {self.max_retries}"
            raise InputError(msg)
        if self.base_delay_s < 0 or self.max_delay_s < 0 or self.max_retry_after_s < 0:
            msg = "retry delays must be >= 0"
            raise InputError(msg)
        if not 0.0 <= self.jitter <= 1.0:
            msg = f"jitter must be in [0, 1], got {self.jitter}"
            raise InputError(msg)


def should_retry(outcome: int | BaseException) -> bool:
    """Whether an HTTP status or an exception is worth another try.

    Parameters
    ----------
    outcome
        An HTTP status code, or the exception a try raised.

    Returns
    -------
    bool
        True for 408, 409, 429, any 5xx, connection errors and timeouts.

    Examples
    --------
    >>> should_retry(429), should_retry(503), should_retry(401)
    (True, True, False)
    >>> should_retry(TimeoutError())
    True
    """
    if isinstance(outcome, bool):
        return False
    if isinstance(outcome, int):
        return outcome in RETRYABLE_STATUSES or outcome >= 500
    if isinstance(outcome, openai.APIStatusError):
        return should_retry(outcome.status_code)
    # APITimeoutError is a subclass of APIConnectionError.
    return isinstance(
        outcome,
        openai.APIConnectionError
        | httpx2.TransportError
        | asyncio.TimeoutError
        | TimeoutError
        | ConnectionError,
    )


def retry_delay(
    attempt: int,
    retry_after: float | None,
    rng: random.Random,
    policy: RetryPolicy | None = None,
) -> float:
    """Seconds to wait after failed try number ``attempt`` (1-based) before the next.

    A finite, non-negative ``retry_after`` from the server wins, capped at
    ``policy.max_retry_after_s``.  Otherwise the delay is
    ``min(base * 2**(attempt-1), max_delay)`` with up to ``jitter`` of it
    removed at random.

    Parameters
    ----------
    attempt
        How many tries have failed so far (1 after the first failure).
    retry_after
        The server's ``Retry-After`` in seconds, or None.
    rng
        Random source for the jitter (pass a seeded one in tests).
    policy
        Delays and caps; :class:`RetryPolicy` defaults when None.

    Examples
    --------
    >>> p = RetryPolicy(base_delay_s=1.0, max_delay_s=4.0, jitter=0.0)
    >>> [retry_delay(n, None, random.Random(0), p) for n in (1, 2, 3, 4)]
    [1.0, 2.0, 4.0, 4.0]
    >>> retry_delay(1, 300.0, random.Random(0), p)
    60.0
    """
    policy = policy or RetryPolicy()
    if retry_after is not None and math.isfinite(retry_after) and retry_after >= 0:
        return min(retry_after, policy.max_retry_after_s)
    exponent = min(max(attempt, 1) - 1, 60)
    delay = min(policy.base_delay_s * (2.0**exponent), policy.max_delay_s)
    return delay * (1.0 - policy.jitter * rng.random())


def parse_retry_after(
    headers: Mapping[str, str] | None, *, now: float | None = None
) -> float | None:
    """The server's requested wait in seconds, from ``retry-after-ms`` or ``retry-after``.

    ``retry-after`` may be seconds (a number) or an HTTP date.  Returns None when
    absent or unreadable.

    Examples
    --------
    >>> parse_retry_after({"retry-after": "2"})
    2.0
    >>> parse_retry_after({"retry-after-ms": "250"})
    0.25
    >>> parse_retry_after({}) is None
    True
    """
    if headers is None:
        return None
    for header, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(header)
        if value is None:
            continue
        try:
            return float(value) / divisor
        except ValueError:
            continue
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_tz(value)
        if parsed is None:
            return None
        when = float(email.utils.mktime_tz(parsed))
    except (TypeError, ValueError, OverflowError):
        return None
    return max(0.0, when - (time.time() if now is None else now))
