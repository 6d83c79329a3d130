"""How the simulator talks the RLM root's action protocols, like the servers it mimics.

A root request is answered in the protocol it was sent in
(:func:`root_protocol`): with native ``tool_calls`` when it offers ``tools``
(unless the config writes calls as text, like llama.cpp's server often does,
or refuses ``tools`` outright), with one ``{"tool", "arguments"}`` object when
its ``response_format`` (or its prompt) asks for an action object, and in text
otherwise.  Text replies put the actions in ``<tool_call>`` tags, bare JSON or
a fenced block, with prose around them (:func:`as_text`).

:func:`check_grammar` mimics llama.cpp's grammar engine: a schema limit above
the configured bound fails the request with HTTP 500, as the real server fails
to build its grammar (or dies).

This module reads its own writing back (:func:`written_actions`) for the
planner; it does not use the library's parser, so the two stay independent.

Examples
--------
>>> print(as_text([("peek", {"view": "context", "n": 3})], "tag"))
I will look at the data step by step.
<tool_call>
{"name": "peek", "arguments": {"view": "context", "n": 3}}
</tool_call>
I will continue when the results are in.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = [
    "GRAMMAR_KEYS",
    "ROOT_PROMPT_MARKER",
    "action_names",
    "as_text",
    "check_grammar",
    "render_root",
    "root_protocol",
    "split_results",
    "text_style",
    "written_actions",
]

#: How every RLM root system prompt starts (``rlm_pipeline.rlm.prompts.ROOT_PROMPT_MARKER``).
ROOT_PROMPT_MARKER = "You are an orchestrator"
#: Schema keywords llama.cpp expands into repeated grammar rules.
GRAMMAR_KEYS = ("maxLength", "minLength", "maxItems", "minItems")
_STYLES = ("tag", "bare", "fenced")
_RESULT = re.compile(r"^\[result (\d+): ([^\]\n]*)\]$", re.MULTILINE)
_DECODER = json.JSONDecoder()


def action_names(schema: Any) -> tuple[str, ...] | None:
    """The tool names an action schema (``anyOf`` of ``{"tool": {"const": …}}``) allows, or None.

    Examples
    --------
    >>> action_names({"anyOf": [{"properties": {"tool": {"const": "answer"}}}]})
    ('answer',)
    >>> action_names({"type": "object"}) is None
    True
    """
    if not isinstance(schema, dict):
        return None
    options = schema.get("anyOf") or schema.get("oneOf")
    if not isinstance(options, list):
        options = [schema]
    names = []
    for option in options:
        props = option.get("properties") if isinstance(option, dict) else None
        tool = props.get("tool") if isinstance(props, dict) else None
        if isinstance(tool, dict) and isinstance(tool.get("const"), str):
            names.append(tool["const"])
        elif isinstance(tool, dict) and isinstance(tool.get("enum"), list):
            names.extend(str(v) for v in tool["enum"])
    return tuple(names) if names else None


def root_protocol(body: dict[str, Any], tool_mode: str, schema: Any) -> str:
    """``"json"``, ``"tools"`` or ``"text"``: how to answer this root request.

    ``schema`` is the requested schema (from ``response_format`` or the prompt).
    """
    if action_names(schema) is not None:
        return "json"
    if body.get("tools") and tool_mode == "native":
        return "tools"
    return "text"


def text_style(style: str, turn: int) -> str:
    """The concrete style of a text reply: ``style``, or by turn for ``"cycle"``."""
    return _STYLES[turn % len(_STYLES)] if style == "cycle" else style


def as_text(calls: list[tuple[str, dict[str, Any]]], style: str) -> str:
    """The calls written as a small model writes them, with prose around them.

    Examples
    --------
    >>> as_text([("peek", {"view": "context", "n": 1}), ("answer", {"value": 1})], "bare")
    'Next: {"name": "peek", "arguments": {"view": "context", "n": 1}}, {"name": "answer", "arguments": {"value": 1}}\\nThat is my plan.'
    """
    if style == "bare":
        objects = [json.dumps({"name": n, "arguments": a}, ensure_ascii=False) for n, a in calls]
        return "Next: " + ", ".join(objects) + "\nThat is my plan."
    if style == "fenced":
        lines = [json.dumps({"tool": n, "arguments": a}, ensure_ascii=False) for n, a in calls]
        return "Here is what to run:\n```json\n" + "\n".join(lines) + "\n```\nDone for now."
    tags = [
        "<tool_call>\n"
        + json.dumps({"name": n, "arguments": a}, ensure_ascii=False)
        + "\n</tool_call>"
        for n, a in calls
    ]
    return (
        "I will look at the data step by step.\n"
        + "\n".join(tags)
        + "\nI will continue when the results are in."
    )


def render_root(message: dict[str, Any], protocol: str, style: str, turn: int) -> dict[str, Any]:
    """The planner's message (native tool calls) in the request's protocol."""
    calls = message.get("tool_calls") or []
    if protocol == "tools" or not calls:
        return message
    parsed: list[tuple[str, dict[str, Any]]] = []
    for call in calls:
        function = call.get("function") or {}
        arguments = function.get("arguments")
        try:
            value = json.loads(arguments) if isinstance(arguments, str) else arguments
        except json.JSONDecodeError:
            value = {"raw": arguments}
        parsed.append((str(function.get("name")), value if isinstance(value, dict) else {}))
    if protocol == "json":
        name, arguments = parsed[0]
        return {"role": "assistant", "content": json.dumps({"tool": name, "arguments": arguments})}
    return {"role": "assistant", "content": as_text(parsed, text_style(style, turn))}


def written_actions(text: str) -> list[tuple[str, dict[str, Any]]]:
    """The actions in a reply this simulator wrote (any of its styles), in order."""
    found: list[tuple[str, dict[str, Any]]] = []
    index = text.find("{")
    while index != -1:
        try:
            value, end = _DECODER.raw_decode(text, index)
        except json.JSONDecodeError:
            index = text.find("{", index + 1)
            continue
        if isinstance(value, dict):
            name = value.get("tool", value.get("name"))
            arguments = value.get("arguments")
            if isinstance(name, str) and isinstance(arguments, dict):
                found.append((name, arguments))
        index = text.find("{", end)
    return found


def split_results(text: str) -> list[str]:
    """The results in a results message (``[result N: TOOL]`` sections), in order."""
    marks = list(_RESULT.finditer(text))
    out = []
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        out.append(text[mark.end() : end].strip("\n"))
    return out


def _over(value: Any, limit: int, path: str = "") -> str | None:
    if isinstance(value, dict):
        for key, item in value.items():
            if key in GRAMMAR_KEYS and isinstance(item, int) and item > limit:
                return f"{path or '/'}: {key}={item}"
            found = _over(item, limit, f"{path}/{key}")
            if found:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _over(item, limit, f"{path}/{i}")
            if found:
                return found
    return None


def check_grammar(body: dict[str, Any], limit: int) -> str | None:
    """The llama.cpp-like error for a request whose schemas hold a limit above ``limit``.

    Examples
    --------
    >>> body = {"response_format": {"type": "json_object",
    ...         "schema": {"properties": {"q": {"type": "string", "maxLength": 2000}}}}}
    >>> check_grammar(body, 64).startswith("failed to parse grammar")
    True
    >>> check_grammar({"tools": []}, 64) is None
    True
    """
    places = {"response_format": body.get("response_format"), "tools": body.get("tools")}
    for where, value in places.items():
        found = _over(value, limit, where)
        if found:
            return (
                "failed to parse grammar: number of repetitions exceeds sane defaults, "
                f"please reduce the number of repetitions ({found}) (simulated llama.cpp)"
            )
    return None
