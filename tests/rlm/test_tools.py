"""Tool schemas and argument checking: every model mistake becomes a ToolError."""

from __future__ import annotations

import pytest

from rlm_pipeline.rlm.tools import (
    TOOL_NAMES,
    TOOLS,
    ToolError,
    check_view_name,
    parse_arguments,
)


def test_tool_set_is_the_designed_one() -> None:
    assert set(TOOL_NAMES) == {
        "peek", "filter", "partition", "sql", "classify", "llm_map", "extract", "aggregate",
        "recurse", "answer",
    }  # fmt: skip  (DESIGN.md's tools table)
    for tool in TOOLS:
        params = tool["function"]["parameters"]
        assert params["type"] == "object"
        assert params["additionalProperties"] is False
        assert set(params["required"]) <= set(params["properties"])


@pytest.mark.parametrize(
    ("name", "raw", "fragment"),
    [
        ("exec", "{}", "unknown tool 'exec'"),
        ("", "{}", "unknown tool ''"),
        ("peek", '{"view": "context", "n": 3', "not valid JSON"),
        ("peek", "view=context", "not valid JSON"),
        ("peek", "[1, 2]", "one JSON object"),
        ("peek", '"context"', "one JSON object"),
        ("filter", '{"view": "context"}', "required"),
        ("peek", '{"view": "context", "n": "lots"}', "n:"),
        ("peek", '{"view": "context", "n": 500}', "maximum"),
        ("peek", '{"view": "context", "n": 2, "shell": "rm -rf /"}', "shell"),
        ("classify", '{"view": "v", "column": "c", "labels": ["a"], "name": "x"}', "labels"),
        (
            "llm_map",
            '{"view": "v", "column": "c", "instruction": "x", "name": "y", '
            '"output_type": "python"}',
            "output_type",
        ),
        ("answer", '{"explanation": "no value"}', "value"),
    ],
)
def test_bad_arguments_are_tool_errors(name: str, raw: str, fragment: str) -> None:
    with pytest.raises(ToolError) as info:
        parse_arguments(name, raw)
    assert fragment in str(info.value)


def test_good_arguments_pass_through() -> None:
    args = parse_arguments("answer", '{"value": {"12345": 2}, "explanation": "e"}')
    assert args == {"value": {"12345": 2}, "explanation": "e"}
    assert parse_arguments("answer", '{"value": null}') == {"value": None}


@pytest.mark.parametrize(
    "name", ["/tmp/x", "../etc/passwd", "a b", "1abc", "_rlm_keys", "x" * 64, "context", ""]
)
def test_view_names_must_be_plain_identifiers(name: str) -> None:
    with pytest.raises(ToolError):
        check_view_name(name)


def test_view_name_ok() -> None:
    check_view_name("by_user_2")
