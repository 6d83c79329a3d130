"""The client's single-job modules on their own: error mapping, final errors, allowance, cache rule."""

from __future__ import annotations

import httpx2
import openai
import pytest

from rlm_pipeline.errors import LLMError, LLMRateLimitError, LLMTimeoutError
from rlm_pipeline.llm.allowance import (
    DEFAULT_CHAT_REPLY_TOKENS,
    DEFAULT_REPLY_TOKENS,
    reply_allowance,
    wanted_reply_tokens,
)
from rlm_pipeline.llm.failures import TryFailed, final_error, mapped_errors
from rlm_pipeline.llm.replies import cacheable
from rlm_pipeline.llm.reply import ChatReply

REQUEST = httpx2.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
ENDPOINT = "http://127.0.0.1:9/v1"


def _status_error(status: int, headers: dict[str, str] | None = None) -> openai.APIStatusError:
    response = httpx2.Response(status, text="boom", headers=headers, request=REQUEST)
    return openai.APIStatusError(f"Error code: {status}", response=response, body=None)


def _mapped(exc: BaseException) -> TryFailed:
    with pytest.raises(TryFailed) as info, mapped_errors():
        raise exc
    assert info.value.__cause__ is exc  # the SDK's error stays the cause
    return info.value


def test_status_errors_keep_status_detail_and_retry_after() -> None:
    failed = _mapped(_status_error(429, {"Retry-After": "2"}))
    assert (failed.status, failed.kind, failed.retry_after, failed.retryable) == (
        429,
        "status",
        2.0,
        True,
    )
    assert "boom" in failed.detail
    assert not _mapped(_status_error(400)).retryable
    assert _mapped(_status_error(503)).retryable


def test_connection_errors_say_whether_they_connected() -> None:
    refused = openai.APIConnectionError(request=REQUEST)
    refused.__cause__ = httpx2.ConnectError("refused", request=REQUEST)
    failed = _mapped(refused)
    assert (failed.kind, failed.connect, failed.retryable) == ("connection", True, True)
    slow = openai.APITimeoutError(request=REQUEST)
    slow.__cause__ = httpx2.ReadTimeout("slow", request=REQUEST)
    failed = _mapped(slow)
    assert (failed.kind, failed.connect, failed.retryable) == ("timeout", False, True)


def test_other_sdk_errors_are_final() -> None:
    failed = _mapped(openai.OpenAIError("odd"))
    assert (failed.kind, failed.retryable) == ("other", False)
    error = final_error(failed, attempts=1, endpoint=ENDPOINT)
    assert type(error) is LLMError and str(error) == "model call failed: odd"


def test_errors_outside_the_sdk_pass_through() -> None:
    with pytest.raises(KeyError), mapped_errors():
        raise KeyError("ours")


@pytest.mark.parametrize(
    ("failed", "cls", "text"),
    [
        (
            TryFailed(status=400, kind="status", detail="bad"),
            LLMError,
            f"HTTP 400 from {ENDPOINT}: bad",
        ),
        (
            TryFailed(status=429, kind="status", detail="slow", retryable=True),
            LLMRateLimitError,
            "429 after 3 tries: slow",
        ),
        (
            TryFailed(status=502, kind="status", detail="gw", retryable=True),
            LLMError,
            "502 after 3 tries: gw",
        ),
        (
            TryFailed(kind="timeout", detail="timeout", retryable=True),
            LLMTimeoutError,
            f"timeout after 3 tries ({ENDPOINT})",
        ),
        (
            TryFailed(kind="connection", detail="connection error", retryable=True),
            LLMError,
            f"connection error after 3 tries ({ENDPOINT})",
        ),
    ],
)
def test_one_place_turns_a_failed_try_into_the_error(
    failed: TryFailed, cls: type[LLMError], text: str
) -> None:
    error = final_error(failed, attempts=3, endpoint=ENDPOINT)
    assert type(error) is cls and str(error) == text
    assert error.attempts == 3 and error.status == failed.status


def test_reply_allowance() -> None:
    assert wanted_reply_tokens(prompt_tokens=10, max_tokens=None, structured=False) == (
        DEFAULT_CHAT_REPLY_TOKENS
    )
    assert wanted_reply_tokens(prompt_tokens=10, max_tokens=None, structured=True) == (
        DEFAULT_REPLY_TOKENS
    )
    assert wanted_reply_tokens(prompt_tokens=900, max_tokens=None, structured=True) == 900
    assert wanted_reply_tokens(prompt_tokens=900, max_tokens=7, structured=True) == 7
    cut = reply_allowance(wanted=900, budget_cut=300, bounded=True)
    assert (cut.booked, cut.sent, cut.cut_by_budget) == (300, 300, True)
    free = reply_allowance(wanted=900, budget_cut=None, bounded=False)
    assert (free.booked, free.sent, free.cut_by_budget) == (900, None, False)
    asked = reply_allowance(wanted=50, budget_cut=50, bounded=True)
    assert asked.sent == 50 and not asked.cut_by_budget


def test_a_reply_cut_by_a_limit_the_caller_did_not_ask_for_is_not_cached() -> None:
    whole = ChatReply(content="{}", finish_reason="stop")
    cut = ChatReply(content="{", finish_reason="length")
    assert cacheable(whole, None, 256) and cacheable(whole, None, None)
    assert not cacheable(cut, None, 256)  # the default allowance cut it
    assert not cacheable(cut, 500, 120)  # the budget cut the caller's 500
    assert cacheable(cut, 120, 120)  # the caller's own limit: the same request gets the same
