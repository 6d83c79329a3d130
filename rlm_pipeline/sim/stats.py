"""Traffic counters of the simulator.

All updates happen on the server's event loop thread without awaiting in
between, so no lock is needed; readers get a copy through ``GET /stats``.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import Any

__all__ = ["PrefixCache", "SimStats"]


class PrefixCache:
    """A provider's prompt-prefix cache, at message granularity.

    The leading messages of a request that equal, in order and byte for byte,
    the leading messages of an earlier request are "cached": their tokens are
    reported as ``usage.prompt_tokens_details.cached_tokens``, as OpenAI,
    DeepSeek, vLLM and llama.cpp report the part of a prompt they did not
    recompute.  Real providers cache at token granularity (OpenAI: prompts of
    1,024+ tokens, in 128-token steps); this model has no minimum and stops at
    the first message that differs, so a prompt laid out "same instructions
    first, rows last" gets its system message cached from the second call on.
    Tool schemas are not counted as cached.  At most ``max_entries`` prefixes
    are remembered (least recently used dropped).

    Examples
    --------
    >>> cache = PrefixCache()
    >>> count = lambda ms: sum(len(m["content"]) for m in ms)
    >>> system = {"role": "system", "content": "Labels: a, b"}
    >>> cache.cached([system, {"role": "user", "content": "0: x"}], count)
    0
    >>> cache.cached([system, {"role": "user", "content": "0: y"}], count)
    12
    """

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._seen: OrderedDict[bytes, None] = OrderedDict()

    def cached(self, messages: Any, count: Callable[[list[Any]], int]) -> int:
        """Tokens (by ``count`` over a list of messages) of the cached leading messages."""
        if not isinstance(messages, list):
            return 0
        digest = hashlib.sha256()
        hit = 0
        missed = False
        for i, message in enumerate(messages[:-1]):  # the last message is never a shared prefix
            digest.update(json.dumps(message, sort_keys=True, ensure_ascii=False).encode())
            key = digest.copy().digest()
            if not missed and key in self._seen:
                self._seen.move_to_end(key)
                hit = i + 1
                continue
            missed = True
            self._seen[key] = None
            if len(self._seen) > self.max_entries:
                self._seen.popitem(last=False)
        return count(messages[:hit]) if hit else 0


class SimStats:
    """Counts of requests, statuses, tokens, concurrency and request kinds.

    Examples
    --------
    >>> stats = SimStats()
    >>> token = stats.begin()
    >>> stats.finish(token, 200, "classify_batch", input_tokens=10, output_tokens=3, rows=2)
    >>> stats.snapshot()["ok"], stats.snapshot()["rows_classified"]
    (1, 2)
    """

    def __init__(self, max_log: int = 1_000_000) -> None:
        self.max_log = max_log
        self.prefixes = PrefixCache()  # server state: kept across reset()
        self.reset()

    def reset(self) -> None:
        """Zero every counter (requests still in flight keep being tracked)."""
        in_flight = getattr(self, "in_flight", 0)
        active = getattr(self, "active", 0)
        self.requests = 0
        self.ok = 0
        self.errors_by_status: Counter[str] = Counter()
        self.input_tokens = 0
        self.cached_tokens = 0
        self.output_tokens = 0
        self.in_flight = in_flight
        self.active = active
        self.peak_in_flight = in_flight
        self.peak_active = active
        self.by_kind: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.rows_classified = 0
        self.rows_mapped = 0
        self.requests_log: list[tuple[float, float, int, str]] = []
        self.started_at = time.time()
        previous = getattr(self, "by_model", {})
        self.by_model: dict[str, dict[str, int]] = {
            name: _model_counts(entry["in_flight"]) for name, entry in previous.items()
            if entry["in_flight"]
        }

    def model_begin(self, model: str) -> None:
        """A request for ``model`` was read (per-model requests and peak in flight)."""
        entry = self.by_model.setdefault(model, _model_counts(0))
        entry["requests"] += 1
        entry["in_flight"] += 1
        entry["peak_in_flight"] = max(entry["peak_in_flight"], entry["in_flight"])

    def model_end(self, model: str, status: int, input_tokens: int, output_tokens: int) -> None:
        """The request for ``model`` was answered with ``status``."""
        entry = self.by_model.setdefault(model, _model_counts(1))
        entry["in_flight"] -= 1
        if status == 200:
            entry["ok"] += 1
            entry["input_tokens"] += input_tokens
            entry["output_tokens"] += output_tokens

    def begin(self) -> float:
        """A request arrived; returns its start time (pass it to :meth:`finish`)."""
        self.requests += 1
        self.in_flight += 1
        if self.in_flight > self.peak_in_flight:
            self.peak_in_flight = self.in_flight
        return time.time()

    def enter_active(self) -> None:
        """The request got a concurrency slot."""
        self.active += 1
        if self.active > self.peak_active:
            self.peak_active = self.active

    def leave_active(self) -> None:
        """The request gave its slot back."""
        self.active -= 1

    def prefix_cached(self, messages: Any, count: Callable[[list[Any]], int]) -> int:
        """Cached prompt tokens of a request (:class:`PrefixCache`), added to ``cached_tokens``."""
        tokens = self.prefixes.cached(messages, count)
        self.cached_tokens += tokens
        return tokens

    def fault(self, name: str) -> None:
        """Count one injected fault."""
        self.faults[name] += 1

    def finish(
        self,
        started: float,
        status: int,
        kind: str,
        *,
        input_tokens: int = 0,
        output_tokens: int = 0,
        rows: int = 0,
    ) -> None:
        """The request was answered with ``status``; tokens count only for 200."""
        self.in_flight -= 1
        self.by_kind[kind] += 1
        if status == 200:
            self.ok += 1
            self.input_tokens += input_tokens
            self.output_tokens += output_tokens
            if kind.startswith("classify"):
                self.rows_classified += rows
            elif kind.startswith("map"):
                self.rows_mapped += rows
        else:
            self.errors_by_status[str(status)] += 1
        if len(self.requests_log) < self.max_log:
            self.requests_log.append((started, time.time(), status, kind))

    def snapshot(self, *, log: bool = True) -> dict[str, Any]:
        """JSON-ready copy of every counter (``requests_log`` only when ``log``)."""
        out: dict[str, Any] = {
            "requests": self.requests,
            "ok": self.ok,
            "errors_by_status": dict(self.errors_by_status),
            "input_tokens": self.input_tokens,
            "cached_tokens": self.cached_tokens,
            "output_tokens": self.output_tokens,
            "in_flight": self.in_flight,
            "active": self.active,
            "peak_in_flight": self.peak_in_flight,
            "peak_active": self.peak_active,
            "by_kind": dict(self.by_kind),
            "faults": dict(self.faults),
            "rows_classified": self.rows_classified,
            "rows_mapped": self.rows_mapped,
            "started_at": self.started_at,
            "by_model": {name: dict(entry) for name, entry in self.by_model.items()},
        }
        if log:
            out["requests_log"] = [list(entry) for entry in self.requests_log]
        return out


def _model_counts(in_flight: int) -> dict[str, int]:
    """Fresh per-model counters (``in_flight`` requests already under way)."""
    return {
        "requests": 0,
        "ok": 0,
        "in_flight": in_flight,
        "peak_in_flight": in_flight,
        "input_tokens": 0,
        "output_tokens": 0,
    }
