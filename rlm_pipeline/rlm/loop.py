"""The root loop: prompt → actions → dispatch → bounded results → … → ``answer``.

One loop runs per RLM level: the root at depth 0 and one per partition for
``recurse`` at deeper levels.  Only the ``answer`` action ends a loop with an
answer; prose is never read as one.  The actions travel by one of three
protocols (:mod:`rlm_pipeline.rlm.protocol`):

- ``tools``: native tool calls (at most ``MAX_TEXT_ACTIONS`` run per reply, the
  rest are left out and counted in a note); a reply without any gets a nudge;
- ``json``: one ``{"tool", "arguments"}`` object per turn through
  ``response_format``; results come back as a user message;
- ``text``: actions written in the reply (:func:`~rlm_pipeline.rlm.actions.parse_actions`),
  several per reply run in order up to a cap; a reply with none gets a
  correction message.

``auto`` starts with the protocol remembered for the endpoint and model (else
``tools``); a ``tools`` reply whose text holds actions runs them at once and
switches to ``text``; a server that refuses ``tools`` / ``tool_choice`` switches
to ``json``.  Each action is validated like a native call.  When the steps are
used up the model is asked once more with only ``answer`` allowed (``tool_choice``
naming it, an answer-only schema, or an answer-only instruction); other actions
in that turn are not run, and a model that still does not answer ends the loop
without an answer.

Guards for small models (all seen with Qwen2.5-Coder-0.5B as root):

- an ``answer`` written before the model has seen any result from the data is
  refused once per loop, and so is one after only ``peek`` ran (a 0.5B root in
  the json protocol answered with a peeked row);
- an ``answer`` written in the same reply as data actions is refused on every
  turn (but the forced final one): the actions run, their results come back,
  and the model is told to answer after reading them (exact repeats of
  actions that ran in an earlier turn do not count: their results were read);
- the tools are listed in the usual plan's order (``peek, filter, classify,
  sql, answer`` first): a small model writes the list out as its plan;
- the same failing call twice gets a targeted hint, and again each time it is
  repeated; the same successful data action repeated with the same arguments
  is not run again (the model is pointed to the next step), unless a view it
  names was made again since (then its result may differ);
- an action still holding a placeholder of the plan (``TOPIC``, ``USER1``, …) is
  refused with what to write instead, the action filled from the question when
  it can be (the plan holds no runnable example: a 0.5B root replayed the earlier
  worked example's label and number; then it copied ``TOPIC`` until shown the
  filled action); the next-step hint of a refused repeat says to filter first,
  written out, when the question names users or a month and nothing narrowed
  the rows yet;
- a ``peek`` asking for more rows than it shows is cut to :data:`MAX_PEEK_ROWS`
  with a note (a small model asked for every row of the table, was refused and
  asked again, turn after turn);
- a tool error naming a view that a failed call of the loop was meant to make
  says so;
- after :data:`STALL_TURNS` turns in a row that tried nothing new (only exact
  repeats of earlier actions, or no action), the loop asks for the answer at
  once (the forced turn, with the last successful result restated) instead of
  spending its remaining steps: a 0.5B root re-sent the same whole plan turn
  after turn;
- ``answer {"view": NAME}`` answers with that view's value (one cell, one row, or
  up to :data:`MAX_CITED_ROWS` rows), so a small model need not retype a number;
  it is taken even beside the actions that made the view;
- a number answered (or held in an object or list answered) that appears in
  none of the loop's results is refused
  (at most :data:`MAX_UNSEEN_REFUSALS` times per loop): a 0.5B root answered
  the worked example's number; a number only the instructions hold is refused
  on every turn, the forced one included;
- with less than :data:`ANSWER_RESERVE` of ``timeout_s`` left, the root loop
  asks for the answer (sub-runs of ``recurse`` stop unanswered: the reserve is
  the root's) (a 0.5B root on 2 busy cores ran out of time mid-plan, no answer);
- every root turn sends ``max_tokens`` (``RLM(root_max_tokens=...)``), so a
  rambling reply costs a bounded time.
Budget errors and failures of the model's server propagate to the caller
(:meth:`rlm_pipeline.RLM.run` turns the latter into a ``RootModelError``
carrying the best partial result).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

from rlm_pipeline.errors import LLMError, LLMResponseParseError
from rlm_pipeline.llm.cache import endpoint_id
from rlm_pipeline.llm.tokens import estimate_tokens
from rlm_pipeline.llm.usage import Usage
from rlm_pipeline.rlm.actions import MAX_TEXT_ACTIONS, correction_message, parse_actions
from rlm_pipeline.rlm.conversation import Conversation
from rlm_pipeline.rlm.limits import wire_schema
from rlm_pipeline.rlm.prompts import (
    EARLY_ANSWER_MESSAGE,
    PEEK_ONLY_MESSAGE,
    PROMPT_VERSION,
    REPEAT_CALL_MESSAGE,
    SAME_REPLY_ANSWER_MESSAGE,
    ViewInfo,
    final_answer_message,
    first_message,
    nudge_message,
    results_message,
    system_prompt,
)
from rlm_pipeline.rlm.protocol import (
    ACTION_SCHEMA_NAME,
    EXAMPLES,
    Protocol,
    action_schema,
    action_text,
    example,
    fill_placeholders,
    in_plan_order,
    is_tools_rejection,
    known_protocol,
    next_step_hint,
    placeholder_message,
    placeholders_in,
    remember_protocol,
    repeat_hint,
    tool_lines,
)
from rlm_pipeline.rlm.render import bound, cut, jsonable
from rlm_pipeline.rlm.scope import Scope
from rlm_pipeline.rlm.steps import model_details, run_models
from rlm_pipeline.rlm.tools import (
    MAX_PEEK_ROWS,
    MODEL_TOOLS,
    TOOL_NAMES,
    TOOLS,
    ToolOutcome,
    dispatch,
)
from rlm_pipeline.rlm.views import check_view

__all__ = [
    "ANSWER_RESERVE",
    "ANSWER_SCHEMA",
    "DEFAULT_ROOT_MAX_TOKENS",
    "FORCE_ANSWER_CHOICE",
    "MAX_REPLY_CHARS",
    "PROTOCOL_MODE_KIND",
    "ROOT_PROMPT_BUDGET_TOKENS",
    "STALL_TURNS",
    "LoopResult",
    "describe_context",
    "run_loop",
]

logger = logging.getLogger(__name__)

#: After this many turns in a row that tried no action not tried before (only exact
#: repeats, or no action at all), the loop stops and asks for the answer (forced turn).
STALL_TURNS = 3
#: Share of ``timeout_s`` kept for the forced answer turn: when less is left, the loop
#: stops planning and asks for the answer.
ANSWER_RESERVE = 0.25
#: ``max_tokens`` of every root turn unless ``RLM(root_max_tokens=...)`` says otherwise.
DEFAULT_ROOT_MAX_TOKENS = 1024
#: The conversation is compacted to stay under this many (estimated) prompt tokens.
ROOT_PROMPT_BUDGET_TOKENS = 6000


def _without_parameter_texts(tool: dict[str, Any]) -> dict[str, Any]:
    """``tool`` with its parameters' descriptions and ``additionalProperties`` left out
    (the system prompt says once what ``view`` and ``name`` are; unknown arguments are
    refused by the tools' own validators): ~290 of the root prompt's tokens."""
    function = dict(tool["function"])
    parameters = wire_schema(function["parameters"], descriptions=False)
    parameters.pop("additionalProperties", None)  # unknown arguments: refused after parsing
    function["parameters"] = parameters
    return {**tool, "function": function}


#: The tools as offered to the model: the usual plan's first (see protocol.PLAN_ORDER).
_OFFERED = [_without_parameter_texts(t) for t in in_plan_order(TOOLS)]
_TOOLS_TOKENS = estimate_tokens(json.dumps(_OFFERED, separators=(",", ":")))
_UNKNOWN_VIEW = re.compile(r"unknown view '([^']{1,200})'")
#: An `answer` may name a view of at most this many rows instead of a value.
MAX_CITED_ROWS = 20
#: A number as written in a result (not the digits inside a word such as ``int64``).
_NUMBER = re.compile(r"(?<![A-Za-z_\d])-?\d[\d,]*(?:\.\d+)?")
#: How many times per loop an `answer` whose number is in none of the results is refused
#: (a 0.5B root answered the worked example's number; after that the answer is taken).
MAX_UNSEEN_REFUSALS = 2
UNSEEN_VALUE_MESSAGE = (
    "not accepted: {value} appears in none of the results you were shown, so it was not "
    "read from this table. Answer with the value your results show (for a count: the n "
    "of your sql result)."
)
#: Numbers of at least this many digits in the system prompt are "prompt numbers": an
#: answer that is one of them and appears in no result nor in the first message is never
#: taken (a 0.5B root answered the worked example's number, forced turn included).
_PROMPT_NUMBER_DIGITS = 2
PROMPT_VALUE_MESSAGE = (
    "not accepted: {value} is a number from the instructions, not from this table (it is "
    "in none of your results). Answer with the value your results show."
)
#: Tool choice of the one extra turn after the last step: the `answer` function, named.
#: The whole tool list is still sent (so the conversation's earlier calls stay valid);
#: a model or server that ignores the choice and calls another tool is refused, since
#: only an `answer` call is taken as the answer.
FORCE_ANSWER_CHOICE: dict[str, Any] = {"type": "function", "function": {"name": "answer"}}
#: The json protocol's schemas: any action, and only `answer` (the forced final turn).
ACTION_SCHEMA = action_schema(TOOL_NAMES)
ANSWER_SCHEMA = action_schema(["answer"])
_ACTION_TOKENS = estimate_tokens(json.dumps(ACTION_SCHEMA, separators=(",", ":")))
#: A reply is kept in the conversation cut to this many characters (a reply with 1,000
#: actions must not make every later prompt huge).
MAX_REPLY_CHARS = 4000
#: The ``kind`` under which the protocol is remembered in the response cache file.
PROTOCOL_MODE_KIND = "rlm_protocol"


@dataclass(frozen=True)
class LoopResult:
    """How one loop ended.

    ``stop_reason`` is ``"answer"`` (the model called `answer`), ``"forced_answer"``
    (it answered when asked after the last step) or ``"max_steps"`` (no answer).
    ``protocol`` is the action protocol the loop ended in.
    """

    answered: bool
    value: Any
    explanation: str | None
    steps: int
    stop_reason: str
    protocol: str = "tools"


@dataclass
class _Call:
    """One action to run: from a native tool call or read from text / JSON."""

    name: str
    arguments: str
    call_id: str = ""


@dataclass
class _Channel:
    """The protocol state of one loop, and its guards."""

    requested: str
    protocol: Protocol
    compact: bool | None  # None: chosen by the protocol ("auto" prompt)
    endpoint: str
    model: str
    cache: Any
    #: A result from the data has come back to the model (in an earlier reply).
    data_seen: bool = False
    #: A data action ran in the current reply (seen from the next reply on).
    data_ran: bool = False
    early_answer_refused: bool = False
    #: A data action other than `peek` ran without error (the model looked past a sample).
    beyond_peek: bool = False
    #: A `peek` ran without error.
    peeked: bool = False
    peek_only_refused: bool = False
    failures: dict[tuple[str, str], int] = field(default_factory=dict)
    #: Data actions that ran without error: (name, canonical arguments) -> step.
    done: dict[tuple[str, str], int] = field(default_factory=dict)
    #: Names of views that failed calls were meant to make.
    unmade: set[str] = field(default_factory=set)
    #: Numbers that appeared in the results the model was shown.
    numbers: set[str] = field(default_factory=set)
    #: Numbers only the instructions hold (system prompt and tool texts, not the first
    #: message): never taken as an answer unless a result shows them too.
    prompt_numbers: set[str] = field(default_factory=set)
    #: The question (its words are never counted as placeholders) and the text column.
    question: str = ""
    text_column: str | None = None
    #: How many times each view was (re)made by a successful call of this loop.
    generations: dict[str, int] = field(default_factory=dict)
    #: For each data action in ``done``: the generations of the views it names, after it ran.
    done_views: dict[tuple[str, str], tuple[tuple[str, int], ...]] = field(default_factory=dict)
    unseen_refused: int = 0
    #: Every action tried so far, as (name, canonical arguments).
    tried: set[tuple[str, str]] = field(default_factory=set)
    #: The current turn tried an action not tried before.
    progressed: bool = False

    def prompt(self) -> str:
        compact = self.protocol != "tools" if self.compact is None else self.compact
        return system_prompt(
            self.protocol, compact=compact, tool_lines=tool_lines(), example=example(self.protocol)
        )

    def switch(self, protocol: Protocol, conv: Conversation) -> None:
        """Go on in ``protocol``, remembered for this endpoint and model."""
        logger.info(
            "%s (%s): root protocol %s -> %s", self.endpoint, self.model, self.protocol, protocol
        )
        self.protocol = protocol
        remember_protocol(self.endpoint, self.model, protocol)
        if self.cache is not None:
            self.cache.put_mode(PROTOCOL_MODE_KIND, self.endpoint, self.model, protocol)
        conv.head[0] = {"role": "system", "content": self.prompt()}
        _as_text_history(conv, protocol)


def _channel(scope: Scope, client: Any) -> _Channel:
    state = scope.state
    requested = state.protocol
    config = client.config
    endpoint = endpoint_id(config.resolved_base_url())
    cache = getattr(client, "cache", None)
    protocol: Protocol = "tools"
    if requested in ("tools", "json", "text"):
        protocol = requested  # type: ignore[assignment]
    else:
        found: str | None = known_protocol(endpoint, config.model)
        if found is None and cache is not None:
            found = cache.get_mode(PROTOCOL_MODE_KIND, endpoint, config.model)
            if found in ("tools", "json", "text"):
                remember_protocol(endpoint, config.model, found)  # type: ignore[arg-type]
        if found in ("tools", "json", "text"):
            protocol = found  # type: ignore[assignment]
    compact = None if state.prompt == "auto" else state.prompt == "compact"
    return _Channel(requested, protocol, compact, endpoint, config.model, cache)


async def describe_context(scope: Scope) -> ViewInfo:
    """Row count, schema and a few sample values of view ``context`` (never the data)."""
    engine = scope.engine
    rows, schema, head = await asyncio.gather(
        asyncio.to_thread(engine.count, "context"),
        asyncio.to_thread(engine.schema, "context"),
        asyncio.to_thread(engine.head, "context", 3, None),
    )
    samples = {name: head.column(name).to_pylist() for name in head.column_names}
    return ViewInfo("context", int(rows), schema, samples)


async def run_loop(scope: Scope, question: str) -> LoopResult:
    """Run one RLM level over ``scope`` until it answers or runs out of steps."""
    state = scope.state
    client = state.root_client if scope.depth == 0 else scope.client
    info = await describe_context(scope)
    first = first_message(
        question,
        [info],
        text_column=scope.text_column,
        depth=scope.depth,
        max_depth=state.max_depth,
        max_steps=state.max_steps,
    )
    channel = _channel(scope, client)
    channel.question = question
    channel.text_column = scope.text_column
    channel.prompt_numbers = _prompt_numbers(first)
    conv = Conversation(channel.prompt(), first, budget_tokens=ROOT_PROMPT_BUDGET_TOKENS)
    state.steps.record(
        depth=scope.depth,
        path=scope.path,
        kind="run_start",
        rows_in=info.rows,
        extra={
            "question": cut(question, 2000),
            "engine": scope.engine.name,
            "views": {info.name: {"rows": info.rows, "columns": info.schema}},
            "prompt_version": PROMPT_VERSION,
            "max_steps": state.max_steps,
            "max_depth": state.max_depth,
            "protocol": channel.requested,
            "start_protocol": channel.protocol,
            "models": run_models(state.root_client.config, state.sub_llm),
        },
    )
    used = state.max_steps
    stalled = 0
    for step in range(1, state.max_steps + 1):
        if scope.depth == 0:
            state.root_steps = step
        if (step > 1 or scope.depth > 0) and _out_of_time(state):
            used = step - 1
            if scope.depth > 0:  # the reserve is the root's: a sub-run stops unanswered
                _record_error(scope, step, "time: the answer reserve of timeout_s is the root's")
                return LoopResult(False, None, None, used, "max_steps", channel.protocol)
            _record_error(
                scope,
                step,
                "time: less than the answer reserve of timeout_s is left; asking for the "
                "answer now",
            )
            break
        channel.progressed = False
        outcome = await _turn(scope, client, conv, channel, step, forced=False)
        if outcome is not None:
            return LoopResult(
                True, outcome.value, outcome.explanation, step, "answer", channel.protocol
            )
        stalled = 0 if channel.progressed else stalled + 1
        if stalled >= STALL_TURNS and step < state.max_steps:
            used = step
            _record_error(
                scope,
                step,
                f"stalled: {stalled} turns in a row tried no new action; asking for the answer now",
            )
            break
    syntax = None if channel.protocol == "tools" else _answer_syntax(channel.protocol)
    last = cut(str(state.partial), 600) if scope.depth == 0 and state.partial else None
    conv.add({"role": "user", "content": final_answer_message(used, syntax, last)})
    outcome = await _turn(scope, client, conv, channel, used + 1, forced=True)
    if outcome is not None:
        return LoopResult(
            True,
            outcome.value,
            outcome.explanation,
            used,
            "forced_answer",
            channel.protocol,
        )
    state.steps.record(
        depth=scope.depth,
        path=scope.path,
        kind="error",
        result_summary=f"no answer after {used} steps",
        error="max_steps: the model never called answer",
    )
    return LoopResult(False, None, None, used, "max_steps", channel.protocol)


async def _turn(
    scope: Scope,
    client: Any,
    conv: Conversation,
    channel: _Channel,
    step: int,
    *,
    forced: bool,
) -> ToolOutcome | None:
    """One model call and its actions; returns the `answer` outcome if there was one."""
    started = time.monotonic()
    protocol = channel.protocol
    switched: str | None = None
    try:
        if protocol == "tools":
            reply = await client.chat(
                conv.messages_for_call(_TOOLS_TOKENS),
                tools=_OFFERED,
                tool_choice=FORCE_ANSWER_CHOICE if forced else "auto",
                max_tokens=scope.state.root_max_tokens,
                prompt_version=PROMPT_VERSION,
            )
        elif protocol == "json":
            return await _json_turn(scope, client, conv, channel, step, forced=forced)
        else:
            reply = await client.chat(
                conv.messages_for_call(0),
                max_tokens=scope.state.root_max_tokens,
                prompt_version=PROMPT_VERSION,
            )
    except LLMError as exc:
        if (
            protocol == "tools"
            and channel.requested == "auto"
            and is_tools_rejection(exc.status, str(exc))
        ):
            channel.switch("json", conv)
            reason = f"server refused tools: {cut(str(exc), 300)}"
            return await _json_turn(
                scope, client, conv, channel, step, forced=forced, switched=reason
            )
        raise
    calls: list[_Call] = [_Call(c.name, c.arguments, c.id) for c in reply.tool_calls]
    parsed = None
    if protocol == "text" or (not calls and channel.requested == "auto"):
        parsed = parse_actions(reply.content)
        if protocol == "tools" and parsed.actions:
            channel.switch("text", conv)  # run them now: no wasted turn
            switched = "text"
        calls = [_Call(a.name, a.arguments) for a in parsed.actions] if parsed.actions else []
    _record_model(scope, reply, step, started, len(calls), forced, protocol, switched, calls=calls)
    if not calls:
        if channel.protocol == "tools":
            text, error = nudge_message(), "reply had no tool call (nudged to use tools)"
        else:
            text = correction_message(parsed or parse_actions(reply.content), TOOL_NAMES)
            error = "reply held no valid action (sent a correction)"
        conv.add(
            {"role": "assistant", "content": cut(reply.content or "", MAX_REPLY_CHARS)},
            {"role": "user", "content": text},
        )
        _record_error(scope, step, error, summary=text)
        return None
    if channel.protocol == "tools":
        return await _run_native(scope, conv, channel, calls, reply.content, step, forced)
    conv.add({"role": "assistant", "content": cut(reply.content or "", MAX_REPLY_CHARS)})
    dropped = parsed.dropped if parsed is not None else 0
    notes = list(parsed.problems) if parsed is not None else []
    return await _run_as_text(scope, conv, channel, calls, step, forced, dropped, notes)


async def _json_turn(
    scope: Scope,
    client: Any,
    conv: Conversation,
    channel: _Channel,
    step: int,
    *,
    forced: bool,
    switched: str | None = None,
) -> ToolOutcome | None:
    """One turn of the json protocol: one action object through ``response_format``.

    ``switched`` is the reason when this turn follows a switch from ``tools``.
    """
    started = time.monotonic()
    schema = ANSWER_SCHEMA if forced else ACTION_SCHEMA
    messages = conv.messages_for_call(_ACTION_TOKENS)
    try:
        value, reply = await client.json(
            messages,
            schema,
            name=ACTION_SCHEMA_NAME,
            max_tokens=scope.state.root_max_tokens,
            prompt_version=PROMPT_VERSION,
            accept=_names_a_tool,  # a reply without a tool name is never cached
        )
    except LLMResponseParseError as exc:
        _record_model(
            scope, None, step, started, 0, forced, "json", None, raw=exc.raw, switched_from=switched
        )
        text = _json_correction("the reply was not one JSON object", forced)
        conv.add(
            {"role": "assistant", "content": cut(exc.raw, MAX_REPLY_CHARS)},
            {"role": "user", "content": text},
        )
        _record_error(scope, step, "reply held no JSON action (sent a correction)", summary=text)
        return None
    name = value.get("tool", value.get("name"))
    arguments = value.get("arguments", {})
    if isinstance(arguments, str):
        raw_args = arguments
    else:
        raw_args = json.dumps(arguments, ensure_ascii=False)
    _record_model(
        scope,
        reply,
        step,
        started,
        1 if isinstance(name, str) else 0,
        forced,
        "json",
        None,
        switched_from=switched,
        calls=[_Call(name, raw_args)] if isinstance(name, str) and name else [],
    )
    if not isinstance(name, str) or not name:
        text = _json_correction('the object had no "tool" name', forced)
        conv.add(
            {"role": "assistant", "content": cut(reply.content or "", MAX_REPLY_CHARS)},
            {"role": "user", "content": text},
        )
        _record_error(scope, step, "reply held no JSON action (sent a correction)", summary=text)
        return None
    conv.add({"role": "assistant", "content": cut(reply.content or "", MAX_REPLY_CHARS)})
    return await _run_as_text(scope, conv, channel, [_Call(name, raw_args)], step, forced, 0, [])


def _names_a_tool(value: dict[str, Any]) -> bool:
    """Whether a json-protocol action object names a tool (else it is not cached)."""
    name = value.get("tool", value.get("name"))
    return isinstance(name, str) and bool(name)


def _json_correction(problem: str, forced: bool) -> str:
    shown = _answer_syntax("json") if forced else action_text("json", "peek", EXAMPLES["peek"])
    return f"Nothing was run: {problem}. Reply with exactly one JSON object, for example:\n{shown}"


async def _run_native(
    scope: Scope,
    conv: Conversation,
    channel: _Channel,
    calls: list[_Call],
    content: str | None,
    step: int,
    forced: bool,
) -> ToolOutcome | None:
    """Run native tool calls, at most :data:`MAX_TEXT_ACTIONS` of them.

    Calls beyond the cap are left out of the conversation (so the prompt stays
    bounded) and the last result says how many were not run.
    """
    extra = len(calls) - MAX_TEXT_ACTIONS
    calls = calls[:MAX_TEXT_ACTIONS]
    conv.add(
        {
            "role": "assistant",
            "content": content,
            "tool_calls": [
                {
                    "id": call.call_id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in calls
            ],
        }
    )
    final: ToolOutcome | None = None
    texts: list[str] = []
    for call in calls:
        if final is not None:
            texts.append("ignored: run ended")
            continue
        outcome = await _run_call(
            scope, channel, call, step, forced, alongside=_alongside(channel, calls, step)
        )
        texts.append(outcome.text)
        if outcome.final:
            final = outcome
    if extra > 0:
        note = _over_cap(extra)
        texts[-1] = f"{texts[-1]}\nnote: {note}"
        _record_error(scope, step, note)
    for call, text in zip(calls, texts, strict=True):
        conv.extend_last({"role": "tool", "tool_call_id": call.call_id, "content": text})
    channel.data_seen = channel.data_seen or channel.data_ran
    return final


def _over_cap(extra: int) -> str:
    return (
        f"{extra} more actions were not run (at most {MAX_TEXT_ACTIONS} run per reply); "
        "send them again if still needed"
    )


async def _run_as_text(
    scope: Scope,
    conv: Conversation,
    channel: _Channel,
    calls: list[_Call],
    step: int,
    forced: bool,
    dropped: int,
    notes: list[str],
) -> ToolOutcome | None:
    """Run actions read from text or JSON; their results go back as one user message."""
    results: list[tuple[str, str]] = []
    final: ToolOutcome | None = None
    for call in calls:
        if final is not None:
            results.append((call.name, "ignored: run ended"))
            continue
        outcome = await _run_call(
            scope, channel, call, step, forced, alongside=_alongside(channel, calls, step)
        )
        results.append((call.name, outcome.text))
        if outcome.final:
            final = outcome
    if dropped:
        message = _over_cap(dropped)
        notes = [message, *notes]
        _record_error(scope, step, message)
    conv.extend_last({"role": "user", "content": bound(results_message(results, notes), 12000)})
    channel.data_seen = channel.data_seen or channel.data_ran
    return final


async def _cite(scope: Scope, call: _Call) -> tuple[_Call, bool, ToolOutcome | None]:
    """An `answer` naming a view instead of a value gets that view's value.

    ``answer {"view": "result"}`` (like the reference RLM's ``FINAL_VAR``): one row
    with one column gives that value, one row an object, up to
    :data:`MAX_CITED_ROWS` rows a list of objects.  The model never retypes a number
    (a 0.5B root copied the worked example's instead).  Returns the call to run,
    whether it was cited, and an error outcome if the view cannot be read.
    """
    if call.name != "answer":
        return call, False, None
    try:
        args = json.loads(call.arguments)
    except (json.JSONDecodeError, RecursionError):
        return call, False, None
    if not isinstance(args, dict) or "value" in args or not isinstance(args.get("view"), str):
        return call, False, None
    view = args["view"]
    try:
        check_view(scope, view)  # the model's views only: never `_rlm` scratch views
        rows = int(await asyncio.to_thread(scope.engine.count, view))
        head = await asyncio.to_thread(scope.engine.head, view, MAX_CITED_ROWS, None)
    except Exception as exc:  # noqa: BLE001 - a model's bad view name is a tool error
        message = f"cannot answer from view `{cut(view, 60)}`: {cut(str(exc), 300)}"
        return call, False, ToolOutcome(text=f"error: {message}", error=message)
    if rows > MAX_CITED_ROWS or rows == 0:
        message = (
            f"view `{cut(view, 60)}` has {rows} rows; answer from a view of 1 to "
            f"{MAX_CITED_ROWS} rows (aggregate it with sql first) or give value yourself"
        )
        return call, False, ToolOutcome(text=f"error: {message}", error=message)
    records = [{k: jsonable(v) for k, v in r.items()} for r in head.to_pylist()]
    value: Any = records
    if rows == 1:
        value = next(iter(records[0].values())) if len(records[0]) == 1 else records[0]
    explanation = args.get("explanation")
    cited = {
        "value": value,
        "explanation": explanation if isinstance(explanation, str) else f"view `{view}`",
    }
    return _Call(call.name, json.dumps(cited, ensure_ascii=False), call.call_id), True, None


def _unseen_number(channel: _Channel, raw: str) -> str | None:
    """A number of the answer that appears in no result the model was shown (else None).

    The value itself, or a number inside an object or list value (a 0.5B root in the
    json protocol answered ``{"count": 120, ...}`` before reading any data).
    """
    try:
        args = json.loads(raw)
    except (json.JSONDecodeError, RecursionError):
        return None
    value = args.get("value") if isinstance(args, dict) else None
    for text in _numbers_of(value, _MAX_ANSWER_NUMBERS):
        if _number_key(text) not in channel.numbers:
            return text
    return None


#: At most this many numbers of one answer value are checked against the results.
_MAX_ANSWER_NUMBERS = 50


def _numbers_of(value: Any, limit: int) -> list[str]:
    """The numbers a JSON value holds (numbers and number strings, in objects and lists)."""
    found: list[str] = []
    stack = [value]
    while stack and len(found) < limit:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, list):
            stack.extend(reversed(item))
        elif not isinstance(item, bool) and isinstance(item, int | float | str):
            text = str(item).strip()
            if _NUMBER.fullmatch(text):
                found.append(text)
    return found


def _answered_number(raw: str) -> str | None:
    """The number an `answer` call's value is (as :func:`_number_key`), if it is one."""
    try:
        args = json.loads(raw)
    except (json.JSONDecodeError, RecursionError):
        return None
    value = args.get("value") if isinstance(args, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    text = str(value).strip()
    return _number_key(text) if _NUMBER.fullmatch(text) else None


@functools.cache
def _instruction_numbers() -> frozenset[str]:
    """Numbers (of :data:`_PROMPT_NUMBER_DIGITS` digits or more) in every system prompt
    variant and tool description the root can be shown (not the schemas' limits)."""
    texts = list(tool_lines())
    for protocol in ("tools", "json", "text"):
        for compact in (True, False):
            texts.append(
                system_prompt(
                    protocol, compact=compact, tool_lines=tool_lines(), example=example(protocol)
                )
            )
    found = (_number_key(m) for text in texts for m in _NUMBER.findall(text))
    return frozenset(n for n in found if len(n.lstrip("-").split(".")[0]) >= _PROMPT_NUMBER_DIGITS)


def _prompt_numbers(first: str) -> set[str]:
    """Numbers only the instructions hold: not the question's, not the views' metadata."""
    return set(_instruction_numbers() - {_number_key(m) for m in _NUMBER.findall(first)})


def _views_state(channel: _Channel, canonical: str) -> tuple[tuple[str, int], ...]:
    """The generations of the loop's views that ``canonical`` (an action's arguments) names."""
    return tuple(
        sorted(
            (view, generation)
            for view, generation in channel.generations.items()
            if re.search(rf"(?<![A-Za-z0-9_]){re.escape(view)}(?![A-Za-z0-9_])", canonical)
        )
    )


def _number_key(text: str) -> str:
    """``12``, ``12.0`` and ``1,2`` → one spelling, for comparing numbers."""
    try:
        value = float(text.replace(",", ""))
    except ValueError:
        return text
    return str(int(value)) if value.is_integer() else repr(value)


def _out_of_time(state: Any) -> bool:
    """Whether the run is within its answer reserve of its deadline."""
    deadline = state.deadline
    return deadline is not None and deadline - time.monotonic() < state.answer_reserve_s


def _alongside(channel: _Channel, calls: list[_Call], step: int) -> bool:
    """Whether a reply holds data actions whose results the model has not seen yet.

    An `answer` written beside them is a guess.  Exact repeats of actions that
    already ran in an earlier turn do not count: their results were read (a small
    model re-sends its whole plan, the answer now included, every turn).
    """
    return any(
        call.name != "answer"
        and channel.done.get((call.name, _canonical(call.arguments)), step) >= step
        for call in calls
    )


def _answer_syntax(protocol: str) -> str:
    """How to write `answer` in the forced final turn, with no value a model could copy."""
    written = action_text(protocol, "answer", {"value": "V", "explanation": "E"})
    return written.replace('"V"', "<the value your results show>").replace(
        '"E"', '"<which result it comes from>"'
    )


def _guard(
    channel: _Channel, call: _Call, step: int, forced: bool, alongside: bool, *, cited: bool
) -> ToolOutcome | None:
    """The outcome of a call the guards stop before it runs (None: run it)."""
    if call.name == "answer" and cited:
        return None  # the value was read from a view, not written by the model
    if call.name == "answer":
        copied = _copied_answer(channel, call.arguments)
        if copied is not None:  # on every turn, the forced one included
            return copied
    if forced:
        return None if call.name == "answer" else _refused(call.name)
    if call.name == "answer":
        if alongside:
            return ToolOutcome(
                text=f"error: {SAME_REPLY_ANSWER_MESSAGE}",
                error="answer written in the same reply as data actions",
            )
        if not channel.data_seen and not channel.early_answer_refused:
            channel.early_answer_refused = True
            return ToolOutcome(
                text=f"error: {EARLY_ANSWER_MESSAGE}", error="answer before any data was checked"
            )
        if channel.peeked and not channel.beyond_peek and not channel.peek_only_refused:
            channel.peek_only_refused = True
            return ToolOutcome(text=f"error: {PEEK_ONLY_MESSAGE}", error="answer after only a peek")
        unseen = _unseen_number(channel, call.arguments)
        if unseen is not None and channel.unseen_refused < MAX_UNSEEN_REFUSALS:
            channel.unseen_refused += 1
            return ToolOutcome(
                text=f"error: {UNSEEN_VALUE_MESSAGE.format(value=unseen)}",
                error="answer value found in no result",
            )
        return None
    words = placeholders_in(call.arguments, channel.question)
    if words:
        message = placeholder_message(words, channel.question, _filled(channel, call))
        return ToolOutcome(text=f"error: {message}", error="placeholder left in an action")
    key = (call.name, _canonical(call.arguments))
    ran = channel.done.get(key)
    # within one reply the cap bounds repeats; a view it names made again since: it may run
    if (
        ran is not None
        and ran < step
        and channel.done_views.get(key) == _views_state(channel, key[1])
    ):
        message = REPEAT_CALL_MESSAGE.format(step=ran, next_step=_next_step(channel))
        return ToolOutcome(text=f"error: {message}", error="repeated a call that already ran")
    return None


def _filled(channel: _Channel, call: _Call) -> str | None:
    """``call`` with the plan's placeholders filled from the question, written for the
    loop's protocol (None when some cannot be filled)."""
    filled = fill_placeholders(call.arguments, channel.question, channel.text_column)
    try:
        args = json.loads(filled) if filled is not None else None
    except (json.JSONDecodeError, RecursionError):
        return None
    return action_text(channel.protocol, call.name, args) if isinstance(args, dict) else None


def _next_step(channel: _Channel) -> str:
    """The step after the data actions done so far; a filter first when the question names
    users or a month and nothing narrowed the rows yet (a 0.5B root skipped the plan's
    filter and classified every row of the table)."""
    narrowed = {name for name, _ in channel.done} & {"filter", "sql", "classify", "llm_map"}
    if not narrowed:
        for where in ("user_id IN (USER1, USER2)", "date BETWEEN 'FIRST_DAY' AND 'LAST_DAY'"):
            args = {"view": "context", "where": where, "name": "subset"}
            filled = fill_placeholders(json.dumps(args), channel.question, channel.text_column)
            if filled is not None:
                written = action_text(channel.protocol, "filter", json.loads(filled))
                return f"filter to the rows your question names first:\n{written}"
    return next_step_hint(channel.done)


def _relabel_note(channel: _Channel, call: _Call, error: str) -> str | None:
    """For a `classify` of a view that is labelled already: count it with sql now.

    A 0.5B root classified its labelled view's ``label`` column again, turn after
    turn, instead of counting it; the note writes the count out (topic from the
    question when it can be read from it).
    """
    if call.name != "classify" or "would overwrite the input column" not in error:
        return None
    try:
        args = json.loads(call.arguments)
    except (json.JSONDecodeError, RecursionError):
        return None
    view = args.get("view") if isinstance(args, dict) else None
    if not isinstance(view, str):
        return None
    query = {"query": f"SELECT COUNT(*) AS n FROM {view} WHERE label = 'TOPIC'", "name": "result"}
    filled = fill_placeholders(json.dumps(query), channel.question, channel.text_column)
    shown = action_text(channel.protocol, "sql", json.loads(filled) if filled else query)
    return (
        f"note: view `{cut(view, 60)}` is labelled already (its `label` column): do not "
        f"classify it again; count it with sql now, e.g.:\n{shown}"
    )


def _copied_answer(channel: _Channel, raw: str) -> ToolOutcome | None:
    """An `answer` copied from the instructions (refused on every turn), else None.

    Its value is the plan's placeholder, or a number only the instructions hold
    (:attr:`_Channel.prompt_numbers`) that no result showed.
    """
    try:
        args = json.loads(raw)
    except (json.JSONDecodeError, RecursionError):
        args = None
    if isinstance(args, dict) and args.get("value") == EXAMPLES["answer"]["value"]:
        message = placeholder_message(["<the value your result shows>"])
        return ToolOutcome(text=f"error: {message}", error="placeholder left in an action")
    number = _answered_number(raw)
    if number is None or number not in channel.prompt_numbers or number in channel.numbers:
        return None
    return ToolOutcome(
        text=f"error: {PROMPT_VALUE_MESSAGE.format(value=number)}",
        error="answer value copied from the instructions",
    )


def _clamped(call: _Call) -> tuple[_Call, str | None]:
    """A `peek` asking for more rows than it shows, cut to :data:`MAX_PEEK_ROWS` (and a note)."""
    if call.name != "peek":
        return call, None
    try:
        args = json.loads(call.arguments)
    except (json.JSONDecodeError, RecursionError):
        return call, None
    n = args.get("n") if isinstance(args, dict) else None
    if not isinstance(n, int) or isinstance(n, bool) or n <= MAX_PEEK_ROWS:
        return call, None
    args["n"] = MAX_PEEK_ROWS
    note = (
        f"note: n = {n} was cut to {MAX_PEEK_ROWS}: peek shows at most {MAX_PEEK_ROWS} rows "
        "and never reads the whole table. To count rows, classify the text column, then "
        "count with sql."
    )
    return _Call(call.name, json.dumps(args, ensure_ascii=False), call.call_id), note


async def _run_call(
    scope: Scope,
    channel: _Channel,
    call: _Call,
    step: int,
    forced: bool,
    *,
    alongside: bool = False,
) -> ToolOutcome:
    """Run one action through the guards and dispatch, and record it."""
    state = scope.state
    call_started = time.monotonic()
    before = state.meter.snapshot()
    call, cited, cite_error = await _cite(scope, call)
    guarded_outcome = cite_error or _guard(channel, call, step, forced, alongside, cited=cited)
    note = None
    if guarded_outcome is not None:
        outcome = guarded_outcome
    else:
        run, note = _clamped(call)
        outcome = await dispatch(run.name, run.arguments, scope)
    key = (call.name, _canonical(call.arguments))
    if key not in channel.tried:
        channel.tried.add(key)
        channel.progressed = True
    if outcome.error is not None and guarded_outcome is None:
        channel.failures[key] = channel.failures.get(key, 0) + 1
        made = _made_view(call)
        if made:
            channel.unmade.add(made)
        missing = _unknown_view(outcome.error)
        if missing is not None and missing in channel.unmade:
            outcome.text += (
                f"\nnote: view `{missing}` was never made: the earlier call that was to make "
                "it failed. Fix that call (see its error) and run it again first."
            )
        relabel = _relabel_note(channel, call, outcome.error)
        if relabel is not None:
            outcome.text = bound(f"{outcome.text}\n{relabel}")
        elif channel.failures[key] >= 2:
            outcome.text = bound(
                outcome.text + "\n" + repeat_hint(call.name, outcome.error, channel.protocol)
            )
    elif outcome.error is None and not outcome.final:
        channel.data_ran = True
        channel.beyond_peek = channel.beyond_peek or call.name != "peek"
        channel.peeked = channel.peeked or call.name == "peek"
        made = _made_view(call)
        if made:
            channel.unmade.discard(made)
            channel.generations[made] = channel.generations.get(made, 0) + 1
        channel.done[key] = step
        channel.done_views[key] = _views_state(channel, key[1])
        if note:
            outcome.text = f"{note}\n{outcome.text}"
    if outcome.error is None and not outcome.final:
        channel.numbers.update(_number_key(m) for m in _NUMBER.findall(outcome.text[:20000]))
    # The tool's own count where it keeps one; none for a tool that never calls the model;
    # else (recurse, a fan-out that failed) the meter's difference, which may also hold what
    # parallel sub-runs spent meanwhile.
    if outcome.usage is not None:
        spent = outcome.usage
    elif call.name in MODEL_TOOLS:
        spent = state.meter.snapshot() - before
    else:
        spent = Usage()
    if outcome.error is not None:
        state.errors += 1
    elif scope.depth == 0 and not outcome.final:
        state.partial = outcome.text
    state.steps.record(
        depth=scope.depth,
        path=scope.path,
        kind="answer" if outcome.final else "error" if outcome.error else "tool",
        tool=cut(call.name, 60),
        arguments=_arguments_for_trace(call.arguments),
        result_summary=cut(outcome.text, 2000),
        rows_in=outcome.rows_in,
        rows_out=outcome.rows_out,
        sub_calls=outcome.sub_calls or max(0, spent.calls),
        input_tokens=max(0, spent.input_tokens),
        output_tokens=max(0, spent.output_tokens),
        seconds=time.monotonic() - call_started,
        error=outcome.error,
        extra={"step": step, "protocol": channel.protocol},
    )
    return outcome


def _made_view(call: _Call) -> str | None:
    """The view a call names as the one it makes (its ``name`` argument), if any."""
    if call.name == "answer":
        return None
    try:
        args = json.loads(call.arguments)
    except (json.JSONDecodeError, RecursionError):
        return None
    name = args.get("name") if isinstance(args, dict) else None
    return name if isinstance(name, str) and name else None


def _unknown_view(error: str) -> str | None:
    """The view an ``unknown view 'X'`` error names."""
    match = _UNKNOWN_VIEW.search(error)
    return match.group(1) if match else None


def _record_model(
    scope: Scope,
    reply: Any,
    step: int,
    started: float,
    actions: int,
    forced: bool,
    protocol: str,
    switched: str | None,
    *,
    raw: str | None = None,
    switched_from: str | None = None,
    calls: list[_Call] | None = None,
) -> None:
    extra: dict[str, Any] = {
        "step": step,
        "tool_calls": actions,
        "forced": forced,
        "protocol": protocol,
    }
    if switched:
        extra["switched_to"] = switched
    if switched_from:
        extra["switched_from"] = "tools"
        extra["switch_reason"] = cut(switched_from, 400)
    content = raw if reply is None else reply.content
    extra.update(model_details(content, ((c.name, c.arguments) for c in calls or [])))
    scope.state.steps.record(
        depth=scope.depth,
        path=scope.path,
        kind="model",
        result_summary=cut(content or "", 300) or None,
        input_tokens=0 if reply is None else reply.input_tokens,
        output_tokens=0 if reply is None else reply.output_tokens,
        seconds=time.monotonic() - started,
        extra=extra,
    )


def _record_error(scope: Scope, step: int, error: str, *, summary: str | None = None) -> None:
    scope.state.errors += 1
    scope.state.steps.record(
        depth=scope.depth,
        path=scope.path,
        kind="error",
        result_summary=cut(summary, 2000) if summary else None,
        error=cut(error, 1000),
        extra={"step": step},
    )


def _as_text_history(conv: Conversation, protocol: str) -> None:
    """Rewrite native tool-call turns as text turns (after a switch away from ``tools``).

    Servers that take no ``tools`` may refuse ``tool`` messages; the earlier
    calls become action text in the assistant message and their results one
    user message.
    """
    for index, group in enumerate(conv.groups):
        assistant = group[0] if group else None
        if assistant is None or not assistant.get("tool_calls"):
            continue
        written = []
        for call in assistant["tool_calls"]:
            function = call.get("function") or {}
            try:
                args = json.loads(function.get("arguments") or "{}")
            except (json.JSONDecodeError, RecursionError):
                args = {"raw": function.get("arguments")}
            written.append(action_text(protocol, str(function.get("name")), args))
        text = "\n".join(filter(None, [assistant.get("content") or "", *written]))
        by_id = {
            m.get("tool_call_id"): m.get("content") or ""
            for m in group[1:]
            if m.get("role") == "tool"
        }
        results = [
            (str((c.get("function") or {}).get("name")), str(by_id.get(c.get("id"), "")))
            for c in assistant["tool_calls"]
        ]
        others = [m for m in group[1:] if m.get("role") != "tool"]
        conv.groups[index] = [
            {"role": "assistant", "content": text},
            {"role": "user", "content": results_message(results)},
            *others,
        ]


def _canonical(raw: str) -> str:
    try:
        return json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":"))
    except (json.JSONDecodeError, RecursionError, TypeError):
        return raw.strip()


def _refused(name: str) -> ToolOutcome:
    """The outcome of a non-`answer` call in the forced final turn: not run, an error."""
    message = f"steps are used up; only `answer` is accepted now, `{cut(name, 60)}` was not run"
    return ToolOutcome(text=f"error: {message}", error=message)


def _arguments_for_trace(raw: str) -> dict[str, Any]:
    """The call's arguments as a dict; unparsable or huge ones kept as ``{"raw": text}``."""
    if len(raw) <= 8000:
        try:
            value = json.loads(raw)
        except (json.JSONDecodeError, RecursionError):
            value = None
        if isinstance(value, dict):
            return {str(k): v for k, v in value.items()}
    return {"raw": cut(raw, 1000)}
