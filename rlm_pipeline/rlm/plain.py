"""Plain model calls over inlined rows: how a partition is answered at ``max_depth``.

The rows go into the prompt as JSON lines.  If they would not fit the
sub-model's prompt budget they are split into parts that do, each part is
answered on its own, and one more call combines the part answers (in groups,
so the combining prompt fits the budget too).  The reply text is the answer;
when the whole text is a JSON number, boolean, list or object it is also
returned as that value.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from rlm_pipeline.llm.tokens import estimate_tokens
from rlm_pipeline.rlm.prompts import (
    PLAIN_SYSTEM_PROMPT,
    PROMPT_VERSION,
    combine_message,
    plain_message,
)
from rlm_pipeline.rlm.render import cut, json_line, jsonable
from rlm_pipeline.rlm.scope import RunState

if TYPE_CHECKING:
    from rlm_pipeline.llm.client import LLMClient

__all__ = [
    "PLAIN_CELL_CHARS",
    "PlainStats",
    "answer_inline",
    "chunk_lines",
    "parse_value",
]

#: Each inlined cell is cut to this many characters.
PLAIN_CELL_CHARS = 1000
_REPLY_MAX_TOKENS = 300
_COMBINE_GROUP = 16
_OVERHEAD_TOKENS = 64


def parse_value(text: str) -> Any:
    """The reply as a JSON value when the whole text is one, else the stripped text.

    Examples
    --------
    >>> parse_value(" 12 "), parse_value("billing"), parse_value('{"a": 1}')
    (12, 'billing', {'a': 1})
    """
    stripped = text.strip()
    try:
        value = json.loads(stripped)
    except (json.JSONDecodeError, RecursionError):
        return stripped
    return value


def chunk_lines(lines: list[str], budget_tokens: int) -> list[list[str]]:
    """Pack lines, in order, into chunks of at most ``budget_tokens`` estimated tokens.

    A line longer than the budget on its own is cut to fit.

    Examples
    --------
    >>> chunk_lines(["aa", "bb", "cc"], 2)
    [['aa', 'bb'], ['cc']]
    """
    chunks: list[list[str]] = []
    current: list[str] = []
    size = 0
    max_chars = max(16, budget_tokens * 4 - 4)
    for line in lines:
        if len(line) > max_chars:
            line = cut(line, max_chars)
        tokens = estimate_tokens(line + "\n")
        if current and size + tokens > budget_tokens:
            chunks.append(current)
            current, size = [], 0
        current.append(line)
        size += tokens
    if current:
        chunks.append(current)
    return chunks


@dataclass
class PlainStats:
    """Model calls made for one inlined partition."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    max_prompt_tokens: int = 0


async def _plain_call(client: LLMClient, user: str, stats: PlainStats) -> str:
    reply = await client.chat(
        [{"role": "system", "content": PLAIN_SYSTEM_PROMPT}, {"role": "user", "content": user}],
        max_tokens=_REPLY_MAX_TOKENS,
        prompt_version=PROMPT_VERSION,
    )
    stats.calls += 1
    stats.input_tokens += reply.input_tokens
    stats.output_tokens += reply.output_tokens
    stats.max_prompt_tokens = max(stats.max_prompt_tokens, reply.input_tokens)
    return (reply.content or "").strip()


async def answer_inline(
    state: RunState,
    question: str,
    table: pa.Table,
    text_column: str | None,
    *,
    client: LLMClient,
) -> tuple[str, PlainStats]:
    """Answer ``question`` over the rows of ``table`` with plain model calls.

    Every prompt stays within ``state.sub_prompt_tokens`` (estimated).  The calls
    go through ``client`` (the calling scope's: its limits bound them, also
    when several partitions are answered at once).  Returns the answer text and
    the calls it took.
    """
    stats = PlainStats()
    lines = [
        json_line(
            {
                k: (cut(v, PLAIN_CELL_CHARS) if isinstance(v, str) else v)
                for k, v in jsonable(row).items()
            }
        )
        for row in table.to_pylist()
    ]
    head = plain_message(question, text_column, "")
    room = state.sub_prompt_tokens - estimate_tokens(PLAIN_SYSTEM_PROMPT + head) - _OVERHEAD_TOKENS
    chunks = chunk_lines(lines, max(64, room))
    answers = await asyncio.gather(
        *(
            _plain_call(client, plain_message(question, text_column, "\n".join(c)), stats)
            for c in chunks
        )
    )
    partials = list(answers)
    while len(partials) > 1:
        groups = [partials[i : i + _COMBINE_GROUP] for i in range(0, len(partials), _COMBINE_GROUP)]
        partials = list(
            await asyncio.gather(
                *(_plain_call(client, combine_message(question, g), stats) for g in groups)
            )
        )
    return (partials[0] if partials else ""), stats
