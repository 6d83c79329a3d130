"""The structured_mode switch mimics OpenAI/vLLM, llama.cpp, and servers with neither."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from rlm_pipeline.llm.structured import STRUCTURED_PROMPT_PREFIX

from .helpers import batch_schema, json_schema_format, raw_post, rows_messages

TEXTS = ["Can I get a refund?", "Error 500 on the dashboard"]
EXPECTED = ["billing", "technical"]


def _labels(response: Any) -> list[str]:
    content = response.json()["choices"][0]["message"]["content"]
    return [r["label"] for r in json.loads(content)["results"]]


def _body(response_format: dict[str, Any] | None, schema_in_prompt: bool = False) -> dict[str, Any]:
    messages = rows_messages(TEXTS)
    if schema_in_prompt:
        messages[0]["content"] += "\n" + STRUCTURED_PROMPT_PREFIX + json.dumps(batch_schema())
    body: dict[str, Any] = {"model": "sim-1", "messages": messages}
    if response_format is not None:
        body["response_format"] = response_format
    return body


JSON_SCHEMA = json_schema_format(batch_schema())
JSON_OBJECT = {"type": "json_object", "schema": batch_schema()}


@pytest.mark.parametrize("response_format", [JSON_SCHEMA, JSON_OBJECT])
def test_json_schema_mode_accepts_both(sim_factory: Callable[..., Any],
                                       response_format: dict[str, Any]) -> None:
    sim = sim_factory(structured_mode="json_schema")
    assert _labels(raw_post(sim, _body(response_format))) == EXPECTED


def test_json_object_mode_rejects_json_schema_like_llama_cpp(
    sim_factory: Callable[..., Any],
) -> None:
    sim = sim_factory(structured_mode="json_object")
    response = raw_post(sim, _body(JSON_SCHEMA))
    assert response.status_code == 500
    assert "response_format" in response.text
    assert "Input should be 'text' or 'json_object'" in response.text
    assert _labels(raw_post(sim, _body(JSON_OBJECT))) == EXPECTED
    no_schema = {"type": "json_object"}
    assert _labels(raw_post(sim, _body(no_schema, schema_in_prompt=True))) == EXPECTED
    assert sim.stats()["errors_by_status"] == {"500": 1}


@pytest.mark.parametrize("response_format", [JSON_SCHEMA, JSON_OBJECT, {"type": "json_object"}])
def test_text_mode_rejects_any_response_format(sim_factory: Callable[..., Any],
                                               response_format: dict[str, Any]) -> None:
    sim = sim_factory(structured_mode="text")
    response = raw_post(sim, _body(response_format))
    assert response.status_code == 400
    assert "response_format" in response.json()["error"]["message"]
    assert response.json()["error"]["param"] == "response_format"


def test_text_mode_finds_the_schema_in_the_prompt(sim_factory: Callable[..., Any]) -> None:
    sim = sim_factory(structured_mode="text")
    response = raw_post(sim, _body(None, schema_in_prompt=True))
    assert response.status_code == 200
    assert _labels(response) == EXPECTED
    assert sim.stats()["by_kind"] == {"classify_batch": 1}
