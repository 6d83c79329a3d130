"""Each kind of request the simulator answers, through the real openai client."""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Callable
from typing import Any

import openai
import pytest

from rlm_pipeline.sim import intended_label, map_value

from .helpers import (
    TICKET_LABELS,
    batch_schema,
    json_schema_format,
    map_batch_schema,
    rows_messages,
)

TEXTS = [
    "I was charged twice for my Pro plan in March.",
    "The app crashes every time I open the dashboard on my iPhone.",
    "I forgot my password and the reset email never arrives.",
    "Do you have an office in Lisbon? I would like to visit.",
    "Is this thing on?",
]


def _ask(client: Any, messages: list[dict[str, Any]], **kwargs: Any) -> Any:
    return client.chat.completions.create(model="sim-1", messages=messages, **kwargs)


def test_classify_batch(sim: Any, client_for: Callable[..., Any]) -> None:
    reply = _ask(client_for(sim), rows_messages(TEXTS),
                 response_format=json_schema_format(batch_schema()))
    results = json.loads(reply.choices[0].message.content)["results"]
    assert [r["id"] for r in results] == list(range(len(TEXTS)))
    assert [r["label"] for r in results] == [intended_label(t, TICKET_LABELS) for t in TEXTS]
    assert [r["label"] for r in results][:4] == ["billing", "technical", "account", "other"]
    assert reply.choices[0].finish_reason == "stop"
    assert reply.object == "chat.completion"


def test_classify_batch_uses_the_schema_labels(sim: Any, client_for: Callable[..., Any]) -> None:
    labels = ["refund_request", "bug_report"]
    reply = _ask(client_for(sim), rows_messages(["please refund me", "found a bug"], labels=labels),
                 response_format=json_schema_format(batch_schema(labels)))
    results = json.loads(reply.choices[0].message.content)["results"]
    assert [r["label"] for r in results] == ["refund_request", "bug_report"]


def test_classify_single(sim: Any, client_for: Callable[..., Any]) -> None:
    schema = {"type": "object", "properties": {"label": {"enum": TICKET_LABELS}},
              "required": ["label"]}
    reply = _ask(client_for(sim), rows_messages([TEXTS[1]]),
                 response_format=json_schema_format(schema))
    assert json.loads(reply.choices[0].message.content) == {"label": "technical"}
    assert sim.stats()["by_kind"] == {"classify_single": 1}


@pytest.mark.parametrize("output_type", ["integer", "boolean", "number", "string"])
def test_map_batch(sim: Any, client_for: Callable[..., Any], output_type: str) -> None:
    messages = rows_messages(TEXTS, instruction="Count the words")
    reply = _ask(client_for(sim), messages,
                 response_format=json_schema_format(map_batch_schema(output_type)))
    results = json.loads(reply.choices[0].message.content)["results"]
    assert results == [{"id": i, "value": map_value(t, output_type)} for i, t in enumerate(TEXTS)]
    stats = sim.stats()
    assert stats["rows_mapped"] == len(TEXTS) and stats["rows_classified"] == 0


def test_map_single(sim: Any, client_for: Callable[..., Any]) -> None:
    schema = {"type": "object", "properties": {"value": {"type": ["integer", "null"]}}}
    reply = _ask(client_for(sim), rows_messages(["one two three four"], instruction="count"),
                 response_format=json_schema_format(schema))
    assert json.loads(reply.choices[0].message.content) == {"value": 4}


def test_json_object_with_schema_in_prompt(sim: Any, client_for: Callable[..., Any]) -> None:
    from rlm_pipeline.llm.structured import STRUCTURED_PROMPT_PREFIX

    messages = rows_messages(TEXTS[:2])
    messages[0]["content"] += "\n" + STRUCTURED_PROMPT_PREFIX + json.dumps(batch_schema())
    reply = _ask(client_for(sim), messages, response_format={"type": "json_object"})
    labels = [r["label"] for r in json.loads(reply.choices[0].message.content)["results"]]
    assert labels == ["billing", "technical"]


def test_docetl_style_forced_tool_call(sim: Any, client_for: Callable[..., Any]) -> None:
    tool = {"type": "function", "function": {
        "name": "send_output", "description": "Send output back to the user",
        "parameters": {"type": "object", "properties": {
            "category": {"type": "string", "enum": TICKET_LABELS},
            "n_words": {"type": "integer"}}, "required": ["category", "n_words"]}}}
    text = "Where can I download the invoice for May?"
    messages = [{"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": f"Classify this support ticket: {text}"}]
    reply = _ask(client_for(sim), messages, tools=[tool],
                 tool_choice={"type": "function", "function": {"name": "send_output"}})
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "send_output"
    arguments = json.loads(call.function.arguments)
    assert arguments["category"] == "billing"
    assert arguments["n_words"] == map_value(f"Classify this support ticket: {text}", "integer")
    assert sim.stats()["by_kind"] == {"structured_tool": 1}


def test_single_required_tool_with_label_property(sim: Any, client_for: Callable[..., Any]) -> None:
    tool = {"type": "function", "function": {"name": "emit", "parameters": {
        "type": "object", "properties": {"label": {"type": "string"}}}}}
    messages = [{"role": "user", "content":
                 "Pick one of: billing, technical, account, other.\nTicket: my app crashes"}]
    reply = _ask(client_for(sim), messages, tools=[tool], tool_choice="required")
    call = reply.choices[0].message.tool_calls[0]
    assert json.loads(call.function.arguments) == {"label": "technical"}
    assert sim.stats()["rows_classified"] == 1


def test_lotus_style_plain_prompt_gets_a_bare_label(sim: Any,
                                                     client_for: Callable[..., Any]) -> None:
    messages = [
        {"role": "system", "content": "The user will provide an instruction and some relevant "
         "context.\nYour job is to answer the user's instruction given the context."},
        {"role": "user", "content": "Context:\n[question]: «My account is locked after too many "
         "login attempts.»\n\nInstruction: Classify the question into one of: billing, technical,"
         " account, other. Answer with only the label."},
    ]
    reply = _ask(client_for(sim), messages)
    assert reply.choices[0].message.content == "account"
    assert sim.stats()["by_kind"] == {"classify_plain": 1}


def _install_planner(monkeypatch: pytest.MonkeyPatch, **functions: Any) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    module = types.ModuleType("rlm_pipeline.sim.planner")
    for name, function in functions.items():
        def wrapped(body: dict[str, Any], _f: Any = function) -> Any:
            seen.append(body)
            return _f(body)
        setattr(module, name, wrapped)
    monkeypatch.setitem(sys.modules, "rlm_pipeline.sim.planner", module)
    return seen


ANSWER_TOOL = {"type": "function", "function": {"name": "answer", "parameters": {
    "type": "object", "properties": {"value": {}}, "required": ["value"]}}}


def test_root_role_goes_to_the_planner(sim: Any, client_for: Callable[..., Any],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    message = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "answer", "arguments": {"value": 42}}}]}
    seen = _install_planner(monkeypatch, respond=lambda body: message)
    reply = _ask(client_for(sim), [{"role": "user", "content": "How many?"}], tools=[ANSWER_TOOL])
    assert len(seen) == 1 and seen[0]["tools"][0]["function"]["name"] == "answer"
    call = reply.choices[0].message.tool_calls[0]
    assert call.function.name == "answer" and json.loads(call.function.arguments) == {"value": 42}
    assert reply.choices[0].finish_reason == "tool_calls"
    assert reply.usage.completion_tokens > 0
    assert sim.stats()["by_kind"] == {"root": 1}


def test_plain_chat_goes_to_the_planner(sim: Any, client_for: Callable[..., Any],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    _install_planner(monkeypatch, respond_plain=lambda body: "There are 3 billing tickets.")
    reply = _ask(client_for(sim), [{"role": "user", "content": "Summarise these rows"}])
    assert reply.choices[0].message.content == "There are 3 billing tickets."
    assert sim.stats()["by_kind"] == {"plain": 1}


def test_missing_planner_gives_501(sim: Any, client_for: Callable[..., Any],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rlm_pipeline.sim.planner", None)
    with pytest.raises(openai.APIStatusError) as info:
        _ask(client_for(sim), [{"role": "user", "content": "How many?"}], tools=[ANSWER_TOOL])
    assert info.value.status_code == 501
    assert "planner" in info.value.message


def test_max_tokens_cuts_the_reply(sim: Any, client_for: Callable[..., Any]) -> None:
    reply = _ask(client_for(sim), rows_messages(TEXTS), max_tokens=5,
                 response_format=json_schema_format(batch_schema()))
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage.completion_tokens == 5
    with pytest.raises(ValueError):
        json.loads(reply.choices[0].message.content)


def test_forced_answer_goes_to_the_planner_not_the_mapper(
    sim: Any, client_for: Callable[..., Any]
) -> None:
    from rlm_pipeline.rlm.loop import FORCE_ANSWER_CHOICE
    from rlm_pipeline.rlm.tools import TOOLS

    first = ("Question: How many questions are about billing?\n\nViews:\n- context: 5 rows\n"
             "  columns: user_id (int64), question (string)\n")
    reply = _ask(client_for(sim), [{"role": "user", "content": first}], tools=TOOLS,
                 tool_choice=FORCE_ANSWER_CHOICE)
    calls = reply.choices[0].message.tool_calls
    assert [c.function.name for c in calls] == ["answer"]
    # the real planner had computed nothing yet, and says so (a mapper would invent a value)
    assert json.loads(calls[0].function.arguments)["value"] is None
    assert sim.stats()["by_kind"] == {"root": 1}


def test_plain_question_with_label_words_goes_to_the_planner(
    sim: Any, client_for: Callable[..., Any]
) -> None:
    from rlm_pipeline.rlm.prompts import PLAIN_SYSTEM_PROMPT, plain_message

    rows = "\n".join(json.dumps({"question": t}) for t in TEXTS)
    question = ("How many rows are about billing? The categories are billing, technical, "
                "account, other.")
    messages = [{"role": "system", "content": PLAIN_SYSTEM_PROMPT},
                {"role": "user", "content": plain_message(question, "question", rows)}]
    reply = _ask(client_for(sim), messages)
    want = sum(1 for t in TEXTS if intended_label(t, TICKET_LABELS) == "billing")
    assert reply.choices[0].message.content == str(want)  # a count, not a bare label
    assert sim.stats()["by_kind"] == {"plain": 1}
