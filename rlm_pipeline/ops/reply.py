"""Checking a model's reply to one semantic call, row by row.

Model output is untrusted.  :func:`check_reply` turns a parsed reply into one
``(value, error)`` per row of the call and never guesses:

- a row whose id is absent gets ``missing_in_reply``;
- an id given twice, or an id outside ``0..n-1``, means the model lost track
  of the numbering (for example it counted from 1, or repeated a row and
  shifted the rest), so *no* row of that reply is trusted and every row gets
  ``missing_in_reply`` (the caller re-asks them in smaller calls);
- each answer is checked by the spec (:meth:`~rlm_pipeline.ops.spec_base.OpSpec.check_value`):
  a label outside the set gives ``invalid_label``, a value of the wrong type
  ``parse_error``.

Examples
--------
>>> from rlm_pipeline.ops.spec import ClassifySpec
>>> spec = ClassifySpec("t", ("a", "b"))
>>> check_reply({"results": [{"id": 1, "label": "a"}, {"id": 0, "label": "z"}]}, 3, spec)
[(None, "invalid_label: 'z'"), ('a', None), (None, 'missing_in_reply')]
>>> parse_raw('```json\\n{"label": "a"}\\n```')
{'label': 'a'}
"""

from __future__ import annotations

import json
from typing import Any

from rlm_pipeline.ops.spec_base import OpSpec

__all__ = ["check_reply", "parse_raw"]

_MISSING = "missing_in_reply"


def parse_raw(raw: str) -> dict[str, Any] | None:
    """The JSON object in a raw reply (code fences and surrounding prose tolerated), or None."""
    text = raw.strip()
    candidates = [text]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except (ValueError, RecursionError):
            continue
        if isinstance(value, dict):
            return value
    return None


def check_reply(obj: Any, n: int, spec: OpSpec) -> list[tuple[Any, str | None]]:
    """One ``(value, error)`` per row ``0..n-1`` of a call, from its parsed reply."""
    key = spec.answer_key
    if not isinstance(obj, dict):
        return [(None, "parse_error: reply is not a JSON object")] * n
    if spec.batch_size == 1:
        if key not in obj:
            return [(None, f"{_MISSING}: no {key!r} in reply")] * n
        return [spec.check_value(obj[key])] * n
    results = obj.get("results")
    if not isinstance(results, list):
        return [(None, "parse_error: reply has no 'results' list")] * n
    answers: dict[int, Any] = {}
    for item in results:
        if not isinstance(item, dict) or key not in item:
            continue
        row_id = item.get("id")
        if isinstance(row_id, bool) or not isinstance(row_id, int):
            continue
        if not 0 <= row_id < n:
            return [(None, f"{_MISSING}: reply used unknown id {row_id}")] * n
        if row_id in answers:
            return [(None, f"{_MISSING}: reply repeated id {row_id}")] * n
        answers[row_id] = item[key]
    return [
        spec.check_value(answers[row_id]) if row_id in answers else (None, _MISSING)
        for row_id in range(n)
    ]
