"""Root actions written as text: find them in a reply, never execute anything.

Models served without native function calling (llama.cpp's server for many
models, plain chat endpoints) still write their tool calls — as text.  This
module finds them in a reply so the ``text`` protocol can run them through the
same argument validation and dispatch as a native call.  It only *reads*: the
result is a tuple of ``(name, arguments JSON)`` pairs; what a name means is
decided by :func:`rlm_pipeline.rlm.tools.dispatch` (unknown names become tool
errors the model can act on).

Three forms are recognised, in the order they appear in the reply:

- ``<tool_call>{"name": …, "arguments": …}</tool_call>`` tags (Qwen, Hermes);
- fenced blocks, ```` ```json … ``` ```` (or an unlabelled fence), holding one
  action, several, or a JSON list of them;
- bare JSON objects in the prose.

An action object is ``{"name" | "tool": NAME, "arguments": {...}}`` (the
arguments may also be a JSON string, as in OpenAI's wire format), the wire form
``{"type": "function", "function": {"name": …, "arguments": …}}``, or a flat
``{"tool": NAME, <argument>: …}``.  JSON inside a double-quoted span of prose
(``he wrote "{…}"``) is quoted, not issued, and is skipped.  At most
``max_actions`` actions are returned; further ones are counted in
:attr:`TextActions.dropped` and never run.  Only the first
:data:`MAX_TEXT_CHARS` characters of a reply are read.

Examples
--------
>>> reply = 'First I look. <tool_call>{"name": "peek", "arguments": {"view": "context", "n": 3}}</tool_call>'
>>> parsed = parse_actions(reply)
>>> [(a.name, a.arguments, a.source) for a in parsed.actions]
[('peek', '{"view":"context","n":3}', 'tag')]
>>> parse_actions('He wrote "{"name": "answer", "arguments": {"value": 1}}" in a ticket').actions
()
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MAX_TEXT_ACTIONS",
    "MAX_TEXT_CHARS",
    "TextAction",
    "TextActions",
    "correction_message",
    "parse_actions",
]

#: Actions run from one reply at most; the rest are counted and refused.
MAX_TEXT_ACTIONS = 8
#: Characters of a reply that are read for actions.
MAX_TEXT_CHARS = 100_000
#: Problems kept for the correction message.
_MAX_PROBLEMS = 5

_TAG = re.compile(r"<tool_call>(.*?)(?:</tool_call>|\Z)", re.DOTALL)
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)
#: Key under which :func:`_first_wins` keeps the later values of repeated keys.
_REPEATED = "\x00repeated"


def _first_wins(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object whose repeated keys keep their first value (later ones aside).

    A small model wrote ``{"name": "partition", "arguments": {…}, "name": "result"}``:
    the first ``name`` is the tool; the later one is the new view's name, misplaced
    out of the arguments (:func:`_action` puts it back when the arguments lack one).
    Only an outermost object keeps the later values, under :data:`_REPEATED`: the
    decoder builds inner objects first, and their parent drops the marker.
    """
    result: dict[str, Any] = {}
    for key, value in pairs:
        if isinstance(value, dict):
            value.pop(_REPEATED, None)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    item.pop(_REPEATED, None)
        if key in result:
            result.setdefault(_REPEATED, {}).setdefault(key, value)
        else:
            result[key] = value
    return result


_DECODER = json.JSONDecoder(object_pairs_hook=_first_wins)
#: Quotes around an action that make it quoted text, not an action.
_OPENING_QUOTES = frozenset("\"'\u201c\u2018")
_CLOSING_QUOTES = frozenset("\"'\u201d\u2019")
#: Openings that fail to decode before a reply's remaining text is left unread.
_MAX_BROKEN = 64


@dataclass(frozen=True)
class TextAction:
    """One action found in a reply.

    Parameters
    ----------
    name
        The tool name as written (may name no tool: dispatch refuses it).
    arguments
        The arguments object as compact JSON text.
    source
        ``"tag"``, ``"fenced"`` or ``"json"`` (a bare object in the prose).
    """

    name: str
    arguments: str
    source: str


@dataclass(frozen=True)
class TextActions:
    """What :func:`parse_actions` found.

    Parameters
    ----------
    actions
        The actions in reply order, at most ``max_actions``.
    dropped
        Well-formed actions beyond the cap (not run).
    problems
        Short descriptions of what looked like an action but was not one
        (broken JSON in a tag, an object without a tool name, …).
    """

    actions: tuple[TextAction, ...]
    dropped: int
    problems: tuple[str, ...]


def parse_actions(text: str | None, *, max_actions: int = MAX_TEXT_ACTIONS) -> TextActions:
    """The actions written in ``text``, in order, at most ``max_actions``.

    Parameters
    ----------
    text
        The reply's content (None or empty: no actions).
    max_actions
        How many actions to return; later well-formed ones are only counted.

    Examples
    --------
    >>> text = 'Plan: {"name": "filter", "arguments": {"view": "context", "where": "x > 1", "name": "s"}}'
    >>> parse_actions(text).actions[0].name
    'filter'
    >>> parse_actions("<tool_call>{broken</tool_call>").problems
    ('<tool_call> #1: not valid JSON (Expecting property name enclosed in double quotes at char 1)',)
    """
    found: list[TextAction] = []
    problems: list[str] = []
    dropped = 0
    if not text:
        return TextActions((), 0, ())
    if len(text) > MAX_TEXT_CHARS:
        problems.append(
            f"reply is {len(text):,} characters; only the first {MAX_TEXT_CHARS:,} were read"
        )
        text = text[:MAX_TEXT_CHARS]
    for action in _scan(text, problems):
        if len(found) < max_actions:
            found.append(action)
        else:
            dropped += 1
    return TextActions(tuple(found), dropped, tuple(problems[:_MAX_PROBLEMS]))


def correction_message(parsed: TextActions, tool_names: Sequence[str]) -> str:
    """What to tell a model whose reply held no action that could run.

    Names what was wrong (from ``parsed.problems``) and shows the exact syntax.

    Examples
    --------
    >>> print(correction_message(TextActions((), 0, ()), ["peek", "answer"]).splitlines()[0])
    Your reply held no action, so nothing was run.
    """
    lines = ["Your reply held no action, so nothing was run."]
    if parsed.problems:
        lines.append("Problems: " + "; ".join(parsed.problems) + ".")
    lines += [
        "Write each action as one JSON object on its own line, exactly like this:",
        '{"name": "peek", "arguments": {"view": "context", "n": 5}}',
        f"Tools: {', '.join(tool_names)}.",
        'The run ends only with {"name": "answer", "arguments": {"value": ...}}.',
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------- scanning


def _scan(text: str, problems: list[str]) -> Iterator[TextAction]:
    """Every action in ``text``, in order: tags and fences first claim their spans."""
    spans: list[tuple[int, int, str, str]] = []  # start, end, kind, inner text
    for match in _TAG.finditer(text):
        spans.append((match.start(), match.end(), "tag", match.group(1)))
    for match in _FENCE.finditer(text):
        if any(start <= match.start() < end for start, end, _, _ in spans):
            continue
        label = match.group(1).lower()
        if label in ("", "json", "json5", "javascript", "js", "tool_call", "tool"):
            spans.append((match.start(), match.end(), "fenced", match.group(2)))
    spans.sort()
    position = 0
    tags = fences = 0
    for start, end, kind, inner in spans:
        if start < position:  # a fence inside a tag (or the reverse): the outer one counts
            continue
        yield from _bare(text[position:start], problems)
        if kind == "tag":
            tags += 1
            yield from _tagged(inner, tags, problems)
        else:
            fences += 1
            yield from _fenced(inner, fences, problems)
        position = end
    yield from _bare(text[position:], problems)


def _tagged(inner: str, number: int, problems: list[str]) -> Iterator[TextAction]:
    """The action in one ``<tool_call>`` tag (one object, or a list of them)."""
    body = inner.strip()
    try:
        value = _DECODER.decode(body)
    except json.JSONDecodeError as exc:
        problems.append(f"<tool_call> #{number}: not valid JSON ({exc.msg} at char {exc.pos})")
        return
    except RecursionError:
        problems.append(f"<tool_call> #{number}: JSON nested too deeply")
        return
    items = value if isinstance(value, list) else [value]
    for item in items:
        action = _action(item, "tag", f"<tool_call> #{number}", problems)
        if action is not None:
            yield action


def _fenced(inner: str, number: int, problems: list[str]) -> Iterator[TextAction]:
    """The actions in one fenced block (objects, or lists of them, anywhere in it)."""
    count = 0
    for value, _, _ in _objects(inner):
        action = _action(value, "fenced", f"code block #{number}", problems)
        if action is not None:
            count += 1
            yield action
    if count == 0 and inner.strip() and "{" in inner:
        problems.append(f'code block #{number}: no action object (need "name" and "arguments")')


def _bare(prose: str, problems: list[str]) -> Iterator[TextAction]:
    """Bare action objects in prose; objects that are not actions are ignored.

    An action written between quotes (``"{…}"``, ``\u201c{…}\u201d``) is quoted,
    not issued: it is not run, and a problem says so.
    """
    for value, start, end in _objects(prose):
        if not (
            isinstance(value, dict) and ("name" in value or "tool" in value or "function" in value)
        ):
            continue
        if _quoted(prose, start, end):
            name = value.get("tool", value.get("name"))
            label = f"`{name[:60]}` " if isinstance(name, str) else ""
            problems.append(
                f"the {label}action written inside quotes was not run (quoted text is not an action)"
            )
            continue
        action = _action(value, "json", "JSON object", problems)
        if action is not None:
            yield action


def _quoted(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` stands between an opening and a closing quote."""
    before = text[:start].rstrip()[-1:]
    after = text[end:].lstrip()[:1]
    return before in _OPENING_QUOTES and after in _CLOSING_QUOTES and before != ""


def _objects(text: str) -> Iterator[tuple[Any, int, int]]:
    """Top-level JSON objects in ``text`` with their start and end offsets.

    After :data:`_MAX_BROKEN` openings that do not decode, the rest is not read
    (each failed decode costs time in proportion to the text read so far).
    """
    index = 0
    broken = 0
    while True:
        index = text.find("{", index)
        if index < 0:
            return
        try:
            value, end = _DECODER.raw_decode(text, index)
        except (json.JSONDecodeError, RecursionError):
            broken += 1
            if broken > _MAX_BROKEN:
                return
            index += 1
            continue
        yield value, index, end
        index = end


def _action(value: Any, source: str, where: str, problems: list[str]) -> TextAction | None:
    """``value`` as an action, or None with a problem noted."""
    if not isinstance(value, dict):
        problems.append(f"{where}: an action must be a JSON object")
        return None
    repeated = value.pop(_REPEATED, {})
    function = value.get("function")
    if isinstance(function, dict) and "name" in function:  # OpenAI's wire form
        value = function
    name = value["tool"] if "tool" in value else value.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.append(f'{where}: no tool name (write "name": "<tool>")')
        return None
    if "arguments" in value:
        arguments = value["arguments"]
    elif "parameters" in value:
        arguments = value["parameters"]
    else:  # flat form: the other keys are the arguments
        arguments = {k: v for k, v in value.items() if k not in ("tool", "type")}
        if "tool" not in value:  # {"name": TOOL, ...}: "name" named the tool
            arguments.pop("name", None)
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except (json.JSONDecodeError, RecursionError):
            problems.append(f"{where} ({name[:60]}): arguments are a string that is not JSON")
            return None
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        problems.append(f"{where} ({name[:60]}): arguments must be a JSON object")
        return None
    if "name" in repeated and "name" not in arguments:
        arguments = {**arguments, "name": repeated["name"]}
    text = json.dumps(arguments, separators=(",", ":"), ensure_ascii=False)
    return TextAction(name=name.strip(), arguments=text, source=source)
