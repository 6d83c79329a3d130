"""Prompts and reply schemas of the semantic sub-calls (classify and llm_map).

The wire format is fixed in ``docs/internals.md`` and parsed by the simulator:
the user message ends with a line ``Rows:`` followed by one JSON object per
line, ``{"id": 0, "text": "..."}``; ids are 0-based inside each call.  A batch
reply is ``{"results": [{"id": int, "label": <enum>}]}`` (``"value"`` for
llm_map); a one-row call (``batch_size=1``) replies ``{"label": <enum>}``.

Changing any text here changes every cache key, so bump :data:`PROMPT_VERSION`
together with it.

Examples
--------
>>> from rlm_pipeline.ops.spec import ClassifySpec
>>> spec = ClassifySpec("text", ("billing", "other"))
>>> messages = build_messages(spec, ["refund please"])
>>> messages[1]["content"].splitlines()[-2:]
['Rows:', '{"id": 0, "text": "refund please"}']
>>> reply_schema(spec)["required"]
['results']
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from rlm_pipeline.ops.spec_base import BuiltinFields as OpSpec
from rlm_pipeline.ops.spec_base import ClassifyFields as ClassifySpec

__all__ = [
    "PROMPT_VERSION",
    "answer_params",
    "build_messages",
    "reply_name",
    "reply_schema",
    "single_row",
]

#: Version of the texts below (for readers of cached answers and traces).
PROMPT_VERSION = "ops-1"

_VALUE_TYPES = {"string": "string", "integer": "integer", "number": "number", "boolean": "boolean"}


def answer_params(spec: OpSpec) -> dict[str, Any]:
    """The spec's parameters that shape each row's answer (part of the row-answer key).

    Batch size, column names and the batch a row is sent in are left out: the
    same text under the same parameters gets the same answer however it was
    batched.  The prompt texts themselves are covered by :data:`PROMPT_VERSION`.

    Examples
    --------
    >>> from rlm_pipeline.ops.spec import ClassifySpec
    >>> answer_params(ClassifySpec("q", ("a", "b"), batch_size=5))
    {'op': 'classify', 'labels': ['a', 'b'], 'instructions': None}
    """
    if isinstance(spec, ClassifySpec):
        return {"op": "classify", "labels": list(spec.labels), "instructions": spec.instructions}
    return {"op": "llm_map", "instruction": spec.instruction, "output_type": spec.output_type}


def single_row(spec: OpSpec) -> bool:
    """True when each call carries one row and the reply is a single object."""
    return spec.batch_size == 1


@lru_cache(maxsize=256)
def _answer_schema(spec: OpSpec) -> dict[str, Any]:
    if isinstance(spec, ClassifySpec):
        return {"type": "string", "enum": list(spec.labels)}
    return {"type": _VALUE_TYPES[spec.output_type]}


@lru_cache(maxsize=256)
def reply_schema(spec: OpSpec) -> dict[str, Any]:
    """JSON Schema of the reply (built once per spec; do not mutate the result)."""
    key = spec.answer_key
    answer = _answer_schema(spec)
    if single_row(spec):
        return {
            "type": "object",
            "properties": {key: answer},
            "required": [key],
            "additionalProperties": False,
        }
    item = {
        "type": "object",
        "properties": {"id": {"type": "integer"}, key: answer},
        "required": ["id", key],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {"results": {"type": "array", "items": item}},
        "required": ["results"],
        "additionalProperties": False,
    }


def reply_name(spec: OpSpec) -> str:
    """Name given to the structured-output schema."""
    kind = "classify" if isinstance(spec, ClassifySpec) else "llm_map"
    return f"{kind}_{'row' if single_row(spec) else 'batch'}"


@lru_cache(maxsize=256)
def _system_prompt(spec: OpSpec) -> str:
    if isinstance(spec, ClassifySpec):
        lines = [
            "You are a text classifier.",
            "Labels: " + ", ".join(spec.labels),
            "Give each row exactly one label from this list, spelled exactly as listed.",
        ]
        if spec.instructions:
            lines.append(f"Instructions: {spec.instructions}")
    else:
        lines = [
            "You apply one instruction to each row of a table and return one "
            f"{spec.output_type} value per row.",
        ]
    if single_row(spec):
        lines.append("There is one row; answer for it alone.")
    else:
        lines.append("Answer every row once, with the row's id exactly as given.")
    return "\n".join(lines)


def _user_prompt(spec: OpSpec, texts: Sequence[str]) -> str:
    if isinstance(spec, ClassifySpec):
        head = ["Classify each row."]
    else:
        head = [f"Instruction: {spec.instruction}"]
    rows = [json.dumps({"id": i, "text": text}, ensure_ascii=False) for i, text in enumerate(texts)]
    return "\n".join([*head, "Rows:", *rows])


def build_messages(spec: OpSpec, texts: Sequence[str]) -> list[dict[str, Any]]:
    """Chat messages asking for the rows ``texts`` (numbered 0, 1, ... in this call)."""
    return [
        {"role": "system", "content": _system_prompt(spec)},
        {"role": "user", "content": _user_prompt(spec, texts)},
    ]
