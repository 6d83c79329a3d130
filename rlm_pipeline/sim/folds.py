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
- a **pair match** (join's boolean call: each ``LEFT:`` text above its numbered
  right texts, or one ``LEFT:`` / ``RIGHT:`` pair, read by
  :func:`~rlm_pipeline.ops.multi_wire.read_pairs`) is :func:`pair_match`.

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
import re
from collections.abc import Mapping, Sequence
from typing import Any

from rlm_pipeline.llm.structured import STRUCTURED_PROMPT_PREFIX
from rlm_pipeline.ops.multi_wire import (
    FOLD_MARKER,
    JOIN_PREFIX,
    ROWS_MARKER,
    SCORE_PREFIX,
    read_fold_row,
    read_leaf_row,
    read_pairs,
)
from rlm_pipeline.sim.classifier import KEYWORDS, intended_label
from rlm_pipeline.sim.wire import Task, labels_from_prompt, message_text, parse_rows

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


def _lines(text: str, marker: str) -> list[str] | None:
    """The lines after the last ``marker`` line, or None when there is none."""
    head, sep, tail = ("\n" + text).rpartition(f"\n{marker}\n")
    return tail.splitlines() if sep else None


def _line_after(text: str, prefix: str) -> str | None:
    for line in text.splitlines():
        if line.startswith(prefix):
            return line[len(prefix) :]
    return None


def _system_line(body: Mapping[str, Any], prefix: str) -> str | None:
    """The first line starting with ``prefix`` in any message (the fixed text is in the system one)."""
    for message in body.get("messages") or []:
        if isinstance(message, dict):
            found = _line_after(message_text(message), prefix)
            if found is not None:
                return found
    return None


def _summary_reply(body: Mapping[str, Any], user: str) -> tuple[dict[str, Any], int] | None:
    labels = summary_labels(_system_line(body, "Instruction: ") or "")
    counts = dict.fromkeys(labels, 0)
    leaf = _lines(user, ROWS_MARKER)
    if leaf is not None:
        rows = [row for row in map(read_leaf_row, leaf) if row is not None]
        for text, n in rows:
            counts[intended_label(text, labels)] += n
        return {"summary": summary_text(counts, labels)}, len(rows)
    folds = _lines(user, FOLD_MARKER)
    if folds is None:
        return None
    parts = [part for part in map(read_fold_row, folds) if part is not None]
    for summary, _rows in parts:
        for label, count in parse_summary(summary, labels).items():
            counts[label] += count
    return {"summary": summary_text(counts, labels)}, len(parts)


def _ranking_reply(body: Mapping[str, Any], user: str) -> tuple[dict[str, Any], int] | None:
    criterion = _system_line(body, "Criterion: ")
    rows = parse_rows(user)
    if criterion is None or rows is None:
        return None
    scored = sorted(
        (-score_value(text, criterion), row_id if isinstance(row_id, int) else 0, row_id)
        for row_id, text in rows
    )
    return {"ranking": [row_id for _, _, row_id in scored]}, len(scored)


def _pair_reply(task: Task, user: str) -> tuple[dict[str, Any], int]:
    """Join's answers: :func:`pair_match` per pair of the call (ids as the call wrote them)."""
    cut = user.find(STRUCTURED_PROMPT_PREFIX)
    pairs = read_pairs(user if cut < 0 else user[:cut]) or []
    if not task.kind.endswith("_batch"):
        left, right = (pairs[0][1], pairs[0][2]) if pairs else (task.text, "")
        return {"value": pair_match(left, right)}, 1
    results = [{"id": rid, "value": pair_match(left, right)} for rid, left, right in pairs]
    return {"results": results}, len(results)


def answer_multi(task: Task, body: Mapping[str, Any]) -> tuple[dict[str, Any], int] | None:
    """The simulator's reply to a multi-stage operator call, or None when ``task`` is not one.

    Returns the reply object and the rows it covers.
    """
    schema = task.schema if isinstance(task.schema, dict) else {}
    props = schema.get("properties")
    props = props if isinstance(props, dict) else {}
    user = _user_text(body)
    if task.kind == "structured" and set(props) == {"summary"}:
        return _summary_reply(body, user)
    if task.kind == "structured" and set(props) == {"ranking"}:
        return _ranking_reply(body, user)
    if task.kind not in ("map_batch", "map_single", "filter_batch", "filter_single"):
        return None
    instruction = _system_line(body, "Instruction: ")
    if instruction is not None and instruction.startswith(JOIN_PREFIX):
        return _pair_reply(task, user)
    if instruction is None or not instruction.startswith(SCORE_PREFIX):
        return None
    criterion = instruction[len(SCORE_PREFIX) :]
    if not task.kind.endswith("_batch"):
        return {"value": score_value(task.text, criterion)}, 1
    results = [{"id": rid, "value": score_value(text, criterion)} for rid, text in task.rows]
    return {"results": results}, len(results)
