"""Usage accounting: a frozen :class:`Usage` snapshot and a thread-safe meter."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Usage", "UsageMeter"]


@dataclass(frozen=True)
class Usage:
    """What a run spent.

    Attributes
    ----------
    calls
        Model requests answered by the endpoint (not counting cache hits).
    input_tokens, output_tokens
        Tokens as reported by the endpoint's ``usage``.
    cached_tokens
        Of ``input_tokens``, those the provider served from its prompt-prefix
        cache (``usage.prompt_tokens_details.cached_tokens``); priced at the
        cached-input rate when the price table has one.
    cached_calls
        Requests answered from the response cache (no traffic).
    cost_usd
        Cost from the model's price table.
    max_prompt_tokens
        Largest prompt (input tokens) of any single call.
    failed_calls
        Requests that failed for good after retries.
    """

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_calls: int = 0
    cost_usd: float = 0.0
    max_prompt_tokens: int = 0
    failed_calls: int = 0
    cached_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            calls=self.calls + other.calls,
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cached_calls=self.cached_calls + other.cached_calls,
            cost_usd=self.cost_usd + other.cost_usd,
            max_prompt_tokens=max(self.max_prompt_tokens, other.max_prompt_tokens),
            failed_calls=self.failed_calls + other.failed_calls,
            cached_tokens=self.cached_tokens + other.cached_tokens,
        )

    def __sub__(self, before: Usage) -> Usage:
        """What was spent since ``before`` (an earlier snapshot of the same meter).

        ``max_prompt_tokens`` is this snapshot's (a maximum cannot be subtracted).

        Examples
        --------
        >>> (Usage(calls=5, input_tokens=90) - Usage(calls=2, input_tokens=40)).calls
        3
        """
        return Usage(
            calls=self.calls - before.calls,
            input_tokens=self.input_tokens - before.input_tokens,
            output_tokens=self.output_tokens - before.output_tokens,
            cached_calls=self.cached_calls - before.cached_calls,
            cost_usd=self.cost_usd - before.cost_usd,
            max_prompt_tokens=self.max_prompt_tokens,
            failed_calls=self.failed_calls - before.failed_calls,
            cached_tokens=self.cached_tokens - before.cached_tokens,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain dict, for JSON output."""
        return asdict(self)


class UsageMeter:
    """Thread-safe running total of :class:`Usage`.

    Examples
    --------
    >>> meter = UsageMeter()
    >>> meter.record(input_tokens=10, output_tokens=2, cost_usd=0.0)
    >>> meter.snapshot().calls
    1
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._usage = Usage()

    def record(
        self,
        *,
        input_tokens: int,
        output_tokens: int,
        cost_usd: float,
        cached: bool = False,
        cached_tokens: int = 0,
    ) -> None:
        """Add one answered request (``cached`` for a cache hit, which costs nothing).

        ``cached_tokens``: of ``input_tokens``, those the provider's prompt cache served.
        """
        if cached:
            delta = Usage(cached_calls=1)
        else:
            delta = Usage(
                calls=1,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                cost_usd=cost_usd,
                max_prompt_tokens=input_tokens,
                cached_tokens=cached_tokens,
            )
        with self._lock:
            self._usage = self._usage + delta

    def record_failure(self) -> None:
        """Count one request that failed for good."""
        with self._lock:
            self._usage = self._usage + Usage(failed_calls=1)

    def add(self, usage: Usage) -> None:
        """Merge a snapshot from elsewhere (e.g. a Spark task)."""
        with self._lock:
            self._usage = self._usage + usage

    def snapshot(self) -> Usage:
        """The totals so far."""
        with self._lock:
            return self._usage
