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

The same file also holds **row answers** (table ``row_answers``): one checked
answer per input text of a semantic operator (classify / llm_map), keyed by
:func:`row_key` — endpoint, model, temperature, prompt version, the operator parameters
that shape the answer, and the text; *not* the batch the row was sent in.  A
re-run with other batches, other partitions or new rows mixed in finds every
row answered before.  :meth:`ResponseCache.get_rows` and
:meth:`ResponseCache.put_rows` read and write many rows at once (one
transaction per call to ``put_rows``).

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
from types import TracebackType
from typing import Any

from rlm_pipeline.errors import InputError, LLMError
from rlm_pipeline.llm.config import LLM
from rlm_pipeline.llm.reply import ChatReply

__all__ = [
    "CACHE_FORMAT_VERSION",
    "DEFAULT_BUSY_TIMEOUT_S",
    "DEFAULT_ENDPOINT_ID",
    "ROW_ANSWER_KIND",
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
_ROWS_SQL = (
    "CREATE TABLE IF NOT EXISTS row_answers ("
    " key TEXT PRIMARY KEY,"
    " value TEXT NOT NULL,"
    " created_at REAL NOT NULL)"
)
_MODES_SQL = (
    "CREATE TABLE IF NOT EXISTS endpoint_modes ("
    " kind TEXT NOT NULL,"
    " endpoint TEXT NOT NULL,"
    " model TEXT NOT NULL,"
    " mode TEXT NOT NULL,"
    " updated_at REAL NOT NULL,"
    " PRIMARY KEY (kind, endpoint, model))"
)
#: The ``kind`` field of every row-answer key.
ROW_ANSWER_KIND = "row-answer"
#: Keys per ``SELECT ... IN (...)`` (below SQLite's oldest variable limit, 999).
_ROWS_PER_QUERY = 500


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
        """The row key of ``text``."""
        body = json.dumps(text, ensure_ascii=False).encode("utf-8")
        return hashlib.sha256(self._head + body + self._tail).hexdigest()


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
            conn.execute(_SCHEMA_SQL)
            conn.execute(_ROWS_SQL)
            conn.execute(_MODES_SQL)
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

    def get_rows(self, keys: Sequence[str]) -> dict[str, Any]:
        """Stored row answers for ``keys`` (absent keys are left out).

        Reads in chunks of a few hundred keys, releasing the lock between
        chunks so writers are not held up.  A failed read is logged and reads
        as misses (the rows are then asked again).
        """
        found: dict[str, Any] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), _ROWS_PER_QUERY):
            chunk = unique[start : start + _ROWS_PER_QUERY]
            marks = ",".join("?" * len(chunk))
            with self._lock:
                conn = self._connection()
                try:
                    rows = conn.execute(
                        f"SELECT key, value FROM row_answers WHERE key IN ({marks})",  # noqa: S608 - only "?" marks
                        chunk,
                    ).fetchall()
                except sqlite3.Error as exc:
                    logger.warning("row answer read failed (%s): %s", self.path, exc)
                    continue
            for key, value in rows:
                try:
                    found[key] = json.loads(value)
                except ValueError:
                    logger.warning("row answer %s unreadable; ignored", str(key)[:12])
        return found

    def put_rows(self, answers: Mapping[str, Any]) -> None:
        """Store (or replace) row answers, all in one transaction.

        Values must be JSON-serialisable and not None (a failure is never
        stored).  A failed write is logged, not raised: losing an entry only
        costs a re-ask.
        """
        if not answers:
            return
        now = time.time()
        rows = []
        for key, value in answers.items():
            if value is None:
                msg = f"row answer {key[:12]} is None; failures are not stored"
                raise InputError(msg)
            rows.append((key, json.dumps(value, separators=(",", ":"), ensure_ascii=False), now))
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    conn.executemany(
                        "INSERT OR REPLACE INTO row_answers (key, value, created_at)"
                        " VALUES (?, ?, ?)",
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
            row = self._connection().execute("SELECT count(*) FROM row_answers").fetchone()
        return int(row[0])

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
