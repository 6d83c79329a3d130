"""What a classify / llm_map run would send and cost, computed without calling the model.

The estimate looks every distinct text up in the stored row answers (a text
answered by an earlier run, whatever its batching, is free and not sent), then
builds exactly the requests the run would send for the rest (same dedup, same
batches, same prompts), looks each one up in the response cache, and counts
tokens with :func:`rlm_pipeline.llm.tokens.estimate_message_tokens` — the rule
the simulator reports usage by, so on the simulator input tokens match a real
run exactly.  Output tokens are predicted from the reply's shape with labels of
average length, so they are close, not exact.  Re-asks after bad replies are
not predicted.

Examples
--------
>>> from rlm_pipeline.ops.spec import ClassifySpec
>>> est = estimate_texts(["a", "b", "a", None], ClassifySpec("q", ("x", "y")), LLM())
>>> est.rows, est.distinct_texts, est.calls, est.cached, est.too_long
(4, 2, 1, 0, 0)
>>> estimate_texts(["x" * 100, "a"], ClassifySpec("q", ("x", "y"), max_row_tokens=10), LLM()).too_long
1
>>> print(estimate_texts(["a"], ClassifySpec("q", ("x", "y")), LLM(model="my-local-model")).cost_usd)
None
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from rlm_pipeline.llm.config import LLM
from rlm_pipeline.llm.tokens import estimate_message_tokens, estimate_tokens
from rlm_pipeline.ops.prompts import PROMPT_VERSION
from rlm_pipeline.ops.spec_base import OpSpec, fit_text

__all__ = ["DEFAULT_CALL_LATENCY_S", "Estimate", "capacity", "estimate_texts", "wall_line"]

#: Seconds per call assumed for the wall-time bound when none is given: a hosted model
#: answering a batch of 16 short rows (measure yours: wall ÷ calls × concurrency of a small run).
DEFAULT_CALL_LATENCY_S = 1.0


def capacity(
    calls: int, tokens: int, llm: LLM, latency_s: float | None = None
) -> tuple[float, str, dict[str, float]]:
    """The wall time ``calls`` (with ``tokens`` in all) need under ``llm``'s limits.

    Returns ``(seconds, limit, seconds_by_limit)``: the tightest of
    concurrency ÷ latency, ``rpm`` and ``tpm`` decides.

    Examples
    --------
    >>> capacity(62_500, 30_000_000, LLM(max_concurrency=64, rpm=5_000, tpm=2_000_000),
    ...          latency_s=0.8)
    (900.0, 'tpm', {'concurrency': 781.25, 'rpm': 750.0, 'tpm': 900.0})
    """
    latency = DEFAULT_CALL_LATENCY_S if latency_s is None else float(latency_s)
    bounds = {"concurrency": calls * latency / max(1, llm.max_concurrency)}
    if llm.rpm:
        bounds["rpm"] = calls / llm.rpm * 60.0
    if llm.tpm:
        bounds["tpm"] = tokens / llm.tpm * 60.0
    bounds = {k: round(v, 3) for k, v in bounds.items()}
    limit = max(bounds, key=lambda k: bounds[k])
    return bounds[limit], limit, bounds


@dataclass(frozen=True)
class Estimate:
    """Predicted size and cost of a run.

    Attributes
    ----------
    rows
        Input rows.
    distinct_texts
        Distinct non-blank texts (what would be asked), counted after long
        cells are cut (``truncate``) or left out (``input_too_long``).
    cached
        Distinct texts already answered (free): a stored row answer, or a
        request already in the response cache.
    calls
        Calls that would be sent (not cached).
    input_tokens, output_tokens
        Tokens of those calls.
    cost_usd
        Their cost at ``llm.price()``; None when the model has no price
        (:meth:`~rlm_pipeline.llm.config.LLM.has_price`), never a made-up 0.
    too_long
        Rows longer than ``max_row_tokens``: not sent (``input_too_long``),
        or sent cut to the limit when ``truncate``.
    wall_s
        The shortest wall time the job's limits allow for those calls: the
        largest of ``seconds_by_limit`` (the tightest limit decides).
    limited_by
        Which limit that is: ``"concurrency"``, ``"rpm"`` or ``"tpm"``.
    seconds_by_limit
        Seconds each limit alone needs: ``concurrency`` = calls × latency ÷
        ``max_concurrency``; ``rpm`` = calls ÷ rpm × 60; ``tpm`` = (input +
        output tokens) ÷ tpm × 60 (only the limits that are set).
    latency_s
        Seconds per call used for the concurrency bound (observed on your
        endpoint and passed in, or :data:`DEFAULT_CALL_LATENCY_S`).
    """

    rows: int
    distinct_texts: int
    cached: int
    calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    too_long: int = 0
    wall_s: float = 0.0
    limited_by: str = "concurrency"
    seconds_by_limit: dict[str, float] = field(default_factory=dict)
    latency_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain dict, for JSON output."""
        return asdict(self)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:,.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:,.1f} min"
    return f"{seconds / 3600:,.1f} h"


def wall_line(est: Estimate) -> str:
    """One line for printing: the wall time and the limit that sets it.

    Examples
    --------
    >>> est = Estimate(1, 1, 0, 62_500, 0, 0, None, wall_s=900.0, limited_by="tpm",
    ...                seconds_by_limit={"concurrency": 781.25, "tpm": 900.0}, latency_s=0.8)
    >>> wall_line(est)
    'wall time at least 15.0 min (limited by tpm; concurrency 13.0 min at 0.8 s per call, tpm 15.0 min)'
    """
    parts = []
    for name, seconds in est.seconds_by_limit.items():
        extra = f" at {est.latency_s:g} s per call" if name == "concurrency" else ""
        parts.append(f"{name} {_duration(seconds)}{extra}")
    return (
        f"wall time at least {_duration(est.wall_s)} "
        f"(limited by {est.limited_by}; {', '.join(parts)})"
    )


def _reply_text(spec: OpSpec, n: int) -> str:
    """A typical reply to a call of ``n`` rows, as the server would write it."""
    answer = spec.typical_answer()
    key = spec.answer_key
    if spec.batch_size == 1:
        return json.dumps({key: answer}, ensure_ascii=False)
    return json.dumps({"results": [{"id": i, key: answer} for i in range(n)]}, ensure_ascii=False)


def _wire_messages(llm: LLM, messages: list[dict[str, Any]], spec: OpSpec) -> list[dict[str, Any]]:
    from rlm_pipeline.llm.client import DEFAULT_ENDPOINT
    from rlm_pipeline.llm.structured import build_request, known_mode

    mode = known_mode(llm.resolved_base_url() or DEFAULT_ENDPOINT, llm.model) or "json_schema"
    wire, _ = build_request(mode, messages, spec.reply_schema(), spec.reply_name())
    return wire


def estimate_texts(
    texts: Sequence[str | None], spec: OpSpec, llm: LLM, *, latency_s: float | None = None
) -> Estimate:
    """The :class:`Estimate` of running ``spec`` over ``texts`` with ``llm`` (no traffic).

    ``latency_s``: seconds per call for the wall-time bound (:func:`capacity`;
    default :data:`DEFAULT_CALL_LATENCY_S`).
    """
    from rlm_pipeline.llm.cache import ResponseCache
    from rlm_pipeline.llm.replies import CachedReplies
    from rlm_pipeline.ops.memo import RowStore

    too_long = 0
    sent: list[str] = []
    for text in texts:
        if not isinstance(text, str) or not text.strip():
            continue
        if estimate_tokens(text) > spec.max_row_tokens:
            too_long += 1
        fitted, _ = fit_text(text, spec)
        if fitted is not None:
            sent.append(fitted)
    distinct = list(dict.fromkeys(sent))
    cache = None
    if llm.cache_path and os.path.exists(llm.cache_path):
        cache = ResponseCache(llm.cache_path)
    schema, name = spec.reply_schema(), spec.reply_name()
    cached = calls = input_tokens = output_tokens = 0
    try:
        asked = distinct
        if cache is not None:
            stored = RowStore(cache, llm, spec).lookup(distinct)
            cached = len(stored)
            asked = [text for text in distinct if text not in stored]
        size = spec.batch_size
        for start in range(0, len(asked), size):
            batch = asked[start : start + size]
            messages = spec.messages(batch)
            if cache is not None:
                replies = CachedReplies(cache, llm)
                key = replies.json_key(messages, schema, name=name, prompt_version=PROMPT_VERSION)
                if replies.contains(key):
                    cached += len(batch)
                    continue
            calls += 1
            input_tokens += estimate_message_tokens(_wire_messages(llm, messages, spec))
            output_tokens += estimate_tokens(_reply_text(spec, len(batch)))
    finally:
        if cache is not None:
            cache.close()
    wall_s, limited_by, bounds = capacity(calls, input_tokens + output_tokens, llm, latency_s)
    return Estimate(
        rows=len(texts),
        distinct_texts=len(distinct),
        cached=cached,
        calls=calls,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost_usd=llm.price().cost(input_tokens, output_tokens) if llm.has_price() else None,
        too_long=too_long,
        wall_s=wall_s,
        limited_by=limited_by,
        seconds_by_limit=bounds,
        latency_s=DEFAULT_CALL_LATENCY_S if latency_s is None else float(latency_s),
    )
