"""The row store and the run memo of the operators: answers kept per text, not per batch.

- :class:`RowStore`: checked answers per text in the response cache file
  (table ``row_store``, keys from :class:`~rlm_pipeline.llm.cache.RowKeys`):
  a text answered by an earlier run is not sent again, whatever the batch
  size, partitioning or slicing.
- :class:`Memo` and :class:`Claim`: texts already asked for within one run
  (one event loop), so the slices of a stream share one call per text.

Examples
--------
>>> import asyncio, os, tempfile
>>> from rlm_pipeline.llm.cache import ResponseCache
>>> from rlm_pipeline.llm.config import LLM
>>> from rlm_pipeline.ops.spec import ClassifySpec
>>> cache = ResponseCache(os.path.join(tempfile.mkdtemp(), "cache.sqlite"))
>>> store = RowStore(cache, LLM(model="m"), ClassifySpec("text", ("a", "b")))
>>> store.save(["hello", "bye"], [("a", None), (None, "invalid_label: c")])
>>> store.flush()
>>> store.lookup(["hello", "bye"])
{'hello': 'a'}
>>> cache.close()
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection, Iterable, Sequence
from itertools import filterfalse
from typing import Any

from rlm_pipeline.llm.cache import ResponseCache, RowKeys
from rlm_pipeline.llm.config import LLM
from rlm_pipeline.ops.prompts import PROMPT_VERSION
from rlm_pipeline.ops.spec_base import OpSpec

__all__ = [
    "MEMO_ENTRY_BYTES",
    "MEMO_MAX_BYTES",
    "MEMO_MAX_TEXTS",
    "STORE_FLUSH_ROWS",
    "STORE_FLUSH_S",
    "Claim",
    "Memo",
    "RowResult",
    "RowStore",
]

#: One output row: the value (label) or None, and None or the reason it is missing.
RowResult = tuple[Any, str | None]
#: Checked row answers written per transaction (at most).
STORE_FLUSH_ROWS = 512
#: Longest time a checked row answer waits before it is written.
STORE_FLUSH_S = 0.25
#: Most texts a :class:`Memo` holds by default.
MEMO_MAX_TEXTS = 2_000_000
#: Most bytes (estimated) a :class:`Memo` holds by default.
MEMO_MAX_BYTES = 512 * 1024 * 1024
#: Bytes one memo entry costs beyond its text's length (text object, memo and claim entries).
MEMO_ENTRY_BYTES = 260


class RowStore:
    """Checked answers per text, in the response cache file (table ``row_store``).

    Keys come from :func:`rlm_pipeline.llm.cache.row_key`: endpoint (resolved
    base URL), model, temperature, prompt version,
    the spec's ``answer_params()`` and the text — not the
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
        self._pending: dict[bytes, Any] = {}
        self._last_flush = time.monotonic()
        self._keys = RowKeys(
            base_url=config.resolved_base_url(),
            model=config.model,
            temperature=config.temperature,
            prompt_version=PROMPT_VERSION,
            params=spec.answer_params(),
        )

    @classmethod
    def of(cls, cache: ResponseCache | None, config: LLM, spec: OpSpec) -> RowStore | None:
        """The store in ``cache``, or None when there is no cache file."""
        return cls(cache, config, spec) if cache is not None else None

    def key(self, text: str) -> str:
        """The row-answer key of ``text`` under this store's model and spec."""
        return self._keys.key(text)

    def lookup(self, texts: Sequence[str]) -> dict[str, Any]:
        """Stored answers of the distinct ``texts`` (text -> value), misses left out.

        One query to the cache file for the whole sequence (up to
        :data:`~rlm_pipeline.llm.cache.ROWS_PER_QUERY` texts).  A stored value
        that no longer passes the spec's check reads as a miss.
        """
        digest = self._keys.digest
        keys = {digest(text): text for text in texts}
        found: dict[str, Any] = {}
        check = self.spec.check_value
        for key, stored in self.cache.get_rows(list(keys)).items():
            value, error = check(stored)
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
                self._pending[self._keys.digest(text)] = value
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
    loop to dedup across slices of a stream.  Memory is bounded by
    ``max_size`` texts and ``max_bytes`` (estimated: each text's length plus
    :data:`MEMO_ENTRY_BYTES` for the bookkeeping of one entry): when a bound
    would be passed, texts of finished claims are dropped (a later repeat is
    asked again, usually from the stored row answers).  The defaults hold
    1,000,000 distinct texts of ~100 characters: measured ~270 MB (~145 bytes
    per text object, ~130 for its memo and claim entries), estimated 338 MiB
    (the estimate errs high, leaving room for non-ASCII texts).

    Examples
    --------
    >>> import asyncio
    >>> memo = Memo()
    >>> claim = Claim(asyncio.new_event_loop().create_future())
    >>> memo.claim_new(["a", "b"], claim)
    (['a', 'b'], {})
    >>> fresh, waiting = memo.claim_new(["b", "c"], Claim(claim.done))
    >>> fresh, list(waiting), waiting["b"] is claim, len(memo)
    (['c'], ['b'], True, 3)
    """

    def __init__(self, max_size: int = MEMO_MAX_TEXTS, max_bytes: int = MEMO_MAX_BYTES) -> None:
        self.max_size = max_size
        self.max_bytes = max_bytes
        self._claims: dict[str, Claim] = {}
        self._bytes = 0

    def get(self, text: str) -> Claim | None:
        """The claim that asks (or asked) for ``text``, if any."""
        return self._claims.get(text)

    def put(self, text: str, claim: Claim) -> None:
        """Record that ``claim`` asks for ``text``."""
        if len(self._claims) >= self.max_size or self._bytes >= self.max_bytes:
            self._evict()
        self._claims[text] = claim
        self._bytes += len(text) + MEMO_ENTRY_BYTES

    def claim_new(self, texts: Iterable[str], claim: Claim) -> tuple[list[str], dict[str, Claim]]:
        """Record ``claim`` for the distinct ``texts`` no claim asks for yet, all at once.

        Returns the texts now claimed (in order) and, for the others, the
        earlier claim asking for each.  Same as :meth:`get` then :meth:`put`
        per text, without a Python call per text.
        """
        claims = self._claims
        texts = texts if isinstance(texts, Collection) else list(texts)
        seen = claims.keys() & texts  # set operations: no Python step per text
        fresh = list(filterfalse(seen.__contains__, texts)) if seen else list(texts)
        waiting = dict(zip(seen, map(claims.__getitem__, seen), strict=True))
        if fresh:
            added = sum(map(len, fresh)) + MEMO_ENTRY_BYTES * len(fresh)
            if len(claims) + len(fresh) > self.max_size or self._bytes + added > self.max_bytes:
                self._evict()
                claims = self._claims
            claims.update(dict.fromkeys(fresh, claim))
            self._bytes += added
        return fresh, waiting

    def _evict(self) -> None:
        """Drop the texts of finished claims."""
        kept = {t: c for t, c in self._claims.items() if not c.done.done()}
        self._claims = kept
        self._bytes = sum(map(len, kept)) + MEMO_ENTRY_BYTES * len(kept)

    def __len__(self) -> int:
        return len(self._claims)
