"""What the simulated model answers, and the OpenAI ``chat.completion`` envelope."""

from __future__ import annotations

import time
from typing import Any

from rlm_pipeline.sim.cheap import CheapModel
from rlm_pipeline.sim.classifier import intended_label
from rlm_pipeline.sim.mapper import condition_holds, extract_fields, map_value
from rlm_pipeline.sim.wire import Task

__all__ = [
    "answer_confidences",
    "completion",
    "error_body",
    "extract_schema_fields",
    "fill_schema",
    "structured_value",
    "tool_call_message",
]

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


def extract_schema_fields(value_schema: Any) -> dict[str, str | list[str]]:
    """The fields an extract reply asks for, from the schema of its ``value`` object.

    Each property's kind: its ``enum`` (nulls left out) as a list, ``"date"``
    for ``"format": "date"``, else its first non-null ``type``.

    Examples
    --------
    >>> extract_schema_fields({"type": "object", "properties": {
    ...     "amount": {"type": ["number", "null"]},
    ...     "day": {"type": ["string", "null"], "format": "date"},
    ...     "kind": {"type": ["string", "null"], "enum": ["a", "b", None]}}})
    {'amount': 'number', 'day': 'date', 'kind': ['a', 'b']}
    """
    props = value_schema.get("properties") if isinstance(value_schema, dict) else None
    fields: dict[str, str | list[str]] = {}
    for name, spec in (props or {}).items():
        spec = spec if isinstance(spec, dict) else {}
        enum = spec.get("enum")
        kind = spec.get("type")
        kinds = [k for k in (kind if isinstance(kind, list) else [kind]) if k != "null"]
        if isinstance(enum, list):
            fields[name] = [str(v) for v in enum if v is not None]
        elif spec.get("format") == "date":
            fields[name] = "date"
        else:
            fields[name] = str(kinds[0]) if kinds and kinds[0] else "string"
    return fields


def _value_schema(task: Task) -> Any:
    """The schema of the ``value`` answer (per row of a batch, or of the one row)."""
    props = (task.schema or {}).get("properties") or {}
    if task.kind.endswith("_batch"):
        items = (props.get("results") or {}).get("items") or {}
        return (items.get("properties") or {}).get("value")
    return props.get("value")


def _row_answers(task: Task, model: CheapModel) -> list[tuple[Any, Any, float | None]]:
    """``(id, value, confidence)`` per row of a classify, map, filter or extract task.

    Classify and filter answers go through ``model`` (the cheap mode) and carry
    a confidence; map and extract answers have none.
    """
    rows = task.rows if task.kind.endswith("_batch") else [(None, task.text)]
    if task.kind.startswith("classify"):
        labels = task.labels or _DEFAULT_LABELS
        return [(rid, *model.answer(text, labels)) for rid, text in rows]
    if task.kind.startswith("filter"):
        return [(rid, *model.judge(text, condition_holds(text, task.condition))) for rid, text in rows]
    if task.kind.startswith("extract"):
        fields = extract_schema_fields(_value_schema(task))
        return [(rid, extract_fields(text, fields), None) for rid, text in rows]
    return [(rid, map_value(text, task.output_type), None) for rid, text in rows]


def _asks_confidence(task: Task) -> bool:
    """Whether the reply schema asks for a verbalised ``confidence`` per row."""
    props = (task.schema or {}).get("properties") or {}
    if task.kind.endswith("_batch"):
        props = ((props.get("results") or {}).get("items") or {}).get("properties") or {}
    return isinstance(props, dict) and "confidence" in props


def answer_confidences(task: Task, cheap: CheapModel) -> list[float]:
    """The confidence of each classify / filter answer of ``task``, in reply order (for ``logprobs``)."""
    if not task.kind.startswith(("classify_batch", "classify_single", "filter")):
        return []
    return [conf for _, _, conf in _row_answers(task, cheap) if conf is not None]


def structured_value(task: Task, cheap: CheapModel | None = None) -> tuple[Any, int]:
    """The JSON value answering a structured ``task``, and how many rows it covers.

    Classify and filter answers come from ``cheap``
    (:class:`~rlm_pipeline.sim.cheap.CheapModel`; default: always the keyword
    model's), with a ``confidence`` per row when the schema asks for one.
    """
    model = cheap if cheap is not None else CheapModel()
    key = "label" if task.kind.startswith("classify") else "value"
    verbal = _asks_confidence(task)
    if task.kind in ("classify_batch", "map_batch", "filter_batch", "extract_batch"):
        results: list[dict[str, Any]] = []
        for rid, answer, conf in _row_answers(task, model):
            item: dict[str, Any] = {"id": rid, key: answer}
            if verbal and conf is not None:
                item["confidence"] = round(conf, 3)
            results.append(item)
        return {"results": results}, len(results)
    value = fill_schema(task.schema, task.text, task.labels)
    if not isinstance(value, dict):
        value = {}
    if task.kind in ("classify_single", "map_single", "filter_single", "extract_single"):
        _, answer, conf = _row_answers(task, model)[0]
        value[key] = answer
        if verbal and conf is not None:
            value["confidence"] = round(conf, 3)
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
