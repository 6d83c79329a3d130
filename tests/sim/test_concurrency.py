"""Latency and the concurrency cap: requests beyond the cap queue, as on a real server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx2
from openai import AsyncOpenAI

from .helpers import batch_schema, json_schema_format, rows_messages


async def _flood(base_url: str, n: int) -> float:
    http = httpx2.AsyncClient(trust_env=False, verify=False, limits=httpx2.Limits(max_connections=n))
    client = AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0, http_client=http)
    began = time.perf_counter()
    try:
        await asyncio.gather(*[
            client.chat.completions.create(
                model="sim-1", messages=rows_messages([f"ticket {i}: refund please"]),
                response_format=json_schema_format(batch_schema()),
            )
            for i in range(n)
        ])
    finally:
        await client.close()
    return time.perf_counter() - began


def test_latency_is_applied(sim_factory: Callable[..., Any]) -> None:
    sim = sim_factory(latency_ms=200)
    elapsed = asyncio.run(_flood(sim.base_url, 1))
    assert elapsed >= 0.2
    t_start, t_end, status, _ = sim.stats()["requests_log"][0]
    assert status == 200 and t_end - t_start >= 0.2


def test_requests_beyond_the_cap_queue(sim_factory: Callable[..., Any]) -> None:
    sim = sim_factory(latency_ms=100, max_concurrency=4)
    elapsed = asyncio.run(_flood(sim.base_url, 16))
    stats = sim.stats()
    assert stats["ok"] == 16
    assert stats["peak_active"] == 4
    assert stats["peak_in_flight"] > 4
    assert elapsed >= 4 * 0.1  # 16 requests through 4 slots of 100 ms each
    assert stats["in_flight"] == 0 and stats["active"] == 0


def test_unqueued_when_under_the_cap(sim_factory: Callable[..., Any]) -> None:
    sim = sim_factory(latency_ms=100, max_concurrency=64)
    asyncio.run(_flood(sim.base_url, 8))
    stats = sim.stats()
    assert stats["peak_active"] == stats["peak_in_flight"] > 1


def test_cap_can_change_live(sim_factory: Callable[..., Any]) -> None:
    sim = sim_factory(latency_ms=50, max_concurrency=64)
    sim.set_config(max_concurrency=2)
    asyncio.run(_flood(sim.base_url, 8))
    assert sim.stats()["peak_active"] == 2
