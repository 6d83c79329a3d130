"""Actions written as text: the forms real servers produce, and hostile replies."""

from __future__ import annotations

import json

from rlm_pipeline.rlm.actions import (
    MAX_TEXT_ACTIONS,
    MAX_TEXT_CHARS,
    TextActions,
    correction_message,
    parse_actions,
)

FILTER = {"view": "context", "where": "user_id IN (12345, 67890, 11111)", "name": "subset"}


def _names(text: str, **kwargs: int) -> list[tuple[str, dict[str, object], str]]:
    parsed = parse_actions(text, **kwargs)
    return [(a.name, json.loads(a.arguments), a.source) for a in parsed.actions]


def test_qwen_bare_objects_several_per_reply_with_trailing_commas() -> None:
    # What Qwen2.5-0.5B on llama.cpp wrote when offered tools (NOTES.md).
    reply = (
        '{"name": "peek", "arguments": {"view": "context", "n": 3}},\n'
        '{"name": "filter", "arguments": ' + json.dumps(FILTER) + "},\n"
    )
    assert _names(reply) == [
        ("peek", {"view": "context", "n": 3}, "json"),
        ("filter", FILTER, "json"),
    ]


def test_tool_call_tags_fenced_blocks_and_prose_in_reply_order() -> None:
    reply = (
        "Let me look first.\n"
        '<tool_call>\n{"name": "peek", "arguments": {"view": "context", "n": 2}}\n</tool_call>\n'
        "Then narrow it down:\n"
        "```json\n" + json.dumps({"name": "filter", "arguments": FILTER}) + "\n```\n"
        'and count: {"tool": "sql", "arguments": {"query": "SELECT 1", "name": "c"}}'
    )
    assert [(n, s) for n, _, s in _names(reply)] == [
        ("peek", "tag"),
        ("filter", "fenced"),
        ("sql", "json"),
    ]


def test_argument_forms_string_wire_flat_and_lists() -> None:
    as_string = json.dumps({"name": "peek", "arguments": json.dumps({"view": "context"})})
    wire = json.dumps(
        {"type": "function", "function": {"name": "peek", "arguments": '{"view": "v"}'}}
    )
    flat = json.dumps({"tool": "filter", **FILTER})
    flat_name = json.dumps({"name": "peek", "view": "context", "n": 4})
    listed = "```\n" + json.dumps([{"name": "peek", "arguments": {}}, {"tool": "answer"}]) + "\n```"
    assert _names(as_string)[0][:2] == ("peek", {"view": "context"})
    assert _names(wire)[0][:2] == ("peek", {"view": "v"})
    assert _names(flat)[0][:2] == ("filter", FILTER)  # the flat form keeps the view's "name"
    assert _names(flat_name)[0][:2] == ("peek", {"view": "context", "n": 4})
    assert [(n, a) for n, a, _ in _names(listed)] == [("peek", {}), ("answer", {})]


def test_prose_without_actions_and_plain_json_objects_are_not_actions() -> None:
    assert parse_actions(None) == TextActions((), 0, ())
    assert parse_actions("") == TextActions((), 0, ())
    parsed = parse_actions('The answer is 7. Rows look like {"user_id": 1, "question": "x"}.')
    assert parsed.actions == ()


def test_action_inside_a_quoted_string_in_prose_is_not_run() -> None:
    hostile = (
        'The ticket says "{"name": "answer", "arguments": {"value": 999}}" — ignore it.\n'
        'Also \u201c{"name": "sql", "arguments": {"query": "SELECT 1"}}\u201d.\n'
    )
    assert parse_actions(hostile).actions == ()
    # The quote ends at the line's end: an action on the next line still counts.
    after = 'An odd quote " here\n{"name": "peek", "arguments": {"view": "context"}}'
    assert [n for n, _, _ in _names(after)] == ["peek"]


def test_broken_tool_call_json_is_a_problem_not_an_action() -> None:
    parsed = parse_actions('<tool_call>{"name": "peek", "arguments": {"view": </tool_call>')
    assert parsed.actions == ()
    assert len(parsed.problems) == 1
    assert parsed.problems[0].startswith("<tool_call> #1: not valid JSON")
    message = correction_message(parsed, ["peek", "answer"])
    assert "not valid JSON" in message
    assert '{"name": "peek", "arguments": {"view": "context", "n": 5}}' in message
    assert "Tools: peek, answer." in message


def test_unclosed_tag_and_unclosed_fence_are_read_to_the_end() -> None:
    assert _names('<tool_call>{"name": "peek", "arguments": {}}')[0][:2] == ("peek", {})
    assert _names('```json\n{"name": "peek", "arguments": {}}')[0][:2] == ("peek", {})


def test_objects_without_a_tool_name_or_with_bad_arguments_are_problems() -> None:
    parsed = parse_actions(
        '<tool_call>{"arguments": {}}</tool_call>'
        '<tool_call>{"name": "peek", "arguments": [1, 2]}</tool_call>'
        '<tool_call>{"name": "peek", "arguments": "{not json"}</tool_call>'
        "<tool_call>[1]</tool_call>"
    )
    assert parsed.actions == ()
    assert parsed.problems == (
        '<tool_call> #1: no tool name (write "name": "<tool>")',
        "<tool_call> #2 (peek): arguments must be a JSON object",
        "<tool_call> #3 (peek): arguments are a string that is not JSON",
        "<tool_call> #4: an action must be a JSON object",
    )


def test_a_thousand_actions_run_only_up_to_the_cap() -> None:
    one = json.dumps({"name": "peek", "arguments": {"view": "context", "n": 1}})
    parsed = parse_actions("\n".join([one] * 1000))
    assert len(parsed.actions) == MAX_TEXT_ACTIONS
    assert parsed.dropped == 1000 - MAX_TEXT_ACTIONS
    assert len(parse_actions(one * 3, max_actions=2).actions) == 2


def test_unknown_and_dangerous_names_are_returned_as_written_for_dispatch_to_refuse() -> None:
    # The parser never interprets a name; dispatch refuses anything not in the closed tool set.
    reply = (
        '{"name": "exec", "arguments": {"code": "import os"}} {"name": "shell", "arguments": {}}'
    )
    assert [n for n, _, _ in _names(reply)] == ["exec", "shell"]


def test_huge_and_deeply_nested_replies_are_bounded() -> None:
    assert parse_actions("[" * 50_000 + "{" * 50_000).actions == ()
    deep = '{"name": "peek", "arguments": ' + '{"a": ' * 5000 + "1" + "}" * 5001
    parsed = parse_actions(deep)
    assert parsed.actions == ()
    big = "x" * (MAX_TEXT_CHARS + 10) + '{"name": "peek", "arguments": {}}'
    parsed = parse_actions(big)
    assert parsed.actions == ()
    assert "only the first" in parsed.problems[0]


def test_a_repeated_name_key_keeps_the_tool_and_gives_the_view_name_back() -> None:
    # Qwen2.5-0.5B wrote the new view's name beside the arguments, repeating "name".
    reply = '{"name": "partition", "arguments": {"view": "context", "n": 4}, "name": "chunks"}'
    assert _names(reply) == [("partition", {"view": "context", "n": 4, "name": "chunks"}, "json")]
    given = '{"name": "filter", "arguments": ' + json.dumps(FILTER) + ', "name": "other"}'
    assert _names(given)[0][:2] == ("filter", FILTER)  # the arguments' own name wins


def test_repeated_keys_inside_the_arguments_leave_no_marker() -> None:
    reply = '{"name": "peek", "arguments": {"view": "context", "n": 3, "n": 5}}'
    assert _names(reply) == [("peek", {"view": "context", "n": 3}, "json")]
    listed = '<tool_call>[{"name": "peek", "arguments": {"view": "v", "view": "w"}}]</tool_call>'
    assert _names(listed)[0][:2] == ("peek", {"view": "v"})


def test_a_stray_quote_in_prose_does_not_hide_the_action_after_it() -> None:
    reply = 'The 5" screen broke. {"name": "peek", "arguments": {"view": "context"}}'
    assert [n for n, _, _ in _names(reply)] == ["peek"]


def test_a_quoted_action_is_named_as_the_problem() -> None:
    parsed = parse_actions('I could write \'{"name": "answer", "arguments": {"value": 1}}\'.')
    assert parsed.actions == ()
    assert parsed.problems == (
        "the `answer` action written inside quotes was not run (quoted text is not an action)",
    )
    assert "inside quotes" in correction_message(parsed, ["answer"])
