"""Exceptions raised by rlm_pipeline.

The tree::

    RLMPipelineError
    ├── InputError (also ValueError)        bad arguments or input data
    │   └── MissingDependencyError          an optional extra is not installed (also
    │                                       ImportError); says what to pip install
    ├── ExpressionError (also ValueError)   model/user SQL rejected; carries fragment + hint
    │   └── UnsupportedExpressionError      valid SQL outside the allow list
    ├── EngineError                         the engine failed on a checked plan
    │   └── SparkWorkerError                Spark's Python workers cannot import rlm_pipeline
    │                                       or its needs; names the worker Python and the fix
    ├── LLMError                            a model call failed for good
    │   ├── LLMResponseParseError           reply did not parse / validate; carries raw text
    │   ├── LLMRateLimitError               429 after all retries
    │   ├── RootModelError                  the RLM root's model failed mid-run; carries partial
    │   ├── LLMTimeoutError                 timed out after all retries
    │   └── LLMEndpointError                the endpoint fails for one systemic cause
    │                                       (unreachable, key refused, unknown model)
    ├── BudgetExceededError                 a limit (calls, tokens, cost, steps, time) was hit
    ├── UnansweredRowsError                 rows without an answer where the caller asked to
    │                                       raise (rp.filter on_error="raise"); counts by reason
    ├── ToolError                           an RLM tool call the model can correct (bad view,
    │                                       column, name or argument); shown to the model
    └── (InputError) ResourceLimitError     model-issued engine work refused or cancelled by a
                                            resource limit (view rows, views, time, memory)

Foreign errors (Polars, Spark, openai, sqlglot) are converted at the boundary
with ``raise ... from exc`` so callers only ever need to catch
:class:`RLMPipelineError`.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = [
    "BudgetExceededError",
    "EngineError",
    "ExpressionError",
    "InputError",
    "LLMEndpointError",
    "LLMError",
    "LLMRateLimitError",
    "LLMResponseParseError",
    "LLMTimeoutError",
    "MissingDependencyError",
    "RLMPipelineError",
    "ResourceLimitError",
    "RootModelError",
    "SparkWorkerError",
    "ToolError",
    "UnansweredRowsError",
    "UnsupportedExpressionError",
]


class RLMPipelineError(Exception):
    """Root of every error raised by rlm_pipeline."""


class InputError(RLMPipelineError, ValueError):
    """Bad arguments or unreadable input (missing file, unknown column, ...)."""


class MissingDependencyError(InputError, ImportError):
    """A feature needs an optional extra that is not installed.

    The message is one line naming the package and the ``pip install`` to run,
    e.g. ``Spark support needs pyspark: pip install 'rlm-pipeline[spark]'``.
    ``extra`` is the extra's name (``spark``, ``validate``, ``sim``).
    """

    def __init__(self, message: str, *, extra: str) -> None:
        super().__init__(message)
        self.extra = extra


class ResourceLimitError(InputError):
    """Model-issued engine work refused before it ran, or cancelled while it ran, by a limit.

    ``limit`` names the limit (``max_view_rows``, ``max_views``, ``max_total_rows``,
    ``max_plan_scans``, ``tool_timeout_s``, ``timeout_s``, ``max_memory_bytes``); the
    message says the size and what to do instead (filter first, aggregate before joining).
    """

    def __init__(self, message: str, *, limit: str) -> None:
        super().__init__(message)
        self.limit = limit


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


class ToolError(RLMPipelineError):
    """A tool call the model can correct (bad view, column, name or argument).

    The RLM loop shows its message to the model as the tool's result.

    Examples
    --------
    >>> isinstance(ToolError("unknown view 'x'"), RLMPipelineError)
    True
    """


class UnansweredRowsError(RLMPipelineError):
    """Some rows got no trustworthy answer and the caller asked to fail rather than guess.

    Raised by :func:`rlm_pipeline.filter`, :func:`rlm_pipeline.join` (candidate
    pairs) and :func:`rlm_pipeline.top_k` with ``on_error="raise"`` (the
    default) after the run: keeping or dropping those rows would be a silent
    guess.  The message names the counts by reason and how to re-run; with a
    cache file, the answered rows are not asked again.

    Attributes
    ----------
    op
        The operator (``"filter"``, ``"join"``, ``"top_k"``).
    failed, rows
        Rows without an answer, of all input rows.
    errors
        Failed rows by reason kind (``{"api_error": 3}``).
    """

    def __init__(
        self,
        message: str,
        *,
        op: str = "filter",
        failed: int = 0,
        rows: int = 0,
        errors: dict[str, int] | None = None,
    ) -> None:
        # Defaults: Polars re-raises an error from a map_batches function as type(exc)(message).
        super().__init__(message)
        self.op = op
        self.failed = failed
        self.rows = rows
        self.errors = dict(errors or {})


class EngineError(RLMPipelineError):
    """The engine (Polars or Spark) failed while running a checked plan."""


class SparkWorkerError(EngineError):
    """Spark's Python workers cannot run rlm_pipeline (checked before any model call).

    The message is one line naming the Python the workers run, what it lacks,
    and the fix (``PYSPARK_PYTHON``, ``spark.pyspark.python``, or shipping the
    package to a cluster); see :mod:`rlm_pipeline.engines.spark_workers`.
    """


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
    """The model's reply did not parse or did not match the requested schema.

    ``raw``: the reply's text; ``reply``: the reply itself (a ``ChatReply``: its
    tokens were spent and metered) when the client read one, else None.
    """

    def __init__(self, message: str, *, raw: str, attempts: int = 1, reply: Any = None):
        self.raw = raw
        self.reply = reply
        super().__init__(f"{message}; raw reply: {raw[:300]!r}", attempts=attempts)


class LLMRateLimitError(LLMError):
    """HTTP 429 persisted after every retry."""


class RootModelError(LLMError):
    """The RLM's root model failed for good during a run (server error, crash, refusal).

    The run is not lost: ``partial`` holds the best partial result (the last
    successful tool result of the root) and ``steps`` the root turns used.
    """

    def __init__(
        self,
        message: str,
        *,
        partial: Any = None,
        steps: int = 0,
        status: int | None = None,
        attempts: int = 1,
    ):
        self.partial = partial
        self.steps = steps
        super().__init__(message, status=status, attempts=attempts)


class LLMTimeoutError(LLMError):
    """The request timed out after every retry."""


class LLMEndpointError(LLMError):
    """The endpoint fails every call for one cause that is not the row's.

    Raised by the client's circuit breaker (:mod:`rlm_pipeline.llm.breaker`):
    connection refused, DNS or TLS failure, HTTP 401/403/404, an exhausted
    quota, the same 5xx on every call, or no endpoint configured at all.  Once
    raised by a client, every later call of that client raises it at once
    without sending anything.  The operators let it propagate (it never
    becomes ``api_error`` rows), so a run against a dead endpoint stops
    within seconds.

    Parameters
    ----------
    message
        One line: what failed, where, and a hint.
    endpoint
        The base URL the client sends to (read from the message when not given).
    cause
        A short kind (read from the message when not given): ``"connection_refused"``, ``"dns"``, ``"tls"``,
        ``"connect"``, ``"connect_timeout"``, ``"unauthorized"`` (401),
        ``"forbidden"`` (403), ``"not_found"`` (404), ``"quota"``,
        ``"server_error"`` (5xx) or ``"no_endpoint"``.
    status
        The HTTP status, when there was one.
    attempts
        Tries of the call that tripped the breaker.

    Examples
    --------
    >>> err = LLMEndpointError("connection refused at http://127.0.0.1:9/v1 — is the server running?")
    >>> isinstance(err, LLMError), err.cause, err.endpoint
    (True, 'connection_refused', 'http://127.0.0.1:9/v1')
    >>> err = LLMEndpointError("HTTP 401 from http://127.0.0.1:8/v1: the API key was refused")
    >>> err.cause, err.status, err.endpoint
    ('unauthorized', 401, 'http://127.0.0.1:8/v1')
    """

    def __init__(
        self,
        message: str,
        *,
        endpoint: str | None = None,
        cause: str | None = None,
        status: int | None = None,
        attempts: int = 1,
    ):
        # Rebuilt from its message alone (Polars re-raises errors of a UDF as
        # ``type(exc)(text)``; Spark hands them over as text): read what it names.
        if status is None:
            found = re.search(r"\bHTTP (\d{3}) from ", message)
            status = int(found.group(1)) if found else None
        if endpoint is None:
            url = re.search(r"https?://\S+?(?=:?\s|:?$)", message)
            endpoint = url.group(0) if url else ""
        self.endpoint = endpoint
        self.cause = cause if cause is not None else _endpoint_cause(message, status)
        super().__init__(message, status=status, attempts=attempts)

    def again(self) -> LLMEndpointError:
        """A fresh copy (raised by each later call, so tracebacks do not pile up on one object)."""
        return LLMEndpointError(
            str(self),
            endpoint=self.endpoint,
            cause=self.cause,
            status=self.status,
            attempts=self.attempts,
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (_endpoint_error, (str(self), self.endpoint, self.cause, self.status, self.attempts))


_CAUSE_PREFIXES = (
    ("connection refused at ", "connection_refused"),
    ("cannot resolve host ", "dns"),
    ("TLS handshake with ", "tls"),
    ("connecting to ", "connect_timeout"),
    ("cannot connect to ", "connect"),
    ("no model endpoint configured", "no_endpoint"),
)
_CAUSE_STATUSES = {401: "unauthorized", 403: "forbidden", 404: "not_found", 429: "quota"}


def _endpoint_cause(message: str, status: int | None) -> str:
    """The cause an endpoint error's message names (see :class:`LLMEndpointError`)."""
    if status is not None:
        return _CAUSE_STATUSES.get(status, "server_error" if status >= 500 else "http")
    for prefix, cause in _CAUSE_PREFIXES:
        if message.startswith(prefix):
            return cause
    return "connect"


def _endpoint_error(
    message: str, endpoint: str, cause: str, status: int | None, attempts: int
) -> LLMEndpointError:
    return LLMEndpointError(message, endpoint=endpoint, cause=cause, status=status, attempts=attempts)


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
