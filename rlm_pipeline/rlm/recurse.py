"""The ``recurse`` tool: one sub-run per partition, results as a view.

For each distinct value of the partition column, the rows with that value
become the ``context`` of a sub-run at ``depth + 1`` that answers the query.
Sub-runs run concurrently (at most ``RunState.max_parallel`` at a time per
call).  At ``max_depth`` a partition is answered by plain model calls with its
rows inlined (:mod:`rlm_pipeline.rlm.plain`).  The answers form a new view
``(partition_column, answer)``; ``answer`` is an integer or float column when
every answer is a number, else a string column.

Every partition is answered, up to :data:`MAX_RECURSE_PARTITIONS` (64); a view
with more is refused with a tool error before any sub-call is made, naming the
count and how to make fewer partitions.  The keys are read with
:meth:`Engine.value_counts <rlm_pipeline.engines.base.Engine.value_counts>` (all
of them, exact and uncut -- never the model's 20-row, 200-character ``head``
preview) and each partition is selected with :meth:`Engine.filter_value
<rlm_pipeline.engines.base.Engine.filter_value>`, an exact null-safe match with
no SQL literal in between: a 1,000-character key, a key with quotes or
backslashes, NaN or a timestamp each select exactly their own rows, and the
null key its own partition.

Limits: on Polars every sub-run keeps its parent scope's client, so all
sub-runs of a run share one semaphore and one rpm/tpm limiter (exact bounds).
On Spark a sub-run's classify/llm_map runs on executors with limiters of their
own, so ``k`` parallel sub-runs (``k = min(max_parallel, partitions,
parent.llm.max_concurrency)``) each get ``parent.llm.share(k)`` and a driver
client built from it; ``k`` clients are built per call and reused by the
sub-runs that follow in the same slot (a slot's limiter carries over).  Plain
calls always go through the parent's client.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

import pyarrow as pa

from rlm_pipeline.errors import BudgetExceededError, LLMEndpointError, RLMPipelineError, ToolError
from rlm_pipeline.rlm.plain import answer_inline, parse_value
from rlm_pipeline.rlm.render import cut
from rlm_pipeline.rlm.scope import Scope
from rlm_pipeline.rlm.views import (
    INTERNAL_PREFIX,
    MAX_RECURSE_PARTITIONS,
    ToolOutcome,
    describe_view,
)

if TYPE_CHECKING:
    from rlm_pipeline.llm.client import LLMClient
    from rlm_pipeline.llm.config import LLM

__all__ = ["MAX_INLINE_ROWS", "MAX_RECURSE_PARTITIONS", "recurse", "too_many_partitions"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: At max depth, a partition with more rows than this is refused (filter first).
MAX_INLINE_ROWS = 5000


async def recurse(
    scope: Scope, view: str, partition_column: str, query: str, name: str
) -> ToolOutcome:
    """Answer ``query`` once per value of ``partition_column`` in ``view``; new view ``name``."""
    state = scope.state
    engine = scope.engine
    if partition_column == "answer":
        raise ToolError("the partition column may not be called 'answer'; rename it with sql first")
    # The keys are the library's own read (exact, uncut, all of them), not the model's
    # 20-row preview: every partition is answered, or the call is refused up front.
    keys = await asyncio.to_thread(
        engine.value_counts, view, partition_column, max_values=MAX_RECURSE_PARTITIONS
    )
    if not keys.complete:
        raise ToolError(too_many_partitions(view, partition_column, keys.distinct))
    plain = scope.depth + 1 >= state.max_depth
    scratch = f"{INTERNAL_PREFIX}_part"
    parts: list[tuple[Any, Any, int]] = []
    for key, rows in keys.pairs():
        if plain and rows > MAX_INLINE_ROWS:
            parts.append((key, None, rows))
            continue
        await asyncio.to_thread(engine.filter_value, view, partition_column, key, scratch)
        if plain:
            data: Any = await asyncio.to_thread(engine.to_arrow, scratch)
        else:
            data = await asyncio.to_thread(engine.frame, scratch)
        parts.append((key, data, rows))

    before = state.meter.snapshot()
    results = await _answer_parts(scope, parts, query, name, plain)
    calls = (state.meter.snapshot() - before).calls
    failed = [(p[0], err) for p, (_, err) in zip(parts, results, strict=True) if err]
    table = pa.table(
        {
            partition_column: keys.values,  # the keys in their own type, uncut
            "answer": _answer_column([value for value, _ in results]),
        }
    )
    await asyncio.to_thread(engine.register, name, table, replace=True)
    text = await describe_view(scope, name, table.num_rows, preview=10)
    mode = "plain calls with rows inlined" if plain else f"sub-runs at depth {scope.depth + 1}"
    text = f"{len(parts)} partitions answered by {mode} ({calls} model calls). " + text
    if failed:
        shown = "; ".join(f"{k}: {cut(e, 80)}" for k, e in failed[:5])
        text += f"\n{len(failed)} partitions without an answer (answer null): {shown}"
    rows_in = sum(p[2] for p in parts)
    return ToolOutcome(text=cut(text, 2000), rows_in=rows_in, rows_out=len(parts), sub_calls=calls)


def too_many_partitions(view: str, column: str, partitions: int) -> str:
    """The tool error for a ``recurse`` over more than :data:`MAX_RECURSE_PARTITIONS` keys.

    Examples
    --------
    >>> print(too_many_partitions("subset", "user_id", 300))  # doctest: +NORMALIZE_WHITESPACE
    view `subset` has 300 partitions by `user_id`; recurse handles at most 64: filter `subset`
    to fewer values first, or partition it into fewer chunks (partition view=subset n=64,
    then recurse with partition_column=partition)
    """
    m = MAX_RECURSE_PARTITIONS
    return (
        f"view `{view}` has {partitions} partitions by `{cut(column, 80)}`; recurse handles at "
        f"most {m}: filter `{view}` to fewer values first, or partition it into fewer chunks "
        f"(partition view={view} n={m}, then recurse with partition_column=partition)"
    )


async def _answer_parts(
    scope: Scope, parts: list[tuple[Any, Any, int]], query: str, name: str, plain: bool
) -> list[tuple[Any, str | None]]:
    """Answer every partition, at most ``max_parallel`` at once, within the scope's limits."""
    from rlm_pipeline.llm.client import LLMClient

    state = scope.state
    if plain or not scope.engine.fans_out_in_tasks or not parts:
        # One client for every branch: its semaphore and limiters bound them all.
        semaphore = asyncio.Semaphore(state.max_parallel)
        shared_branch = (scope.client, scope.llm)

        async def shared(key: Any, data: Any, rows: int) -> tuple[Any, str | None]:
            async with semaphore:
                return await _answer_part(scope, key, data, rows, query, name, plain, shared_branch)

        return await _gather_all_or_none([shared(*p) for p in parts])
    # Fan-outs as tasks (Spark): k slots, each a client built from an exact share of the
    # scope's config.
    k = min(state.max_parallel, len(parts), scope.llm.max_concurrency)
    share = scope.llm.share(k)
    logger.debug(
        "recurse on spark: %d slots, each max_concurrency %d rpm %s tpm %s",
        k,
        share.max_concurrency,
        share.rpm,
        share.tpm,
    )
    clients = [LLMClient(share, meter=state.meter, budget=state.budget) for _ in range(k)]
    slots: asyncio.Queue[LLMClient] = asyncio.Queue()
    for client in clients:
        slots.put_nowait(client)

    async def slotted(key: Any, data: Any, rows: int) -> tuple[Any, str | None]:
        client = await slots.get()
        try:
            return await _answer_part(scope, key, data, rows, query, name, plain, (client, share))
        finally:
            slots.put_nowait(client)

    try:
        return await _gather_all_or_none([slotted(*p) for p in parts])
    finally:
        for client in clients:
            await client.aclose()


async def _gather_all_or_none(coros: list[Coroutine[Any, Any, T]]) -> list[T]:
    """Await ``coros`` concurrently; if one raises, cancel the others and wait for them.

    Plain :func:`asyncio.gather` leaves the siblings of a failed task running, so
    a budget error in one partition would let the other sub-runs go on calling
    the model and writing trace records after the run has ended.
    """
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def _answer_part(
    scope: Scope,
    key: Any,
    data: Any,
    rows: int,
    query: str,
    name: str,
    plain: bool,
    branch: tuple[LLMClient, LLM],
) -> tuple[Any, str | None]:
    """The answer for one partition and an error text (or None).

    ``branch`` is the client (and its config) the partition's model calls use.
    """
    state = scope.state
    path = f"{scope.path}/{name}=" + cut(str(key), 40).replace("/", "_")
    try:
        if plain:
            if data is None:
                return (
                    None,
                    f"{rows} rows is too many to inline (max {MAX_INLINE_ROWS}); filter first",
                )
            text, stats = await answer_inline(
                state, query, data, scope.text_column, client=branch[0]
            )
            state.steps.record(
                depth=scope.depth + 1,
                path=path,
                kind="model",
                arguments={"query": cut(query, 500)},
                result_summary=cut(text, 300),
                rows_in=rows,
                sub_calls=stats.calls,
                input_tokens=stats.input_tokens,
                output_tokens=stats.output_tokens,
                extra={"plain": True, "max_prompt_tokens": stats.max_prompt_tokens},
            )
            return (parse_value(text), None) if text else (None, "empty reply")
        engine = await asyncio.to_thread(scope.engine.open_child, data)
        client, llm = branch
        sub = Scope(state, engine, scope.depth + 1, path, scope.text_column, client=client, llm=llm)
        try:
            result = await state.run_loop(sub, query)
        finally:
            await asyncio.to_thread(engine.close)  # the sub-run's views go with it
        if not result.answered:
            return None, f"sub-run gave no answer ({result.stop_reason})"
        return result.value, None
    except (BudgetExceededError, LLMEndpointError):
        raise
    except RLMPipelineError as exc:
        logger.info("partition %r failed: %s", key, exc)
        return None, f"{type(exc).__name__}: {exc}"


def _answer_column(values: list[Any]) -> pa.Array:
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return pa.array(values, type=pa.int64())
    if present and all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        return pa.array([None if v is None else float(v) for v in values], type=pa.float64())
    return pa.array(
        [None if v is None else v if isinstance(v, str) else json.dumps(v) for v in values],
        type=pa.string(),
    )
