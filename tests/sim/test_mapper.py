"""Deterministic llm_map answers and schema filling."""

from __future__ import annotations

from rlm_pipeline.sim import map_value
from rlm_pipeline.sim.replies import fill_schema


def test_map_value_by_type() -> None:
    text = "Is the API down again?"
    assert map_value(text, "integer") == 5
    assert map_value(text, "boolean") is True
    assert map_value("no question", "boolean") is False
    assert map_value(text, "number") == len(text) / 10
    assert map_value(text, "string") == "Is the API"
    assert map_value("", "string") == ""


def test_fill_schema_nested() -> None:
    schema = {"type": "object", "properties": {
        "tags": {"type": "array", "items": {"type": "string"}},
        "kind": {"anyOf": [{"type": "null"}, {"enum": ["billing", "technical"]}]},
        "score": {"type": ["number", "null"]},
        "fixed": {"const": 1},
    }}
    value = fill_schema(schema, "my invoice is wrong")
    assert value == {"tags": ["my invoice is"], "kind": "billing",
                     "score": len("my invoice is wrong") / 10, "fixed": 1}
