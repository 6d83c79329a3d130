"""Knobs of the simulator: latency, concurrency cap, fault rates, structured mode."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any

from rlm_pipeline.errors import InputError

__all__ = [
    "CONFIDENCE_MODES",
    "STRUCTURED_MODES",
    "TEXT_STYLES",
    "TOKEN_COUNTS",
    "TOOL_MODES",
    "SimConfig",
]

#: How the simulator treats ``response_format``, mimicking real servers:
#: ``json_schema`` (vLLM: everything accepted), ``strict`` (OpenAI: as
#: ``json_schema``, but a ``"strict": true`` schema that breaks strict mode's rules
#: gets HTTP 400, see :mod:`rlm_pipeline.sim.strict`), ``json_object``
#: (llama.cpp: ``json_schema`` rejected with HTTP 500, ``json_object`` + schema
#: accepted), ``text`` (neither: any ``response_format`` gets HTTP 400).
STRUCTURED_MODES = ("json_schema", "strict", "json_object", "text")

#: How the simulator treats ``tools``, mimicking real servers: ``native`` (OpenAI,
#: vLLM: calls come back as ``tool_calls``), ``text`` (llama.cpp's server for many
#: models: the calls are written in the reply text), ``rejected`` (HTTP 400 naming
#: ``tools`` for any request that offers tools), ``rejected_500`` (HTTP 500 "tools
#: param requires --jinja flag", as llama.cpp's server started without ``--jinja``).
TOOL_MODES = ("native", "text", "rejected", "rejected_500")
#: How root actions are written in text: ``tag`` (``<tool_call>…</tool_call>``),
#: ``bare`` (JSON objects in prose), ``fenced`` (a ```json block), or ``cycle``
#: (tag, bare, fenced by turn).
TEXT_STYLES = ("cycle", "tag", "bare", "fenced")
#: How the reply's ``usage`` counts tokens: ``estimate`` (the client's own
#: estimator, characters / 4) or ``words`` (words and runs of punctuation, close to
#: a real tokenizer and independent of the client's estimate: tests of estimates use it).
TOKEN_COUNTS = ("estimate", "words")

#: How a cheap model's confidence relates to being right (see :mod:`rlm_pipeline.sim.cheap`):
#: ``informative`` (right answers more confident) or ``random`` (no relation).
CONFIDENCE_MODES = ("informative", "random")

_RATES = ("accuracy", "fault_429", "fault_500", "fault_timeout", "fault_malformed", "fault_wrong_ids")


@dataclass(frozen=True)
class SimConfig:
    """Configuration of a :class:`~rlm_pipeline.sim.server.SimServer`.

    Parameters
    ----------
    latency_ms
        Time each request takes inside the server (while holding a concurrency slot).
    max_concurrency
        Requests answered at once; further requests queue, as on a real server.
    fault_429, fault_500, fault_timeout
        Per-request probabilities of a 429 (with ``Retry-After``), a 500, or a
        reply delayed by ``timeout_delay_s`` (past the client's timeout).  The
        three are exclusive; their sum must be at most 1.
    timeout_delay_s
        Delay of a "timeout" reply.
    fault_malformed
        Probability that a structured reply's JSON is cut short.
    fault_wrong_ids
        Probability that a batch reply drops, duplicates or invents a row id.
    structured_mode
        One of :data:`STRUCTURED_MODES`.
    seed
        Seed of the fault generator: the same seed gives the same fault sequence.
    require_api_key
        When set, requests whose bearer token differs get HTTP 401.
    retry_after_s
        ``(low, high)`` range of the ``Retry-After`` sent with a 429.
    models
        Model names listed by ``GET /v1/models`` (any name is accepted, unless
        ``strict_models``).
    strict_models
        When True, a chat request for a model not in ``models`` gets HTTP 404
        (``model_not_found``), as OpenAI and vLLM answer.
    max_log
        Most entries kept in the ``requests_log`` of the stats.
    tool_mode
        One of :data:`TOOL_MODES`: how a root request that offers ``tools`` is answered.
        A root request without tools (the RLM's ``text`` protocol) is always answered
        in text, and one whose ``response_format`` asks for an action object (the
        ``json`` protocol) with that object.
    text_style
        One of :data:`TEXT_STYLES`: how actions are written in text replies (always
        with prose around them).
    text_several
        Write several actions in one text reply when the plan allows (the actions
        whose arguments do not depend on an earlier result), as small models do.
    grammar_limit
        When set, behave like llama.cpp's grammar engine: a request whose
        ``response_format`` schema or ``tools`` hold a ``maxLength`` / ``minLength`` /
        ``maxItems`` / ``minItems`` above this gets HTTP 500 (the real server fails
        to build the grammar, or dies).
    fail_root_after
        When set, every root-role request after the first N gets HTTP 500 (a
        server that crashed mid-run).
    token_count
        One of :data:`TOKEN_COUNTS`: how ``usage`` counts prompt and reply tokens.
    accuracy
        The "cheap model" mode (:mod:`rlm_pipeline.sim.cheap`): each classified
        row gets the keyword classifier's label with this probability and another
        label otherwise (a filter row: the keyword judgement or its opposite), drawn from a hash of ``seed`` and the text (the same text
        gets the same answer in every call).  1.0: always the classifier's label.
    confidence
        One of :data:`CONFIDENCE_MODES`: how the confidence of each classify / filter answer
        (a ``confidence`` field when the reply schema has one, the label's token
        log-probability when the request asks for ``logprobs``) relates to being right.
    logprobs
        Whether replies carry token log-probabilities when a request asks
        (``logprobs: true``); False: the request is answered without them, as by
        a server that does not support them.

    Examples
    --------
    >>> SimConfig(latency_ms=50, fault_429=0.1).max_concurrency
    64
    """

    latency_ms: float = 0.0
    max_concurrency: int = 64
    fault_429: float = 0.0
    fault_500: float = 0.0
    fault_timeout: float = 0.0
    timeout_delay_s: float = 5.0
    fault_malformed: float = 0.0
    fault_wrong_ids: float = 0.0
    structured_mode: str = "json_schema"
    seed: int = 0
    require_api_key: str | None = None
    retry_after_s: tuple[float, float] = (0.05, 0.2)
    models: tuple[str, ...] = ("sim-1", "gpt-4.1-mini", "gpt-4.1-nano")
    strict_models: bool = False
    max_log: int = 1_000_000
    tool_mode: str = "native"
    text_style: str = "cycle"
    text_several: bool = False
    grammar_limit: int | None = None
    fail_root_after: int | None = None
    token_count: str = "estimate"
    accuracy: float = 1.0
    confidence: str = "informative"
    logprobs: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "retry_after_s", tuple(self.retry_after_s))
        object.__setattr__(self, "models", tuple(self.models))
        for name in _RATES:
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
                msg = f"{name} must be a rate between 0 and 1, got {value!r}"
                raise InputError(msg)
        if self.fault_429 + self.fault_500 + self.fault_timeout > 1.0 + 1e-9:
            msg = "fault_429 + fault_500 + fault_timeout must be at most 1"
            raise InputError(msg)
        if not isinstance(self.max_concurrency, int) or self.max_concurrency < 1:
            msg = f"max_concurrency must be an integer >= 1, got {self.max_concurrency!r}"
            raise InputError(msg)
        for name in ("latency_ms", "timeout_delay_s"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                msg = f"{name} must be a number >= 0, got {value!r}"
                raise InputError(msg)
        if self.structured_mode not in STRUCTURED_MODES:
            msg = f"structured_mode must be one of {STRUCTURED_MODES}, got {self.structured_mode!r}"
            raise InputError(msg)
        low, high = (self.retry_after_s + (0.0, 0.0))[:2]
        if len(self.retry_after_s) != 2 or not 0 <= low <= high:
            msg = f"retry_after_s must be (low, high) with 0 <= low <= high, got {self.retry_after_s}"
            raise InputError(msg)
        if self.tool_mode not in TOOL_MODES:
            msg = f"tool_mode must be one of {TOOL_MODES}, got {self.tool_mode!r}"
            raise InputError(msg)
        if self.text_style not in TEXT_STYLES:
            msg = f"text_style must be one of {TEXT_STYLES}, got {self.text_style!r}"
            raise InputError(msg)
        if self.confidence not in CONFIDENCE_MODES:
            msg = f"confidence must be one of {CONFIDENCE_MODES}, got {self.confidence!r}"
            raise InputError(msg)
        if self.token_count not in TOKEN_COUNTS:
            msg = f"token_count must be one of {TOKEN_COUNTS}, got {self.token_count!r}"
            raise InputError(msg)
        for name in ("grammar_limit", "fail_root_after"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 0):
                msg = f"{name} must be an integer >= 0 or None, got {value!r}"
                raise InputError(msg)
        if self.max_log < 0:
            msg = f"max_log must be >= 0, got {self.max_log}"
            raise InputError(msg)

    def updated(self, changes: dict[str, Any]) -> SimConfig:
        """A copy with ``changes`` applied; unknown names raise :class:`InputError`."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            msg = f"unknown simulator setting(s): {', '.join(unknown)}"
            raise InputError(msg)
        try:
            return replace(self, **changes)
        except TypeError as exc:
            msg = f"bad simulator setting: {exc}"
            raise InputError(msg) from exc

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of every field."""
        return {f.name: getattr(self, f.name) for f in fields(self)}
