"""Pure async operators: texts in, one ``(value, error)`` per text out, none lost.

The steps, in order:

1. **skip** nulls and blank strings (``empty_input``; they are never sent) and
   cells longer than ``spec.max_row_tokens`` estimated tokens
   (``input_too_long``, never sent), or cut them to the limit when
   ``spec.truncate`` (:func:`~rlm_pipeline.ops.spec.fit_text`);
2. **dedup** identical texts: each distinct text is asked once and its answer
   joined back to every row that has it (a shared :class:`Memo` extends this
   across calls, e.g. over the slices of a stream);
3. **look up** every distinct text in the stored row answers (:class:`RowStore`,
   in the client's cache file): a text answered by an earlier run is not sent;
4. **batch** ``spec.batch_size`` of the remaining texts per call, numbered 0..n-1,
   worked on in input order by a pool of twice the client's concurrency limit
   (so its slots stay full and a large input is not one task per batch);
5. **check** the reply row by row (:mod:`rlm_pipeline.ops.reply`) and **store**
   each row that passed (failures are never stored); stores are written in one
   transaction per :data:`STORE_FLUSH_ROWS` rows or :data:`STORE_FLUSH_S`
   seconds, whichever comes first, and always before :func:`apply_texts`
   returns or is cancelled — a process killed hard loses at most that window
   (those calls are usually still in the request-level cache);
6. **re-ask** only the rows whose answer was missing or bad: a batch that
   failed as a whole is split in halves, a failed subset is asked again on
   its own, and a single row gets one retry; after that the row gets a null
   value and the reason.

Row answers are keyed by the text and the parameters that shape its answer
(endpoint, model, temperature, :data:`~rlm_pipeline.ops.prompts.PROMPT_VERSION`,
:func:`~rlm_pipeline.ops.prompts.answer_params`), not by the batch, so a
re-run with another batch size, other Spark partitions or new rows mixed in
re-uses every row answered before, and a killed run resumes where it stopped.

How stored rows are counted: a row answered from the store costs no call.
:attr:`Tally.cached_rows` (and ``OpStats.cached_rows``) counts those rows;
a progress callback that has an ``add_cached(rows)`` method
(:class:`CachedRowsProgress`) is told about them too.  The client's usage
meter, whose ``cached_calls`` counts *calls*, gets one cached call per
``batch_size`` stored texts of a chunk (rounded up): the calls the store
saved.

An :class:`~rlm_pipeline.errors.LLMError` raised by the client (after its own
retries) gives ``api_error: ...`` to the rows of that call; an
:class:`~rlm_pipeline.errors.LLMEndpointError` (the client's circuit breaker
tripped: endpoint unreachable, key refused, unknown model) is raised instead,
ending the whole call.  A
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
import inspect
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from rlm_pipeline.errors import (
    BudgetExceededError,
    LLMEndpointError,
    LLMError,
    LLMResponseParseError,
)
from rlm_pipeline.llm.cache import ResponseCache, RowKeys
from rlm_pipeline.llm.config import LLM
from rlm_pipeline.llm.tokens import CHARS_PER_TOKEN
from rlm_pipeline.llm.usage import Usage, UsageMeter
from rlm_pipeline.ops.prompts import (
    PROMPT_VERSION,
    answer_params,
    build_messages,
    reply_name,
    reply_schema,
)
from rlm_pipeline.ops.reply import check_reply, check_value, parse_raw
from rlm_pipeline.ops.spec import ClassifySpec, MapSpec, OpSpec, fit_text

__all__ = [
    "EMPTY_INPUT",
    "DEFAULT_POOL",
    "CachedRowsProgress",
    "Claim",
    "JsonClient",
    "Memo",
    "RowProgress",
    "RowResult",
    "STORE_FLUSH_ROWS",
    "STORE_FLUSH_S",
    "RowStore",
    "Tally",
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
_LOST: RowResult = (None, "missing_in_reply: internal bookkeeping lost this row")
#: Checked row answers written per transaction (at most).
STORE_FLUSH_ROWS = 512
#: Longest time a checked row answer waits before it is written.
STORE_FLUSH_S = 0.25
#: Batches worked on at once for a client that does not say its concurrency limit.
DEFAULT_POOL = 64


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


@runtime_checkable
class CachedRowsProgress(Protocol):
    """A progress callback that also wants to know about rows served from the store."""

    def __call__(self, rows: int, failed: int) -> None: ...

    def add_cached(self, rows: int) -> None:
        """``rows`` of the rows just reported came from stored answers (no call)."""


@dataclass
class Tally:
    """Counts of a run that the per-row results do not show.

    Attributes
    ----------
    cached_rows
        Rows answered from stored row answers (no model call for them).
    cached_texts
        Distinct texts among them.
    """

    cached_rows: int = 0
    cached_texts: int = 0


class RowStore:
    """Checked answers per text, in the response cache file (table ``row_answers``).

    Keys come from :func:`rlm_pipeline.llm.cache.row_key`: endpoint (resolved
    base URL), model, temperature, prompt version,
    :func:`~rlm_pipeline.ops.prompts.answer_params` and the text — not the
    batch.  Only answers that passed the checks of
    :func:`~rlm_pipeline.ops.reply.check_reply` are stored.

    Parameters
    ----------
    cache
        The open response cache (the client's).
    config
        The endpoint config (base URL, model and temperature are part of the key).
    spec
        The operator.
    """

    def __init__(self, cache: ResponseCache, config: LLM, spec: OpSpec) -> None:
        self.cache = cache
        self.spec = spec
        self._pending: dict[str, Any] = {}
        self._last_flush = time.monotonic()
        self._keys = RowKeys(
            base_url=config.resolved_base_url(),
            model=config.model,
            temperature=config.temperature,
            prompt_version=PROMPT_VERSION,
            params=answer_params(spec),
        )

    @classmethod
    def of(cls, client: Any, spec: OpSpec) -> RowStore | None:
        """The store of ``client``'s cache, or None when it has no cache."""
        cache = getattr(client, "cache", None)
        config = getattr(client, "config", None)
        if not isinstance(cache, ResponseCache) or not isinstance(config, LLM):
            return None
        return cls(cache, config, spec)

    def key(self, text: str) -> str:
        """The row-answer key of ``text`` under this store's model and spec."""
        return self._keys.key(text)

    def lookup(self, texts: Sequence[str]) -> dict[str, Any]:
        """Stored answers of the distinct ``texts`` (text -> value), misses left out.

        A stored value that no longer passes the spec's check reads as a miss.
        """
        keys = {self._keys.key(text): text for text in texts}
        found: dict[str, Any] = {}
        for key, stored in self.cache.get_rows(list(keys)).items():
            value, error = check_value(stored, self.spec)
            if error is None:
                found[keys[key]] = value
        return found

    def save(self, texts: Sequence[str], results: Sequence[RowResult]) -> None:
        """Queue the answers among ``results`` that have no error for writing.

        They are written (one transaction) once :data:`STORE_FLUSH_ROWS` are
        queued or :data:`STORE_FLUSH_S` passed since the last write; call
        :meth:`flush` when done.
        """
        for text, (value, error) in zip(texts, results, strict=True):
            if error is None and value is not None:
                self._pending[self._keys.key(text)] = value
        if (
            len(self._pending) >= STORE_FLUSH_ROWS
            or time.monotonic() - self._last_flush >= STORE_FLUSH_S
        ):
            self.flush()

    def flush(self) -> None:
        """Write the queued answers now (one transaction)."""
        self._last_flush = time.monotonic()
        if self._pending:
            pending, self._pending = self._pending, {}
            self.cache.put_rows(pending)


class Claim:
    """The texts one :func:`apply_texts` call asks for, and their answers.

    ``done`` is resolved when the call is over (or gets its exception), so a
    later call waiting on some of these texts waits on one future per claim,
    not one per text.
    """

    __slots__ = ("done", "results", "stored")

    def __init__(self, done: asyncio.Future[None]) -> None:
        self.done = done
        self.results: dict[str, RowResult] = {}
        self.stored: set[str] = set()  # texts answered from the row store


class Memo:
    """Texts already asked for in this run (text -> the :class:`Claim` asking for it).

    Share one memo between calls of :func:`apply_texts` in the same event
    loop to dedup across slices of a stream.  ``max_size`` bounds memory: when
    it is passed, texts of finished claims are dropped (a later repeat is
    asked again, usually from the stored row answers).
    """

    def __init__(self, max_size: int = 500_000) -> None:
        self.max_size = max_size
        self._claims: dict[str, Claim] = {}

    def get(self, text: str) -> Claim | None:
        """The claim that asks (or asked) for ``text``, if any."""
        return self._claims.get(text)

    def put(self, text: str, claim: Claim) -> None:
        """Record that ``claim`` asks for ``text``."""
        if len(self._claims) >= self.max_size:
            self._claims = {t: c for t, c in self._claims.items() if not c.done.done()}
        self._claims[text] = claim

    def __len__(self) -> int:
        return len(self._claims)


class _Run:
    """State of one :func:`apply_texts` call: client, spec, and the budget stop flag."""

    def __init__(self, client: JsonClient, spec: OpSpec) -> None:
        self.client = client
        self.spec = spec
        self.schema = reply_schema(spec)
        self.name = reply_name(spec)
        self.stopped: str | None = None  # the budget_exceeded reason once the budget is hit
        self.store = RowStore.of(client, spec)
        # check_reply checks every row's id and answer, which is stricter than the
        # reply schema: ask clients that can to skip their own jsonschema pass.
        self.json_options: dict[str, Any] = {"validate": False} if _takes_validate(client) else {}

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
                messages,
                self.schema,
                name=self.name,
                prompt_version=PROMPT_VERSION,
                **self.json_options,
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
            outcome = check_reply(parsed, len(texts), self.spec)
            self._store(texts, outcome)
            return outcome, False
        except LLMEndpointError:
            raise  # systemic (the client's breaker tripped): stop the run, never api_error rows
        except LLMError as exc:
            return [(None, f"api_error: {exc}")] * len(texts), True
        outcome = check_reply(obj, len(texts), self.spec)
        if any(error is not None for _, error in outcome):
            self._forget(messages)
        self._store(texts, outcome)
        return outcome, False

    def _store(self, texts: list[str], outcome: list[RowResult]) -> None:
        """Keep the rows of one call that passed the checks (failures never)."""
        if self.store is not None:
            self.store.save(texts, outcome)

    def _forget(self, messages: list[dict[str, Any]]) -> None:
        """Drop a cached reply that failed our checks.

        The client caches every reply that holds a JSON object (and matches the
        schema, unless we asked it not to validate); one with a wrong id or a
        bad label must not be served again to a retry or a re-run.
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


def _pool_size(client: object) -> int:
    """How many batches to work on at once: twice the client's concurrency limit.

    More than the limit, so the client's slots stay full while some calls
    wait out a retry backoff; bounded, so a million rows do not become a
    million pending tasks.  Clients without a ``config.max_concurrency`` get
    :data:`DEFAULT_POOL`.
    """
    limit = getattr(getattr(client, "config", None), "max_concurrency", None)
    if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
        return 2 * limit
    return DEFAULT_POOL


def _takes_validate(client: object) -> bool:
    """Whether ``client.json`` takes ``validate=`` (``LLMClient`` does; simple doubles may not)."""
    method = getattr(client, "json", None)
    if method is None:
        return False
    try:
        params = inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False
    return "validate" in params


async def apply_texts(
    texts: Sequence[str | None],
    client: JsonClient,
    spec: OpSpec,
    *,
    memo: Memo | None = None,
    progress: RowProgress | None = None,
    tally: Tally | None = None,
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
        Called with ``(rows_finished, rows_failed)`` increments; also told
        about rows served from the row store when it is a
        :class:`CachedRowsProgress`.
    tally
        Rows served from the row store are added here.

    Returns
    -------
    list of (value, error)
        Exactly ``len(texts)`` entries; ``error`` is None or a reason starting
        with ``empty_input``, ``input_too_long``, ``parse_error``,
        ``invalid_label``, ``missing_in_reply``, ``api_error`` or
        ``budget_exceeded``.
    """
    memo = memo if memo is not None else Memo()
    run = _Run(client, spec)
    claim = Claim(asyncio.get_running_loop().create_future())
    counts: dict[str, int] = {}
    fresh: list[str] = []
    waiting: dict[str, Claim] = {}  # texts an earlier call asks for, and its claim
    texts, too_long = _fit_rows(texts, spec)  # a too-long row's text reads as None here
    unsent = 0  # blank or too long: answered without a call
    for text in texts:
        if not isinstance(text, str) or not text.strip():
            unsent += 1
            continue
        if text in counts:
            counts[text] += 1
            continue
        counts[text] = 1
        earlier = memo.get(text)
        if earlier is None:
            memo.put(text, claim)
            fresh.append(text)
        else:
            waiting[text] = earlier  # kept here: a shared memo may drop it meanwhile
    if progress is not None and unsent:
        progress(unsent, unsent)
    try:
        await _answer(fresh, claim, counts, run, progress, tally)
        if waiting:
            await _wait_for(waiting, counts, progress, tally)
    except BaseException as exc:
        claim.done.set_exception(exc)  # waiting calls fail too, never hang
        claim.done.exception()  # retrieved: no "never retrieved" warning when none waits
        raise
    else:
        claim.done.set_result(None)
    finally:
        if run.store is not None:
            run.store.flush()  # also when cancelled: a stopped run keeps what it was told
    out: list[RowResult] = []
    for text in texts:
        if not isinstance(text, str) or not text.strip():
            out.append(_EMPTY)
        else:
            owner = waiting.get(text, claim)
            out.append(owner.results.get(text, _LOST))
    for i, result in too_long.items():
        out[i] = result
    return out


def _fit_rows(
    texts: Sequence[str | None], spec: OpSpec
) -> tuple[Sequence[str | None], dict[int, RowResult]]:
    """``texts`` with long cells cut (``spec.truncate``) or, when too long to send, None;
    and the results of the rows too long to send, by position.

    The input sequence is returned as is when no cell passes the limit.
    """
    limit = spec.max_row_tokens * CHARS_PER_TOKEN
    if not any(isinstance(text, str) and len(text) > limit for text in texts):
        return texts, {}
    sent = list(texts)
    too_long: dict[int, RowResult] = {}
    for i, text in enumerate(texts):
        if isinstance(text, str) and len(text) > limit and text.strip():
            fitted, reason = fit_text(text, spec)
            if reason is None:
                sent[i] = fitted
            else:
                sent[i] = None
                too_long[i] = (None, reason)
    if too_long:
        logger.debug(
            "%d rows longer than %d tokens are not sent", len(too_long), spec.max_row_tokens
        )
    return sent, too_long


async def _answer(
    fresh: list[str],
    claim: Claim,
    counts: dict[str, int],
    run: _Run,
    progress: RowProgress | None,
    tally: Tally | None,
) -> None:
    """Answer the ``fresh`` texts into ``claim.results``: stored answers, then calls."""
    spec = run.spec
    if fresh and run.store is not None:
        fresh = await _from_store(run.store, fresh, claim, counts, run.client, spec, progress, tally)

    async def one_batch(batch: list[str]) -> None:
        results = await run.ask(batch)
        failed = 0
        rows = 0
        for text, result in zip(batch, results, strict=True):
            claim.results[text] = result
            rows += counts[text]
            failed += counts[text] if result[1] is not None else 0
        if progress is not None:
            progress(rows, failed)

    size = spec.batch_size
    starts = iter(range(0, len(fresh), size))

    async def worker() -> None:
        for start in starts:  # shared: each batch is taken by one worker, in order
            await one_batch(fresh[start : start + size])

    n_workers = min(-(-len(fresh) // size), _pool_size(run.client))
    if n_workers:
        workers = [asyncio.ensure_future(worker()) for _ in range(n_workers)]
        try:
            await asyncio.gather(*workers)
        except BaseException:
            for task in workers:
                task.cancel()
            raise


async def _wait_for(
    waiting: dict[str, Claim],
    counts: dict[str, int],
    progress: RowProgress | None,
    tally: Tally | None,
) -> None:
    """Wait for the earlier calls that ask for the ``waiting`` texts; count their rows."""
    await asyncio.gather(*{id(c): c.done for c in waiting.values()}.values())
    stored_rows = sum(counts[t] for t, c in waiting.items() if t in c.stored)
    if tally is not None:
        tally.cached_rows += stored_rows
    if progress is not None:
        rows = sum(counts[t] for t in waiting)
        failed = sum(
            counts[t] for t, c in waiting.items() if c.results.get(t, _LOST)[1] is not None
        )
        progress(rows, failed)
        if stored_rows and isinstance(progress, CachedRowsProgress):
            progress.add_cached(stored_rows)


async def _from_store(
    store: RowStore,
    fresh: list[str],
    claim: Claim,
    counts: dict[str, int],
    client: Any,
    spec: OpSpec,
    progress: RowProgress | None,
    tally: Tally | None,
) -> list[str]:
    """Answer what the row store has (into ``claim``); the texts still to ask."""
    stored = await asyncio.to_thread(store.lookup, fresh)
    if not stored:
        return fresh
    rows = 0
    for text, value in stored.items():
        claim.results[text] = (value, None)
        claim.stored.add(text)
        rows += counts[text]
    saved_calls = -(-len(stored) // spec.batch_size)
    meter = getattr(client, "meter", None)
    if isinstance(meter, UsageMeter):
        meter.add(Usage(cached_calls=saved_calls))
    if tally is not None:
        tally.cached_rows += rows
        tally.cached_texts += len(stored)
    if progress is not None:
        progress(rows, 0)
        if isinstance(progress, CachedRowsProgress):
            progress.add_cached(rows)
    logger.debug("%d texts (%d rows) answered from stored row answers", len(stored), rows)
    return [text for text in fresh if text not in stored]


async def classify_texts(
    texts: Sequence[str | None],
    client: JsonClient,
    spec: ClassifySpec,
    *,
    memo: Memo | None = None,
    progress: RowProgress | None = None,
    tally: Tally | None = None,
) -> list[RowResult]:
    """Labels for ``texts``: :func:`apply_texts` with a :class:`ClassifySpec`."""
    return await apply_texts(texts, client, spec, memo=memo, progress=progress, tally=tally)


async def llm_map_texts(
    texts: Sequence[str | None],
    client: JsonClient,
    spec: MapSpec,
    *,
    memo: Memo | None = None,
    progress: RowProgress | None = None,
    tally: Tally | None = None,
) -> list[RowResult]:
    """Values for ``texts``: :func:`apply_texts` with a :class:`MapSpec`."""
    return await apply_texts(texts, client, spec, memo=memo, progress=progress, tally=tally)
