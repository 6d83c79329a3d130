"""Prompts and reply schemas of the semantic sub-calls (classify and llm_map).

The wire format is fixed in ``docs/internals.md`` and parsed by the simulator:
the user message is a line ``Rows:`` followed by one line per row, the id,
a colon and the text as a JSON string, ``0:"..."``; ids are 0-based inside
each call.  A batch reply is ``{"results": [{"id": int, "label": <enum>}]}``
(``"value"`` for llm_map); a one-row call (``batch_size=1``) replies
``{"label": <enum>}``.  One-row classify calls keep the ``ops-1`` wording
(``{"id": 0, "text": "..."}`` lines): the real small model, which needs one row
per call, labelled 72 of 100 tickets right with it and 59 with the short one.

**Laid out for prefix caching** (format ``ops-2``).  Providers that cache
prompt prefixes (OpenAI, DeepSeek, Anthropic's cache, vLLM, llama.cpp) bill or
recompute only what follows the longest prefix seen before.  So everything
that is the same for every call of a run — the task, the label set, the
caller's instructions, the reply rules — is in the system message, in a fixed
order, and the rows come last, alone in the user message.  The row framing is
short: ``12:"text"`` costs about 6 characters (≈ 1.5 tokens) per row where the
``{"id": 12, "text": "..."}`` lines of ``ops-1`` cost 23 (≈ 6).  On the
simulator (4 characters per token) a batch of 16 tickets of the bundled
dataset costs ≈ 25 input tokens per row, of which the ≈ 2.3 of the system
message are served from the prefix cache after the first call.

Changing any text here changes every cache key, so bump :data:`PROMPT_VERSION`
together with it.

Examples
--------
>>> from rlm_pipeline.ops.spec import ClassifySpec
>>> spec = ClassifySpec("text", ("billing", "other"))
>>> messages = build_messages(spec, ["refund please", "app crashes"])
>>> messages[1]["content"].splitlines()
['Rows:', '0:"refund please"', '1:"app crashes"']
>>> messages[0]["content"].splitlines()[0]
'Classify each row. Labels: billing, other'
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
from rlm_pipeline.ops.spec_base import row_reply_schema

__all__ = [
    "PROMPT_VERSION",
    "answer_params",
    "build_messages",
    "row_lines",
    "reply_name",
    "reply_schema",
    "single_row",
]

#: Version of the texts below (part of every row-answer key: cached answers of "ops-1" miss).
PROMPT_VERSION = "ops-2"

_VALUE_TYPES = {"string": "string", "integer": "integer", "number": "number", "boolean": "boolean"}


def answer_params(spec: OpSpec) -> dict[str, Any]:
    """The spec's parameters that shape each row's answer (part of the row-answer key).

    Batch size, column names and the batch a row is sent in are left out: the
    same text under the same parameters gets the same answer however it was
    batched.  The prompt texts themselves are covered by :data:`PROMPT_VERSION`;
    one-row classify calls, whose wording differs from batches' (see
    :func:`build_messages`), are marked ``"wording": "single"``, so a batched
    answer is never served to a one-row request or the other way round.

    Examples
    --------
    >>> from rlm_pipeline.ops.spec import ClassifySpec
    >>> answer_params(ClassifySpec("q", ("a", "b"), batch_size=5))
    {'op': 'classify', 'labels': ['a', 'b'], 'instructions': None}
    >>> answer_params(ClassifySpec("q", ("a", "b"), batch_size=1))["wording"]
    'single'
    """
    if isinstance(spec, ClassifySpec):
        params = {"op": "classify", "labels": list(spec.labels), "instructions": spec.instructions}
        if single_row(spec):
            params["wording"] = "single"
        return params
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
    """JSON Schema of the reply (built once per spec; do not mutate the result).

    The shape every row-wise operator shares (:func:`~rlm_pipeline.ops.spec_base.row_reply_schema`),
    with this spec's answer: a label of the set, or a value of the output type.
    """
    return row_reply_schema(spec.answer_key, _answer_schema(spec), single=single_row(spec))


def reply_name(spec: OpSpec) -> str:
    """Name given to the structured-output schema."""
    kind = "classify" if isinstance(spec, ClassifySpec) else "llm_map"
    return f"{kind}_{'row' if single_row(spec) else 'batch'}"


def _single_classify_system(spec: ClassifySpec) -> str:
    """One-row classify calls keep the wording of ``ops-1``: on the real small model it
    labelled 72 of 100 tickets right against 59 with the short one (``bench/prompt_layout_real.py``)."""
    lines = [
        "You are a text classifier.",
        "Labels: " + ", ".join(spec.labels),
        "Give each row exactly one label from this list, spelled exactly as listed.",
    ]
    if spec.instructions:
        lines.append(f"Instructions: {spec.instructions}")
    lines.append("There is one row; answer for it alone.")
    return "\n".join(lines)


@lru_cache(maxsize=256)
def _system_prompt(spec: OpSpec) -> str:
    """Everything that is the same for every call of a run (the cacheable prefix)."""
    if isinstance(spec, ClassifySpec) and single_row(spec):
        return _single_classify_system(spec)
    if isinstance(spec, ClassifySpec):
        lines = ["Classify each row. Labels: " + ", ".join(spec.labels)]
        if spec.instructions:
            lines.append(f"Instructions: {spec.instructions}")
    else:
        lines = [
            f"Apply the instruction to each row; give one {spec.output_type} value per row.",
            f"Instruction: {spec.instruction}",
        ]
    classify = isinstance(spec, ClassifySpec)
    if single_row(spec):
        lines.append(
            "There is one row: give it one label, spelled as listed."
            if classify
            else "There is one row; answer for it alone."
        )
    else:
        lines.append(
            "Answer each row once by id, label spelled as listed."
            if classify
            else "Answer each row once by id."
        )
    return "\n".join(lines)


def row_lines(texts: Sequence[str]) -> list[str]:
    """The ``Rows:`` block: ``Rows:`` then ``<id>:<text as a JSON string>`` per text.

    Examples
    --------
    >>> row_lines(["a", "line\\nbreak"])
    ['Rows:', '0:"a"', '1:"line\\\\nbreak"']
    """
    dumps = json.dumps
    return ["Rows:", *[f"{i}:{dumps(text, ensure_ascii=False)}" for i, text in enumerate(texts)]]


def _user_prompt(spec: OpSpec, texts: Sequence[str]) -> str:
    if isinstance(spec, ClassifySpec) and single_row(spec):  # ops-1 wording (see above)
        rows = [json.dumps({"id": i, "text": t}, ensure_ascii=False) for i, t in enumerate(texts)]
        return "\n".join(["Classify each row.", "Rows:", *rows])
    return "\n".join(row_lines(texts))


def build_messages(spec: OpSpec, texts: Sequence[str]) -> list[dict[str, Any]]:
    """Chat messages asking for the rows ``texts`` (numbered 0, 1, ... in this call).

    The system message is the same for every call with this spec (a prefix
    the provider can cache); the user message holds only the rows.
    """
    return [
        {"role": "system", "content": _system_prompt(spec)},
        {"role": "user", "content": _user_prompt(spec, texts)},
    ]
