"""The simulator's ``strict`` structured mode refuses what OpenAI's strict mode refuses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import openai
import pytest

from rlm_pipeline.ops.prompts import reply_name, reply_schema
from rlm_pipeline.ops.spec import ClassifySpec, MapSpec
from rlm_pipeline.rlm.protocol import ACTION_SCHEMA_NAME, action_schema
from rlm_pipeline.sim.strict import strict_refusal

CLOSED = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"],
          "additionalProperties": False}


@pytest.mark.parametrize(
    ("schema", "words"),
    [
        ({"anyOf": [CLOSED]}, "type: \"object\""),
        ({**CLOSED, "additionalProperties": True}, "additionalProperties"),
        ({**CLOSED, "required": []}, "Missing 'a'"),
        ({**CLOSED, "properties": {"a": {}}}, "'type' key"),
        ({**CLOSED, "properties": {"a": {"type": "array", "items": {}}}}, "'type' key"),
    ],
)
def test_strict_rules(schema: dict[str, Any], words: str) -> None:
    refusal = strict_refusal(schema, "r")
    assert refusal is not None and words in refusal and "response_format" in refusal
    assert strict_refusal(CLOSED, "r") is None


def test_the_action_schema_breaks_the_strict_rules() -> None:
    assert strict_refusal(action_schema(), ACTION_SCHEMA_NAME) is not None


@pytest.mark.parametrize("batch_size", [1, 16])
def test_every_sub_call_schema_passes_the_strict_rules(batch_size: int) -> None:
    specs: list[Any] = [ClassifySpec("q", ("a", "b"), batch_size=batch_size)]
    specs += [MapSpec("q", "Count", output_type=t, batch_size=batch_size)
              for t in ("string", "integer", "number", "boolean")]
    for spec in specs:
        assert strict_refusal(reply_schema(spec), reply_name(spec)) is None, spec


def test_strict_mode_answers_400_for_a_strict_schema_it_refuses(
    sim_factory: Callable[..., Any], client_for: Callable[..., openai.OpenAI]
) -> None:
    client = client_for(sim_factory(structured_mode="strict"))
    messages = [{"role": "user", "content": "Classify the row.\nRows:\n{\"id\": 0, \"text\": \"x\"}"}]

    def post(schema: dict[str, Any], strict: bool) -> Any:
        fmt = {"type": "json_schema", "json_schema": {"name": "r", "schema": schema,
                                                      "strict": strict}}
        return client.post("/chat/completions", cast_to=object,
                           body={"model": "sim-1", "messages": messages, "response_format": fmt})

    with pytest.raises(openai.BadRequestError, match="response_format") as caught:
        post({"anyOf": [CLOSED]}, strict=True)
    assert caught.value.status_code == 400
    assert post({"anyOf": [CLOSED]}, strict=False)["choices"]  # not strict: accepted
    assert post(CLOSED, strict=True)["choices"]
