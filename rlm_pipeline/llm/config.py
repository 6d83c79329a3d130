"""Frozen, picklable configuration for model access.

:class:`LLM` is what users build and pass around; it is shipped as-is to Spark
executors, where each task builds its own client from it.  It holds no client,
no socket and no lock.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rlm_pipeline.llm.usage import Usage

__all__ = [
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_PRICES",
    "DEFAULT_TIMEOUT_S",
    "LLM",
    "Budget",
    "Price",
]

DEFAULT_MAX_CONCURRENCY = 32
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MAX_RETRIES = 6


@dataclass(frozen=True)
class Price:
    """USD per one million tokens; ``cached_input_per_mtok``: input served from the prompt cache.

    Examples
    --------
    >>> p = Price(2.0, 8.0, cached_input_per_mtok=0.5)
    >>> round(p.cost(1_000_000, 0), 2), round(p.cost(1_000_000, 0, cached_tokens=500_000), 2)
    (2.0, 1.25)
    """

    input_per_mtok: float
    output_per_mtok: float
    cached_input_per_mtok: float | None = None

    def cost(self, input_tokens: int, output_tokens: int, cached_tokens: int = 0) -> float:
        """Cost in USD of a call with these token counts.

        ``cached_tokens`` (part of ``input_tokens``) are priced at the cached
        rate when there is one, else as any input token.
        """
        cached = min(max(cached_tokens, 0), input_tokens) if self.cached_input_per_mtok else 0
        rate = self.cached_input_per_mtok or 0.0
        return (
            (input_tokens - cached) * self.input_per_mtok
            + cached * rate
            + output_tokens * self.output_per_mtok
        ) / 1e6


#: List prices (USD per 1M tokens: input, output, cached input) for common models; override
#: with ``LLM(prices=...)``.
DEFAULT_PRICES: Mapping[str, Price] = MappingProxyType(
    {
        "gpt-4.1": Price(2.00, 8.00, 0.50),
        "gpt-4.1-mini": Price(0.40, 1.60, 0.10),
        "gpt-4.1-nano": Price(0.10, 0.40, 0.025),
        "gpt-4o": Price(2.50, 10.00, 1.25),
        "gpt-4o-mini": Price(0.15, 0.60, 0.075),
        "gpt-5": Price(1.25, 10.00, 0.125),
        "gpt-5-mini": Price(0.25, 2.00, 0.025),
        "gpt-5-nano": Price(0.05, 0.40, 0.005),
    }
)


@dataclass(frozen=True)
class LLM:
    """How to reach a model: endpoint, limits, retries, cache and prices.

    Frozen and picklable; build it once and pass it to :func:`classify`,
    :class:`RLM` or a Spark job.  ``api_key`` and ``base_url`` fall back to
    ``OPENAI_API_KEY`` / ``OPENAI_BASE_URL`` when not given.

    Parameters
    ----------
    model
        Model name sent to the endpoint.
    base_url
        OpenAI-compatible endpoint, e.g. ``http://127.0.0.1:8000/v1``.
    api_key
        API key; local servers accept any non-empty string.
    max_concurrency
        Requests in flight at once, for the whole job (shared out over Spark tasks).
    timeout_s
        Per-request timeout in seconds.
    max_retries
        Retries after the first attempt on 429, 5xx, connection errors and timeouts.
    rpm, tpm
        Optional requests / tokens per minute, for the whole job.
    cache_path
        SQLite file for the response cache; ``None`` disables caching.
    temperature
        Sampling temperature.
    logprobs
        When set, every request asks for the reply tokens' log-probabilities
        (``logprobs: true``, ``top_logprobs: N``, N from 0 to 20); they come back
        in :attr:`~rlm_pipeline.llm.reply.ChatReply.logprobs` when the server
        returns them (OpenAI, vLLM, llama.cpp do).  A cascade's proxy sets it
        (:class:`~rlm_pipeline.ops.cascade.Cascade`).
    prices
        Extra or overriding price table entries (model name -> :class:`Price`).

    Examples
    --------
    >>> llm = LLM(model="gpt-4.1-mini", base_url="http://127.0.0.1:8000/v1", api_key="x")
    >>> llm.price().input_per_mtok
    0.4
    """

    model: str = "gpt-4.1-mini"
    base_url: str | None = None
    api_key: str | None = None
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    timeout_s: float = DEFAULT_TIMEOUT_S
    max_retries: int = DEFAULT_MAX_RETRIES
    rpm: float | None = None
    tpm: float | None = None
    cache_path: str | None = None
    temperature: float = 0.0
    logprobs: int | None = None
    prices: Mapping[str, Price] = field(default_factory=dict, hash=False, compare=False)

    def __post_init__(self) -> None:
        from rlm_pipeline.errors import InputError

        if self.max_concurrency < 1:
            msg = f"max_concurrency must be >= 1, got {self.max_concurrency}"
            raise InputError(msg)
        if self.timeout_s <= 0:
            msg = f"timeout_s must be > 0, got {self.timeout_s}"
            raise InputError(msg)
        if self.max_retries < 0:
            msg = f"max_retries must be >= 0, got {self.max_retries}"
            raise InputError(msg)
        for name in ("rpm", "tpm"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                msg = f"{name} must be > 0 or None, got {value}"
                raise InputError(msg)
        logprobs = self.logprobs
        if logprobs is not None and (
            isinstance(logprobs, bool) or not isinstance(logprobs, int) or not 0 <= logprobs <= 20
        ):
            msg = f"logprobs must be an integer from 0 to 20 (top_logprobs) or None, got {logprobs!r}"
            raise InputError(msg)
        object.__setattr__(self, "prices", dict(self.prices))

    def resolved_base_url(self) -> str | None:
        """The endpoint: ``base_url`` or ``OPENAI_BASE_URL``."""
        return self.base_url or os.environ.get("OPENAI_BASE_URL") or None

    def resolved_api_key(self) -> str:
        """The API key: ``api_key``, ``OPENAI_API_KEY``, or a placeholder for local servers."""
        return self.api_key or os.environ.get("OPENAI_API_KEY") or "sk-no-key"

    def price(self) -> Price:
        """Price of this model (:meth:`known_price`), or free when it has none.

        Usage of an unpriced model is recorded at zero cost; check
        :meth:`has_price` before showing a cost (a cost budget with an
        unpriced model is refused, see :meth:`require_price`).
        """
        known = self.known_price()
        return known if known is not None else Price(0.0, 0.0)

    def known_price(self) -> Price | None:
        """Price of this model: ``prices`` first, then :data:`DEFAULT_PRICES`; None if neither has it.

        An exact name wins; otherwise the longest table name the model name
        starts with (``gpt-4.1-mini-2025-04-14`` is priced as ``gpt-4.1-mini``).

        Examples
        --------
        >>> LLM(model="gpt-4.1-mini-2025-04-14").known_price()
        Price(input_per_mtok=0.4, output_per_mtok=1.6, cached_input_per_mtok=0.1)
        >>> LLM(model="meta-llama/Llama-3.3-70B-Instruct-Turbo").known_price() is None
        True
        """
        table = {**DEFAULT_PRICES, **self.prices}
        if self.model in table:
            return table[self.model]
        for name in sorted(table, key=len, reverse=True):
            if self.model.startswith(name):
                return table[name]
        return None

    def has_price(self) -> bool:
        """Whether this model is priced (by ``prices`` or :data:`DEFAULT_PRICES`).

        Examples
        --------
        >>> LLM(model="sim-1").has_price(), LLM(model="sim-1", prices={"sim-1": Price(1, 2)}).has_price()
        (False, True)
        """
        return self.known_price() is not None

    def require_price(self, budget: Budget | None) -> None:
        """Refuse a cost budget for a model that has no price (nothing could be counted against it).

        Raises
        ------
        InputError
            ``budget.max_cost_usd`` is set and :meth:`has_price` is False.

        Examples
        --------
        >>> LLM(model="sim-1").require_price(Budget(max_calls=5))  # no cost limit: fine
        >>> LLM(model="sim-1").require_price(Budget(max_cost_usd=1.0))
        Traceback (most recent call last):
        ...
        rlm_pipeline.errors.InputError: no price for model 'sim-1': pass --price-input/--price-output (USD per 1M tokens) or rp.Price via LLM(prices=...)
        """
        from rlm_pipeline.errors import InputError

        if budget is None or budget.max_cost_usd is None or self.has_price():
            return
        msg = (
            f"no price for model {self.model!r}: pass --price-input/--price-output "
            "(USD per 1M tokens) or rp.Price via LLM(prices=...)"
        )
        raise InputError(msg)

    def share(self, parts: int) -> LLM:
        """A copy whose concurrency, rpm and tpm are this config's divided by ``parts``.

        Used to give each of ``parts`` concurrent Spark tasks its share, so the
        whole job never exceeds the configured limits.  ``rpm`` and ``tpm`` are
        divided exactly (fractional rates are fine); concurrency cannot go
        below one request per task, so ``parts`` must not exceed
        ``max_concurrency`` — the Spark adapter runs at most that many tasks at
        once.

        Examples
        --------
        >>> share = LLM(max_concurrency=64, rpm=100).share(8)
        >>> share.max_concurrency, round(share.rpm, 2)
        (8, 12.5)
        """
        from rlm_pipeline.errors import InputError

        parts = max(1, parts)
        if parts > self.max_concurrency:
            msg = (
                f"cannot share max_concurrency={self.max_concurrency} over {parts} "
                "concurrent tasks; run at most max_concurrency tasks at once"
            )
            raise InputError(msg)
        return replace(
            self,
            max_concurrency=self.max_concurrency // parts,
            rpm=None if self.rpm is None else self.rpm / parts,
            tpm=None if self.tpm is None else self.tpm / parts,
        )


@dataclass(frozen=True)
class Budget:
    """Spending limits for one call of :func:`classify` or :meth:`RLM.run`.

    ``None`` means no limit.  A run stops cleanly before it would pass a limit.

    Examples
    --------
    >>> Budget(max_calls=100).max_calls
    100
    """

    max_calls: int | None = None
    max_tokens: int | None = None
    max_cost_usd: float | None = None

    def __post_init__(self) -> None:
        from rlm_pipeline.errors import InputError

        for name in ("max_calls", "max_tokens", "max_cost_usd"):
            value = getattr(self, name)
            if value is not None and value < 0:
                msg = f"{name} must be >= 0 or None, got {value}"
                raise InputError(msg)

    def less(self, spent: Usage) -> Budget:
        """What is left of this budget after ``spent`` (never below zero).

        Examples
        --------
        >>> from rlm_pipeline.llm.usage import Usage
        >>> Budget(max_calls=10, max_tokens=100).less(Usage(calls=4, input_tokens=90, output_tokens=20))
        Budget(max_calls=6, max_tokens=0, max_cost_usd=None)
        """
        return Budget(
            max_calls=None if self.max_calls is None else max(0, self.max_calls - spent.calls),
            max_tokens=None
            if self.max_tokens is None
            else max(0, self.max_tokens - spent.input_tokens - spent.output_tokens),
            max_cost_usd=None
            if self.max_cost_usd is None
            else max(0.0, self.max_cost_usd - spent.cost_usd),
        )

    def share(self, parts: int) -> Budget:
        """This budget divided evenly over ``parts`` independent workers."""
        parts = max(1, parts)
        return Budget(
            max_calls=None if self.max_calls is None else self.max_calls // parts,
            max_tokens=None if self.max_tokens is None else self.max_tokens // parts,
            max_cost_usd=None if self.max_cost_usd is None else self.max_cost_usd / parts,
        )
