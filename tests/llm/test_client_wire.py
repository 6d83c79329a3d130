"""LLMClient's own reading of the wire: the request body it posts, the raw reply it
parses, and ``json(accept=...)``.  Uses an in-process ``httpx2.MockTransport``
(no sockets) behind the real ``openai.AsyncOpenAI``."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from rlm_pipeline.errors import LLMError, LLMRateLimitError, LLMResponseParseError
from rlm_pipeline.llm import structured
from rlm_pipeline.llm.client import LLMClient
from rlm_pipeline.llm.config import LLM, Budget
from rlm_pipeline.llm.reply import ToolCall
from rlm_pipeline.llm.retry import RetryPolicy
from rlm_pipeline.ops.core import classify_texts
from rlm_pipeline.ops.spec import ClassifySpec

from .helpers import FAST_RETRY, LABEL_SCHEMA, LABELS, classify_messages, ticket

BASE_URL = "http://127.0.0.1:9/v1"
Handler = Callable[[httpx2.Request], httpx2.Response]


@pytest.fixture(autouse=True)
def _fresh_mode_memory() -> Iterator[None]:
    structured.forget_modes()
    yield
    structured.forget_modes()


def _completion(
    content: str | None = None,
    *,
    tool_calls: list[dict[str, Any]] | None = None,
    usage: dict[str, Any] | None = None,
    finish_reason: str = "stop",
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls is not None:
        message["tool_calls"] = tool_calls
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": "m",
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
    }
    if usage is not None:
        body["usage"] = usage
    return body


def _usage(prompt: int = 11, completion: int = 3) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


class Recorder:
    """A mock endpoint: answers each request with the next reply and keeps the requests."""

    def __init__(self, *replies: httpx2.Response | Handler) -> None:
        self.replies = list(replies)
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        return reply(request) if callable(reply) else reply

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests]


def _client(
    recorder: Recorder, retry: RetryPolicy, **changes: Any
) -> tuple[LLMClient, httpx2.AsyncClient]:
    config: dict[str, Any] = {"model": "m", "base_url": BASE_URL, "api_key": "secret"}
    config.update(changes)
    http = httpx2.AsyncClient(transport=httpx2.MockTransport(recorder))
    return LLMClient(LLM(**config), http_client=http, retry=retry), http


def _run(
    recorder: Recorder,
    body: Callable[[LLMClient], Any],
    *,
    retry: RetryPolicy = FAST_RETRY,
    **changes: Any,
) -> Any:
    async def main() -> Any:
        client, http = _client(recorder, retry, **changes)
        try:
            return await body(client)
        finally:
            await client.aclose()
            await http.aclose()

    return asyncio.run(main())


# ------------------------------------------------------------------ request


def test_posts_the_params_as_json_with_the_sdk_headers() -> None:
    recorder = Recorder(httpx2.Response(200, json=_completion("hi", usage=_usage())))
    tools = [{"type": "function", "function": {"name": "peek", "parameters": {"type": "object"}}}]

    async def body(client: LLMClient) -> Any:
        return await client.chat(
            classify_messages("x"), tools=tools, tool_choice="auto", max_tokens=7
        )

    _run(recorder, body, temperature=0.5)
    (request,) = recorder.requests
    assert request.method == "POST"
    assert str(request.url) == f"{BASE_URL}/chat/completions"
    assert request.headers["authorization"] == "Bearer secret"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-stainless-retry-count"] == "0"
    assert "user-agent" in request.headers
    assert recorder.bodies() == [
        {
            "model": "m",
            "messages": classify_messages("x"),
            "temperature": 0.5,
            "tools": tools,
            "tool_choice": "auto",
            "max_tokens": 7,
        }
    ]


def test_json_sends_the_structured_response_format() -> None:
    reply = _completion(json.dumps({"label": "billing"}), usage=_usage())
    recorder = Recorder(httpx2.Response(200, json=reply))

    async def body(client: LLMClient) -> Any:
        return await client.json(classify_messages("x"), LABEL_SCHEMA, name="label")

    value, _ = _run(recorder, body)
    assert value == {"label": "billing"}
    (sent,) = recorder.bodies()
    assert sent["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "label", "schema": LABEL_SCHEMA, "strict": True},
    }
    assert "max_tokens" not in sent and "tools" not in sent


@pytest.mark.parametrize(
    ("changes", "asked", "sent_limit"),
    [
        ({}, None, None),  # no budget, no tpm: no limit sent
        ({"budget": Budget(max_calls=5)}, None, None),  # a calls-only budget cuts nothing
        ({"budget": Budget(max_tokens=10_000)}, None, 1024),  # the default chat allowance
        ({"budget": Budget(max_cost_usd=1.0)}, None, 1024),  # priced model: cost bounds replies
        ({"tpm": 100_000}, None, 1024),  # tpm books the allowance: send it
        ({"budget": Budget(max_tokens=10_000)}, 40, 40),  # the caller's smaller limit
        ({"budget": Budget(max_tokens=300)}, 5_000, 300 - 42),  # what is left after the prompt
    ],
)
def test_the_reserved_reply_allowance_is_sent_as_max_tokens(
    changes: dict[str, Any], asked: int | None, sent_limit: int | None
) -> None:
    from rlm_pipeline.llm.tokens import estimate_message_tokens

    assert estimate_message_tokens(classify_messages("x")) == 42  # the prompt above
    recorder = Recorder(httpx2.Response(200, json=_completion("hi", usage=_usage())))
    budget = changes.pop("budget", None)

    async def main() -> None:
        http = httpx2.AsyncClient(transport=httpx2.MockTransport(recorder))
        llm = LLM(model="gpt-4.1-mini", base_url=BASE_URL, api_key="k", **changes)
        client = LLMClient(llm, http_client=http, retry=FAST_RETRY, budget=budget)
        try:
            await client.chat(classify_messages("x"), max_tokens=asked)
        finally:
            await client.aclose()
            await http.aclose()

    asyncio.run(main())
    (sent,) = recorder.bodies()
    assert sent.get("max_tokens") == sent_limit


def test_a_reply_cut_by_the_budget_is_not_cached(tmp_path: Path) -> None:
    cut = _completion("a reply that goes on", usage=_usage(completion=5), finish_reason="length")
    whole = _completion("a whole reply", usage=_usage(completion=4))
    recorder = Recorder(httpx2.Response(200, json=cut), httpx2.Response(200, json=whole))
    llm = LLM(model="m", base_url=BASE_URL, api_key="k", cache_path=str(tmp_path / "c.sqlite"))

    async def main() -> tuple[Any, Any, Any]:
        http = httpx2.AsyncClient(transport=httpx2.MockTransport(recorder))
        try:
            async with LLMClient(
                llm, http_client=http, retry=FAST_RETRY, budget=Budget(max_tokens=10_000)
            ) as client:
                first = await client.chat(classify_messages("x"))
                second = await client.chat(classify_messages("x"))
                third = await client.chat(classify_messages("x"))
                return first, second, third
        finally:
            await http.aclose()

    first, second, third = asyncio.run(main())
    assert first.finish_reason == "length" and not first.cached
    assert second.content == "a whole reply" and not second.cached
    assert third.cached and third.content == "a whole reply"
    assert len(recorder.requests) == 2


# -------------------------------------------------------------------- reply


def test_reply_fields_are_read_from_the_raw_json() -> None:
    calls: list[dict[str, Any]] = [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "peek", "arguments": '{"view": "context"}'},
        },
        {"id": "call_2", "type": "function", "function": {"name": "answer", "arguments": {}}},
        {"id": "call_3", "type": "custom"},  # not a function call: skipped
    ]
    body_json = _completion(None, tool_calls=calls, usage=_usage(40, 9), finish_reason="tool_calls")
    recorder = Recorder(httpx2.Response(200, json=body_json))

    async def body(client: LLMClient) -> Any:
        return await client.chat(classify_messages("x")), client.usage

    reply, usage = _run(recorder, body)
    assert reply.content is None
    assert reply.tool_calls == [
        ToolCall("call_1", "peek", '{"view": "context"}'),
        ToolCall("call_2", "answer", "{}"),
    ]
    assert (reply.input_tokens, reply.output_tokens) == (40, 9)
    assert reply.finish_reason == "tool_calls" and not reply.cached
    assert (usage.calls, usage.input_tokens, usage.output_tokens) == (1, 40, 9)


def test_reply_without_usage_records_estimates() -> None:
    recorder = Recorder(httpx2.Response(200, json=_completion("abcdefgh")))

    async def body(client: LLMClient) -> Any:
        return await client.chat([{"role": "user", "content": "x" * 40}])

    reply = _run(recorder, body)
    assert reply.content == "abcdefgh"
    assert reply.output_tokens == 2 and reply.input_tokens > 0


@pytest.mark.parametrize(
    ("response", "raw_part"),
    [
        (httpx2.Response(200, text="<html>gateway</html>"), "<html>gateway"),
        (httpx2.Response(200, json=[1, 2]), "[1"),
        (httpx2.Response(200, json={"choices": [], "usage": _usage()}), "choices"),
        (httpx2.Response(200, json={"choices": ["nope"]}), "nope"),
    ],
)
def test_unreadable_reply_raises_parse_error_with_the_body(
    response: httpx2.Response, raw_part: str
) -> None:
    recorder = Recorder(response)

    async def body(client: LLMClient) -> Any:
        with pytest.raises(LLMResponseParseError) as info:
            await client.chat(classify_messages("x"))
        return info.value

    error = _run(recorder, body)
    assert raw_part in error.raw
    assert len(recorder.requests) == 1  # not retried


def test_status_errors_keep_their_mapping_and_retry_after() -> None:
    limited = httpx2.Response(
        429, json={"error": {"message": "slow down"}}, headers={"retry-after-ms": "1"}
    )
    recorder = Recorder(limited)

    async def body(client: LLMClient) -> Any:
        with pytest.raises(LLMRateLimitError) as info:
            await client.chat(classify_messages("x"))
        return info.value, client.usage

    twice = RetryPolicy(max_retries=2, base_delay_s=5.0, max_retry_after_s=5.0)
    started = time.monotonic()
    error, usage = _run(recorder, body, retry=twice)
    assert time.monotonic() - started < 8.0  # waited the server's 1 ms, not the >= 15 s backoff
    assert error.status == 429 and error.attempts == 3 and "slow down" in str(error)
    assert len(recorder.requests) == 3 and usage.failed_calls == 1

    recorder = Recorder(httpx2.Response(403, json={"error": {"message": "forbidden"}}))

    async def forbidden(client: LLMClient) -> Any:
        with pytest.raises(LLMError) as info:
            await client.chat(classify_messages("x"))
        return info.value

    error = _run(recorder, forbidden)
    assert error.status == 403 and error.attempts == 1 and len(recorder.requests) == 1


def test_500_then_success_is_retried() -> None:
    ok = httpx2.Response(200, json=_completion("fine", usage=_usage()))
    recorder = Recorder(httpx2.Response(500, text="boom"), ok)

    async def body(client: LLMClient) -> Any:
        return await client.chat(classify_messages("x"))

    assert _run(recorder, body).content == "fine"
    assert len(recorder.requests) == 2


# ------------------------------------------------------------------ accept=

#: Matches the JSON shape but not the schema (label outside the enum, extra key).
OFF_SCHEMA = {"label": "weather", "note": 1}


def test_json_with_accept_returns_and_caches_an_off_schema_object_it_takes(
    tmp_path: Path,
) -> None:
    recorder = Recorder(httpx2.Response(200, json=_completion(json.dumps(OFF_SCHEMA))))
    messages = classify_messages(ticket(0))
    seen: list[dict[str, Any]] = []

    def take(value: dict[str, Any]) -> bool:
        seen.append(value)
        return True

    async def body(client: LLMClient) -> Any:
        value, reply = await client.json(messages, LABEL_SCHEMA, name="label", accept=take)
        again, cached = await client.json(messages, LABEL_SCHEMA, name="label", accept=take)
        with pytest.raises(LLMResponseParseError):  # a validating caller does not get it
            await client.json(messages, LABEL_SCHEMA, name="label")
        return value, reply, again, cached

    value, reply, again, cached = _run(recorder, body, cache_path=str(tmp_path / "c.sqlite"))
    assert value == again == OFF_SCHEMA
    assert not reply.cached and cached.cached
    assert seen == [OFF_SCHEMA, OFF_SCHEMA]  # the check saw the fresh and the cached object
    # the validating call read the stored reply as a miss and asked again
    assert len(recorder.requests) == 2


def test_json_never_caches_a_reply_the_caller_rejects(tmp_path: Path) -> None:
    recorder = Recorder(httpx2.Response(200, json=_completion(json.dumps(OFF_SCHEMA))))
    messages = classify_messages(ticket(0))

    async def body(client: LLMClient) -> Any:
        first, _ = await client.json(messages, LABEL_SCHEMA, name="label", accept=lambda v: False)
        assert client.cache is not None
        stored = len(client.cache)
        second, reply = await client.json(messages, LABEL_SCHEMA, name="label", accept=bool)
        return first, stored, second, reply, len(client.cache)

    first, stored, second, reply, stored_after = _run(
        recorder, body, cache_path=str(tmp_path / "c.sqlite")
    )
    assert first == second == OFF_SCHEMA  # the rejected object still comes back
    assert stored == 0  # ... but is not cached
    assert not reply.cached and len(recorder.requests) == 2  # so the next call asks again
    assert stored_after == 1  # taken this time: cached


def test_json_asks_again_when_the_caller_rejects_a_cached_reply(tmp_path: Path) -> None:
    good = {"label": "billing"}
    recorder = Recorder(
        httpx2.Response(200, json=_completion(json.dumps(good))),
        httpx2.Response(200, json=_completion(json.dumps({"label": "technical"}))),
    )
    messages = classify_messages(ticket(2))

    async def body(client: LLMClient) -> Any:
        await client.json(messages, LABEL_SCHEMA, name="label")  # validated, cached
        value, reply = await client.json(
            messages, LABEL_SCHEMA, name="label", accept=lambda v: v["label"] != "billing"
        )
        return value, reply

    value, reply = _run(recorder, body, cache_path=str(tmp_path / "c.sqlite"))
    assert value == {"label": "technical"} and not reply.cached
    assert len(recorder.requests) == 2


def test_json_with_accept_still_needs_a_json_object(tmp_path: Path) -> None:
    recorder = Recorder(httpx2.Response(200, json=_completion("label: billing")))
    llm_path = tmp_path / "c.sqlite"
    messages = classify_messages(ticket(1))

    async def body(client: LLMClient) -> Any:
        with pytest.raises(LLMResponseParseError) as info:
            await client.json(messages, LABEL_SCHEMA, name="label", accept=bool)
        assert client.cache is not None
        return info.value.raw, len(client.cache)

    raw, stored = _run(recorder, body, cache_path=str(llm_path))
    assert raw == "label: billing" and stored == 0


def test_json_still_refuses_a_bad_schema_with_accept() -> None:
    recorder = Recorder(httpx2.Response(200, json=_completion("{}")))

    async def body(client: LLMClient) -> Any:
        await client.json(classify_messages("x"), {"type": 12}, name="bad", accept=bool)

    with pytest.raises(Exception, match="invalid JSON Schema"):
        _run(recorder, body)
    assert recorder.requests == []


def test_ops_never_cache_a_batch_reply_they_reject(tmp_path: Path) -> None:
    spec = ClassifySpec("text", tuple(LABELS), batch_size=2)
    texts = [ticket(0), ticket(1)]
    bad = {"results": [{"id": 0, "label": "billing"}, {"id": 1, "label": "weather"}]}
    good_row = {"results": [{"id": 0, "label": "technical"}]}

    def answer(request: httpx2.Request) -> httpx2.Response:
        sent = json.loads(request.content)
        rows = sent["messages"][-1]["content"].split("Rows:\n")[1].splitlines()
        reply = bad if len(rows) == 2 else good_row
        return httpx2.Response(200, json=_completion(json.dumps(reply), usage=_usage()))

    recorder = Recorder(answer)
    llm = LLM(model="m", base_url=BASE_URL, api_key="k", cache_path=str(tmp_path / "c.sqlite"))

    async def main() -> Any:
        http = httpx2.AsyncClient(transport=httpx2.MockTransport(recorder))
        client = LLMClient(llm, http_client=http, retry=FAST_RETRY)
        try:
            results = await classify_texts(texts, client, spec)
            assert client.cache is not None
            return results, len(client.cache), client.cache.row_count()
        finally:
            await client.aclose()
            await http.aclose()

    results, replies, rows = asyncio.run(main())
    assert results == [("billing", None), ("technical", None)]
    assert replies == 1  # only the one-row reply: the batch with a bad label was never cached
    assert rows == 2  # both checked answers are in the row store
    assert len(recorder.requests) == 2  # the batch, then the one bad row re-asked
