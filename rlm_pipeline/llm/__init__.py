"""Model access: configuration, the async client, cache, retries, limits, budget and usage.

Names are imported lazily, so ``import rlm_pipeline.llm.config`` (which Spark
executors unpickle) does not import ``openai``.

Examples
--------
>>> from rlm_pipeline.llm import LLM, LLMClient
>>> LLM(model="gpt-4.1-mini").model
'gpt-4.1-mini'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rlm_pipeline._lazy import lazy_attributes

__all__ = [
    "LLM",
    "STRUCTURED_PROMPT_PREFIX",
    "Budget",
    "BudgetGuard",
    "ChatReply",
    "LLMClient",
    "Price",
    "RateLimiter",
    "ResponseCache",
    "RetryPolicy",
    "ToolCall",
    "Usage",
    "UsageMeter",
    "chat_key",
    "json_key",
    "request_key",
]

_LAZY = {
    "LLM": "rlm_pipeline.llm.config",
    "Budget": "rlm_pipeline.llm.config",
    "Price": "rlm_pipeline.llm.config",
    "Usage": "rlm_pipeline.llm.usage",
    "UsageMeter": "rlm_pipeline.llm.usage",
    "BudgetGuard": "rlm_pipeline.llm.budget",
    "ChatReply": "rlm_pipeline.llm.reply",
    "ToolCall": "rlm_pipeline.llm.reply",
    "LLMClient": "rlm_pipeline.llm.client",
    "RateLimiter": "rlm_pipeline.llm.ratelimit",
    "ResponseCache": "rlm_pipeline.llm.cache",
    "chat_key": "rlm_pipeline.llm.cache",
    "json_key": "rlm_pipeline.llm.cache",
    "request_key": "rlm_pipeline.llm.cache",
    "RetryPolicy": "rlm_pipeline.llm.retry",
    "STRUCTURED_PROMPT_PREFIX": "rlm_pipeline.llm.structured",
}

if TYPE_CHECKING:
    from rlm_pipeline.llm.budget import BudgetGuard
    from rlm_pipeline.llm.cache import ResponseCache, chat_key, json_key, request_key
    from rlm_pipeline.llm.client import LLMClient
    from rlm_pipeline.llm.config import LLM, Budget, Price
    from rlm_pipeline.llm.ratelimit import RateLimiter
    from rlm_pipeline.llm.reply import ChatReply, ToolCall
    from rlm_pipeline.llm.retry import RetryPolicy
    from rlm_pipeline.llm.structured import STRUCTURED_PROMPT_PREFIX
    from rlm_pipeline.llm.usage import Usage, UsageMeter


__getattr__, __dir__ = lazy_attributes(
    "rlm_pipeline.llm", _LAZY, globals(), __all__
)
