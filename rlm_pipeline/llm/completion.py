"""Reading a chat completion's JSON body into the few fields the client uses.

Pure functions: no meter, no client state.  :func:`read_completion` reads
``choices[0].message`` (``content``, ``tool_calls``),
``choices[0].finish_reason`` and ``usage`` and nothing else.

Examples
--------
>>> body = b'{"choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}],'
>>> body += b' "usage": {"prompt_tokens": 3, "completion_tokens": 1}}'
>>> done = read_completion(body)
>>> done.content, done.usage, done.finish_reason, done.cached_tokens
('hi', (3, 1), 'stop', 0)
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from rlm_pipeline.llm.reply import ToolCall

__all__ = [
    "Completion",
    "NotJSON",
    "cached_prompt_tokens",
    "read_completion",
    "token_logprobs",
    "tool_calls",
    "usage_counts",
]


class NotJSON(ValueError):
    """The body is not a JSON object (the message says which)."""


@dataclass(frozen=True)
class Completion:
    """The fields of a completion the client reads.

    Attributes
    ----------
    content
        ``choices[0].message.content`` (non-string content as JSON text).
    tool_calls
        The message's function calls, arguments as raw JSON text.
    usage
        ``(prompt_tokens, completion_tokens)`` from the body, or None if absent or unreadable.
    finish_reason
        ``choices[0].finish_reason`` when a string.
    has_message
        Whether the body had ``choices[0].message`` at all.
    cached_tokens
        ``usage.prompt_tokens_details.cached_tokens`` (prompt tokens the
        provider served from its prefix cache), 0 when absent or unreadable.
    logprobs
        ``(token, logprob)`` per reply token from ``choices[0].logprobs``
        (:func:`token_logprobs`), or None when the reply has none.
    """

    content: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: tuple[int, int] | None = None
    finish_reason: str | None = None
    has_message: bool = False
    cached_tokens: int = 0
    logprobs: tuple[tuple[str, float], ...] | None = None


def read_completion(body: bytes | str) -> Completion:
    """The :class:`Completion` in a response body.

    Raises
    ------
    NotJSON
        The body is not JSON, or not a JSON object.
    """
    try:
        completion = json.loads(body)
    except (ValueError, RecursionError) as exc:
        msg = "reply body is not JSON"
        raise NotJSON(msg) from exc
    if not isinstance(completion, dict):
        msg = "reply body is not a JSON object"
        raise NotJSON(msg)
    choices = completion.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices else None
    if not isinstance(choice, dict):
        choice = None
    message = choice.get("message") if choice is not None else None
    if not isinstance(message, dict):
        message = None
    content = message.get("content") if message is not None else None
    if content is not None and not isinstance(content, str):
        content = json.dumps(content)
    usage = completion.get("usage")
    finish_reason = choice.get("finish_reason") if choice is not None else None
    return Completion(
        content=content,
        tool_calls=tool_calls(message.get("tool_calls") if message is not None else None),
        usage=usage_counts(usage) if isinstance(usage, dict) else None,
        finish_reason=finish_reason if isinstance(finish_reason, str) else None,
        has_message=message is not None,
        cached_tokens=cached_prompt_tokens(usage) if isinstance(usage, dict) else 0,
        logprobs=token_logprobs(choice.get("logprobs")) if choice is not None else None,
    )


def tool_calls(raw: Any) -> list[ToolCall]:
    """The function calls of a reply message (entries without a function are skipped).

    Examples
    --------
    >>> tool_calls([{"id": "1", "function": {"name": "f", "arguments": {"a": 1}}}])
    [ToolCall(id='1', name='f', arguments='{"a": 1}')]
    """
    calls: list[ToolCall] = []
    if not isinstance(raw, list):
        return calls
    for call in raw:
        if not isinstance(call, dict):
            continue
        function = call.get("function")
        if not isinstance(function, dict):
            continue
        arguments = function.get("arguments")
        if arguments is None:
            arguments = ""
        elif not isinstance(arguments, str):  # some servers send an object; keep it as JSON text
            arguments = json.dumps(arguments)
        calls.append(
            ToolCall(
                id=str(call.get("id") or ""),
                name=str(function.get("name") or ""),
                arguments=arguments,
            )
        )
    return calls


def cached_prompt_tokens(usage: dict[str, Any]) -> int:
    """``usage.prompt_tokens_details.cached_tokens`` (0 when absent, unreadable or negative).

    Examples
    --------
    >>> cached_prompt_tokens({"prompt_tokens": 90, "prompt_tokens_details": {"cached_tokens": 64}})
    64
    >>> cached_prompt_tokens({"prompt_tokens_details": None}), cached_prompt_tokens({})
    (0, 0)
    """
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    if isinstance(cached, bool) or not isinstance(cached, int | float) or cached < 0:
        return 0
    return int(cached)


def usage_counts(usage: dict[str, Any]) -> tuple[int, int] | None:
    """``(prompt_tokens, completion_tokens)`` from a reply's usage, or None if unreadable.

    Examples
    --------
    >>> usage_counts({"prompt_tokens": 5, "completion_tokens": 2.0}), usage_counts({})
    ((5, 2), None)
    """
    prompt = usage.get("prompt_tokens")
    completion = usage.get("completion_tokens")
    if isinstance(prompt, bool) or isinstance(completion, bool):
        return None
    if not isinstance(prompt, int | float) or not isinstance(completion, int | float):
        return None
    return int(prompt), int(completion)


def token_logprobs(raw: Any) -> tuple[tuple[str, float], ...] | None:
    """``(token, logprob)`` pairs of a choice's ``logprobs``, or None when there are none.

    Reads the chat format (``{"content": [{"token", "logprob", ...}]}``: OpenAI,
    vLLM, llama.cpp) and the completions format (``{"tokens": [...],
    "token_logprobs": [...]}``, some llama.cpp builds).  Entries without a
    string token or a finite number are skipped; no entry at all gives None.

    Examples
    --------
    >>> token_logprobs({"content": [{"token": "a", "logprob": -0.5}, {"token": "b"}]})
    (('a', -0.5),)
    >>> token_logprobs({"tokens": ["x"], "token_logprobs": [-1]}), token_logprobs(None)
    ((('x', -1.0),), None)
    """
    if not isinstance(raw, dict):
        return None
    pairs: list[tuple[Any, Any]] = []
    content = raw.get("content")
    if isinstance(content, list):
        pairs = [
            (entry.get("token"), entry.get("logprob")) for entry in content if isinstance(entry, dict)
        ]
    elif isinstance(raw.get("tokens"), list) and isinstance(raw.get("token_logprobs"), list):
        pairs = list(zip(raw["tokens"], raw["token_logprobs"], strict=False))
    out = tuple(
        (token, float(logprob))
        for token, logprob in pairs
        if isinstance(token, str)
        and isinstance(logprob, int | float)
        and not isinstance(logprob, bool)
        and math.isfinite(logprob)
    )
    return out or None
