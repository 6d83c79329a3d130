"""The root model's system prompt (versioned) and the messages built around it.

The first user message holds the question and the metadata of every view —
schema, row count, a few sample values — and never the data itself.  Its
layout is fixed (``Question:``, ``Views:``, ``- NAME: N rows``,
``  columns: ...``) so that it reads well and so that the offline simulator's
planner (:mod:`rlm_pipeline.sim.planner`) can read it too.

Examples
--------
>>> PROMPT_VERSION
'rlm-root-v5'

The system prompt comes in two variants (:func:`system_prompt`): the full one
(:data:`SYSTEM_PROMPT`, the default with native tool calls) and a compact one
for small models (the default for the ``json`` and ``text`` protocols) that
lists the actions, shows their exact syntax and a plan whose actions hold placeholders
in capitals (no results, no numbers: a 0.5B root replayed an earlier worked example's
label and number whatever the question asked).
Both start with :data:`ROOT_PROMPT_MARKER`.  Without native tool calls, the
results of one reply's actions go back in one user message
(:func:`results_message`), each under a ``[result N: TOOL]`` line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rlm_pipeline.rlm.render import cut, jsonable, schema_line

#: Other SELECTs of the plan's sql step, by question shape (placeholders in capitals).
SQL_SHAPES: tuple[tuple[str, str], ...] = (
    (
        "which user has the most TOPIC",
        "SELECT user_id, COUNT(*) AS n FROM labeled WHERE label = 'TOPIC' "
        "GROUP BY user_id ORDER BY n DESC LIMIT 1",
    ),
    (
        "which topic is the most common (least: ASC), or two topics compared",
        "SELECT label, COUNT(*) AS n FROM labeled GROUP BY label ORDER BY n DESC",
    ),
)

__all__ = [
    "EARLY_ANSWER_MESSAGE",
    "PEEK_ONLY_MESSAGE",
    "PLAIN_SYSTEM_PROMPT",
    "PROMPT_VERSION",
    "REPEAT_CALL_MESSAGE",
    "RESULT_HEADER",
    "ROOT_PROMPT_MARKER",
    "SQL_SHAPES",
    "SAME_REPLY_ANSWER_MESSAGE",
    "SYSTEM_PROMPT",
    "ViewInfo",
    "combine_message",
    "final_answer_message",
    "first_message",
    "nudge_message",
    "plain_message",
    "results_message",
    "system_prompt",
]

#: Part of every root cache key; bump it whenever a text below changes.
PROMPT_VERSION = "rlm-root-v5"
#: How every root system prompt starts (the simulator recognises the root role by it).
ROOT_PROMPT_MARKER = "You are an orchestrator"

SYSTEM_PROMPT = """\
You are an orchestrator, not a solver. A table you cannot see in full is view \
`context`; tools run on it and sub-models read its texts for you. `view` names an \
existing view, `name` the view a tool makes.
Work: `peek` a few rows; `filter` to the rows the question is about (SQL WHERE); \
read texts only by sub-calls (`classify` into labels; `llm_map`, `extract`; \
`partition` + `recurse` per group), after filtering: every row read costs a call; \
aggregate with `sql` (one read-only SELECT); then `answer` a JSON value, or \
{"view": NAME} for a small view's value. Only `answer` answers. On `error: ...`, fix \
the call.
Plan for "how many texts from users USER1 and USER2 are about TOPIC?" (capitals: your \
question's words): filter {"view": "context", "where": "user_id IN (USER1, USER2)", \
"name": "subset"}; classify {"view": "subset", "column": "TEXT_COLUMN", "labels": \
["TOPIC", "other"], "name": "labeled"}; sql {"query": "SELECT COUNT(*) AS n FROM \
labeled WHERE label = 'TOPIC'", "name": "result"}; answer {"view": "result"}.
"""

_COMPACT_HEAD = """\
You are an orchestrator. A table you cannot see is registered as view `context`. \
You answer the question by running actions on it; sub-models read the texts for you. \
Only the `answer` action ends the run; text is not an answer.

Actions:
{tools}

{syntax}

Plan. Words in capitals (TOPIC, USER1, FIRST_DAY, TEXT_COLUMN) are placeholders: \
write the words of YOUR question and table instead.
{plan}
Other SELECTs for step 4:
{shapes}
Answer only after you have read a result that holds the answer. A result starting \
with "error:" means: fix that action; a view named in a failed action was not made."""

_SYNTAX = {
    "tools": "Call the actions as tools (function calls).",
    "json": (
        "Reply with exactly one JSON object per turn, for one action:\n"
        '{"tool": "<action>", "arguments": {...}}\n'
        "Its result comes back in the next message."
    ),
    "text": (
        "Write each action on its own line, exactly like this:\n"
        '<tool_call>{"name": "<action>", "arguments": {...}}</tool_call>\n'
        "Several actions in one reply run in order; their results come back in the "
        "next message."
    ),
}

#: One ``[result N: TOOL]`` line heads each action's result in a results message.
RESULT_HEADER = "[result {n}: {tool}]"

#: Sent (once per run) when `answer` comes before the model has seen any result from the data.
EARLY_ANSWER_MESSAGE = (
    "not accepted yet: this answer was written before you saw any result from the data, "
    "so it is a guess. Check with the data first (peek, filter, classify, sql), read the "
    "results, then answer in a reply of its own."
)

#: Sent (once per run) when `answer` comes after only `peek` ran: a few rows, not the table.
PEEK_ONLY_MESSAGE = (
    "not accepted yet: you have only peeked at a few rows, not the whole table. Work it "
    "out with the data first: filter if the question names users or dates, classify the "
    "text column, count with sql, then answer from the sql result."
)

#: Sent (every time) when `answer` is written in the same reply as data actions: their
#: results did not exist when the answer was written.
SAME_REPLY_ANSWER_MESSAGE = (
    "not accepted: this answer was written in the same reply as other actions, before "
    "their results existed. Their results are above; read them, then answer in a reply "
    "of its own with the value they show."
)

#: A data action repeated with the very same arguments after it already ran.
REPEAT_CALL_MESSAGE = (
    "not run again: you already ran this exact action (step {step}) and its result is "
    "above. Take the next step instead: {next_step}"
)

PLAIN_SYSTEM_PROMPT = """\
You answer one question about the rows given below (one JSON object per line). \
Reply with only the answer: a number, a short text, or a JSON value. No explanation."""

_SAMPLE_VALUES = 3
_SAMPLE_CHARS = 80
_MAX_COLUMNS_SHOWN = 40


class ViewInfo:
    """What the root model is told about one view: name, rows, schema, samples.

    Examples
    --------
    >>> info = ViewInfo("context", 2, {"n": "int64"}, {"n": [1, 2]})
    >>> print(info.describe())
    - context: 2 rows
      columns: n (int64)
      samples: n: 1 | 2
    """

    def __init__(
        self,
        name: str,
        rows: int,
        schema: Mapping[str, str],
        samples: Mapping[str, Sequence[Any]],
    ) -> None:
        self.name = name
        self.rows = rows
        self.schema = dict(schema)
        self.samples = {k: list(v) for k, v in samples.items()}

    def describe(self) -> str:
        """The view's block in the first message (bounded)."""
        names = list(self.schema)
        shown = {k: self.schema[k] for k in names[:_MAX_COLUMNS_SHOWN]}
        more = len(names) - len(shown)
        columns = schema_line(shown, limit=1200) + (f", … and {more} more" if more > 0 else "")
        lines = [f"- {self.name}: {self.rows} rows", f"  columns: {columns}"]
        parts = []
        for column in list(shown)[:12]:
            values = [v for v in self.samples.get(column, []) if v is not None][:_SAMPLE_VALUES]
            if values:
                text = " | ".join(cut(str(jsonable(v)), _SAMPLE_CHARS) for v in values)
                parts.append(f"{column}: {text}")
        if parts:
            lines.append("  samples: " + "; ".join(parts))
        return "\n".join(lines)


def first_message(
    question: str,
    views: Sequence[ViewInfo],
    *,
    text_column: str | None,
    tool_names: Sequence[str] | None = None,
    depth: int,
    max_depth: int,
    max_steps: int,
) -> str:
    """The first user message: question and metadata, never the data.

    ``tool_names`` adds a ``Tools:`` line; the loop leaves it out (its tools are
    offered natively or listed in the system prompt).

    Examples
    --------
    >>> msg = first_message("How many rows?", [ViewInfo("context", 5, {"a": "int64"}, {})],
    ...                     text_column=None, tool_names=["peek", "answer"], depth=0,
    ...                     max_depth=2, max_steps=30)
    >>> msg.splitlines()[0]
    'Question: How many rows?'
    """
    lines = [f"Question: {cut(question, 2000)}", "", "Views:"]
    lines.extend(view.describe() for view in views)
    lines.append("")
    if text_column:
        lines.append(f"Text column: {text_column}")
    if tool_names is not None:  # the tools are offered, or listed in the system prompt
        lines.append("Tools: " + ", ".join(tool_names))
    lines.append(f"Depth: {depth} of {max_depth}; steps available: {max_steps}.")
    return "\n".join(lines)


def system_prompt(
    protocol: str,
    *,
    compact: bool,
    tool_lines: Sequence[str],
    example: Sequence[tuple[str, str]],
) -> str:
    """The root system prompt for ``protocol`` (``tools``, ``json`` or ``text``).

    ``tool_lines`` lists the actions (signature and description); ``example``
    holds the plan's ``(step, its actions as written)`` pairs
    (:func:`rlm_pipeline.rlm.protocol.example`: placeholders, no results, no
    numbers to replay).  The full variant with native tools is
    :data:`SYSTEM_PROMPT` as is; without native tools it adds the action list
    and syntax.

    Examples
    --------
    >>> text = system_prompt("text", compact=True, tool_lines=["- peek(view, n)"],
    ...                      example=[("peek 3 rows", "<tool_call>…</tool_call>")])
    >>> text.startswith(ROOT_PROMPT_MARKER), "<tool_call>" in text
    (True, True)
    """
    syntax = _SYNTAX.get(protocol, _SYNTAX["text"])
    if not compact:
        if protocol == "tools":
            return SYSTEM_PROMPT
        return f"{SYSTEM_PROMPT}\nActions:\n" + "\n".join(tool_lines) + f"\n\n{syntax}"
    plan = "\n".join(f"{i}. {what}:\n{actions}" for i, (what, actions) in enumerate(example, 1))
    shapes = "\n".join(f"- {when}: {query}" for when, query in SQL_SHAPES)
    return _COMPACT_HEAD.format(
        tools="\n".join(tool_lines), syntax=syntax, plan=plan, shapes=shapes
    )


def results_message(results: Sequence[tuple[str, str]], notes: Sequence[str] = ()) -> str:
    """The user message carrying the results of one reply's actions (json/text protocols).

    Examples
    --------
    >>> print(results_message([("peek", "view `context`: first 1 rows")]))
    [result 1: peek]
    view `context`: first 1 rows
    """
    parts = [
        RESULT_HEADER.format(n=i, tool=cut(tool, 60)) + "\n" + text
        for i, (tool, text) in enumerate(results, 1)
    ]
    parts.extend(f"note: {note}" for note in notes)
    return "\n".join(parts)


def nudge_message() -> str:
    """Sent after a reply with no tool call: only tools act, only `answer` ends the run."""
    return (
        "Please continue with a tool call. Only the `answer` tool ends the run; "
        "text replies are not read as answers."
    )


def final_answer_message(steps: int, syntax: str | None = None, last: str | None = None) -> str:
    """Sent once when the steps are used up, with `answer` forced.

    ``syntax`` shows how to write the `answer` action when it is not a native
    tool call (json and text protocols); ``last`` is the loop's last
    successful result, restated so the answer can come from it.

    Examples
    --------
    >>> final_answer_message(8, last='{"n": 4}').splitlines()[-2:]
    ['Your last result was:', '{"n": 4}']
    """
    text = (
        f"You have used all {steps} steps. Call `answer` now with your best answer "
        "from what you have found."
    )
    if syntax:
        text += f" Only `answer` is accepted now; write it exactly like this:\n{syntax}"
    if last:
        text += f"\nYour last result was:\n{last}"
    return text


def plain_message(question: str, text_column: str | None, rows_jsonl: str) -> str:
    """The user message of a plain call that answers ``question`` over inlined rows."""
    head = f"Question: {question}\n"
    if text_column:
        head += f"Text column: {text_column}\n"
    return head + "Rows:\n" + rows_jsonl


def combine_message(question: str, partials: Sequence[str]) -> str:
    """The user message that combines the answers of several parts of one partition."""
    lines = [
        f"Question: {question}",
        "The rows were split into parts; these are the answers for each part.",
        "Partial answers:",
    ]
    lines.extend(f"- part {i + 1}: {cut(p, 300)}" for i, p in enumerate(partials))
    lines.append("Combine them into one answer to the question for all rows together.")
    return "\n".join(lines)
