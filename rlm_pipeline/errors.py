"""Exceptions raised by rlm_pipeline.

The tree::

    RLMPipelineError
    ├── InputError (also ValueError)        bad arguments or input data
    ├── ExpressionError (also ValueError)   model/user SQL rejected; carries fragment + hint
    │   └── UnsupportedExpressionError      valid SQL outside the allow list
    ├── EngineError                         the engine failed on a checked plan
    ├── LLMError                            a model call failed for good
    │   ├── LLMResponseParseError           reply did not parse / validate; carries raw text
    │   ├── LLMRateLimitError               429 after all retries
    │   └── LLMTimeoutError                 timed out after all retries
    └── BudgetExceededError                 a limit (calls, tokens, cost, steps, time) was hit

Foreign errors (Polars, Spark, openai, sqlglot) are converted at the boundary
with ``raise ... from exc`` so callers only ever need to catch
:class:`RLMPipelineError`.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BudgetExceededError",
    "EngineError",
    "ExpressionError",
    "InputError",
    "LLMError",
    "LLMRateLimitError",
    "LLMResponseParseError",
    "LLMTimeoutError",
    "RLMPipelineError",
    "UnsupportedExpressionError",
]


class RLMPipelineError(Exception):
    """Root of every error raised by rlm_pipeline."""


class InputError(RLMPipelineError, ValueError):
    """Bad arguments or unreadable input (missing file, unknown column, ...)."""


class ExpressionError(RLMPipelineError, ValueError):
    """An SQL expression was rejected.

    Parameters
    ----------
    message
        What is wrong.
    fragment
        The offending piece of SQL, if known.
    hint
        A short instruction the model can act on.
    """

    def __init__(self, message: str, *, fragment: str | None = None, hint: str | None = None):
        self.fragment = fragment
        self.hint = hint
        parts = [message]
        if fragment:
            parts.append(f"near: {fragment[:200]}")
        if hint:
            parts.append(f"hint: {hint}")
        super().__init__(" | ".join(parts))


class UnsupportedExpressionError(ExpressionError):
    """Valid SQL that uses a construct or function outside the allow list."""


class EngineError(RLMPipelineError):
    """The engine (Polars or Spark) failed while running a checked plan."""


class LLMError(RLMPipelineError):
    """A model call failed for good (after retries, or at once for 4xx).

    Parameters
    ----------
    message
        What failed.
    status
        HTTP status code, when there was one.
    attempts
        How many attempts were made.
    """

    def __init__(self, message: str, *, status: int | None = None, attempts: int = 1):
        self.status = status
        self.attempts = attempts
        super().__init__(message)


class LLMResponseParseError(LLMError):
    """The model's reply did not parse or did not match the requested schema."""

    def __init__(self, message: str, *, raw: str, attempts: int = 1):
        self.raw = raw
        super().__init__(f"{message}; raw reply: {raw[:300]!r}", attempts=attempts)


class LLMRateLimitError(LLMError):
    """HTTP 429 persisted after every retry."""


class LLMTimeoutError(LLMError):
    """The request timed out after every retry."""


class BudgetExceededError(RLMPipelineError):
    """A limit was reached.

    Parameters
    ----------
    what
        Which limit: ``"calls"``, ``"tokens"``, ``"cost_usd"``, ``"steps"`` or ``"time_s"``.
    spent
        What had been spent when the limit was hit.
    budget
        The limit.
    partial
        The best partial result, when one exists (e.g. a partial answer).
    """

    def __init__(self, what: str, spent: float, budget: float, *, partial: Any = None):
        self.what = what
        self.spent = spent
        self.budget = budget
        self.partial = partial
        super().__init__(f"budget exceeded: {what} spent {spent:g} of {budget:g}")
