"""The client's response cache: the one place request keys are built and replies kept.

:class:`CachedReplies` wraps a :class:`~rlm_pipeline.llm.cache.ResponseCache`
(or nothing, when the config has no ``cache_path``: then every lookup misses
and nothing is stored) with the config whose endpoint, model and temperature
enter every key.  The client asks it for a key (:meth:`CachedReplies.chat_key`,
:meth:`CachedReplies.json_key`), looks the key up, and offers the reply back
with :meth:`CachedReplies.put`, which stores it only when it may be served
again: a reply cut by a limit the caller did not ask for is not kept, and
:meth:`LLMClient.json <rlm_pipeline.llm.client.LLMClient.json>` offers only
replies that parsed, validated and that its caller accepted.

Examples
--------
>>> from rlm_pipeline.llm.config import LLM
>>> from rlm_pipeline.llm.reply import ChatReply
>>> import os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "cache.sqlite")
>>> replies = CachedReplies.of(LLM(model="m", cache_path=path))
>>> key = replies.chat_key([{"role": "user", "content": "hi"}])
>>> replies.put(key, ChatReply(content="hel", finish_reason="length"), asked=None, sent=256)
>>> replies.contains(key)  # cut by a limit the caller did not ask for: not kept
False
>>> replies.put(key, ChatReply(content="hello"), asked=None, sent=256)
>>> replies.get(key).content, replies.get(key).cached
('hello', True)
>>> replies.close()
>>> CachedReplies.of(LLM(model="m")).chat_key([])  # no cache file: no key, nothing kept
"""

from __future__ import annotations

from typing import Any

from rlm_pipeline.llm.cache import ResponseCache, chat_key, json_key
from rlm_pipeline.llm.config import LLM
from rlm_pipeline.llm.reply import ChatReply

__all__ = ["CachedReplies", "cacheable"]


def cacheable(reply: ChatReply, asked: int | None, sent: int | None) -> bool:
    """Whether ``reply`` may be stored under a key made with the caller's ``asked`` limit.

    A reply cut by a limit the caller did not ask for (the budget's cut or the
    default allowance) is not stored: the same request with more budget left
    would get a longer reply.

    Examples
    --------
    >>> cut = ChatReply(content="{", finish_reason="length")
    >>> cacheable(cut, None, 256), cacheable(cut, 256, 256)
    (False, True)
    """
    return reply.finish_reason != "length" or (asked is not None and sent == asked)


class CachedReplies:
    """Replies by request, in ``store`` (None: no cache).

    Parameters
    ----------
    store
        The open response cache, or None.
    config
        Endpoint, model and temperature: part of every key.
    """

    def __init__(self, store: ResponseCache | None, config: LLM) -> None:
        self.store = store
        self._config = config

    @classmethod
    def of(cls, config: LLM) -> CachedReplies:
        """The cache of ``config.cache_path`` (opened lazily), or an empty one without it."""
        return cls(ResponseCache(config.cache_path) if config.cache_path else None, config)

    def chat_key(
        self,
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        max_tokens: int | None = None,
        prompt_version: str | None = None,
    ) -> str | None:
        """The key of a chat request (:func:`~rlm_pipeline.llm.cache.chat_key`); None without a store."""
        if self.store is None:
            return None
        return chat_key(
            self._config,
            messages,
            tools=tools,
            tool_choice=tool_choice,
            max_tokens=max_tokens,
            prompt_version=prompt_version,
        )

    def json_key(
        self,
        messages: list[dict[str, Any]],
        schema: dict[str, Any],
        *,
        name: str,
        max_tokens: int | None = None,
        prompt_version: str | None = None,
    ) -> str | None:
        """The key of a structured request (:func:`~rlm_pipeline.llm.cache.json_key`); None
        without a store.  It names the schema, not the wire form, so any structured-output
        mode finds it."""
        if self.store is None:
            return None
        return json_key(
            self._config,
            messages,
            schema,
            name=name,
            max_tokens=max_tokens,
            prompt_version=prompt_version,
        )

    def get(self, key: str | None) -> ChatReply | None:
        """The stored reply of ``key`` (marked cached), or None."""
        return self.store.get(key) if self.store is not None and key is not None else None

    def contains(self, key: str | None) -> bool:
        """Whether a reply is stored under ``key`` (no decoding)."""
        return self.store is not None and key is not None and self.store.contains(key)

    def put(
        self, key: str | None, reply: ChatReply, *, asked: int | None, sent: int | None
    ) -> None:
        """Store ``reply`` under ``key`` unless it was cut by a limit the caller did not ask for.

        ``asked`` is the caller's ``max_tokens`` (part of the key), ``sent`` the
        ``max_tokens`` sent (see :func:`cacheable`).
        """
        if self.store is not None and key is not None and cacheable(reply, asked, sent):
            self.store.put(key, reply)

    def close(self) -> None:
        """Close the store."""
        if self.store is not None:
            self.store.close()
