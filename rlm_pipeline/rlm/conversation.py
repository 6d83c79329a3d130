"""The root conversation, kept under a prompt budget.

Tool results are already bounded; over many steps the conversation still
grows.  Before each model call :meth:`Conversation.messages_for_call` shortens
old tool results (``tool`` messages, or the user messages that carry results,
nudges and corrections in the json and text protocols) and, if that is not enough, drops the oldest whole steps
(an assistant turn with its tool results), leaving a note that says how many
were omitted.  The system prompt and the first message (question + metadata)
are always kept, and the message order stays valid for the chat API.

Examples
--------
>>> conv = Conversation("sys", "question", budget_tokens=10_000)
>>> [m["role"] for m in conv.messages_for_call(0)]
['system', 'user']
"""

from __future__ import annotations

from typing import Any

from rlm_pipeline.llm.tokens import estimate_message_tokens
from rlm_pipeline.rlm.render import cut

__all__ = ["OMITTED_NOTE", "Conversation"]

#: Text of the note that replaces dropped steps; ``{n}`` is their number.
OMITTED_NOTE = "(omitted {n} earlier steps to keep the prompt short; their views still exist)"
_SHORT_RESULT_CHARS = 240
_KEEP_RECENT_GROUPS = 2


class Conversation:
    """System prompt, first message, then groups of messages (one group per step)."""

    def __init__(self, system: str, first: str, *, budget_tokens: int) -> None:
        self.head: list[dict[str, Any]] = [
            {"role": "system", "content": system},
            {"role": "user", "content": first},
        ]
        self.groups: list[list[dict[str, Any]]] = []
        self.omitted = 0
        self.budget_tokens = budget_tokens

    def add(self, *messages: dict[str, Any]) -> None:
        """Append one step's messages as a group."""
        self.groups.append(list(messages))

    def extend_last(self, message: dict[str, Any]) -> None:
        """Append a message to the latest group (e.g. a tool result)."""
        self.groups[-1].append(message)

    def _all(self) -> list[dict[str, Any]]:
        note = (
            [{"role": "user", "content": OMITTED_NOTE.format(n=self.omitted)}]
            if self.omitted
            else []
        )
        return [*self.head, *note, *(m for g in self.groups for m in g)]

    def messages_for_call(self, tools_tokens: int) -> list[dict[str, Any]]:
        """The messages to send, shortened to fit the budget when needed."""
        messages = self._all()
        if estimate_message_tokens(messages) + tools_tokens <= self.budget_tokens:
            return messages
        for group in self.groups[:-_KEEP_RECENT_GROUPS]:
            for message in group:
                content = message.get("content")
                if message["role"] in ("tool", "user") and isinstance(content, str):
                    if len(content) > _SHORT_RESULT_CHARS:
                        message["content"] = cut(content, _SHORT_RESULT_CHARS) + " [shortened]"
        messages = self._all()
        while (
            estimate_message_tokens(messages) + tools_tokens > self.budget_tokens
            and len(self.groups) > 1
        ):
            self.groups.pop(0)
            self.omitted += 1
            messages = self._all()
        return messages
