"""Pure async operators: texts in, one ``(value, error)`` per text out, none lost.

The steps, in order:

1. **skip** nulls and blank strings (``empty_input``; they are never sent) and
   cells longer than ``spec.max_row_tokens`` estimated tokens
   (``input_too_long``, never sent), or cut them to the limit when
   ``spec.truncate`` (:func:`~rlm_pipeline.ops.spec.fit_text`);
2. **dedup** identical texts: each distinct text is asked once and its answer
   joined back to every row that has it (a shared :class:`~rlm_pipeline.ops.memo.Memo` extends this
   across calls, e.g. over the slices of a stream);
3. **look up** every distinct text in the stored row answers (:class:`~rlm_pipeline.ops.memo.RowStore`,
   in the client's cache file): a text answered by an earlier run is not sent;
4. **batch** ``spec.batch_size`` of the remaining texts per call, numbered 0..n-1,
   worked on in input order by a pool of twice the client's concurrency limit
   (so its slots stay full and a large input is not one task per batch);
5. **check** the reply row by row (:mod:`rlm_pipeline.ops.reply`) and **store**
   each row that passed (failures are never stored); stores are written in one
   transaction per :data:`~rlm_pipeline.ops.memo.STORE_FLUSH_ROWS` rows or :data:`~rlm_pipeline.ops.memo.STORE_FLUSH_S`
   seconds, whichever comes first, and always before :func:`apply_texts`
   returns or is cancelled — a process killed hard loses at most that window
   (those calls are usually still in the request-level cache);
6. **re-ask** only the rows whose answer was missing or bad: a batch that
   failed as a whole is split in halves, a failed subset is asked again on
   its own, and a single row gets one retry; after that the row gets a null
   value and the reason.

Row answers are keyed by the text and the parameters that shape its answer
(endpoint, model, temperature, :data:`~rlm_pipeline.ops.prompts.PROMPT_VERSION`,
the spec's ``answer_params()``), not by the batch, so a
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

**Reply breaker.**  When the first :data:`REPLY_BREAKER_CALLS` calls of a run
that got a reply all failed on every row for a reply-shape reason
(``parse_error``, ``invalid_label``, ``missing_in_reply``) and no call so far
answered any row, the model or server cannot follow the format: the run stops
with an :class:`~rlm_pipeline.errors.LLMResponseParseError` naming the
endpoint, the model, the reason and a hint, instead of halving batches down to
single rows for every input row.  One answered row disarms it for the run;
isolated bad replies stay per-row reasons.  A run is one :func:`apply_texts`
call, or all calls sharing one :class:`~rlm_pipeline.ops.memo.Memo` (the
slices of a stream).

The client is an :class:`rlm_pipeline.llm.client.LLMClient`; what the
operators use of it is spelled out by :class:`OpsClient`.  The row store and
the run memo live in :mod:`rlm_pipeline.ops.memo`.

Examples
--------
>>> import asyncio
>>> from rlm_pipeline.llm.client import LLMClient
>>> from rlm_pipeline.llm.config import LLM
>>> from rlm_pipeline.ops.spec import ClassifySpec
>>> async def main():  # blank rows are answered without a call
...     async with LLMClient(LLM(model="m", base_url="http://127.0.0.1:9/v1")) as client:
...         return await classify_texts([None, " "], client, ClassifySpec("text", ("a", "b")))
>>> asyncio.run(main())
[(None, 'empty_input'), (None, 'empty_input')]
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import weakref
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import compress, filterfalse, repeat
from operator import attrgetter, contains, is_not, itemgetter, not_
from typing import Any, Protocol, runtime_checkable

from rlm_pipeline.errors import (
    BudgetExceededError,
    LLMEndpointError,
    LLMError,
    LLMResponseParseError,
)
from rlm_pipeline.llm.cache import ResponseCache
from rlm_pipeline.llm.config import LLM
from rlm_pipeline.llm.tokens import CHARS_PER_TOKEN
from rlm_pipeline.llm.usage import Usage, UsageMeter
from rlm_pipeline.ops.memo import Claim, Memo, RowResult, RowStore
from rlm_pipeline.ops.prompts import PROMPT_VERSION
from rlm_pipeline.ops.reply import check_reply, parse_raw
from rlm_pipeline.ops.spec_base import OpSpec, fit_text
from rlm_pipeline.ops.stats import EMPTY_INPUT

__all__ = [
    "REPLY_BREAKER_CALLS",
    "REPLY_SHAPE_KINDS",
    "CachedRowsProgress",
    "OpsClient",
    "RowProgress",
    "RowResult",
    "Tally",
    "apply_texts",
    "classify_texts",
    "llm_map_texts",
    "reply_breaker_error",
]

logger = logging.getLogger(__name__)

#: Called with (rows finished, of which failed) as rows finish; must be cheap and not raise.
RowProgress = Callable[[int, int], None]

_EMPTY: RowResult = (None, EMPTY_INPUT)
_LOST: RowResult = (None, "missing_in_reply: internal bookkeeping lost this row")

#: Calls that must all fail on every row (reply-shape reasons), none answered, to stop a run.
REPLY_BREAKER_CALLS = 8
#: Reasons that say the reply's shape was wrong (not the endpoint, not the row's input).
REPLY_SHAPE_KINDS = ("parse_error", "invalid_label", "missing_in_reply")
_SHAPE_HINTS = {
    "parse_error": (
        "replies are not valid JSON — does the server support response_format / is the "
        "model able to follow the format? try --batch-size 1 (batch_size=1)"
    ),
    "invalid_label": (
        "replies name labels outside the set — check the labels and instructions, "
        "or try a model able to follow them"
    ),
    "missing_in_reply": (
        "replies do not answer the numbered rows — try --batch-size 1 (batch_size=1)"
    ),
}


class OpsClient(Protocol):
    """What the operators need from a client; :class:`~rlm_pipeline.llm.client.LLMClient` is one.

    ``config``: its ``max_concurrency`` sizes the pool of batches in flight;
    endpoint, model and temperature key the row store.  ``cache``: the file
    holding the row store (None: no store).  ``meter``: the calls that stored
    row answers saved are recorded there as cached calls.  ``json``: one
    structured call whose reply is cached only when ``accept`` takes it.
    """

    @property
    def config(self) -> LLM: ...

    @property
    def meter(self) -> UsageMeter: ...

    @property
    def cache(self) -> ResponseCache | None: ...

    async def json(
        self,
        messages: list[dict[str, Any]],
        schema: dict[str, Any],
        *,
        name: str,
        max_tokens: int | None = None,
        prompt_version: str | None = None,
        accept: Callable[[dict[str, Any]], bool] | None = None,
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


class _ReplyBreaker:
    """Stops a run whose first calls all came back unusable (see the module docstring)."""

    __slots__ = ("answered", "failed", "kinds", "raw", "tripped")

    def __init__(self) -> None:
        self.answered = False  # a call answered at least one row: disarmed for the run
        self.failed = 0  # calls whose every row failed for a reply-shape reason
        self.kinds: dict[str, int] = {}
        self.raw = ""
        self.tripped: LLMResponseParseError | None = None

    def check(self) -> None:
        """Raise again once tripped (later calls of the run send nothing)."""
        if self.tripped is not None:
            raise LLMResponseParseError(_first_line(self.tripped), raw=self.tripped.raw)

    def record(self, outcome: list[RowResult], raw: str, config: LLM) -> None:
        """Count one call's checked rows; raise when the breaker trips."""
        if self.answered:
            return
        if any(error is None for _, error in outcome):
            self.answered = True
            return
        kinds = [(error or "").split(":", 1)[0] for _, error in outcome]
        if not kinds or any(kind not in REPLY_SHAPE_KINDS for kind in kinds):
            return
        self.failed += 1
        for kind in kinds:
            self.kinds[kind] = self.kinds.get(kind, 0) + 1
        self.raw = raw
        if self.failed < REPLY_BREAKER_CALLS or self.tripped is not None:
            return
        kind = max(self.kinds, key=lambda k: self.kinds[k])
        endpoint = config.resolved_base_url() or "the default endpoint"
        msg = (
            f"no usable reply in the first {self.failed} calls to {endpoint} "
            f"(model {config.model}): {_SHAPE_HINTS[kind]}"
        )
        logger.debug("stopping: %s", msg)
        self.tripped = LLMResponseParseError(msg, raw=raw)
        raise self.tripped


def _first_line(exc: LLMResponseParseError) -> str:
    """The message of a reply-breaker error without its ``; raw reply: ...`` tail."""
    return str(exc).split("; raw reply: ", 1)[0]


def reply_breaker_error(text: str) -> LLMResponseParseError | None:
    """The reply-breaker error named in ``text`` (a Spark task's traceback), if any.

    Examples
    --------
    >>> text = "Traceback ...\\nrlm_pipeline.errors.LLMResponseParseError: no usable reply in "
    >>> err = reply_breaker_error(text + "the first 8 calls to http://127.0.0.1:9/v1 (model m): x; raw reply: '{'")
    >>> str(err)
    "no usable reply in the first 8 calls to http://127.0.0.1:9/v1 (model m): x; raw reply: '{'"
    >>> reply_breaker_error("ValueError: nope") is None
    True
    """
    found = re.findall(r"LLMResponseParseError: (no usable reply in the first [^\r\n]+)", text)
    if not found:
        return None
    message, _, raw = found[-1].strip().partition("; raw reply: ")
    return LLMResponseParseError(message, raw=raw[1:-1] if len(raw) >= 2 else raw)


#: One breaker per shared memo (the slices of one stream are one run).
_BREAKERS: weakref.WeakKeyDictionary[Memo, _ReplyBreaker] = weakref.WeakKeyDictionary()


class _Run:
    """State of one :func:`apply_texts` call: client, spec, the budget stop flag, the breaker."""

    def __init__(self, client: OpsClient, spec: OpSpec, breaker: _ReplyBreaker) -> None:
        self.client = client
        self.spec = spec
        self.schema = spec.reply_schema()
        self.name = spec.reply_name()
        self.stopped: str | None = None  # the budget_exceeded reason once the budget is hit
        self.store = RowStore.of(client.cache, client.config, spec)
        self.breaker = breaker

    async def ask(self, texts: list[str], *, retry: bool = True) -> list[RowResult]:
        """Answers for ``texts`` (one call, then re-asks of the rows that failed)."""
        self.breaker.check()
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
        messages = self.spec.messages(texts)
        check = _RowCheck(len(texts), self.spec)
        try:
            obj, _reply = await self.client.json(
                messages, self.schema, name=self.name, prompt_version=PROMPT_VERSION, accept=check
            )
        except BudgetExceededError as exc:
            if self.stopped is None:
                self.stopped = f"budget_exceeded: {exc}"
                logger.info("stopping: %s", exc)
            return [(None, self.stopped)] * len(texts), True
        except LLMResponseParseError as exc:
            parsed = parse_raw(exc.raw)
            outcome: list[RowResult]
            if parsed is None:
                outcome = [(None, "parse_error: reply is not a JSON object")] * len(texts)
            else:
                outcome = check_reply(parsed, len(texts), self.spec)
                self._store(texts, outcome)
            self.breaker.record(outcome, exc.raw, self.client.config)
            return outcome, False
        except LLMEndpointError:
            raise  # systemic (the client's breaker tripped): stop the run, never api_error rows
        except LLMError as exc:
            return [(None, f"api_error: {exc}")] * len(texts), True
        annotate = getattr(self.spec, "annotate_reply", None)
        if annotate is not None:  # answers with more than the JSON says (a cascade's confidences)
            outcome = check.rows(annotate(obj, _reply))
        else:
            outcome = check.outcome if check.outcome is not None else check.rows(obj)
        self._store(texts, outcome)
        self.breaker.record(outcome, _raw_text(obj), self.client.config)
        return outcome, False

    def _store(self, texts: list[str], outcome: list[RowResult]) -> None:
        """Keep the rows of one call that passed the checks (failures never)."""
        if self.store is not None:
            self.store.save(texts, outcome)


def _raw_text(obj: Any) -> str:
    """A parsed reply as text again (for the reply breaker's message)."""
    try:
        return json.dumps(obj, ensure_ascii=False)[:300]
    except (TypeError, ValueError):
        return repr(obj)[:300]


class _RowCheck:
    """The ``accept`` check of one call: every row's id and answer (stricter than the schema).

    The client caches a reply only when every row passed, so a reply with a
    wrong id or a bad label is never served again; the rows of the last
    object checked are kept for the caller.
    """

    __slots__ = ("n", "outcome", "spec")

    def __init__(self, n: int, spec: OpSpec) -> None:
        self.n = n
        self.spec = spec
        self.outcome: list[RowResult] | None = None

    def rows(self, obj: dict[str, Any]) -> list[RowResult]:
        self.outcome = check_reply(obj, self.n, self.spec)
        return self.outcome

    def __call__(self, obj: dict[str, Any]) -> bool:
        return all(error is None for _, error in self.rows(obj))


def _pool_size(client: OpsClient) -> int:
    """How many batches to work on at once: twice the client's concurrency limit.

    More than the limit, so the client's slots stay full while some calls
    wait out a retry backoff; bounded, so a million rows do not become a
    million pending tasks.
    """
    return 2 * client.config.max_concurrency


async def apply_texts(
    texts: Sequence[str | None],
    client: OpsClient,
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
        An :class:`~rlm_pipeline.llm.client.LLMClient` (see :class:`OpsClient`);
        its concurrency limit bounds the calls in flight.
    spec
        The operator (:class:`~rlm_pipeline.ops.spec_base.OpSpec`).
    memo
        Share answers across calls in the same event loop (optional).
    progress
        Called with ``(rows_finished, rows_failed)`` increments (and
        ``add_cached`` when a :class:`CachedRowsProgress`).
    tally
        Rows served from the row store are added here.

    Returns
    -------
    list of (value, error)
        Exactly ``len(texts)`` entries; ``error`` is None or a reason starting
        with one of :data:`~rlm_pipeline.ops.stats.ERROR_KINDS`.

    Raises
    ------
    LLMEndpointError
        The client's circuit breaker tripped (endpoint down, key refused, ...).
    LLMResponseParseError
        The reply breaker tripped: the first :data:`REPLY_BREAKER_CALLS` calls
        answered no row, every row failing for a reply-shape reason.
    """
    breaker = _ReplyBreaker() if memo is None else _BREAKERS.setdefault(memo, _ReplyBreaker())
    run = _Run(client, spec, breaker)
    claim = Claim(asyncio.get_running_loop().create_future())
    texts, too_long = _fit_rows(texts, spec)  # a too-long row's text reads as None here
    asked = _Asked.split(texts, memo if memo is not None else Memo(), claim)
    if progress is not None and asked.unsent:
        progress(asked.unsent, asked.unsent)
    await _settle(asked, claim, run, progress, tally)
    out = asked.results(texts, claim)
    for i, result in too_long.items():
        out[i] = result
    return out


async def _settle(
    asked: _Asked, claim: Claim, run: _Run, progress: RowProgress | None, tally: Tally | None
) -> None:
    """Answer this call's texts, wait for those earlier calls ask, and resolve ``claim``.

    The claim gets the exception too, so calls waiting on it fail and never
    hang; the row store is flushed however the call ends (also when cancelled:
    a stopped run keeps what it was told).
    """
    try:
        await _answer(asked.fresh, claim, asked.counts, run, progress, tally)
        if asked.waiting:
            await _wait_for(asked.waiting, asked.counts, progress, tally)
    except BaseException as exc:
        claim.done.set_exception(exc)
        claim.done.exception()  # retrieved: no "never retrieved" warning when none waits
        raise
    else:
        claim.done.set_result(None)
    finally:
        if run.store is not None:
            run.store.flush()


@dataclass
class _Asked:
    """The texts of one call sorted out: distinct texts and their rows, which to ask, which wait.

    Attributes
    ----------
    counts
        Rows per distinct non-blank text.
    fresh
        Texts this call asks for (claimed in the memo), in input order.
    waiting
        Texts an earlier call asks for, and its claim (kept here: a shared memo
        may drop it meanwhile).
    unsent
        Rows blank or too long: answered without a call.
    blank
        The distinct cells among them (None, blank strings), or None when a
        cell is unhashable (the rows are then sorted out one by one).
    """

    counts: dict[str, int]
    fresh: list[str]
    waiting: dict[str, Claim]
    unsent: int
    blank: list[Any] | None = None

    @classmethod
    def split(cls, texts: Sequence[str | None], memo: Memo, claim: Claim) -> _Asked:
        hashable = True
        try:
            counts: dict[Any, int] = Counter(texts)  # one C loop over the rows
        except TypeError:  # an unhashable cell: not a text, so never sent
            hashable = False
            counts = Counter(t if isinstance(t, str) else None for t in texts)
        blank = _blank_cells(counts)
        unsent = sum(counts.pop(t) for t in blank)
        fresh, waiting = memo.claim_new(counts, claim)
        return cls(counts, fresh, waiting, unsent, blank if hashable else None)

    def results(self, texts: Sequence[str | None], claim: Claim) -> list[RowResult]:
        """The answer of every input row, in order (``claim``: this call's)."""
        answers: dict[Any, RowResult] = dict(claim.results)
        answers.update(zip(self.waiting, _answers_of(self.waiting), strict=True))
        get = answers.get
        if self.blank is not None:  # every cell is a key of ``answers`` or lost
            answers.update(dict.fromkeys(self.blank, _EMPTY))
            return list(map(get, texts, repeat(_LOST)))
        return [
            get(text, _LOST) if isinstance(text, str) and text.strip() else _EMPTY for text in texts
        ]


def _blank_cells(counts: dict[Any, int]) -> list[Any]:
    """The cells among ``counts``' keys never sent: None, blank strings, anything not a text."""
    cells = list(counts)
    try:  # all texts (and None): stripped in one C loop
        texts = [t for t in cells if t is not None] if None in counts else cells
        blank = list(compress(texts, map(not_, map(str.strip, texts))))
    except TypeError:
        return [t for t in cells if not isinstance(t, str) or not t.strip()]
    return [None, *blank] if None in counts else blank


def _fit_rows(
    texts: Sequence[str | None], spec: OpSpec
) -> tuple[Sequence[str | None], dict[int, RowResult]]:
    """``texts`` with long cells cut (``spec.truncate``) or, when too long to send, None;
    and the results of the rows too long to send, by position.

    The input sequence is returned as is when no cell passes the limit.
    """
    limit = spec.max_row_tokens * CHARS_PER_TOKEN
    try:  # the longest cell, without a Python step per row (None and "" are skipped)
        longest = max(map(len, filter(None, texts)), default=0)
    except TypeError:  # a cell that is not a text
        longest = max((len(t) for t in texts if isinstance(t, str)), default=0)
    if longest <= limit:
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
        fresh = await _from_store(
            run.store, fresh, claim, counts, run.client, spec, progress, tally
        )

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
    await asyncio.gather(*(c.done for c in set(waiting.values())))
    rows_of = list(map(counts.__getitem__, waiting))
    stored = map(contains, map(_STORED, waiting.values()), waiting)  # per text, in C
    stored_rows = sum(compress(rows_of, stored))
    if tally is not None:
        tally.cached_rows += stored_rows
    if progress is not None:
        errors = map(_ERROR, _answers_of(waiting))
        failed = sum(compress(rows_of, map(is_not, errors, repeat(None))))
        progress(sum(rows_of), failed)
        if stored_rows and isinstance(progress, CachedRowsProgress):
            progress.add_cached(stored_rows)


_STORED = attrgetter("stored")
_RESULTS = attrgetter("results")
_ERROR = itemgetter(1)


def _answers_of(waiting: dict[str, Claim]) -> Iterator[RowResult]:
    """The answer of each ``waiting`` text from the claim that asked for it (in order)."""
    return map(dict.get, map(_RESULTS, waiting.values()), waiting, repeat(_LOST))


async def _from_store(
    store: RowStore,
    fresh: list[str],
    claim: Claim,
    counts: dict[str, int],
    client: OpsClient,
    spec: OpSpec,
    progress: RowProgress | None,
    tally: Tally | None,
) -> list[str]:
    """Answer what the row store has (into ``claim``); the texts still to ask."""
    stored = await asyncio.to_thread(store.lookup, fresh)
    if not stored:
        return fresh
    results = claim.results
    try:  # one (label, None) per distinct label, not one per text
        pairs: dict[Any, RowResult] | None = {v: (v, None) for v in set(stored.values())}
    except TypeError:  # a list or dict answer
        pairs = None
    if pairs is not None and all(type(v) is str for v in pairs):  # 1, 1.0, True stay apart
        results.update(zip(stored, map(pairs.__getitem__, stored.values()), strict=True))
    else:
        for text, value in stored.items():
            results[text] = (value, None)
    claim.stored.update(stored)
    rows = sum(map(counts.__getitem__, stored))
    client.meter.add(Usage(cached_calls=-(-len(stored) // spec.batch_size)))
    if tally is not None:
        tally.cached_rows += rows
        tally.cached_texts += len(stored)
    if progress is not None:
        progress(rows, 0)
        if isinstance(progress, CachedRowsProgress):
            progress.add_cached(rows)
    logger.debug("%d texts (%d rows) answered from stored row answers", len(stored), rows)
    return list(filterfalse(stored.__contains__, fresh))


async def classify_texts(
    texts: Sequence[str | None],
    client: OpsClient,
    spec: OpSpec,
    *,
    memo: Memo | None = None,
    progress: RowProgress | None = None,
    tally: Tally | None = None,
) -> list[RowResult]:
    """Labels for ``texts``: :func:`apply_texts` with a :class:`~rlm_pipeline.ops.spec.ClassifySpec`."""
    return await apply_texts(texts, client, spec, memo=memo, progress=progress, tally=tally)


async def llm_map_texts(
    texts: Sequence[str | None],
    client: OpsClient,
    spec: OpSpec,
    *,
    memo: Memo | None = None,
    progress: RowProgress | None = None,
    tally: Tally | None = None,
) -> list[RowResult]:
    """Values for ``texts``: :func:`apply_texts` with a :class:`~rlm_pipeline.ops.spec.MapSpec`."""
    return await apply_texts(texts, client, spec, memo=memo, progress=progress, tally=tally)
