"""The root loop: prompt → tool calls → dispatch → bounded results → … → ``answer``.

One loop runs per RLM level: the root at depth 0 and one per partition for
``recurse`` at deeper levels.  Only a call of the ``answer`` tool ends a loop
with an answer; free text is never parsed for one.  A reply without tool
calls gets a nudge.  When the steps are used up the model is asked once more
with ``tool_choice`` naming ``answer``; other tools called in that turn are not
run, and a model that still does not answer ends the loop without an answer.
Budget errors raised by the client propagate to the caller.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from rlm_pipeline.llm.tokens import estimate_tokens
from rlm_pipeline.rlm.conversation import Conversation
from rlm_pipeline.rlm.prompts import (
    PROMPT_VERSION,
    SYSTEM_PROMPT,
    ViewInfo,
    final_answer_message,
    first_message,
    nudge_message,
)
from rlm_pipeline.rlm.render import cut
from rlm_pipeline.rlm.scope import Scope
from rlm_pipeline.rlm.tools import TOOL_NAMES, TOOLS, ToolOutcome, dispatch

__all__ = [
    "FORCE_ANSWER_CHOICE",
    "ROOT_PROMPT_BUDGET_TOKENS",
    "LoopResult",
    "describe_context",
    "run_loop",
]

logger = logging.getLogger(__name__)

#: The conversation is compacted to stay under this many (estimated) prompt tokens.
ROOT_PROMPT_BUDGET_TOKENS = 6000
_TOOLS_TOKENS = estimate_tokens(json.dumps(TOOLS, separators=(",", ":")))
#: Tool choice of the one extra turn after the last step: the `answer` function, named.
#: The whole tool list is still sent (so the conversation's earlier calls stay valid);
#: a model or server that ignores the choice and calls another tool is refused, since
#: only an `answer` call is taken as the answer.
FORCE_ANSWER_CHOICE: dict[str, Any] = {"type": "function", "function": {"name": "answer"}}


@dataclass(frozen=True)
class LoopResult:
    """How one loop ended.

    ``stop_reason`` is ``"answer"`` (the model called `answer`), ``"forced_answer"``
    (it answered when asked after the last step) or ``"max_steps"`` (no answer).
    """

    answered: bool
    value: Any
    explanation: str | None
    steps: int
    stop_reason: str


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
        tool_names=TOOL_NAMES,
        depth=scope.depth,
        max_depth=state.max_depth,
        max_steps=state.max_steps,
    )
    conv = Conversation(SYSTEM_PROMPT, first, budget_tokens=ROOT_PROMPT_BUDGET_TOKENS)
    state.steps.record(
        depth=scope.depth,
        path=scope.path,
        kind="run_start",
        rows_in=info.rows,
        extra={
            "question": cut(question, 2000),
            "engine": state.engine_kind,
            "views": {info.name: {"rows": info.rows, "columns": info.schema}},
            "prompt_version": PROMPT_VERSION,
            "max_steps": state.max_steps,
            "max_depth": state.max_depth,
        },
    )
    for step in range(1, state.max_steps + 1):
        if scope.depth == 0:
            state.root_steps = step
        outcome = await _turn(scope, client, conv, step, forced=False)
        if outcome is not None:
            return LoopResult(True, outcome.value, outcome.explanation, step, "answer")
    conv.add({"role": "user", "content": final_answer_message(state.max_steps)})
    outcome = await _turn(scope, client, conv, state.max_steps + 1, forced=True)
    if outcome is not None:
        return LoopResult(
            True, outcome.value, outcome.explanation, state.max_steps, "forced_answer"
        )
    state.steps.record(
        depth=scope.depth,
        path=scope.path,
        kind="error",
        result_summary=f"no answer after {state.max_steps} steps",
        error="max_steps: the model never called answer",
    )
    return LoopResult(False, None, None, state.max_steps, "max_steps")


async def _turn(
    scope: Scope, client: Any, conv: Conversation, step: int, *, forced: bool
) -> ToolOutcome | None:
    """One model call and its tool calls; returns the `answer` outcome if there was one."""
    state = scope.state
    started = time.monotonic()
    reply = await client.chat(
        conv.messages_for_call(_TOOLS_TOKENS),
        tools=TOOLS,
        tool_choice=FORCE_ANSWER_CHOICE if forced else "auto",
        prompt_version=PROMPT_VERSION,
    )
    state.steps.record(
        depth=scope.depth,
        path=scope.path,
        kind="model",
        result_summary=cut(reply.content or "", 300) or None,
        input_tokens=reply.input_tokens,
        output_tokens=reply.output_tokens,
        seconds=time.monotonic() - started,
        extra={"step": step, "tool_calls": len(reply.tool_calls), "forced": forced},
    )
    if not reply.tool_calls:
        state.errors += 1
        text = nudge_message()
        conv.add(
            {"role": "assistant", "content": reply.content or ""},
            {"role": "user", "content": text},
        )
        state.steps.record(
            depth=scope.depth,
            path=scope.path,
            kind="error",
            result_summary=text,
            error="reply had no tool call (nudged to use tools)",
        )
        return None
    conv.add(
        {
            "role": "assistant",
            "content": reply.content,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in reply.tool_calls
            ],
        }
    )
    final: ToolOutcome | None = None
    for call in reply.tool_calls:
        if final is not None:
            conv.extend_last(
                {"role": "tool", "tool_call_id": call.id, "content": "ignored: run ended"}
            )
            continue
        call_started = time.monotonic()
        before = state.meter.snapshot()
        if forced and call.name != "answer":
            outcome = _refused(call.name)
        else:
            outcome = await dispatch(call.name, call.arguments, scope)
        spent = state.meter.snapshot()  # sub-calls of this tool (approximate under recursion)
        conv.extend_last({"role": "tool", "tool_call_id": call.id, "content": outcome.text})
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
            sub_calls=outcome.sub_calls or max(0, spent.calls - before.calls),
            input_tokens=max(0, spent.input_tokens - before.input_tokens),
            output_tokens=max(0, spent.output_tokens - before.output_tokens),
            seconds=time.monotonic() - call_started,
            error=outcome.error,
            extra={"step": step},
        )
        if outcome.final:
            final = outcome
    return final


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
