"""The simulator's protocol modes: tools refused, calls written as text, one JSON action,
and llama.cpp's grammar limit, over real HTTP."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import openai
import pytest

from rlm_pipeline.errors import InputError
from rlm_pipeline.ops.prompts import reply_schema
from rlm_pipeline.ops.spec import ClassifySpec, MapSpec
from rlm_pipeline.rlm.actions import parse_actions
from rlm_pipeline.rlm.limits import SCHEMA_LIMIT, over_limit
from rlm_pipeline.rlm.loop import ACTION_SCHEMA, ANSWER_SCHEMA
from rlm_pipeline.rlm.prompts import ROOT_PROMPT_MARKER, SYSTEM_PROMPT, system_prompt
from rlm_pipeline.rlm.protocol import tool_lines
from rlm_pipeline.rlm.tools import TOOL_SPECS, TOOLS
from rlm_pipeline.sim import SimConfig
from rlm_pipeline.sim import protocols as simp

FIRST = (
    "Question: Among users 12345, 67890 and 11111, how many questions are about billing?\n\n"
    "Views:\n- context: 50 rows\n  columns: user_id (int64), question (string)\n\n"
    "Text column: question"
)


def _root(system: str = SYSTEM_PROMPT) -> list[dict[str, Any]]:
    return [{"role": "system", "content": system}, {"role": "user", "content": FIRST}]


def _post(client: openai.OpenAI, **body: Any) -> dict[str, Any]:
    response = client.post("/chat/completions", cast_to=object, body={"model": "sim-1", **body})
    assert isinstance(response, dict)
    return response


def test_the_simulator_knows_the_root_prompt() -> None:
    assert simp.ROOT_PROMPT_MARKER == ROOT_PROMPT_MARKER
    for protocol in ("tools", "json", "text"):
        for compact in (True, False):
            text = system_prompt(protocol, compact=compact, tool_lines=tool_lines(), example=[])
            assert text.startswith(ROOT_PROMPT_MARKER)


def test_no_schema_we_send_has_a_limit_above_64() -> None:
    assert over_limit(TOOLS) == []
    assert over_limit(ACTION_SCHEMA) == [] and over_limit(ANSWER_SCHEMA) == []
    for spec in (
        ClassifySpec("q", ("a", "b")),
        ClassifySpec("q", tuple(f"l{i}" for i in range(100)), batch_size=1),
        MapSpec("q", "count words", output_type="integer"),
    ):
        assert over_limit(reply_schema(spec)) == []
    # the real limits are still there, for validation after parsing
    assert any("maxLength=2000" in p for p in over_limit(TOOL_SPECS))
    assert SCHEMA_LIMIT == 64


def test_grammar_mode_refuses_a_long_limit_like_llama_cpp(
    sim_factory: Callable[..., Any], client_for: Callable[..., openai.OpenAI]
) -> None:
    client = client_for(sim_factory(grammar_limit=64, structured_mode="json_object"))
    bad = {"type": "object", "properties": {"q": {"type": "string", "maxLength": 2000}}}
    with pytest.raises(openai.InternalServerError, match="repetitions"):
        _post(client, messages=_root(), response_format={"type": "json_object", "schema": bad})
    with pytest.raises(openai.InternalServerError, match="maxLength=4000"):
        _post(client, messages=_root(), tools=TOOL_SPECS)
    ok = {"type": "object", "properties": {"q": {"type": "string", "maxLength": 64}}}
    reply = _post(
        client,
        messages=[{"role": "user", "content": "hi"}],
        response_format={"type": "json_object", "schema": ok},
    )
    assert reply["choices"][0]["message"]["content"]
    for schema in (ACTION_SCHEMA, ANSWER_SCHEMA):
        reply = _post(
            client, messages=_root(), response_format={"type": "json_object", "schema": schema}
        )
        assert json.loads(reply["choices"][0]["message"]["content"])["tool"]
    assert _post(client, messages=_root(), tools=TOOLS)["choices"][0]["message"]["tool_calls"]


def test_tools_rejected_mode_answers_400_naming_tools(
    sim_factory: Callable[..., Any], client_for: Callable[..., openai.OpenAI]
) -> None:
    client = client_for(sim_factory(tool_mode="rejected"))
    with pytest.raises(openai.BadRequestError, match="tools") as caught:
        _post(client, messages=_root(), tools=TOOLS)
    assert caught.value.status_code == 400
    reply = _post(client, messages=_root())  # no tools: the text protocol
    assert "<tool_call>" in reply["choices"][0]["message"]["content"]


@pytest.mark.parametrize("style", ["tag", "bare", "fenced"])
def test_text_mode_writes_calls_in_the_reply(
    sim_factory: Callable[..., Any], client_for: Callable[..., openai.OpenAI], style: str
) -> None:
    client = client_for(sim_factory(tool_mode="text", text_style=style, text_several=True))
    message = _post(client, messages=_root(), tools=TOOLS)["choices"][0]["message"]
    assert not message.get("tool_calls")
    text = message["content"]
    assert not text.lstrip().startswith(("{", "<", "`"))  # prose around the actions
    parsed = parse_actions(text)
    names = [a.name for a in parsed.actions]
    assert names == ["peek", "filter", "classify"]  # several per reply, in plan order
    assert simp.written_actions(text) == [(a.name, json.loads(a.arguments)) for a in parsed.actions]


def test_cycle_style_changes_with_the_turn() -> None:
    assert [simp.text_style("cycle", t) for t in range(4)] == ["tag", "bare", "fenced", "tag"]


def test_json_protocol_reply_is_one_action_object(
    sim: Any, client_for: Callable[..., openai.OpenAI]
) -> None:
    reply = _post(
        client_for(sim),
        messages=_root(),
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "rlm_action", "schema": ACTION_SCHEMA},
        },
    )
    value = json.loads(reply["choices"][0]["message"]["content"])
    assert value == {"tool": "peek", "arguments": {"view": "context", "n": 3}}
    forced = _post(
        client_for(sim),
        messages=_root(),
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "rlm_action", "schema": ANSWER_SCHEMA},
        },
    )
    assert json.loads(forced["choices"][0]["message"]["content"])["tool"] == "answer"


def test_crash_after_n_root_requests(
    sim_factory: Callable[..., Any], client_for: Callable[..., openai.OpenAI]
) -> None:
    client = client_for(sim_factory(fail_root_after=1))
    assert _post(client, messages=_root(), tools=TOOLS)
    with pytest.raises(openai.InternalServerError, match="crashed"):
        _post(client, messages=_root(), tools=TOOLS)
    # sub-calls still work: only the root role is hit
    assert _post(client, messages=[{"role": "user", "content": "Labels: a, b\nText: hi"}])


@pytest.mark.parametrize(
    ("knob", "value"),
    [("tool_mode", "xml"), ("text_style", "yaml"), ("grammar_limit", -1), ("fail_root_after", "x")],
)
def test_bad_protocol_knobs_are_refused(knob: str, value: Any) -> None:
    with pytest.raises(InputError, match=knob):
        SimConfig(**{knob: value})
