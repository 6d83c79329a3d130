"""Pure parts of structured output: request building, reply parsing, validation."""

from __future__ import annotations

import json
import threading

import pytest

from rlm_pipeline.errors import InputError, LLMResponseParseError
from rlm_pipeline.llm import structured
from rlm_pipeline.llm.structured import (
    STRUCTURED_PROMPT_PREFIX,
    build_request,
    is_format_rejection,
    known_mode,
    next_mode,
    parse_json_object,
    remember_mode,
    schema_validator,
    validate,
)

SCHEMA = {
    "type": "object",
    "properties": {"label": {"enum": ["billing", "other"]}},
    "required": ["label"],
    "additionalProperties": False,
}


def test_prefix_is_the_published_constant() -> None:
    assert (
        STRUCTURED_PROMPT_PREFIX == "Reply with only a JSON object that matches this JSON Schema: "
    )


def test_build_request_per_mode() -> None:
    messages = [{"role": "system", "content": "You classify."}, {"role": "user", "content": "x"}]
    same, fmt = build_request("json_schema", messages, SCHEMA, "label")
    assert same is messages
    assert fmt == {
        "type": "json_schema",
        "json_schema": {"name": "label", "schema": SCHEMA, "strict": True},
    }
    _, fmt = build_request("json_object", messages, SCHEMA, "label")
    assert fmt == {"type": "json_object", "schema": SCHEMA}
    text_messages, fmt = build_request("text", messages, SCHEMA, "label")
    assert fmt is None
    assert text_messages[0]["content"] == (
        "You classify.\n\n" + STRUCTURED_PROMPT_PREFIX + json.dumps(SCHEMA)
    )
    assert text_messages[1] == messages[1]
    assert messages[0]["content"] == "You classify."  # caller's list untouched


def test_text_mode_adds_a_system_message_when_missing() -> None:
    msgs, _ = build_request("text", [{"role": "user", "content": "x"}], SCHEMA, "n")
    assert msgs[0] == {"role": "system", "content": STRUCTURED_PROMPT_PREFIX + json.dumps(SCHEMA)}
    assert len(msgs) == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"label": "billing"}', {"label": "billing"}),
        ('  \n{"label": "other"}\n', {"label": "other"}),
        ('```json\n{"label": "billing"}\n```', {"label": "billing"}),
        ('Here you go: {"a": {"b": [1, 2]}} hope it helps {"c": 1}', {"a": {"b": [1, 2]}}),
        ('noise {not json} then {"ok": true}', {"ok": True}),
        ('[1, 2] and then {"x": "y"}', {"x": "y"}),
    ],
)
def test_parse_finds_the_first_object(text: str, expected: dict[str, object]) -> None:
    assert parse_json_object(text) == expected


@pytest.mark.parametrize(
    "text",
    ['{"label": "bill', "", "no json here", "[1, 2, 3]", '{"a": 1,}', "{'label': 'billing'}"],
)
def test_parse_never_repairs(text: str) -> None:
    with pytest.raises(LLMResponseParseError) as info:
        parse_json_object(text)
    assert info.value.raw == text


def test_parse_none_content() -> None:
    with pytest.raises(LLMResponseParseError):
        parse_json_object(None)


def test_validate_accepts_and_rejects_with_raw() -> None:
    validate({"label": "billing"}, SCHEMA, raw="r")
    with pytest.raises(LLMResponseParseError) as info:
        validate({"label": "spam"}, SCHEMA, raw='{"label": "spam"}')
    assert info.value.raw == '{"label": "spam"}'
    assert "label" in str(info.value)
    with pytest.raises(LLMResponseParseError):
        validate({}, SCHEMA, raw="{}")


def test_validators_are_compiled_once_per_schema() -> None:
    a = schema_validator(SCHEMA)
    b = schema_validator(json.loads(json.dumps(SCHEMA)))  # equal, different object
    assert a is b
    assert schema_validator({"type": "object", "required": ["z"]}) is not a


def test_invalid_schema_is_an_input_error() -> None:
    with pytest.raises(InputError):
        schema_validator({"type": "no-such-type"})


def test_rejection_detection() -> None:
    assert is_format_rejection(400, "Invalid parameter: response_format json_schema unsupported")
    assert is_format_rejection(422, "json_schema is not allowed")
    assert is_format_rejection(500, "response_format: Input should be 'text' or 'json_object'")
    assert not is_format_rejection(500, "out of memory")
    assert not is_format_rejection(401, "bad key; response_format irrelevant")
    assert next_mode("json_schema") == "json_object"
    assert next_mode("json_object") == "text"
    assert next_mode("text") is None


def test_mode_memory_is_per_endpoint_and_model_and_thread_safe() -> None:
    structured.forget_modes()
    try:
        assert known_mode("http://127.0.0.1:1/v1", "m") is None

        def set_many(i: int) -> None:
            for j in range(200):
                remember_mode(f"http://127.0.0.1:{i + 10}/v1", f"m{j}", "text")

        threads = [threading.Thread(target=set_many, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        remember_mode("http://127.0.0.1:1/v1", "m", "json_object")
        assert known_mode("http://127.0.0.1:1/v1", "m") == "json_object"
        assert known_mode("http://127.0.0.1:1/v1", "other") is None
        assert known_mode("http://127.0.0.1:13/v1", "m199") == "text"
    finally:
        structured.forget_modes()


def test_a_refusal_is_remembered_per_schema_kind() -> None:
    from rlm_pipeline.llm.structured import build_request, schema_kind, strict_problems
    from rlm_pipeline.rlm.protocol import action_schema

    structured.forget_modes()
    try:
        remember_mode("http://127.0.0.1:1/v1", "m", "json_object", "loose")
        assert known_mode("http://127.0.0.1:1/v1", "m", "loose") == "json_object"
        assert known_mode("http://127.0.0.1:1/v1", "m") is None  # strict schemas: unknown yet
    finally:
        structured.forget_modes()
    loose = action_schema()
    assert schema_kind(loose) == "loose" and strict_problems(loose)
    closed = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"],
              "additionalProperties": False}
    for schema, strict in ((loose, False), (closed, True)):
        _, fmt = build_request("json_schema", [{"role": "user", "content": "x"}], schema, "n")
        assert fmt is not None and fmt["json_schema"]["strict"] is strict
