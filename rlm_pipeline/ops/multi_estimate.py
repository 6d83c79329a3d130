"""What aggregate, top_k and join would send and cost, computed without calling the model.

- **aggregate**: the leaf calls are built exactly as a run builds them (same
  grouping, packing and prompts), so their count and input tokens are exact;
  fold calls are predicted level by level with every summary at its full
  allowance (an upper bound).  A leaf whose request is in the response cache
  is free; a group whose leaves are all cached counts its folds as cached too.
- **top_k**: the scoring pass is :func:`~rlm_pipeline.ops.estimate.estimate_texts`
  of its :class:`~rlm_pipeline.ops.multi_specs.ScoreSpec`, plus the re-rank
  calls for a pool of ``2k`` candidates.
- **join**: the candidate pairs are built in the engine (``block_on`` checked
  and compiled, ``max_pairs`` enforced) and estimated as one row-wise pass of
  the :class:`~rlm_pipeline.ops.multi_specs.PairSpec`.

Examples
--------
>>> import polars as pl
>>> from rlm_pipeline.ops.aggregate_op import AggregateSpec
>>> est = estimate_aggregate(pl.DataFrame({"q": ["a", "b", "a"]}), AggregateSpec("q", "themes"), LLM())
>>> est.rows, est.distinct_texts, est.calls
(3, 2, 1)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from rlm_pipeline.llm.config import LLM
from rlm_pipeline.llm.structured import STRUCTURED_PROMPT_PREFIX
from rlm_pipeline.llm.tokens import CHARS_PER_TOKEN, estimate_message_tokens, estimate_tokens
from rlm_pipeline.ops.aggregate_op import (
    _COUNT,
    _TEXT,
    AggregateSpec,
    _Folder,
    _grouped,
    _groups,
)
from rlm_pipeline.ops.estimate import Estimate, capacity, estimate_texts
from rlm_pipeline.ops.join_op import JoinSpec
from rlm_pipeline.ops.multi_common import read_input
from rlm_pipeline.ops.multi_wire import (
    MULTI_PROMPT_VERSION,
    SUMMARY_SCHEMA,
    fold_row,
    rank_messages,
)
from rlm_pipeline.ops.topk_op import TopKSpec

__all__ = ["ESTIMATES", "estimate_aggregate", "estimate_join", "estimate_top_k", "with_calls"]

_SCHEMA_TOKENS = estimate_tokens(STRUCTURED_PROMPT_PREFIX) + 40


def with_calls(est: Estimate, llm: LLM, calls: int, input_tokens: int, output_tokens: int,
               *, latency_s: float | None = None) -> Estimate:
    """``est`` plus ``calls`` more calls of the given tokens (cost and wall time recomputed)."""
    total_calls = est.calls + calls
    tokens_in = est.input_tokens + input_tokens
    tokens_out = est.output_tokens + output_tokens
    wall_s, limited_by, bounds = capacity(total_calls, tokens_in + tokens_out, llm, latency_s)
    return replace(
        est,
        calls=total_calls,
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        cost_usd=llm.price().cost(tokens_in, tokens_out) if llm.has_price() else None,
        wall_s=wall_s,
        limited_by=limited_by,
        seconds_by_limit=bounds,
    )


def _empty(rows: int, distinct: int, llm: LLM) -> Estimate:
    return with_calls(
        Estimate(rows=rows, distinct_texts=distinct, cached=0, calls=0, input_tokens=0,
                 output_tokens=0, cost_usd=None),
        llm, 0, 0, 0,
    )


def _cache(llm: LLM) -> Any:
    if llm.cache_path and os.path.exists(llm.cache_path):
        from rlm_pipeline.llm.cache import ResponseCache

        return ResponseCache(llm.cache_path)
    return None


def estimate_aggregate(data: Any, spec: AggregateSpec, llm: LLM, *, engine: str | None = None,
                       latency_s: float | None = None) -> Estimate:
    """The :class:`Estimate` of :func:`~rlm_pipeline.ops.aggregate_op.aggregate` (no traffic).

    ``distinct_texts`` counts distinct (group, text) pairs; ``cached`` counts cached calls.
    """
    from rlm_pipeline.llm.replies import CachedReplies

    frame = read_input(data, engine)
    try:
        frame.require([spec.column, *spec.by])
        table = _grouped(frame, spec)
    finally:
        frame.release()  # the engine and its scratch views (Spark: temp views)
    folder = _Folder(None, spec)
    summary_line = fold_row("x" * (spec.summary_tokens * CHARS_PER_TOKEN), 1_000_000)
    cache = _cache(llm)
    replies = CachedReplies(cache, llm) if cache is not None else None
    calls = cached = tokens_in = tokens_out = distinct = too_long = 0
    try:
        for _, part in _groups(table, spec):
            pairs = sorted(
                (t, n) for t, n in zip(part[_TEXT].to_list(), part[_COUNT].to_list(), strict=True)
                if t is not None and t.strip()
            )
            distinct += len(pairs)
            lines, _, left_out = folder.leaf_lines([t for t, _ in pairs], [n for _, n in pairs])
            too_long += left_out.get("input_too_long", 0)
            _, leaves = folder.plan(0, lines)
            hits = 0
            for messages in leaves:
                if replies is not None and replies.contains(replies.json_key(
                    messages, SUMMARY_SCHEMA, name="aggregate_summary",
                    max_tokens=2 * spec.summary_tokens, prompt_version=MULTI_PROMPT_VERSION,
                )):
                    hits += 1
                    continue
                calls += 1
                tokens_in += estimate_message_tokens(messages) + _SCHEMA_TOKENS
                tokens_out += spec.summary_tokens
            cached += hits
            parts = len(leaves)
            while parts > 1:
                _, folds = folder.plan(1, [summary_line] * parts)
                if leaves and hits == len(leaves):
                    cached += len(folds)
                else:
                    calls += len(folds)
                    tokens_in += sum(estimate_message_tokens(m) + _SCHEMA_TOKENS for m in folds)
                    tokens_out += spec.summary_tokens * len(folds)
                parts = len(folds)
    finally:
        if cache is not None:
            cache.close()
    rows = int(table[_COUNT].sum() or 0)
    base = replace(_empty(rows, distinct, llm), cached=cached, too_long=too_long)
    return with_calls(base, llm, calls, tokens_in, tokens_out, latency_s=latency_s)


def _texts(frame: Any, column: str) -> list[str | None]:
    texts: list[str | None] = frame.eng.column_texts(frame.frame, column)
    return texts


def estimate_top_k(data: Any, spec: TopKSpec, llm: LLM, *, engine: str | None = None,
                   latency_s: float | None = None) -> Estimate:
    """The :class:`Estimate` of :func:`~rlm_pipeline.ops.topk_op.top_k` (no traffic)."""
    frame = read_input(data, engine)
    try:
        frame.require([spec.column])
        texts = _texts(frame, spec.column)
    finally:
        frame.release()
    est = estimate_texts(texts, spec.score_spec(), llm, latency_s=latency_s)
    pool = min(est.distinct_texts, spec.pool_factor * spec.k)
    calls = spec.rerank_calls(pool)
    sample = [t for t in dict.fromkeys(t for t in texts if isinstance(t, str) and t.strip())]
    window = sample[: min(pool, spec.rank_size)]
    per_call = estimate_message_tokens(rank_messages(spec.criterion, window)) + _SCHEMA_TOKENS
    out = estimate_tokens(str({"ranking": list(range(len(window)))}))
    return with_calls(est, llm, calls, calls * per_call, calls * out, latency_s=latency_s)


def estimate_join(left: Any, right: Any, spec: JoinSpec, llm: LLM, *,
                  engine: str | None = None, latency_s: float | None = None) -> Estimate:
    """The :class:`Estimate` of :func:`~rlm_pipeline.ops.join_op.join` (no traffic).

    ``rows`` counts candidate pairs; ``max_pairs`` and ``block_on`` are checked
    as a run checks them (the same one-line errors).
    """
    from rlm_pipeline.ops.join_op import _PAIR, candidate_pairs

    lhs = read_input(left, engine)
    try:
        lhs.require([spec.left_column], "left column")
        pairs = candidate_pairs(spec, lhs, right)
        texts = lhs.eng.column_texts(lhs.eng.frame(pairs.view), _PAIR)
    finally:
        lhs.release()
    return estimate_texts(texts, spec.pair_spec(), llm, latency_s=latency_s)


def _aggregate_op(data: Any, column: str, llm: LLM, *, instruction: str,
                  by: str | tuple[str, ...] | list[str] | None = None,
                  engine: str | None = None, **options: Any) -> Estimate:
    groups = () if by is None else ((by,) if isinstance(by, str) else tuple(by))
    return estimate_aggregate(data, AggregateSpec(column, instruction, by=groups, **options), llm,
                              engine=engine)


def _top_k_op(data: Any, column: str, llm: LLM, *, criterion: str, k: int,
              engine: str | None = None, **options: Any) -> Estimate:
    return estimate_top_k(data, TopKSpec(column, criterion, k, **options), llm, engine=engine)


def _join_op(data: Any, column: str, llm: LLM, *, right: Any, right_column: str,
             condition: str, engine: str | None = None, **options: Any) -> Estimate:
    spec = JoinSpec(column, right_column, condition, **options)
    return estimate_join(data, right, spec, llm, engine=engine)


#: ``rp.estimate(data, column, llm=llm, op=NAME, **params)`` builders of these operators:
#: aggregate (``instruction``, ``by``, ``max_prompt_tokens``, ``summary_tokens``, ``truncate``),
#: top_k (``criterion``, ``k``, ``batch_size``, ``rank_size``, ...), join (``right``,
#: ``right_column``, ``condition``, ``block_on``, ``batch_size``, ``max_pairs``, ...).
ESTIMATES: dict[str, Callable[..., Estimate]] = {"aggregate": _aggregate_op, "top_k": _top_k_op, "join": _join_op}
