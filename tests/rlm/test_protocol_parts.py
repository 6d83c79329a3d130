"""The pieces of the root protocols: wire schemas, action schemas, rejection detection,
rewriting native history as text, remembered modes in the cache file."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from rlm_pipeline.rlm.actions import parse_actions
from rlm_pipeline.rlm.conversation import Conversation
from rlm_pipeline.rlm.limits import over_limit, wire_schema
from rlm_pipeline.rlm.loop import ACTION_SCHEMA, ANSWER_SCHEMA, _as_text_history
from rlm_pipeline.rlm.prompts import results_message
from rlm_pipeline.rlm.protocol import (
    EXAMPLES,
    action_text,
    is_tools_rejection,
    repeat_hint,
    signature,
)
from rlm_pipeline.rlm.tools import TOOL_NAMES, TOOL_SPECS, TOOLS, ToolError, parse_arguments
from rlm_pipeline.sim.protocols import split_results, written_actions


def test_wire_schemas_drop_only_limits_above_64() -> None:
    assert over_limit(TOOLS) == []
    peek = next(t for t in TOOLS if t["function"]["name"] == "peek")
    assert peek["function"]["parameters"]["properties"]["columns"]["maxItems"] == 50
    classify = next(t for t in TOOLS if t["function"]["name"] == "classify")
    labels = classify["function"]["parameters"]["properties"]["labels"]
    assert labels["minItems"] == 2 and labels["items"] == {"type": "string", "minLength": 1}
    assert wire_schema(TOOL_SPECS[0]) == TOOLS[0]  # peek has nothing above the limit


def test_real_limits_still_hold_after_parsing() -> None:
    with pytest.raises(ToolError, match="query: 9000 characters, must be at most 8000 characters"):
        parse_arguments("sql", json.dumps({"query": "SELECT 1 " * 1000, "name": "x"}))
    with pytest.raises(ToolError, match="explanation"):
        parse_arguments("answer", json.dumps({"value": 1, "explanation": "e" * 2001}))
    assert parse_arguments("answer", json.dumps({"value": 1, "explanation": "e" * 2000}))


@pytest.mark.parametrize("name", TOOL_NAMES)
def test_every_example_fits_its_tool_and_the_action_schema(name: str) -> None:
    args = EXAMPLES[name]
    assert parse_arguments(name, json.dumps(args)) == args
    jsonschema.validate({"tool": name, "arguments": args}, ACTION_SCHEMA)
    assert signature(name).startswith(f"{name}(")
    # written for the text protocol, the parser reads exactly this action back
    parsed = parse_actions(action_text("text", name, args))
    assert [(a.name, json.loads(a.arguments)) for a in parsed.actions] == [(name, args)]


def test_answer_schema_allows_only_answer() -> None:
    jsonschema.validate({"tool": "answer", "arguments": {"value": 3}}, ANSWER_SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"tool": "peek", "arguments": EXAMPLES["peek"]}, ANSWER_SCHEMA)


@pytest.mark.parametrize(
    ("status", "message", "expected"),
    [
        (400, "HTTP 400 from http://127.0.0.1:1/v1: 'tools' is not supported", True),
        (400, '"auto" tool choice requires --enable-auto-tool-choice', True),
        (422, "tool_choice: unknown variant", True),
        (400, "This model's maximum context length is 8192 tokens", False),
        (401, "tools: invalid key", False),
        (500, "failed to parse grammar for tools", False),
        (500, "tools param requires --jinja flag", True),
        (500, "Internal server error", False),
        (None, "tools", False),
    ],
)
def test_tools_rejection_is_a_4xx_naming_tools(
    status: int | None, message: str, expected: bool
) -> None:
    assert is_tools_rejection(status, message) is expected


def test_repeat_hints_are_targeted() -> None:
    assert "not an action" in repeat_hint("exec", "unknown tool 'exec'", "text")
    assert "<tool_call>" in repeat_hint("peek", "unknown view 'x'; views are: context", "text")
    assert '{"tool": "classify"' in repeat_hint("classify", "bad arguments for classify", "json")
    assert "column" in repeat_hint("classify", "unknown column 'q'; columns are: a", "tools")
    assert "SELECT" in repeat_hint("sql", "expression rejected", "tools")


def test_native_history_is_rewritten_as_text_after_a_switch() -> None:
    conv = Conversation("sys", "Question: q", budget_tokens=10_000)
    conv.add(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "a",
                    "type": "function",
                    "function": {"name": "peek", "arguments": '{"view": "context", "n": 2}'},
                },
                {"id": "b", "type": "function", "function": {"name": "sql", "arguments": "{bad"}},
            ],
        },
        {"role": "tool", "tool_call_id": "a", "content": "view `context`: first 2 rows"},
        {"role": "tool", "tool_call_id": "b", "content": "error: arguments are not valid JSON"},
    )
    conv.add({"role": "user", "content": "Please continue."})
    _as_text_history(conv, "text")
    roles = [m["role"] for m in conv.messages_for_call(0)]
    assert roles == ["system", "user", "assistant", "user", "user"]
    assert not any("tool_calls" in m or m["role"] == "tool" for m in conv.messages_for_call(0))
    assistant, results = conv.groups[0]
    assert written_actions(assistant["content"])[0] == ("peek", {"view": "context", "n": 2})
    assert split_results(results["content"]) == [
        "view `context`: first 2 rows",
        "error: arguments are not valid JSON",
    ]


def test_results_message_round_trips_through_the_simulator_reader() -> None:
    text = results_message([("peek", "a\nb"), ("filter", "view `s`: 3 rows")], ["1 dropped"])
    assert split_results(text) == ["a\nb", "view `s`: 3 rows\nnote: 1 dropped"]


def test_cache_file_remembers_modes_per_endpoint_and_model(tmp_path: Path) -> None:
    from rlm_pipeline.llm.cache import ResponseCache

    path = tmp_path / "c.sqlite"
    with ResponseCache(path) as cache:
        cache.put_mode("rlm_protocol", "http://127.0.0.1:1/v1", "m", "json")
        cache.put_mode("rlm_protocol", "http://127.0.0.1:1/v1", "m", "text")  # replaced
        cache.put_mode("rlm_protocol", "http://127.0.0.1:2/v1", "m", "json")
    with ResponseCache(path) as cache:  # another connection, as another process would
        assert cache.get_mode("rlm_protocol", "http://127.0.0.1:1/v1", "m") == "text"
        assert cache.get_mode("rlm_protocol", "http://127.0.0.1:2/v1", "m") == "json"
        assert cache.get_mode("rlm_protocol", "http://127.0.0.1:1/v1", "other") is None
        assert len(cache) == 0  # no reply was stored
