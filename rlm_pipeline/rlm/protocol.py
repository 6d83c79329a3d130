"""How the root model's actions travel: native tool calls, one JSON action, or text.

Three *protocols* carry the same closed set of actions (:data:`TOOLS`):

* ``"tools"`` — OpenAI function calling: the tools go in ``tools``, the calls
  come back as ``tool_calls`` and the results as ``tool`` messages;
* ``"json"`` — each turn asks for exactly one action through
  ``response_format``: an object ``{"tool": NAME, "arguments": {...}}`` whose
  schema (:func:`action_schema`) is an ``anyOf`` over the tools, so grammar
  engines (llama.cpp), guided decoding (vLLM) and strict modes return a valid
  action; the results go back as one user message;
* ``"text"`` — no tools in the request; the actions are read from the reply's
  text (:mod:`rlm_pipeline.rlm.actions`) and the results go back as one user
  message.

``"auto"`` starts with the protocol remembered for the endpoint and model (in
this process, then in the response cache file), else ``"tools"``; the loop
switches to ``"text"`` when a reply writes its actions as text and to
``"json"`` when the server refuses ``tools`` (:func:`is_tools_rejection`), and
remembers the switch (:func:`remember_protocol`).

Every schema sent to a server goes through :func:`wire_schema`: no
``maxLength`` / ``maxItems`` / ``minLength`` / ``minItems`` above
:data:`SCHEMA_LIMIT` (llama.cpp expands such a limit into that many grammar
rules and fails or crashes); the real limits are enforced after parsing, by
the tools' validators.

Examples
--------
>>> schema = action_schema(["peek", "answer"])
>>> [alt["properties"]["tool"]["const"] for alt in schema["anyOf"]]
['peek', 'answer']
>>> over_limit(action_schema(TOOL_NAMES))
[]
"""

from __future__ import annotations

import calendar
import json
import re
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from rlm_pipeline.llm.failures import is_tools_refusal
from rlm_pipeline.rlm.limits import LIMIT_KEYS, SCHEMA_LIMIT, over_limit, wire_schema
from rlm_pipeline.rlm.sem_tools import EXTRACT_EXAMPLE
from rlm_pipeline.rlm.tools import TOOL_NAMES, TOOLS

__all__ = [
    "ACTION_SCHEMA_NAME",
    "EXAMPLES",
    "LIMIT_KEYS",
    "PLACEHOLDERS",
    "PLAN_ORDER",
    "PROMPT_VARIANTS",
    "PROTOCOLS",
    "SCHEMA_LIMIT",
    "Protocol",
    "action_schema",
    "action_text",
    "example",
    "fill_placeholders",
    "forget_protocols",
    "is_tools_rejection",
    "in_plan_order",
    "known_protocol",
    "next_step_hint",
    "over_limit",
    "remember_protocol",
    "placeholder_message",
    "placeholders_in",
    "repeat_hint",
    "signature",
    "tool_lines",
    "wire_schema",
]

#: What ``RLM(protocol=...)`` accepts.
PROTOCOLS: tuple[str, ...] = ("auto", "tools", "json", "text")
#: What ``RLM(prompt=...)`` accepts.
PROMPT_VARIANTS: tuple[str, ...] = ("auto", "full", "compact")
Protocol = Literal["tools", "json", "text"]
#: The ``name`` of the json protocol's ``response_format`` schema.
ACTION_SCHEMA_NAME = "rlm_action"

#: Words in capitals that stand for the question's own words in the plan and hints
#: (:data:`EXAMPLES`, :func:`example`): the plan shows no runnable example, since a 0.5B
#: root replayed the earlier worked example (its label and its number) whatever the
#: question asked.  An action that still holds one is refused before it runs
#: (:func:`placeholders_in`), with what to write instead.
PLACEHOLDERS: dict[str, str] = {
    "TOPIC": "the topic word your question names",
    "USER1": "the user ids your question names",
    "USER2": "the user ids your question names",
    "FIRST_DAY": "the first day of the period your question names, as 'YYYY-MM-DD'",
    "LAST_DAY": "the last day of that period, as 'YYYY-MM-DD'",
    "TEXT_COLUMN": "the text column named in the first message",
}
_PLACEHOLDER = re.compile(r"\b(" + "|".join(PLACEHOLDERS) + r")\b")

#: One call per tool, shown in prompts and hints (placeholders in capitals).
EXAMPLES: dict[str, dict[str, Any]] = {
    "peek": {"view": "context", "n": 3},
    "filter": {"view": "context", "where": "user_id IN (USER1, USER2)", "name": "subset"},
    "partition": {"view": "subset", "by": "user_id", "name": "parts"},
    "sql": {
        "query": "SELECT COUNT(*) AS n FROM labeled WHERE label = 'TOPIC'",
        "name": "result",
    },
    "classify": {
        "view": "subset",
        "column": "TEXT_COLUMN",
        "labels": ["TOPIC", "other"],
        "name": "labeled",
    },
    "llm_map": {
        "view": "subset",
        "column": "TEXT_COLUMN",
        "instruction": "How many words does this text have?",
        "output_type": "integer",
        "name": "mapped",
    },
    "extract": EXTRACT_EXAMPLE,
    "aggregate": {
        "view": "subset",
        "column": "TEXT_COLUMN",
        "instruction": "the main complaints, in one sentence",
        "by": ["user_id"],
        "name": "complaints",
    },
    "recurse": {
        "view": "parts",
        "partition_column": "partition",
        "query": "How many texts are about TOPIC?",
        "name": "per_part",
    },
    "answer": {"value": "<the value your result shows>", "explanation": "from view `result`"},
}
#: The plan's `answer` names the sql view instead of retyping its value (the loop reads
#: it: rlm/loop.py ``_cite``); the json protocol's schema asks for ``value``.
_CITING: dict[str, Any] = {"view": "result"}

_LOCK = threading.Lock()
_KNOWN: dict[tuple[str, str], Protocol] = {}
_TOOLS_WORDS = re.compile(r"\btools?\b|tool[_ ]choice|function[_ ]call", re.IGNORECASE)


def _parameters(name: str) -> dict[str, Any]:
    for tool in TOOLS:
        if tool["function"]["name"] == name:
            params: dict[str, Any] = tool["function"]["parameters"]
            return params
    msg = f"unknown tool {name!r}"
    raise KeyError(msg)


def action_schema(names: Sequence[str] = TOOL_NAMES) -> dict[str, Any]:
    """The json protocol's reply schema: one ``{"tool", "arguments"}`` object, any of ``names``.

    The arguments' schemas are the tools' own (limits above
    :data:`SCHEMA_LIMIT` and descriptions left out).  With ``names=["answer"]``
    it is the forced final turn's schema.
    """
    alternatives = [
        {
            "type": "object",
            "properties": {
                "tool": {"const": name},
                "arguments": wire_schema(_parameters(name), descriptions=False),
            },
            "required": ["tool", "arguments"],
            "additionalProperties": False,
        }
        for name in names
    ]
    return {"anyOf": alternatives}


def signature(name: str) -> str:
    """``name(arg, arg, optional?)`` from the tool's schema.

    Examples
    --------
    >>> signature("peek")
    'peek(view, n, columns?)'
    """
    params = _parameters(name)
    required = set(params.get("required") or ())
    names = [p if p in required else f"{p}?" for p in params.get("properties") or {}]
    return f"{name}({', '.join(names)})"


#: The order the tools are listed in to the model: the usual plan first.  A 0.5B root
#: wrote the tool list out in its given order as its plan (peek, filter, partition, sql,
#: classify, ...), so its `sql` over the labelled view came before the `classify`.
PLAN_ORDER: tuple[str, ...] = ("peek", "filter", "classify", "sql", "answer")


def in_plan_order(tools: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """``tools`` with :data:`PLAN_ORDER`'s first, the others after in their own order.

    Examples
    --------
    >>> [t["function"]["name"] for t in in_plan_order(TOOLS)][:5]
    ['peek', 'filter', 'classify', 'sql', 'answer']
    """
    rank = {name: i for i, name in enumerate(PLAN_ORDER)}
    indexed = list(enumerate(tools))
    indexed.sort(key=lambda it: (rank.get(it[1]["function"]["name"], len(rank)), it[0]))
    return [tool for _, tool in indexed]


def tool_lines() -> list[str]:
    """One line per tool: signature and description (for prompts without native tools)."""
    lines = []
    for tool in in_plan_order(TOOLS):
        function = tool["function"]
        lines.append(f"- {signature(function['name'])}: {function.get('description', '')}")
    return lines


def action_text(protocol: str, name: str, arguments: dict[str, Any]) -> str:
    """One action written the way ``protocol`` expects it in a reply.

    Examples
    --------
    >>> action_text("json", "peek", {"view": "context", "n": 3})
    '{"tool": "peek", "arguments": {"view": "context", "n": 3}}'
    >>> action_text("text", "peek", {"view": "context", "n": 3})
    '<tool_call>{"name": "peek", "arguments": {"view": "context", "n": 3}}</tool_call>'
    """
    args = json.dumps(arguments, ensure_ascii=False)
    if protocol == "json":
        return f'{{"tool": "{name}", "arguments": {args}}}'
    return f'<tool_call>{{"name": "{name}", "arguments": {args}}}</tool_call>'


def known_protocol(endpoint: str, model: str) -> Protocol | None:
    """The protocol remembered for this endpoint and model in this process, if any."""
    with _LOCK:
        return _KNOWN.get((endpoint, model))


def remember_protocol(endpoint: str, model: str, protocol: Protocol) -> None:
    """Record the protocol that works for this endpoint and model (in this process)."""
    with _LOCK:
        _KNOWN[(endpoint, model)] = protocol


def forget_protocols() -> None:
    """Clear the process-wide table (tests, long-lived processes)."""
    with _LOCK:
        _KNOWN.clear()


def is_tools_rejection(status: int | None, message: str) -> bool:
    """Whether an HTTP error says the server does not take ``tools`` / ``tool_choice``.

    A 4xx naming them (not 401/403/408/429), or a 5xx that says so plainly
    (llama.cpp's server without ``--jinja``; the client does not retry it:
    :func:`~rlm_pipeline.llm.failures.is_tools_refusal`).

    Examples
    --------
    >>> is_tools_rejection(400, "HTTP 400: 'tools' is not supported")
    True
    >>> is_tools_rejection(400, "HTTP 400: context length exceeded")
    False
    >>> is_tools_rejection(500, "tools: internal error")
    False
    >>> is_tools_rejection(500, "tools param requires --jinja flag")
    True
    """
    if status is not None and status >= 500:  # llama-server: "tools param requires --jinja flag"
        return is_tools_refusal(status, message)
    if status is None or not 400 <= status < 500 or status in (401, 403, 408, 429):
        return False
    return bool(_TOOLS_WORDS.search(message))


#: The plan shown to the root: (what the step does, its actions).  No results and no
#: numbers: nothing a small model could replay as its own answer.
_PLAN: tuple[tuple[str, tuple[tuple[str, dict[str, Any]], ...]], ...] = (
    ("peek 3 rows of `context`, once", (("peek", EXAMPLES["peek"]),)),
    (
        "only if the question names users or dates, filter (else skip this step)",
        (
            ("filter", EXAMPLES["filter"]),
            (
                "filter",
                {
                    "view": "context",
                    "where": "date BETWEEN 'FIRST_DAY' AND 'LAST_DAY'",
                    "name": "subset",
                },
            ),
        ),
    ),
    (
        "classify the text column of `subset` (or of `context` if you did not filter); "
        'labels: the topics the question names, plus "other"',
        (("classify", EXAMPLES["classify"]),),
    ),
    (
        "sql over `labeled`: the SELECT that fits the question, named `result`",
        (("sql", EXAMPLES["sql"]),),
    ),
    ("answer with the value of your sql result", (("answer", _CITING),)),
)


def _example_args(protocol: str, name: str, args: dict[str, Any]) -> dict[str, Any]:
    """The json protocol's `answer` schema asks for a value: the plan shows its form."""
    return EXAMPLES["answer"] if name == "answer" and protocol == "json" else args


def example(protocol: str) -> list[tuple[str, str]]:
    """The plan as ``(step, its actions as written for protocol)`` pairs.

    Placeholders in capitals (:data:`PLACEHOLDERS`) stand for the question's
    words; there are no results and no numbers to replay.

    Examples
    --------
    >>> step, actions = example("text")[3]
    >>> "TOPIC" in actions, any(ch.isdigit() for ch in actions)
    (True, False)
    """
    return [
        (
            what,
            "\n".join(
                action_text(protocol, name, _example_args(protocol, name, args))
                for name, args in actions
            ),
        )
        for what, actions in _PLAN
    ]


def placeholders_in(arguments: str, question: str = "") -> list[str]:
    """The plan's placeholders (:data:`PLACEHOLDERS`) left in an action's arguments.

    A word the question itself holds is not counted.

    Examples
    --------
    >>> placeholders_in('{"query": "SELECT 1 FROM t WHERE label = TOPIC"}')
    ['TOPIC']
    >>> placeholders_in('{"labels": ["TOPIC", "other"]}', "Is TOPIC a word here?")
    []
    """
    found = dict.fromkeys(_PLACEHOLDER.findall(arguments))
    return [word for word in found if not re.search(rf"\b{word}\b", question)]


def placeholder_message(words: Sequence[str], question: str = "", fixed: str | None = None) -> str:
    """Why an action holding placeholders was not run, and what to write instead.

    ``fixed`` is the action with the placeholders filled from the question
    (:func:`fill_placeholders`), shown to copy when there is one; else the
    question is quoted (the words to write come from it).

    Examples
    --------
    >>> print(placeholder_message(["TOPIC"], "How many are about billing?"))
    ... # doctest: +NORMALIZE_WHITESPACE
    not run: TOPIC is a placeholder from the plan, not a value. Write this action again
    with your own words: TOPIC -> the topic word your question names. Your question:
    "How many are about billing?"
    """
    wanted = "; ".join(
        f"{word} -> {PLACEHOLDERS.get(word, 'the value your results show')}" for word in words
    )
    return (
        f"not run: {', '.join(words)} {'is a placeholder' if len(words) == 1 else 'are placeholders'}"
        f" from the plan, not a value. Write this action again with your own words: {wanted}."
        + (f"\nFor your question that is:\n{fixed}" if fixed else "")
        + (f' Your question: "{question[:500]}"' if question and not fixed else "")
    )


_ABOUT = re.compile(r"\babout\s+([A-Za-z][A-Za-z_-]{0,40})\b", re.IGNORECASE)
_IDS = re.compile(r"(?<![\w.-])\d{3,12}(?![\w.])")
_MONTH = re.compile(
    r"\b(January|February|March|April|May|June|July|August|September|October|November|"
    r"December)\s+(\d{4})\b"
)
_MONTHS = (
    "January February March April May June July August September October November December"
).split()


def fill_placeholders(arguments: str, question: str, text_column: str | None) -> str | None:
    """``arguments`` with the plan's placeholders filled from the question, if all can be.

    TOPIC: the word after "about"; USER1, USER2: the ids (numbers of 3 or more
    digits) the question names; FIRST_DAY / LAST_DAY: the month it names
    ("March 2022"); TEXT_COLUMN: the run's text column.  None when one is left.
    A suggestion in a refusal only: the model still writes the action.

    Examples
    --------
    >>> fill_placeholders('{"labels": ["TOPIC", "other"], "column": "TEXT_COLUMN"}',
    ...                   "How many are about billing?", "question")
    '{"labels": ["billing", "other"], "column": "question"}'
    >>> fill_placeholders('{"where": "user_id IN (USER1, USER2)"}',
    ...                   "Among users 12345, 67890 and 11111, how many ...?", None)
    '{"where": "user_id IN (12345, 67890, 11111)"}'
    >>> fill_placeholders("date BETWEEN 'FIRST_DAY' AND 'LAST_DAY'",
    ...                   "How many are dated in February 2024?", None)
    "date BETWEEN '2024-02-01' AND '2024-02-29'"
    >>> fill_placeholders('{"labels": ["TOPIC"]}', "Which user is the busiest?", None) is None
    True
    """
    values: dict[str, str] = {}
    about = _ABOUT.search(question)
    if about:
        values["TOPIC"] = about.group(1).lower()
    ids = _IDS.findall(_MONTH.sub(" ", question))
    if ids:
        values["USER1"] = ", ".join(ids)
    month = _MONTH.search(question)
    if month:
        number, year = _MONTHS.index(month.group(1)) + 1, int(month.group(2))
        last = calendar.monthrange(year, number)[1]
        values["FIRST_DAY"] = f"{year:04d}-{number:02d}-01"
        values["LAST_DAY"] = f"{year:04d}-{number:02d}-{last:02d}"
    if text_column:
        values["TEXT_COLUMN"] = text_column
    filled = re.sub(r"USER1(?:,\s*USER2)?", lambda _m: values.get("USER1", "USER1"), arguments)
    filled = _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(1)), filled)
    return None if placeholders_in(filled, question) else filled


def next_step_hint(done: Mapping[tuple[str, str], int]) -> str:
    """What to do after the data actions in ``done`` (``(tool, arguments)`` keys).

    Examples
    --------
    >>> next_step_hint({("peek", "{}"): 1})
    'classify the text column (of `context`, or of the view your filter made) into all the topics.'
    >>> next_step_hint({("peek", "{}"): 1, ("classify", "{}"): 2, ("sql", "{}"): 3})
    'answer with the value your sql result shows, in a reply of its own.'
    """
    tools = {name for name, _ in done}
    if not tools & {"classify", "llm_map", "recurse"}:
        return (
            "classify the text column (of `context`, or of the view your filter made) "
            "into all the topics."
        )
    if "sql" not in tools:
        return "sql: one SELECT over your labelled view that counts what the question asks."
    return "answer with the value your sql result shows, in a reply of its own."


def repeat_hint(name: str, error: str, protocol: str) -> str:
    """A targeted hint for a call that failed the same way twice.

    Examples
    --------
    >>> repeat_hint("peek", "unknown view 'sales'; views are: context", "tools").split(":")[0]
    'hint'
    """
    lower = error.lower()
    if name not in TOOL_NAMES:
        return (
            f"hint: `{name[:60]}` is not an action and never will be (no code, no shell, "
            f"no files); use one of: {', '.join(TOOL_NAMES)}."
        )
    shown = action_text(protocol, name, EXAMPLES.get(name, {}))
    if "unknown view" in lower:
        return (
            "hint: use a view that exists (the error lists them), spelled exactly; make new "
            f"views with filter or sql first. A correct call looks like: {shown}"
        )
    if "unknown column" in lower:
        return "hint: use a column the error lists, spelled exactly; peek the view to see them."
    if name == "peek" and "greater than the maximum" in lower:
        return (
            "hint: peek shows a few rows only and never reads the whole table. To count "
            "rows, classify the text column, then count with sql."
        )
    if "bad arguments" in lower or "not valid json" in lower or "json object" in lower:
        return f"hint: this action takes {signature(name)}; a correct call looks like: {shown}"
    if name in ("sql", "filter", "partition"):
        return (
            "hint: keep the SQL simple: one read-only SELECT (or WHERE expression) over existing "
            "views and their columns; no DDL, files or user functions."
        )
    return "hint: this exact call failed twice; change its arguments or use another action."
