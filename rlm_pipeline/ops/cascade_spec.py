"""The proxy's side of a cascade: an operator spec whose answers carry a confidence.

:class:`ConfidenceSpec` wraps a row-wise operator's spec (classify, filter)
and adds one output column, the confidence of each answer, from one of two
sources:

- ``logprobs``: the proxy is asked for token log-probabilities
  (``LLM(logprobs=N)``); the confidence of a row is ``exp`` of the summed
  log-probabilities of the reply tokens that spell its answer — the value
  after the answer's key (``"label": "billing"``), found in the reply text in
  the order of the reply's rows (:func:`value_spans`, :func:`span_confidences`);
- ``verbal``: the reply schema asks for a ``confidence`` number (0 to 1) next
  to each answer, and the system message says what it means.

The fan-out calls :meth:`ConfidenceSpec.annotate_reply` with each parsed reply
and the :class:`~rlm_pipeline.llm.reply.ChatReply` it came from; it puts
``{"answer": value, "confidence": c}`` where the answer was, which
:meth:`ConfidenceSpec.check_value` checks (the answer by the wrapped spec, the
confidence as a number in [0, 1], else None).  An answer whose confidence
cannot be read keeps it as None: the cascade sends such rows to the oracle.
The row-answer key gets ``"confidence": mode``, so these answers are stored
apart from the wrapped operator's own.

Examples
--------
>>> from rlm_pipeline.ops.spec import ClassifySpec
>>> spec = ConfidenceSpec(ClassifySpec("q", ("a", "b"), batch_size=1), "verbal")
>>> spec.output_fields()
(('label', 'string'), ('label_confidence', 'number'))
>>> spec.check_value({"answer": "a", "confidence": 0.8})
({'answer': 'a', 'confidence': 0.8}, None)
>>> spec.output_values({"answer": "a", "confidence": 0.8})
('a', 0.8)
>>> content = '{"label": "b"}'
>>> tokens = [('{"', -0.01), ("label", 0.0), ('": "', 0.0), ("b", -0.5), ('"}', 0.0)]
>>> [round(c, 4) for c in span_confidences(content, tokens, "label", 1)]
[0.6065]
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from rlm_pipeline.errors import InputError
from rlm_pipeline.ops.spec_base import OpSpec, short_repr

__all__ = [
    "CONFIDENCE_MODES",
    "VERBAL_PROMPT",
    "ConfidenceMode",
    "ConfidenceSpec",
    "span_confidences",
    "value_spans",
]

#: Where a proxy answer's confidence comes from.
ConfidenceMode = Literal["logprobs", "verbal"]
CONFIDENCE_MODES: tuple[str, ...] = ("logprobs", "verbal")

#: Added to the system message in ``verbal`` mode.
VERBAL_PROMPT = (
    "With each answer give `confidence`: your probability, from 0 to 1, that the answer is right."
)

_DECODER = json.JSONDecoder()


def value_spans(content: str, key: str) -> list[tuple[int, int]]:
    """Character spans of the JSON values after each ``"key":`` in ``content``, in order.

    Examples
    --------
    >>> value_spans('{"results": [{"id": 0, "label": "a"}, {"id": 1, "label": "bb"}]}', "label")
    [(32, 35), (57, 61)]
    """
    spans: list[tuple[int, int]] = []
    for match in re.finditer(rf'"{re.escape(key)}"\s*:\s*', content):
        start = match.end()
        try:
            _, end = _DECODER.raw_decode(content, start)
        except ValueError:
            continue
        spans.append((start, end))
    return spans


def span_confidences(
    content: str | None,
    logprobs: Sequence[tuple[str, float]] | None,
    key: str,
    n: int,
) -> list[float | None]:
    """The confidence of each of the ``n`` answers under ``key`` in a reply (None: unreadable).

    The tokens are laid end to end; they must spell ``content`` (or a part of
    it, found once).  An answer's confidence is ``exp`` of the sum of the
    log-probabilities of the tokens overlapping its value.  When the reply
    does not hold exactly ``n`` values under ``key``, every row gets None.
    """
    if content is None or not logprobs:
        return [None] * n
    spans = value_spans(content, key)
    if len(spans) != n:
        return [None] * n
    joined = "".join(token for token, _ in logprobs)
    offset = 0 if joined == content else content.find(joined)
    if offset < 0 or (joined != content and content.count(joined) != 1):
        return [None] * n
    out: list[float | None] = []
    for start, end in spans:
        total = 0.0
        seen = False
        position = offset
        for token, logprob in logprobs:
            token_end = position + len(token)
            if token_end > start and position < end:
                total += logprob
                seen = True
            position = token_end
            if position >= end:
                break
        out.append(math.exp(total) if seen else None)
    return out


def _confidence(raw: Any) -> float | None:
    """A confidence in [0, 1], or None for anything else."""
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return None
    value = float(raw)
    return value if math.isfinite(value) and 0.0 <= value <= 1.0 else None


@dataclass(frozen=True)
class ConfidenceSpec:
    """A row-wise operator's spec whose answers carry the proxy's confidence (see the module docstring).

    Parameters
    ----------
    base
        The operator's spec (one value column).
    mode
        ``"logprobs"`` or ``"verbal"``.
    confidence_column
        Name of the confidence column (default ``<output_column>_confidence``).
    """

    base: Any
    mode: str = "logprobs"
    confidence_column: str = ""

    values_capped: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if not isinstance(self.base, OpSpec):
            msg = f"base must be an operator spec, got {type(self.base).__name__}"
            raise InputError(msg)
        if len(self.base.output_fields()) != 1:
            msg = f"a cascade needs an operator with one value column, {self.base.op_name} has more"
            raise InputError(msg)
        if self.mode not in CONFIDENCE_MODES:
            msg = f"mode must be one of {list(CONFIDENCE_MODES)}, got {self.mode!r}"
            raise InputError(msg)
        if not self.confidence_column:
            object.__setattr__(self, "confidence_column", f"{self.base.output_column}_confidence")

    # -- the wrapped spec's fields
    @property
    def column(self) -> str:
        """The input text column."""
        return str(self.base.column)

    @property
    def batch_size(self) -> int:
        """Rows per call."""
        return int(self.base.batch_size)

    @property
    def max_row_tokens(self) -> int:
        """Longest cell sent."""
        return int(self.base.max_row_tokens)

    @property
    def truncate(self) -> bool:
        """Cut long cells instead of leaving them unsent."""
        return bool(self.base.truncate)

    @property
    def op_name(self) -> str:
        """The wrapped operator's name."""
        return str(self.base.op_name)

    @property
    def output_column(self) -> str:
        """The wrapped operator's value column."""
        return str(self.base.output_column)

    @property
    def error_column(self) -> str:
        """The wrapped operator's reason column."""
        return str(self.base.error_column)

    @property
    def answer_key(self) -> str:
        """The key of one row's answer in the reply."""
        return str(self.base.answer_key)

    # -- what changes
    def output_fields(self) -> tuple[tuple[str, str], ...]:
        """The wrapped value column, then the confidence (``number``)."""
        return (*self.base.output_fields(), (self.confidence_column, "number"))

    def output_values(self, value: Any) -> tuple[Any, ...]:
        """``(answer, confidence)`` of a checked value (Nones for none)."""
        if not isinstance(value, dict):
            return (None, None)
        return (value.get("answer"), value.get("confidence"))

    def answer_params(self) -> dict[str, Any]:
        """The wrapped spec's, plus ``"confidence": mode`` (stored apart from plain answers)."""
        return {**self.base.answer_params(), "confidence": self.mode}

    def reply_schema(self) -> dict[str, Any]:
        """The wrapped schema; in ``verbal`` mode each answer also has a ``confidence`` number."""
        base: dict[str, Any] = self.base.reply_schema()
        if self.mode != "verbal":
            return base
        schema: dict[str, Any] = json.loads(json.dumps(base))  # a copy: the base shares its dicts
        props = schema["properties"]
        target = props
        required = schema
        results = props.get("results")
        if isinstance(results, dict) and isinstance(results.get("items"), dict):
            required = results["items"]
            target = required["properties"]
        # no minimum/maximum: some grammar engines refuse them; checked after parsing
        target["confidence"] = {"type": "number"}
        required["required"] = [*required.get("required", []), "confidence"]
        return schema

    def reply_name(self) -> str:
        """The wrapped name (``_confidence`` added in ``verbal`` mode)."""
        name = str(self.base.reply_name())
        return f"{name}_confidence" if self.mode == "verbal" else name

    def messages(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        """The wrapped messages; ``verbal`` adds :data:`VERBAL_PROMPT` to the system message."""
        messages: list[dict[str, Any]] = self.base.messages(texts)
        if self.mode != "verbal" or not messages or messages[0].get("role") != "system":
            return messages
        first = dict(messages[0])
        first["content"] = f"{first['content']}\n{VERBAL_PROMPT}"
        return [first, *messages[1:]]

    def check_value(self, value: Any) -> tuple[Any, str | None]:
        """An annotated answer (or a bare one: confidence None) checked by the wrapped spec."""
        if isinstance(value, dict) and set(value) == {"answer", "confidence"}:
            answer, error = self.base.check_value(value["answer"])
            if error is not None:
                return None, error
            return {"answer": answer, "confidence": _confidence(value["confidence"])}, None
        answer, error = self.base.check_value(value)
        if error is not None:
            return None, error
        return {"answer": answer, "confidence": None}, None

    def typical_answer(self) -> Any:
        """The wrapped spec's typical answer."""
        return self.base.typical_answer()

    # -- the fan-out's hook
    def annotate_reply(self, obj: Any, reply: Any) -> Any:
        """``obj`` with each answer replaced by ``{"answer", "confidence"}`` (see the module docstring).

        Called by :mod:`rlm_pipeline.ops.core` with the parsed reply and the
        :class:`~rlm_pipeline.llm.reply.ChatReply`; anything it cannot read is
        left for :meth:`check_value` to judge (confidence None).
        """
        if not isinstance(obj, dict):
            return obj
        key = self.answer_key
        single = self.batch_size == 1
        items: list[dict[str, Any]]
        if single:
            items = [obj] if key in obj else []
        else:
            results = obj.get("results")
            items = [i for i in results if isinstance(i, dict)] if isinstance(results, list) else []
        if self.mode == "verbal":
            confidences = [item.get("confidence") for item in items]
        else:
            raw_items = [i for i in items if key in i]
            found = span_confidences(
                getattr(reply, "content", None),
                getattr(reply, "logprobs", None),
                key,
                len(raw_items),
            )
            lookup = {id(item): conf for item, conf in zip(raw_items, found, strict=True)}
            confidences = [lookup.get(id(item)) for item in items]
        copies = []
        for item, conf in zip(items, confidences, strict=True):
            copy = dict(item)
            if key in copy:
                copy[key] = {"answer": copy[key], "confidence": conf}
            copies.append(copy)
        if single:
            return copies[0] if copies else obj
        return {**obj, "results": copies}

    def __repr__(self) -> str:
        return f"ConfidenceSpec({self.base!r}, mode={short_repr(self.mode)})"
