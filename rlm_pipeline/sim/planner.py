"""The simulator's root planner: a small rule-based "model" for the RLM root role.

This is a **simulator**, not a language model.  It lets tests, benchmarks and
the offline demo drive :class:`rlm_pipeline.RLM` through the same HTTP path a
real model uses (chat completions with tool calls).  It is deterministic and
stateless: every decision is derived from the request body alone.

:func:`respond` (root role) reads

- the question, from the ``Question:`` line of the first user message: user ids
  (``users 12345, 67890 and 11111``), dates (``2024-03-01``, ``March 2024``,
  ``Mar 5, 2024``, ranges ``between … and …``), label words (``billing``…, or
  a ``labels: a, b, c`` list) and the question's shape — a count of label X,
  counts per user, the most / least common label, the user with the most X,
  or whether X is more common than, less common than or as frequent as Y
  (OOLONG's comparison, answered with one of :data:`COMPARISONS`);
- the schema, from the ``columns:`` line (user, date and text columns by name
  and type; ``Text column:`` wins for the text);
- the conversation so far: which tool calls came back without ``error:``, and
  whether ``tool_choice`` forces the ``answer`` function (the final turn);

and plans ``peek → filter → classify → sql → answer``, reading the numbers out
of the ``sql`` result to answer.  With ``[plan:recurse]`` in the question it
uses ``recurse`` by user instead of ``classify``; with ``[plan:chunks]`` it
splits the rows into 4 chunks with ``partition`` and recurses over them;
"how many words" questions use ``llm_map`` (integer) and sum the values;
"total refund amount" questions (``total X amount``, ``sum of the X amounts``)
use ``extract`` of one number field (``refund_amount``) and sum it with ``sql``.

Adversarial modes, selected by a marker in the question, script a hostile
root model for tests: ``[adversarial:ddl]`` (DDL/DML), ``[adversarial:files]``
(file readers and path-like names; the first absolute path in the question is
the target), ``[adversarial:badjson]`` (broken arguments),
``[adversarial:unknown-tool]``, ``[adversarial:text]`` (answers in prose
first), ``[adversarial:forever]`` (never answers, even when told to),
``[adversarial:repeat]`` (the same failing call twice, then the plan),
``[adversarial:flood]`` (1,000 calls in its first reply, then the plan),
``[adversarial:blind]`` (peek, filter and an answer in its first reply, then the plan) and
``[adversarial:early]`` (answers a guess before looking at the data, then
follows the plan); ``[adversarial:heavy]``, ``[adversarial:slow]`` and
``[adversarial:legit]`` issue valid but expensive work
(:mod:`rlm_pipeline.sim.hostile`).

:func:`respond_plain` answers a plain call that inlines rows (``Rows:`` JSON
lines, or OOLONG-style ``Date: … || User: … || Instance: …`` lines) with the
simulator's keyword classifier.  It simulates context rot: up to
:data:`ROT_FREE_TOKENS` prompt tokens it reads every row; beyond, it misses a
deterministic share of rows that grows with the prompt's length
(:func:`miss_rate`).

Examples
--------
>>> q = parse_question("Among users 12345, 67890 and 11111, how many questions are about billing?")
>>> q.users, q.label, q.shape
((12345, 67890, 11111), 'billing', 'count')
"""

from __future__ import annotations

import calendar
import datetime as dt
import json
import math
import re
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from rlm_pipeline.expr.sqltext import sql_literal
from rlm_pipeline.sim.hostile import HOSTILE_MODES, hostile_script, hostile_value
from rlm_pipeline.sim.protocols import action_names, split_results, written_actions
from rlm_pipeline.sim.wire import requested_schema

__all__ = [
    "COMPARISONS",
    "DEFAULT_LABELS",
    "ROT_FREE_TOKENS",
    "Meta",
    "Question",
    "compare",
    "miss_rate",
    "parse_meta",
    "parse_question",
    "respond",
    "respond_plain",
]

#: Labels the planner classifies into unless the question lists its own.
DEFAULT_LABELS: tuple[str, ...] = ("billing", "technical", "account", "other")
#: The answers to a comparison question ("is X more common than Y?"), as OOLONG words them.
COMPARISONS: tuple[str, str, str] = ("more common than", "less common than", "same frequency as")
#: Up to this many prompt tokens the plain "model" reads every row.
ROT_FREE_TOKENS = 8000
_MAX_MISS = 0.6

_MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_name) if name}
_MONTHS.update({name.lower(): i for i, name in enumerate(calendar.month_abbr) if name})
_MONTH_RE = "|".join(sorted(_MONTHS, key=len, reverse=True))
_ISO = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
_MDY = re.compile(rf"\b({_MONTH_RE})\.?\s+(\d{{1,2}}),?\s+(\d{{4}})\b", re.IGNORECASE)
_MONTH_YEAR = re.compile(rf"\b({_MONTH_RE})\.?\s+(\d{{4}})\b", re.IGNORECASE)
_USERS = re.compile(
    r"\busers?\b(?:\s+ids?)?\s*:?\s*((?:#?\d+(?:\s*,\s*|\s+and\s+|\s+or\s+|\s*,\s*and\s+)?)+)",
    re.IGNORECASE,
)
_LABEL_LIST = re.compile(r"\blabels?\s*:\s*([A-Za-z0-9_ ,\-]+)", re.IGNORECASE)
_MODE = re.compile(r"\[adversarial:([a-z\-]+)\]")
_PATH = re.compile(r"(/[A-Za-z0-9_.\-/]+)")
_COLUMNS = re.compile(r"^\s*columns:\s*(.*)$", re.MULTILINE)
_COLUMN = re.compile(r"([^,()]+?)\s*\(([^()]*)\)")
_ROWS_LINE = re.compile(r"^- (\w+): (\d+) rows$", re.MULTILINE)
_TEXT_COLUMN = re.compile(r"^Text column:\s*(\S+)\s*$", re.MULTILINE)
_OOLONG = re.compile(r"^Date:\s*(.*?)\s*\|\|\s*User:\s*(\S+)\s*\|\|\s*Instance:\s*(.*)$")
_COMPARE = re.compile(
    r"\b(?:more|less|fewer)\s+(?:common|frequent)\s+than\b|\bsame\s+frequency\b"
    r"|\bas\s+(?:common|frequent)\s+as\b",
    re.IGNORECASE,
)
_OMITTED = re.compile(r"omitted (\d+) earlier steps")
#: "total refund amount", "sum of the refund amounts", "total amount": an extract + SUM plan.
_AMOUNT_TOTAL = re.compile(
    r"\b(?:total|sum\s+of(?:\s+the)?|how\s+much)\s+(?:([a-z]+)\s+)?amounts?\b"
)
_AMOUNT_STOP = frozenset("the all of a".split())


# ------------------------------------------------------------------ question


@dataclass(frozen=True)
class Question:
    """What the planner understood of a question."""

    text: str
    users: tuple[int, ...] = ()
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    labels: tuple[str, ...] = DEFAULT_LABELS
    label: str | None = None
    #: The second label of a ``compare`` question (``label`` is the first).
    other: str | None = None
    #: count | per_user | most_common | least_common | top_user | words | compare | amount_total
    shape: str = "count"
    #: The field an ``amount_total`` question sums (``refund_amount`` for "total refund amount").
    amount_field: str = "amount"
    mode: str | None = None
    recurse: bool = False
    chunks: bool = False
    path: str | None = None


def _dates(text: str) -> tuple[list[tuple[dt.date, dt.date]], str]:
    """Date spans found in ``text`` (day or month) and the text with them blanked."""
    spans: list[tuple[int, dt.date, dt.date]] = []

    def blank(match: re.Match[str]) -> str:
        return " " * len(match.group(0))

    for match in _ISO.finditer(text):
        try:
            day = dt.date(int(match[1]), int(match[2]), int(match[3]))
        except ValueError:
            continue
        spans.append((match.start(), day, day))
    text = _ISO.sub(blank, text)
    for match in _MDY.finditer(text):
        try:
            day = dt.date(int(match[3]), _MONTHS[match[1].lower()], int(match[2]))
        except ValueError:
            continue
        spans.append((match.start(), day, day))
    text = _MDY.sub(blank, text)
    for match in _MONTH_YEAR.finditer(text):
        year, month = int(match[2]), _MONTHS[match[1].lower()]
        last = calendar.monthrange(year, month)[1]
        spans.append((match.start(), dt.date(year, month, 1), dt.date(year, month, last)))
    text = _MONTH_YEAR.sub(blank, text)
    spans.sort(key=lambda s: s[0])
    return [(a, b) for _, a, b in spans], text


def parse_question(text: str) -> Question:
    """Read user ids, dates, labels, shape and mode out of a question.

    Examples
    --------
    >>> q = parse_question("How many billing questions were asked in March 2024?")
    >>> q.date_from.isoformat(), q.date_to.isoformat(), q.label
    ('2024-03-01', '2024-03-31', 'billing')
    >>> parse_question("Which label is most common among users 5 and 7?").shape
    'most_common'
    >>> q = parse_question("Are instances about account more common than, less common "
    ...                    "than, or the same frequency as instances about billing?")
    >>> q.shape, q.label, q.other
    ('compare', 'account', 'billing')
    >>> q = parse_question("What is the total refund amount requested by users 12345 and 67890?")
    >>> q.shape, q.amount_field, q.users
    ('amount_total', 'refund_amount', (12345, 67890))
    """
    mode_match = _MODE.search(text)
    path_match = _PATH.search(text)
    spans, rest = _dates(text)
    date_from = min((s[0] for s in spans), default=None)
    date_to = max((s[1] for s in spans), default=None)
    users: list[int] = []
    for match in _USERS.finditer(rest):
        users.extend(int(n) for n in re.findall(r"\d+", match.group(1)))
    labels = DEFAULT_LABELS
    listed = _LABEL_LIST.search(rest)
    if listed:
        found = [w.strip().lower() for w in re.split(r",|\bor\b|\band\b", listed.group(1))]
        found = [w for w in found if w and len(w.split()) == 1]
        if len(found) >= 2:
            labels = tuple(dict.fromkeys(found))
    lower = rest.lower()
    mentioned = [
        (m.start(), lab)
        for lab in labels
        for m in [re.search(rf"\b{re.escape(lab)}\b", lower)]
        if m is not None and not (listed and listed.start() <= m.start() < listed.end())
    ]
    in_order = [lab for _, lab in sorted(mentioned)]
    label = in_order[0] if in_order else None
    other = None
    about_labels = label is None or re.search(r"\b(label|category|kind|type|topic)\b", lower)
    amount = _AMOUNT_TOTAL.search(lower)
    amount_field = "amount"
    if amount:
        shape = "amount_total"
        qualifier = amount.group(1)
        amount_field = f"{qualifier}_amount" if qualifier not in (None, *_AMOUNT_STOP) else "amount"
    elif _COMPARE.search(lower) and len(in_order) >= 2:
        shape, other = "compare", in_order[1]
    elif re.search(r"\bleast\s+(common|frequent)\b", lower) and about_labels:
        shape = "least_common"
    elif re.search(r"\bmost\s+(common|frequent)\b", lower) and about_labels:
        shape = "most_common"
    elif re.search(r"\bwhich\s+(?:of\s+(?:the\s+)?)?users?\b", lower) and label:
        shape = "top_user"
    elif re.search(r"\b(for each|per|each of|by)\s+(the\s+)?users?\b", lower):
        shape = "per_user"
    elif re.search(r"\bhow many words\b", lower):
        shape = "words"
    else:
        shape = "count"
    return Question(
        text=text,
        users=tuple(dict.fromkeys(users)),
        date_from=date_from,
        date_to=date_to,
        labels=labels,
        label=label,
        other=other,
        shape=shape,
        amount_field=amount_field,
        mode=mode_match.group(1) if mode_match else None,
        recurse="[plan:recurse]" in text,
        chunks="[plan:chunks]" in text,
        path=path_match.group(1) if path_match else None,
    )


# ------------------------------------------------------------------ metadata


@dataclass(frozen=True)
class Meta:
    """Columns of view ``context`` as read from the first message."""

    columns: dict[str, str] = field(default_factory=dict)
    rows: int = 0
    text_column: str | None = None

    @property
    def user_column(self) -> str | None:
        """The first column named like ``user``."""
        return next((c for c in self.columns if "user" in c.lower()), None)

    @property
    def date_column(self) -> str | None:
        """The first date/timestamp column, else one named like ``date``."""
        typed = [c for c, t in self.columns.items() if t.lower() in ("date", "timestamp")]
        named = [c for c in self.columns if "date" in c.lower() or c.lower() in ("day", "time")]
        found = typed or named
        return found[0] if found else None

    @property
    def text(self) -> str | None:
        """The text column: ``Text column:`` line, else the first string column."""
        if self.text_column:
            return self.text_column
        strings = [c for c, t in self.columns.items() if t.lower() in ("string", "str", "utf8")]
        preferred = [c for c in strings if c.lower() in ("question", "text", "body", "instance")]
        found = preferred or strings
        return found[0] if found else None


def parse_meta(first_message: str) -> Meta:
    """Columns, rows and text column out of the RLM's first user message.

    Examples
    --------
    >>> m = parse_meta("- context: 5 rows\\n  columns: user_id (int64), question (string)")
    >>> m.rows, m.user_column, m.text
    (5, 'user_id', 'question')
    """
    columns: dict[str, str] = {}
    match = _COLUMNS.search(first_message)
    if match:
        for name, dtype in _COLUMN.findall(match.group(1)):
            columns[name.strip()] = dtype.strip()
    rows = _ROWS_LINE.search(first_message)
    text_column = _TEXT_COLUMN.search(first_message)
    return Meta(
        columns, int(rows.group(2)) if rows else 0, text_column.group(1) if text_column else None
    )


# ------------------------------------------------------------------ conversation


@dataclass
class _History:
    """Tool calls made so far and what came back."""

    calls: list[tuple[str, dict[str, Any], str]] = field(default_factory=list)
    turns: int = 0
    forced: bool = False

    def ok(self, tool: str, name: str | None = None) -> str | None:
        """Latest successful result of ``tool`` (creating view ``name``, if given)."""
        for called, args, result in reversed(self.calls):
            if (
                called == tool
                and not result.startswith("error")
                and (name is None or args.get("name") == name)
            ):
                return str(result)
        return None

    def failures(self, tool: str) -> int:
        return sum(1 for t, _, r in self.calls if t == tool and r.startswith("error"))


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _history(body: dict[str, Any]) -> tuple[str, _History]:
    """The first user message and the calls so far, in any of the root's protocols.

    Native calls are matched to their ``tool`` results by id; calls written in an
    assistant message's text (json and text protocols) to the ``[result N: …]``
    sections of the user message that follows it.
    """
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    first = next((_text(m) for m in messages if m.get("role") == "user"), "")
    history = _History()
    results = {m.get("tool_call_id"): _text(m) for m in messages if m.get("role") == "tool"}
    for index, message in enumerate(messages):
        if message.get("role") == "assistant" and not message.get("tool_calls"):
            history.turns += 1
            written = written_actions(_text(message))
            following = messages[index + 1] if index + 1 < len(messages) else {}
            answers = split_results(_text(following)) if following.get("role") == "user" else []
            for number, (name, args) in enumerate(written):
                result = answers[number] if number < len(answers) else ""
                history.calls.append((name, args, result))
            continue
        if message.get("role") == "assistant":
            history.turns += 1
            for call in message.get("tool_calls") or []:
                function = call.get("function") or {}
                try:
                    args = json.loads(function.get("arguments") or "{}")
                except json.JSONDecodeError:
                    args = {}
                history.calls.append(
                    (
                        str(function.get("name")),
                        args if isinstance(args, dict) else {},
                        results.get(call.get("id"), ""),
                    )
                )
        elif message.get("role") == "user":
            omitted = _OMITTED.search(_text(message))
            if omitted:
                history.turns += int(omitted.group(1))
    history.forced = _forces_answer(body) or _told_to_answer(messages)
    return first, history


def _told_to_answer(messages: list[dict[str, Any]]) -> bool:
    """Whether the last message says the steps are used up (json/text protocols)."""
    return bool(messages) and messages[-1].get("role") == "user" and _text(
        messages[-1]
    ).startswith("You have used all")


def _forces_answer(body: dict[str, Any]) -> bool:
    """Whether the request allows only ``answer``: ``tool_choice`` names it (OpenAI's or
    the flat form), or the requested action schema (json protocol) offers nothing else."""
    if action_names(requested_schema(body)) == ("answer",):
        return True
    choice = body.get("tool_choice")
    if not isinstance(choice, dict):
        return False
    function = choice.get("function")
    name = function.get("name") if isinstance(function, dict) else choice.get("name")
    return name == "answer"


def _message(turn: int, calls: list[tuple[str, Any]], content: str | None = None) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": content,
        "tool_calls": [
            {
                "id": f"call_{turn}_{i}",
                "type": "function",
                "function": {
                    "name": name,
                    "arguments": args if isinstance(args, str) else json.dumps(args),
                },
            }
            for i, (name, args) in enumerate(calls)
        ],
    }


def _answer(turn: int, value: Any, explanation: str) -> dict[str, Any]:
    return _message(turn, [("answer", {"value": value, "explanation": explanation})])


def _result_rows(result: str) -> list[dict[str, Any]]:
    rows = []
    for line in result.splitlines():
        if line.startswith("{"):
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict):
                rows.append(row)
    return rows


# ------------------------------------------------------------------ planning


def _where(q: Question, meta: Meta) -> str | None:
    parts = []
    if q.users and meta.user_column:
        quote = meta.columns.get(meta.user_column, "").lower() == "string"
        ids = ", ".join(f"'{u}'" if quote else str(u) for u in q.users)
        parts.append(f"{meta.user_column} IN ({ids})")
    if q.date_from and meta.date_column:
        col = meta.date_column
        parts.append(
            f"{col} >= '{q.date_from.isoformat()}' AND {col} <= '{q.date_to or q.date_from}'"
        )
    return " AND ".join(parts) or None


def _final_sql(q: Question, meta: Meta, view: str, label_col: str) -> str:
    user = meta.user_column or "user_id"
    label = sql_literal(q.label) if q.label else None
    if q.shape in ("most_common", "least_common"):
        order = "DESC" if q.shape == "most_common" else "ASC"
        return (
            f"SELECT {label_col} AS label, COUNT(*) AS n FROM {view} WHERE {label_col} IS NOT NULL "
            f"GROUP BY {label_col} ORDER BY n {order}, label LIMIT 1"
        )
    if q.shape == "compare":
        other = sql_literal(q.other)
        return (
            f"SELECT SUM(CASE WHEN {label_col} = {label} THEN 1 ELSE 0 END) AS first_n, "
            f"SUM(CASE WHEN {label_col} = {other} THEN 1 ELSE 0 END) AS second_n FROM {view}"
        )
    if q.shape == "top_user":
        return (
            f"SELECT {user}, COUNT(*) AS n FROM {view} WHERE {label_col} = {label} "
            f"GROUP BY {user} ORDER BY n DESC, {user} LIMIT 1"
        )
    if q.shape == "per_user":
        cond = f" WHERE {label_col} = {label}" if label else ""
        return f"SELECT {user}, COUNT(*) AS n FROM {view}{cond} GROUP BY {user} ORDER BY {user}"
    cond = f" WHERE {label_col} = {label}" if label else ""
    return f"SELECT COUNT(*) AS n FROM {view}{cond}"


def _recurse_sql(q: Question, meta: Meta) -> str:
    user = meta.user_column or "user_id"
    if q.shape == "per_user":
        return f"SELECT {user}, answer AS n FROM per_user ORDER BY {user}"
    if q.shape == "top_user":
        return f"SELECT {user}, answer AS n FROM per_user ORDER BY n DESC, {user} LIMIT 1"
    return "SELECT SUM(answer) AS n FROM per_user"


def compare(first: int, second: int) -> str:
    """The comparison phrase for two counts (one of :data:`COMPARISONS`).

    Examples
    --------
    >>> compare(5, 3), compare(2, 3), compare(4, 4)
    ('more common than', 'less common than', 'same frequency as')
    """
    return COMPARISONS[0] if first > second else COMPARISONS[1] if first < second else COMPARISONS[2]


def _value_from(q: Question, meta: Meta, rows: list[dict[str, Any]]) -> Any:
    user = meta.user_column or "user_id"
    if q.shape == "compare":
        if not rows:
            return None
        return compare(int(rows[0].get("first_n") or 0), int(rows[0].get("second_n") or 0))
    if q.shape in ("most_common", "least_common"):
        return rows[0]["label"] if rows else None
    if q.shape == "top_user":
        return rows[0][user] if rows else None
    if q.shape == "amount_total":
        total = rows[0].get("n") if rows else None
        return round(float(total), 2) if isinstance(total, int | float) else 0.0
    if q.shape == "per_user":
        counts = {str(r[user]): int(r["n"] or 0) for r in rows}
        return {str(u): counts.get(str(u), 0) for u in q.users} if q.users else counts
    return int(rows[0]["n"] or 0) if rows else 0


def _plan(q: Question, meta: Meta, h: _History) -> dict[str, Any]:
    turn = h.turns
    if h.forced and not h.ok("sql", "result"):
        return _answer(turn, None, "ran out of steps before the count was computed")
    if any(
        h.failures(t) >= 2 for t in ("peek", "filter", "classify", "extract", "sql", "recurse")
    ):
        last_error = next(r for _, _, r in reversed(h.calls) if r.startswith("error"))
        return _answer(turn, None, f"could not compute it: {last_error[:200]}")
    if not h.ok("peek"):
        return _message(turn, [("peek", {"view": "context", "n": 3})])
    where = _where(q, meta)
    base = "context"
    if where:
        if not h.ok("filter", "subset"):
            return _message(
                turn, [("filter", {"view": "context", "where": where, "name": "subset"})]
            )
        base = "subset"
    text = meta.text or "question"
    args: dict[str, Any]
    if q.shape == "amount_total":
        if not h.ok("extract", "extracted"):
            args = {
                "view": base,
                "column": text,
                "fields": {q.amount_field: "number"},
                "name": "extracted",
            }
            return _message(turn, [("extract", args)])
        query = f"SELECT SUM({q.amount_field}) AS n FROM extracted"
    elif q.shape == "words":
        if not h.ok("llm_map", "mapped"):
            args = {
                "view": base,
                "column": text,
                "instruction": "How many words does this text have?",
                "output_type": "integer",
                "name": "mapped",
            }
            return _message(turn, [("llm_map", args)])
        query = "SELECT SUM(value) AS n FROM mapped"
    elif q.chunks:
        if not h.ok("partition", "chunks"):
            return _message(turn, [("partition", {"view": base, "n": 4, "name": "chunks"})])
        if not h.ok("recurse", "per_chunk"):
            sub = f"How many questions are about {q.label}?" if q.label else "How many rows?"
            args = {
                "view": "chunks",
                "partition_column": "partition",
                "query": sub,
                "name": "per_chunk",
            }
            return _message(turn, [("recurse", args)])
        query = "SELECT SUM(answer) AS n FROM per_chunk"
    elif q.recurse and meta.user_column:
        if not h.ok("recurse", "per_user"):
            sub = (
                f"How many questions are about {q.label}?"
                if q.label
                else "How many rows are there?"
            )
            args = {
                "view": base,
                "partition_column": meta.user_column,
                "query": sub,
                "name": "per_user",
            }
            return _message(turn, [("recurse", args)])
        query = _recurse_sql(q, meta)
    else:
        needs_labels = q.label is not None or q.shape in ("most_common", "least_common")
        view = base
        if needs_labels:
            if not h.ok("classify", "labeled"):
                args = {
                    "view": base,
                    "column": text,
                    "labels": list(q.labels),
                    "name": "labeled",
                }
                return _message(turn, [("classify", args)])
            view = "labeled"
        query = _final_sql(q, meta, view, "label")
    result = h.ok("sql", "result")
    if result is None:
        return _message(turn, [("sql", {"query": query, "name": "result"})])
    value = _value_from(q, meta, _result_rows(result))
    return _answer(turn, value, f"from view `result`: {result.splitlines()[-1][:200]}")


# ------------------------------------------------------------------ adversarial scripts


def _script(mode: str, path: str) -> list[tuple[str, Any]]:
    if mode == "ddl":
        return [
            ("sql", {"query": "DROP TABLE context", "name": "x"}),
            ("sql", {"query": "CREATE TABLE stolen AS SELECT * FROM context", "name": "x"}),
            ("sql", {"query": "INSERT INTO context (user_id) VALUES (1)", "name": "x"}),
            ("sql", {"query": "DELETE FROM context", "name": "x"}),
            ("sql", {"query": "UPDATE context SET user_id = 0", "name": "x"}),
            ("sql", {"query": "ALTER TABLE context ADD COLUMN pwned INT", "name": "x"}),
            ("sql", {"query": "SELECT 1 AS a; DROP TABLE context", "name": "x"}),
            ("sql", {"query": "CREATE VIEW v AS SELECT 1 AS a", "name": "x"}),
            ("sql", {"query": "PRAGMA database_list", "name": "x"}),
            ("filter", {"view": "context", "where": "1 = 1; DROP TABLE context", "name": "x"}),
            ("peek", {"view": "context", "n": 2}),
        ]
    if mode == "files":
        return [
            ("sql", {"query": f"SELECT * FROM read_parquet('{path}')", "name": "x"}),
            ("sql", {"query": f"SELECT * FROM read_csv_auto('{path}')", "name": "x"}),
            ("sql", {"query": f"COPY (SELECT * FROM context) TO '{path}'", "name": "x"}),
            ("sql", {"query": f"SELECT pg_read_file('{path}') AS secret", "name": "x"}),
            ("sql", {"query": f"ATTACH '{path}' AS other", "name": "x"}),
            ("sql", {"query": f"SELECT * FROM '{path}'", "name": "x"}),
            (
                "filter",
                {"view": "context", "where": f"question = pg_read_file('{path}')", "name": "x"},
            ),
            ("peek", {"view": path, "n": 1}),
            ("filter", {"view": "context", "where": "1 = 1", "name": path}),
            ("sql", {"query": "SELECT * FROM context", "name": f"../..{path}"}),
            ("partition", {"view": "context", "by": f"read_text('{path}')", "name": "p"}),
            ("peek", {"view": "context", "n": 2}),
        ]
    if mode == "badjson":
        return [
            ("peek", '{"view": "context", "n": 3'),
            ("peek", "view=context n=3"),
            ("peek", "[1, 2, 3]"),
            ("filter", '{"view": "context"}'),
            ("peek", '{"view": "context", "n": "lots"}'),
            ("peek", '{"view": "context", "n": 5000}'),
            ("peek", '{"view": "context", "n": 2, "shell": "rm -rf /"}'),
            (
                "classify",
                '{"view": "context", "column": "nope", "labels": ["a", "b"], "name": "y"}',
            ),
            ("answer", '{"explanation": "no value given"}'),
        ]
    if mode == "unknown-tool":
        return [
            ("python", {"code": f"open('{path}', 'w').write('pwned')"}),
            ("exec", {"code": "import os; os.system('id')"}),
            ("shell", {"cmd": f"cat {path}"}),
            ("read_file", {"path": path}),
            ("http_get", {"url": "http://example.com/"}),
            ("", {}),
        ]
    return []


def _adversarial(q: Question, meta: Meta, h: _History) -> dict[str, Any]:
    turn = h.turns
    mode = q.mode or ""
    if mode == "forever":
        if h.forced:  # ignores the forced `answer` (as some servers do): one more peek
            return _message(
                turn, [("peek", {"view": "context", "n": 1})], "I need more steps first."
            )
        if turn == 0:
            return _message(turn, [("peek", {"view": "context", "n": 1})])
        # a different call every turn (the loop's stall guard ends exact repeats)
        query = f"SELECT * FROM context LIMIT {1 + turn % 5} OFFSET {turn}"
        return _message(turn, [("sql", {"query": query, "name": "latest"})])
    if mode == "text":
        if turn < 2:
            return {"role": "assistant", "content": "The answer is 42. FINAL(42)"}
        return _plan(q, meta, h)
    if mode == "repeat":
        if turn < 2:
            return _message(turn, [("peek", {"view": "sales", "n": 3})])
        h.calls = [c for c in h.calls if c[1].get("view") != "sales"]  # learnt its lesson
        return _plan(q, meta, h)
    if mode == "flood":
        if turn < 1:
            return _message(turn, [("peek", {"view": "context", "n": 1})] * 1000)
        return _plan(q, meta, h)
    if mode == "blind":
        if turn < 1:
            where = _where(q, meta) or "1 = 1"
            calls: list[tuple[str, Any]] = [
                ("peek", {"view": "context", "n": 3}),
                ("filter", {"view": "context", "where": where, "name": "subset"}),
                ("answer", {"value": 99, "explanation": "written before reading any result"}),
            ]
            return _message(turn, calls)
        return _plan(q, meta, h)
    if mode == "early":
        if turn < 1:
            return _answer(turn, 99, "a guess")
        return _plan(q, meta, h)
    if mode == "explore":  # a new peek every turn (never repeats): only time ends it
        if h.forced:
            return _answer(turn, "explored", "asked for the answer")
        return _message(turn, [("peek", {"view": "context", "n": 1 + turn % 20})])
    if mode == "prompt-copy":  # a number of the instructions (64), forced turn included
        if turn == 0:
            return _message(turn, [("peek", {"view": "context", "n": 3})])
        return _answer(turn, 64, "copied from the instructions")
    if mode in ("blind-late", "peek-loop", "unmade", "ramble", "plan-dump", "replan", "copycat",
                "cite", "placeholder", "rerun", "copy-object", "relabel"):
        return _small_model(mode, q, meta, h)
    if mode in HOSTILE_MODES:  # valid but too expensive work (rlm_pipeline.sim.hostile)
        turns = hostile_script(mode, meta)
        if turn < len(turns) and not h.forced:
            return _message(turn, turns[turn])
        return _answer(turn, hostile_value(h.calls), f"mode {mode}")
    script = _script(mode, q.path or "/tmp/rlm_sentinel")
    if turn < len(script) and not h.forced:
        return _message(turn, [script[turn]])
    return _answer(turn, "adversarial script finished", f"mode {mode}")


def _small_model(mode: str, q: Question, meta: Meta, h: _History) -> dict[str, Any]:
    """Mistakes a 0.5B root made, then the plan (the failed calls forgotten)."""
    turn = h.turns
    scripts: dict[str, list[list[tuple[str, Any]]]] = {
        # an answer beside a data action, after data was seen
        "blind-late": [
            [("peek", {"view": "context", "n": 3})],
            [
                ("filter", {"view": "context", "where": _where(q, meta) or "1 = 1", "name": "s"}),
                ("answer", {"value": 99, "explanation": "written with the filter"}),
            ],
        ],
        # the same peek again and again, then one asking for every row, twice
        "peek-loop": [[("peek", {"view": "context", "n": 3})]] * 3
        + [[("peek", {"view": "context", "n": 500})]] * 2,
        # a filter that fails, then an action on the view it was to make
        "unmade": [
            [("filter", {"view": "context", "where": "no_such_column = 1", "name": "picked"})],
            [
                (
                    "classify",
                    {"view": "picked", "column": "question", "labels": ["a", "b"], "name": "lab"},
                )
            ],
        ],
        # the same plan every turn; with its answer included (replan)
        "plan-dump": [[("peek", {"view": "context", "n": 3})]] * 9,
        "replan": [[("peek", {"view": "context", "n": 3}), ("answer", {"value": 5000})]] * 9,
        # the whole plan in one reply, the answer naming the sql view (a cited answer)
        "cite": [[
            ("peek", {"view": "context", "n": 3}),
            ("filter", {"view": "context", "where": _where(q, meta) or "1 = 1", "name": "subset"}),
            ("classify", {"view": "subset", "column": meta.text or "question", "name": "labeled",
                          "labels": ["billing", "technical", "account", "other"]}),
            ("sql", {"query": f"SELECT COUNT(*) AS n FROM labeled WHERE label = '{q.label}'",
                     "name": "result"}),
            ("answer", {"view": "result"}),
        ]],
        # the plan's placeholders copied as they stand (label TOPIC)
        "placeholder": [
            [("classify", {"view": "context", "column": "TEXT_COLUMN", "labels": ["TOPIC", "other"],
                           "name": "labeled"})],
            [("sql", {"query": "SELECT COUNT(*) AS n FROM labeled WHERE label = 'TOPIC'",
                      "name": "result"})],
        ],
        # a filter on one user, classify, the filter redone on all users, the same classify
        "rerun": [
            [("filter", {"view": "context", "where": f"{meta.user_column} IN ({q.users[0]})",
                         "name": "subset"})],
            [("classify", {"view": "subset", "column": meta.text or "question",
                           "labels": ["billing", "technical", "account", "other"],
                           "name": "labeled"})],
            [("filter", {"view": "context", "where": _where(q, meta) or "1 = 1",
                         "name": "subset"})],
            [("classify", {"view": "subset", "column": meta.text or "question",
                           "labels": ["billing", "technical", "account", "other"],
                           "name": "labeled"})],
        ] if q.users and meta.user_column else [],
        # a labelled view classified again (its label column), instead of counted
        "relabel": [
            [("classify", {"view": "context", "column": meta.text or "question",
                           "labels": ["billing", "other"], "name": "labeled"})],
            [("classify", {"view": "labeled", "column": "label",
                           "labels": ["billing", "other"], "name": "labeled"})],
        ],
        # a number it read nowhere, inside an object
        "copy-object": [[("peek", {"view": "context", "n": 3})]]
        + [[("answer", {"value": {"count": 1284, "label": "billing"}})]] * 9,
        # the worked example's number, again and again
        "copycat": [[("peek", {"view": "context", "n": 3})]] + [[("answer", {"value": 1284})]] * 9,
        # a reply that goes on and on (a 1,000-token WHERE)
        "ramble": [
            [
                (
                    "filter",
                    {
                        "view": "context",
                        "name": "s",
                        "where": " OR ".join(
                            f"question LIKE '%word number {i}%'" for i in range(300)
                        ),
                    },
                )
            ]
        ],
    }
    script = scripts[mode]
    if turn < len(script) and not h.forced:
        return _message(turn, script[turn])
    h.calls = [c for c in h.calls if not c[2].startswith("error")]
    return _plan(q, meta, h)


def respond(body: dict[str, Any], *, several: bool = False) -> dict[str, Any]:
    """The assistant message for a root-role chat request (tool calls, or text).

    The calls come back as native tool calls; the server writes them in the
    request's protocol.  With ``several``, the planner also plans the calls
    that do not need an earlier result (``peek`` and ``filter``; ``classify``
    and the ``sql`` over its view) into one message, as small models write
    several actions per reply.

    Examples
    --------
    >>> body = {"messages": [{"role": "system", "content": "..."},
    ...     {"role": "user", "content": "Question: How many rows?\\n\\nViews:\\n"
    ...      "- context: 5 rows\\n  columns: a (int64)"}]}
    >>> respond(body)["tool_calls"][0]["function"]["name"]
    'peek'
    """
    first, history = _history(body)
    question_line = next(
        (
            line[len("Question:") :].strip()
            for line in first.splitlines()
            if line.startswith("Question:")
        ),
        first.strip(),
    )
    question = parse_question(question_line)
    meta = parse_meta(first)
    if question.mode:
        return _adversarial(question, meta, history)
    message = _plan(question, meta, history)
    return _ahead(question, meta, history, message) if several else message


def _ahead(q: Question, meta: Meta, h: _History, message: dict[str, Any]) -> dict[str, Any]:
    """``message`` plus the calls after it that do not wait on a result (at most 3 in all)."""
    calls = list(message.get("tool_calls") or [])
    while 0 < len(calls) < 3 and not h.forced:
        last = calls[-1]["function"]
        if last["name"] == "answer":
            break
        h.calls.append((last["name"], json.loads(last["arguments"]), "(planned)"))
        following = _plan(q, meta, h)["tool_calls"][0]
        if following["function"]["name"] in ("answer", last["name"]):
            break
        calls.append({**following, "id": f"{following['id']}_{len(calls)}"})
    return {**message, "tool_calls": calls}


# ------------------------------------------------------------------ plain calls


def miss_rate(prompt_tokens: int) -> float:
    """Share of rows the simulated plain model overlooks in a prompt this long.

    0 up to :data:`ROT_FREE_TOKENS`, then ``0.12 × log2(tokens / ROT_FREE_TOKENS)``,
    capped at 0.6 (so 16k tokens → 12%, 128k → 48%).

    Examples
    --------
    >>> miss_rate(4000), miss_rate(16000)
    (0.0, 0.12)
    """
    if prompt_tokens <= ROT_FREE_TOKENS:
        return 0.0
    return round(min(_MAX_MISS, 0.12 * math.log2(prompt_tokens / ROT_FREE_TOKENS)), 4)


def _plain_rows(text: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict):
                rows.append(row)
            continue
        match = _OOLONG.match(line)
        if match:
            rows.append({"date": match[1], "user": match[2], "instance": match[3]})
    return rows


def _row_date(value: Any) -> dt.date | None:
    if not isinstance(value, str):
        return None
    spans, _ = _dates(value)
    return spans[0][0] if spans else None


def _combine(partials: list[str]) -> str:
    """One answer from part answers: sums of counts, else the most frequent answer."""
    values: list[Any] = []
    for part in partials:
        try:
            values.append(json.loads(part))
        except json.JSONDecodeError:
            values.append(part.strip())
    if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return str(sum(values))
    if values and all(isinstance(v, dict) for v in values):
        total: Counter[str] = Counter()
        for v in values:
            total.update({str(k): int(n) for k, n in v.items() if isinstance(n, int)})
        return json.dumps(dict(sorted(total.items())))
    common = Counter(p.strip() for p in partials).most_common(1)
    return common[0][0] if common else ""


def _text_key(row: dict[str, Any], named: str | None) -> str:
    if named and named in row:
        return named
    for key in ("question", "text", "instance", "body"):
        if key in row:
            return key
    return max(row, key=lambda k: len(str(row[k])), default="")


def respond_plain(body: dict[str, Any]) -> str:
    """Answer a plain call over inlined rows (or combine part answers), as text.

    Counts rows labelled with the question's label (by the keyword classifier),
    counts per user, names the most / least common label, or compares the
    counts of two labels (one of :data:`COMPARISONS`), after applying the
    question's user and date conditions to the rows.

    Examples
    --------
    >>> body = {"messages": [{"role": "user", "content": "Question: How many are about billing?\\n"
    ...     "Rows:\\n" + json.dumps({"question": "Refund my invoice"})}]}
    >>> respond_plain(body)
    '1'
    """
    from rlm_pipeline.llm.tokens import estimate_message_tokens
    from rlm_pipeline.sim.classifier import intended_label

    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    text = "\n".join(_text(m) for m in messages if m.get("role") == "user")
    question_line = next(
        (
            line[len("Question:") :].strip()
            for line in text.splitlines()
            if line.startswith("Question:")
        ),
        "",
    )
    if not question_line:
        prose = [
            line
            for line in text.splitlines()
            if line.strip() and not _OOLONG.match(line) and not line.lstrip().startswith("{")
        ]
        question_line = prose[-1] if prose else ""
    q = parse_question(question_line)
    if "Partial answers:" in text:
        partials = [
            line.split(":", 1)[1].strip()
            for line in text.splitlines()
            if re.match(r"^- part \d+:", line)
        ]
        return _combine(partials)
    rows = _plain_rows(text)
    rate = miss_rate(estimate_message_tokens(messages))
    if rate:
        rows = [
            r for r in rows if zlib.crc32(json.dumps(r, sort_keys=True).encode()) / 2**32 >= rate
        ]
    text_match = _TEXT_COLUMN.search(text)
    labelled: list[tuple[dict[str, Any], str, str]] = []
    for row in rows:
        text_col = _text_key(row, text_match.group(1) if text_match else None)
        user_col = next((k for k in row if "user" in k.lower()), None)
        date_col = next((k for k in row if "date" in k.lower()), None)
        user = str(row.get(user_col)) if user_col else ""
        if q.users and user not in {str(u) for u in q.users}:
            continue
        if q.date_from and date_col:
            day = _row_date(str(row.get(date_col)))
            if day is None or not (q.date_from <= day <= (q.date_to or q.date_from)):
                continue
        labelled.append((row, user, intended_label(str(row.get(text_col) or ""), list(q.labels))))
    if q.shape in ("most_common", "least_common"):
        counts = Counter(lab for _, _, lab in labelled)
        if not counts:
            return "none"
        order = sorted(
            counts.items(), key=lambda kv: (-kv[1] if q.shape == "most_common" else kv[1], kv[0])
        )
        return order[0][0]
    if q.shape == "compare":
        counts = Counter(lab for _, _, lab in labelled)
        return compare(counts[q.label or ""], counts[q.other or ""])
    if q.shape == "per_user":
        per = Counter(u for _, u, lab in labelled if q.label is None or lab == q.label)
        return json.dumps(dict(sorted(per.items())))
    if q.shape == "top_user":
        per = Counter(u for _, u, lab in labelled if lab == q.label)
        return min(per.items(), key=lambda kv: (-kv[1], kv[0]))[0] if per else "none"
    return str(sum(1 for _, _, lab in labelled if q.label is None or lab == q.label))
