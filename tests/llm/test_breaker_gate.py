"""The calls of one client around its circuit breaker (llm/gate.py): a call that once
failed to connect stops holding the others as soon as a later try connects; a backoff
does not outlive a tripped breaker; a server that stops answering mid-run stops the run.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import polars as pl
import pytest

import rlm_pipeline as rp
from rlm_pipeline.errors import LLMEndpointError, LLMError
from rlm_pipeline.llm.cache import ResponseCache
from rlm_pipeline.llm.client import LLMClient
from rlm_pipeline.llm.config import LLM
from rlm_pipeline.llm.retry import RetryPolicy

from .helpers import LABELS, ticket

BASE_URL = "http://127.0.0.1:9/v1"
Handler = Callable[[httpx2.Request], Any]


def _ok(text: str = "fine") -> httpx2.Response:
    return httpx2.Response(
        200,
        json={
            "id": "c",
            "object": "chat.completion",
            "created": 0,
            "model": "m",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text},
                 "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
        },
    )


def _text(request: httpx2.Request) -> str:
    return str(json.loads(request.content)["messages"][-1]["content"])


def _run(handler: Handler, body: Callable[[LLMClient], Any], retry: RetryPolicy) -> Any:
    async def main() -> Any:
        http = httpx2.AsyncClient(transport=httpx2.MockTransport(handler))
        client = LLMClient(
            LLM(model="m", base_url=BASE_URL, api_key="k"), http_client=http, retry=retry
        )
        try:
            return await body(client)
        finally:
            await client.aclose()
            await http.aclose()

    return asyncio.run(main())


def test_a_slow_call_that_once_failed_to_connect_does_not_hold_the_others() -> None:
    """A: ConnectError, then read timeouts until it gives up; B and C get 200s at once."""
    tries: dict[str, int] = {}

    async def handler(request: httpx2.Request) -> httpx2.Response:
        who = _text(request)
        tries[who] = tries.get(who, 0) + 1
        if who == "A":
            if tries[who] == 1:
                raise httpx2.ConnectError("refused", request=request)
            raise httpx2.ReadTimeout("slow", request=request)
        return _ok()

    finished: list[str] = []
    policy = RetryPolicy(max_retries=4, base_delay_s=0.8, max_delay_s=4.0)

    async def body(client: LLMClient) -> None:
        async def call(who: str) -> None:
            try:
                await client.chat([{"role": "user", "content": who}])
            except LLMError:
                pass
            finished.append(who)

        first = asyncio.create_task(call("A"))
        await asyncio.sleep(0.3)  # A leads the reconnect, then gets a read timeout
        await asyncio.gather(first, call("B"), call("C"))

    _run(handler, body, policy)
    assert tries["A"] == 5  # A went through its whole schedule (several seconds)
    assert finished[-1] == "A" and sorted(finished[:2]) == ["B", "C"]  # B and C did not wait


def test_a_backoff_ends_when_another_call_trips_the_breaker() -> None:
    """B's try times out; meanwhile A's 401 trips the breaker: B raises at once."""

    async def handler(request: httpx2.Request) -> httpx2.Response:
        if _text(request) == "A":
            await asyncio.sleep(0.1)
            return httpx2.Response(401, json={"error": {"message": "bad key"}})
        await asyncio.sleep(0.3)  # answered after A's 401
        raise httpx2.ReadTimeout("slow", request=request)

    policy = RetryPolicy(max_retries=3, base_delay_s=20.0, max_delay_s=20.0)

    async def body(client: LLMClient) -> tuple[BaseException, float]:
        async def call(who: str) -> BaseException:
            with pytest.raises(LLMEndpointError) as info:
                await client.chat([{"role": "user", "content": who}])
            return info.value

        started = time.monotonic()
        _, late = await asyncio.gather(call("A"), call("B"))
        return late, time.monotonic() - started

    late, elapsed = _run(handler, body, policy)
    assert late.cause == "unauthorized"  # type: ignore[attr-defined]
    assert elapsed < 10  # not the 15-20 s backoff


def test_server_stopping_mid_run_stops_a_polars_run(
    sim_factory: Callable[..., Any], tmp_path: Path
) -> None:
    """5,000 rows over real HTTP; the server goes away after ~200 answered requests."""
    sim = sim_factory(latency_ms=5)
    cache = tmp_path / "c.sqlite"
    llm = LLM(model="sim-1", base_url=sim.base_url, api_key="k", cache_path=str(cache),
              max_concurrency=8)
    df = pl.DataFrame({"id": range(5_000), "q": [ticket(i) for i in range(5_000)]})
    stopped_at: list[float] = []

    def stop_when_busy() -> None:
        while sim.stats()["requests"] < 200:
            time.sleep(0.01)
        sim.__exit__(None, None, None)
        stopped_at.append(time.monotonic())

    stopper = threading.Thread(target=stop_when_busy)
    stopper.start()
    try:
        with pytest.raises(LLMEndpointError) as info:
            rp.classify(df, "q", LABELS, llm, batch_size=1)
    finally:
        stopper.join()
    assert stopped_at
    took = time.monotonic() - stopped_at[0]
    assert took < 15, took  # not minutes of seven tries per row
    message = str(info.value)
    assert "stopped answering mid-run" in message and sim.base_url in message
    assert info.value.cause == "connection_lost"
    # what was answered before is kept: a re-run against a live server asks only the rest
    with ResponseCache(cache) as stored:
        assert len(stored) >= 150
