"""SimServer lifecycle and the control endpoints, over real HTTP."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import httpx2
import openai
import pytest

from rlm_pipeline.errors import InputError
from rlm_pipeline.sim import SimConfig, SimServer

from .helpers import batch_schema, json_schema_format, raw_post, rows_messages


def test_starts_on_a_free_loopback_port_and_stops_cleanly() -> None:
    server = SimServer(SimConfig())
    server.start()
    try:
        assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
        with httpx2.Client(trust_env=False) as http:
            assert http.get(f"{server.base_url}/models").status_code == 200
    finally:
        server.stop()
    with pytest.raises(ConnectionRefusedError), socket.create_connection(
        ("127.0.0.1", server.port), timeout=1
    ):
        pass


def test_two_servers_get_different_ports(sim_factory: Callable[..., Any]) -> None:
    first, second = sim_factory(), sim_factory()
    assert first.port != second.port


def test_refuses_non_loopback_host_unless_allowed() -> None:
    with pytest.raises(InputError, match="non-loopback"):
        SimServer(SimConfig(), host="0.0.0.0").start()


def test_models_lists_configured_names(sim: Any, client_for: Callable[..., Any]) -> None:
    ids = [model.id for model in client_for(sim).models.list()]
    assert ids == list(SimConfig().models)


def test_stats_count_tokens_as_reported_in_usage(sim: Any, client_for: Callable[..., Any]) -> None:
    client = client_for(sim)
    reported_in = reported_out = 0
    for texts in (["I was charged twice", "The app crashes"], ["I forgot my password"]):
        reply = client.chat.completions.create(
            model="sim-1", messages=rows_messages(texts),
            response_format=json_schema_format(batch_schema()),
        )
        assert reply.usage is not None
        reported_in += reply.usage.prompt_tokens
        reported_out += reply.usage.completion_tokens
    stats = sim.stats()
    assert stats["requests"] == stats["ok"] == 2
    assert stats["input_tokens"] == reported_in > 0
    assert stats["output_tokens"] == reported_out > 0
    assert stats["rows_classified"] == 3
    assert stats["by_kind"] == {"classify_batch": 2}
    assert stats["errors_by_status"] == {}
    assert len(stats["requests_log"]) == 2
    for t_start, t_end, status, kind in stats["requests_log"]:
        assert t_start <= t_end and status == 200 and kind == "classify_batch"


def test_usage_follows_the_shared_token_rule(sim: Any, client_for: Callable[..., Any]) -> None:
    from rlm_pipeline.llm.tokens import estimate_message_tokens, estimate_tokens

    messages = rows_messages(["Where is my invoice?"])
    reply = client_for(sim).chat.completions.create(
        model="sim-1", messages=messages, response_format=json_schema_format(batch_schema())
    )
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == estimate_message_tokens(messages)
    assert reply.usage.completion_tokens == estimate_tokens(reply.choices[0].message.content or "")


def test_reset_stats_zeroes_counters(sim: Any, client_for: Callable[..., Any]) -> None:
    client_for(sim).chat.completions.create(
        model="sim-1", messages=rows_messages(["hi"]),
        response_format=json_schema_format(batch_schema()),
    )
    assert sim.stats()["requests"] == 1
    sim.reset_stats()
    stats = sim.stats()
    assert stats["requests"] == 0 and stats["requests_log"] == [] and stats["input_tokens"] == 0


def test_stats_without_log(sim: Any) -> None:
    assert "requests_log" not in sim.stats(log=False)


def test_set_config_changes_behaviour_live(sim: Any, client_for: Callable[..., Any]) -> None:
    new = sim.set_config(fault_500=1.0)
    assert new.fault_500 == 1.0 and sim.stats()["config"]["fault_500"] == 1.0
    with pytest.raises(openai.InternalServerError):
        client_for(sim).chat.completions.create(model="sim-1", messages=rows_messages(["x"]),
                                                response_format=json_schema_format(batch_schema()))
    sim.set_config(fault_500=0.0)
    client_for(sim).chat.completions.create(model="sim-1", messages=rows_messages(["x"]),
                                            response_format=json_schema_format(batch_schema()))
    assert sim.stats()["errors_by_status"] == {"500": 1}


def test_set_config_rejects_bad_values(sim: Any) -> None:
    with pytest.raises(InputError, match="fault_500"):
        sim.set_config(fault_500=2.0)
    with pytest.raises(InputError, match="unknown"):
        sim.set_config(no_such_knob=1)
    assert sim.stats()["config"]["fault_500"] == 0.0


def test_require_api_key(sim_factory: Callable[..., Any], client_for: Callable[..., Any]) -> None:
    sim = sim_factory(require_api_key="sk-right")
    with pytest.raises(openai.AuthenticationError):
        client_for(sim, api_key="sk-wrong").chat.completions.create(
            model="sim-1", messages=[{"role": "user", "content": "hi"}]
        )
    reply = client_for(sim, api_key="sk-right").chat.completions.create(
        model="sim-1", messages=rows_messages(["I was charged twice"]),
        response_format=json_schema_format(batch_schema()),
    )
    assert reply.choices[0].message.content
    stats = sim.stats()
    assert stats["errors_by_status"] == {"401": 1} and stats["ok"] == 1


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"model": "m"}, "messages"),
        ({"model": "m", "messages": []}, "messages"),
        ({"model": "m", "messages": ["hi"]}, "messages"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True}, "stream"),
    ],
)
def test_bad_requests_get_400(sim: Any, body: dict[str, Any], needle: str) -> None:
    response = raw_post(sim, body)
    assert response.status_code == 400
    assert needle in response.json()["error"]["message"]


def test_body_that_is_not_json_gets_400(sim: Any) -> None:
    with httpx2.Client(trust_env=False) as http:
        response = http.post(f"{sim.base_url}/chat/completions", content=b"{not json")
    assert response.status_code == 400
    assert sim.stats()["errors_by_status"] == {"400": 1}
