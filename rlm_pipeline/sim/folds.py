"""The simulator's answers to the multi-stage operators: summaries, scores, rankings, pair matches.

Deterministic, from the same keyword model as :func:`intended_label`, so tests
can compute every expected answer themselves:

- a **summary** (aggregate leaf and fold calls) is the count of rows per label,
  ``"billing: 40, technical: 30, account: 20, other: 10"`` — labels from the
  instruction when it lists some (``labels: a, b``), else the ticket labels
  :data:`SUMMARY_LABELS`.  A leaf counts its rows (``n`` each), a fold adds up
  the counts written in its partial summaries, so the final summary counts
  every row that reached the tree exactly once: a lost or repeated row shows.
- a **score** (top_k's ``llm_map`` integer call) is :func:`score_value`.
- a **ranking** orders the rows by :func:`score_value`, best first (ties: by id).
- a **pair match** (join's ``llm_map`` boolean call) is :func:`pair_match`.

Examples
--------
>>> summary_text({"billing": 2, "other": 1}, ("billing", "other"))
'billing: 2, other: 1'
>>> parse_summary("billing: 2, other: 1", ("billing", "other"))
{'billing': 2, 'other': 1}
>>> pair_match("I was charged twice", "Refunds and invoices")
True
>>> score_value("refund my invoice now", "billing problems") > score_value("hello", "billing problems")
True
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from rlm_pipeline.ops.multi_wire import (
    FOLD_MARKER,
    JOIN_PREFIX,
    ROWS_MARKER,
    SCORE_PREFIX,
    split_pair,
)
from rlm_pipeline.sim.classifier import KEYWORDS, intended_label
from rlm_pipeline.sim.wire import Task, labels_from_prompt, message_text

__all__ = [
    "SUMMARY_LABELS",
    "answer_multi",
    "pair_match",
    "parse_summary",
    "score_value",
    "summary_counts",
    "summary_text",
]

#: Labels a summary counts when the instruction lists none (the tickets' labels).
SUMMARY_LABELS: tuple[str, ...] = ("billing", "technical", "account", "other")

_TOKEN = re.compile(r"[a-z0-9]+")
_STOP = frozenset("the and for with that this from are was were have has not how what most".split())
_COUNT = re.compile(r"([^,:]+?):\s*(\d+)")


def summary_labels(instruction: str) -> tuple[str, ...]:
    """The labels a summary counts: listed in the instruction, else :data:`SUMMARY_LABELS`."""
    found = labels_from_prompt(instruction)
    return found[0] if found is not None else SUMMARY_LABELS


def summary_text(counts: Mapping[str, int], labels: Sequence[str]) -> str:
    """A summary as the simulator writes it: ``label: count`` for every label, in order."""
    return ", ".join(f"{label}: {counts.get(label, 0)}" for label in labels)


def parse_summary(text: str, labels: Sequence[str]) -> dict[str, int]:
    """The counts written in a summary (labels not named count 0)."""
    found = {name.strip(): int(count) for name, count in _COUNT.findall(text)}
    return {label: found.get(label, 0) for label in labels}


def summary_counts(texts: Sequence[str], labels: Sequence[str] = SUMMARY_LABELS) -> dict[str, int]:
    """What a complete summary of ``texts`` counts (for tests: the expected answer)."""
    counts = dict.fromkeys(labels, 0)
    for text in texts:
        counts[intended_label(text, labels)] += 1
    return counts


def _criterion_words(criterion: str) -> frozenset[str]:
    words: set[str] = set()
    for token in _TOKEN.findall(criterion.lower()):
        if len(token) < 3 or token in _STOP:
            continue
        words.add(token)
        words |= KEYWORDS.get(token, frozenset())
    return frozenset(words)


def score_value(text: str, criterion: str) -> int:
    """The simulator's score (0-99) of ``text`` for ``criterion``.

    15 per token of the text that is a word of the criterion (or a keyword of a
    label named in it), at most 90, plus a stable 0-9 from the text's hash, so
    few texts tie.
    """
    words = _criterion_words(criterion)
    hits = sum(1 for token in _TOKEN.findall(text.lower()) if token in words)
    jitter = hashlib.sha256(text.encode("utf-8", "replace")).digest()[0] % 10
    return min(90, 15 * hits) + jitter


def pair_match(left: str, right: str) -> bool:
    """The simulator's join answer: both texts get the same ticket label."""
    return intended_label(left, SUMMARY_LABELS) == intended_label(right, SUMMARY_LABELS)


def _user_text(body: Mapping[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return message_text(message)
    return ""


def _json_lines(text: str, marker: str) -> list[dict[str, Any]] | None:
    head, sep, tail = text.rpartition(f"\n{marker}\n")
    if not sep:
        return None
    rows = []
    for line in tail.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict):
                rows.append(row)
    return rows


def _line_after(text: str, prefix: str) -> str | None:
    for line in text.splitlines():
        if line.startswith(prefix):
            return line[len(prefix) :]
    return None


def _instruction(body: Mapping[str, Any]) -> str | None:
    """The ``Instruction:`` line of a map request, in whichever message holds it."""
    for message in body.get("messages") or []:
        if isinstance(message, dict):
            found = _line_after(message_text(message), "Instruction: ")
            if found is not None:
                return found
    return None


def _summary_reply(user: str) -> tuple[dict[str, Any], int] | None:
    labels = summary_labels(_line_after(user, "Instruction: ") or "")
    counts = dict.fromkeys(labels, 0)
    leaf = _json_lines(user, ROWS_MARKER)
    if leaf is not None:
        for row in leaf:
            n = row.get("n", 1)
            text = row.get("text")
            label = intended_label(text if isinstance(text, str) else "", labels)
            counts[label] += n if isinstance(n, int) and not isinstance(n, bool) else 1
        return {"summary": summary_text(counts, labels)}, len(leaf)
    parts = _json_lines(user, FOLD_MARKER)
    if parts is None:
        return None
    for part in parts:
        summary = part.get("summary")
        for label, count in parse_summary(summary if isinstance(summary, str) else "", labels).items():
            counts[label] += count
    return {"summary": summary_text(counts, labels)}, len(parts)


def _ranking_reply(user: str) -> tuple[dict[str, Any], int] | None:
    criterion = _line_after(user, "Criterion: ")
    rows = _json_lines(user, ROWS_MARKER)
    if criterion is None or rows is None:
        return None
    scored = []
    for row in rows:
        text = row.get("text")
        scored.append((-score_value(text if isinstance(text, str) else "", criterion), row.get("id")))
    scored.sort(key=lambda item: (item[0], item[1] if isinstance(item[1], int) else 0))
    return {"ranking": [row_id for _, row_id in scored]}, len(rows)


def _map_value(instruction: str, text: str) -> Any:
    if instruction.startswith(SCORE_PREFIX):
        return score_value(text, instruction[len(SCORE_PREFIX) :])
    left, right = split_pair(text)
    return pair_match(left, right)


def answer_multi(task: Task, body: Mapping[str, Any]) -> tuple[dict[str, Any], int] | None:
    """The simulator's reply to a multi-stage operator call, or None when ``task`` is not one.

    Returns the reply object and the rows it covers.
    """
    schema = task.schema if isinstance(task.schema, dict) else {}
    props = schema.get("properties")
    props = props if isinstance(props, dict) else {}
    user = _user_text(body)
    if task.kind == "structured" and set(props) == {"summary"}:
        return _summary_reply(user)
    if task.kind == "structured" and set(props) == {"ranking"}:
        return _ranking_reply(user)
    if task.kind not in ("map_batch", "map_single", "filter_batch", "filter_single"):
        return None
    instruction = _instruction(body)
    if instruction is None or not instruction.startswith((SCORE_PREFIX, JOIN_PREFIX)):
        return None
    if not task.kind.endswith("_batch"):
        return {"value": _map_value(instruction, task.text)}, 1
    results = [{"id": rid, "value": _map_value(instruction, text)} for rid, text in task.rows]
    return {"results": results}, len(results)
