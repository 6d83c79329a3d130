"""Injected faults: 429 with Retry-After, 500, slow replies, malformed JSON, wrong ids."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import openai
import pytest

from .helpers import batch_schema, json_schema_format, raw_post, rows_messages

TEXTS = ["I was charged twice", "The app crashes", "I forgot my password", "Any office in Berlin?"]


def _body(texts: list[str] = TEXTS) -> dict[str, Any]:
    return {"model": "sim-1", "messages": rows_messages(texts),
            "response_format": json_schema_format(batch_schema())}


def test_429_carries_a_small_retry_after(sim_factory: Callable[..., Any]) -> None:
    sim = sim_factory(fault_429=1.0)
    response = raw_post(sim, _body())
    assert response.status_code == 429
    assert 0.05 <= float(response.headers["retry-after"]) <= 0.2
    assert 50 <= int(response.headers["retry-after-ms"]) <= 200
    assert response.json()["error"]["type"] == "rate_limit_error"
    stats = sim.stats()
    assert stats["faults"] == {"429": 1} and stats["errors_by_status"] == {"429": 1}
    assert stats["ok"] == 0 and stats["input_tokens"] == 0


def test_500(sim_factory: Callable[..., Any]) -> None:
    sim = sim_factory(fault_500=1.0)
    assert raw_post(sim, _body()).status_code == 500
    assert sim.stats()["errors_by_status"] == {"500": 1}


def test_openai_client_retries_through_429s(sim_factory: Callable[..., Any],
                                            client_for: Callable[..., Any]) -> None:
    sim = sim_factory(fault_429=0.5, seed=3)
    client = client_for(sim, max_retries=10)
    for _ in range(5):
        reply = client.chat.completions.create(**_body())
        assert len(json.loads(reply.choices[0].message.content)["results"]) == len(TEXTS)
    stats = sim.stats()
    assert stats["ok"] == 5 and stats["errors_by_status"]["429"] == stats["faults"]["429"] > 0
    assert stats["requests"] == 5 + stats["faults"]["429"]


def test_timeout_fault_outlasts_the_client_timeout(sim_factory: Callable[..., Any],
                                                   client_for: Callable[..., Any]) -> None:
    sim = sim_factory(fault_timeout=1.0, timeout_delay_s=1.0)
    client = client_for(sim, timeout=0.25)
    began = time.perf_counter()
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(**_body())
    assert time.perf_counter() - began < 0.9
    assert sim.stats(log=False)["faults"] == {"timeout": 1}


def test_timeout_fault_is_a_slow_but_valid_reply(sim_factory: Callable[..., Any],
                                                 client_for: Callable[..., Any]) -> None:
    sim = sim_factory(fault_timeout=1.0, timeout_delay_s=0.3)
    began = time.perf_counter()
    reply = client_for(sim, timeout=5).chat.completions.create(**_body())
    assert time.perf_counter() - began >= 0.3
    assert len(json.loads(reply.choices[0].message.content)["results"]) == len(TEXTS)


def test_malformed_json(sim_factory: Callable[..., Any], client_for: Callable[..., Any]) -> None:
    sim = sim_factory(fault_malformed=1.0)
    reply = client_for(sim).chat.completions.create(**_body())
    content = reply.choices[0].message.content
    assert content.startswith('{"results"')
    with pytest.raises(json.JSONDecodeError):
        json.loads(content)
    assert sim.stats()["faults"] == {"malformed": 1}


def test_malformed_tool_arguments(sim_factory: Callable[..., Any],
                                  client_for: Callable[..., Any]) -> None:
    sim = sim_factory(fault_malformed=1.0)
    tool = {"type": "function", "function": {"name": "send_output", "parameters": {
        "type": "object", "properties": {"label": {"enum": ["billing", "other"]}}}}}
    reply = client_for(sim).chat.completions.create(
        model="sim-1", messages=[{"role": "user", "content": "refund please"}], tools=[tool],
        tool_choice={"type": "function", "function": {"name": "send_output"}},
    )
    with pytest.raises(json.JSONDecodeError):
        json.loads(reply.choices[0].message.tool_calls[0].function.arguments)


def test_wrong_ids_drop_duplicate_or_invent(sim_factory: Callable[..., Any],
                                            client_for: Callable[..., Any]) -> None:
    sim = sim_factory(fault_wrong_ids=1.0, seed=5)
    client = client_for(sim)
    sent = list(range(len(TEXTS)))
    seen = set()
    for _ in range(30):
        reply = client.chat.completions.create(**_body())
        ids = [r["id"] for r in json.loads(reply.choices[0].message.content)["results"]]
        assert sorted(ids) != sent
        if len(ids) < len(sent):
            seen.add("dropped")
        elif len(set(ids)) < len(ids):
            seen.add("duplicated")
        elif set(ids) - set(sent):
            seen.add("unknown")
    assert seen == {"dropped", "duplicated", "unknown"}
    assert sim.stats()["faults"] == {"wrong_ids": 30}


def test_content_faults_spare_plain_replies(sim_factory: Callable[..., Any],
                                            client_for: Callable[..., Any]) -> None:
    sim = sim_factory(fault_malformed=1.0, fault_wrong_ids=1.0)
    reply = client_for(sim).chat.completions.create(model="sim-1", messages=[
        {"role": "user", "content": "Labels: billing, other.\nText: refund please"}])
    assert reply.choices[0].message.content == "billing"
    assert sim.stats()["faults"] == {}


def _statuses(sim: Any, n: int) -> list[int]:
    return [raw_post(sim, _body(["x"])).status_code for _ in range(n)]


def test_fault_rates_are_seeded_and_reproducible(sim_factory: Callable[..., Any]) -> None:
    first = sim_factory(fault_429=0.2, fault_500=0.2, seed=42)
    second = sim_factory(fault_429=0.2, fault_500=0.2, seed=42)
    other = sim_factory(fault_429=0.2, fault_500=0.2, seed=43)
    a, b, c = _statuses(first, 150), _statuses(second, 150), _statuses(other, 150)
    assert a == b and a != c
    assert 15 <= a.count(429) <= 45 and 15 <= a.count(500) <= 45
    assert a.count(200) == first.stats()["ok"]


def test_reseeding_restarts_the_sequence(sim_factory: Callable[..., Any]) -> None:
    sim = sim_factory(fault_500=0.5, seed=9)
    first = _statuses(sim, 40)
    sim.set_config(seed=9)
    assert _statuses(sim, 40) == first
