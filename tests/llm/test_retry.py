"""Pure tests of the retry decisions (no sleeping, no network)."""

from __future__ import annotations

import email.utils
import random

import httpx2
import openai
import pytest

from rlm_pipeline.errors import InputError
from rlm_pipeline.llm.retry import (
    RetryPolicy,
    parse_retry_after,
    retry_delay,
    should_retry,
)

_REQUEST = httpx2.Request("POST", "http://127.0.0.1:1/v1/chat/completions")


def _status_error(status: int) -> openai.APIStatusError:
    response = httpx2.Response(status, request=_REQUEST, json={"error": {"message": "x"}})
    return openai.APIStatusError("x", response=response, body=None)


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504, 599])
def test_retryable_statuses(status: int) -> None:
    assert should_retry(status)
    assert should_retry(_status_error(status))


@pytest.mark.parametrize("status", [200, 400, 401, 403, 404, 422])
def test_final_statuses(status: int) -> None:
    assert not should_retry(status)
    assert not should_retry(_status_error(status))


def test_transport_errors_are_retried_and_others_not() -> None:
    assert should_retry(openai.APITimeoutError(request=_REQUEST))
    assert should_retry(openai.APIConnectionError(request=_REQUEST))
    assert should_retry(httpx2.ConnectError("refused"))
    assert should_retry(TimeoutError())
    assert not should_retry(ValueError("bad"))
    assert not should_retry(True)


def test_backoff_doubles_up_to_the_cap_without_jitter() -> None:
    policy = RetryPolicy(base_delay_s=0.1, max_delay_s=1.0, jitter=0.0)
    delays = [retry_delay(n, None, random.Random(1), policy) for n in range(1, 8)]
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0])


def test_jitter_stays_within_its_fraction_and_varies() -> None:
    policy = RetryPolicy(base_delay_s=1.0, max_delay_s=10.0, jitter=0.25)
    rng = random.Random(42)
    delays = [retry_delay(3, None, rng, policy) for _ in range(500)]
    assert all(3.0 <= d <= 4.0 for d in delays)
    assert max(delays) - min(delays) > 0.5


def test_huge_attempt_number_does_not_overflow() -> None:
    policy = RetryPolicy(base_delay_s=0.5, max_delay_s=8.0, jitter=0.0)
    assert retry_delay(10_000, None, random.Random(0), policy) == 8.0


def test_retry_after_is_honoured_and_capped() -> None:
    policy = RetryPolicy(base_delay_s=0.5, max_retry_after_s=30.0, jitter=0.25)
    rng = random.Random(0)
    assert retry_delay(1, 2.5, rng, policy) == 2.5
    assert retry_delay(5, 0.0, rng, policy) == 0.0
    assert retry_delay(1, 500.0, rng, policy) == 30.0
    # Unusable values fall back to backoff.
    assert 0.375 <= retry_delay(1, float("inf"), rng, policy) <= 0.5
    assert 0.375 <= retry_delay(1, -3.0, rng, policy) <= 0.5


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after": "0.2"}) == 0.2
    assert parse_retry_after({"retry-after-ms": "150", "retry-after": "9"}) == 0.15
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None
    assert parse_retry_after(None) is None
    now = 1_800_000_000.0
    date = email.utils.formatdate(now + 7, usegmt=True)
    assert parse_retry_after({"retry-after": date}, now=now) == pytest.approx(7.0, abs=1.0)
    assert parse_retry_after(httpx2.Headers({"Retry-After": "4"})) == 4.0


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(InputError):
        RetryPolicy(max_retries=-1)
    with pytest.raises(InputError):
        RetryPolicy(jitter=1.5)
    with pytest.raises(InputError):
        RetryPolicy(base_delay_s=-0.1)
