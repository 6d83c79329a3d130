"""A server that refuses ``tools`` with HTTP 500 (llama.cpp's server started without
``--jinja``): ``auto`` switches to the json protocol after exactly one refused request,
not after the client's seven tries of backoff."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import rlm_pipeline as rp
from rlm_pipeline.errors import LLMError
from rlm_pipeline.llm.client import LLMClient
from rlm_pipeline.llm.config import LLM
from rlm_pipeline.rlm.protocol import forget_protocols, is_tools_rejection
from rlm_pipeline.rlm.tools import TOOLS

from .truth import USERS, label_count

DEMO_Q = "Among users 12345, 67890 and 11111, how many questions are about billing?"


@pytest.fixture(autouse=True)
def _fresh_protocol_memory() -> Iterator[None]:
    forget_protocols()
    yield
    forget_protocols()


def test_tools_refused_with_500_is_not_retried(sim_factory: Callable[..., Any]) -> None:
    import asyncio

    sim = sim_factory(tool_mode="rejected_500")
    llm = LLM(model="sim-1", base_url=sim.base_url, api_key="k")  # default: 7 tries

    async def run() -> LLMError:
        async with LLMClient(llm) as client:
            with pytest.raises(LLMError) as info:
                await client.chat([{"role": "user", "content": "hi"}], tools=TOOLS)
            # the server still answers requests without tools, and the breaker did not trip
            await client.chat([{"role": "user", "content": "hi"}])
            return info.value

    error = asyncio.run(run())
    assert error.status == 500 and error.attempts == 1
    assert is_tools_rejection(error.status, str(error))
    assert sim.stats()["errors_by_status"] == {"500": 1}


def test_auto_switches_to_json_after_one_refused_500(
    sim_factory: Callable[..., Any], ticket_parquet: Path, ticket_frame: pl.DataFrame
) -> None:
    sim = sim_factory(tool_mode="rejected_500")
    llm = LLM(model="sim-1", base_url=sim.base_url, api_key="k")  # default retries
    started = time.monotonic()
    res = rp.RLM(llm).run(DEMO_Q, str(ticket_parquet), text_column="question")
    elapsed = time.monotonic() - started
    assert res.value == label_count(ticket_frame, "billing", users=USERS)
    stats = sim.stats()
    assert stats["errors_by_status"] == {"500": 1}  # exactly one refused request
    turns = [r for r in res.trace if r["kind"] == "model" and "step" in r["extra"]]
    assert turns[0]["extra"]["protocol"] == "json"
    assert turns[0]["extra"]["switched_from"] == "tools"
    assert "--jinja" in turns[0]["extra"]["switch_reason"]
    assert elapsed < 15  # no 23 s of backoff on the refusal


def test_json_protocol_on_a_strict_server_keeps_sub_calls_on_json_schema(
    sim_factory: Callable[..., Any], ticket_parquet: Path, ticket_frame: pl.DataFrame
) -> None:
    """OpenAI's strict mode refuses the action schema (a root anyOf) when sent strict: it goes
    non-strict, and the classify sub-calls of the same model stay on strict json_schema."""
    from rlm_pipeline.llm.structured import known_mode

    sim = sim_factory(structured_mode="strict")
    llm = LLM(model="sim-1", base_url=sim.base_url, api_key="k")
    res = rp.RLM(llm, protocol="json").run(DEMO_Q, str(ticket_parquet), text_column="question")
    assert res.value == label_count(ticket_frame, "billing", users=USERS)
    assert sim.stats()["errors_by_status"] == {}  # nothing refused
    assert known_mode(sim.base_url, "sim-1", "loose") == "json_schema"
    assert known_mode(sim.base_url, "sim-1", "strict") == "json_schema"  # the sub-calls
