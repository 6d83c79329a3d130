"""Wire format of the multi-stage operators (aggregate, top_k, join): prompts, schemas, checks.

A leaf module: the operators build their requests here and the simulator
(:mod:`rlm_pipeline.sim.folds`) reads them with the same constants.

- **aggregate** sends *leaf* calls (``Rows:`` then one line per distinct text,
  ``"the text" ×3`` — the count only when more than one row has the text) and
  *fold* calls (``Summaries:`` then ``[120] "partial summary"``, the rows it
  covers in brackets); both reply ``{"summary": "..."}``.  The instruction is
  in the system message, the same for every call of a run (a prefix a
  provider can cache); the user message holds only the lines.
- **top_k** scores rows with an ``llm_map`` call whose instruction starts with
  :data:`SCORE_PREFIX` (integer 0-100), then re-ranks candidates with a call
  replying ``{"ranking": [ids, best first]}``.
- **join** asks an ``llm_map`` boolean per candidate pair; the row text is
  :func:`pair_text` and the instruction starts with :data:`JOIN_PREFIX`.

Every schema here has no length or count limit (grammar engines, see
:mod:`rlm_pipeline.rlm.limits`); limits are checked after parsing.

Examples
--------
>>> split_pair(pair_text("where is my refund?", "Refunds take 5 days."))
('where is my refund?', 'Refunds take 5 days.')
>>> check_ranking({"ranking": [2, 0, 1]}, 3)
[2, 0, 1]
>>> check_ranking({"ranking": [0, 0, 1]}, 3) is None
True
>>> check_summary({"summary": "billing: 3"}, 100)
'billing: 3'
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from rlm_pipeline.llm.tokens import CHARS_PER_TOKEN

__all__ = [
    "FOLD_MARKER",
    "JOIN_PREFIX",
    "MULTI_PROMPT_VERSION",
    "PAIR_LEFT",
    "PAIR_RIGHT",
    "RANKING_SCHEMA",
    "ROWS_MARKER",
    "SCORE_PREFIX",
    "SUMMARY_SCHEMA",
    "check_ranking",
    "check_summary",
    "fold_messages",
    "fold_row",
    "leaf_messages",
    "leaf_row",
    "pair_text",
    "rank_messages",
    "read_fold_row",
    "read_leaf_row",
    "split_pair",
]

#: Part of every cache key of these calls; bump it with any text below.
MULTI_PROMPT_VERSION = "multi-1"
#: Line before the rows of a leaf (and re-rank) call.
ROWS_MARKER = "Rows:"
#: Line before the partial summaries of a fold call.
FOLD_MARKER = "Summaries:"
#: How top_k's scoring instruction starts (an ``llm_map`` integer call).
SCORE_PREFIX = "Score from 0 (does not fit) to 100 (fits best) how well the text fits: "
#: How join's pair instruction starts (an ``llm_map`` boolean call).
JOIN_PREFIX = "Answer true when the condition holds between LEFT and RIGHT, else false. Condition: "
PAIR_LEFT = "LEFT: "
PAIR_RIGHT = "\nRIGHT: "

SUMMARY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"summary": {"type": "string"}},
    "required": ["summary"],
    "additionalProperties": False,
}
RANKING_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"ranking": {"type": "array", "items": {"type": "integer"}}},
    "required": ["ranking"],
    "additionalProperties": False,
}


def leaf_row(text: str, n: int) -> str:
    """One row line of a leaf call: the text as a JSON string, then `` ×n`` when ``n > 1``.

    Examples
    --------
    >>> leaf_row("refund please", 3)
    '"refund please" ×3'
    """
    quoted = json.dumps(text, ensure_ascii=False)
    return quoted if n == 1 else f"{quoted} ×{n}"


def read_leaf_row(line: str) -> tuple[str, int] | None:
    """The ``(text, n)`` of a :func:`leaf_row` line, or None."""
    body, sep, count = line.rpartition(" ×")
    n = 1
    if sep and count.isdigit():
        line, n = body, int(count)
    try:
        text = json.loads(line)
    except ValueError:
        return None
    return (text, n) if isinstance(text, str) else None


def fold_row(summary: str, rows: int) -> str:
    """One partial-summary line of a fold call: ``[rows] "summary"``.

    Examples
    --------
    >>> fold_row("billing: 3", 3)
    '[3] "billing: 3"'
    """
    return f"[{rows}] {json.dumps(summary, ensure_ascii=False)}"


def read_fold_row(line: str) -> tuple[str, int] | None:
    """The ``(summary, rows)`` of a :func:`fold_row` line, or None."""
    head, sep, rest = line.partition("] ")
    if not sep or not head.startswith("[") or not head[1:].isdigit():
        return None
    try:
        summary = json.loads(rest)
    except ValueError:
        return None
    return (summary, int(head[1:])) if isinstance(summary, str) else None


def _summary_system(instruction: str, summary_tokens: int, fold: bool) -> str:
    words = max(10, summary_tokens * 3 // 4)
    if fold:
        head = (
            "Merge partial summaries of one table into one summary. Each line is one "
            "partial summary as a JSON string after [the number of rows it covers]; "
            "weigh it by that number."
        )
    else:
        head = (
            "Summarise the rows of a table. Each line is one row's text as a JSON string; "
            '" ×n" after it means n rows have exactly that text.'
        )
    return "\n".join(
        [head, f"Instruction: {instruction}", f"Write one summary of at most {words} words."]
    )


def leaf_messages(
    instruction: str, lines: Sequence[str], summary_tokens: int
) -> list[dict[str, Any]]:
    """A leaf call over row ``lines`` (from :func:`leaf_row`); fixed text first (prefix cache)."""
    return [
        {"role": "system", "content": _summary_system(instruction, summary_tokens, fold=False)},
        {"role": "user", "content": "\n".join([ROWS_MARKER, *lines])},
    ]


def fold_messages(
    instruction: str, lines: Sequence[str], summary_tokens: int
) -> list[dict[str, Any]]:
    """A fold call over partial-summary ``lines`` (from :func:`fold_row`)."""
    return [
        {"role": "system", "content": _summary_system(instruction, summary_tokens, fold=True)},
        {"role": "user", "content": "\n".join([FOLD_MARKER, *lines])},
    ]


def rank_messages(criterion: str, texts: Sequence[str]) -> list[dict[str, Any]]:
    """A re-rank call: order ``texts`` (``id:"text"`` lines, ids 0..n-1) by ``criterion``."""
    rows = [f"{i}:{json.dumps(t, ensure_ascii=False)}" for i, t in enumerate(texts)]
    system = "\n".join(
        [
            "Rank the rows of a table by a criterion. Reply with every row id exactly "
            'once in "ranking", the row that fits the criterion best first.',
            f"Criterion: {criterion}",
        ]
    )
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": "\n".join([ROWS_MARKER, *rows])},
    ]


def pair_text(left: str, right: str) -> str:
    """The row text of one join candidate pair."""
    return f"{PAIR_LEFT}{left}{PAIR_RIGHT}{right}"


def split_pair(text: str) -> tuple[str, str]:
    """The two texts of :func:`pair_text` (split at the last ``RIGHT:`` line)."""
    body = text[len(PAIR_LEFT) :] if text.startswith(PAIR_LEFT) else text
    left, sep, right = body.rpartition(PAIR_RIGHT)
    return (left, right) if sep else (body, "")


def check_summary(obj: Any, max_tokens: int) -> str | None:
    """The summary in a reply, or None when missing, blank or over ``max_tokens`` × 2.

    The reply allowance sent with the call bounds a real model's reply; the
    factor 2 is slack for tokenizers that count fewer characters per token.
    """
    if not isinstance(obj, dict):
        return None
    summary = obj.get("summary")
    if not isinstance(summary, str) or not summary.strip():
        return None
    if len(summary) > 2 * max_tokens * CHARS_PER_TOKEN:
        return None
    return summary.strip()


def check_ranking(obj: Any, n: int) -> list[int] | None:
    """The ranking in a reply when it names every id ``0..n-1`` exactly once, else None."""
    if not isinstance(obj, dict):
        return None
    ranking = obj.get("ranking")
    if not isinstance(ranking, list) or len(ranking) != n:
        return None
    if any(isinstance(i, bool) or not isinstance(i, int) for i in ranking):
        return None
    if sorted(ranking) != list(range(n)):
        return None
    return list(ranking)
