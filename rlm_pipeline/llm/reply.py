"""What a model call returns: :class:`ChatReply` and its :class:`ToolCall` entries."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

__all__ = ["ChatReply", "ToolCall"]


@dataclass(frozen=True)
class ToolCall:
    """One function call the model asked for.

    ``arguments`` is the raw JSON text the model wrote — untrusted; parse and
    check it before use.

    Examples
    --------
    >>> ToolCall(id="call_1", name="peek", arguments='{"view": "context"}').name
    'peek'
    """

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ChatReply:
    """The model's answer to one chat request.

    Attributes
    ----------
    content
        Reply text, or None when the model only called tools.
    tool_calls
        Tool calls in the order the model made them.
    input_tokens, output_tokens
        Token counts from the server's ``usage`` (for a cache hit: those of the
        original call, which cost nothing this time).
    cached
        True when answered from the response cache without traffic.
    finish_reason
        The server's finish reason (``"stop"``, ``"tool_calls"``, ``"length"``...).
    logprobs
        ``(token, logprob)`` per reply token when the request asked for them
        (``LLM(logprobs=N)``) and the server returned them; else None.  Kept in
        the response cache with the reply.
    cached_tokens
        Of ``input_tokens``, those the provider's prompt cache served (as the
        meter recorded them; not kept in the response cache: a hit costs nothing).

    Examples
    --------
    >>> ChatReply(content="hi", tool_calls=[], input_tokens=3, output_tokens=1,
    ...           cached=False, finish_reason="stop").content
    'hi'
    """

    content: str | None
    tool_calls: list[ToolCall] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    cached: bool = False
    finish_reason: str | None = None
    logprobs: tuple[tuple[str, float], ...] | None = None
    cached_tokens: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (the cache's stored form, without ``cached``)."""
        out: dict[str, Any] = {
            "content": self.content,
            "tool_calls": [[c.id, c.name, c.arguments] for c in self.tool_calls],
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "finish_reason": self.finish_reason,
        }
        if self.logprobs is not None:
            out["logprobs"] = [[token, logprob] for token, logprob in self.logprobs]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, cached: bool = False) -> ChatReply:
        """Inverse of :meth:`to_dict`."""
        return cls(
            content=data.get("content"),
            tool_calls=[ToolCall(str(i), str(n), str(a)) for i, n, a in data.get("tool_calls", [])],
            input_tokens=int(data.get("input_tokens", 0)),
            output_tokens=int(data.get("output_tokens", 0)),
            cached=cached,
            finish_reason=data.get("finish_reason"),
            logprobs=_stored_logprobs(data.get("logprobs")),
        )

    def as_cached(self) -> ChatReply:
        """A copy marked as served from the cache."""
        return replace(self, cached=True)


def _stored_logprobs(raw: Any) -> tuple[tuple[str, float], ...] | None:
    """The ``logprobs`` of a stored reply (:meth:`ChatReply.to_dict`), or None."""
    if not isinstance(raw, list):
        return None
    return tuple((str(token), float(logprob)) for token, logprob in raw)
