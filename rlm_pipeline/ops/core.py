"""Pure async operators: texts in, one ``(value, error)`` per text out, none lost.

The steps, in order:

1. **skip** nulls and blank strings (``empty_input``; they are never sent);
2. **dedup** identical texts: each distinct text is asked once and its answer
   joined back to every row that has it (a shared :class:`Memo` extends this
   across calls, e.g. over the slices of a stream);
3. **batch** ``spec.batch_size`` distinct texts per call, numbered 0..n-1;
4. **check** the reply row by row (:mod:`rlm_pipeline.ops.reply`);
5. **re-ask** only the rows whose answer was missing or bad: a batch that
   failed as a whole is split in halves, a failed subset is asked again on
   its own, and a single row gets one retry; after that the row gets a null
   value and the reason.

An :class:`~rlm_pipeline.errors.LLMError` raised by the client (after its own
retries) gives ``api_error: ...`` to the rows of that call.  A
:class:`~rlm_pipeline.errors.BudgetExceededError` stops the run cleanly: calls
already answered are kept, every row not yet answered gets ``budget_exceeded``.

The client is anything with the ``json`` coroutine of
:class:`rlm_pipeline.llm.client.LLMClient` (see :class:`JsonClient`).

Examples
--------
>>> import asyncio
>>> from rlm_pipeline.ops.spec import ClassifySpec
>>> class Echo:  # answers "b" for every row
...     async def json(self, messages, schema, *, name, max_tokens=None, prompt_version=None):
...         rows = messages[-1]["content"].split("Rows:\\n")[1].splitlines()
...         return {"results": [{"id": i, "label": "b"} for i in range(len(rows))]}, None
>>> spec = ClassifySpec("text", ("a", "b"))
>>> asyncio.run(classify_texts(["x", None, "x", " "], Echo(), spec))
[('b', None), (None, 'empty_input'), ('b', None), (None, 'empty_input')]
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from rlm_pipeline.errors import BudgetExceededError, LLMError, LLMResponseParseError
from rlm_pipeline.ops.prompts import PROMPT_VERSION, build_messages, reply_name, reply_schema
from rlm_pipeline.ops.reply import check_reply, parse_raw
from rlm_pipeline.ops.spec import ClassifySpec, MapSpec, OpSpec

__all__ = [
    "EMPTY_INPUT",
    "JsonClient",
    "Memo",
    "RowProgress",
    "RowResult",
    "apply_texts",
    "classify_texts",
    "llm_map_texts",
]

logger = logging.getLogger(__name__)

#: One output row: the value (label) or None, and None or the reason it is missing.
RowResult = tuple[Any, str | None]
#: Called with (rows finished, of which failed) as rows finish; must be cheap and not raise.
RowProgress = Callable[[int, int], None]

EMPTY_INPUT = "empty_input"
_EMPTY: RowResult = (None, EMPTY_INPUT)


class JsonClient(Protocol):
    """What the operators need from a client: one structured-output call."""

    async def json(
        self,
        messages: list[dict[str, Any]],
        schema: dict[str, Any],
        *,
        name: str,
        max_tokens: int | None = None,
        prompt_version: str | None = None,
    ) -> tuple[dict[str, Any], Any]: ...


class Memo:
    """Answers already asked for in this run (text -> future result).

    Share one memo between calls of :func:`apply_texts` in the same event
    loop to dedup across slices of a stream.  ``max_size`` bounds memory: when
    it is passed, finished entries are dropped (a later repeat is asked again,
    usually from the response cache).
    """

    def __init__(self, max_size: int = 500_000) -> None:
        self.max_size = max_size
        self._futures: dict[str, asyncio.Future[RowResult]] = {}

    def get(self, text: str) -> asyncio.Future[RowResult] | None:
        """The pending or finished answer for ``text``, if asked already."""
        return self._futures.get(text)

    def put(self, text: str, future: asyncio.Future[RowResult]) -> None:
        """Remember ``future`` as the answer for ``text``."""
        if len(self._futures) >= self.max_size:
            self._futures = {t: f for t, f in self._futures.items() if not f.done()}
        self._futures[text] = future

    def __len__(self) -> int:
        return len(self._futures)


class _Run:
    """State of one :func:`apply_texts` call: client, spec, and the budget stop flag."""

    def __init__(self, client: JsonClient, spec: OpSpec) -> None:
        self.client = client
        self.spec = spec
        self.schema = reply_schema(spec)
        self.name = reply_name(spec)
        self.stopped: str | None = None  # the budget_exceeded reason once the budget is hit

    async def ask(self, texts: list[str], *, retry: bool = True) -> list[RowResult]:
        """Answers for ``texts`` (one call, then re-asks of the rows that failed)."""
        if self.stopped is not None:
            return [(None, self.stopped)] * len(texts)
        outcome, final = await self._call(texts)
        if final:  # budget hit or api error (the client retried already): no re-ask
            return outcome
        bad = [i for i, (_, error) in enumerate(outcome) if error is not None]
        if not bad:
            return outcome
        if len(texts) == 1:
            if not retry:
                return outcome
            logger.debug("re-asking one row after %s", outcome[0][1])
            return await self.ask(texts, retry=False)
        if len(bad) == len(texts):
            mid = len(texts) // 2
            first, second = await asyncio.gather(self.ask(texts[:mid]), self.ask(texts[mid:]))
            return first + second
        logger.debug("re-asking %d of %d rows", len(bad), len(texts))
        again = await self.ask([texts[i] for i in bad])
        merged = list(outcome)
        for i, result in zip(bad, again, strict=True):
            merged[i] = result
        return merged

    async def _call(self, texts: list[str]) -> tuple[list[RowResult], bool]:
        """One model call: the checked rows, and True when the failure is final."""
        messages = build_messages(self.spec, texts)
        try:
            obj, _reply = await self.client.json(
                messages, self.schema, name=self.name, prompt_version=PROMPT_VERSION
            )
        except BudgetExceededError as exc:
            if self.stopped is None:
                self.stopped = f"budget_exceeded: {exc}"
                logger.info("stopping: %s", exc)
            return [(None, self.stopped)] * len(texts), True
        except LLMResponseParseError as exc:
            parsed = parse_raw(exc.raw)
            if parsed is None:
                return [(None, "parse_error: reply is not a JSON object")] * len(texts), False
            return check_reply(parsed, len(texts), self.spec), False
        except LLMError as exc:
            return [(None, f"api_error: {exc}")] * len(texts), True
        outcome = check_reply(obj, len(texts), self.spec)
        if any(error is not None for _, error in outcome):
            self._forget(messages)
        return outcome, False

    def _forget(self, messages: list[dict[str, Any]]) -> None:
        """Drop a cached reply that validated against the schema but failed our checks.

        The client caches every reply that matches the schema; one with a wrong
        id or a bad label must not be served again to a retry or a re-run.
        """
        cache = getattr(self.client, "cache", None)
        config = getattr(self.client, "config", None)
        if cache is None or config is None:
            return
        from rlm_pipeline.llm.cache import json_key
        from rlm_pipeline.llm.reply import ChatReply

        key = json_key(config, messages, self.schema, name=self.name, prompt_version=PROMPT_VERSION)
        delete = getattr(cache, "delete", None)
        if callable(delete):
            delete(key)
        else:  # a stored reply without content never validates, so it reads as a miss
            cache.put(key, ChatReply(content=None))


def _is_blank(text: object) -> bool:
    return not isinstance(text, str) or not text.strip()


async def apply_texts(
    texts: Sequence[str | None],
    client: JsonClient,
    spec: OpSpec,
    *,
    memo: Memo | None = None,
    progress: RowProgress | None = None,
) -> list[RowResult]:
    """Run ``spec`` over ``texts``: one ``(value, error)`` per input, in input order.

    Parameters
    ----------
    texts
        Input texts; None and blank strings are not sent (``empty_input``).
    client
        An :class:`~rlm_pipeline.llm.client.LLMClient` (or anything with its
        ``json`` coroutine); its concurrency limit bounds the calls in flight.
    spec
        A :class:`ClassifySpec` or :class:`MapSpec`.
    memo
        Share answers across calls in the same event loop (optional).
    progress
        Called with ``(rows_finished, rows_failed)`` increments.

    Returns
    -------
    list of (value, error)
        Exactly ``len(texts)`` entries; ``error`` is None or a reason starting
        with ``empty_input``, ``parse_error``, ``invalid_label``,
        ``missing_in_reply``, ``api_error`` or ``budget_exceeded``.
    """
    memo = memo if memo is not None else Memo()
    run = _Run(client, spec)
    loop = asyncio.get_running_loop()
    counts: dict[str, int] = {}
    fresh: list[str] = []
    waiting: list[str] = []  # texts answered (or being answered) by an earlier call
    empties = 0
    for text in texts:
        if not isinstance(text, str) or not text.strip():
            empties += 1
            continue
        if text in counts:
            counts[text] += 1
            continue
        counts[text] = 1
        if memo.get(text) is None:
            memo.put(text, loop.create_future())
            fresh.append(text)
        else:
            waiting.append(text)
    if progress is not None and empties:
        progress(empties, empties)

    async def one_batch(batch: list[str]) -> None:
        try:
            results = await run.ask(batch)
        except BaseException as exc:  # cancelled or a bug: never leave a future pending
            for text in batch:
                future = memo.get(text)
                if future is not None and not future.done():
                    future.set_exception(exc)
            raise
        failed = 0
        rows = 0
        for text, result in zip(batch, results, strict=True):
            future = memo.get(text)
            if future is not None and not future.done():
                future.set_result(result)
            rows += counts[text]
            failed += counts[text] if result[1] is not None else 0
        if progress is not None:
            progress(rows, failed)

    size = spec.batch_size
    batches = [fresh[i : i + size] for i in range(0, len(fresh), size)]
    futures = {text: memo.get(text) for text in counts}
    if batches:
        await asyncio.gather(*(one_batch(batch) for batch in batches))
    if waiting:
        done = [text for text in waiting if futures[text] is not None]
        await asyncio.gather(*(f for f in (futures[t] for t in done) if f is not None))
        if progress is not None:
            rows = sum(counts[t] for t in done)
            failed = sum(counts[t] for t in done if _result(futures[t])[1] is not None)
            progress(rows, failed)
    out: list[RowResult] = []
    for text in texts:
        if _is_blank(text):
            out.append(_EMPTY)
        else:
            out.append(_result(futures[text]))  # type: ignore[index]
    return out


def _result(future: asyncio.Future[RowResult] | None) -> RowResult:
    if future is None:  # pragma: no cover - every sent text has a future
        return (None, "missing_in_reply: internal bookkeeping lost this row")
    return future.result()


async def classify_texts(
    texts: Sequence[str | None],
    client: JsonClient,
    spec: ClassifySpec,
    *,
    memo: Memo | None = None,
    progress: RowProgress | None = None,
) -> list[RowResult]:
    """Labels for ``texts``: :func:`apply_texts` with a :class:`ClassifySpec`."""
    return await apply_texts(texts, client, spec, memo=memo, progress=progress)


async def llm_map_texts(
    texts: Sequence[str | None],
    client: JsonClient,
    spec: MapSpec,
    *,
    memo: Memo | None = None,
    progress: RowProgress | None = None,
) -> list[RowResult]:
    """Values for ``texts``: :func:`apply_texts` with a :class:`MapSpec`."""
    return await apply_texts(texts, client, spec, memo=memo, progress=progress)
