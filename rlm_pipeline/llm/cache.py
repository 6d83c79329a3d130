"""Content-addressed response cache in one SQLite file, safe for several processes.

Keys are sha256 over canonical JSON (sorted keys, compact separators) of
everything that shapes a reply: the endpoint (:func:`endpoint_id`: the resolved
base URL, so two servers that serve the same model name — ``"any"`` on two
llama.cpp servers — never share replies), model, messages, tools, tool_choice,
the requested output schema, temperature, max_tokens and a caller's prompt
version (:func:`request_key`, :func:`chat_key`, :func:`json_key`).  Values are the
reply (content, tool calls, token counts) as JSON.

The file uses WAL journaling and a busy timeout, so several processes (Spark
executors, parallel jobs) can read and write it at once; a writer that finds
the file locked waits instead of failing.  Only successful replies are stored —
the client stores a structured reply only after it parsed and validated.

A third small table, ``endpoint_modes``, remembers what an endpoint and model
can do (:meth:`ResponseCache.get_mode` / :meth:`ResponseCache.put_mode`), e.g.
the RLM root's action protocol, so a later process starts in the mode that
worked instead of finding it out again.

The same file also holds **row answers** (table ``row_store``): one checked
answer per input text of a semantic operator (classify / llm_map), keyed by
:func:`row_key` — endpoint, model, temperature, prompt version, the operator parameters
that shape the answer, and the text; *not* the batch the row was sent in.  A
re-run with other batches, other partitions or new rows mixed in finds every
row answered before.  :meth:`ResponseCache.get_rows` and
:meth:`ResponseCache.put_rows` read and write many rows at once: one
``SELECT`` per call to ``get_rows`` (up to :data:`ROWS_PER_QUERY` keys; more
keys than that, or than the SQLite build's variable limit, take one query per
chunk) and one transaction per call to ``put_rows``.

**At scale.**  The row table is a ``WITHOUT ROWID`` table keyed by the
32-byte sha256 digest itself (the hex key's bytes), so each entry is stored
once, with no separate index: about :data:`ROW_ENTRY_BYTES` bytes per entry
with a short label as the value (measured: 1,000,000 classify answers make a
58 MB table), i.e. ~60 MB per million and ~600 MB per ten million distinct
texts.  Cached replies of whole calls (table ``responses``) cost about 400–600
bytes per call of 16 rows.  :meth:`ResponseCache.stats` reports the counts
and sizes, :meth:`ResponseCache.prune` drops entries written before a cutoff
(``rlm-pipeline cache stats|prune``).  Rows in the table of format 2
(``row_answers``, hex keys with a separate index, ~180 bytes per entry) are no
longer read; ``prune`` removes them like any other old entry.

Examples
--------
>>> import tempfile, os
>>> from rlm_pipeline.llm.reply import ChatReply
>>> path = os.path.join(tempfile.mkdtemp(), "c", "cache.sqlite")
>>> key = request_key(model="m", messages=[{"role": "user", "content": "hi"}], temperature=0.0)
>>> with ResponseCache(path) as cache:
...     cache.put(key, ChatReply(content="hello", input_tokens=2, output_tokens=1))
...     cache.contains(key), cache.get(key).cached
(True, True)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from types import TracebackType
from typing import Any

from rlm_pipeline.errors import InputError, LLMError
from rlm_pipeline.llm.config import LLM
from rlm_pipeline.llm.reply import ChatReply

__all__ = [
    "CACHE_FORMAT_VERSION",
    "DEFAULT_BUSY_TIMEOUT_S",
    "DEFAULT_ENDPOINT_ID",
    "ROWS_PER_QUERY",
    "ROW_ANSWER_KIND",
    "ROW_ENTRY_BYTES",
    "CacheStats",
    "PruneResult",
    "ResponseCache",
    "RowKeys",
    "canonical_json",
    "chat_key",
    "endpoint_id",
    "json_key",
    "request_key",
    "row_key",
]

logger = logging.getLogger(__name__)

#: Bumped when the stored form or the key recipe changes (old entries then miss).
#: 2: keys name the endpoint (:func:`endpoint_id`).
CACHE_FORMAT_VERSION = 2
#: :func:`endpoint_id` of a config with no base URL (the openai client's default endpoint).
DEFAULT_ENDPOINT_ID = "openai"
#: How long a writer waits for another process's lock before giving up.
DEFAULT_BUSY_TIMEOUT_S = 30.0

_SCHEMA_SQL = (
    "CREATE TABLE IF NOT EXISTS responses ("
    " key TEXT PRIMARY KEY,"
    " value TEXT NOT NULL,"
    " created_at REAL NOT NULL)"
)
#: Row answers: the sha256 digest (32 bytes) is the key and the only index.
_ROW_STORE_SQL = (
    "CREATE TABLE IF NOT EXISTS row_store ("
    " key BLOB PRIMARY KEY,"
    " value TEXT NOT NULL,"
    " created_at INTEGER NOT NULL) WITHOUT ROWID"
)
#: Row answers of cache format 2 (hex keys); no longer read, only counted and pruned.
_LEGACY_ROWS = "row_answers"
_MODES_SQL = (
    "CREATE TABLE IF NOT EXISTS endpoint_modes ("
    " kind TEXT NOT NULL,"
    " endpoint TEXT NOT NULL,"
    " model TEXT NOT NULL,"
    " mode TEXT NOT NULL,"
    " updated_at REAL NOT NULL,"
    " PRIMARY KEY (kind, endpoint, model))"
)
_MISSING: Any = object()
#: The ``kind`` field of every row-answer key.
ROW_ANSWER_KIND = "row-answer"
#: Most keys looked up by one ``SELECT ... IN (...)`` (also capped by the build's variable limit).
ROWS_PER_QUERY = 100_000
#: Bytes per stored row answer with a short label as the value (measured, see the module doc).
ROW_ENTRY_BYTES = 60
#: SQLite page cache per connection (KiB, as a negative ``cache_size``) and memory map size.
_CACHE_KIB = 65_536
_MMAP_BYTES = 256 * 1024 * 1024


def canonical_json(value: Any) -> str:
    """JSON text with sorted keys and compact separators; the input of every cache key.

    Examples
    --------
    >>> canonical_json({"b": 1, "a": [1, 2]})
    '{"a":[1,2],"b":1}'
    """
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        msg = f"request is not JSON-serialisable: {exc}"
        raise InputError(msg) from exc


def endpoint_id(base_url: str | None) -> str:
    """The endpoint as it enters cache keys: the base URL without a trailing ``/``.

    ``None`` (no ``base_url`` and no ``OPENAI_BASE_URL``: OpenAI's endpoint)
    gives :data:`DEFAULT_ENDPOINT_ID`.  Pass ``LLM.resolved_base_url()``.

    Examples
    --------
    >>> endpoint_id("http://127.0.0.1:8080/v1/"), endpoint_id(None)
    ('http://127.0.0.1:8080/v1', 'openai')
    """
    if base_url is None:
        return DEFAULT_ENDPOINT_ID
    return base_url.rstrip("/") or DEFAULT_ENDPOINT_ID


def request_key(
    *,
    model: str,
    messages: list[dict[str, Any]],
    temperature: float,
    tools: list[dict[str, Any]] | None = None,
    tool_choice: str | dict[str, Any] | None = None,
    response_format: dict[str, Any] | None = None,
    max_tokens: int | None = None,
    prompt_version: str | None = None,
    base_url: str | None = None,
) -> str:
    """sha256 hex digest of the canonical JSON of a request's reply-shaping fields.

    ``base_url`` is the resolved endpoint (see :func:`endpoint_id`; None is
    OpenAI's).

    Examples
    --------
    >>> a = request_key(model="m", messages=[{"role": "user", "content": "x"}], temperature=0.0)
    >>> b = request_key(model="m", messages=[{"content": "x", "role": "user"}], temperature=0.0)
    >>> a == b, len(a)
    (True, 64)
    """
    payload = {
        "v": CACHE_FORMAT_VERSION,
        "endpoint": endpoint_id(base_url),
        "model": model,
        "messages": messages,
        "tools": tools,
        "tool_choice": tool_choice,
        "response_format": response_format,
        "temperature": temperature,
        "max_tokens": max_tokens,
        "prompt_version": prompt_version,
    }
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


def chat_key(
    config: LLM,
    messages: list[dict[str, Any]],
    *,
    tools: list[dict[str, Any]] | None = None,
    tool_choice: str | dict[str, Any] | None = None,
    max_tokens: int | None = None,
    prompt_version: str | None = None,
) -> str:
    """The cache key :meth:`LLMClient.chat` uses for this request (no traffic).

    It names the endpoint (``config.resolved_base_url()``) as well as the model.
    """
    return request_key(
        base_url=config.resolved_base_url(),
        model=config.model,
        messages=messages,
        temperature=config.temperature,
        tools=tools,
        tool_choice=tool_choice,
        max_tokens=max_tokens,
        prompt_version=prompt_version,
    )


def json_key(
    config: LLM,
    messages: list[dict[str, Any]],
    schema: dict[str, Any],
    *,
    name: str,
    max_tokens: int | None = None,
    prompt_version: str | None = None,
) -> str:
    """The cache key :meth:`LLMClient.json` uses for this request (no traffic).

    It names the schema, not the wire form, so a reply cached through one
    structured-output mode is found whichever mode the endpoint needs.  Like
    :func:`chat_key`, it names the endpoint.
    """
    return request_key(
        base_url=config.resolved_base_url(),
        model=config.model,
        messages=messages,
        temperature=config.temperature,
        response_format={"type": "structured", "name": name, "schema": schema},
        max_tokens=max_tokens,
        prompt_version=prompt_version,
    )


def row_key(
    *,
    model: str,
    temperature: float,
    prompt_version: str | None,
    params: dict[str, Any],
    text: str,
    base_url: str | None = None,
) -> str:
    """sha256 hex digest of the canonical JSON of one row's answer-shaping fields.

    ``params`` are the operator parameters that change the answer (for
    classify: labels and instructions; for llm_map: instruction and output
    type) — never the batch size or the batch the row was sent in.
    ``base_url`` is the resolved endpoint (``LLM.resolved_base_url()``; None
    is OpenAI's): two servers under one model name keep separate answers.

    Examples
    --------
    >>> a = row_key(model="m", temperature=0.0, prompt_version="p",
    ...             params={"op": "classify", "labels": ["a"]}, text="hi")
    >>> a == RowKeys(model="m", temperature=0.0, prompt_version="p",
    ...              params={"op": "classify", "labels": ["a"]}).key("hi")
    True
    """
    payload = {
        "v": CACHE_FORMAT_VERSION,
        "kind": ROW_ANSWER_KIND,
        "endpoint": endpoint_id(base_url),
        "model": model,
        "temperature": temperature,
        "prompt_version": prompt_version,
        "params": params,
        "text": text,
    }
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


class RowKeys:
    """:func:`row_key` for many texts with the same model and parameters, made cheaply.

    The canonical JSON is built once without the text; each key then only
    encodes its text (the result equals :func:`row_key` byte for byte).
    """

    def __init__(
        self,
        *,
        model: str,
        temperature: float,
        prompt_version: str | None,
        params: dict[str, Any],
        base_url: str | None = None,
    ) -> None:
        marker = "\u0000rlm-text-slot\u0000"
        whole = canonical_json(
            {
                "v": CACHE_FORMAT_VERSION,
                "kind": ROW_ANSWER_KIND,
                "endpoint": endpoint_id(base_url),
                "model": model,
                "temperature": temperature,
                "prompt_version": prompt_version,
                "params": params,
                "text": marker,
            }
        )
        slot = json.dumps(marker, ensure_ascii=False)
        if whole.count(slot) != 1:  # pragma: no cover - the marker cannot occur elsewhere
            msg = "row key template is ambiguous"
            raise InputError(msg)
        head, tail = whole.split(slot)
        self._head = head.encode("utf-8")
        self._tail = tail.encode("utf-8")

    def key(self, text: str) -> str:
        """The row key of ``text`` (hex)."""
        return self.digest(text).hex()

    def digest(self, text: str) -> bytes:
        """The row key of ``text`` as its 32 bytes (what the row table stores)."""
        # ``encode_basestring`` is what ``json.dumps(text, ensure_ascii=False)`` runs for a
        # str, without building an encoder per call (a third of a digest's time).
        body = encode_basestring(text).encode("utf-8")
        return hashlib.sha256(self._head + body + self._tail).digest()


@dataclass(frozen=True)
class CacheStats:
    """What a cache file holds (:meth:`ResponseCache.stats`).

    Attributes
    ----------
    path
        The SQLite file.
    file_bytes
        Size of the file plus its ``-wal`` file.
    responses
        Cached replies of whole calls.
    row_answers
        Stored row answers (one per distinct text and operator parameters).
    legacy_row_answers
        Row answers of cache format 2 (no longer read; ``prune`` removes them).
    modes
        Remembered endpoint modes.
    oldest, newest
        Unix times of the oldest and newest entry (None when empty).
    """

    path: str
    file_bytes: int
    responses: int
    row_answers: int
    legacy_row_answers: int
    modes: int
    oldest: float | None
    newest: float | None

    @property
    def entries(self) -> int:
        """Replies plus row answers (current and legacy)."""
        return self.responses + self.row_answers + self.legacy_row_answers

    def to_dict(self) -> dict[str, Any]:
        """Plain dict, for JSON output."""
        return {**asdict(self), "entries": self.entries}


@dataclass(frozen=True)
class PruneResult:
    """Entries removed by :meth:`ResponseCache.prune` and the file size before and after."""

    responses: int
    row_answers: int
    legacy_row_answers: int
    bytes_before: int
    bytes_after: int

    @property
    def removed(self) -> int:
        """All entries removed."""
        return self.responses + self.row_answers + self.legacy_row_answers

    def to_dict(self) -> dict[str, Any]:
        """Plain dict, for JSON output."""
        return {**asdict(self), "removed": self.removed}


class ResponseCache:
    """Replies by key in a SQLite file.

    The connection opens on first use (and again after a ``fork``); calls from
    several threads are serialised by a lock.  Reads and writes are short local
    file operations, done inline.

    Parameters
    ----------
    path
        The SQLite file; parent folders are created.
    busy_timeout_s
        How long to wait for another process's write lock.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S
    ):
        self.path = os.fspath(path)
        self.busy_timeout_s = busy_timeout_s
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self._max_keys = ROWS_PER_QUERY

    def _connection(self) -> sqlite3.Connection:
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        parent = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(parent, exist_ok=True)
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout_s,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
            self._set_wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(f"PRAGMA cache_size = {-_CACHE_KIB}")
            conn.execute(f"PRAGMA mmap_size = {_MMAP_BYTES}")
            conn.execute(_SCHEMA_SQL)
            conn.execute(_ROW_STORE_SQL)
            conn.execute(_MODES_SQL)
            self._max_keys = min(
                ROWS_PER_QUERY, conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
            )
        except sqlite3.Error as exc:
            msg = f"cannot open response cache {self.path!r}: {exc}"
            raise LLMError(msg) from exc
        self._conn = conn
        self._pid = os.getpid()
        return conn

    def _set_wal(self, conn: sqlite3.Connection) -> None:
        # Switching to WAL needs a moment of exclusive access; another process
        # doing the same can make it fail with "locked" despite the busy timeout.
        deadline = time.monotonic() + self.busy_timeout_s
        while True:
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def get(self, key: str) -> ChatReply | None:
        """The cached reply (marked ``cached=True``), or None (also when unreadable)."""
        with self._lock:
            conn = self._connection()
            try:
                row = conn.execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
            except sqlite3.Error as exc:
                # A cache that cannot be read is a miss, not a failed call.
                logger.warning("response cache read failed (%s): %s", self.path, exc)
                return None
        if row is None:
            return None
        try:
            return ChatReply.from_dict(json.loads(row[0]), cached=True)
        except (ValueError, TypeError, KeyError) as exc:
            logger.warning("response cache: unreadable entry %s ignored: %s", key[:12], exc)
            return None

    def contains(self, key: str) -> bool:
        """Whether ``key`` has a stored reply (no traffic, nothing decoded)."""
        with self._lock:
            try:
                row = (
                    self._connection()
                    .execute("SELECT 1 FROM responses WHERE key = ?", (key,))
                    .fetchone()
                )
            except sqlite3.Error as exc:
                msg = f"response cache read failed ({self.path!r}): {exc}"
                raise LLMError(msg) from exc
        return row is not None

    def put(self, key: str, reply: ChatReply) -> None:
        """Store (or replace) the reply for ``key``; a failed write is logged, not raised."""
        value = json.dumps(reply.to_dict(), separators=(",", ":"), ensure_ascii=False)
        with self._lock:
            conn = self._connection()
            try:
                conn.execute(
                    "INSERT OR REPLACE INTO responses (key, value, created_at) VALUES (?, ?, ?)",
                    (key, value, time.time()),
                )
            except sqlite3.Error as exc:
                # The reply itself is good; losing its cache entry only costs a re-ask.
                logger.warning("response cache write failed (%s): %s", self.path, exc)

    def delete(self, key: str) -> None:
        """Remove the reply for ``key`` (no error when absent); a failed delete is logged."""
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("DELETE FROM responses WHERE key = ?", (key,))
            except sqlite3.Error as exc:
                logger.warning("response cache delete failed (%s): %s", self.path, exc)

    def get_rows(self, keys: Sequence[str | bytes]) -> dict[Any, Any]:
        """Stored row answers for ``keys`` (hex strings or 32-byte digests; absent keys left out).

        The result is keyed by the keys as given.  One ``SELECT`` for up to
        :data:`ROWS_PER_QUERY` distinct keys (or the SQLite build's variable
        limit, if lower); more keys take one query per chunk, releasing the
        lock in between so writers are not held up.  A failed read is logged
        and reads as misses (the rows are then asked again).
        """
        by_digest: dict[bytes, Any] | None = None  # None: every key is a digest already
        if set(map(type, keys)) - {bytes}:
            by_digest = {}
            for key in keys:
                by_digest[key if isinstance(key, bytes) else bytes.fromhex(key)] = key
        # Sorted keys: SQLite builds the ``IN`` list's index in order (~40% faster at 100k).
        unique = sorted(by_digest if by_digest is not None else set(keys))
        found: dict[Any, Any] = {}
        for start in range(0, len(unique), self._max_keys):
            with self._lock:
                conn = self._connection()
                chunk = unique[start : start + self._max_keys]
                marks = ",".join("?" * len(chunk))
                try:
                    rows = conn.execute(
                        f"SELECT key, value FROM row_store WHERE key IN ({marks})",  # noqa: S608 - only "?" marks
                        chunk,
                    ).fetchall()
                except sqlite3.Error as exc:
                    logger.warning("row answer read failed (%s): %s", self.path, exc)
                    continue
            self._decode_rows(rows, by_digest, found)
        return found

    def _decode_rows(
        self,
        rows: list[tuple[bytes, str]],
        by_digest: dict[bytes, Any] | None,
        found: dict[Any, Any],
    ) -> None:
        """Decode stored row answers into ``found`` (keyed as the caller gave the keys).

        A label repeats: each stored text is decoded once, and when every one
        is an immutable value the rows are filled without a Python step per row.
        """
        stored = dict(rows)
        decoded: dict[str, Any] = {}
        shared = True
        for text in set(stored.values()):
            try:
                value = json.loads(text)
            except ValueError:
                shared = False
                continue
            if isinstance(value, str | int | float | bool):  # immutable: safe to share
                decoded[text] = value
            else:
                shared = False
        if shared:
            keys = stored if by_digest is None else map(by_digest.__getitem__, stored)
            found.update(zip(keys, map(decoded.__getitem__, stored.values()), strict=True))
            return
        for digest, text in stored.items():
            value = decoded.get(text, _MISSING)
            if value is _MISSING:
                try:
                    value = json.loads(text)
                except ValueError:
                    logger.warning("row answer %s unreadable; ignored", bytes(digest).hex()[:12])
                    continue
            found[digest if by_digest is None else by_digest[digest]] = value

    def put_rows(self, answers: Mapping[Any, Any]) -> None:
        """Store (or replace) row answers (keys: hex or 32-byte digests), all in one transaction.

        Values must be JSON-serialisable and not None (a failure is never
        stored).  A failed write is logged, not raised: losing an entry only
        costs a re-ask.
        """
        if not answers:
            return
        now = int(time.time())
        rows = []
        for key, value in answers.items():
            digest = key if isinstance(key, bytes) else bytes.fromhex(key)
            if value is None:
                msg = f"row answer {digest.hex()[:12]} is None; failures are not stored"
                raise InputError(msg)
            rows.append((digest, json.dumps(value, separators=(",", ":"), ensure_ascii=False), now))
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    conn.executemany(
                        "INSERT OR REPLACE INTO row_store (key, value, created_at) VALUES (?, ?, ?)",
                        rows,
                    )
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                logger.warning("row answer write failed (%s): %s", self.path, exc)

    def get_mode(self, kind: str, endpoint: str, model: str) -> str | None:
        """The mode remembered for ``kind`` (e.g. ``"rlm_protocol"``) at this endpoint and model.

        ``endpoint`` is an :func:`endpoint_id`.  A failed read is logged and reads as None.
        """
        with self._lock:
            conn = self._connection()
            try:
                row = conn.execute(
                    "SELECT mode FROM endpoint_modes WHERE kind = ? AND endpoint = ? AND model = ?",
                    (kind, endpoint, model),
                ).fetchone()
            except sqlite3.Error as exc:
                logger.warning("endpoint mode read failed (%s): %s", self.path, exc)
                return None
        return None if row is None else str(row[0])

    def put_mode(self, kind: str, endpoint: str, model: str, mode: str) -> None:
        """Remember ``mode`` for ``kind`` at this endpoint and model (a failed write is logged).

        Examples
        --------
        >>> import tempfile, os
        >>> with ResponseCache(os.path.join(tempfile.mkdtemp(), "c.sqlite")) as cache:
        ...     cache.put_mode("rlm_protocol", "http://127.0.0.1:1/v1", "m", "text")
        ...     cache.get_mode("rlm_protocol", "http://127.0.0.1:1/v1", "m")
        'text'
        """
        with self._lock:
            conn = self._connection()
            try:
                conn.execute(
                    "INSERT OR REPLACE INTO endpoint_modes (kind, endpoint, model, mode, updated_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (kind, endpoint, model, mode, time.time()),
                )
            except sqlite3.Error as exc:
                logger.warning("endpoint mode write failed (%s): %s", self.path, exc)

    def row_count(self) -> int:
        """Number of stored row answers."""
        with self._lock:
            row = self._connection().execute("SELECT count(*) FROM row_store").fetchone()
        return int(row[0])

    def _legacy_rows(self, conn: sqlite3.Connection) -> bool:
        found = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (_LEGACY_ROWS,)
        ).fetchone()
        return found is not None

    def file_bytes(self) -> int:
        """Size of the cache file plus its write-ahead log (0 when absent)."""
        total = 0
        for name in (self.path, self.path + "-wal"):
            try:
                total += os.path.getsize(name)
            except OSError:
                pass
        return total

    def stats(self) -> CacheStats:
        """Counts, age range and size of what the file holds.

        Examples
        --------
        >>> import tempfile, os
        >>> with ResponseCache(os.path.join(tempfile.mkdtemp(), "c.sqlite")) as cache:
        ...     cache.put_rows({"ab" * 32: "billing"})
        ...     s = cache.stats()
        >>> s.row_answers, s.responses, s.entries
        (1, 0, 1)
        """
        with self._lock:
            conn = self._connection()
            try:
                tables = ["responses", "row_store"]
                legacy = self._legacy_rows(conn)
                if legacy:
                    tables.append(_LEGACY_ROWS)
                counts = {}
                oldest: float | None = None
                newest: float | None = None
                for table in tables:
                    n, low, high = conn.execute(
                        f"SELECT count(*), min(created_at), max(created_at) FROM {table}"  # noqa: S608 - fixed names
                    ).fetchone()
                    counts[table] = int(n)
                    if low is not None:
                        oldest = float(low) if oldest is None else min(oldest, float(low))
                        newest = float(high) if newest is None else max(newest, float(high))
                modes = int(conn.execute("SELECT count(*) FROM endpoint_modes").fetchone()[0])
            except sqlite3.Error as exc:
                msg = f"cannot read response cache {self.path!r}: {exc}"
                raise LLMError(msg) from exc
        return CacheStats(
            path=self.path,
            file_bytes=self.file_bytes(),
            responses=counts["responses"],
            row_answers=counts["row_store"],
            legacy_row_answers=counts.get(_LEGACY_ROWS, 0),
            modes=modes,
            oldest=oldest,
            newest=newest,
        )

    def prune(self, older_than_s: float, *, vacuum: bool = True) -> PruneResult:
        """Remove replies and row answers written more than ``older_than_s`` seconds ago.

        A pruned text is asked again by the next run that meets it.  With
        ``vacuum`` the file is rewritten afterwards so it shrinks on disk
        (this needs free space about the size of what is kept, and waits for
        other processes' writes).

        Examples
        --------
        >>> import tempfile, os
        >>> with ResponseCache(os.path.join(tempfile.mkdtemp(), "c.sqlite")) as cache:
        ...     cache.put_rows({"ab" * 32: "billing"})
        ...     cache.prune(3600).removed, cache.prune(-1).removed
        (0, 1)
        """
        if older_than_s != older_than_s:  # NaN
            msg = "older_than_s must be a number of seconds"
            raise InputError(msg)
        before = self.file_bytes()
        cutoff = time.time() - older_than_s
        removed: dict[str, int] = {}
        with self._lock:
            conn = self._connection()
            try:
                tables = ["responses", "row_store"]
                if self._legacy_rows(conn):
                    tables.append(_LEGACY_ROWS)
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for table in tables:
                        cursor = conn.execute(
                            f"DELETE FROM {table} WHERE created_at < ?",  # noqa: S608 - fixed names
                            (cutoff,),
                        )
                        removed[table] = cursor.rowcount
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                if vacuum and any(n > 0 for n in removed.values()):
                    conn.execute("VACUUM")
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                msg = f"cannot prune response cache {self.path!r}: {exc}"
                raise LLMError(msg) from exc
        return PruneResult(
            responses=removed.get("responses", 0),
            row_answers=removed.get("row_store", 0),
            legacy_row_answers=removed.get(_LEGACY_ROWS, 0),
            bytes_before=before,
            bytes_after=self.file_bytes(),
        )

    def __len__(self) -> int:
        with self._lock:
            row = self._connection().execute("SELECT count(*) FROM responses").fetchone()
        return int(row[0])

    def close(self) -> None:
        """Close the connection (it reopens on next use)."""
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
