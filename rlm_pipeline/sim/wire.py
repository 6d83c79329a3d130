"""Reading a chat-completions request: what is asked, about which rows, with which labels.

Pure functions over the request body (a dict).  They are cheap on purpose: no
schema compilation, a single pass over the relevant message.  They accept our
own wire format (``Rows:`` JSON lines, see ``docs/internals.md``) and the
looser prompts of other tools (LOTUS, DocETL): the last user message as the
text and labels from a schema ``enum`` or a ``labels: a, b, c`` /
``one of a, b or c`` list in the prompt.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from rlm_pipeline.llm.structured import STRUCTURED_PROMPT_PREFIX
from rlm_pipeline.sim.mapper import request_condition, value_task_kind
from rlm_pipeline.sim.protocols import ROOT_PROMPT_MARKER, action_names

__all__ = [
    "PLAIN_PROMPT_MARKER",
    "Task",
    "forced_tool",
    "is_plain_question",
    "labels_from_prompt",
    "message_text",
    "parse_rows",
    "plan_task",
    "requested_schema",
]

_ROWS_MARKER = re.compile(r"(?:^|\n)Rows:[ \t]*\n")
_SHORT_ROW = re.compile(r'^(\d+):\s*(".*")$')
_LABEL_TRIGGER = re.compile(
    r"\b(?:one of(?: the(?: following)?)?(?: labels| categories| classes)?|labels?|"
    r"categories|classes|allowed values)\b\s*(?:\([^)\n]{0,40}\))?\s*[:=]?\s*\[?",
    re.IGNORECASE,
)
_LIST_SPLIT = re.compile(r"\s*(?:,|;|\||/|\s\bor\b\s|\s\band\b\s)\s*", re.IGNORECASE)
_ITEM_END = re.compile(r"[:.?!\])\n]")
#: Plain prompts that ask a question over data (RLM sub-calls): left to the planner.
_PLANNER_PLAIN = re.compile(r"(?m)^(?:Question:|Partial answers:)|\|\|")
#: How the system prompt of the RLM's plain calls (``rlm/plain.py``) starts.
PLAIN_PROMPT_MARKER = "You answer one question about the rows given below"
_QUOTES = "'\"`“”‘’«» *"


@dataclass(frozen=True)
class Task:
    """What a request asks for.

    ``kind`` is one of ``classify_batch``, ``classify_single``, ``map_batch``,
    ``map_single``, ``filter_batch``, ``filter_single``, ``extract_batch``,
    ``extract_single`` (see :func:`~rlm_pipeline.sim.mapper.value_task_kind`),
    ``classify_plain`` (a plain prompt listing labels, answered with a bare
    label), ``structured`` (another JSON schema), ``root`` (the RLM root role:
    an ``answer`` tool is offered) or ``plain`` (anything else,
    including inlined ``Rows:`` and ``Question:`` prompts: the planner answers).
    A request is the root role when it offers an ``answer`` tool, asks for an
    action object (the json protocol) or starts with the root system prompt
    (the text protocol).
    """

    kind: str
    schema: dict[str, Any] | None = None
    labels: tuple[str, ...] = ()
    output_type: str = "string"
    rows: list[tuple[Any, str]] = field(default_factory=list)
    text: str = ""
    tool_name: str | None = None
    #: A filter's condition (``filter_batch`` / ``filter_single``).
    condition: str = ""


def message_text(message: dict[str, Any]) -> str:
    """The text of one chat message (string content or the text parts of a list)."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") in ("text", "input_text")
        )
    return ""


def _last_user_text(messages: list[Any]) -> str:
    """The last user message, without a schema line the client may have appended."""
    text = ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            text = message_text(message)
            break
    else:
        if messages and isinstance(messages[-1], dict):
            text = message_text(messages[-1])
    cut = text.find(STRUCTURED_PROMPT_PREFIX)
    return text if cut < 0 else text[:cut]


def parse_rows(text: str) -> list[tuple[Any, str]] | None:
    """Rows after the last ``Rows:`` line: ``12:"text"`` or a JSON object ``{"id", "text"}`` per line.

    Returns ``None`` when there is no ``Rows:`` block.  Lines that are not JSON
    objects are skipped; a missing or non-string ``text`` counts as ``""``.

    Examples
    --------
    >>> parse_rows('Classify.\\nRows:\\n{"id": 0, "text": "hi"}\\n{"id": 1, "text": null}')
    [(0, 'hi'), (1, '')]
    >>> parse_rows('Rows:\\n0: "hi"\\n1: "a \\\\"b\\\\""')
    [(0, 'hi'), (1, 'a "b"')]
    >>> parse_rows('Rows:\\n0: "a\\u2028b"')
    [(0, 'a\\u2028b')]
    """
    matches = list(_ROWS_MARKER.finditer(text))
    if not matches:
        return None
    rows: list[tuple[Any, str]] = []
    # "\n" only: a row's JSON may hold U+2028 and friends, which str.splitlines splits on
    for line in text[matches[-1].end() :].split("\n"):
        line = line.strip()
        short = _SHORT_ROW.match(line)  # ``12:"text"`` (ops-2 framing)
        if short is not None:
            try:
                value = json.loads(short.group(2))
            except ValueError:
                continue
            rows.append((int(short.group(1)), value if isinstance(value, str) else ""))
            continue
        if not line.startswith("{"):
            continue
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            value = row.get("text")
            rows.append((row.get("id"), value if isinstance(value, str) else ""))
    return rows


def labels_from_prompt(text: str) -> tuple[tuple[str, ...], tuple[int, int]] | None:
    """Labels listed in a prompt (``labels: a, b, c``, ``one of a, b or c``) and their span.

    Returns ``None`` unless at least two short labels are found.

    Examples
    --------
    >>> labels_from_prompt("Classify into one of: billing, technical, or other. Text: hi")[0]
    ('billing', 'technical', 'other')
    """
    for match in _LABEL_TRIGGER.finditer(text):
        tail_start = match.end()
        newline = text.find("\n", tail_start)
        tail = text[tail_start : newline if newline >= 0 else len(text)]
        labels: list[str] = []
        consumed = 0
        for item in _LIST_SPLIT.split(tail):
            end = _ITEM_END.search(item)
            piece = item[: end.start()] if end else item
            piece = re.sub(r"^(?:or|and)\s+", "", piece.strip(), flags=re.IGNORECASE)
            piece = piece.strip(_QUOTES)
            if not piece or len(piece) > 40 or len(piece.split()) > 3:
                break
            labels.append(piece)
            position = tail.find(item, consumed)
            consumed = (position if position >= 0 else consumed) + len(piece)
            if end:
                break
        unique = tuple(dict.fromkeys(labels))
        if len(unique) >= 2:
            return unique, (match.start(), tail_start + consumed)
    return None


def requested_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON schema the reply must follow, from ``response_format`` or the prompt."""
    response_format = body.get("response_format")
    if isinstance(response_format, dict):
        kind = response_format.get("type")
        found: Any = None
        if kind == "json_schema":
            spec = response_format.get("json_schema")
            found = spec.get("schema") if isinstance(spec, dict) else None
        elif kind == "json_object":
            found = response_format.get("schema")
        if isinstance(found, dict):
            return found
    for message in body.get("messages") or ():
        if not isinstance(message, dict):
            continue
        text = message_text(message)
        start = text.find(STRUCTURED_PROMPT_PREFIX)
        if start < 0:
            continue
        rest = text[start + len(STRUCTURED_PROMPT_PREFIX) :].lstrip()
        try:
            schema: Any = json.JSONDecoder().raw_decode(rest)[0]
        except ValueError:
            continue
        if isinstance(schema, dict):
            return schema
    return None


def _tool_function(tool: Any) -> dict[str, Any]:
    function = tool.get("function") if isinstance(tool, dict) else None
    return function if isinstance(function, dict) else {}


def forced_tool(body: dict[str, Any]) -> dict[str, Any] | None:
    """The function the caller forces (``tool_choice`` names it, or one tool and "required")."""
    tools = body.get("tools") or []
    choice = body.get("tool_choice")
    name: str | None = None
    if isinstance(choice, dict):
        function = choice.get("function")
        name = function.get("name") if isinstance(function, dict) else choice.get("name")
    elif choice == "required" and len(tools) == 1:
        name = _tool_function(tools[0]).get("name")
    if not name:
        return None
    for tool in tools:
        function = _tool_function(tool)
        if function.get("name") == name:
            return function
    return None


def _types(spec: Any) -> list[str]:
    if not isinstance(spec, dict):
        return []
    kind = spec.get("type")
    if isinstance(kind, list):
        return [str(k) for k in kind if k != "null"]
    if isinstance(kind, str):
        return [kind]
    for key in ("anyOf", "oneOf"):
        options = spec.get(key)
        if isinstance(options, list):
            return [t for option in options for t in _types(option)]
    return []


def _enum(spec: Any) -> tuple[str, ...]:
    if isinstance(spec, dict):
        values = spec.get("enum")
        if isinstance(values, list):
            return tuple(str(v) for v in values if v is not None)
        for key in ("anyOf", "oneOf"):
            for option in spec.get(key) or ():
                found = _enum(option)
                if found:
                    return found
    return ()


def _output_type(spec: Any) -> str:
    for kind in _types(spec):
        if kind in ("integer", "number", "boolean", "string"):
            return kind
    return "string"


def _strip_span(text: str, span: tuple[int, int] | None) -> str:
    return text if span is None else (text[: span[0]] + " " + text[span[1] :])


def is_plain_question(messages: list[Any], user_text: str) -> bool:
    """Whether a request without a schema asks a question over data (a planner's job).

    True for the RLM's plain calls (system prompt starting with
    :data:`PLAIN_PROMPT_MARKER`), prompts with inlined ``Rows:``, a
    ``Question:`` or ``Partial answers:`` line, and OOLONG-style ``||`` lines.  It is
    checked before any label-list heuristic, so a question that mentions
    "labels" or "categories" is still answered as a question.

    Examples
    --------
    >>> is_plain_question([], "Question: Which label is most common?\\nRows:\\n{}")
    True
    >>> is_plain_question([], "Labels: billing, other\\nText: refund me")
    False
    """
    for message in messages:
        if (
            isinstance(message, dict)
            and message.get("role") == "system"
            and message_text(message).lstrip().startswith(PLAIN_PROMPT_MARKER)
        ):
            return True
    return parse_rows(user_text) is not None or bool(_PLANNER_PLAIN.search(user_text))


def plan_task(body: dict[str, Any]) -> Task:
    """Decide what ``body`` asks for (see :class:`Task`).

    The order matters: an ``answer`` tool in ``tools`` means the root role
    (whatever ``tool_choice`` forces, even ``answer`` itself); then a requested
    schema (forced tool or ``response_format``) decides the structured kinds;
    then plain questions over data (:func:`is_plain_question`); only then a
    label list in the prompt makes it a plain classification.
    """
    messages = body.get("messages") or []
    tools = body.get("tools") or []
    if any(_tool_function(t).get("name") == "answer" for t in tools):
        return Task("root")  # even when the answer tool is forced: the planner decides
    if _is_root_prompt(messages) or action_names(requested_schema(body)) is not None:
        return Task("root")  # the RLM root without native tools (json or text protocol)
    forced = forced_tool(body)

    schema = forced.get("parameters") if forced is not None else requested_schema(body)
    tool_name = forced.get("name") if forced is not None else None
    user_text = _last_user_text(messages)
    rows = parse_rows(user_text)
    # A filter's ``Condition:`` line: in the system message (batches) or the user's (one row).
    prompt = "\n".join(message_text(m) for m in messages if isinstance(m, dict))

    if isinstance(schema, dict):
        found_props = schema.get("properties")
        props: dict[str, Any] = found_props if isinstance(found_props, dict) else {}
        results = props.get("results")
        items = results.get("items") if isinstance(results, dict) else None
        item_props = items.get("properties") if isinstance(items, dict) else None
        if isinstance(item_props, dict) and ("label" in item_props or "value" in item_props):
            if "label" in item_props:
                labels = _enum(item_props["label"]) or _prompt_labels(messages)
                return Task("classify_batch", schema, labels, rows=rows or [],
                            tool_name=tool_name)
            kind = value_task_kind(item_props["value"], prompt)  # map, filter or extract
            return Task(f"{kind}_batch", schema, output_type=_output_type(item_props["value"]),
                        rows=rows or [], tool_name=tool_name,
                        condition=request_condition(prompt) or "")
        text, labels = _single_text(user_text, rows, messages)
        if "label" in props:
            labels = _enum(props["label"]) or labels
            return Task("classify_single", schema, labels, text=text, tool_name=tool_name)
        if "value" in props:
            kind = value_task_kind(props["value"], prompt)
            return Task(f"{kind}_single", schema, output_type=_output_type(props["value"]),
                        text=text, tool_name=tool_name,
                        condition=request_condition(prompt) or "")
        return Task("structured", schema, labels, text=text, tool_name=tool_name)

    if is_plain_question(messages, user_text):
        return Task("plain")  # inlined rows or a question over data: the planner's job
    found = labels_from_prompt(user_text)
    if found is not None:
        return Task("classify_plain", labels=found[0], text=_strip_span(user_text, found[1]))
    system_labels = _prompt_labels(messages)
    if system_labels:
        return Task("classify_plain", labels=system_labels, text=user_text)
    return Task("plain")


def _is_root_prompt(messages: list[Any]) -> bool:
    """Whether the system prompt is the RLM root's (it starts with :data:`ROOT_PROMPT_MARKER`)."""
    return any(
        isinstance(m, dict)
        and m.get("role") == "system"
        and message_text(m).lstrip().startswith(ROOT_PROMPT_MARKER)
        for m in messages[:1]
    )


def _prompt_labels(messages: list[Any]) -> tuple[str, ...]:
    for message in messages:
        if isinstance(message, dict):
            found = labels_from_prompt(message_text(message))
            if found is not None:
                return found[0]
    return ()


def _single_text(
    user_text: str, rows: list[tuple[Any, str]] | None, messages: list[Any]
) -> tuple[str, tuple[str, ...]]:
    """The text of a one-row request and any labels listed in its prompt."""
    if rows:
        return rows[0][1], _prompt_labels(messages)
    found = labels_from_prompt(user_text)
    if found is not None:
        return _strip_span(user_text, found[1]), found[0]
    return user_text, _prompt_labels(messages)
