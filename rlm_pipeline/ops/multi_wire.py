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
- **join** asks a boolean per candidate pair.  A pair's row text (what dedup
  and the stored row answers key on) is :func:`pair_text`: the left text's
  length, ``:``, the left text, the right text — one exact split
  (:func:`split_pair`) whatever the texts hold.  A call of several pairs
  (:func:`pair_lines`) writes each left text once, as a ``LEFT: "..."``
  line, followed by its numbered right texts (``3:"..."``; ids ``0..n-1``
  over the whole call, so the reply is the usual
  ``{"results": [{"id", "value"}]}``); pairs of several left rows share a
  call as consecutive blocks.  A one-pair call (``batch_size=1``) is a
  ``LEFT: "..."`` line and a ``RIGHT: "..."`` line (:func:`single_pair_lines`).
  The instruction starts with :data:`JOIN_PREFIX`; the simulator reads the
  pairs back with :func:`read_pairs`.

Every schema here has no length or count limit (grammar engines, see
:mod:`rlm_pipeline.rlm.limits`); limits are checked after parsing.

Examples
--------
>>> pair_text("where is my refund?", "Refunds take 5 days.")
'19:where is my refund?Refunds take 5 days.'
>>> split_pair(pair_text("where is my refund?", "Refunds take 5 days."))
('where is my refund?', 'Refunds take 5 days.')
>>> pair_lines([pair_text("refund?", "Refunds: 5 days."), pair_text("refund?", "Lisbon"),
...             pair_text("login", "Reset it.")])
['Rows:', 'LEFT: "refund?"', '0:"Refunds: 5 days."', '1:"Lisbon"', 'LEFT: "login"', '2:"Reset it."']
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
    "PAIR_BATCH_HEAD",
    "PAIR_LEFT",
    "PAIR_PROMPT_VERSION",
    "PAIR_RIGHT",
    "PAIR_SINGLE_HEAD",
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
    "pair_lines",
    "pair_text",
    "rank_messages",
    "read_fold_row",
    "read_leaf_row",
    "read_pairs",
    "single_pair_lines",
    "split_pair",
]

#: Part of every cache key of these calls; bump it with any text below (join's: PAIR_PROMPT_VERSION).
MULTI_PROMPT_VERSION = "multi-1"
#: Line before the rows of a leaf (and re-rank) call.
ROWS_MARKER = "Rows:"
#: Line before the partial summaries of a fold call.
FOLD_MARKER = "Summaries:"
#: How top_k's scoring instruction starts (an ``llm_map`` integer call).
SCORE_PREFIX = "Score from 0 (does not fit) to 100 (fits best) how well the text fits: "
#: Part of the key of join's stored pair answers (the pair texts below); bump it with them.
PAIR_PROMPT_VERSION = "pairs-2"
#: How join's ``Instruction:`` line goes on (a boolean call), then the condition.
JOIN_PREFIX = "Condition between LEFT and RIGHT: "
#: First system line of a join call of several pairs (:func:`pair_lines`).
PAIR_BATCH_HEAD = (
    "Each numbered RIGHT text is paired with the LEFT text above it. Answer true or false "
    "per id: does the condition hold for the pair? Answer each id once."
)
#: First system line of a one-pair join call (:func:`single_pair_lines`).
PAIR_SINGLE_HEAD = (
    "Answer true when the condition holds between the LEFT text and the RIGHT text, else false."
)
#: Starts the line of a left text (then the text as a JSON string).
PAIR_LEFT = "LEFT: "
#: Starts the line of the right text of a one-pair call.
PAIR_RIGHT = "RIGHT: "

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
    """The row text of one join candidate pair: ``<len(left)>:<left><right>``.

    The length (in characters, as Python, Polars' and Spark's SQL ``LENGTH``
    count them) makes the split exact whatever the texts hold; join builds
    the same text in SQL.
    """
    return f"{len(left)}:{left}{right}"


def split_pair(text: str) -> tuple[str, str]:
    """The two texts of :func:`pair_text` (a text without the length prefix: all left).

    A pair text cut short (``truncate=True``) keeps what is left of each side.

    Examples
    --------
    >>> split_pair("3:abcxyz"), split_pair("9:abc"), split_pair("abc")
    (('abc', 'xyz'), ('abc', ''), ('abc', ''))
    """
    head, sep, body = text.partition(":")
    if not sep or not head.isascii() or not head.isdigit():
        return text, ""
    n = int(head)
    return body[:n], body[n:]


def pair_lines(texts: Sequence[str]) -> list[str]:
    """The user lines of a join call of several pairs (``texts``: :func:`pair_text` values).

    ``Rows:``, then for each run of consecutive pairs with the same left text
    one ``LEFT: "..."`` line and a numbered line per right text; ids are the
    pairs' positions in ``texts`` (``0..n-1``).  Texts are JSON strings, so
    each is one line.
    """
    dumps = json.dumps
    lines = [ROWS_MARKER]
    previous: str | None = None
    for i, text in enumerate(texts):
        left, right = split_pair(text)
        if left != previous:
            lines.append(PAIR_LEFT + dumps(left, ensure_ascii=False))
            previous = left
        lines.append(f"{i}:{dumps(right, ensure_ascii=False)}")
    return lines


def single_pair_lines(text: str) -> list[str]:
    """The user lines of a one-pair join call: ``LEFT: "..."`` and ``RIGHT: "..."``.

    Examples
    --------
    >>> single_pair_lines(pair_text("refund?", "Refunds take 5 days."))
    ['LEFT: "refund?"', 'RIGHT: "Refunds take 5 days."']
    """
    left, right = split_pair(text)
    return [
        PAIR_LEFT + json.dumps(left, ensure_ascii=False),
        PAIR_RIGHT + json.dumps(right, ensure_ascii=False),
    ]


def _json_text(value: str) -> str | None:
    try:
        text = json.loads(value)
    except ValueError:
        return None
    return text if isinstance(text, str) else None


def read_pairs(text: str) -> list[tuple[int | None, str, str]] | None:
    """The ``(id, left, right)`` pairs of a join call's user text (None: not a pair call).

    Reads :func:`pair_lines` (ids as written; a numbered line before any
    ``LEFT:`` line or not JSON is skipped) and :func:`single_pair_lines`
    (id None).

    Examples
    --------
    >>> read_pairs("\\n".join(pair_lines([pair_text("a", "b"), pair_text("a", "c")])))
    [(0, 'a', 'b'), (1, 'a', 'c')]
    >>> read_pairs("\\n".join(single_pair_lines(pair_text("a", "b"))))
    [(None, 'a', 'b')]
    """
    lines = text.split("\n")  # "\n" only: a JSON string may hold U+2028
    if ROWS_MARKER in lines:
        start = len(lines) - lines[::-1].index(ROWS_MARKER)
        pairs: list[tuple[int | None, str, str]] = []
        left: str | None = None
        for line in lines[start:]:
            if line.startswith(PAIR_LEFT):
                left = _json_text(line[len(PAIR_LEFT) :])
                continue
            head, sep, rest = line.partition(":")
            right = _json_text(rest) if sep and head.isascii() and head.isdigit() else None
            if left is not None and right is not None:
                pairs.append((int(head), left, right))
        return pairs
    found: dict[str, str | None] = {}
    for line in lines:
        for prefix in (PAIR_LEFT, PAIR_RIGHT):
            if line.startswith(prefix) and prefix not in found:
                found[prefix] = _json_text(line[len(prefix) :])
    left, right = found.get(PAIR_LEFT), found.get(PAIR_RIGHT)
    if left is None or right is None:
        return None
    return [(None, left, right)]


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
