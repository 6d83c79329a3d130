"""LLMClient against the simulator over real HTTP through the real openai client."""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rlm_pipeline.errors import (
    BudgetExceededError,
    InputError,
    LLMError,
    LLMRateLimitError,
    LLMResponseParseError,
    LLMTimeoutError,
)
from rlm_pipeline.llm import structured
from rlm_pipeline.llm.budget import BudgetGuard
from rlm_pipeline.llm.cache import ResponseCache, json_key
from rlm_pipeline.llm.client import LLMClient
from rlm_pipeline.llm.config import LLM, Budget
from rlm_pipeline.llm.retry import RetryPolicy
from rlm_pipeline.llm.usage import UsageMeter
from rlm_pipeline.sim import intended_label

from .helpers import FAST_RETRY, LABEL_SCHEMA, LABELS, classify_messages, ticket

SimFactory = Callable[..., Any]


@pytest.fixture(autouse=True)
def _fresh_mode_memory() -> Iterator[None]:
    # Simulators get fresh ports, but a port can be reused by a later simulator
    # with another structured mode: start every test with no remembered modes.
    structured.forget_modes()
    yield
    structured.forget_modes()


def _llm(sim: Any, **changes: Any) -> LLM:
    base: dict[str, Any] = {
        "model": "sim-1",
        "base_url": sim.base_url,
        "api_key": "k",
        "timeout_s": 10.0,
    }
    base.update(changes)
    return LLM(**base)


async def _classify_all(client: LLMClient, texts: list[str]) -> list[Any]:
    async def one(text: str) -> Any:
        value, _ = await client.json(classify_messages(text), LABEL_SCHEMA, name="label")
        return value["label"]

    return list(await asyncio.gather(*(one(t) for t in texts), return_exceptions=True))


def test_chat_reply_and_usage_equal_the_server(sim: Any) -> None:
    async def run() -> tuple[Any, Any]:
        async with LLMClient(_llm(sim)) as client:
            reply = await client.chat(
                [{"role": "user", "content": "Labels: billing, other. Text: refund my invoice"}]
            )
            for i in range(4):
                await client.json(classify_messages(ticket(i)), LABEL_SCHEMA, name="label")
            return reply, client.usage

    reply, usage = asyncio.run(run())
    stats = sim.stats()
    assert reply.cached is False and reply.finish_reason == "stop"
    assert reply.content is not None and reply.input_tokens > 0 and reply.output_tokens > 0
    assert stats["requests"] == stats["ok"] == 5 == usage.calls
    assert usage.input_tokens == stats["input_tokens"]
    assert usage.output_tokens == stats["output_tokens"]
    assert usage.cost_usd == 0.0  # "sim-1" has no price
    assert usage.max_prompt_tokens > 0 and usage.failed_calls == 0


def test_300_requests_survive_30_percent_faults(sim_factory: SimFactory) -> None:
    sim = sim_factory(fault_429=0.15, fault_500=0.15, seed=7, latency_ms=2)
    texts = [ticket(i) for i in range(300)]

    async def run() -> tuple[list[Any], Any]:
        async with LLMClient(_llm(sim, max_concurrency=32), retry=FAST_RETRY) as client:
            return await _classify_all(client, texts), client.usage

    labels, usage = asyncio.run(run())
    stats = sim.stats()
    assert labels == [intended_label(t, LABELS) for t in texts]  # nothing lost, in order
    assert stats["ok"] == 300 == usage.calls
    errors = stats["errors_by_status"]
    assert errors.get("429", 0) > 30 and errors.get("500", 0) > 30
    assert stats["requests"] == 300 + errors["429"] + errors["500"]
    assert (usage.input_tokens, usage.output_tokens) == (
        stats["input_tokens"],
        stats["output_tokens"],
    )
    assert usage.failed_calls == 0


def test_401_fails_at_once(sim_factory: SimFactory) -> None:
    sim = sim_factory(require_api_key="right-key")

    async def run() -> LLMClient:
        client = LLMClient(_llm(sim, api_key="wrong-key"), retry=FAST_RETRY)
        with pytest.raises(LLMError) as info:
            await client.chat(classify_messages(ticket(2)))
        assert info.value.status == 401 and info.value.attempts == 1
        assert "401" in str(info.value)
        await client.aclose()
        return client

    client = asyncio.run(run())
    assert sim.stats()["requests"] == 1
    assert client.usage.failed_calls == 1 and client.usage.calls == 0


def test_400_fails_at_once(sim: Any) -> None:
    async def run() -> None:
        async with LLMClient(_llm(sim), retry=FAST_RETRY) as client:
            with pytest.raises(LLMError) as info:
                await client.chat([])  # the server refuses an empty message list
            assert info.value.status == 400 and info.value.attempts == 1

    asyncio.run(run())
    assert sim.stats()["requests"] == 1


def test_500_and_429_give_up_after_max_retries(
    sim_factory: SimFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="rlm_pipeline.llm.client")
    sim = sim_factory(fault_500=1.0)
    policy = RetryPolicy(
        max_retries=2, base_delay_s=0.001, max_delay_s=0.005, max_retry_after_s=0.005
    )

    async def run(expected: type[LLMError], status: int) -> None:
        async with LLMClient(_llm(sim), retry=policy) as client:
            with pytest.raises(expected) as info:
                await client.chat(classify_messages(ticket(2)))
            assert info.value.status == status and info.value.attempts == 3
            assert f"{status} after 3 tries" in str(info.value)
            assert client.usage.failed_calls == 1

    asyncio.run(run(LLMError, 500))
    assert sim.stats()["requests"] == 3
    sim.set_config(fault_500=0.0, fault_429=1.0)
    sim.reset_stats()
    asyncio.run(run(LLMRateLimitError, 429))
    assert sim.stats()["requests"] == 3
    decisions = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert sum(m.startswith("retrying HTTP 500") for m in decisions) == 2
    assert sum(m.startswith("retrying HTTP 429") for m in decisions) == 2


def test_retry_after_is_honoured(sim_factory: SimFactory) -> None:
    sim = sim_factory(fault_429=1.0, retry_after_s=(0.3, 0.3))
    policy = RetryPolicy(
        max_retries=1, base_delay_s=0.001, max_delay_s=0.001, max_retry_after_s=5.0
    )

    async def run() -> None:
        async with LLMClient(_llm(sim), retry=policy) as client:
            with pytest.raises(LLMRateLimitError):
                await client.chat(classify_messages(ticket(2)))

    asyncio.run(run())
    starts = sorted(entry[0] for entry in sim.stats()["requests_log"])
    assert len(starts) == 2 and starts[1] - starts[0] >= 0.29


def test_timeout_is_retried_and_succeeds(sim_factory: SimFactory) -> None:
    sim = sim_factory(fault_timeout=1.0, timeout_delay_s=1.5)
    policy = RetryPolicy(max_retries=8, base_delay_s=0.01, max_delay_s=0.01)

    async def run() -> Any:
        async with LLMClient(_llm(sim, timeout_s=0.3), retry=policy) as client:
            task = asyncio.create_task(client.chat(classify_messages(ticket(2))))
            while (await asyncio.to_thread(sim.stats))["requests"] < 1:
                await asyncio.sleep(0.01)
            # The first try is stuck past the client timeout; heal the server.
            await asyncio.to_thread(sim.set_config, fault_timeout=0.0)
            reply = await task
            return reply, client.usage

    reply, usage = asyncio.run(run())
    stats = sim.stats()
    assert reply.content
    assert stats["faults"].get("timeout") == 1
    assert stats["requests"] >= 2 and usage.calls == 1 and usage.failed_calls == 0


def test_timeouts_give_up_with_llm_timeout_error(sim_factory: SimFactory) -> None:
    sim = sim_factory(fault_timeout=1.0, timeout_delay_s=1.0)
    policy = RetryPolicy(max_retries=1, base_delay_s=0.01, max_delay_s=0.01)

    async def run() -> None:
        async with LLMClient(_llm(sim, timeout_s=0.2), retry=policy) as client:
            with pytest.raises(LLMTimeoutError) as info:
                await client.chat(classify_messages(ticket(2)))
            assert info.value.attempts == 2
            assert "timeout after 2 tries" in str(info.value)

    asyncio.run(run())
    assert sim.stats()["requests"] == 2


def test_connection_refused_is_retried_then_fails() -> None:
    policy = RetryPolicy(max_retries=2, base_delay_s=0.001, max_delay_s=0.002)
    llm = LLM(model="sim-1", base_url="http://127.0.0.1:9/v1", api_key="k", timeout_s=2.0)

    async def run() -> None:
        async with LLMClient(llm, retry=policy) as client:
            with pytest.raises(LLMError) as info:
                await client.chat(classify_messages(ticket(2)))
            # Never answered: the circuit breaker names the cause (tests/llm/test_breaker.py).
            assert info.value.attempts == 3 and "connection refused at" in str(info.value)
            assert not isinstance(info.value, LLMTimeoutError)

    asyncio.run(run())


def test_concurrency_never_exceeds_max(sim_factory: SimFactory) -> None:
    sim = sim_factory(latency_ms=15, max_concurrency=64)

    async def run() -> list[Any]:
        async with LLMClient(_llm(sim, max_concurrency=8)) as client:
            return await _classify_all(client, [ticket(i) for i in range(200)])

    labels = asyncio.run(run())
    stats = sim.stats()
    assert all(isinstance(label, str) for label in labels)
    assert stats["ok"] == 200
    # The bound is reached (the client does run 8 at once) and never passed.
    assert 6 <= stats["peak_in_flight"] <= 8


def _assert_never_early(starts: list[float], interval: float, tolerance: float) -> None:
    """The i-th request (by server arrival) started no earlier than i intervals after the first.

    A pacing limiter may start requests late (a busy machine) but never early;
    this holds whatever the load, up to ``tolerance`` of network jitter.
    """
    starts = sorted(starts)
    for i, t in enumerate(starts):
        assert t - starts[0] >= i * interval - tolerance, (i, t - starts[0])


def test_rpm_limit_holds(sim: Any) -> None:
    rpm = 1200  # one request per 50 ms

    async def run() -> None:
        async with LLMClient(_llm(sim, rpm=rpm, max_concurrency=16)) as client:
            await _classify_all(client, [ticket(i) for i in range(30)])

    asyncio.run(run())
    starts = [entry[0] for entry in sim.stats()["requests_log"]]
    assert len(starts) == 30
    _assert_never_early(starts, 60 / rpm, tolerance=0.04)


def test_tpm_limit_holds(sim: Any) -> None:
    tpm = 120_000  # 2,000 tokens per second
    max_tokens = 100
    n = 12

    async def run() -> None:
        async with LLMClient(_llm(sim, tpm=tpm, max_concurrency=16)) as client:
            texts = [ticket(i) for i in range(n)]
            await asyncio.gather(
                *(
                    client.json(
                        classify_messages(t), LABEL_SCHEMA, name="label", max_tokens=max_tokens
                    )
                    for t in texts
                )
            )

    asyncio.run(run())
    stats = sim.stats()
    starts = [entry[0] for entry in stats["requests_log"]]
    assert len(starts) == n
    # Each request books at least the tokens it really used (prompt + max_tokens
    # allowance), so requests are at least real_tokens / rate apart.
    per_request = (stats["input_tokens"] + stats["output_tokens"]) / n
    _assert_never_early(starts, per_request / (tpm / 60), tolerance=0.04)


def test_cache_second_run_sends_nothing(sim: Any, tmp_path: Path) -> None:
    cache_path = str(tmp_path / "cache" / "llm.sqlite")
    texts = [ticket(i) for i in range(40)]
    tools = [
        {
            "type": "function",
            "function": {
                "name": "label_row",
                "description": "Give the label",
                "parameters": LABEL_SCHEMA,
            },
        }
    ]

    async def run() -> tuple[list[Any], Any, Any]:
        async with LLMClient(_llm(sim, cache_path=cache_path)) as client:
            labels = await _classify_all(client, texts)
            tool_reply = await client.chat(
                classify_messages(texts[0]),
                tools=tools,
                tool_choice={"type": "function", "function": {"name": "label_row"}},
            )
            return labels, tool_reply, client.usage

    first, first_tool, first_usage = asyncio.run(run())
    requests_after_first = sim.stats()["requests"]
    assert first_usage.calls == 41 == requests_after_first
    second, second_tool, second_usage = asyncio.run(run())
    assert sim.stats()["requests"] == requests_after_first  # zero requests sent
    assert second == first
    assert second_usage.cached_calls == 41 and second_usage.calls == 0
    assert second_usage.input_tokens == 0
    assert second_tool.cached and second_tool.tool_calls == first_tool.tool_calls
    with ResponseCache(cache_path) as cache:
        assert cache.contains(
            json_key(_llm(sim), classify_messages(texts[3]), LABEL_SCHEMA, name="label")
        )


def test_tool_calls_come_back_raw(sim: Any) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "label_row",
                "description": "Give the label",
                "parameters": LABEL_SCHEMA,
            },
        }
    ]

    async def run() -> Any:
        async with LLMClient(_llm(sim)) as client:
            return await client.chat(
                classify_messages(ticket(0)), tools=tools, tool_choice="required"
            )

    reply = asyncio.run(run())
    assert reply.finish_reason == "tool_calls" and len(reply.tool_calls) == 1
    call = reply.tool_calls[0]
    assert call.name == "label_row" and call.id
    assert json.loads(call.arguments) == {"label": intended_label(ticket(0), LABELS)}


def _cache_worker(llm: LLM, start: int, stop: int) -> None:
    async def run() -> None:
        async with LLMClient(llm, retry=FAST_RETRY) as client:
            await asyncio.gather(
                *(
                    client.json(classify_messages(ticket(i)), LABEL_SCHEMA, name="label")
                    for i in range(start, stop)
                )
            )

    asyncio.run(run())


def test_two_processes_share_one_cache_file(sim: Any, tmp_path: Path) -> None:
    cache_path = str(tmp_path / "shared.sqlite")
    llm = _llm(sim, cache_path=cache_path)
    ctx = multiprocessing.get_context("fork")
    procs = [
        ctx.Process(target=_cache_worker, args=(llm, 0, 120)),
        ctx.Process(target=_cache_worker, args=(llm, 60, 180)),
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    conn = sqlite3.connect(cache_path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    with ResponseCache(cache_path) as cache:
        assert len(cache) == 180
    sent = sim.stats()["requests"]
    assert 180 <= sent <= 240  # the overlap may be asked twice, never more

    async def again() -> Any:
        async with LLMClient(llm) as client:
            labels = await _classify_all(client, [ticket(i) for i in range(180)])
            return labels, client.usage

    labels, usage = asyncio.run(again())
    assert sim.stats()["requests"] == sent
    assert usage.cached_calls == 180
    assert labels == [intended_label(ticket(i), LABELS) for i in range(180)]


@pytest.mark.parametrize(
    ("mode", "rejected"), [("json_schema", 0), ("json_object", 1), ("text", 2)]
)
def test_structured_mode_fallback_costs_one_failure_per_mode(
    sim_factory: SimFactory, mode: str, rejected: int
) -> None:
    sim = sim_factory(structured_mode=mode, latency_ms=5)
    texts = [ticket(i) for i in range(24)]

    async def run(batch: list[str]) -> list[Any]:
        # a long grace: the others wait for the probe however slow this machine is
        async with LLMClient(_llm(sim, max_concurrency=16), probe_grace_s=30.0) as client:
            return await _classify_all(client, batch)

    labels = asyncio.run(run(texts[:12]))
    stats = sim.stats()
    assert labels == [intended_label(t, LABELS) for t in texts[:12]]
    assert stats["ok"] == 12
    assert stats["requests"] - stats["ok"] == rejected
    assert structured.known_mode(sim.base_url, "sim-1") == mode
    # A new client in the same process knows the endpoint's mode: no more failures.
    labels = asyncio.run(run(texts[12:]))
    stats = sim.stats()
    assert labels == [intended_label(t, LABELS) for t in texts[12:]]
    assert stats["ok"] == 24 and stats["requests"] - stats["ok"] == rejected


def test_calls_do_not_idle_while_an_accepted_probe_is_out(sim_factory: SimFactory) -> None:
    # llama.cpp-like server: json_schema is refused at once, json_object is then accepted
    sim = sim_factory(structured_mode="json_object", latency_ms=1_000)
    texts = [ticket(i) for i in range(12)]

    async def run() -> list[Any]:
        async with LLMClient(_llm(sim, max_concurrency=16)) as client:  # default grace
            return await _classify_all(client, texts)

    labels = asyncio.run(run())
    stats = sim.stats()
    assert labels == [intended_label(t, LABELS) for t in texts]
    assert stats["requests"] - stats["ok"] == 1  # only the probe's json_schema try
    ok = sorted((start, end) for start, end, status, _ in stats["requests_log"] if status == 200)
    probe_end = ok[0][1]
    # the other eleven went while the probe's accepted try was still out
    assert len(ok) == 12 and all(start < probe_end for start, _ in ok[1:])


def test_refusal_after_the_grace_costs_one_try_per_call_sent(sim_factory: SimFactory) -> None:
    sim = sim_factory(structured_mode="json_object", latency_ms=50)
    texts = [ticket(i) for i in range(12)]

    async def run() -> list[Any]:
        async with LLMClient(_llm(sim, max_concurrency=16), probe_grace_s=0.0) as client:
            return await _classify_all(client, texts)

    labels = asyncio.run(run())
    stats = sim.stats()
    assert labels == [intended_label(t, LABELS) for t in texts]
    assert stats["ok"] == 12
    assert 1 <= stats["requests"] - stats["ok"] <= 12  # each call is refused at most once
    assert structured.known_mode(sim.base_url, "sim-1") == "json_object"


def test_budget_stops_before_overshoot_under_concurrency(sim_factory: SimFactory) -> None:
    sim = sim_factory(latency_ms=20)

    async def run() -> tuple[list[Any], Any]:
        async with LLMClient(_llm(sim, max_concurrency=32), budget=Budget(max_calls=10)) as client:
            return await _classify_all(client, [ticket(i) for i in range(32)]), client.usage

    results, usage = asyncio.run(run())
    refused = [r for r in results if isinstance(r, BudgetExceededError)]
    assert len(refused) == 22 and all(r.what == "calls" for r in refused)
    assert usage.calls == 10 == sim.stats()["requests"]


def test_call_budget_holds_across_clients_sharing_a_meter(sim_factory: SimFactory) -> None:
    sim = sim_factory(latency_ms=20)
    meter = UsageMeter()
    budget = Budget(max_calls=10)

    async def run() -> list[Any]:
        async with (
            LLMClient(_llm(sim), meter=meter, budget=budget) as root,
            LLMClient(_llm(sim, model="gpt-4.1-nano"), meter=meter, budget=budget) as sub,
        ):
            assert root.guard is sub.guard
            calls = [
                (root if i % 2 else sub).json(classify_messages(ticket(i)), LABEL_SCHEMA, name="l")
                for i in range(40)
            ]
            return list(await asyncio.gather(*calls, return_exceptions=True))

    results = asyncio.run(run())
    assert sum(isinstance(r, BudgetExceededError) for r in results) == 30
    assert meter.snapshot().calls == 10 == sim.stats()["requests"]


def test_token_budget_shared_by_two_clients(sim_factory: SimFactory) -> None:
    sim = sim_factory(latency_ms=10)
    meter = UsageMeter()
    limit = 3_000
    guard = BudgetGuard(Budget(max_tokens=limit), meter)

    async def run() -> list[Any]:
        async with (
            LLMClient(_llm(sim, max_concurrency=32), budget=guard) as root,
            LLMClient(_llm(sim, model="gpt-4.1-nano", max_concurrency=32), budget=guard) as sub,
        ):
            calls = [
                (root if i % 2 else sub).json(
                    classify_messages(ticket(i)), LABEL_SCHEMA, name="label", max_tokens=40
                )
                for i in range(80)
            ]
            return list(await asyncio.gather(*calls, return_exceptions=True))

    results = asyncio.run(run())
    stats = sim.stats()
    done = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BudgetExceededError)]
    assert len(done) + len(refused) == 80 and done and refused
    assert stats["input_tokens"] + stats["output_tokens"] <= limit
    assert meter.snapshot().total_tokens == stats["input_tokens"] + stats["output_tokens"]
    assert meter.snapshot().cost_usd > 0  # gpt-4.1-nano is priced


def test_guard_and_a_different_meter_are_refused() -> None:
    guard = BudgetGuard(Budget(max_calls=1), UsageMeter())
    with pytest.raises(InputError):
        LLMClient(
            LLM(model="m", base_url="http://127.0.0.1:9/v1"), meter=UsageMeter(), budget=guard
        )


def test_malformed_reply_raises_with_raw_text_and_is_not_cached(
    sim_factory: SimFactory, tmp_path: Path
) -> None:
    sim = sim_factory(fault_malformed=1.0)
    llm = _llm(sim, cache_path=str(tmp_path / "c.sqlite"))
    messages = classify_messages(ticket(1))

    async def run() -> tuple[dict[str, Any], Any]:
        async with LLMClient(llm, retry=FAST_RETRY) as client:
            with pytest.raises(LLMResponseParseError) as info:
                await client.json(messages, LABEL_SCHEMA, name="label")
            raw = info.value.raw
            assert raw.startswith("{") and raw in json.dumps(
                {"label": intended_label(ticket(1), LABELS)}
            )
            assert client.cache is not None
            assert not client.cache.contains(json_key(llm, messages, LABEL_SCHEMA, name="label"))
            await asyncio.to_thread(sim.set_config, fault_malformed=0.0)
            return await client.json(messages, LABEL_SCHEMA, name="label")

    value, reply = asyncio.run(run())
    assert value == {"label": intended_label(ticket(1), LABELS)} and not reply.cached
    assert sim.stats()["requests"] == 2  # the bad reply was not retried inside json()


def test_reply_that_breaks_the_schema_raises_and_is_not_cached(sim: Any, tmp_path: Path) -> None:
    # The simulator fills a schema's shape but not every constraint, like a weak model.
    schema = {
        "type": "object",
        "properties": {"summary": {"type": "string", "minLength": 500}},
        "required": ["summary"],
    }
    llm = _llm(sim, cache_path=str(tmp_path / "c.sqlite"))
    messages = classify_messages(ticket(0))

    async def run() -> None:
        async with LLMClient(llm) as client:
            with pytest.raises(LLMResponseParseError) as info:
                await client.json(messages, schema, name="summary")
            assert "summary" in str(info.value)
            assert isinstance(json.loads(info.value.raw)["summary"], str)
            assert client.cache is not None
            assert len(client.cache) == 0

    asyncio.run(run())
    assert sim.stats()["ok"] == 1


def test_client_belongs_to_one_event_loop(sim: Any) -> None:
    client = LLMClient(_llm(sim))
    asyncio.run(client.chat(classify_messages(ticket(2))))
    with pytest.raises(InputError):
        asyncio.run(client.chat(classify_messages(ticket(2))))
