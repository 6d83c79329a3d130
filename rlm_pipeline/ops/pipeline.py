"""Answer a stream of chunks in order while the next chunk is being read.

Shared by the Polars stream (slices of a LazyFrame) and the Spark tasks
(Arrow record batches).  Up to :data:`CHUNKS_IN_FLIGHT` chunks are answered at
once; reading the next chunk happens in a worker thread so the event loop keeps
the model calls moving.  Chunks come out in the order they went in.

Examples
--------
>>> import asyncio
>>> from rlm_pipeline.llm.client import LLMClient
>>> from rlm_pipeline.llm.config import LLM
>>> from rlm_pipeline.ops.spec import ClassifySpec
>>> async def main():  # blank rows: answered without a call
...     chunks, spec = iter([[None], [" "]]), ClassifySpec("t", ("a",))
...     async with LLMClient(LLM(model="m", base_url="http://127.0.0.1:9/v1")) as client:
...         return [r async for _, r in answer_chunks(chunks, lambda c: c, spec, client)]
>>> asyncio.run(main())
[[(None, 'empty_input')], [(None, 'empty_input')]]
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from typing import Any, TypeVar

from rlm_pipeline.ops.core import OpsClient, RowProgress, RowResult, Tally, apply_texts
from rlm_pipeline.ops.memo import Memo
from rlm_pipeline.ops.spec_base import OpSpec

__all__ = ["CHUNKS_IN_FLIGHT", "answer_chunks"]

#: Chunks answered at once (the next one is read meanwhile).
CHUNKS_IN_FLIGHT = 2

T = TypeVar("T")
_END: Any = object()


async def answer_chunks(
    chunks: Iterator[T],
    texts_of: Callable[[T], Sequence[str | None]],
    spec: OpSpec,
    client: OpsClient,
    *,
    progress: RowProgress | None = None,
    memo: Memo | None = None,
    tally: Tally | None = None,
) -> AsyncGenerator[tuple[T, list[RowResult]], None]:
    """Yield ``(chunk, results)`` for every chunk, in order; dedup across chunks via ``memo``.

    Rows answered from stored row answers are counted in ``tally``.
    """
    memo = memo if memo is not None else Memo()
    pending: deque[tuple[T, asyncio.Task[list[RowResult]]]] = deque()
    try:
        while True:
            chunk = await asyncio.to_thread(next, chunks, _END)
            if chunk is _END:
                break
            task = asyncio.create_task(
                apply_texts(
                    texts_of(chunk),
                    client,
                    spec,
                    memo=memo,
                    progress=progress,
                    tally=tally,
                )
            )
            pending.append((chunk, task))
            while pending and (pending[0][1].done() or len(pending) > CHUNKS_IN_FLIGHT):
                head, head_task = pending.popleft()
                yield head, await head_task
        while pending:
            head, head_task = pending.popleft()
            yield head, await head_task
    finally:
        for _, task in pending:
            task.cancel()
