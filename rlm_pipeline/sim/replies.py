"""What the simulated model answers, and the OpenAI ``chat.completion`` envelope."""

from __future__ import annotations

import time
from typing import Any

from rlm_pipeline.sim.classifier import intended_label
from rlm_pipeline.sim.mapper import map_value
from rlm_pipeline.sim.wire import Task

__all__ = ["completion", "error_body", "fill_schema", "structured_value", "tool_call_message"]

_DEFAULT_LABELS = ("other",)


def fill_schema(schema: Any, text: str, labels: tuple[str, ...] = (), depth: int = 0) -> Any:
    """A value that follows ``schema``, derived from ``text`` like the classify/map answers.

    Enums get :func:`intended_label`; strings get a label when ``labels`` are
    known, else the first words; numbers, integers and booleans get
    :func:`map_value`; objects get every property; arrays get one item.

    Examples
    --------
    >>> schema = {"type": "object", "properties": {
    ...     "category": {"type": "string", "enum": ["billing", "other"]},
    ...     "words": {"type": "integer"}}}
    >>> fill_schema(schema, "Where is my invoice?")
    {'category': 'billing', 'words': 4}
    """
    if not isinstance(schema, dict) or depth > 8:
        return None
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        strings = [str(v) for v in enum]
        return enum[strings.index(intended_label(text, strings))]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list):
            for option in options:
                if isinstance(option, dict) and option.get("type") != "null":
                    return fill_schema(option, text, labels, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and isinstance(schema.get("properties"), dict)):
        props = schema.get("properties")
        if not isinstance(props, dict):
            return {}
        return {name: fill_schema(spec, text, labels, depth + 1) for name, spec in props.items()}
    if kind == "array":
        return [fill_schema(schema.get("items"), text, labels, depth + 1)]
    if kind in ("integer", "number", "boolean"):
        return map_value(text, kind)
    if kind == "null":
        return None
    if labels:
        return intended_label(text, labels)
    return map_value(text, "string")


def structured_value(task: Task) -> tuple[Any, int]:
    """The JSON value answering a structured ``task``, and how many rows it covers."""
    labels = task.labels or _DEFAULT_LABELS
    if task.kind == "classify_batch":
        results = [{"id": rid, "label": intended_label(text, labels)} for rid, text in task.rows]
        return {"results": results}, len(results)
    if task.kind == "map_batch":
        out = task.output_type
        results = [{"id": rid, "value": map_value(text, out)} for rid, text in task.rows]
        return {"results": results}, len(results)
    value = fill_schema(task.schema, task.text, task.labels)
    if not isinstance(value, dict):
        value = {}
    if task.kind == "classify_single":
        value["label"] = intended_label(task.text, labels)
        return value, 1
    if task.kind == "map_single":
        value["value"] = map_value(task.text, task.output_type)
        return value, 1
    return value, 0


def tool_call_message(name: str, arguments: str, call_id: str) -> dict[str, Any]:
    """An assistant message calling function ``name`` with JSON ``arguments``."""
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
        ],
    }


def completion(
    *,
    completion_id: str,
    model: str,
    message: dict[str, Any],
    finish_reason: str,
    prompt_tokens: int,
    completion_tokens: int,
) -> dict[str, Any]:
    """The OpenAI ``chat.completion`` object around one assistant ``message``."""
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "rlm_pipeline-sim",
        "choices": [
            {"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def error_body(message: str, *, kind: str, code: str | int | None = None,
               param: str | None = None) -> dict[str, Any]:
    """An OpenAI-style error object."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}
