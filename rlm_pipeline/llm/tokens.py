"""Token estimates that need no tokenizer download.

We count real tokens from the server's ``usage`` field.  Where we must predict
(``estimate``, prompt budgets, the simulator's own usage figures) we use one
documented rule: one token per 4 characters, rounded up, at least 1 for a
non-empty text.  For English prose this is within ~10% of OpenAI's o200k
tokenizer.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["CHARS_PER_TOKEN", "estimate_tokens", "estimate_message_tokens"]

CHARS_PER_TOKEN = 4
#: Per-message overhead used by chat formats (role markers).
MESSAGE_OVERHEAD_TOKENS = 4


def estimate_tokens(text: str) -> int:
    """Estimated token count of ``text``.

    Examples
    --------
    >>> estimate_tokens("abcdefgh")
    2
    >>> estimate_tokens("")
    0
    """
    return -(-len(text) // CHARS_PER_TOKEN)


def estimate_message_tokens(
    messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
) -> int:
    """Estimated prompt tokens of a chat request (messages plus tool schemas)."""
    total = 0
    for message in messages:
        total += MESSAGE_OVERHEAD_TOKENS
        content = message.get("content")
        if isinstance(content, str):
            total += estimate_tokens(content)
        elif content is not None:
            total += estimate_tokens(json.dumps(content, separators=(",", ":")))
        if message.get("tool_calls"):
            total += estimate_tokens(json.dumps(message["tool_calls"], separators=(",", ":")))
    if tools:
        total += estimate_tokens(json.dumps(tools, separators=(",", ":")))
    return total
