"""The reply schemas sent for each row-wise operator, byte for byte (review item 6).

Every operator's reply schema is built by ``spec_base.row_reply_schema``
(classify and llm_map through ``prompts.reply_schema``).  Schemas are sent to
the server and are part of the response cache's keys, so the bytes below,
recorded before the two builders became one, must not change without a
prompt version bump.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from rlm_pipeline.llm.cache import json_key
from rlm_pipeline.llm.config import LLM
from rlm_pipeline.ops.extract_op import ExtractSpec
from rlm_pipeline.ops.filter_op import FilterSpec
from rlm_pipeline.ops.prompts import PROMPT_VERSION
from rlm_pipeline.ops.spec import ClassifySpec, MapSpec

_BATCH = (
    '{"type": "object", "properties": {"results": {"type": "array", "items": {"type": "object", '
    '"properties": {"id": {"type": "integer"}, %s}, "required": ["id", "%s"], '
    '"additionalProperties": false}}}, "required": ["results"], "additionalProperties": false}'
)
_ROW = (
    '{"type": "object", "properties": {%s}, "required": ["%s"], "additionalProperties": false}'
)
_LABEL = '"label": {"type": "string", "enum": ["billing", "other"]}'
_EXTRACT = (
    '"value": {"type": "object", "properties": {"amount": {"type": ["number", "null"]}, '
    '"plan": {"type": ["string", "null"], "enum": ["Basic", "Pro", null]}, '
    '"when": {"type": ["string", "null"], "format": "date"}}, '
    '"required": ["amount", "plan", "when"], "additionalProperties": false}'
)
_EXTRACT_ONE = (
    '"value": {"type": "object", "properties": {"amount": {"type": ["number", "null"]}}, '
    '"required": ["amount"], "additionalProperties": false}'
)
FIELDS: dict[str, Any] = {"amount": "number", "plan": ["Basic", "Pro"], "when": "date"}

CASES = [
    (ClassifySpec("q", ("billing", "other"), "be brief", batch_size=8), "classify_batch",
     _BATCH % (_LABEL, "label")),
    (ClassifySpec("q", ("billing", "other"), batch_size=1), "classify_row", _ROW % (_LABEL, "label")),
    (MapSpec("q", "summarise", batch_size=8), "llm_map_batch",
     _BATCH % ('"value": {"type": "string"}', "value")),
    (MapSpec("q", "count", "integer", batch_size=1), "llm_map_row",
     _ROW % ('"value": {"type": "integer"}', "value")),
    (MapSpec("q", "score", "number"), "llm_map_batch",
     _BATCH % ('"value": {"type": "number"}', "value")),
    (MapSpec("q", "urgent?", "boolean", batch_size=1), "llm_map_row",
     _ROW % ('"value": {"type": "boolean"}', "value")),
    (FilterSpec("q", "asks for a refund", batch_size=8), "filter_batch",
     _BATCH % ('"value": {"type": "boolean"}', "value")),
    (FilterSpec("q", "asks for a refund", batch_size=1), "filter_row",
     _ROW % ('"value": {"type": "boolean"}', "value")),
    (ExtractSpec("q", FIELDS, batch_size=8), "extract_batch", _BATCH % (_EXTRACT, "value")),
    (ExtractSpec("q", {"amount": "number"}, batch_size=1), "extract_row",
     _ROW % (_EXTRACT_ONE, "value")),
]


@pytest.mark.parametrize(("spec", "name", "schema"), CASES)
def test_reply_schema_bytes_are_unchanged(spec: Any, name: str, schema: str) -> None:
    assert spec.reply_name() == name
    assert json.dumps(spec.reply_schema(), ensure_ascii=False) == schema


#: Response-cache keys of one 2-row call per operator, recorded before the change.
KEYS = {
    "classify": "30e04ee90716dc1f5f74bd5e498249f7523c9fdf5f9f9a28093e71cefca8a213",
    "llm_map": "6f0390b38f8bc3f9af5f8913429e914d6b6a231a08bf1867d7c80843a606dd66",
    "filter": "3ef67cf938697d4d5b5293fbb2dc2c675f84957c50129ecdb2d1963871721749",
    "extract": "7bd9500e6f7063f842df65acb1c3e4eda618ddd1d14700e405a594e87b6c40b7",
}


def test_cache_keys_of_the_calls_are_unchanged() -> None:
    llm = LLM(model="gpt-4.1-mini", base_url="http://127.0.0.1:9/v1", api_key="k")
    specs: dict[str, Any] = {
        "classify": ClassifySpec("q", ("billing", "other"), batch_size=4),
        "llm_map": MapSpec("q", "count the words", "integer", batch_size=4),
        "filter": FilterSpec("q", "asks for a refund", batch_size=4),
        "extract": ExtractSpec("q", {"amount": "number"}, batch_size=4),
    }
    keys = {
        op: json_key(llm, spec.messages(["refund my $20", "app crashes"]), spec.reply_schema(),
                     name=spec.reply_name(), prompt_version=PROMPT_VERSION)
        for op, spec in specs.items()
    }
    assert keys == KEYS
